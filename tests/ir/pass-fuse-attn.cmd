tests/ir/pass-fuse-attn.in --passes fuse-attn
