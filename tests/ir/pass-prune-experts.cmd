tests/ir/pass-prune-experts.in --passes prune-experts,dce --keep-experts=0:1,3
