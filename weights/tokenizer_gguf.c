/* tokenizer_gguf.c - the vocabulary embedded in a GGUF file (tokenizer.ggml.*) as a
 * tokenizer_spec (tokenizer.h).
 *
 * tokenizer.ggml.model "llama": SentencePiece, score merges (tokens, scores, token_type: 6
 * byte, 2 unknown, 3 control and 5 unused never come from text); "▁" is a space. "gpt2":
 * byte-level BPE (tokens in GPT-2's byte alphabet, merges "a b" best first), pre-tokenizer
 * from tokenizer.ggml.pre ("gpt-2" or "gpt2"; "llama-bpe" or "llama3" for LLaMA-3). BOS,
 * EOS, UNK and the end-of-turn tokens from their *_token_id keys; add_bos_token false
 * leaves BOS out.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../runtime/tokenizer.h"
#include "tokenizer_internal.h"

enum { GGUF_TOKEN_NORMAL = 1, GGUF_TOKEN_UNKNOWN = 2, GGUF_TOKEN_CONTROL = 3,
       GGUF_TOKEN_USER = 4, GGUF_TOKEN_UNUSED = 5, GGUF_TOKEN_BYTE = 6 };

/* An id key: *id set when present and in range; -1 after reporting a bad one. */
static int id_key(const ckpt *c, const char *key, int32_t n, int32_t *id)
{
    int64_t v;
    int rc = ckpt_gguf_int(c, key, &v);
    if (rc == 0)
        return 0;
    if (rc < 0 || v < 0 || v >= n) {
        diag_file_error(c->path, "metadata %s: %s (the vocabulary has %d tokens)", key,
                        rc < 0 ? "not an integer" : "out of range", (int)n);
        return -1;
    }
    *id = (int32_t)v;
    return 0;
}

static int read_merges(const ckpt *c, tokenizer_spec *t, const gguf_kv *tokens)
{
    const gguf_kv *merges;
    int rc = ckpt_gguf_array(c, "tokenizer.ggml.merges", GGUF_STRING, &merges);
    if (rc <= 0) {
        diag_file_error(c->path, "tokenizer.ggml.merges: %s", rc ? "not an array of strings"
                                                                  : "missing (a gpt2 tokenizer needs it)");
        return -1;
    }
    str_index x;
    if (str_index_init(&x, t->n) < 0) {
        diag_file_error(c->path, "out of memory");
        return -1;
    }
    for (int32_t i = 0; i < t->n; i++) {
        const gguf_str *s;
        gguf_item_str(tokens, (uint64_t)i, &s);
        str_index_add(&x, s->s, (size_t)s->len, i);
    }
    uint32_t cap = 0;
    rc = 0;
    for (uint64_t m = 0; m < merges->v.arr.n && rc == 0; m++) {
        const gguf_str *s;
        gguf_item_str(merges, m, &s);
        const char *sp = memchr(s->s, ' ', (size_t)s->len);
        if (!sp || m >= UINT32_MAX / 2) {
            diag_file_error(c->path, "tokenizer.ggml.merges[%llu]: \"%.60s\" is not two pieces "
                            "joined by a space", (unsigned long long)m, s->s);
            rc = -1;
            break;
        }
        size_t left = (size_t)(sp - s->s);
        rc = tokspec_merge(t, &x, s->s, left, sp + 1, (size_t)s->len - left - 1, &cap);
        if (rc)
            diag_file_error(c->path, rc == -1 ? "out of memory"
                            : rc == -3 ? "tokenizer.ggml.merges[%llu]: \"%.60s\": the merged "
                              "token is not the two tokens joined"
                            : "tokenizer.ggml.merges[%llu]: \"%.60s\": a piece or the merged "
                              "piece is not in the vocabulary", (unsigned long long)m, s->s);
    }
    str_index_free(&x);
    return rc ? -1 : 0;
}

/* The pre-tokenizer of tokenizer.ggml.pre (absent: GPT-2's, with a warning). */
static int read_pre(const ckpt *c, tokenizer_spec *t)
{
    const gguf_str *pre;
    int rc = ckpt_gguf_str(c, "tokenizer.ggml.pre", &pre);
    if (rc < 0) {
        diag_file_error(c->path, "tokenizer.ggml.pre is not a string");
        return -1;
    }
    if (rc == 0 || !strcmp(pre->s, "gpt2") || !strcmp(pre->s, "gpt-2")) {
        if (rc == 0)
            diag_file_warning(c->path, "no tokenizer.ggml.pre; using GPT-2's pre-tokenizer");
        t->pretok = KRT_TOK_PRE_GPT2;
    } else if (!strcmp(pre->s, "llama-bpe") || !strcmp(pre->s, "llama3")) {
        t->pretok = KRT_TOK_PRE_LLAMA3;
        t->flags |= KRT_TOK_WHOLE_WORDS;   /* llama.cpp and the tokenizer.json: ignore_merges */
    } else {
        diag_file_error(c->path, "tokenizer.ggml.pre \"%.60s\": a pre-tokenizer kiln does not "
                        "know (it knows \"gpt-2\" and \"llama-bpe\")", pre->s);
        return -1;
    }
    return 0;
}

int tokenizer_from_gguf(const ckpt *c, tokenizer_spec *out)
{
    const gguf_str *model;
    const gguf_kv *tokens, *scores = NULL, *types = NULL;
    int rc = ckpt_gguf_str(c, "tokenizer.ggml.model", &model);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        diag_file_error(c->path, "tokenizer.ggml.model is not a string");
        return -1;
    }
    int spm = !strcmp(model->s, "llama"), bpe = !strcmp(model->s, "gpt2");
    if (!spm && !bpe) {
        diag_file_error(c->path, "tokenizer.ggml.model \"%.60s\": kiln reads \"llama\" "
                        "(SentencePiece) and \"gpt2\" (byte-level BPE) vocabularies", model->s);
        return -1;
    }
    rc = ckpt_gguf_array(c, "tokenizer.ggml.tokens", GGUF_STRING, &tokens);
    if (rc <= 0 || tokens->v.arr.n == 0 || tokens->v.arr.n > KILN_MAX_VOCAB) {
        diag_file_error(c->path, "tokenizer.ggml.tokens: %s", rc <= 0 ? "missing or not an "
                        "array of strings" : "an empty vocabulary or one of more than "
                        KILN_STR(KILN_MAX_VOCAB) " tokens");
        return -1;
    }
    int32_t n = (int32_t)tokens->v.arr.n;
    if (ckpt_gguf_array(c, "tokenizer.ggml.scores", GGUF_F32, &scores) < 0 ||
        (scores && scores->v.arr.n != (uint64_t)n)) {
        diag_file_error(c->path, "tokenizer.ggml.scores: not %d f32 values", (int)n);
        return -1;
    }
    if (ckpt_gguf_array(c, "tokenizer.ggml.token_type", GGUF_I32, &types) < 0 ||
        (types && types->v.arr.n != (uint64_t)n)) {
        diag_file_error(c->path, "tokenizer.ggml.token_type: not %d i32 values", (int)n);
        return -1;
    }
    if (tokspec_alloc(out, n, spm ? "GGUF llama (SentencePiece)" : "GGUF gpt2 (byte-level BPE)")) {
        diag_file_error(c->path, "out of memory");
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        const gguf_str *s;
        int64_t type = GGUF_TOKEN_NORMAL;
        double score = 0;
        gguf_item_str(tokens, (uint64_t)i, &s);
        if (types)
            gguf_item_int(types, (uint64_t)i, &type);
        if (scores)
            gguf_item_float(scores, (uint64_t)i, &score);
        if (isnan(score)) {    /* merges compare scores: the program refuses a NaN */
            diag_file_error(c->path, "tokenizer.ggml.scores[%d] is not a number", (int)i);
            goto fail;
        }
        uint32_t kind = type == GGUF_TOKEN_CONTROL || type == GGUF_TOKEN_UNKNOWN ||
                        type == GGUF_TOKEN_UNUSED ? KRT_TOK_CONTROL
                      : type == GGUF_TOKEN_BYTE ? KRT_TOK_BYTE : KRT_TOK_NORMAL;
        if (kind == KRT_TOK_BYTE && !tokspec_is_byte_piece(s->s, (size_t)s->len)) {
            diag_file_error(c->path, "tokenizer.ggml.tokens[%d] \"%.40s\": a byte token (type 6) "
                            "that is not <0xXX>", (int)i, s->s);
            goto fail;
        }
        /* a gpt2 vocabulary spells its normal pieces in GPT-2's byte alphabet; control and
         * user-defined tokens as they are */
        tok_unmap how = spm ? UNMAP_SPACE : kind == KRT_TOK_NORMAL && type == GGUF_TOKEN_NORMAL
                                            ? UNMAP_BYTES : UNMAP_NONE;
        rc = tokspec_set(out, i, s->s, (size_t)s->len, how, kind, (float)score);
        if (rc) {
            diag_file_error(c->path, rc == -1 ? "out of memory"
                            : "tokenizer.ggml.tokens[%d] \"%.40s\": a character outside GPT-2's "
                              "byte alphabet", (int)i, s->s);
            goto fail;
        }
    }
    int32_t eot = -1, eom = -1;
    int add_bos = 1;
    if (id_key(c, "tokenizer.ggml.bos_token_id", n, &out->bos) ||
        id_key(c, "tokenizer.ggml.eos_token_id", n, &out->eos) ||
        id_key(c, "tokenizer.ggml.unknown_token_id", n, &out->unk) ||
        id_key(c, "tokenizer.ggml.eot_token_id", n, &eot) ||
        id_key(c, "tokenizer.ggml.eom_token_id", n, &eom))
        goto fail;
    if (ckpt_gguf_bool(c, "tokenizer.ggml.add_bos_token", &add_bos) < 0) {
        diag_file_error(c->path, "tokenizer.ggml.add_bos_token is not a bool");
        goto fail;
    }
    tokspec_mark_eog(out, out->eos);
    tokspec_mark_eog(out, eot);
    tokspec_mark_eog(out, eom);
    if (spm) {
        out->algorithm = KRT_TOK_SCORE;
        out->flags = KRT_TOK_PREFIX_SPACE | KRT_TOK_STRIP_SPACE;
        tokspec_mark_eog(out, out->bos);   /* as llama2.c's run.c: a new text ends this one */
    } else {
        out->algorithm = KRT_TOK_RANK;
        out->flags = KRT_TOK_BYTE_UNITS;
        if (read_pre(c, out) || read_merges(c, out, tokens) ||
            tokspec_check_bytes(c->path, out) < 0)
            goto fail;
    }
    if (!add_bos)
        out->bos = -1;
    return 1;
fail:
    tokenizer_free(out);
    return -1;
}
