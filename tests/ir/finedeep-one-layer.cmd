examples/finedeep.kiln -D layers=1 -D dim=16 -D heads=2 -D kv_heads=1 -D sublayers=2 -D experts=2 -D expert_hidden=4 -D vocab=20 -D ctx=8
