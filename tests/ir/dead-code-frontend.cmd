tests/ir/dead-code.kiln --after none
