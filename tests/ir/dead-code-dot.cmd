tests/ir/dead-code.kiln --dot
