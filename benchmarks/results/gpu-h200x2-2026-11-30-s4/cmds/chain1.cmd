REPO=/work/main bash /root/merged/chain1.sh
