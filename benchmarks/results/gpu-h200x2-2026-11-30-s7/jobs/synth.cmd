bash benchmarks/synth_scale.sh /root/jobs/devsuite /root/jobs/out/synth qwen2.5-coder-1.5b network_1 tvshow
