tests/ir/pass-widen.in --passes widen
