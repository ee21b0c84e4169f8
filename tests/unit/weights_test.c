/* weights_test.c - TAP tests of weights/: det-weights v1, the safetensors and llama2.c
 * writers and readers (f32, f16 and bf16 safetensors), the llama2.c layout, rejection of
 * corrupt files with messages that name the file and the place, and the f16/bf16
 * conversions of runtime/kiln_blob.h (round trips, rounding at ties).
 *
 * Build: cc -std=c11 -Wall -Wextra tests/unit/weights_test.c weights/[a-z]*.c
 *        frontend/diag.c -ljansson -lm
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../weights/weights.h"
#include "unit_files.h"
#include "../../runtime/kiln_blob.h"

enum { NTESTS = 47 + 7 + 5 };
static char msg[4096];

/* ckpt_open with stderr captured into msg. */
static ckpt *open_quiet(const char *path) {
    fflush(stderr);
    int save = dup(2), fd = open(tmp("stderr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    ckpt *c = ckpt_open(path);
    fflush(stderr);
    dup2(save, 2);
    close(save);
    ssize_t n = pread(fd, msg, sizeof msg - 1, 0);
    msg[n > 0 ? n : 0] = 0;
    close(fd);
    return c;
}

/* Expects ckpt_open(path) to fail with a message naming the path and containing `word`. */
static void rejects(const char *path, const char *word, const char *desc) {
    ckpt *c = open_quiet(path);
    int good = !c && strstr(msg, path) && strstr(msg, word);
    if (!good) printf("# wanted '%s', got: %s", word, msg);
    ok(good, desc);
    if (getenv("SHOWMSG")) printf("#   %s", msg);
    ckpt_close(c);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    if (f && !fseek(f, 0, SEEK_END)) {
        long len = ftell(f);
        rewind(f);
        if (len >= 0 && (b = malloc((size_t)len + 1)) && fread(b, 1, (size_t)len, f) != (size_t)len)
            free(b), b = NULL;
        *n = (size_t)len;
    }
    if (f) fclose(f);
    return b;
}

/* A safetensors file from raw JSON text and `data` zero bytes. */
static const char *st_raw(const char *name, const char *json, size_t data) {
    size_t jl = strlen(json);
    unsigned char *b = calloc(1, 8 + jl + data);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)jl >> (8 * i));
    memcpy(b + 8, json, jl);
    const char *p = tmp(name);
    spit(p, b, 8 + jl + data);
    free(b);
    return p;
}

/* The Hugging Face tensor list of a dense LLaMA config. */
static char names[64][64];
static int hf_specs(const llama2c_header *h, wspec *s) {
    int64_t d = h->dim, D = h->hidden, dh = h->dim / h->heads, V = abs(h->vocab), k = 0;
    static const char *sfx[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                "self_attn.v_proj", "self_attn.o_proj",
                                "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                "mlp.down_proj"};
    int64_t rows[] = {d, h->heads * dh, h->kv_heads * dh, h->kv_heads * dh, d, d, D, D, d};
    int64_t cols[] = {0, d, d, d, h->heads * dh, 0, d, d, D};
    s[k++] = (wspec){"model.embed_tokens.weight", 2, {V, d}};
    for (int l = 0; l < h->layers; l++)
        for (int j = 0; j < 9; j++, k++) {
            snprintf(names[k], sizeof names[k], "model.layers.%d.%s.weight", l, sfx[j]);
            s[k] = (wspec){names[k], cols[j] ? 2 : 1, {rows[j], cols[j]}};
        }
    s[k++] = (wspec){"model.norm.weight", 1, {d}};
    if (h->vocab < 0) s[k++] = (wspec){"lm_head.weight", 2, {V, d}};
    return (int)k;
}

static uint64_t numel(const ckpt_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->shape[i];
    return n;
}

/* Every tensor of c that is in specs holds det-weights v1 under seed. */
static int values_match(const ckpt *c, const wspec *s, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *t = ckpt_find(c, s[i].name);
        if (!t || t->dtype != CK_F32 || t->rank != s[i].rank) return 0;
        for (int k = 0; k < t->rank; k++)
            if (t->shape[k] != s[i].shape[k]) return 0;
        uint64_t m = numel(t);
        float *want = malloc(m * sizeof *want), *got = malloc(m * sizeof *got);
        detweights_fill(want, t->name, 0, m, seed);
        memcpy(got, ckpt_data(c, t), m * 4);
        int same = memcmp(want, got, m * 4) == 0 && t->nbytes == m * 4;
        free(want);
        free(got);
        if (!same) return 0;
    }
    return 1;
}

static int only_files(const char *a, const char *b) {   /* no stray temporaries */
    DIR *d = opendir(dir);
    struct dirent *e;
    int good = 1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) good = 0;
    closedir(d);
    (void)a, (void)b;
    return good;
}

static void test_detweights(void) {
    static const float want[6] = {-0x1.e640b4p-6f, -0x1.739bd6p-4f, 0x1.596096p-4f,
                                  -0x1.cc69ap-5f, -0x1.32a7p-5f, -0x1.172214p-4f};
    float got[6], part[3];
    detweights_fill(got, "model.embed_tokens.weight", 0, 6, 1);
    ok(memcmp(got, want, sizeof want) == 0, "det-weights v1 check vector, bit-exact");
    detweights_fill(part, "model.embed_tokens.weight", 3, 3, 1);
    ok(memcmp(part, want + 3, sizeof part) == 0, "detweights_fill from an offset = the slice");
    ok(detweights_is_norm("model.norm.weight") &&
       detweights_is_norm("model.layers.0.input_layernorm.weight") &&
       !detweights_is_norm("model.norm.bias") && !detweights_is_norm("weight"),
       "detweights_is_norm by suffix");
    float g[1000];
    int inrange = 1;
    detweights_fill(g, "model.norm.weight", 0, 1000, 7);
    for (int i = 0; i < 1000; i++) inrange &= g[i] >= 0.8f && g[i] <= 1.2f;
    ok(inrange, "norm gains lie in 1 +- 0.2");
}

static void test_safetensors(void) {
    llama2c_header h = {32, 48, 2, 4, 2, -40, 16};
    wspec s[64];
    int n = hf_specs(&h, s);
    const char *p = tmp("m.safetensors");
    ok(safetensors_write_detweights(p, s, n, 5, CK_F32) == 0 && only_files(p, NULL),
       "safetensors writer: written, no temporary left");
    ckpt *c = open_quiet(p);
    ok(c && c->format == CKPT_SAFETENSORS && c->n == n, "safetensors: opens with every tensor");
    ok(c && values_match(c, s, n, 5), "safetensors: shapes and det-weights values read back");
    ok(c && !ckpt_find(c, "nope") && !strcmp(ckpt_dtype_name(CK_BF16), "BF16"),
       "ckpt_find of an absent name is NULL; dtype names");
    if (c) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | c->map[i];
        const char *meta = "{\"__metadata__\":{\"format\":\"pt\",\"weights\":\"det-weights v1\","
                           "\"seed\":\"5\"},\"model.embed_tokens.weight\":{\"dtype\":\"F32\","
                           "\"shape\":[40,32],\"data_offsets\":[0,5120]}";
        ok(hl % 8 == 0 && !memcmp(c->map + 8, meta, strlen(meta)) &&
           c->tensors[0].offset == 8 + hl,
           "safetensors: compact header, metadata first, padded to 8");
    } else {
        ok(0, "safetensors: compact header, metadata first, padded to 8");
    }
    ckpt_close(c);

    /* F16 / BF16 are accepted */
    const char *q = st_raw("half.safetensors", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],"
                           "\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"BF16\",\"shape\":[],"
                           "\"data_offsets\":[12,14]}}", 14);
    c = open_quiet(q);
    ok(c && c->n == 2 && ckpt_find(c, "a")->dtype == CK_F16 && ckpt_find(c, "b")->rank == 0 &&
       ckpt_find(c, "b")->nbytes == 2, "safetensors: F16 and BF16 tensors, rank 0");
    ckpt_close(c);

    /* corruptions */
    size_t len;
    unsigned char *b = slurp(p, &len);
    const char *bad = tmp("cut.safetensors");
    spit(bad, b, len - 4);
    rejects(bad, "'lm_head.weight': data_offsets", "truncated data names the last tensor");
    unsigned char hb[8];
    memcpy(hb, b, 8);
    b[0] = 0xff, b[1] = 0xff, b[2] = 0x0f;
    spit(bad, b, len);
    rejects(bad, "past the end of the file", "header length past the end");
    memset(b, 0, 8);
    spit(bad, b, len);
    rejects(bad, "header length 0", "header length 0");
    memcpy(b, hb, 8);
    b[8 + 1] = '#';
    spit(bad, b, len);
    rejects(bad, "invalid JSON header at line 1, column", "bad JSON with line and column");
    free(b);
    const char *t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    rejects(st_raw("e.safetensors", t, 12), "tensor 'b': data_offsets [8, 16] end past the data "
            "section (12 bytes)", "data_offsets past the end");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    rejects(st_raw("o.safetensors", t, 16), "tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a'",
            "overlapping tensors");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}";
    rejects(st_raw("r.safetensors", t, 16), "'a': data_offsets [8, 0] begin", "begin > end");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    rejects(st_raw("s.safetensors", t, 16), "'a': F32 of 3 elements needs 12 bytes",
            "shape x dtype size != bytes");
    t = "{\"x\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    rejects(st_raw("d.safetensors", t, 3), "unsupported dtype 'I8' for tensor 'x'",
            "unsupported dtype");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}";
    rejects(st_raw("l.safetensors", t, 16), "'a': shape is not a list", "shape not a list");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,16]}}";
    rejects(st_raw("n.safetensors", t, 16), "'a': shape[0]", "negative dimension");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}";
    rejects(st_raw("k.safetensors", t, 4), "rank 5", "rank > 4");
    t = "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}";
    rejects(st_raw("f.safetensors", t, 4), "'a': the header entry has no 'dtype'",
            "missing dtype");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    rejects(st_raw("u.safetensors", t, 8), "duplicate tensor name 'a'", "duplicate names");
    rejects(st_raw("z.safetensors", "[1, 2]  ", 0), "not an object", "header not an object");
    t = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,4]}}";
    rejects(st_raw("v.safetensors", t, 4), "'a': the element count", "shape product overflow");
}

/* Every tensor of c holds det-weights v1 under seed rounded to dtype (f16 or bf16), bit for
 * bit, stored little-endian 2 bytes each. */
static int rounded_match(const ckpt *c, const wspec *s, int n, uint64_t seed, ckpt_dtype dt) {
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *t = ckpt_find(c, s[i].name);
        if (!t || t->dtype != dt || t->rank != s[i].rank) return 0;
        for (int k = 0; k < t->rank; k++)
            if (t->shape[k] != s[i].shape[k]) return 0;
        uint64_t m = numel(t);
        float *want = malloc(m * sizeof *want);
        detweights_fill(want, t->name, 0, m, seed);
        const unsigned char *got = ckpt_data(c, t);
        int same = t->nbytes == m * 2;
        for (uint64_t j = 0; same && j < m; j++) {
            uint16_t w = dt == CK_F16 ? kblob_f32_to_f16(want[j]) : kblob_f32_to_bf16(want[j]);
            same = got[2 * j] == (w & 0xff) && got[2 * j + 1] == (w >> 8);
        }
        free(want);
        if (!same) return 0;
    }
    return 1;
}

static void test_half_files(void) {
    llama2c_header h = {32, 48, 2, 4, 2, -40, 16};
    wspec s[64];
    int n = hf_specs(&h, s);
    static const struct { ckpt_dtype dt; const char *file, *json; } cases[] = {
        {CK_BF16, "m-bf16.safetensors", "\"dtype\":\"BF16\",\"shape\":[40,32],\"data_offsets\":[0,2560]"},
        {CK_F16, "m-f16.safetensors", "\"dtype\":\"F16\",\"shape\":[40,32],\"data_offsets\":[0,2560]"},
    };
    for (int k = 0; k < 2; k++) {
        const char *p = tmp(cases[k].file), *dn = ckpt_dtype_name(cases[k].dt);
        char d[128];
        int wrote = safetensors_write_detweights(p, s, n, 9, cases[k].dt) == 0 && only_files(p, NULL);
        snprintf(d, sizeof d, "safetensors writer, %s: written, no temporary left", dn);
        ok(wrote, d);
        ckpt *c = open_quiet(p);
        snprintf(d, sizeof d, "%s file: opens, every tensor %s, values = det-weights rounded to %s", dn, dn, dn);
        ok(c && c->n == n && rounded_match(c, s, n, 9, cases[k].dt), d);
        snprintf(d, sizeof d, "%s file: header names the dtype and 2-byte data offsets", dn);
        ok(c && strstr((const char *)c->map + 8, cases[k].json) != NULL, d);
        ckpt_close(c);
    }
    /* the f32 writer is unchanged by the dtype parameter */
    const char *p = tmp("m-f32.safetensors");
    ckpt *c = safetensors_write_detweights(p, s, n, 9, CK_F32) == 0 ? open_quiet(p) : NULL;
    ok(c && values_match(c, s, n, 9), "f32 file: det-weights bit-exact");
    ckpt_close(c);
}

static int is_nan16(uint16_t h, int bf) {
    return bf ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) : (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static uint16_t bits_to_bf16(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return kblob_f32_to_bf16(f);
}

static uint16_t bits_to_f16(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return kblob_f32_to_f16(f);
}

static void test_conversions(void) {
    int bf_ok = 1, f16_ok = 1, nan_ok = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t x = (uint16_t)h;
        if (is_nan16(x, 1)) nan_ok &= is_nan16(kblob_f32_to_bf16(kblob_bf16_to_f32(x)), 1);
        else bf_ok &= kblob_f32_to_bf16(kblob_bf16_to_f32(x)) == x;
        if (is_nan16(x, 0)) nan_ok &= is_nan16(kblob_f32_to_f16(kblob_f16_to_f32(x)), 0);
        else f16_ok &= kblob_f32_to_f16(kblob_f16_to_f32(x)) == x;
    }
    ok(bf_ok, "bf16 -> f32 -> bf16 is the identity on every non-NaN bit pattern");
    ok(f16_ok, "f16 -> f32 -> f16 is the identity on every non-NaN bit pattern (subnormals too)");
    ok(nan_ok, "NaN stays NaN through both round trips");
    /* f32 bits -> expected, at and next to ties (halfway values go to the even neighbour) */
    static const struct { uint32_t f; uint16_t bf; } bt[] = {
        {0x3F808000u, 0x3F80}, /* 1 + 2^-8: tie, down to even */
        {0x3F818000u, 0x3F82}, /* 1 + 3*2^-8: tie, up to even */
        {0x3F808001u, 0x3F81}, /* just above the tie */
        {0x3F807FFFu, 0x3F80}, /* just below */
        {0xBF808000u, 0xBF80}, /* negative tie */
        {0x7F7F8000u, 0x7F80}, /* tie above the largest finite: infinity */
        {0x00008000u, 0x0000}, /* subnormal tie to zero */
        {0x00018000u, 0x0002}, /* subnormal tie up to even */
    };
    int bok = 1;
    for (size_t i = 0; i < sizeof bt / sizeof bt[0]; i++)
        if (bits_to_bf16(bt[i].f) != bt[i].bf) {
            printf("# bf16(%08x) = %04x, want %04x\n", bt[i].f, bits_to_bf16(bt[i].f), bt[i].bf);
            bok = 0;
        }
    ok(bok, "f32 -> bf16 rounds to nearest even at ties (normal, negative, overflow, subnormal)");
    static const struct { uint32_t f; uint16_t h; } ht[] = {
        {0x3F801000u, 0x3C00}, /* 1 + 2^-11: tie, down to even */
        {0x3F803000u, 0x3C02}, /* 1 + 3*2^-11: tie, up to even */
        {0x3F801001u, 0x3C01}, /* just above the tie */
        {0xBF801000u, 0xBC00}, /* negative tie */
        {0x477FF000u, 0x7C00}, /* 65520: tie above 65504, to infinity */
        {0x477FEFFFu, 0x7BFF}, /* just below: 65504 */
        {0x33000000u, 0x0000}, /* 2^-25: tie between 0 and the least subnormal, to 0 */
        {0x33000001u, 0x0001}, /* just above: the least subnormal */
        {0x33C00000u, 0x0002}, /* 1.5 * 2^-24: tie, up to even */
        {0x34200000u, 0x0002}, /* 2.5 * 2^-24: tie, down to even */
        {0x387FF000u, 0x0400}, /* tie between the largest subnormal and 2^-14 */
    };
    int hok = 1;
    for (size_t i = 0; i < sizeof ht / sizeof ht[0]; i++)
        if (bits_to_f16(ht[i].f) != ht[i].h) {
            printf("# f16(%08x) = %04x, want %04x\n", ht[i].f, bits_to_f16(ht[i].f), ht[i].h);
            hok = 0;
        }
    ok(hok, "f32 -> f16 rounds to nearest even at ties (normal, negative, overflow, subnormal)");
}

static void test_llama2c(void) {
    llama2c_header h = {32, 48, 2, 4, 2, -40, 16};
    wspec s[64];
    int n = hf_specs(&h, s);
    const char *p = tmp("m.bin");
    ok(llama2c_write_detweights(p, &h, s, n, 3) == 0, "llama2c writer: written");
    ckpt *c = open_quiet(p);
    ok(c && c->format == CKPT_LLAMA2C && !memcmp(&c->l2c, &h, sizeof h) && c->n == n + 2,
       "llama2c: opens, header read back");
    ok(c && values_match(c, s, n, 3), "llama2c: det-weights values read back");
    /* layout: embed [40,32] at 28; input_layernorm x2; q_proj [32,32] x2; k_proj [16,32] ... */
    const ckpt_tensor *q1 = c ? ckpt_find(c, "model.layers.1.self_attn.q_proj.weight") : NULL;
    const ckpt_tensor *g0 = c ? ckpt_find(c, "model.layers.0.mlp.gate_proj.weight") : NULL;
    const ckpt_tensor *fr = c ? ckpt_find(c, "freq_cis_real") : NULL;
    const ckpt_tensor *lm = c ? ckpt_find(c, "lm_head.weight") : NULL;
    uint64_t embed = 40 * 32 * 4, norms = 2 * 32 * 4, q = 32 * 32 * 4, kv = 16 * 32 * 4;
    ok(c && c->tensors[0].offset == 28 && q1 && q1->offset == 28 + embed + norms + q,
       "llama2c layout: embed at 28, q_proj stacked after the input norms");
    ok(g0 && g0->offset == 28 + embed + norms + 2 * q + 4 * kv + 2 * q + norms &&
       g0->shape[0] == 48 && g0->shape[1] == 32,
       "llama2c layout: gate_proj (w1) after the post-attention norms");
    int consecutive = c != NULL;
    for (int i = 1; c && i < c->n; i++)
        consecutive &= c->tensors[i].offset == c->tensors[i - 1].offset + c->tensors[i - 1].nbytes;
    ok(consecutive && lm && lm == &c->tensors[c->n - 1] && lm->offset + lm->nbytes == c->size,
       "llama2c layout: tensors consecutive, lm_head last, ends at the file end");
    int good = fr && fr->shape[0] == 16 && fr->shape[1] == 4;
    for (int pos = 0; good && pos < 16; pos++)
        for (int i = 0; i < 4; i++) {
            float v;
            memcpy(&v, (const char *)ckpt_data(c, fr) + 4 * (pos * 4 + i), 4);
            good &= v == (float)cos(pos / pow(10000.0, 2.0 * i / 8));
        }
    ok(good, "llama2c: freq_cis_real = cos(pos * 10000^(-2i/dh))");
    ckpt_close(c);

    /* writer refuses specs that are not the layout */
    wspec bad[64];
    memcpy(bad, s, sizeof bad);
    bad[2].shape[0] = 64;
    const char *w = tmp("w.bin");
    int rc = -1;
    fflush(stderr);
    int save = dup(2), fd = open(tmp("stderr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    rc = llama2c_write_detweights(w, &h, bad, n, 3);
    int rc2 = llama2c_write_detweights(w, &h, s, n - 1, 3);
    bad[2] = (wspec){"model.extra.weight", 1, {4}};
    int rc3 = llama2c_write_detweights(w, &h, bad, n, 3);
    fflush(stderr);
    dup2(save, 2);
    close(save);
    ssize_t m = pread(fd, msg, sizeof msg - 1, 0);
    msg[m > 0 ? m : 0] = 0;
    close(fd);
    ok(rc && strstr(msg, "tensor 'model.layers.0.self_attn.q_proj.weight' is [64, 32] in the "
                         "spec but [32, 32] in the llama2.c layout"),
       "llama2c writer: a shape mismatch is named");
    ok(rc2 && strstr(msg, "'lm_head.weight' of the llama2.c layout is missing"),
       "llama2c writer: a missing tensor is named");
    ok(rc3 && strstr(msg, "the llama2.c layout has no tensor 'model.extra.weight'") &&
       access(w, F_OK) != 0 && only_files(NULL, NULL),
       "llama2c writer: an extra tensor is named; no output, no temporary");

    /* corruptions */
    size_t len;
    unsigned char *b = slurp(p, &len), *big = malloc(len + 5);
    const char *x = tmp("x.bin");
    spit(x, b, len - 100);
    rejects(x, "truncated: the llama2.c layout for dim 32, hidden 48, layers 2", "llama2c truncated");
    spit(x, b, 20);
    rejects(x, "the llama2.c header needs 28 bytes", "llama2c shorter than its header");
    memcpy(big, b, len);
    memcpy(big + len, "junk!", 5);
    spit(x, big, len + 5);
    rejects(x, "5 trailing bytes", "llama2c trailing garbage");
    memset(b + 12, 0, 4); /* heads = 0 */
    spit(x, b, len);
    rejects(x, "heads = 0", "llama2c heads = 0");
    b[12] = 5; /* heads = 5: 32 % 5 != 0 */
    spit(x, b, len);
    rejects(x, "dim is not a multiple of heads", "llama2c dim % heads != 0");
    b[12] = 4, b[16] = 3; /* kv_heads = 3 */
    spit(x, b, len);
    rejects(x, "heads is not a multiple of kv_heads", "llama2c heads % kv_heads != 0");
    free(b);
    free(big);

    spit(tmp("empty.bin"), "", 0);
    rejects(tmp("empty.bin"), "empty", "empty file");
    rejects(dir, "holds model.safetensors or", "a directory without a checkpoint");
    rejects(tmp("absent.bin"), "cannot open", "a missing file");
    spit(tmp("what.dat"), "hello, world", 12);
    rejects(tmp("what.dat"), "cannot tell the format", "unknown format");
    ckpt_tensor *lt;
    int ln;
    llama2c_header bh = {32, 48, 2, 0, 2, 40, 16};
    ok(llama2c_layout(&bh, &lt, &ln) == -1 && llama2c_check_header(NULL, &h) == 0,
       "llama2c_layout refuses a bad header");
}

int main(void) {
    if (!unit_files_begin("weights", NTESTS))
        return 0;
    test_detweights();
    test_safetensors();
    test_half_files();
    test_conversions();
    test_llama2c();
    return unit_files_end(NTESTS);
}
