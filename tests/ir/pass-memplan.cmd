tests/ir/pass-memplan.in --passes memplan
