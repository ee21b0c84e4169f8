tests/ir/pass-dce.in --passes dce
