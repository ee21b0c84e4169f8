tests/ir/pass-kvlayout.in --passes kvlayout --kv-type bf16
