python3 -m sqltune run qwen1.5b-gpu --out /root/jobs/exo --resume --set synth.enabled=true --set rl.enabled=true --set rl.choose=last --set rl.gradient_checkpointing=true
