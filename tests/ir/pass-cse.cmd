tests/ir/pass-cse.in --passes cse
