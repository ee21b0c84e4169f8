tests/ir/kv-mixed.kiln --kv-type f16
