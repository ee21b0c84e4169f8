/* gguf_test.c - TAP tests of weights/quant.c and weights/gguf.c: the Q8_0 / Q4_0 quantizers
 * on hand-computed blocks (ties, zero blocks, a negative largest value, subnormal and huge
 * scales) and their dequantizers; the GGUF writer read back (f32, f16, bf16, q8_0, q4_0);
 * the reader on a hand-built file (every value type, arrays, alignment 64, every tensor type,
 * Hugging Face names, the lookup API, printing); and hostile input: the file cut at every
 * byte of its header, fields set to bad values one at a time (each refused with a message
 * naming the file and the place), and random byte flips (no crash; run under ASan too).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../weights/weights.h"
#include "unit_files.h"
#include "../../runtime/kiln_blob.h"

enum { NTESTS = 11 + 11 + 10 + 13 + 2 + 5 + 44 + 1 };
static char msg[8192];

/* stderr into msg while a call runs */
static int saved_fd = -1, msg_fd = -1;
static void quiet_begin(void) {
    fflush(stderr);
    saved_fd = dup(2);
    msg_fd = open(tmp("stderr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(msg_fd, 2);
}
static void quiet_end(void) {
    fflush(stderr);
    dup2(saved_fd, 2);
    close(saved_fd);
    ssize_t n = pread(msg_fd, msg, sizeof msg - 1, 0);
    msg[n > 0 ? n : 0] = 0;
    close(msg_fd);
}

static ckpt *open_quiet(const char *path) {
    quiet_begin();
    ckpt *c = ckpt_open(path);
    quiet_end();
    return c;
}

/* The bytes as a file named `name`: ckpt_open must refuse them, naming the file and saying
 * `word`. */
static void rejects(const char *name, const void *bytes, size_t n, const char *word,
                    const char *desc) {
    const char *path = tmp(name);
    spit(path, bytes, n);
    ckpt *c = open_quiet(path);
    int good = !c && strstr(msg, path) && strstr(msg, word);
    if (!good) printf("# wanted '%s', got: %s", word, msg);
    if (getenv("SHOWMSG")) printf("#   %s", msg);
    ok(good, desc);
    ckpt_close(c);
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* ---------------------------------------------------------------- quantizers */

static int bytes_are(const unsigned char *got, const unsigned char *want, size_t n) {
    if (!memcmp(got, want, n)) return 1;
    printf("# got ");
    for (size_t i = 0; i < n; i++) printf("%02x", got[i]);
    printf("\n# want");
    for (size_t i = 0; i < n; i++) printf("%02x", want[i]);
    printf("\n");
    return 0;
}

static void test_q8_0(void) {
    float x[32];
    unsigned char b[2 * Q8_0_BYTES];
    /* amax 127: d = 1 exactly, so q = roundf(x): halves go away from zero */
    static const float head[10] = {127, -127, 2.5f, -2.5f, 0.5f, -0.5f, 0.49999997f, 1.5f,
                                   3.4f, -3.6f};
    memcpy(x, head, sizeof head);
    for (int j = 10; j < 32; j++) x[j] = (float)(j - 20);
    unsigned char want[Q8_0_BYTES] = {0x00, 0x3c, 0x7f, 0x81, 0x03, 0xfd, 0x01, 0xff, 0x00,
                                      0x02, 0x03, 0xfc};
    for (int j = 10; j < 32; j++) want[2 + j] = (unsigned char)(int8_t)(j - 20);
    quant_q8_0_row(x, b, 32);
    ok(bytes_are(b, want, Q8_0_BYTES), "q8_0: d = 1 (f16 0x3c00), q = round(x), ties away from 0");
    float y[64];
    dequant_q8_0_row(b, y, 32);
    int good = 1;
    for (int j = 0; j < 32; j++) good &= y[j] == (float)(int8_t)want[2 + j];
    ok(good, "q8_0 dequant: d * q");

    /* amax 63.5: d = 0.5, id = 2; x*id lands on halves */
    memset(x, 0, sizeof x);
    x[0] = 63.5f, x[1] = 1.25f, x[2] = -0.75f, x[3] = 0.25f, x[31] = -63.5f;
    unsigned char w2[Q8_0_BYTES] = {0x00, 0x38, 127, 3, 0xfe, 1};
    w2[2 + 31] = 0x81;
    quant_q8_0_row(x, b, 32);
    ok(bytes_are(b, w2, Q8_0_BYTES), "q8_0: d = 0.5 (f16 0x3800), 2.5 -> 3, -1.5 -> -2, 0.5 -> 1");

    /* all zero: d = 0, id = 0, every q 0 */
    memset(x, 0, sizeof x);
    memset(b, 0xaa, sizeof b);
    quant_q8_0_row(x, b, 32);
    unsigned char zero[Q8_0_BYTES] = {0};
    ok(bytes_are(b, zero, Q8_0_BYTES), "q8_0: an all-zero block is all zero bytes");

    /* subnormal f16 scale: amax = 127 * 2^-20 gives d = 2^-20 = 16 * 2^-24 */
    memset(x, 0, sizeof x);
    x[0] = 127 * 0x1p-20f, x[1] = 0x1p-21f, x[2] = -3 * 0x1p-21f;
    quant_q8_0_row(x, b, 32);
    unsigned char w3[Q8_0_BYTES] = {0x10, 0x00, 127, 1, 0xfe};
    ok(bytes_are(b, w3, Q8_0_BYTES), "q8_0: subnormal scale 2^-20 (f16 0x0010)");
    dequant_q8_0_row(b, y, 32);
    ok(y[0] == 127 * 0x1p-20f && y[1] == 0x1p-20f && y[2] == -2 * 0x1p-20f,
       "q8_0 dequant with a subnormal scale is exact");
    /* a scale below f16's least subnormal is stored as 0, the quants are still made */
    x[0] = 127 * 0x1p-26f, x[1] = 0x1p-26f, x[2] = 0;
    quant_q8_0_row(x, b, 32);
    dequant_q8_0_row(b, y, 32);
    ok(rd16(b) == 0 && b[2] == 127 && b[3] == 1 && y[0] == 0,
       "q8_0: d = 2^-26 rounds to an f16 0, as ggml stores it");

    /* huge scales: 65504 is f16's largest, 65536 overflows to infinity */
    memset(x, 0, sizeof x);
    x[0] = 127 * 65504.0f, x[1] = -65504.0f;
    quant_q8_0_row(x, b, 32);
    ok(rd16(b) == 0x7bff && b[2] == 127 && b[3] == 0xff, "q8_0: d = 65504 is f16 0x7bff");
    x[0] = 127 * 65536.0f;
    quant_q8_0_row(x, b, 32);
    ok(rd16(b) == 0x7c00 && b[2] == 127, "q8_0: d = 65536 rounds to f16 infinity (0x7c00)");

    /* two blocks are quantized independently */
    float r[64];
    detweights_fill(r, "model.layers.0.self_attn.q_proj.weight", 0, 64, 1);
    unsigned char one[Q8_0_BYTES];
    quant_q8_0_row(r, b, 64);
    quant_q8_0_row(r + 32, one, 32);
    ok(!memcmp(b + Q8_0_BYTES, one, Q8_0_BYTES), "q8_0: a row of two blocks = each block alone");
    dequant_q8_0_row(b, y, 64);
    good = 1;
    for (int j = 0; j < 64; j++) {
        float d = kblob_f16_to_f32(rd16(b + (j / 32) * Q8_0_BYTES));
        good &= fabsf(y[j] - r[j]) <= d * 0.5f * 1.0001f && y[j] == dequant_at(CK_Q8_0, b, (uint64_t)j);
    }
    ok(good, "q8_0: |dequant(quant(x)) - x| <= d/2; dequant_at = dequant_row");
}

static void test_q4_0(void) {
    float x[32] = {0};
    unsigned char b[2 * Q4_0_BYTES];
    /* the largest magnitude is negative: d = -8 / -8 = 1, level = trunc(x + 8.5), max 15 */
    x[0] = -8, x[16] = 7;          /* 0, 15 */
    x[1] = 7.5f, x[17] = 0.5f;     /* 16 -> 15, 9 (x*id exactly .5: up) */
    x[2] = -0.5f, x[18] = -1.5f;   /* 8, 7 */
    x[3] = 1.4f, x[19] = -7.6f;    /* 9, 0 */
    unsigned char want[Q4_0_BYTES] = {0x00, 0x3c, 0xf0, 0x9f, 0x78, 0x09};
    for (int j = 4; j < 16; j++) want[2 + j] = 0x88;
    quant_q4_0_row(x, b, 32);
    ok(bytes_are(b, want, Q4_0_BYTES),
       "q4_0: negative largest value: d = 1, halves up, 16 capped at 15, nibble j | j+16 << 4");
    float y[64];
    dequant_q4_0_row(b, y, 32);
    ok(y[0] == -8 && y[16] == 7 && y[1] == 7 && y[17] == 1 && y[2] == 0 && y[18] == -1 &&
       y[19] == -8 && y[31] == 0, "q4_0 dequant: d * (nibble - 8)");

    /* the largest is positive: d = -1; it maps to level 0 and -8 (16.5) to 15 */
    memset(x, 0, sizeof x);
    x[0] = 8, x[1] = -8, x[2] = 4, x[3] = -0.5f;
    unsigned char w2[Q4_0_BYTES] = {0x00, 0xbc, 0x80, 0x8f, 0x84, 0x89};
    for (int j = 4; j < 16; j++) w2[2 + j] = 0x88;
    quant_q4_0_row(x, b, 32);
    ok(bytes_are(b, w2, Q4_0_BYTES), "q4_0: positive largest: d = -1 (f16 0xbc00)");

    /* equal magnitudes: the first one sets the sign of d */
    memset(x, 0, sizeof x);
    x[3] = 8, x[5] = -8;
    quant_q4_0_row(x, b, 32);
    uint16_t d1 = rd16(b);
    x[3] = -8, x[5] = 8;
    quant_q4_0_row(x, b, 32);
    ok(d1 == 0xbc00 && rd16(b) == 0x3c00, "q4_0: of equal magnitudes the first decides the sign");

    memset(x, 0, sizeof x);
    quant_q4_0_row(x, b, 32);
    unsigned char w3[Q4_0_BYTES] = {0x00, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
                                    0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
    ok(bytes_are(b, w3, Q4_0_BYTES), "q4_0: all zero: d = 0 / -8 = -0 (f16 0x8000), every level 8");

    /* subnormal and infinite f16 scales */
    memset(x, 0, sizeof x);
    x[0] = -8 * 0x1p-20f, x[1] = 0x1p-20f;
    quant_q4_0_row(x, b, 32);
    ok(rd16(b) == 0x0010 && b[2] == 0x80 && b[3] == 0x89, "q4_0: subnormal scale 2^-20 (f16 0x0010)");
    x[0] = -8 * 65536.0f, x[1] = 0;
    quant_q4_0_row(x, b, 32);
    ok(rd16(b) == 0x7c00 && b[2] == 0x80, "q4_0: d = 65536 rounds to f16 infinity");

    float r[64];
    detweights_fill(r, "model.layers.0.mlp.up_proj.weight", 0, 64, 3);
    unsigned char one[Q4_0_BYTES];
    quant_q4_0_row(r, b, 64);
    quant_q4_0_row(r + 32, one, 32);
    ok(!memcmp(b + Q4_0_BYTES, one, Q4_0_BYTES), "q4_0: a row of two blocks = each block alone");
    dequant_q4_0_row(b, y, 64);
    int good = 1;
    for (int j = 0; j < 64; j++) {
        float d = fabsf(kblob_f16_to_f32(rd16(b + (j / 32) * Q4_0_BYTES)));
        good &= fabsf(y[j] - r[j]) <= d * 1.0001f && y[j] == dequant_at(CK_Q4_0, b, (uint64_t)j);
    }
    ok(good, "q4_0: |dequant(quant(x)) - x| <= |d|; dequant_at = dequant_row");
    ok(dequant_at(CK_F32, b, 0) == 0, "dequant_at of a non-block type is 0");
    /* NaN and infinity stay defined (no out-of-range conversion) */
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY;
    quant_q4_0_row(x, b, 32);
    quant_q8_0_row(x, b, 32);
    ok(1, "quantizers take NaN and infinity without undefined behaviour (UBSan)");
}

/* ---------------------------------------------------------------- the writer, read back */

static char names[64][64];
/* A tiny dense LLaMA: dim 64, hidden 96, 2 layers, 4 heads / 2 KV heads, vocab 40, untied. */
static int tiny_specs(wspec *s) {
    static const char *sfx[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                "self_attn.v_proj", "self_attn.o_proj",
                                "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                "mlp.down_proj"};
    static const int64_t rows[] = {64, 64, 32, 32, 64, 64, 96, 96, 64};
    static const int64_t cols[] = {0, 64, 64, 64, 64, 0, 64, 64, 96};
    int k = 0;
    s[k++] = (wspec){"model.embed_tokens.weight", 2, {40, 64}};
    for (int l = 0; l < 2; l++)
        for (int j = 0; j < 9; j++, k++) {
            snprintf(names[k], sizeof names[k], "model.layers.%d.%s.weight", l, sfx[j]);
            s[k] = (wspec){names[k], cols[j] ? 2 : 1, {rows[j], cols[j]}};
        }
    s[k++] = (wspec){"model.norm.weight", 1, {64}};
    s[k++] = (wspec){"lm_head.weight", 2, {40, 64}};
    s[k++] = (wspec){"model.layers.0.extra.weight", 2, {3, 40}};  /* rows not whole blocks */
    return k;
}

static const gguf_param tiny_params[] = {
    {"dim", "64"}, {"hidden", "96"}, {"layers", "2"}, {"heads", "4"}, {"kv_heads", "2"},
    {"vocab", "40"}, {"ctx", "32"}, {"eps", "1e-05"}, {"rope_base", "10000"},
    {"rope", "\"interleaved\""}, {"tied", "0"},
};
#define N_TINY_PARAMS ((int)(sizeof tiny_params / sizeof tiny_params[0]))

/* Every spec tensor holds det-weights v1 (seed) as the writer stores it for dtype. */
static int holds_detweights(const ckpt *c, const wspec *s, int n, uint64_t seed, ckpt_dtype dt) {
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *t = ckpt_find(c, s[i].name);
        if (!t || t->rank != s[i].rank) return 0;
        for (int k = 0; k < t->rank; k++)
            if (t->shape[k] != s[i].shape[k]) return 0;
        uint64_t m = 1;
        for (int k = 0; k < t->rank; k++) m *= (uint64_t)t->shape[k];
        ckpt_dtype want = t->rank < 2 ? CK_F32 : dt;
        if ((dt == CK_Q8_0 || dt == CK_Q4_0) && t->shape[t->rank - 1] % 32) want = CK_F32;
        if (t->dtype != want) return 0;
        float *v = malloc(m * sizeof *v);
        unsigned char *b = malloc(m * 4);
        detweights_fill(v, s[i].name, 0, m, seed);
        size_t nb = m * 4;
        if (want == CK_F32) memcpy(b, v, nb);
        else if (want == CK_Q8_0) quant_q8_0_row(v, b, (int64_t)m), nb = m / 32 * Q8_0_BYTES;
        else if (want == CK_Q4_0) quant_q4_0_row(v, b, (int64_t)m), nb = m / 32 * Q4_0_BYTES;
        else {
            for (uint64_t j = 0; j < m; j++) {
                uint16_t h = want == CK_F16 ? kblob_f32_to_f16(v[j]) : kblob_f32_to_bf16(v[j]);
                b[2 * j] = (unsigned char)h, b[2 * j + 1] = (unsigned char)(h >> 8);
            }
            nb = m * 2;
        }
        int same = t->nbytes == nb && !memcmp(ckpt_data(c, t), b, nb) && t->offset % 32 == 0;
        free(v);
        free(b);
        if (!same) return 0;
    }
    return 1;
}

static int no_temporaries(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int good = 1;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) good = 0;
    if (d) closedir(d);
    return good;
}

static void test_writer(void) {
    wspec s[64];
    int n = tiny_specs(s);
    static const struct { ckpt_dtype dt; const char *name; unsigned ftype; } cases[] = {
        {CK_F32, "f32", 0}, {CK_F16, "f16", 1}, {CK_BF16, "bf16", 32}, {CK_Q8_0, "q8_0", 7},
        {CK_Q4_0, "q4_0", 2},
    };
    for (int k = 0; k < 5; k++) {
        char file[64], d[160];
        snprintf(file, sizeof file, "tiny-%s.gguf", cases[k].name);
        const char *p = tmp(file);
        quiet_begin();
        int rc = gguf_write_detweights(p, "tiny", tiny_params, N_TINY_PARAMS, s, n, 7,
                                       cases[k].dt);
        quiet_end();
        ckpt *c = rc == 0 ? open_quiet(p) : NULL;
        int64_t ft = -1;
        snprintf(d, sizeof d, "gguf writer, %s: reads back, det-weights stored as %s (norm gains "
                 "and part-block rows f32), file type %u", cases[k].name, cases[k].name,
                 cases[k].ftype);
        ok(c && c->format == CKPT_GGUF && c->n == n && no_temporaries() &&
           holds_detweights(c, s, n, 7, cases[k].dt) &&
           ckpt_gguf_int(c, "general.file_type", &ft) == 1 && ft == cases[k].ftype, d);
        if (!c) printf("# %s", msg);
        if (k == 3 && c) {
            const ckpt_tensor *e = ckpt_find(c, "model.embed_tokens.weight");
            const ckpt_tensor *q = ckpt_find(c, "model.layers.1.self_attn.q_proj.weight");
            const ckpt_tensor *x = ckpt_find(c, "model.layers.0.extra.weight");
            ok(e && !strcmp(e->gguf_name, "token_embd.weight") && q &&
               !strcmp(q->gguf_name, "blk.1.attn_q.weight") && x &&
               !strcmp(x->gguf_name, "model.layers.0.extra.weight") &&
               !strcmp(ckpt_find(c, "lm_head.weight")->gguf_name, "output.weight"),
               "gguf writer: GGUF names in the file, Hugging Face names read back, unknown kept");
            int64_t v[8] = {0};
            double eps = 0, base = 0;
            const gguf_str *arch = NULL, *name = NULL;
            int got = ckpt_gguf_int(c, "llama.embedding_length", &v[0]) == 1 &&
                      ckpt_gguf_int(c, "llama.feed_forward_length", &v[1]) == 1 &&
                      ckpt_gguf_int(c, "llama.block_count", &v[2]) == 1 &&
                      ckpt_gguf_int(c, "llama.attention.head_count", &v[3]) == 1 &&
                      ckpt_gguf_int(c, "llama.attention.head_count_kv", &v[4]) == 1 &&
                      ckpt_gguf_int(c, "llama.context_length", &v[5]) == 1 &&
                      ckpt_gguf_int(c, "llama.rope.dimension_count", &v[6]) == 1 &&
                      ckpt_gguf_int(c, "general.alignment", &v[7]) == 1 &&
                      ckpt_gguf_float(c, "llama.attention.layer_norm_rms_epsilon", &eps) == 1 &&
                      ckpt_gguf_float(c, "llama.rope.freq_base", &base) == 1 &&
                      ckpt_gguf_str(c, "general.architecture", &arch) == 1 &&
                      ckpt_gguf_str(c, "general.name", &name) == 1;
            ok(got && v[0] == 64 && v[1] == 96 && v[2] == 2 && v[3] == 4 && v[4] == 2 &&
               v[5] == 32 && v[6] == 16 && v[7] == 32 && eps == (double)1e-5f && base == 10000 &&
               !strcmp(arch->s, "llama") && !strcmp(name->s, "tiny") &&
               ckpt_gguf_find(c, "llama.rope")== NULL && c->gguf.version == 3,
               "gguf writer: general.* and the llama.* hyperparameters of the spec");
        }
        ckpt_close(c);
    }
    /* refusals: nothing written, no temporary left */
    const char *p = tmp("bad.gguf");
    wspec bad[64];
    memcpy(bad, s, sizeof bad);
    bad[3] = (wspec){"output.weight", 2, {40, 64}};   /* lm_head.weight is output.weight too */
    quiet_begin();
    int rc = gguf_write_detweights(p, "tiny", tiny_params, N_TINY_PARAMS, bad, n, 7, CK_F32);
    quiet_end();
    ok(rc && strstr(msg, "two tensors are named 'output.weight'") && access(p, F_OK) &&
       no_temporaries(), "gguf writer: two tensors of one GGUF name are refused, no output");
    bad[3] = (wspec){"scalar", 0, {0}};
    quiet_begin();
    rc = gguf_write_detweights(p, "tiny", tiny_params, N_TINY_PARAMS, bad, n, 7, CK_F32);
    quiet_end();
    ok(rc && strstr(msg, "tensor 'scalar': rank 0") && access(p, F_OK),
       "gguf writer: a rank-0 tensor is refused");
    gguf_param pp[2] = {{"dim", "64"}, {"eps", "small"}};
    quiet_begin();
    rc = gguf_write_detweights(p, "tiny", pp, 2, s, n, 7, CK_F32);
    int rc2 = gguf_write_detweights(p, "tiny", (gguf_param[]){{"heads", "-4"}}, 1, s, n, 7, CK_F32);
    quiet_end();
    ok(rc && rc2 && strstr(msg, "parameter eps = small: llama.attention.layer_norm_rms_epsilon "
                           "needs a finite real number") &&
       strstr(msg, "parameter heads = -4") && access(p, F_OK) && no_temporaries(),
       "gguf writer: a hyperparameter that is no number is refused");
}

/* ---------------------------------------------------------------- a hand-built file */

typedef struct gb {
    unsigned char *p;
    size_t n, cap;
} gb;

static size_t gb_put(gb *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return b->n - n;
}
static size_t gb_le(gb *b, uint64_t v, int n) {
    unsigned char t[8];
    for (int i = 0; i < n; i++) t[i] = (unsigned char)(v >> (8 * i));
    return gb_put(b, t, (size_t)n);
}
static size_t gb_strn(gb *b, const char *s, size_t n) {
    size_t at = gb_le(b, n, 8);
    gb_put(b, s, n);
    return at;
}
static size_t gb_str(gb *b, const char *s) { return gb_strn(b, s, strlen(s)); }
static size_t gb_key(gb *b, const char *key, unsigned type) {
    size_t at = gb_str(b, key);
    gb_le(b, type, 4);
    return at;
}
static uint64_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Byte offsets of the fields the hostile tests change. */
typedef struct marks {
    size_t version, ntensors, nkv, key0_len, u8_type, bool_value, align_type, align_value;
    size_t arr_str_item, arr_str_count, arr_u8_count, str_len, arch_kv;
    size_t t0_name, t0_ndims, t0_dim0, t0_dim1, t0_offset, t3_type, t3_dim0, t1_offset, t4_offset;
    size_t end_infos, end_data;
} marks;

typedef struct sample_opts {
    const char *arch;         /* NULL: no general.architecture */
    const char *name3;        /* the Q8_0 tensor's name */
} sample_opts;

enum { N_SAMPLE_KV = 20, N_SAMPLE_T = 5, SAMPLE_ALIGN = 64 };

static float sample_q8_src[128];

static void build_sample(gb *b, marks *m, const sample_opts *o) {
    memset(m, 0, sizeof *m);
    b->n = 0;
    gb_put(b, "GGUF", 4);
    m->version = gb_le(b, 3, 4);
    m->ntensors = gb_le(b, N_SAMPLE_T, 8);
    m->nkv = gb_le(b, o->arch ? N_SAMPLE_KV : N_SAMPLE_KV - 1, 8);
    if (o->arch) {
        m->arch_kv = m->key0_len = gb_key(b, "general.architecture", GGUF_STRING);
        gb_str(b, o->arch);
    }
    size_t at = gb_key(b, "general.alignment", GGUF_U32);
    if (!o->arch) m->key0_len = at;
    m->align_type = at + 8 + strlen("general.alignment");
    m->align_value = gb_le(b, SAMPLE_ALIGN, 4);
    m->u8_type = gb_key(b, "t.u8", GGUF_U8) + 8 + 4;
    gb_le(b, 255, 1);
    gb_key(b, "t.i8", GGUF_I8), gb_le(b, 0xff, 1);
    gb_key(b, "t.u16", GGUF_U16), gb_le(b, 65535, 2);
    gb_key(b, "t.i16", GGUF_I16), gb_le(b, (uint16_t)-2, 2);
    gb_key(b, "t.u32", GGUF_U32), gb_le(b, 4000000000u, 4);
    gb_key(b, "t.i32", GGUF_I32), gb_le(b, (uint32_t)-3, 4);
    gb_key(b, "t.f32", GGUF_F32), gb_le(b, f32_bits(1.5f), 4);
    gb_key(b, "t.bool", GGUF_BOOL);
    m->bool_value = gb_le(b, 1, 1);
    gb_key(b, "t.str", GGUF_STRING);
    m->str_len = gb_strn(b, "a\0b\"\n", 5);
    gb_key(b, "t.u64", GGUF_U64), gb_le(b, (1ull << 63) + 5, 8);
    gb_key(b, "t.i64", GGUF_I64), gb_le(b, (uint64_t)-(1ll << 40), 8);
    double tenth = 0.1;
    uint64_t tb;
    memcpy(&tb, &tenth, 8);
    gb_key(b, "t.f64", GGUF_F64), gb_le(b, tb, 8);
    gb_key(b, "t.arr_str", GGUF_ARRAY);
    m->arr_str_item = gb_le(b, GGUF_STRING, 4);
    m->arr_str_count = gb_le(b, 3, 8);
    gb_str(b, "x"), gb_str(b, ""), gb_str(b, "yz");
    gb_key(b, "t.arr_u8", GGUF_ARRAY), gb_le(b, GGUF_U8, 4);
    m->arr_u8_count = gb_le(b, 10, 8);
    for (int i = 0; i < 10; i++) gb_le(b, (uint64_t)i, 1);
    gb_key(b, "t.arr_f32", GGUF_ARRAY), gb_le(b, GGUF_F32, 4), gb_le(b, 2, 8);
    gb_le(b, f32_bits(0.25f), 4), gb_le(b, f32_bits(-2), 4);
    gb_key(b, "t.arr_bool", GGUF_ARRAY), gb_le(b, GGUF_BOOL, 4), gb_le(b, 2, 8);
    gb_le(b, 1, 1), gb_le(b, 0, 1);
    gb_key(b, "t.arr_i16", GGUF_ARRAY), gb_le(b, GGUF_I16, 4), gb_le(b, 2, 8);
    gb_le(b, (uint16_t)-5, 2), gb_le(b, 7, 2);
    gb_key(b, "t.empty", GGUF_ARRAY), gb_le(b, GGUF_I32, 4), gb_le(b, 0, 8);
    /* tensor infos: dims innermost first */
    m->t0_name = gb_str(b, "token_embd.weight");
    m->t0_ndims = gb_le(b, 2, 4);
    m->t0_dim0 = gb_le(b, 3, 8);
    m->t0_dim1 = gb_le(b, 2, 8);
    gb_le(b, 0, 4);                                         /* F32 [2, 3] */
    m->t0_offset = gb_le(b, 0, 8);
    gb_str(b, "blk.12.attn_q.bias"), gb_le(b, 1, 4), gb_le(b, 4, 8), gb_le(b, 1, 4);
    m->t1_offset = gb_le(b, 64, 8);                         /* F16 [4] */
    gb_str(b, "rope_freqs.weight"), gb_le(b, 1, 4), gb_le(b, 2, 8), gb_le(b, 30, 4);
    gb_le(b, 128, 8);                                       /* BF16 [2] */
    gb_str(b, o->name3 ? o->name3 : "blk.0.ffn_down.weight"), gb_le(b, 2, 4);
    m->t3_dim0 = gb_le(b, 64, 8);
    gb_le(b, 2, 8);
    m->t3_type = gb_le(b, 8, 4);                            /* Q8_0 [2, 64] */
    gb_le(b, 192, 8);
    gb_str(b, "output.weight"), gb_le(b, 3, 4), gb_le(b, 32, 8), gb_le(b, 1, 8), gb_le(b, 1, 8);
    gb_le(b, 2, 4);
    m->t4_offset = gb_le(b, 384, 8);                        /* Q4_0 [1, 1, 32] */
    m->end_infos = b->n;
    while (b->n % SAMPLE_ALIGN) gb_le(b, 0, 1);
    size_t data = b->n;
    for (int i = 0; i < 6; i++) gb_le(b, f32_bits((float)i), 4);
    while (b->n < data + 64) gb_le(b, 0, 1);
    for (int i = 1; i <= 4; i++) gb_le(b, kblob_f32_to_f16((float)i), 2);
    while (b->n < data + 128) gb_le(b, 0, 1);
    gb_le(b, kblob_f32_to_bf16(-1), 2), gb_le(b, kblob_f32_to_bf16(0.5f), 2);
    while (b->n < data + 192) gb_le(b, 0, 1);
    unsigned char q[4 * Q8_0_BYTES];
    for (int i = 0; i < 128; i++)   /* integers, 127 in each block: d = 1, exact */
        sample_q8_src[i] = i % 32 ? (float)((i * 37) % 255 - 127) : 127;
    quant_q8_0_row(sample_q8_src, q, 128);
    gb_put(b, q, 4 * Q8_0_BYTES);
    while (b->n < data + 384) gb_le(b, 0, 1);
    float ramp[32];
    for (int i = 0; i < 32; i++) ramp[i] = (float)((i % 16 - 8) * 2);   /* d = 2, exact */
    quant_q4_0_row(ramp, q, 32);
    gb_put(b, q, Q4_0_BYTES);
    m->end_data = b->n;
}

static const sample_opts std_opts = {"llama", NULL};

static int str_is(const gguf_str *s, const char *want, size_t len) {
    return s && s->len == len && !memcmp(s->s, want, len) && s->s[len] == 0;
}

static int printed_as(const gguf_kv *kv, uint64_t items, size_t max_str, const char *want) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    gguf_print_value(f, kv, items, max_str);
    fclose(f);
    int same = !strcmp(buf, want);
    if (!same) printf("# printed %s, wanted %s\n", buf, want);
    free(buf);
    return same;
}

static void test_sample(void) {
    gb b = {0};
    marks m;
    build_sample(&b, &m, &std_opts);
    const char *p = tmp("sample.gguf");
    spit(p, b.p, b.n);
    ckpt *c = open_quiet(p);
    if (!c) printf("# %s", msg);
    ok(c && c->format == CKPT_GGUF && c->n == N_SAMPLE_T && c->gguf.nkv == N_SAMPLE_KV &&
       c->gguf.alignment == 64 && c->gguf.data_offset % 64 == 0 &&
       c->gguf.data_offset == (m.end_infos + 63) / 64 * 64,
       "hand-built GGUF: opens; alignment 64; the data section starts at the aligned end of the "
       "tensor infos");
    if (!c) {
        for (int i = 1; i < 13; i++) ok(0, "hand-built GGUF (did not open)");
        free(b.p);
        return;
    }
    const ckpt_tensor *t0 = ckpt_find(c, "model.embed_tokens.weight");
    const ckpt_tensor *t1 = ckpt_find(c, "model.layers.12.self_attn.q_proj.bias");
    const ckpt_tensor *t2 = ckpt_find(c, "rope_freqs.weight");
    const ckpt_tensor *t3 = ckpt_find(c, "model.layers.0.mlp.down_proj.weight");
    const ckpt_tensor *t4 = ckpt_find(c, "lm_head.weight");
    ok(t0 && t1 && t2 && t3 && t4 && !strcmp(t1->gguf_name, "blk.12.attn_q.bias") &&
       !strcmp(t2->gguf_name, "rope_freqs.weight") && !strcmp(t4->gguf_name, "output.weight"),
       "tensors take Hugging Face names (.bias too); an unknown one keeps its GGUF name");
    ok(t0 && t0->rank == 2 && t0->shape[0] == 2 && t0->shape[1] == 3 && t0->dtype == CK_F32 &&
       t4 && t4->rank == 3 && t4->shape[0] == 1 && t4->shape[2] == 32 && t4->dtype == CK_Q4_0 &&
       t3 && t3->shape[0] == 2 && t3->shape[1] == 64 && t3->dtype == CK_Q8_0 && t3->nbytes == 136 &&
       t1 && t1->dtype == CK_F16 && t1->nbytes == 8 && t2 && t2->dtype == CK_BF16,
       "shapes outermost first (GGUF lists them innermost first); types and byte sizes");
    int good = t0 && t1 && t2 && t3 && t4;
    for (int i = 0; good && i < 6; i++) {
        float f;
        memcpy(&f, (const char *)ckpt_data(c, t0) + 4 * i, 4);
        good = f == (float)i;
    }
    good = good && kblob_f16_to_f32(rd16(ckpt_data(c, t1))) == 1 &&
           kblob_f16_to_f32(rd16((const unsigned char *)ckpt_data(c, t1) + 6)) == 4 &&
           kblob_bf16_to_f32(rd16(ckpt_data(c, t2))) == -1;
    for (int j = 0; good && j < 128; j++)
        good = dequant_at(CK_Q8_0, ckpt_data(c, t3), (uint64_t)j) == sample_q8_src[j];
    for (int j = 0; good && j < 32; j++)
        good = dequant_at(CK_Q4_0, ckpt_data(c, t4), (uint64_t)j) == (float)((j % 16 - 8) * 2);
    ok(good, "tensor data at data section + offset: F32, F16, BF16, Q8_0, Q4_0 values");

    int64_t i;
    double f;
    int bl;
    const gguf_str *s;
    ok(ckpt_gguf_int(c, "t.u8", &i) == 1 && i == 255 && ckpt_gguf_int(c, "t.i8", &i) == 1 &&
       i == -1 && ckpt_gguf_int(c, "t.u16", &i) == 1 && i == 65535 &&
       ckpt_gguf_int(c, "t.i16", &i) == 1 && i == -2 && ckpt_gguf_int(c, "t.u32", &i) == 1 &&
       i == 4000000000 && ckpt_gguf_int(c, "t.i32", &i) == 1 && i == -3 &&
       ckpt_gguf_int(c, "t.i64", &i) == 1 && i == -(1ll << 40),
       "metadata: every integer type, signed ones sign-extended");
    ok(ckpt_gguf_int(c, "t.u64", &i) == -1 && ckpt_gguf_find(c, "t.u64")->v.u == (1ull << 63) + 5 &&
       ckpt_gguf_int(c, "t.f32", &i) == -1 && ckpt_gguf_int(c, "absent", &i) == 0,
       "ckpt_gguf_int: a u64 past INT64_MAX or a real is another type (-1); absent is 0");
    ok(ckpt_gguf_float(c, "t.f32", &f) == 1 && f == 1.5 && ckpt_gguf_float(c, "t.f64", &f) == 1 &&
       f == 0.1 && ckpt_gguf_float(c, "t.u8", &f) == -1 && ckpt_gguf_bool(c, "t.bool", &bl) == 1 &&
       bl == 1 && ckpt_gguf_bool(c, "t.u8", &bl) == -1 && ckpt_gguf_str(c, "t.str", &s) == 1 &&
       str_is(s, "a\0b\"\n", 5) && ckpt_gguf_str(c, "t.u8", &s) == -1,
       "metadata: f32, f64, bool, a string holding a NUL; wrong types are -1");
    const gguf_kv *a = NULL, *a8 = NULL, *af = NULL, *ab = NULL, *ai = NULL, *e = NULL;
    const gguf_str *s0, *s1, *s2;
    int64_t v0, v9, vb, vi;
    double f0, f1;
    ok(ckpt_gguf_array(c, "t.arr_str", GGUF_STRING, &a) == 1 && a->v.arr.n == 3 &&
       gguf_item_str(a, 0, &s0) == 1 && str_is(s0, "x", 1) && gguf_item_str(a, 1, &s1) == 1 &&
       str_is(s1, "", 0) && gguf_item_str(a, 2, &s2) == 1 && str_is(s2, "yz", 2) &&
       gguf_item_str(a, 3, &s2) == -1 && gguf_item_int(a, 0, &v0) == -1 &&
       ckpt_gguf_array(c, "t.arr_str", GGUF_U8, &a) == -1,
       "metadata: an array of strings (an empty one too); out of range and wrong kind are -1");
    ok(ckpt_gguf_array(c, "t.arr_u8", GGUF_U8, &a8) == 1 && gguf_item_int(a8, 0, &v0) == 1 &&
       v0 == 0 && gguf_item_int(a8, 9, &v9) == 1 && v9 == 9 && gguf_item_int(a8, 10, &v9) == -1 &&
       ckpt_gguf_array(c, "t.arr_f32", GGUF_TYPE_COUNT, &af) == 1 &&
       gguf_item_float(af, 0, &f0) == 1 && f0 == 0.25 && gguf_item_float(af, 1, &f1) == 1 &&
       f1 == -2 && ckpt_gguf_array(c, "t.arr_bool", GGUF_BOOL, &ab) == 1 &&
       gguf_item_int(ab, 0, &vb) == -1 && ckpt_gguf_array(c, "t.arr_i16", GGUF_I16, &ai) == 1 &&
       gguf_item_int(ai, 0, &vi) == 1 && vi == -5 &&
       ckpt_gguf_array(c, "t.empty", GGUF_I32, &e) == 1 && e->v.arr.n == 0 &&
       ckpt_gguf_array(c, "t.u8", GGUF_TYPE_COUNT, &e) == -1,
       "metadata: arrays of u8, f32, bool, i16 and an empty one, item by item");
    int nkv = 0;
    const gguf_kv *all = ckpt_gguf_kv(c, &nkv);
    ok(all && nkv == N_SAMPLE_KV && !strcmp(all[0].key, "general.architecture") &&
       all[0].offset == m.key0_len && !strcmp(all[19].key, "t.empty"),
       "ckpt_gguf_kv: every entry in file order, with its byte offset");
    ok(a8 && a && af &&
       printed_as(ckpt_gguf_find(c, "t.u32"), 8, 100, "u32 4000000000") &&
       printed_as(ckpt_gguf_find(c, "t.i16"), 8, 100, "i16 -2") &&
       printed_as(ckpt_gguf_find(c, "t.f64"), 8, 100, "f64 0.1") &&
       printed_as(ckpt_gguf_find(c, "t.bool"), 8, 100, "bool true") &&
       printed_as(ckpt_gguf_find(c, "t.str"), 8, 100, "string \"a\\x00b\\\"\\n\"") &&
       printed_as(ckpt_gguf_find(c, "t.str"), 8, 2, "string \"a\\x00\"... (5 bytes)") &&
       printed_as(a8, 8, 100, "array[u8] of 10: 0, 1, 2, 3, 4, 5, 6, 7, ... (first 8)") &&
       printed_as(ckpt_gguf_find(c, "t.arr_str"), 8, 100, "array[string] of 3: \"x\", \"\", \"yz\"") &&
       printed_as(af, 8, 100, "array[f32] of 2: 0.25, -2") &&
       printed_as(ckpt_gguf_find(c, "t.empty"), 8, 100, "array[i32] of 0"),
       "gguf_print_value: scalars, escaped and cut strings, arrays with their first items");
    ckpt_close(c);

    /* detection: the magic wins over a .bin or .safetensors name */
    const char *q = tmp("sample.bin");
    spit(q, b.p, b.n);
    c = open_quiet(q);
    ok(c && c->format == CKPT_GGUF, "a GGUF file named .bin is read as GGUF (the magic decides)");
    ckpt_close(c);
    /* a truncated file after the last tensor's data is still whole */
    spit(q, b.p, m.end_data);
    c = open_quiet(q);
    ok(c && c->n == N_SAMPLE_T, "the file may end right after the last tensor's bytes");
    ckpt_close(c);
    free(b.p);
}

static void test_names(void) {
    static const char *pairs[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
        {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
        {"blk.10.attn_q.weight", "model.layers.10.self_attn.q_proj.weight"},
        {"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight"},
        {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
        {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
        {"blk.7.ffn_norm.weight", "model.layers.7.post_attention_layernorm.weight"},
        {"blk.7.ffn_gate.weight", "model.layers.7.mlp.gate_proj.weight"},
        {"blk.7.ffn_up.weight", "model.layers.7.mlp.up_proj.weight"},
        {"blk.7.ffn_down.weight", "model.layers.7.mlp.down_proj.weight"},
        {"blk.2.attn_q.bias", "model.layers.2.self_attn.q_proj.bias"},
    };
    char out[128];
    int good = 1;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        good &= gguf_name_to_hf(pairs[i][0], out, sizeof out) == 1 && !strcmp(out, pairs[i][1]);
        good &= gguf_name_from_hf(pairs[i][1], out, sizeof out) == 1 && !strcmp(out, pairs[i][0]);
    }
    ok(good, "the llama name map, both ways");
    static const char *kept[] = {"rope_freqs.weight", "blk.x.attn_q.weight", "blk.1.attn_qq.weight",
                                 "blk.1.attn_q.weightx", "blk..attn_q.weight",
                                 "model.layers.0.mlp.router.weight", "blk.1234567890.attn_q.weight"};
    good = 1;
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        good &= gguf_name_to_hf(kept[i], out, sizeof out) == 0 && !strcmp(out, kept[i]);
        good &= gguf_name_from_hf(kept[i], out, sizeof out) == 0 && !strcmp(out, kept[i]);
    }
    ok(good && gguf_name_to_hf("blk.1.attn_q.weight", out, 10) == -1,
       "names the map does not know stay as they are; too small a buffer is -1");
}

/* ---------------------------------------------------------------- hostile input */

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* gguf_parse on an exact-size copy (ASan sees any read past it); 0 if it opened. */
static int parse_copy(const unsigned char *bytes, size_t n) {
    unsigned char *copy = malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    ckpt_gguf g;
    ckpt_tensor *t;
    int nt, rc = gguf_parse("cut.gguf", copy, n, &g, &t, &nt);
    if (rc == 0) {
        free(t);
        free(g.kv);
    }
    free(copy);
    return rc;
}

static void test_truncation(void) {
    gb b = {0};
    marks m;
    build_sample(&b, &m, &std_opts);
    int refused = 1, whole = 1;
    quiet_begin();
    for (size_t n = 0; n < m.end_data; n++)   /* every cut before the last tensor's end */
        refused &= parse_copy(b.p, n) == -1;
    for (size_t n = m.end_data; n <= b.n; n++) whole &= parse_copy(b.p, n) == 0;
    quiet_end();
    ok(refused, "cut at every byte before the end of the last tensor: refused, no crash");
    ok(whole, "cut after it: read");
    /* with counts that fit the cut file, to get past the header's size check */
    unsigned char *fewer = malloc(b.n);
    memcpy(fewer, b.p, b.n);
    put_le(fewer + m.ntensors, 1, 8);
    spit(tmp("cut.gguf"), fewer, m.t0_dim1 + 3);
    ckpt *c = open_quiet(tmp("cut.gguf"));
    ok(!c && strstr(msg, tmp("cut.gguf")) && strstr(msg, "tensor 'token_embd.weight': truncated "
                    "at its dimensions: 8 bytes needed at byte") && strstr(msg, "(tensor info at byte"),
       "a cut in a tensor info names the tensor, the field and the byte");
    if (getenv("SHOWMSG")) printf("#   %s", msg);
    ckpt_close(c);
    put_le(fewer + m.ntensors, 0, 8);
    put_le(fewer + m.nkv, 11, 8);
    rejects("cut2.gguf", fewer, m.str_len + 10, "metadata key 't.str': its string value (length "
            "at byte", "a cut in a string names the key");
    free(fewer);

    /* a writer's file cut at many places */
    wspec s[64];
    int n = tiny_specs(s);
    const char *p = tmp("tiny-cut.gguf");
    quiet_begin();
    gguf_write_detweights(p, "tiny", tiny_params, N_TINY_PARAMS, s, n, 7, CK_Q4_0);
    quiet_end();
    FILE *f = fopen(p, "rb");
    unsigned char *w = malloc(1 << 20);
    size_t wn = f ? fread(w, 1, 1 << 20, f) : 0;
    if (f) fclose(f);
    c = open_quiet(p);
    const ckpt_tensor *last = NULL;
    for (int i = 0; c && i < c->n; i++)
        if (!last || c->tensors[i].offset > last->offset) last = &c->tensors[i];
    size_t end = last ? (size_t)(last->offset + last->nbytes) : 0, hdr = c ? c->gguf.data_offset : 0;
    ckpt_close(c);
    refused = end > 0 && end <= wn;
    quiet_begin();
    for (size_t k = 0; refused && k < end; k += k < hdr ? 1 : 61) refused &= parse_copy(w, k) == -1;
    refused &= end > 0 && parse_copy(w, end - 1) == -1 && parse_copy(w, end) == 0;
    quiet_end();
    ok(refused, "the writer's q4_0 file cut at every header byte and every 61st data byte: refused");
    free(w);
    free(b.p);
}

typedef struct mutation {
    const char *file, *want, *desc;
    size_t marks_off;         /* offsetof(marks, field) */
    int width;
    uint64_t value;
} mutation;

#define AT(f) offsetof(marks, f)

static void test_fields(void) {
    static const mutation muts[] = {
        {"ver1.gguf", "GGUF version 1 is not supported (kiln reads versions 2 and 3)",
         "version 1", AT(version), 4, 1},
        {"ver9.gguf", "GGUF version 9 is not supported", "version 9", AT(version), 4, 9},
        {"bigend.gguf", "big-endian", "a big-endian file", AT(version), 4, 0x03000000},
        {"nt-huge.gguf", "tensor count 18446744073709551615 is more than the limit",
         "tensor count 2^64-1", AT(ntensors), 8, UINT64_MAX},
        {"nt-fit.gguf", "cannot fit in the", "a tensor count the file cannot hold",
         AT(ntensors), 8, 100000},
        {"nt-plus.gguf", "tensor info 5", "one tensor more than there are", AT(ntensors), 8, 6},
        {"nkv-huge.gguf", "metadata count 4294967296 is more than the limit",
         "metadata count 2^32", AT(nkv), 8, 1ull << 32},
        {"nkv-plus.gguf", "tensor info 0", "one metadata entry more (read from the tensor infos)",
         AT(nkv), 8, 21},
        {"key-huge.gguf", "metadata entry 0: its key (length at byte 24) is", "a key length "
         "past the end", AT(key0_len), 8, 1ull << 62},
        {"key-empty.gguf", "metadata entry 0: the key is empty", "an empty key", AT(key0_len), 8, 0},
        {"type13.gguf", "metadata key 't.u8': value type 13 is not a GGUF value type (0..12)",
         "value type 13", AT(u8_type), 4, 13},
        {"type-big.gguf", "value type 4294967295", "value type 2^32-1", AT(u8_type), 4, UINT32_MAX},
        {"bool2.gguf", "metadata key 't.bool': the bool holds 2 (not 0 or 1)", "a bool of 2",
         AT(bool_value), 1, 2},
        {"str-huge.gguf", "metadata key 't.str': its string value (length at byte",
         "a string length past the end", AT(str_len), 8, UINT64_MAX},
        {"nested.gguf", "metadata key 't.arr_str': an array of arrays", "an array of arrays",
         AT(arr_str_item), 4, GGUF_ARRAY},
        {"item-type.gguf", "array item type 77 is not a GGUF value type", "array item type 77",
         AT(arr_str_item), 4, 77},
        {"arr-strs.gguf", "the array of 1152921504606846976 strings cannot fit",
         "a string array longer than the file", AT(arr_str_count), 8, 1ull << 60},
        {"arr-u8.gguf", "metadata key 't.arr_u8': the array of 18446744073709551615 u8 items runs "
         "past the end", "a u8 array longer than the file", AT(arr_u8_count), 8, UINT64_MAX},
        {"align48.gguf", "metadata key 'general.alignment' is 48, not a power of two",
         "alignment 48", AT(align_value), 4, 48},
        {"align0.gguf", "'general.alignment' is 0, not a power of two", "alignment 0",
         AT(align_value), 4, 0},
        {"align-i32.gguf", "metadata key 'general.alignment' has type i32; it must be u32",
         "an i32 alignment", AT(align_type), 4, GGUF_I32},
        {"align8.gguf", "is not a multiple of the alignment 128", "alignment 128: offsets "
         "misaligned", AT(align_value), 4, 128},
        {"ndims0.gguf", "tensor 'token_embd.weight': n_dims 0 is not in 1..4 (tensor info at byte",
         "n_dims 0", AT(t0_ndims), 4, 0},
        {"ndims5.gguf", "n_dims 5 is not in 1..4", "n_dims 5", AT(t0_ndims), 4, 5},
        {"dim0.gguf", "tensor 'token_embd.weight': dimension 0 is 0", "a dimension of 0",
         AT(t0_dim0), 8, 0},
        {"dim-neg.gguf", "dimension 1 is 18446744073709551615", "a dimension past INT64_MAX",
         AT(t0_dim1), 8, UINT64_MAX},
        {"numel.gguf", "tensor 'token_embd.weight': its element count overflows",
         "an element count that overflows", AT(t0_dim1), 8, 1ull << 62},
        {"q6k.gguf", "tensor 'blk.0.ffn_down.weight' has type Q6_K (14); kiln reads F32, F16, "
         "BF16, Q8_0 and Q4_0", "type Q6_K", AT(t3_type), 4, 14},
        {"type99.gguf", "has type unknown (99)", "type 99", AT(t3_type), 4, 99},
        {"q8-rows.gguf", "type Q8_0 stores rows of whole 32-weight blocks, but its innermost "
         "dimension is 48", "Q8_0 rows of 48", AT(t3_dim0), 8, 48},
        {"misalign.gguf", "tensor 'blk.12.attn_q.bias': data offset 65 is not a multiple of the "
         "alignment 64", "a misaligned offset", AT(t1_offset), 8, 65},
        {"past-end.gguf", "tensor 'output.weight': its 18 bytes at data offset 448 run past the "
         "end of the file", "an offset past the end", AT(t4_offset), 8, 448},
        {"off-huge.gguf", "run past the end of the file", "an offset near 2^64", AT(t4_offset),
         8, UINT64_MAX - 63},
        {"overlap.gguf", "(data offset 0, 24 bytes)", "overlapping tensors",
         AT(t1_offset), 8, 0},
        {"tname0.gguf", "tensor info 0: the name is empty", "an empty tensor name", AT(t0_name), 8, 0},
        {"tname-long.gguf", "tensor info 0: its name (length at byte", "a tensor name past the "
         "end", AT(t0_name), 8, 1ull << 40},
    };
    gb b = {0};
    marks m;
    build_sample(&b, &m, &std_opts);
    unsigned char *copy = malloc(b.n);
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        memcpy(copy, b.p, b.n);
        size_t at;
        memcpy(&at, (const char *)&m + muts[i].marks_off, sizeof at);
        put_le(copy + at, muts[i].value, muts[i].width);
        char d[200];
        snprintf(d, sizeof d, "refused: %s", muts[i].desc);
        rejects(muts[i].file, copy, b.n, muts[i].want, d);
    }
    /* changes of length */
    memcpy(copy, b.p, b.n);
    memcpy(copy, "GGUX", 4);
    rejects("magic.gguf", copy, b.n, "not a GGUF file: it starts with bytes 47 47 55 58",
            "refused: a .gguf file without the magic");
    rejects("short.gguf", b.p, 10, "truncated: the GGUF header needs 24 bytes",
            "refused: shorter than the header");
    sample_opts o = {"gpt2", NULL};
    build_sample(&b, &m, &o);
    rejects("gpt2.gguf", b.p, b.n, "GGUF architecture 'gpt2' is not supported: kiln reads 'llama'",
            "refused: architecture gpt2");
    o.arch = NULL;
    build_sample(&b, &m, &o);
    rejects("noarch.gguf", b.p, b.n, "has no general.architecture key",
            "refused: no general.architecture");
    o = (sample_opts){"llama", "token_embd.weight"};
    build_sample(&b, &m, &o);
    rejects("dupname.gguf", b.p, b.n, "tensor 'token_embd.weight' appears twice",
            "refused: a tensor name twice");
    o.name3 = "model.embed_tokens.weight";
    build_sample(&b, &m, &o);
    rejects("dupmap.gguf", b.p, b.n, "tensors 'model.embed_tokens.weight' and 'token_embd.weight' "
            "both stand for 'model.embed_tokens.weight'", "refused: two names for one tensor");
    build_sample(&b, &m, &std_opts);
    size_t k = m.u8_type + 4 + 1 + 8;           /* the key bytes of t.i8, the next entry */
    memcpy(b.p + k, "t.u8", 4);
    rejects("dupkey.gguf", b.p, b.n, "metadata key 't.u8' appears twice (at bytes",
            "refused: a metadata key twice");
    build_sample(&b, &m, &std_opts);
    b.p[m.t0_name + 8 + 3] = 0;
    rejects("nul.gguf", b.p, b.n, "tensor info 0: the name holds a NUL byte",
            "refused: a NUL in a tensor name");
    free(copy);
    free(b.p);
}

/* Random byte changes in the metadata and tensor infos: whatever happens, no crash and no
 * read out of bounds (the ASan build checks); reading leaks nothing (LeakSanitizer). */
static void test_fuzz(void) {
    gb b = {0};
    marks m;
    build_sample(&b, &m, &std_opts);
    unsigned char *copy = malloc(b.n);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    int opened = 0, runs = 4000;
    quiet_begin();
    for (int r = 0; r < runs; r++) {
        memcpy(copy, b.p, b.n);
        int flips = 1 + r % 4;
        for (int k = 0; k < flips; k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = 4 + (size_t)(state >> 33) % (m.end_infos - 4);
            copy[at] = (unsigned char)(r & 1 ? state >> 20 : copy[at] ^ (1u << (state >> 60 & 7)));
        }
        opened += parse_copy(copy, b.n) == 0;
    }
    quiet_end();
    char d[120];
    snprintf(d, sizeof d, "%d random changes of 1-4 header bytes: no crash (%d still opened)",
             runs, opened);
    ok(1, d);
    free(copy);
    free(b.p);
}

int main(void) {
    if (!unit_files_begin("gguf", NTESTS))
        return 0;
    test_q8_0();
    test_q4_0();
    test_writer();
    test_sample();
    test_names();
    test_truncation();
    test_fields();
    test_fuzz();
    return unit_files_end(NTESTS);
}
