/* tokenizer.c - text to token ids and back inside a program (contract: tokenizer.h).
 *
 * The serialized form (written by the compiler, weights/tokenizer.c; stored in the weight
 * blob as the entry "kiln.tokenizer"), little-endian, every field 4 bytes:
 *
 *   header, 48 bytes:  "KTOK", version (1), algorithm (1 score merges, 2 rank merges),
 *                      flags (KRT_TOK_PREFIX_SPACE | STRIP_SPACE | BYTE_UNITS | WHOLE_WORDS),
 *                      pre-tokenizer (0 none, 1 GPT-2, 2 LLaMA-3; rank merges only),
 *                      n_tokens, bos, eos, unk (int32, -1 for none), n_merges, text_bytes, 0
 *   tokens, 16 bytes each:  offset and length of its piece in the text, score (f32; score
 *                      merges), kind (KRT_TOK_NORMAL, CONTROL or BYTE, | KRT_TOK_EOG)
 *   merges, 12 bytes each, best first (rank = index; rank merges only):  left, right, result
 *                      token ids; result's piece is left's piece followed by right's
 *   text:              the pieces' bytes (raw bytes: a SentencePiece "▁" is already a space,
 *                      a byte-level BPE piece already its bytes)
 *
 * and nothing after it. A byte token's piece is "<0xXX>". Everything is checked by
 * krt_tok_open (it comes from a file): sizes, offsets, ids, kinds, each merge's pieces.
 *
 * Score merges (llama2.c's run.c encode): a space before non-empty text, each code point its
 * piece or else its bytes' byte tokens, then again and again the adjacent pair whose joined
 * piece is a token of the best score (above -1e10) becomes that token, the leftmost on ties.
 * Rank merges (byte-level BPE and Hugging Face's BPE): the text cut into pre-tokens (the
 * GPT-2 and LLaMA-3 regular expressions, coded by hand below), each pre-token into bytes (or
 * code points with byte fallback), then the adjacent pair of the lowest merge rank merged,
 * the leftmost on ties, until no pair has a merge.
 * Control tokens are never produced from text: a special token written in the prompt stays
 * the characters it is made of.
 */
#include "tokenizer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_unicode.h"

#define HEADER_BYTES 48u
#define TOKEN_BYTES 16u
#define MERGE_BYTES 12u
#define NO_MERGE_SCORE -1e10f   /* run.c's starting best score: a piece scoring no more never merges */

typedef struct tok_entry {
    uint32_t off, len;
    float score;
    uint32_t kind;             /* krt_tok_kind | KRT_TOK_EOG */
} tok_entry;

typedef struct merge_slot {    /* the merge hash: (left, right) -> result, rank */
    int32_t left, right, result;
    uint32_t rank;
} merge_slot;

struct krt_tok {
    uint32_t algorithm, flags, pretok;
    int32_t n, bos, eos, unk;
    const unsigned char *text;
    tok_entry *tokens;
    uint32_t max_len;          /* the longest piece */
    int32_t *pieces;           /* open addressing, piece -> id (-1 empty); non-control pieces */
    uint32_t pieces_mask;
    merge_slot *merges;        /* open addressing on (left, right); left -1: empty */
    uint32_t merges_mask;
    int32_t byte_token[256];   /* the token of each byte: a byte token, or (byte units) the
                                  single-byte piece; -1 none */
    unsigned char byte_value[256];
};

/* ---- reading the serialized form ---- */

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float rdf32(const unsigned char *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t hash_bytes(const unsigned char *s, size_t n)
{
    uint32_t h = 2166136261u;                        /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

static uint32_t hash_pair(int32_t a, int32_t b)
{
    uint64_t x = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* A table of at least twice n slots, a power of two. */
static uint32_t table_size(uint32_t n)
{
    uint32_t size = 16;
    while (size < 2 * (uint64_t)n)
        size *= 2;
    return size;
}

static const unsigned char *piece_of(const krt_tok *t, int32_t id, uint32_t *len)
{
    *len = t->tokens[id].len;
    return t->text + t->tokens[id].off;
}

/* The id of the non-control piece s[0..n-1], or -1. */
static int32_t find_piece(const krt_tok *t, const unsigned char *s, size_t n)
{
    if (n == 0 || n > t->max_len)
        return -1;
    for (uint32_t h = hash_bytes(s, n) & t->pieces_mask;; h = (h + 1) & t->pieces_mask) {
        int32_t id = t->pieces[h];
        if (id < 0)
            return -1;
        if (t->tokens[id].len == n && memcmp(t->text + t->tokens[id].off, s, n) == 0)
            return id;
    }
}

/* Inserts id unless its piece is there already (the lowest id keeps a piece). */
static void add_piece(krt_tok *t, int32_t id)
{
    uint32_t len;
    const unsigned char *s = piece_of(t, id, &len);
    uint32_t h = hash_bytes(s, len) & t->pieces_mask;
    for (; t->pieces[h] >= 0; h = (h + 1) & t->pieces_mask) {
        int32_t o = t->pieces[h];
        if (t->tokens[o].len == len && memcmp(t->text + t->tokens[o].off, s, len) == 0)
            return;
    }
    t->pieces[h] = id;
}

static const merge_slot *find_merge(const krt_tok *t, int32_t a, int32_t b)
{
    if (!t->merges)
        return NULL;
    for (uint32_t h = hash_pair(a, b) & t->merges_mask;; h = (h + 1) & t->merges_mask) {
        const merge_slot *m = &t->merges[h];
        if (m->left < 0)
            return NULL;
        if (m->left == a && m->right == b)
            return m;
    }
}

static int hex_digit(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
         : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static krt_tok *fail(krt_tok *t, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static krt_tok *fail(krt_tok *t, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    krt_tok_free(t);
    return NULL;
}

/* The tokens' table: pieces inside the text, known kinds, byte tokens well formed. */
static krt_tok *read_tokens(krt_tok *t, const unsigned char *p, uint32_t text_bytes, char *err,
                            size_t errlen)
{
    for (int32_t i = 0; i < t->n; i++, p += TOKEN_BYTES) {
        tok_entry *e = &t->tokens[i];
        e->off = rd32(p), e->len = rd32(p + 4), e->score = rdf32(p + 8), e->kind = rd32(p + 12);
        if (e->off > text_bytes || e->len > text_bytes - e->off)
            return fail(t, err, errlen, "token %d: piece of %u bytes outside the text", (int)i,
                        e->len);
        uint32_t kind = e->kind & ~KRT_TOK_EOG;
        if (kind > KRT_TOK_BYTE)
            return fail(t, err, errlen, "token %d: unknown kind %u", (int)i, e->kind);
        if (isnan(e->score))
            return fail(t, err, errlen, "token %d: score is not a number", (int)i);
        if (kind == KRT_TOK_BYTE) {
            const unsigned char *s = t->text + e->off;
            int hi = e->len == 6 ? hex_digit(s[3]) : -1, lo = e->len == 6 ? hex_digit(s[4]) : -1;
            if (hi < 0 || lo < 0 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
                return fail(t, err, errlen, "token %d: a byte token's piece is not <0xXX>",
                            (int)i);
            int b = hi * 16 + lo;
            if (t->byte_token[b] < 0 && !(t->flags & KRT_TOK_BYTE_UNITS))
                t->byte_token[b] = i;
        }
        if (e->len > t->max_len)
            t->max_len = e->len;
    }
    return t;
}

/* The merges: ids in range, each result the join of its two pieces; the first of a pair
 * (the best rank) is kept. */
static krt_tok *read_merges(krt_tok *t, const unsigned char *p, uint32_t n_merges, char *err,
                            size_t errlen)
{
    if (n_merges == 0)
        return t;
    t->merges_mask = table_size(n_merges) - 1;
    if (!(t->merges = malloc(((size_t)t->merges_mask + 1) * sizeof *t->merges)))
        return fail(t, err, errlen, "out of memory");
    for (uint32_t h = 0; h <= t->merges_mask; h++)
        t->merges[h].left = -1;
    for (uint32_t r = 0; r < n_merges; r++, p += MERGE_BYTES) {
        uint32_t a = rd32(p), b = rd32(p + 4), c = rd32(p + 8);
        if (a >= (uint32_t)t->n || b >= (uint32_t)t->n || c >= (uint32_t)t->n)
            return fail(t, err, errlen, "merge %u: a token id out of range (vocabulary of %d)",
                        r, t->n);
        const tok_entry *x = &t->tokens[a], *y = &t->tokens[b], *z = &t->tokens[c];
        if ((uint64_t)x->len + y->len != z->len ||
            memcmp(t->text + x->off, t->text + z->off, x->len) != 0 ||
            memcmp(t->text + y->off, t->text + z->off + x->len, y->len) != 0)
            return fail(t, err, errlen, "merge %u: token %u is not its two pieces joined",
                        r, c);
        uint32_t h = hash_pair((int32_t)a, (int32_t)b) & t->merges_mask;
        while (t->merges[h].left >= 0 &&
               !(t->merges[h].left == (int32_t)a && t->merges[h].right == (int32_t)b))
            h = (h + 1) & t->merges_mask;
        if (t->merges[h].left < 0)
            t->merges[h] = (merge_slot){(int32_t)a, (int32_t)b, (int32_t)c, r};
    }
    return t;
}

krt_tok *krt_tok_open(const void *data, size_t size, char *err, size_t errlen)
{
    const unsigned char *d = data;
    if (err && errlen)
        err[0] = 0;
    if (!d || size < HEADER_BYTES)
        return fail(NULL, err, errlen, "%zu bytes: too small for a tokenizer (%u)",
                    size, HEADER_BYTES);
    if (memcmp(d, KRT_TOK_MAGIC, 4) != 0)
        return fail(NULL, err, errlen, "bad magic (not a kiln tokenizer)");
    if (rd32(d + 4) != KRT_TOK_VERSION)
        return fail(NULL, err, errlen, "version %u, this program reads version %u",
                    rd32(d + 4), KRT_TOK_VERSION);
    krt_tok *t = calloc(1, sizeof *t);
    if (!t)
        return fail(NULL, err, errlen, "out of memory");
    t->algorithm = rd32(d + 8), t->flags = rd32(d + 12), t->pretok = rd32(d + 16);
    uint32_t n = rd32(d + 20), n_merges = rd32(d + 36), text_bytes = rd32(d + 40);
    t->bos = (int32_t)rd32(d + 24), t->eos = (int32_t)rd32(d + 28), t->unk = (int32_t)rd32(d + 32);
    for (int b = 0; b < 256; b++)
        t->byte_token[b] = -1, t->byte_value[b] = (unsigned char)b;
    if (t->algorithm != KRT_TOK_SCORE && t->algorithm != KRT_TOK_RANK)
        return fail(t, err, errlen, "unknown algorithm %u", t->algorithm);
    if (t->flags & ~15u)
        return fail(t, err, errlen, "unknown flags 0x%x", t->flags);
    if (t->pretok > KRT_TOK_PRE_LLAMA3 || (t->algorithm == KRT_TOK_SCORE && t->pretok))
        return fail(t, err, errlen, "pre-tokenizer %u with algorithm %u", t->pretok,
                    t->algorithm);
    if (rd32(d + 44) != 0)
        return fail(t, err, errlen, "reserved header field is %u, not 0", rd32(d + 44));
    uint64_t room = size - HEADER_BYTES;
    if (n == 0 || n > room / TOKEN_BYTES || n > INT32_MAX / 2)
        return fail(t, err, errlen, "%u tokens do not fit in %zu bytes", n, size);
    room -= (uint64_t)n * TOKEN_BYTES;
    if (n_merges > room / MERGE_BYTES || (t->algorithm == KRT_TOK_SCORE && n_merges))
        return fail(t, err, errlen, "%u merges do not fit (or score merges with a merge "
                    "table; %zu bytes)", n_merges, size);
    room -= (uint64_t)n_merges * MERGE_BYTES;
    if (text_bytes != room)
        return fail(t, err, errlen, "the text is %u bytes, %llu follow the tables", text_bytes,
                    (unsigned long long)room);
    t->n = (int32_t)n;
    const int32_t special[3] = {t->bos, t->eos, t->unk};
    for (int k = 0; k < 3; k++)
        if (special[k] < -1 || special[k] >= t->n)
            return fail(t, err, errlen, "%s id %d out of range (vocabulary of %d)",
                        k == 0 ? "BOS" : k == 1 ? "EOS" : "UNK", special[k], t->n);
    t->text = d + HEADER_BYTES + (uint64_t)n * TOKEN_BYTES + (uint64_t)n_merges * MERGE_BYTES;
    t->pieces_mask = table_size(n) - 1;
    t->tokens = malloc((size_t)n * sizeof *t->tokens);
    t->pieces = malloc(((size_t)t->pieces_mask + 1) * sizeof *t->pieces);
    if (!t->tokens || !t->pieces)
        return fail(t, err, errlen, "out of memory");
    memset(t->pieces, 0xff, ((size_t)t->pieces_mask + 1) * sizeof *t->pieces);
    if (!read_tokens(t, d + HEADER_BYTES, text_bytes, err, errlen))
        return NULL;
    for (int32_t i = 0; i < t->n; i++)
        if ((t->tokens[i].kind & ~KRT_TOK_EOG) != KRT_TOK_CONTROL && t->tokens[i].len)
            add_piece(t, i);
    if (!read_merges(t, d + HEADER_BYTES + (uint64_t)n * TOKEN_BYTES, n_merges, err, errlen))
        return NULL;
    if (t->flags & KRT_TOK_BYTE_UNITS)
        for (int b = 0; b < 256; b++) {
            unsigned char c = (unsigned char)b;
            if ((t->byte_token[b] = find_piece(t, &c, 1)) < 0)
                return fail(t, err, errlen, "byte-level vocabulary without a token for byte "
                            "0x%02x", b);
        }
    return t;
}

void krt_tok_free(krt_tok *t)
{
    if (!t)
        return;
    free(t->tokens);
    free(t->pieces);
    free(t->merges);
    free(t);
}

int32_t krt_tok_vocab(const krt_tok *t) { return t->n; }
int32_t krt_tok_bos(const krt_tok *t) { return t->bos; }
int32_t krt_tok_eos(const krt_tok *t) { return t->eos; }

int krt_tok_is_eog(const krt_tok *t, int32_t id)
{
    return id >= 0 && id < t->n && (id == t->eos || (t->tokens[id].kind & KRT_TOK_EOG));
}

size_t krt_tok_decode(const krt_tok *t, int32_t prev, int32_t id, const char **bytes)
{
    *bytes = "";
    if (id < 0 || id >= t->n)
        return 0;
    const tok_entry *e = &t->tokens[id];
    uint32_t kind = e->kind & ~KRT_TOK_EOG;
    if (kind == KRT_TOK_CONTROL)
        return 0;
    if (kind == KRT_TOK_BYTE) {
        const unsigned char *s = t->text + e->off;
        *bytes = (const char *)&t->byte_value[hex_digit(s[3]) * 16 + hex_digit(s[4])];
        return 1;
    }
    const char *s = (const char *)t->text + e->off;
    size_t len = e->len;
    if ((t->flags & KRT_TOK_STRIP_SPACE) && (prev < 0 || prev == t->bos) && len && s[0] == ' ')
        s++, len--;
    *bytes = s;
    return len;
}

/* ---- encoding ---- */

/* A growing list of ids. */
typedef struct ids {
    int32_t *v;
    size_t n, cap;
    int oom;
} ids;

static void push(ids *l, int32_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = id;
}

/* Bytes of the code point at s[0 .. n-1] as run.c groups them: one byte, then the
 * continuation bytes (10xxxxxx) after it, at most 4 bytes in all. */
static size_t cp_group(const unsigned char *s, size_t n)
{
    size_t k = 1;
    while (k < n && k < 4 && (s[k] & 0xC0) == 0x80)
        k++;
    return k;
}

/* Decodes the code point at s[0 .. n-1] (n >= 1) into *cp and returns its byte length;
 * a byte that starts no valid sequence is one code point of its own, 0xFFFFFFFF (of no
 * class). */
static size_t utf8_at(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 1) {
        *cp = c;
        return 1;
    }
    if (len == 0 || len > n)
        goto invalid;
    uint32_t v = c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            goto invalid;
        v = v << 6 | (s[k] & 0x3F);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        goto invalid;
    *cp = v;
    return len;
invalid:
    *cp = 0xFFFFFFFFu;
    return 1;
}

/* One code point's bytes as tokens: its piece, else its bytes' byte tokens (else unk). */
static void push_unit(const krt_tok *t, ids *out, const unsigned char *s, size_t len)
{
    int32_t id = find_piece(t, s, len);
    if (id >= 0) {
        push(out, id);
        return;
    }
    for (size_t k = 0; k < len; k++) {
        int32_t b = t->byte_token[s[k]];
        if (b >= 0)
            push(out, b);
        else if (t->unk >= 0 && !(k > 0 && t->byte_token[s[k - 1]] < 0))
            push(out, t->unk);             /* one unk for the code point's unknown bytes */
    }
}

/* Score merges over sym[0 .. *n-1] (run.c): the best-scoring joined piece, leftmost on ties.
 * cand[i] is the token of sym[i] + sym[i+1] (-1: none); only the neighbours of a merge
 * change. */
static int score_merges(const krt_tok *t, int32_t *sym, size_t *n)
{
    size_t cnt = *n;
    if (cnt < 2)
        return 0;
    int32_t *cand = malloc(cnt * sizeof *cand);
    unsigned char *buf = malloc(2 * (size_t)t->max_len + 1);
    if (!cand || !buf) {
        free(cand), free(buf);
        return -1;
    }
    for (size_t i = 0; i + 1 < cnt; i++)
        cand[i] = -2;                      /* not computed yet */
    for (;;) {
        float best = NO_MERGE_SCORE;
        size_t at = cnt;
        for (size_t i = 0; i + 1 < cnt; i++) {
            if (cand[i] == -2) {
                uint32_t la, lb;
                const unsigned char *a = piece_of(t, sym[i], &la), *b = piece_of(t, sym[i + 1], &lb);
                memcpy(buf, a, la);
                memcpy(buf + la, b, lb);
                cand[i] = find_piece(t, buf, (size_t)la + lb);
            }
            if (cand[i] >= 0 && t->tokens[cand[i]].score > best)
                best = t->tokens[cand[i]].score, at = i;
        }
        if (at == cnt)
            break;
        sym[at] = cand[at];
        memmove(sym + at + 1, sym + at + 2, (cnt - at - 2) * sizeof *sym);
        memmove(cand + at + 1, cand + at + 2, (cnt - at - 2) * sizeof *cand);
        cnt--;
        if (at > 0)
            cand[at - 1] = -2;
        if (at + 1 < cnt)
            cand[at] = -2;
    }
    free(cand), free(buf);
    *n = cnt;
    return 0;
}

/* Rank merges over sym[0 .. *n-1]: the pair of the lowest rank, leftmost on ties. */
static int rank_merges(const krt_tok *t, int32_t *sym, size_t *n)
{
    size_t cnt = *n;
    if (cnt < 2)
        return 0;
    const merge_slot **cand = malloc(cnt * sizeof *cand);
    if (!cand)
        return -1;
    for (size_t i = 0; i + 1 < cnt; i++)
        cand[i] = find_merge(t, sym[i], sym[i + 1]);
    for (;;) {
        size_t at = cnt;
        for (size_t i = 0; i + 1 < cnt; i++)
            if (cand[i] && (at == cnt || cand[i]->rank < cand[at]->rank))
                at = i;
        if (at == cnt)
            break;
        sym[at] = cand[at]->result;
        memmove(sym + at + 1, sym + at + 2, (cnt - at - 2) * sizeof *sym);
        memmove(cand + at + 1, cand + at + 2, (cnt - at - 2) * sizeof *cand);
        cnt--;
        if (at > 0)
            cand[at - 1] = find_merge(t, sym[at - 1], sym[at]);
        if (at + 1 < cnt)
            cand[at] = find_merge(t, sym[at], sym[at + 1]);
    }
    free(cand);
    *n = cnt;
    return 0;
}

/* ---- pre-tokenizers: where the pre-token starting at s[i] ends ---- */

typedef struct scan {
    const unsigned char *s;
    size_t n;
} scan;

enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };

/* The class of the code point at i (and its length). */
static int class_at(const scan *x, size_t i, size_t *len)
{
    uint32_t cp;
    *len = utf8_at(x->s + i, x->n - i, &cp);
    if (cp == 0xFFFFFFFFu)
        return C_OTHER;
    if (krt_unicode_space(cp))
        return C_SPACE;
    int c = krt_unicode_class(cp);
    return c == 'L' ? C_LETTER : c == 'N' ? C_NUMBER : C_OTHER;
}

/* The end of the run of code points of class cls from i (max code points at most). */
static size_t run_of(const scan *x, size_t i, int cls, size_t max)
{
    size_t len;
    for (size_t k = 0; k < max && i < x->n && class_at(x, i, &len) == cls; k++)
        i += len;
    return i;
}

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i (case-insensitive when icase): the end, or 0. */
static size_t contraction(const scan *x, size_t i, int icase)
{
    if (x->s[i] != '\'' || i + 1 >= x->n)
        return 0;
    int a = icase ? lower(x->s[i + 1]) : x->s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return i + 2;
    if (i + 2 >= x->n)
        return 0;
    int b = icase ? lower(x->s[i + 2]) : x->s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return i + 3;
    return 0;
}

/* The white space from i: \s+(?!\S) then \s+ (both patterns end with these two). The run
 * to the end of the text is taken whole; before other text, all but its last code point
 * (which goes with what follows), unless it is a single one. */
static size_t space_run(const scan *x, size_t i)
{
    size_t len, j = i, last = i;
    while (j < x->n && class_at(x, j, &len) == C_SPACE)
        last = j, j += len;
    if (j == x->n || last == i)
        return j;
    return last;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t split_gpt2(const scan *x, size_t i)
{
    size_t len, end = contraction(x, i, 0);
    if (end)
        return end;
    size_t k = x->s[i] == ' ' && i + 1 < x->n ? i + 1 : i;
    int cls = class_at(x, k, &len);
    if (cls != C_SPACE)
        return run_of(x, k, cls, SIZE_MAX);
    return space_run(x, i);
}

static int newline(unsigned char c) { return c == '\r' || c == '\n'; }

/* LLaMA-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t split_llama3(const scan *x, size_t i)
{
    size_t len, len2, end = contraction(x, i, 1);
    if (end)
        return end;
    int cls = class_at(x, i, &len);
    if (cls == C_LETTER)
        return run_of(x, i, C_LETTER, SIZE_MAX);
    if (cls != C_NUMBER && !newline(x->s[i]) && i + len < x->n &&
        class_at(x, i + len, &len2) == C_LETTER)
        return run_of(x, i + len, C_LETTER, SIZE_MAX);
    if (cls == C_NUMBER)
        return run_of(x, i, C_NUMBER, 3);
    size_t k = x->s[i] == ' ' && i + 1 < x->n ? i + 1 : i;
    if (class_at(x, k, &len2) == C_OTHER) {
        end = run_of(x, k, C_OTHER, SIZE_MAX);
        while (end < x->n && newline(x->s[end]))
            end++;
        return end;
    }
    size_t j = i, nl = 0;                  /* \s*[\r\n]+: up to the run's last newline */
    while (j < x->n && class_at(x, j, &len2) == C_SPACE) {
        if (newline(x->s[j]))
            nl = j + 1;
        j += len2;
    }
    return nl ? nl : space_run(x, i);
}

/* Merges the units out->v[start ..] in place with `merge` (score or rank merges). */
static int merge_units(const krt_tok *t, ids *out, size_t start,
                       int (*merge)(const krt_tok *, int32_t *, size_t *))
{
    if (out->oom)
        return -1;
    size_t cnt = out->n - start;
    if (cnt == 0)              /* nothing to merge (and out->v may still be NULL) */
        return 0;
    if (merge(t, out->v + start, &cnt) < 0)
        return -1;
    out->n = start + cnt;
    return 0;
}

/* One pre-token's ids (rank merges): the piece itself (whole words), else its units merged. */
static int encode_word(const krt_tok *t, const unsigned char *s, size_t n, ids *out)
{
    int32_t id;
    if ((t->flags & KRT_TOK_WHOLE_WORDS) && (id = find_piece(t, s, n)) >= 0) {
        push(out, id);
        return 0;
    }
    size_t start = out->n;
    if (t->flags & KRT_TOK_BYTE_UNITS)
        for (size_t k = 0; k < n; k++)
            push(out, t->byte_token[s[k]]);
    else
        for (size_t k = 0, len; k < n; k += len) {
            uint32_t cp;
            len = utf8_at(s + k, n - k, &cp);
            push_unit(t, out, s + k, len);
        }
    return merge_units(t, out, start, rank_merges);
}

static int encode_text(const krt_tok *t, const unsigned char *s, size_t n, ids *out)
{
    if (t->algorithm == KRT_TOK_SCORE) {
        size_t start = out->n;
        for (size_t k = 0, len; k < n; k += len) {
            len = cp_group(s + k, n - k);
            push_unit(t, out, s + k, len);
        }
        return merge_units(t, out, start, score_merges);
    }
    scan x = {s, n};
    for (size_t i = 0; i < n;) {
        size_t end = t->pretok == KRT_TOK_PRE_GPT2 ? split_gpt2(&x, i)
                   : t->pretok == KRT_TOK_PRE_LLAMA3 ? split_llama3(&x, i) : n;
        if (end <= i)                      /* never: every pattern ends in \s+ or a run */
            end = i + 1;
        if (encode_word(t, s + i, end - i, out) < 0)
            return -1;
        i = end;
    }
    return 0;
}

int64_t krt_tok_encode(const krt_tok *t, const char *text, size_t len, int add_bos,
                       int32_t *ids_out, int64_t cap)
{
    ids out = {0};
    if (add_bos && t->bos >= 0)
        push(&out, t->bos);
    const unsigned char *s = (const unsigned char *)text;
    unsigned char *joined = NULL;
    if (len > 0 && (t->flags & KRT_TOK_PREFIX_SPACE)) {
        if (!(joined = malloc(len + 1)))
            return -1;
        joined[0] = ' ';
        memcpy(joined + 1, text, len);
        s = joined, len++;
    }
    int rc = len > 0 ? encode_text(t, s, len, &out) : 0;
    free(joined);
    if (rc < 0 || out.oom) {
        free(out.v);
        return -1;
    }
    for (size_t k = 0; k < out.n && (int64_t)k < cap; k++)
        ids_out[k] = out.v[k];
    free(out.v);
    return (int64_t)out.n;
}
