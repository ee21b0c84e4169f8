tests/ir/rope-heads.in
