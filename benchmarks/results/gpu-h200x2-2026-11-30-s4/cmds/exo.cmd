python3 -m sqltune run qwen1.5b-gpu --out /root/jobs/exo --resume --set synth.enabled=true --set rl.enabled=true --set eval.vote=8 --set rl.gradient_checkpointing=true
