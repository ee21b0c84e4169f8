/* limits.h - kiln's documented maxima, one named constant each, in one place.
 *
 * Every input kiln reads (a spec, an IR dump, a checkpoint, a tokenizer, a config) is
 * checked against these before anything is allocated or recursed on by the input's
 * sizes, and refused with a message naming the file and the place and the limit. The
 * values are generous for real models: the largest open models (405B dense, 671B MoE)
 * have 32-126 layers, vocabularies up to ~256K, matrices up to ~2^31 elements (embeddings
 * of 256K x 16K = 2^32), a few thousand tensors (MoE: tens of thousands), GGUF files with
 * a few dozen metadata keys (the vocabulary, merges and scores are one array key each,
 * of up to ~300K items). The README's LIMITS section lists them with where each is
 * enforced; docs/language.md the ones a spec meets.
 *
 * Plain macros (not an enum): several are 64-bit, and the C preprocessor can test them.
 */
#ifndef KILN_LIMITS_H
#define KILN_LIMITS_H

/* The text of a limit written as a plain integer, for messages: KILN_STR(KILN_MAX_INSTS). */
#define KILN_STR_(x) #x
#define KILN_STR(x) KILN_STR_(x)

#include <stdint.h>

/* ---------------------------------------------------------------- text inputs (specs, IR) */

/* A spec, an IR dump or a token list read as text: 16 MiB. A hand-written spec is a few
 * KB; the dump of a 126-layer LLaMA is ~0.4 MB. Checked before the file is read. */
#define KILN_MAX_SOURCE_BYTES ((int64_t)16 << 20)

/* Identifiers in a spec (names of params, weights, blocks, loop indices): 256 bytes. The
 * names people write are under 40; the compiler builds labels from them on the stack. */
#define KILN_MAX_IDENT 256

/* A string literal in a spec (a tensor-name template, a RoPE mode, a message): 4096 bytes
 * after escapes. */
#define KILN_MAX_STRING 4096

/* The parser's stack (bison's YYMAXDEPTH): brackets, operators and statements pending at
 * once. Real specs stay under 100. The stack lives on the heap, so this bounds memory,
 * not the C stack; the evaluator's own bounds follow. */
#define KILN_MAX_PARSE_DEPTH 10000

/* Expression nesting the evaluator recurses on (exp(exp(...)), a + (b + ...)), counted
 * afresh inside each block call: 256. std.kiln's deepest is under 10. */
#define KILN_MAX_EXPR_DEPTH 256

/* Block and def calls nested (a block calling a block ...): 256; recursion runs into it. */
#define KILN_MAX_CALL_DEPTH 256

/* `for` loops and `sum`s nested in one another (the loop stack), and weight loops (`for l
 * in ..., e in ...`) nested: 16 and 4 (a weight array has at most 4 indices, as
 * layer, sublayer, expert, head). */
#define KILN_MAX_LOOP_DEPTH 16
#define KILN_MAX_WEIGHT_LOOPS 4

/* Iterations of all loops and sums in one compile (trip counts): 16M; instructions the
 * unrolled model may have: 2M (a 126-layer LLaMA has ~6K; MoE with 256 experts in 61
 * layers ~200K); weight tensors a spec may declare: 1M (a 256-expert 61-layer MoE: ~50K).
 * Each stops a typo such as layers = 320000000 before it runs for hours. */
#define KILN_MAX_ITERATIONS 16000000
#define KILN_MAX_INSTS 2000000
#define KILN_MAX_WEIGHTS 1000000

/* Weights bound to views of views (w2 = w1[0:8, :], w1 = transpose(w0[...])): 16 ops
 * (slices, transposes) over the checkpoint tensor; real specs use 1-3. A recipe (such a
 * view, and what the folding passes build over it: ir/recipe.c, an IR dump's tensor line)
 * nests at most 32 ops deep, which leaves the passes room over any spec's views. */
#define KILN_MAX_VIEW_DEPTH 16
#define KILN_MAX_RECIPE_DEPTH 32

/* ---------------------------------------------------------------- tensors */

/* Rank of a tensor (spec, IR, checkpoint): 4 (GGUF's own limit; models use 1..3). */
#define KILN_MAX_RANK 4

/* Elements in one tensor (per token, for activations): 2^36 = 64G; the largest real
 * tensors (a 256K x 16K embedding) hold 2^32. Bytes in one memory plan (frame or state):
 * 2^40 = 1 TiB. */
#define KILN_MAX_ELEMS ((int64_t)1 << 36)
#define KILN_MAX_BYTES ((int64_t)1 << 40)

/* A tensor's name in a checkpoint, or a spec's tensor-name template once expanded: 1024
 * bytes (ggml itself stores 63; Hugging Face names are under 100). */
#define KILN_MAX_TENSOR_NAME 1024

/* ---------------------------------------------------------------- checkpoints */

/* Tensors in one checkpoint file, in a Hugging Face index, or in a weight blob: 2^20. A
 * 405B dense model has ~1.1K, a 256-expert MoE ~50K per whole model. */
#define KILN_MAX_CKPT_TENSORS (1 << 20)

/* GGUF metadata entries: 2^20 (llama.cpp's files have 20-60; each array is one entry). A
 * GGUF key: 65535 bytes (the GGUF spec's own limit). */
#define KILN_MAX_GGUF_KV (1 << 20)
#define KILN_MAX_GGUF_KEY 65535

/* A GGUF string value or array item, a token's piece: 1 MiB (chat templates are ~10 KB,
 * pieces a few bytes). Items in one GGUF array: 2^24 = 16M (vocabularies and merges up
 * to ~300K). */
#define KILN_MAX_GGUF_STRING (1 << 20)
#define KILN_MAX_GGUF_ARRAY (1 << 24)

/* A safetensors JSON header: 100 MB (the reference implementation's limit). */
#define KILN_MAX_ST_HEADER 100000000

/* A JSON file read whole (config.json, model.safetensors.index.json, tokenizer.json):
 * 256 MiB (the largest tokenizer.json files, Gemma's, are ~35 MB). JSON nesting is
 * bounded by jansson itself at 2048 (JSON_PARSER_MAX_DEPTH), which refuses the file. */
#define KILN_MAX_JSON_BYTES ((int64_t)256 << 20)
#define KILN_MAX_JSON_DEPTH 2048

/* ---------------------------------------------------------------- tokenizers */

/* Tokens in a vocabulary: 2^24 = 16M (the largest real ones are ~256K). The same bound
 * applies to a model's vocab parameter read from a checkpoint header. */
#define KILN_MAX_VOCAB 16777216   /* 2^24 */

/* One token's piece (its bytes): 1 MiB, as KILN_MAX_GGUF_STRING. */
#define KILN_MAX_TOKEN_BYTES KILN_MAX_GGUF_STRING

#endif
