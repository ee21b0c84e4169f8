#!/bin/sh
# demo.sh - compile a real trained model (stories260K, examples/models/) and let it tell a
# story; then the dense LLaMA example with deterministic test weights, its IR and what the
# optimizer did. Run from the repository root after `ninja`.
set -eu
kiln=${KILN:-build/kiln}
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"
echo "== kiln build: examples/llama2c.kiln + stories260K (GGUF: hyperparameters and vocabulary from the file)"
"$kiln" build examples/llama2c.kiln --weights examples/models/stories260K-f32.gguf -o "$out/stories"
echo "== $out/stories --prompt \"Once upon a time\" -n 120 --temp 0 (greedy; timings on stderr)"
"$out/stories" --prompt "Once upon a time" -n 120 --temp 0
echo "== kiln weights: det-weights v1 test weights for examples/llama.kiln"
"$kiln" weights examples/llama.kiln --seed 1 -o "$out/llama.safetensors"
echo "== kiln build: spec + weights -> one executable"
"$kiln" build examples/llama.kiln --weights "$out/llama.safetensors" -o "$out/llama"
echo "== the IR of layer 0 (kiln dump --scope l=0: the instructions, without the tensor table)"
"$kiln" dump examples/llama.kiln --scope l=0 | sed -n '/^batch/,$p' | head -n 34
echo "== what the optimizer decided for layer 0 (kiln build --report, docs/passes.md)"
"$kiln" build examples/llama.kiln --emit=c -o "$out/llama.c" --report |
    awk '/^decisions/ { on = 1; next } on && /^  [a-z]/ { pass = $1; next }
         on && /l=0[:,]/ { if (pass != shown) print "  " pass; shown = pass; print }' | head -n 24
echo "== $out/llama --tokens 1,5,9,13 -n 16 --temp 0 (greedy token ids)"
"$out/llama" --tokens 1,5,9,13 -n 16 --temp 0
echo "== the same program with --stats (KV cache report)"
"$out/llama" --tokens 1,5,9,13 -n 4 --temp 0 --stats >/dev/null
