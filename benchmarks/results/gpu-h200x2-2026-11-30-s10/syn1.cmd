SETTINGS=scale bash /root/jobs/synth_scale.sh /root/jobs/devsuite /root/jobs/out/synth qwen2.5-coder-1.5b orchestra cre_Doc_Template_Mgt singer
