tests/ir/pass-fold-gain.in --passes fold-gain
