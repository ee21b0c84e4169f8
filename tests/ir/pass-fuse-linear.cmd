tests/ir/pass-fuse-linear.in --passes fuse-linear
