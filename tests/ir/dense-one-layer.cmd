examples/llama.kiln -D layers=1 -D dim=16 -D heads=2 -D kv_heads=1 -D hidden=24 -D vocab=20 -D ctx=8
