tests/ir/pass-share-softmax.in --passes share-softmax --share-softmax=2,1,3
