python3 -m sqltune run qwen1.5b-gpu --out /root/jobs/exo --resume --set rl.gradient_checkpointing=true
