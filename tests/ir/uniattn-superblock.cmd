examples/uniattn.kiln -D layers=3 -D group_size=2 -D begin=1 -D end=3 -D dim=16 -D heads=2 -D kv_heads=1 -D hidden=24 -D vocab=20 -D ctx=8
