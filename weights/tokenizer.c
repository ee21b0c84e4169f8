/* tokenizer.c - the tokenizer_spec every source becomes (tokenizer.h): llama2.c's
 * tokenizer.bin, the source chosen by --tokenizer FILE, the helpers the GGUF and Hugging
 * Face readers share (pieces unmapped from "▁" or GPT-2's byte alphabet, a piece index, the
 * merge table), and the serialized form of runtime/tokenizer.c.
 */
#define _POSIX_C_SOURCE 200809L

#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../runtime/tokenizer.h"
#include "tokenizer_internal.h"

/* ---- building a spec ---- */

int tokspec_alloc(tokenizer_spec *t, int32_t n, const char *what)
{
    memset(t, 0, sizeof *t);
    t->bos = t->eos = t->unk = -1;
    t->what = what;
    if (n <= 0 || !(t->tokens = calloc((size_t)n, sizeof *t->tokens)))
        return -1;
    t->n = n;
    return 0;
}

/* GPT-2's bytes_to_unicode, backwards: the byte a code point of its alphabet stands for
 * (bytes 33..126, 161..172, 174..255 stand for themselves, the other 68 bytes in order for
 * U+0100 ...), or -1. */
static int byte_of_cp(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    uint32_t k = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) && k-- == 0)
            return b;
    return -1;
}

/* The code point at s (n bytes left, n >= 1) and its length; -1 for invalid UTF-8. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    int len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3
            : (s[0] >> 3) == 30 ? 4 : -1;
    if (len < 0 || (size_t)len > n)
        return -1;
    uint32_t v = len == 1 ? s[0] : s[0] & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (s[k] & 0x3F);
    }
    *cp = v;
    return len;
}

int tokspec_set(tokenizer_spec *t, int32_t id, const char *s, size_t len, tok_unmap how,
                uint32_t kind, float score)
{
    tokenizer_token *k = &t->tokens[id];
    free(k->piece);
    if (!(k->piece = malloc(len + 1)))
        return -1;
    size_t out = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)s + i;
        uint32_t cp;
        int n;
        if (how == UNMAP_SPACE && len - i >= 3 && !memcmp(u, "\xE2\x96\x81", 3)) {
            k->piece[out++] = ' ';                     /* SentencePiece's ▁ */
            i += 3;
        } else if (how == UNMAP_BYTES) {
            int b = (n = utf8_decode(u, len - i, &cp)) > 0 ? byte_of_cp(cp) : -1;
            if (b < 0)
                return -2;
            k->piece[out++] = (char)b;
            i += (size_t)n;
        } else {
            k->piece[out++] = s[i++];
        }
    }
    k->piece[out] = 0;
    k->len = (uint32_t)out;
    k->kind = kind;
    k->score = score;
    return 0;
}

int tokspec_add_merge(tokenizer_spec *t, int32_t a, int32_t b, int32_t c, uint32_t *cap)
{
    if (t->n_merges == *cap) {
        uint32_t ncap = *cap ? 2 * *cap : 1024;
        int32_t(*m)[3] = realloc(t->merges, (size_t)ncap * sizeof *m);
        if (!m)
            return -1;
        t->merges = m, *cap = ncap;
    }
    t->merges[t->n_merges][0] = a, t->merges[t->n_merges][1] = b, t->merges[t->n_merges][2] = c;
    t->n_merges++;
    return 0;
}

void tokspec_mark_eog(tokenizer_spec *t, int32_t id)
{
    if (id >= 0 && id < t->n)
        t->tokens[id].kind |= KRT_TOK_EOG;
}

/* Whether a piece is <0xXX>. */
int tokspec_is_byte_piece(const char *s, size_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return 0;
    for (int k = 3; k < 5; k++)
        if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'A' && s[k] <= 'F') ||
              (s[k] >= 'a' && s[k] <= 'f')))
            return 0;
    return 1;
}

int tokspec_check_bytes(const char *path, const tokenizer_spec *t)
{
    if (!(t->flags & KRT_TOK_BYTE_UNITS))
        return 0;
    unsigned char seen[256] = {0};
    for (int32_t i = 0; i < t->n; i++)
        if (t->tokens[i].len == 1 && (t->tokens[i].kind & ~KRT_TOK_EOG) != KRT_TOK_CONTROL)
            seen[(unsigned char)t->tokens[i].piece[0]] = 1;
    for (int b = 0; b < 256; b++)
        if (!seen[b]) {
            diag_file_error(path, "byte-level vocabulary without a token for byte 0x%02x "
                            "(byte-level BPE starts from one token per byte)", b);
            return -1;
        }
    return 0;
}

/* ---- an index of strings (the file's own spelling of each piece) ---- */

static uint32_t str_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int str_index_init(str_index *x, int32_t n)
{
    x->mask = 15;
    while (x->mask + 1 < 2 * (uint64_t)n)
        x->mask = 2 * x->mask + 1;
    x->slots = calloc((size_t)x->mask + 1, sizeof *x->slots);
    return x->slots ? 0 : -1;
}

void str_index_add(str_index *x, const char *s, size_t len, int32_t id)
{
    uint32_t h = str_hash(s, len) & x->mask;
    for (; x->slots[h].s; h = (h + 1) & x->mask)
        if (x->slots[h].len == len && !memcmp(x->slots[h].s, s, len))
            return;                                    /* the first id keeps a string */
    x->slots[h] = (str_slot){s, len, id};
}

int32_t str_index_find(const str_index *x, const char *s, size_t len)
{
    for (uint32_t h = str_hash(s, len) & x->mask; x->slots[h].s; h = (h + 1) & x->mask)
        if (x->slots[h].len == len && !memcmp(x->slots[h].s, s, len))
            return x->slots[h].id;
    return -1;
}

int tokspec_merge(tokenizer_spec *t, const str_index *x, const char *a, size_t alen,
                  const char *b, size_t blen, uint32_t *cap)
{
    char small[256], *joined = alen + blen <= sizeof small ? small : malloc(alen + blen + 1);
    if (!joined)
        return -1;
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, blen);
    int32_t l = str_index_find(x, a, alen), r = str_index_find(x, b, blen);
    int32_t c = str_index_find(x, joined, alen + blen);
    if (joined != small)
        free(joined);
    if (l < 0 || r < 0 || c < 0)
        return -2;
    /* the index holds the file's spellings, the tokens their bytes: an added token (or a
     * duplicate spelling) can make the merged token's bytes other than the two joined, which
     * the program's tokenizer refuses */
    const tokenizer_token *tl = &t->tokens[l], *tr = &t->tokens[r], *tc = &t->tokens[c];
    if ((uint64_t)tl->len + tr->len != tc->len || memcmp(tc->piece, tl->piece, tl->len) ||
        memcmp(tc->piece + tl->len, tr->piece, tr->len))
        return -3;
    return tokspec_add_merge(t, l, r, c, cap);
}

void str_index_free(str_index *x)
{
    free(x->slots);
    x->slots = NULL;
}

/* ---- llama2.c tokenizer.bin ---- */

static int read_all(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_file_error(path, "cannot open: %s", strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *b = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b, cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        diag_file_error(path, bad ? "cannot read" : "too large or out of memory");
        free(buf);
        return -1;
    }
    *data = buf, *size = n;
    return 0;
}

int tokenizer_from_llama2c(const char *path, int32_t vocab, tokenizer_spec *out)
{
    unsigned char *d;
    size_t size, at = 4;
    if (read_all(path, &d, &size) < 0)
        return -1;
    if (vocab <= 0 || tokspec_alloc(out, vocab, "llama2.c tokenizer.bin") < 0) {
        diag_file_error(path, "cannot hold a vocabulary of %d tokens", (int)vocab);
        free(d);
        return -1;
    }
    if (size < 4) {
        diag_file_error(path, "%zu bytes: too short for a llama2.c tokenizer (its first 4 bytes "
                        "are the longest token's length)", size);
        goto fail;
    }
    for (int32_t i = 0; i < vocab; i++) {
        float score;
        int32_t len;
        if (size - at < 8) {
            diag_file_error(path, "ends at byte %zu, in token %d of the model's %d", size, (int)i,
                            (int)vocab);
            goto fail;
        }
        memcpy(&score, d + at, 4);
        memcpy(&len, d + at + 4, 4);
        at += 8;
        if (len < 0 || (size_t)len > size - at) {
            diag_file_error(path, "token %d at byte %zu: length %d past the end of the file", (int)i,
                            at - 4, (int)len);
            goto fail;
        }
        if (len > KILN_MAX_TOKEN_BYTES) {
            diag_file_error(path, "token %d at byte %zu: length %d; the limit is %d", (int)i,
                            at - 4, (int)len, KILN_MAX_TOKEN_BYTES);
            goto fail;
        }
        if (!isfinite(score)) {
            diag_file_error(path, "token %d at byte %zu: score is not a finite number", (int)i,
                            at - 8);
            goto fail;
        }
        const char *s = (const char *)d + at;
        /* run.c: 0 <unk>, 1 BOS, 2 EOS; pieces <0xXX> are bytes */
        uint32_t kind = i <= 2 ? KRT_TOK_CONTROL
                      : tokspec_is_byte_piece(s, (size_t)len) ? KRT_TOK_BYTE : KRT_TOK_NORMAL;
        if (tokspec_set(out, i, s, (size_t)len, UNMAP_NONE, kind, score) < 0) {
            diag_file_error(path, "out of memory");
            goto fail;
        }
        at += (size_t)len;
    }
    if (at != size) {
        diag_file_error(path, "%zu bytes after the model's %d tokens (a tokenizer of another "
                        "vocabulary?)", size - at, (int)vocab);
        goto fail;
    }
    out->algorithm = KRT_TOK_SCORE;
    out->flags = KRT_TOK_PREFIX_SPACE | KRT_TOK_STRIP_SPACE;
    out->unk = 0;
    out->bos = vocab > 1 ? 1 : -1;
    out->eos = vocab > 2 ? 2 : -1;
    tokspec_mark_eog(out, out->eos);
    tokspec_mark_eog(out, out->bos);   /* run.c stops when the model starts a new text */
    free(d);
    return 0;
fail:
    free(d);
    tokenizer_free(out);
    return -1;
}

/* ---- which source ---- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

int tokenizer_read(const char *path, int32_t vocab, tokenizer_spec *out)
{
    unsigned char head[16];
    size_t got = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_file_error(path, "cannot open: %s", strerror(errno));
        return -1;
    }
    got = fread(head, 1, sizeof head, f);
    fclose(f);
    size_t k = 0;
    while (k < got && (head[k] == ' ' || head[k] == '\n' || head[k] == '\t' || head[k] == '\r'))
        k++;
    if (ends_with(path, ".json") || (k < got && head[k] == '{'))
        return tokenizer_from_hf_json(path, out);
    if (ends_with(path, ".gguf") || (got >= 4 && !memcmp(head, "GGUF", 4))) {
        ckpt *c = ckpt_open(path);
        if (!c)
            return -1;
        int rc = tokenizer_from_gguf(c, out);
        if (rc == 0)
            diag_file_error(path, "has no tokenizer (no tokenizer.ggml.model)");
        ckpt_close(c);
        return rc == 1 ? 0 : -1;
    }
    return tokenizer_from_llama2c(path, vocab, out);
}

/* ---- the serialized form (runtime/tokenizer.c) ---- */

static unsigned char *put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
    return p + 4;
}

int tokenizer_serialize(const tokenizer_spec *t, void **data, size_t *size)
{
    uint64_t text = 0;
    for (int32_t i = 0; i < t->n; i++)
        text += t->tokens[i].len;
    uint64_t total = 48 + 16 * (uint64_t)t->n + 12 * (uint64_t)t->n_merges + text;
    if (text > UINT32_MAX || total > UINT32_MAX)
        return -1;
    unsigned char *buf = malloc((size_t)total), *p = buf;
    if (!buf)
        return -1;
    memcpy(p, KRT_TOK_MAGIC, 4);
    p = put32(p + 4, KRT_TOK_VERSION);
    p = put32(p, t->algorithm);
    p = put32(p, t->flags);
    p = put32(p, t->pretok);
    p = put32(p, (uint32_t)t->n);
    p = put32(p, (uint32_t)t->bos);
    p = put32(p, (uint32_t)t->eos);
    p = put32(p, (uint32_t)t->unk);
    p = put32(p, t->n_merges);
    p = put32(p, (uint32_t)text);
    p = put32(p, 0);
    uint32_t off = 0;
    for (int32_t i = 0; i < t->n; i++) {
        uint32_t score;
        memcpy(&score, &t->tokens[i].score, 4);
        p = put32(p, off);
        p = put32(p, t->tokens[i].len);
        p = put32(p, score);
        p = put32(p, t->tokens[i].kind);
        off += t->tokens[i].len;
    }
    for (uint32_t m = 0; m < t->n_merges; m++)
        for (int k = 0; k < 3; k++)
            p = put32(p, (uint32_t)t->merges[m][k]);
    for (int32_t i = 0; i < t->n; i++) {
        if (t->tokens[i].len)
            memcpy(p, t->tokens[i].piece, t->tokens[i].len);
        p += t->tokens[i].len;
    }
    *data = buf, *size = (size_t)total;
    return 0;
}

int tokenizer_for_build(const char *path, const ckpt *ck, int64_t vocab, int verbose,
                        void **data, size_t *size)
{
    tokenizer_spec t;
    const char *from = path;
    int rc;
    if (path && !strcmp(path, "none"))
        return 0;
    if (!path && ck && ck->tokenizer_json)   /* a Hugging Face folder's */
        path = from = ck->tokenizer_json;
    if (path) {
        if (vocab <= 0 || vocab > INT32_MAX) {
            diag_file_error(path, "the spec has no integer parameter 'vocab' to size it by");
            return -1;
        }
        if (vocab > KILN_MAX_VOCAB) {   /* tokenizer.bin is sized by it before it is read */
            diag_file_error(path, "the spec's vocab of %lld tokens is more than the limit of %d",
                            (long long)vocab, KILN_MAX_VOCAB);
            return -1;
        }
        rc = tokenizer_read(path, (int32_t)vocab, &t) < 0 ? -1 : 1;
    } else if (ck && ck->format == CKPT_GGUF) {
        rc = tokenizer_from_gguf(ck, &t);
        from = ck->path;
    } else {
        rc = 0;
    }
    if (rc <= 0) {
        if (rc == 0 && verbose)
            fprintf(stderr, "kiln: no tokenizer (the program takes token ids only; "
                            "--tokenizer FILE adds one)\n");
        return rc;
    }
    if (vocab > 0 && t.n > vocab) {
        diag_file_error(from, "the tokenizer has %d tokens, more than the model's vocabulary "
                        "of %lld", (int)t.n, (long long)vocab);
        tokenizer_free(&t);
        return -1;
    }
    if (tokenizer_serialize(&t, data, size) < 0) {
        diag_file_error(from, "the tokenizer is too large to store");
        tokenizer_free(&t);
        return -1;
    }
    if (verbose)
        fprintf(stderr, "kiln: tokenizer from %s: %s, %d tokens, %u merges, BOS %d, EOS %d "
                "(%zu bytes)\n", from, t.what, (int)t.n, t.n_merges, (int)t.bos, (int)t.eos,
                *size);
    tokenizer_free(&t);
    return 1;
}

void tokenizer_free(tokenizer_spec *t)
{
    for (int32_t i = 0; t->tokens && i < t->n; i++)
        free(t->tokens[i].piece);
    free(t->tokens);
    free(t->merges);
    memset(t, 0, sizeof *t);
}
