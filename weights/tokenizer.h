/* tokenizer.h - a checkpoint's tokenizer, read at build time and written in the serialized
 * form a program reads (runtime/tokenizer.h, layout in runtime/tokenizer.c).
 *
 * Sources: llama2.c's tokenizer.bin, the vocabulary embedded in GGUF
 * (tokenizer.ggml.model "llama" or "gpt2"), a Hugging Face tokenizer.json (model BPE:
 * byte-level with the GPT-2 or LLaMA-3 pre-tokenizer, or SentencePiece's BPE form with byte
 * fallback). All become one tokenizer_spec: pieces as raw bytes (a SentencePiece "▁" a space,
 * a byte-level piece its bytes), kinds, scores or merges by rank, BOS/EOS.
 * Files are untrusted: every problem is reported with diag_file_error naming the file and the
 * place, and the functions return -1.
 */
#ifndef KILN_WEIGHTS_TOKENIZER_H
#define KILN_WEIGHTS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "weights.h"

typedef struct tokenizer_token {
    char *piece;               /* raw bytes (may hold NULs), malloc'ed */
    uint32_t len;
    float score;               /* score merges */
    uint32_t kind;             /* KRT_TOK_NORMAL, CONTROL, BYTE, | KRT_TOK_EOG */
} tokenizer_token;

typedef struct tokenizer_spec {
    uint32_t algorithm;        /* KRT_TOK_SCORE or KRT_TOK_RANK */
    uint32_t flags;            /* KRT_TOK_PREFIX_SPACE ... */
    uint32_t pretok;           /* KRT_TOK_PRE_NONE, GPT2, LLAMA3 */
    int32_t n;
    tokenizer_token *tokens;
    int32_t bos, eos, unk;     /* -1: none; bos is the one encoding puts first */
    uint32_t n_merges;
    int32_t (*merges)[3];      /* left, right, result; best first */
    const char *what;          /* "llama2.c tokenizer.bin", "GGUF llama", ... for -v */
} tokenizer_spec;

/* llama2.c's tokenizer.bin with `vocab` tokens (the model's vocabulary): score merges, BOS 1,
 * EOS 2, UNK 0, `<0xXX>` pieces as byte tokens. 0, or -1 after reporting. */
int tokenizer_from_llama2c(const char *path, int32_t vocab, tokenizer_spec *out);
/* The vocabulary embedded in a GGUF checkpoint: 1 when read, 0 when the file has none
 * (no tokenizer.ggml.model), -1 after reporting. */
int tokenizer_from_gguf(const ckpt *c, tokenizer_spec *out);
/* A Hugging Face tokenizer.json. 0, or -1 after reporting. */
int tokenizer_from_hf_json(const char *path, tokenizer_spec *out);
/* kiln build --tokenizer FILE: a tokenizer.json (by its extension or a '{' first), a GGUF
 * file (its embedded vocabulary), else a llama2.c tokenizer.bin of `vocab` tokens. */
int tokenizer_read(const char *path, int32_t vocab, tokenizer_spec *out);

/* What kiln build stores: the tokenizer of `path` (--tokenizer FILE; "none": no tokenizer)
 * if given, else the checkpoint ck's own (a GGUF vocabulary, a Hugging Face folder's
 * tokenizer.json), serialized into *data (malloc'ed). 1 when there is one, 0 when there is
 * none, -1 after reporting (also when it has more tokens than the model's vocab). */
int tokenizer_for_build(const char *path, const ckpt *ck, int64_t vocab, int verbose,
                        void **data, size_t *size);

/* The serialized form (malloc'ed into *data); -1 when out of memory or too large. */
int tokenizer_serialize(const tokenizer_spec *t, void **data, size_t *size);
void tokenizer_free(tokenizer_spec *t);

#endif
