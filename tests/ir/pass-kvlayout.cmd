tests/ir/pass-kvlayout.in --passes kvlayout
