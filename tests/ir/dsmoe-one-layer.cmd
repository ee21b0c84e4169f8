examples/dsmoe.kiln -D layers=1 -D dim=16 -D heads=2 -D kv_heads=2 -D hidden=32 -D experts=2 -D vocab=20 -D ctx=8
