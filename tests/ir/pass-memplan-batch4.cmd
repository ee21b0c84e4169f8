tests/ir/pass-memplan.in --max-batch 4 --passes memplan
