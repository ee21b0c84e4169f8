/* gguf.c - GGUF checkpoints (llama.cpp's format): reading, metadata lookups, and writing
 * det-weights.
 *
 * Layout, little-endian: "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata count;
 * the metadata entries (key string, u32 value type, value); the tensor infos (name string,
 * u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset from the data
 * section, a multiple of the alignment); zero padding to the alignment (general.alignment,
 * default 32); the data section. A string is a u64 byte count and the bytes (no NUL); an
 * array a u32 item type, a u64 count and the items.
 *
 * The reader checks every count, length, type and offset against the file before using it
 * and names the place of any problem (the key or tensor, the byte offset). Metadata is read
 * twice over the same code: once to check it and size one allocation, once to fill it.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

#define GGUF_HEADER 24           /* magic, version, tensor count, metadata count */
#define GGUF_MAX_TENSORS ((unsigned)KILN_MAX_CKPT_TENSORS)   /* base/limits.h */
#define GGUF_MAX_KV ((unsigned)KILN_MAX_GGUF_KV)
#define GGUF_MAX_KEY ((unsigned)KILN_MAX_GGUF_KEY)      /* the spec's limit */
#define GGUF_MAX_NAME ((unsigned)KILN_MAX_TENSOR_NAME)  /* ggml itself takes 63 bytes */
#define GGUF_DEFAULT_ALIGN 32u
#define GGUF_TINFO_MIN 33u       /* smallest tensor info: 1-byte name, one dim */
#define GGUF_KV_MIN 14u          /* smallest metadata entry: 1-byte key, a u8 */

/* ggml's type ids of the tensor types kiln reads */
enum { GT_F32 = 0, GT_F16 = 1, GT_Q4_0 = 2, GT_Q8_0 = 8, GT_BF16 = 30 };

static const char *ggml_type_name(uint32_t t) {
    static const char *const names[] = {
        [0] = "F32",      [1] = "F16",     [2] = "Q4_0",     [3] = "Q4_1",    [6] = "Q5_0",
        [7] = "Q5_1",     [8] = "Q8_0",    [9] = "Q8_1",     [10] = "Q2_K",   [11] = "Q3_K",
        [12] = "Q4_K",    [13] = "Q5_K",   [14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS",
        [17] = "IQ2_XS",  [18] = "IQ3_XXS", [19] = "IQ1_S",  [20] = "IQ4_NL", [21] = "IQ3_S",
        [22] = "IQ2_S",   [23] = "IQ4_XS", [24] = "I8",      [25] = "I16",    [26] = "I32",
        [27] = "I64",     [28] = "F64",    [29] = "IQ1_M",   [30] = "BF16",   [34] = "TQ1_0",
        [35] = "TQ2_0",   [39] = "MXFP4",
    };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "unknown";
}

static const char *const gguf_type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const unsigned gguf_scalar_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? gguf_type_names[t] : "?";
}

static uint64_t le_get(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

/* ---------------------------------------------------------------- Hugging Face names */

/* llama's per-layer tensors: blk.N.<gguf>.weight <-> model.layers.N.<hf>.weight (and .bias) */
static const struct {
    const char *gguf, *hf;
} gguf_layer_names[] = {
    {"attn_norm", "input_layernorm"},        {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},          {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},     {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},           {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};
static const struct {
    const char *gguf, *hf;
} gguf_top_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
#define N_LAYER_NAMES (sizeof gguf_layer_names / sizeof gguf_layer_names[0])
#define N_TOP_NAMES (sizeof gguf_top_names / sizeof gguf_top_names[0])

static int put_name(char *out, size_t n, int mapped, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put_name(char *out, size_t n, int mapped, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return k < 0 || (size_t)k >= n ? -1 : mapped;
}

/* Maps `name` from one naming (from_pre + layer + from_mid ...) to the other; dir 0: GGUF to
 * Hugging Face, 1: back. */
static int map_name(const char *name, char *out, size_t n, int to_gguf) {
    for (size_t i = 0; i < N_TOP_NAMES; i++)
        if (!strcmp(name, to_gguf ? gguf_top_names[i].hf : gguf_top_names[i].gguf))
            return put_name(out, n, 1, "%s", to_gguf ? gguf_top_names[i].gguf : gguf_top_names[i].hf);
    const char *prefix = to_gguf ? "model.layers." : "blk.";
    size_t plen = strlen(prefix), digits = 0;
    if (!strncmp(name, prefix, plen)) {
        const char *p = name + plen;
        while (p[digits] >= '0' && p[digits] <= '9') digits++;
        if (digits > 0 && digits <= 9 && p[digits] == '.') {
            const char *rest = p + digits + 1;
            for (size_t i = 0; i < N_LAYER_NAMES; i++) {
                const char *from = to_gguf ? gguf_layer_names[i].hf : gguf_layer_names[i].gguf;
                const char *to = to_gguf ? gguf_layer_names[i].gguf : gguf_layer_names[i].hf;
                size_t fl = strlen(from);
                if (!strncmp(rest, from, fl) &&
                    (!strcmp(rest + fl, ".weight") || !strcmp(rest + fl, ".bias")))
                    return put_name(out, n, 1, "%s%.*s.%s%s", to_gguf ? "blk." : "model.layers.",
                                    (int)digits, p, to, rest + fl);
            }
        }
    }
    return put_name(out, n, 0, "%s", name);
}

int gguf_name_to_hf(const char *gguf_name, char *out, size_t n) {
    return map_name(gguf_name, out, n, 0);
}

int gguf_name_from_hf(const char *hf_name, char *out, size_t n) {
    return map_name(hf_name, out, n, 1);
}

/* ---------------------------------------------------------------- reading: the cursor */

typedef struct rd {
    const char *path;
    const uint8_t *p;
    uint64_t size, pos;
    char subject[320];           /* what is being read: "metadata key 'general.name'" */
    char place[96];              /* where: "at byte 120" */
} rd;

static void rd_at(rd *r, uint64_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rd_at(rd *r, uint64_t at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->subject, sizeof r->subject, fmt, ap);
    va_end(ap);
    snprintf(r->place, sizeof r->place, "at byte %" PRIu64, at);
}

/* Reports "SUBJECT<msg> (PLACE)"; msg starts with ": " or a verb. Returns -1. */
static int rd_fail(const rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rd_fail(const rd *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *m = msg;
    if (!r->subject[0] && !strncmp(m, ": ", 2)) m += 2;
    if (r->place[0])
        diag_file_error(r->path, "%s%s (%s)", r->subject, m, r->place);
    else
        diag_file_error(r->path, "%s%s", r->subject, m);
    return -1;
}

static int rd_has(rd *r, uint64_t n, const char *what) {
    if (r->size - r->pos >= n) return 0;
    return rd_fail(r, ": truncated at %s: %" PRIu64 " bytes needed at byte %" PRIu64 ", but the "
                   "file ends at byte %" PRIu64, what, n, r->pos, r->size);
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    if (rd_has(r, 4, what)) return -1;
    *v = (uint32_t)le_get(r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    if (rd_has(r, 8, what)) return -1;
    *v = le_get(r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* A string: its bytes stay in the file (s, len). */
static int rd_str(rd *r, const uint8_t **s, uint64_t *len, const char *what) {
    uint64_t at = r->pos;
    if (rd_u64(r, len, what)) return -1;
    if (*len > r->size - r->pos)
        return rd_fail(r, ": %s (length at byte %" PRIu64 ") is %" PRIu64 " bytes long, past the "
                       "end of the file (%" PRIu64 " bytes)", what, at, *len, r->size);
    if (*len > KILN_MAX_GGUF_STRING)
        return rd_fail(r, ": %s (length at byte %" PRIu64 ") is %" PRIu64 " bytes long; the "
                       "limit is %d", what, at, *len, KILN_MAX_GGUF_STRING);
    *s = r->p + r->pos;
    r->pos += *len;
    return 0;
}

/* ---------------------------------------------------------------- reading: metadata */

/* Both passes over the metadata: counting (kv NULL) sizes the allocation, filling copies. */
typedef struct kvbuild {
    gguf_kv *kv;
    gguf_str *items;
    char *chars;
    uint64_t nitems, nchars;
} kvbuild;

static const char *kb_copy(kvbuild *b, const uint8_t *s, uint64_t len) {
    if (!b->kv) {
        b->nchars += len + 1;
        return NULL;
    }
    char *d = b->chars;
    memcpy(d, s, (size_t)len);
    d[len] = 0;
    b->chars += len + 1;
    return d;
}

static void decode_scalar(gguf_type t, const uint8_t *p, gguf_kv *kv) {
    uint64_t raw = le_get(p, gguf_scalar_size[t]);
    switch (t) {
    case GGUF_I8: kv->v.i = (int8_t)raw; break;
    case GGUF_I16: kv->v.i = (int16_t)raw; break;
    case GGUF_I32: kv->v.i = (int32_t)raw; break;
    case GGUF_I64: kv->v.i = (int64_t)raw; break;
    case GGUF_F32: {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        kv->v.f = f;
        break;
    }
    case GGUF_F64: memcpy(&kv->v.f, &raw, 8); break;
    default: kv->v.u = raw; break; /* unsigned, bool */
    }
}

/* An array past KILN_MAX_GGUF_ARRAY items (after the file-size checks, which say more). */
static int array_too_long(rd *r, uint64_t n) {
    return rd_fail(r, ": the array has %" PRIu64 " items; the limit is %d", n,
                   KILN_MAX_GGUF_ARRAY);
}

static int read_array(rd *r, kvbuild *b, gguf_kv *kv) {
    uint32_t it;
    uint64_t n;
    if (rd_u32(r, &it, "the array's item type")) return -1;
    if (it >= GGUF_TYPE_COUNT)
        return rd_fail(r, ": array item type %" PRIu32 " is not a GGUF value type (0..12)", it);
    if (it == GGUF_ARRAY)
        return rd_fail(r, ": an array of arrays; kiln reads arrays of numbers, bools and strings");
    if (rd_u64(r, &n, "the array's length")) return -1;
    if (kv) kv->v.arr.type = (gguf_type)it, kv->v.arr.n = n;
    if (it == GGUF_STRING) {
        if (n > (r->size - r->pos) / 8)
            return rd_fail(r, ": the array of %" PRIu64 " strings cannot fit in the %" PRIu64
                           " bytes left (each takes at least 8)", n, r->size - r->pos);
        if (n > KILN_MAX_GGUF_ARRAY) return array_too_long(r, n);
        gguf_str *items = b->items;
        if (kv) {
            kv->v.arr.items = items;
            b->items += n;
        } else {
            b->nitems += n;
        }
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s;
            uint64_t len;
            if (rd_str(r, &s, &len, "a string of the array")) return -1;
            const char *c = kb_copy(b, s, len);
            if (kv) items[i] = (gguf_str){c, len};
        }
        return 0;
    }
    uint64_t bytes;
    if (wmul_u64(n, gguf_scalar_size[it], &bytes) || bytes > r->size - r->pos)
        return rd_fail(r, ": the array of %" PRIu64 " %s items runs past the end of the file (%"
                       PRIu64 " bytes left)", n, gguf_type_names[it], r->size - r->pos);
    if (n > KILN_MAX_GGUF_ARRAY) return array_too_long(r, n);
    if (it == GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (r->p[r->pos + i] > 1)
                return rd_fail(r, ": item %" PRIu64 " of the bool array holds %u (not 0 or 1)", i,
                               r->p[r->pos + i]);
    if (kv) kv->v.arr.items = r->p + r->pos;
    r->pos += bytes;
    return 0;
}

/* Entry `index`; kv is NULL while counting. */
static int read_kv(rd *r, uint64_t index, kvbuild *b, gguf_kv *kv) {
    uint64_t at = r->pos, klen;
    const uint8_t *key;
    rd_at(r, at, "metadata entry %" PRIu64, index);
    if (rd_str(r, &key, &klen, "its key")) return -1;
    if (klen == 0) return rd_fail(r, ": the key is empty");
    if (klen > GGUF_MAX_KEY)
        return rd_fail(r, ": the key is %" PRIu64 " bytes long (the limit is %u)", klen,
                       GGUF_MAX_KEY);
    if (memchr(key, 0, (size_t)klen)) return rd_fail(r, ": the key holds a NUL byte");
    rd_at(r, at, "metadata key '%.*s'", klen > 200 ? 200 : (int)klen, (const char *)key);
    uint32_t type;
    if (rd_u32(r, &type, "its value type")) return -1;
    if (type >= GGUF_TYPE_COUNT)
        return rd_fail(r, ": value type %" PRIu32 " is not a GGUF value type (0..12)", type);
    const char *k = kb_copy(b, key, klen);
    if (kv) *kv = (gguf_kv){.key = k, .type = (gguf_type)type, .offset = at};
    if (type == GGUF_ARRAY) return read_array(r, b, kv);
    if (type == GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        if (rd_str(r, &s, &len, "its string value")) return -1;
        const char *c = kb_copy(b, s, len);
        if (kv) kv->v.str = (gguf_str){c, len};
        return 0;
    }
    if (rd_has(r, gguf_scalar_size[type], "its value")) return -1;
    if (type == GGUF_BOOL && r->p[r->pos] > 1)
        return rd_fail(r, ": the bool holds %u (not 0 or 1)", r->p[r->pos]);
    if (kv) decode_scalar((gguf_type)type, r->p + r->pos, kv);
    r->pos += gguf_scalar_size[type];
    return 0;
}

static int by_key(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    return strcmp(x->key, y->key);
}

static int check_unique_keys(rd *r, gguf_kv *kv, int n) {
    const gguf_kv **s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) return rd_fail(r, "out of memory");
    for (int i = 0; i < n; i++) s[i] = &kv[i];
    qsort(s, (size_t)n, sizeof *s, by_key);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (!strcmp(s[i - 1]->key, s[i]->key)) {
            uint64_t a = s[i - 1]->offset, c = s[i]->offset;
            rc = rd_fail(r, "metadata key '%s' appears twice (at bytes %" PRIu64 " and %" PRIu64
                         ")", s[i]->key, a < c ? a : c, a < c ? c : a);
        }
    free(s);
    return rc;
}

/* Reads and checks the n metadata entries from r->pos into g->kv (one allocation). */
static int read_metadata(rd *r, uint64_t n, ckpt_gguf *g) {
    uint64_t start = r->pos;
    kvbuild b = {0};
    for (uint64_t i = 0; i < n; i++)
        if (read_kv(r, i, &b, NULL)) return -1;
    r->subject[0] = r->place[0] = 0;
    /* counts are bounded by the file size, so the sum cannot overflow a u64 */
    uint64_t bytes = n * sizeof(gguf_kv) + b.nitems * sizeof(gguf_str) + b.nchars;
    if (bytes > SIZE_MAX) return rd_fail(r, "the metadata is too large to hold in memory");
    char *mem = malloc(bytes ? (size_t)bytes : 1);
    if (!mem) return rd_fail(r, "out of memory for the metadata (%" PRIu64 " bytes)", bytes);
    g->kv = (gguf_kv *)mem;
    g->nkv = (int)n;
    kvbuild f = {.kv = g->kv, .items = (gguf_str *)(mem + n * sizeof(gguf_kv))};
    f.chars = (char *)(f.items + b.nitems);
    r->pos = start;
    for (uint64_t i = 0; i < n; i++)
        if (read_kv(r, i, &f, &g->kv[i])) return -1; /* cannot fail: checked above */
    r->subject[0] = r->place[0] = 0;
    return check_unique_keys(r, g->kv, g->nkv);
}

static const gguf_kv *find_kv(const ckpt_gguf *g, const char *key) {
    for (int i = 0; i < g->nkv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

/* general.alignment and general.architecture. */
static int check_general(rd *r, ckpt_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGN;
    const gguf_kv *a = find_kv(g, "general.alignment");
    if (a) {
        rd_at(r, a->offset, "metadata key 'general.alignment'");
        if (a->type != GGUF_U32)
            return rd_fail(r, " has type %s; it must be u32", gguf_type_name(a->type));
        if (a->v.u == 0 || (a->v.u & (a->v.u - 1)))
            return rd_fail(r, " is %" PRIu64 ", not a power of two", a->v.u);
        g->alignment = (uint32_t)a->v.u;
    }
    const gguf_kv *arch = find_kv(g, "general.architecture");
    r->subject[0] = r->place[0] = 0;
    if (!arch)
        return rd_fail(r, "the GGUF file has no general.architecture key, so its model is "
                       "unknown (kiln reads 'llama')");
    rd_at(r, arch->offset, "metadata key 'general.architecture'");
    if (arch->type != GGUF_STRING)
        return rd_fail(r, " has type %s; it must be a string", gguf_type_name(arch->type));
    if (strlen(arch->v.str.s) != arch->v.str.len || strcmp(arch->v.str.s, "llama")) {
        r->subject[0] = r->place[0] = 0;
        return rd_fail(r, "GGUF architecture '%.100s' is not supported: kiln reads 'llama'",
                       arch->v.str.s);
    }
    r->subject[0] = r->place[0] = 0;
    return 0;
}

/* ---------------------------------------------------------------- reading: tensor infos */

typedef struct tinfo {
    const uint8_t *name;
    uint64_t nlen, at;
    uint32_t ndims, type;
    uint64_t dims[KILN_MAX_RANK];
    uint64_t offset, nbytes;
    ckpt_dtype dt;
} tinfo;

static int tensor_type(rd *r, tinfo *t) {
    uint64_t numel = 1, per, elems = 1;
    for (uint32_t k = 0; k < t->ndims; k++) numel *= t->dims[k]; /* checked by the caller */
    switch (t->type) {
    case GT_F32: t->dt = CK_F32, per = 4; break;
    case GT_F16: t->dt = CK_F16, per = 2; break;
    case GT_BF16: t->dt = CK_BF16, per = 2; break;
    case GT_Q8_0: t->dt = CK_Q8_0, per = Q8_0_BYTES, elems = QUANT_BLOCK; break;
    case GT_Q4_0: t->dt = CK_Q4_0, per = Q4_0_BYTES, elems = QUANT_BLOCK; break;
    default:
        return rd_fail(r, " has type %s (%" PRIu32 "); kiln reads F32, F16, BF16, Q8_0 and Q4_0",
                       ggml_type_name(t->type), t->type);
    }
    if (t->dims[0] % elems)
        return rd_fail(r, ": type %s stores rows of whole %" PRIu64 "-weight blocks, but its "
                       "innermost dimension is %" PRIu64, ggml_type_name(t->type), elems,
                       t->dims[0]);
    if (wmul_u64(numel / elems, per, &t->nbytes))
        return rd_fail(r, ": its byte size overflows");
    return 0;
}

static int read_tinfo(rd *r, uint64_t index, uint32_t align, tinfo *t) {
    memset(t, 0, sizeof *t);
    t->at = r->pos;
    rd_at(r, t->at, "tensor info %" PRIu64, index);
    if (rd_str(r, &t->name, &t->nlen, "its name")) return -1;
    if (t->nlen == 0) return rd_fail(r, ": the name is empty");
    if (t->nlen > GGUF_MAX_NAME)
        return rd_fail(r, ": the name is %" PRIu64 " bytes long (the limit is %u)", t->nlen,
                       GGUF_MAX_NAME);
    if (memchr(t->name, 0, (size_t)t->nlen)) return rd_fail(r, ": the name holds a NUL byte");
    rd_at(r, t->at, "tensor '%.*s'", (int)t->nlen, (const char *)t->name);
    snprintf(r->place, sizeof r->place, "tensor info at byte %" PRIu64, t->at);
    if (rd_u32(r, &t->ndims, "its dimension count")) return -1;
    if (t->ndims < 1 || t->ndims > KILN_MAX_RANK)
        return rd_fail(r, ": n_dims %" PRIu32 " is not in 1..%d", t->ndims, KILN_MAX_RANK);
    uint64_t numel = 1;
    for (uint32_t k = 0; k < t->ndims; k++) {
        if (rd_u64(r, &t->dims[k], "its dimensions")) return -1;
        if (t->dims[k] == 0 || t->dims[k] > (uint64_t)INT64_MAX)
            return rd_fail(r, ": dimension %" PRIu32 " is %" PRIu64 " (must be 1..2^63-1)", k,
                           t->dims[k]);
        if (wmul_u64(numel, t->dims[k], &numel) || numel > (uint64_t)INT64_MAX)
            return rd_fail(r, ": its element count overflows");
    }
    if (numel > (uint64_t)KILN_MAX_ELEMS)
        return rd_fail(r, ": it has %" PRIu64 " elements; the limit is %" PRId64 " (2^36)", numel,
                       KILN_MAX_ELEMS);
    if (rd_u32(r, &t->type, "its type") || tensor_type(r, t)) return -1;
    if (rd_u64(r, &t->offset, "its data offset")) return -1;
    if (t->offset % align)
        return rd_fail(r, ": data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                       t->offset, align);
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const tinfo *x = *(const tinfo *const *)a, *y = *(const tinfo *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor's bytes inside the data section, no two sharing a byte. */
static int check_extents(rd *r, tinfo *t, uint64_t n, uint64_t data_offset) {
    uint64_t dsize = r->size - data_offset;
    for (uint64_t i = 0; i < n; i++)
        if (t[i].offset > dsize || t[i].nbytes > dsize - t[i].offset) {
            rd_at(r, t[i].at, "tensor '%.*s'", (int)t[i].nlen, (const char *)t[i].name);
            snprintf(r->place, sizeof r->place, "tensor info at byte %" PRIu64, t[i].at);
            return rd_fail(r, ": its %" PRIu64 " bytes at data offset %" PRIu64 " run past the "
                           "end of the file (the data section holds %" PRIu64 " bytes from byte %"
                           PRIu64 ")", t[i].nbytes, t[i].offset, dsize, data_offset);
        }
    const tinfo **s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) return rd_fail(r, "out of memory");
    for (uint64_t i = 0; i < n; i++) s[i] = &t[i];
    qsort(s, (size_t)n, sizeof *s, by_offset);
    int rc = 0;
    for (uint64_t i = 1; i < n && !rc; i++)
        if (s[i]->offset < s[i - 1]->offset + s[i - 1]->nbytes)
            rc = rd_fail(r, "tensor '%.*s' (data offset %" PRIu64 ") overlaps tensor '%.*s' (data "
                         "offset %" PRIu64 ", %" PRIu64 " bytes)", (int)s[i]->nlen,
                         (const char *)s[i]->name, s[i]->offset, (int)s[i - 1]->nlen,
                         (const char *)s[i - 1]->name, s[i - 1]->offset, s[i - 1]->nbytes);
    free(s);
    return rc;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const ckpt_tensor *const *)a)->name, (*(const ckpt_tensor *const *)b)->name);
}
static int by_gguf_name(const void *a, const void *b) {
    return strcmp((*(const ckpt_tensor *const *)a)->gguf_name,
                  (*(const ckpt_tensor *const *)b)->gguf_name);
}

/* No name twice in the file, and no two tensors mapped to one Hugging Face name. */
static int check_unique_names(rd *r, ckpt_tensor *t, int n) {
    const ckpt_tensor **s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) return rd_fail(r, "out of memory");
    for (int i = 0; i < n; i++) s[i] = &t[i];
    int rc = 0;
    qsort(s, (size_t)n, sizeof *s, by_gguf_name);
    for (int i = 1; i < n && !rc; i++)
        if (!strcmp(s[i - 1]->gguf_name, s[i]->gguf_name))
            rc = rd_fail(r, "tensor '%s' appears twice", s[i]->gguf_name);
    qsort(s, (size_t)n, sizeof *s, by_name);
    for (int i = 1; i < n && !rc; i++)
        if (!strcmp(s[i - 1]->name, s[i]->name))
            rc = rd_fail(r, "tensors '%s' and '%s' both stand for '%s'", s[i - 1]->gguf_name,
                         s[i]->gguf_name, s[i]->name);
    free(s);
    return rc;
}

/* The tensors with both names, in one allocation. */
static int make_tensors(rd *r, const tinfo *ti, int n, uint64_t data_offset, ckpt_tensor **out) {
    char hf[GGUF_MAX_NAME + 64], gname[GGUF_MAX_NAME + 1];
    uint64_t chars = 0;
    for (int i = 0; i < n; i++) {
        memcpy(gname, ti[i].name, (size_t)ti[i].nlen);
        gname[ti[i].nlen] = 0;
        if (gguf_name_to_hf(gname, hf, sizeof hf) < 0) return rd_fail(r, "a tensor name is too long");
        chars += strlen(hf) + 1 + ti[i].nlen + 1;
    }
    ckpt_tensor *t = malloc((size_t)n * sizeof *t + (size_t)chars);
    if (!t) return rd_fail(r, "out of memory");
    char *np = (char *)(t + n);
    for (int i = 0; i < n; i++) {
        ckpt_tensor *c = &t[i];
        memset(c, 0, sizeof *c);
        memcpy(np, ti[i].name, (size_t)ti[i].nlen);
        np[ti[i].nlen] = 0;
        c->gguf_name = np;
        np += ti[i].nlen + 1;
        gguf_name_to_hf(c->gguf_name, np, GGUF_MAX_NAME + 64);
        c->name = np;
        np += strlen(np) + 1;
        c->dtype = ti[i].dt;
        c->rank = (int)ti[i].ndims;
        for (int k = 0; k < c->rank; k++) c->shape[k] = (int64_t)ti[i].dims[c->rank - 1 - k];
        c->offset = data_offset + ti[i].offset;
        c->nbytes = ti[i].nbytes;
    }
    if (check_unique_names(r, t, n)) {
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

static int read_header(rd *r, uint32_t *version, uint64_t *nt, uint64_t *nkv) {
    if (r->size < 4 || memcmp(r->p, "GGUF", 4)) {
        if (r->size < 4) return rd_fail(r, "not a GGUF file: it is %" PRIu64 " bytes long", r->size);
        return rd_fail(r, "not a GGUF file: it starts with bytes %02x %02x %02x %02x, not \"GGUF\"",
                       r->p[0], r->p[1], r->p[2], r->p[3]);
    }
    if (r->size < GGUF_HEADER)
        return rd_fail(r, "truncated: the GGUF header needs %d bytes, the file has %" PRIu64,
                       GGUF_HEADER, r->size);
    *version = (uint32_t)le_get(r->p + 4, 4);
    *nt = le_get(r->p + 8, 8);
    *nkv = le_get(r->p + 16, 8);
    r->pos = GGUF_HEADER;
    if (*version == 0x02000000u || *version == 0x03000000u)
        return rd_fail(r, "the GGUF file is big-endian (version %u); kiln reads little-endian "
                       "files", *version >> 24);
    if (*version != 2 && *version != 3)
        return rd_fail(r, "GGUF version %" PRIu32 " is not supported (kiln reads versions 2 and 3)",
                       *version);
    if (*nt > GGUF_MAX_TENSORS)
        return rd_fail(r, "tensor count %" PRIu64 " is more than the limit of %u", *nt,
                       GGUF_MAX_TENSORS);
    if (*nkv > GGUF_MAX_KV)
        return rd_fail(r, "metadata count %" PRIu64 " is more than the limit of %u", *nkv,
                       GGUF_MAX_KV);
    uint64_t left = r->size - GGUF_HEADER;
    if (*nt * GGUF_TINFO_MIN + *nkv * GGUF_KV_MIN > left)
        return rd_fail(r, "%" PRIu64 " tensors and %" PRIu64 " metadata entries cannot fit in "
                       "the %" PRIu64 " bytes after the header", *nt, *nkv, left);
    return 0;
}

int gguf_parse(const char *path, const uint8_t *map, size_t size, ckpt_gguf *g,
               ckpt_tensor **out, int *n) {
    *out = NULL;
    *n = 0;
    memset(g, 0, sizeof *g);
    rd r = {.path = path, .p = map, .size = size};
    uint64_t nt = 0, nkv = 0;
    tinfo *ti = NULL;
    if (read_header(&r, &g->version, &nt, &nkv) || read_metadata(&r, nkv, g) ||
        check_general(&r, g))
        goto fail;
    if (!(ti = malloc((size_t)(nt ? nt : 1) * sizeof *ti))) {
        rd_fail(&r, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < nt; i++)
        if (read_tinfo(&r, i, g->alignment, &ti[i])) goto fail;
    r.subject[0] = r.place[0] = 0;
    uint64_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    g->data_offset = r.pos + pad; /* r.pos <= size: no overflow */
    if (nt && g->data_offset > r.size) {
        rd_fail(&r, "truncated: the data section would start at byte %" PRIu64 " (the tensor "
                "infos end at byte %" PRIu64 ", aligned to %" PRIu32 "), past the end of the file "
                "(%" PRIu64 " bytes)", g->data_offset, r.pos, g->alignment, r.size);
        goto fail;
    }
    if (check_extents(&r, ti, nt, g->data_offset) ||
        make_tensors(&r, ti, (int)nt, g->data_offset, out))
        goto fail;
    free(ti);
    *n = (int)nt;
    return 0;
fail:
    free(ti);
    free(g->kv);
    memset(g, 0, sizeof *g);
    return -1;
}

/* ---------------------------------------------------------------- metadata lookups */

const gguf_kv *ckpt_gguf_kv(const ckpt *c, int *n) {
    *n = c->format == CKPT_GGUF ? c->gguf.nkv : 0;
    return c->format == CKPT_GGUF ? c->gguf.kv : NULL;
}

const gguf_kv *ckpt_gguf_find(const ckpt *c, const char *key) {
    return c->format == CKPT_GGUF ? find_kv(&c->gguf, key) : NULL;
}

static int is_signed(gguf_type t) {
    return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64;
}
static int is_unsigned(gguf_type t) {
    return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64;
}

int gguf_kv_int(const gguf_kv *kv, int64_t *out) {
    if (is_signed(kv->type)) {
        *out = kv->v.i;
        return 1;
    }
    if (is_unsigned(kv->type) && kv->v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->v.u;
        return 1;
    }
    return -1;
}

int gguf_kv_float(const gguf_kv *kv, double *out) {
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64) return -1;
    *out = kv->v.f;
    return 1;
}

int ckpt_gguf_int(const ckpt *c, const char *key, int64_t *out) {
    const gguf_kv *kv = ckpt_gguf_find(c, key);
    return kv ? gguf_kv_int(kv, out) : 0;
}

int ckpt_gguf_float(const ckpt *c, const char *key, double *out) {
    const gguf_kv *kv = ckpt_gguf_find(c, key);
    return kv ? gguf_kv_float(kv, out) : 0;
}

int ckpt_gguf_bool(const ckpt *c, const char *key, int *out) {
    const gguf_kv *kv = ckpt_gguf_find(c, key);
    if (!kv) return 0;
    if (kv->type != GGUF_BOOL) return -1;
    *out = (int)kv->v.u;
    return 1;
}

int ckpt_gguf_str(const ckpt *c, const char *key, const gguf_str **out) {
    const gguf_kv *kv = ckpt_gguf_find(c, key);
    if (!kv) return 0;
    if (kv->type != GGUF_STRING) return -1;
    *out = &kv->v.str;
    return 1;
}

int ckpt_gguf_array(const ckpt *c, const char *key, gguf_type item, const gguf_kv **out) {
    const gguf_kv *kv = ckpt_gguf_find(c, key);
    if (!kv) return 0;
    if (kv->type != GGUF_ARRAY || (item != GGUF_TYPE_COUNT && kv->v.arr.type != item)) return -1;
    *out = kv;
    return 1;
}

/* The raw bytes of numeric item i, or NULL. */
static const uint8_t *item_at(const gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_ARRAY || i >= kv->v.arr.n || kv->v.arr.type == GGUF_STRING) return NULL;
    return (const uint8_t *)kv->v.arr.items + i * gguf_scalar_size[kv->v.arr.type];
}

int gguf_item_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    const uint8_t *p = item_at(kv, i);
    if (!p) return -1;
    gguf_kv one = {.type = kv->v.arr.type};
    decode_scalar(one.type, p, &one);
    return gguf_kv_int(&one, out);
}

int gguf_item_float(const gguf_kv *kv, uint64_t i, double *out) {
    const uint8_t *p = item_at(kv, i);
    if (!p) return -1;
    gguf_kv one = {.type = kv->v.arr.type};
    decode_scalar(one.type, p, &one);
    return gguf_kv_float(&one, out);
}

int gguf_item_str(const gguf_kv *kv, uint64_t i, const gguf_str **out) {
    if (kv->type != GGUF_ARRAY || kv->v.arr.type != GGUF_STRING || i >= kv->v.arr.n) return -1;
    *out = (const gguf_str *)kv->v.arr.items + i;
    return 1;
}

/* ---------------------------------------------------------------- printing values */

static void print_str(FILE *f, const gguf_str *s, size_t max) {
    size_t n = s->len > max ? max : (size_t)s->len;
    while (n < s->len && n > 0 && ((unsigned char)s->s[n] & 0xc0) == 0x80) n--; /* whole UTF-8 */
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (n < s->len) fprintf(f, "... (%" PRIu64 " bytes)", s->len);
}

/* The fewest digits that read back as the same float (f32) or double; whole numbers below
 * 10^15 without an exponent. */
static void print_real(FILE *f, double v, int is_f32) {
    char buf[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(f, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v) break;
    }
    fputs(buf, f);
}

static void print_scalar(FILE *f, const gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        fprintf(f, "%" PRId64, kv->v.i);
        break;
    case GGUF_F32: case GGUF_F64:
        print_real(f, kv->v.f, kv->type == GGUF_F32);
        break;
    case GGUF_BOOL:
        fputs(kv->v.u ? "true" : "false", f);
        break;
    default:
        fprintf(f, "%" PRIu64, kv->v.u);
        break;
    }
}

void gguf_print_value(FILE *f, const gguf_kv *kv, uint64_t max_items, size_t max_str) {
    if (kv->type == GGUF_STRING) {
        fputs("string ", f);
        print_str(f, &kv->v.str, max_str);
        return;
    }
    if (kv->type != GGUF_ARRAY) {
        fprintf(f, "%s ", gguf_type_name(kv->type));
        print_scalar(f, kv);
        return;
    }
    uint64_t n = kv->v.arr.n, shown = n < max_items ? n : max_items;
    fprintf(f, "array[%s] of %" PRIu64 "%s", gguf_type_name(kv->v.arr.type), n, n ? ": " : "");
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", f);
        if (kv->v.arr.type == GGUF_STRING) {
            print_str(f, (const gguf_str *)kv->v.arr.items + i, max_str);
        } else {
            gguf_kv one = {.type = kv->v.arr.type};
            decode_scalar(one.type, item_at(kv, i), &one);
            print_scalar(f, &one);
        }
    }
    if (shown < n) fprintf(f, ", ... (first %" PRIu64 ")", shown);
}

/* ---------------------------------------------------------------- writer */

/* A growing byte buffer for the header; an allocation failure is remembered in oom. */
typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n && cap <= SIZE_MAX / 2) cap *= 2;
        unsigned char *q = cap - b->n < n ? NULL : realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void wb_le(wbuf *b, uint64_t v, unsigned n) {
    unsigned char t[8];
    for (unsigned i = 0; i < n; i++) t[i] = (unsigned char)(v >> (8 * i));
    wb_put(b, t, n);
}

static void wb_str(wbuf *b, const char *s) {
    size_t n = strlen(s);
    wb_le(b, n, 8);
    wb_put(b, s, n);
}

static void wb_key(wbuf *b, int *nkv, const char *key, gguf_type t) {
    wb_str(b, key);
    wb_le(b, (uint64_t)t, 4);
    (*nkv)++;
}

static void wb_f32(wbuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    wb_le(b, u, 4);
}

/* The spec's parameters that become llama.* keys. */
static const struct {
    const char *param, *key;
    int real;
} gguf_hparams[] = {
    {"ctx", "llama.context_length", 0},
    {"dim", "llama.embedding_length", 0},
    {"layers", "llama.block_count", 0},
    {"hidden", "llama.feed_forward_length", 0},
    {"heads", "llama.attention.head_count", 0},
    {"kv_heads", "llama.attention.head_count_kv", 0},
    {"vocab", "llama.vocab_size", 0},
    {"eps", "llama.attention.layer_norm_rms_epsilon", 1},
    {"rope_base", "llama.rope.freq_base", 1},
};

static const char *param_text(const gguf_param *p, int np, const char *name) {
    for (int i = 0; i < np; i++)
        if (!strcmp(p[i].name, name)) return p[i].text;
    return NULL;
}

static int put_hparams(const char *path, wbuf *b, int *nkv, const gguf_param *p, int np) {
    long long dim = 0, heads = 0;
    for (size_t h = 0; h < sizeof gguf_hparams / sizeof gguf_hparams[0]; h++) {
        const char *text = param_text(p, np, gguf_hparams[h].param), *key = gguf_hparams[h].key;
        char *end;
        if (!text) continue;
        if (gguf_hparams[h].real) {
            double v = strtod(text, &end);
            if (end == text || *end || !isfinite(v) || fabs(v) > 3.4e38) {
                diag_file_error(path, "parameter %s = %s: %s needs a finite real number",
                                gguf_hparams[h].param, text, key);
                return -1;
            }
            wb_key(b, nkv, key, GGUF_F32);
            wb_f32(b, (float)v);
            continue;
        }
        long long v = strtoll(text, &end, 10);
        if (end == text || *end || v < 0 || v > (long long)UINT32_MAX) {
            diag_file_error(path, "parameter %s = %s: %s needs an integer in 0..4294967295",
                            gguf_hparams[h].param, text, key);
            return -1;
        }
        wb_key(b, nkv, key, GGUF_U32);
        wb_le(b, (uint64_t)v, 4);
        if (!strcmp(gguf_hparams[h].param, "dim")) dim = v;
        if (!strcmp(gguf_hparams[h].param, "heads")) heads = v;
    }
    /* the dimensions llama.cpp rotates: rotary_dim (a partial RoPE), else the head size */
    const char *rotary = param_text(p, np, "rotary_dim");
    long long rot = rotary ? strtoll(rotary, NULL, 10)
                           : dim > 0 && heads > 0 && dim % heads == 0 ? dim / heads : 0;
    if (rot > 0 && rot <= (long long)UINT32_MAX) {
        wb_key(b, nkv, "llama.rope.dimension_count", GGUF_U32);
        wb_le(b, (uint64_t)rot, 4);
    }
    return 0;
}

/* A placeholder vocabulary of V tokens, so that other engines (llama.cpp) load the file:
 * det-weights models make no text, but a llama GGUF must carry a tokenizer. "<unk>", "<s>",
 * "</s>", the 256 byte tokens "<0x00>" .. when V leaves room for them, then "\u2581t<i>". */
static void put_vocab(wbuf *b, int *nkv, uint64_t v) {
    int bytes = v >= 259;
    wb_key(b, nkv, "tokenizer.ggml.model", GGUF_STRING);
    wb_str(b, "llama");
    wb_key(b, nkv, "tokenizer.ggml.tokens", GGUF_ARRAY);
    wb_le(b, GGUF_STRING, 4);
    wb_le(b, v, 8);
    for (uint64_t i = 0; i < v; i++) {
        char tok[40];
        if (i < 3)
            snprintf(tok, sizeof tok, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (bytes && i < 259)
            snprintf(tok, sizeof tok, "<0x%02X>", (unsigned)(i - 3));
        else
            snprintf(tok, sizeof tok, "\xe2\x96\x81t%llu", (unsigned long long)i);
        wb_str(b, tok);
    }
    wb_key(b, nkv, "tokenizer.ggml.scores", GGUF_ARRAY);
    wb_le(b, GGUF_F32, 4);
    wb_le(b, v, 8);
    for (uint64_t i = 0; i < v; i++)
        wb_f32(b, i < 259 ? 0.0f : -(float)i);
    wb_key(b, nkv, "tokenizer.ggml.token_type", GGUF_ARRAY);
    wb_le(b, GGUF_I32, 4);
    wb_le(b, v, 8);
    for (uint64_t i = 0; i < v; i++)   /* llama.cpp's types: normal 1, unknown 2, control 3, byte 6 */
        wb_le(b, i == 0 ? 2 : i < 3 ? 3 : bytes && i < 259 ? 6 : 1, 4);
    static const char *const ids[] = {"tokenizer.ggml.unknown_token_id",
                                      "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (uint32_t i = 0; i < 3; i++) {
        wb_key(b, nkv, ids[i], GGUF_U32);
        wb_le(b, i, 4);
    }
}

/* What each spec tensor becomes in the file. */
typedef struct wtensor {
    const char *hf;
    const char *gguf;
    int rank;
    int64_t shape[4];
    ckpt_dtype dt;
    uint64_t numel, nbytes, offset;
} wtensor;

static uint32_t ggml_type_of(ckpt_dtype dt) {
    switch (dt) {
    case CK_F16: return GT_F16;
    case CK_BF16: return GT_BF16;
    case CK_Q8_0: return GT_Q8_0;
    case CK_Q4_0: return GT_Q4_0;
    case CK_F32: break;
    }
    return GT_F32;
}

/* llama.cpp's general.file_type of a file whose matrices are dt */
static uint32_t file_type_of(ckpt_dtype dt) {
    switch (dt) {
    case CK_F16: return 1;
    case CK_BF16: return 32;
    case CK_Q8_0: return 7;
    case CK_Q4_0: return 2;
    case CK_F32: break;
    }
    return 0;
}

static int by_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names, storage types, sizes and offsets of the spec's tensors; *names holds the GGUF
 * names (free it). 0, or -1 after reporting. */
static int plan_tensors(const char *path, const wspec *t, int n, ckpt_dtype dtype, wtensor *w,
                        char **names) {
    char buf[GGUF_MAX_NAME + 64];
    size_t chars = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].rank < 1 || t[i].rank > 4) {
            diag_file_error(path, "tensor '%s': rank %d; a GGUF tensor has 1 to 4 dimensions",
                            t[i].name, t[i].rank);
            return -1;
        }
        if (gguf_name_from_hf(t[i].name, buf, sizeof buf) < 0 || strlen(buf) > GGUF_MAX_NAME ||
            !buf[0]) {
            diag_file_error(path, "tensor '%s': the name is empty or longer than %u bytes",
                            t[i].name, GGUF_MAX_NAME);
            return -1;
        }
        chars += strlen(buf) + 1;
    }
    char *np = *names = malloc(chars ? chars : 1);
    const char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!np || !sorted) {
        free(sorted);
        diag_file_error(path, "out of memory");
        return -1;
    }
    uint64_t off = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const wspec *s = &t[i];
        gguf_name_from_hf(s->name, np, GGUF_MAX_NAME + 1);
        w[i] = (wtensor){.hf = s->name, .gguf = np, .rank = s->rank, .dt = dtype, .numel = 1,
                         .offset = off};
        memcpy(w[i].shape, s->shape, sizeof w[i].shape);
        sorted[i] = np;
        np += strlen(np) + 1;
        for (int k = 0; k < s->rank && !rc; k++)
            if (s->shape[k] < 1 || wmul_u64(w[i].numel, (uint64_t)s->shape[k], &w[i].numel))
                rc = -1;
        int64_t inner = s->shape[s->rank - 1];
        if (s->rank < 2 || ((dtype == CK_Q8_0 || dtype == CK_Q4_0) && inner % QUANT_BLOCK))
            w[i].dt = CK_F32;  /* norm gains, and rows that are not whole blocks */
        uint64_t per = w[i].dt == CK_F32 ? 4 : w[i].dt == CK_Q8_0 ? Q8_0_BYTES
                     : w[i].dt == CK_Q4_0 ? Q4_0_BYTES : 2;
        uint64_t units = w[i].dt == CK_Q8_0 || w[i].dt == CK_Q4_0 ? w[i].numel / QUANT_BLOCK
                                                                    : w[i].numel;
        if (rc || wmul_u64(units, per, &w[i].nbytes) || wadd_u64(off, w[i].nbytes, &off) ||
            wadd_u64(off, GGUF_DEFAULT_ALIGN - 1, &off) || off > (uint64_t)INT64_MAX) {
            diag_file_error(path, "tensor '%s': bad shape, or the data section size overflows",
                            s->name);
            rc = -1;
        }
        off -= off % GGUF_DEFAULT_ALIGN;
    }
    if (!rc) {
        qsort(sorted, (size_t)n, sizeof *sorted, by_str);
        for (int i = 1; i < n && !rc; i++)
            if (!strcmp(sorted[i - 1], sorted[i])) {
                diag_file_error(path, "two tensors are named '%s' in the GGUF file", sorted[i]);
                rc = -1;
            }
    }
    free(sorted);
    if (rc) {
        free(*names);
        *names = NULL;
    }
    return rc;
}

/* The header, the metadata and the tensor infos, padded to the alignment. */
static int build_header(const char *path, const char *model, const gguf_param *params, int np,
                        const wtensor *w, int n, uint64_t seed, ckpt_dtype dtype, wbuf *out) {
    wbuf kv = {0};
    int nkv = 0;
    wb_key(&kv, &nkv, "general.architecture", GGUF_STRING);
    wb_str(&kv, "llama");
    if (model) {
        wb_key(&kv, &nkv, "general.name", GGUF_STRING);
        wb_str(&kv, model);
    }
    wb_key(&kv, &nkv, "general.alignment", GGUF_U32);
    wb_le(&kv, GGUF_DEFAULT_ALIGN, 4);
    wb_key(&kv, &nkv, "general.file_type", GGUF_U32);
    wb_le(&kv, file_type_of(dtype), 4);
    if (put_hparams(path, &kv, &nkv, params, np)) {
        free(kv.p);
        return -1;
    }
    const char *vocab = param_text(params, np, "vocab");
    if (vocab && strtoull(vocab, NULL, 10) >= 3 && strtoull(vocab, NULL, 10) <= KILN_MAX_VOCAB)
        put_vocab(&kv, &nkv, strtoull(vocab, NULL, 10));
    wb_key(&kv, &nkv, "kiln.weights", GGUF_STRING);
    wb_str(&kv, "det-weights v1");
    wb_key(&kv, &nkv, "kiln.seed", GGUF_U64);
    wb_le(&kv, seed, 8);

    wb_put(out, "GGUF", 4);
    wb_le(out, 3, 4);
    wb_le(out, (uint64_t)n, 8);
    wb_le(out, (uint64_t)nkv, 8);
    if (!kv.oom) wb_put(out, kv.p, kv.n);
    out->oom |= kv.oom;
    free(kv.p);
    for (int i = 0; i < n; i++) {
        const wtensor *t = &w[i];
        wb_str(out, t->gguf);
        wb_le(out, (uint64_t)t->rank, 4);
        for (int k = t->rank - 1; k >= 0; k--) wb_le(out, (uint64_t)t->shape[k], 8); /* innermost first */
        wb_le(out, ggml_type_of(t->dt), 4);
        wb_le(out, t->offset, 8);
    }
    static const unsigned char zeros[GGUF_DEFAULT_ALIGN];
    wb_put(out, zeros, (GGUF_DEFAULT_ALIGN - out->n % GGUF_DEFAULT_ALIGN) % GGUF_DEFAULT_ALIGN);
    if (out->oom) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    return 0;
}

int gguf_write_detweights(const char *path, const char *model, const gguf_param *params,
                          int nparams, const wspec *t, int n, uint64_t seed, ckpt_dtype dtype) {
    wtensor *w = malloc((size_t)(n ? n : 1) * sizeof *w);
    char *names = NULL;
    wbuf hdr = {0};
    wfile *f = NULL;
    int rc = -1;
    if (!w) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    if (plan_tensors(path, t, n, dtype, w, &names) ||
        build_header(path, model, params, nparams, w, n, seed, dtype, &hdr) ||
        !(f = wfile_open(path)))
        goto done;
    static const unsigned char zeros[GGUF_DEFAULT_ALIGN];
    rc = wfile_write(f, hdr.p, hdr.n);
    for (int i = 0; i < n && rc == 0; i++) {
        rc = wfile_put_detweights_as(f, w[i].hf, w[i].numel, seed, w[i].dt);
        if (rc == 0)
            rc = wfile_write(f, zeros, (GGUF_DEFAULT_ALIGN - w[i].nbytes % GGUF_DEFAULT_ALIGN) %
                                       GGUF_DEFAULT_ALIGN);
    }
    if (rc) {
        wfile_abort(f);
        rc = -1;
    } else {
        rc = wfile_commit(f);
    }
done:
    free(w);
    free(names);
    free(hdr.p);
    return rc;
}
