tests/ir/pass-widen.in --wtype bf16 --passes widen
