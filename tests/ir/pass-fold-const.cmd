tests/ir/pass-fold-const.in --passes fold-const
