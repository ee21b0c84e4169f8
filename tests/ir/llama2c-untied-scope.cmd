examples/llama2c.kiln -D layers=2 -D dim=16 -D heads=2 -D kv_heads=2 -D hidden=24 -D vocab=20 -D ctx=8 -D tied=0 --scope l=1
