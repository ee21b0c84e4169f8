/* kernels_test.c - TAP test of runtime/kernels.c (and the pool of pool.c) against naive
 * references.
 *
 * Each reference is written independently: double accumulation, explicit index arithmetic,
 * loops in a different order. Shapes are random (fixed seed) and include odd sizes, ld > in,
 * grouped-query attention and blocks of 1, 3 and 7 tokens. The error reported per check is
 * max |got - ref| / max |ref|. Bit-exact checks: a block of T rows against T one-row calls,
 * f16/bf16 weights against f32 weights holding the same values, the pool against one thread,
 * linear against the old single-token loop, RoPE against a verbatim copy of llama2.c's loop.
 * The fused attention is checked against scores -> softmax -> apply in double and against
 * the unfused kernels, over both cache layouts and f32/f16/bf16 caches (positions past the
 * causal limit hold NaN, so reading one fails), and the rounded caches against f32 ones.
 * The linears on every SIMD path the CPU has (cpu.h) equal the portable ones bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/kiln_blob.h"
#include "../../runtime/rt_internal.h"   /* krt_pool_new; before kernels.h (see there) */
#include "../../runtime/kernels.h"
#include "../../runtime/cpu.h"

/* the verbatim old loops below must not be fused into multiply-adds either (see kernels.c) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static int n_test, n_fail;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int64_t rnd_int(int64_t lo, int64_t hi) { return lo + (int64_t)(next_u64() % (uint64_t)(hi - lo + 1)); }
static float rnd_f(void) { return (float)((double)(next_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
static float *rnd_vec(int64_t n)
{
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = rnd_f();
    return v;
}
static double *dvec(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }
static float *fdup(const float *a, int64_t n)
{
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    memcpy(v, a, (size_t)n * sizeof *v);
    return v;
}
static const int64_t block_rows[] = {1, 3, 7};

/* max |got - ref| / max |ref| over n values */
static double rel_err(const float *got, const double *ref, int64_t n)
{
    double md = 0, mr = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md))
            md = d; /* also catches NaN */
        if (fabs(ref[i]) > mr)
            mr = fabs(ref[i]);
    }
    return md / mr;
}

static void check(double err, const char *what)
{
    n_test++;
    int ok = err < 1e-5;
    if (!ok)
        n_fail++;
    printf("%s %d - %s (max rel err %.3g)\n", ok ? "ok" : "not ok", n_test, what, err);
}

static void check_exact(int ok, const char *what)
{
    n_test++;
    if (!ok)
        n_fail++;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", n_test, what);
}

/* ---- linear ---- */

static const char *const dt_name[] = {"f32", "f16", "bf16"};
static const uint32_t dt_code[] = {KBLOB_F32, KBLOB_F16, KBLOB_BF16};

/* A random [rows, n] weight in storage type dt, rows ld bytes apart (ld > n * elem when pad),
 * and its exact f32 values in wf [rows, n]. */
static void *make_weight(int dt, int64_t rows, int64_t n, int64_t *ld, float *wf, int pad)
{
    int64_t elem = dt == 0 ? 4 : 2;
    *ld = (n + (pad ? rnd_int(1, 9) : 0)) * elem;
    char *w = malloc((size_t)(rows * *ld + 4));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++) {
            float v = rnd_f();
            char *at = w + i * *ld + j * elem;
            if (dt == 0) {
                memcpy(at, &v, 4);
            } else {
                uint16_t h = dt == 1 ? kblob_f32_to_f16(v) : kblob_f32_to_bf16(v);
                memcpy(at, &h, 2);
                v = dt == 1 ? kblob_f16_to_f32(h) : kblob_bf16_to_f32(h);
            }
            wf[i * n + j] = v;
        }
    return w;
}

/* ---- the pool ---- */

typedef struct share_log {
    int seen[8], nshares[8];
} share_log;

static void log_share(void *arg, int share, int nshares)
{
    share_log *l = arg;
    l->seen[share]++;
    l->nshares[share] = nshares;
}

/* Phases of a job: each share counts its arrival, meets the others at the barrier, and then
 * every share must see every arrival of the phase (PHASES phases a job). */
#define PHASES 200
typedef struct barrier_job {
    krt_pool *p;
    _Atomic int arrived[PHASES];
    _Atomic int ok;
} barrier_job;

static void barrier_share(void *arg, int share, int nshares)
{
    barrier_job *b = arg;
    (void)share;
    for (int ph = 0; ph < PHASES; ph++) {
        b->arrived[ph]++;
        krt_pool_barrier(b->p);
        if (b->arrived[ph] % nshares != 0)
            b->ok = 0;
        krt_pool_barrier(b->p);
    }
}

static void test_pool(void)
{
    for (int threads = 2; threads <= 3; threads++) {
        krt_pool *p = krt_pool_new(threads);
        char what[128];
        snprintf(what, sizeof what, "pool of %d threads starts", threads);
        check_exact(p != NULL, what);
        if (!p)
            continue;
        share_log l = {{0}, {0}};
        for (int k = 0; k < 100; k++)
            krt_pool_run(p, log_share, &l);
        int ok = 1;
        for (int s = 0; s < 8; s++)
            ok &= s < threads ? l.seen[s] == 100 && l.nshares[s] == threads : l.seen[s] == 0;
        snprintf(what, sizeof what, "krt_pool_run on %d threads runs each share once per job", threads);
        check_exact(ok, what);

        barrier_job b = {p, {0}, 1};
        for (int k = 0; k < 10; k++)
            krt_pool_run(p, barrier_share, &b);
        snprintf(what, sizeof what, "krt_pool_barrier on %d threads: every share waits for all "
                 "(%d phases, 10 jobs)", threads, PHASES);
        check_exact(b.ok, what);
        krt_pool_free(p);
    }
    share_log l = {{0}, {0}};
    krt_pool_run(NULL, log_share, &l);
    check_exact(l.seen[0] == 1 && l.nshares[0] == 1 && l.seen[1] == 0, "krt_pool_run(NULL) runs share 0 of 1");
}

/* ---- embed, widen, cache ---- */

static void test_widen_all(void)
{
    static uint16_t h[65536];
    static float a[65536], b[65536], c[65536];
    for (int i = 0; i < 65536; i++) {
        h[i] = (uint16_t)i;
        a[i] = kblob_f16_to_f32(h[i]);
        c[i] = kblob_bf16_to_f32(h[i]);
    }
    krt_widen_f16(b, h, 65536);
    check_exact(memcmp(a, b, sizeof a) == 0, "widen_f16 equals kblob_f16_to_f32 on all 65536 values (bits)");
    krt_widen_bf16(b, h, 65536);
    check_exact(memcmp(c, b, sizeof c) == 0, "widen_bf16 equals kblob_bf16_to_f32 on all 65536 values (bits)");
}

static void test_embed_widen_cache(void)
{
    for (int dt = 0; dt < 3; dt++) {
        int64_t V = 13, d = 7, ld;
        float *wf = malloc((size_t)(V * d) * sizeof *wf);
        void *table = make_weight(dt, V, d, &ld, wf, 1);
        int32_t tok[5] = {11, -1, 0, 13, 12};
        float y[5 * 7];
        double ref[5 * 7];
        for (int t = 0; t < 5; t++)
            for (int i = 0; i < 7; i++)
                ref[t * 7 + i] = tok[t] >= 0 && tok[t] < V ? wf[tok[t] * d + i] : 0.0;
        /* the table padded past each row (ld > d * elem): a view of its first d columns */
        krt_wview tv = {table, dt_code[dt], KBLOB_ROWS, V, ld / (dt ? 2 : 4), 0, 0};
        krt_embed(y, tok, 5, tv, V, d);
        char what[96];
        snprintf(what, sizeof what, "embed %s [13,7] tokens 11 -1 0 13 12 (out of range: zeros)", dt_name[dt]);
        check_exact(rel_err(y, ref, 35) == 0, what);

        float *z = rnd_vec(V * d);
        krt_widen(z, tv, V, d);
        snprintf(what, sizeof what, "widen %s [13,7] ld=%lld", dt_name[dt], (long long)ld);
        check_exact(memcmp(z, wf, (size_t)(V * d) * sizeof *z) == 0, what);
        free(wf), free(table), free(z);
    }

    int64_t cap = 9, w = 7, rows = 3;
    int32_t pos0 = 4;
    float *cache = rnd_vec(cap * w), *before = fdup(cache, cap * w), *x = rnd_vec(rows * w);
    krt_cache_store((krt_kv){cache, KBLOB_F32, 0, 1, w, cap}, x, rows, pos0);
    int ok = 1;
    for (int64_t c = 0; c < cap; c++)
        for (int64_t i = 0; i < w; i++)
            ok &= cache[c * w + i] == (c >= pos0 && c < pos0 + rows ? x[(c - pos0) * w + i] : before[c * w + i]);
    check_exact(ok, "cache_store rows 4..6 of [9,7], the others untouched");
    free(cache), free(before), free(x);
}

/* ---- rope ---- */

/* llama2.c run.c, verbatim but for names: interleaved RoPE over dim = heads*head_size. */
static void rope_llama2c(float *q, int dim, int head_size, int pos)
{
    for (int i = 0; i < dim; i += 2) {
        int head_dim = i % head_size;
        float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
        float val = pos * freq;
        float fcr = cosf(val);
        float fci = sinf(val);
        float v0 = q[i];
        float v1 = q[i + 1];
        q[i] = v0 * fcr - v1 * fci;
        q[i + 1] = v0 * fci + v1 * fcr;
    }
}

static void test_rope(void)
{
    for (int rep = 0; rep < 12; rep++) {
        int64_t rows = block_rows[rep % 3], heads = rnd_int(1, 5), hd = 2 * rnd_int(1, 40), n = heads * hd;
        int64_t rot = rep % 4 == 3 ? 2 * rnd_int(1, hd / 2) : hd;   /* partial rotary too */
        int32_t pos0 = (int32_t)rnd_int(0, 50);
        int inter = rep % 2;
        float base = rep < 6 ? 10000.0f : 500000.0f;
        float *x = rnd_vec(rows * n), *y = rnd_vec(rows * n);
        double *ref = dvec(rows * n);
        for (int64_t t = 0; t < rows; t++)
            for (int64_t k = 0; k < n; k++) {
                const float *xt = x + t * n;
                int64_t h = k / hd, e = k % hd, half = rot / 2;
                if (e >= rot) {
                    ref[t * n + k] = xt[k];
                    continue;
                }
                int64_t i = inter ? e / 2 : e % half;      /* pair index */
                int first = inter ? e % 2 == 0 : e < half;
                int64_t partner = h * hd + (inter ? (first ? e + 1 : e - 1) : (first ? e + half : e - half));
                double ang = (double)(pos0 + t) * pow((double)base, -2.0 * (double)i / (double)rot);
                double c = cos(ang), s = sin(ang), a = xt[k], b = xt[partner];
                ref[t * n + k] = first ? a * c - b * s : b * s + a * c;
            }
        krt_rope(y, x, rows, pos0, heads, hd, rot, base, inter);
        char what[128];
        snprintf(what, sizeof what, "rope %s rows=%lld heads=%lld hd=%lld rot=%lld pos0=%d base=%g",
                 inter ? "interleaved" : "half", (long long)rows, (long long)heads, (long long)hd,
                 (long long)rot, pos0, base);
        check(rel_err(y, ref, rows * n), what);

        float *z = fdup(x, rows * n), *u = rnd_vec(rows * n);
        krt_rope(z, z, rows, pos0, heads, hd, rot, base, inter);      /* in place */
        for (int64_t t = 0; t < rows; t++)
            krt_rope(u + t * n, x + t * n, 1, pos0 + (int32_t)t, heads, hd, rot, base, inter);
        snprintf(what, sizeof what, "rope rows=%lld: in place and one-row calls are bit-identical", (long long)rows);
        check_exact(memcmp(y, z, (size_t)(rows * n) * sizeof *y) == 0 &&
                        memcmp(y, u, (size_t)(rows * n) * sizeof *y) == 0, what);
        free(x), free(y), free(z), free(u), free(ref);
    }
    /* bit-exact agreement with llama2.c at large positions, one row and blocks of 7 */
    int exact = 1;
    for (int pos = 0; pos < 4096; pos += 97) {
        float a[7 * 3 * 48], b[7 * 3 * 48];
        for (int i = 0; i < 7 * 3 * 48; i++)
            a[i] = b[i] = rnd_f();
        krt_rope(a, a, pos % 2 ? 7 : 1, pos, 3, 48, 48, 10000.0f, 1);
        for (int t = 0; t < (pos % 2 ? 7 : 1); t++)
            rope_llama2c(b + t * 3 * 48, 3 * 48, 48, pos + t);
        exact &= memcmp(a, b, sizeof a) == 0;
    }
    check_exact(exact, "rope interleaved is bit-identical to llama2.c (pos up to 4096, blocks of 1 and 7)");
}

/* rope_heads: one base per head against a double reference; all bases equal is krt_rope bit
 * for bit; a block (and in place) equals one-row calls. */
static void test_rope_heads(void)
{
    static const float pool_bases[] = {10000.0f, 500000.0f, 1000.0f, 1e6f, 160000.0f};
    for (int rep = 0; rep < 12; rep++) {
        int64_t rows = block_rows[rep % 3], heads = rnd_int(2, 5), hd = 2 * rnd_int(1, 40), n = heads * hd;
        int64_t rot = rep % 4 == 3 ? 2 * rnd_int(1, hd / 2) : hd;
        int32_t pos0 = (int32_t)rnd_int(0, 50);
        int inter = rep % 2;
        float bases[5], same[5];
        for (int64_t h = 0; h < heads; h++) {
            bases[h] = pool_bases[(h + rep) % 5];
            same[h] = pool_bases[rep % 5];
        }
        float *x = rnd_vec(rows * n), *y = rnd_vec(rows * n);
        double *ref = dvec(rows * n);
        for (int64_t t = 0; t < rows; t++)
            for (int64_t k = 0; k < n; k++) {
                const float *xt = x + t * n;
                int64_t h = k / hd, e = k % hd, half = rot / 2;
                if (e >= rot) {
                    ref[t * n + k] = xt[k];
                    continue;
                }
                int64_t i = inter ? e / 2 : e % half;
                int first = inter ? e % 2 == 0 : e < half;
                int64_t partner = h * hd + (inter ? (first ? e + 1 : e - 1) : (first ? e + half : e - half));
                double ang = (double)(pos0 + t) * pow((double)bases[h], -2.0 * (double)i / (double)rot);
                double c = cos(ang), s = sin(ang), a = xt[k], b = xt[partner];
                ref[t * n + k] = first ? a * c - b * s : b * s + a * c;
            }
        krt_rope_heads(y, x, rows, pos0, heads, hd, rot, bases, inter);
        char what[160];
        snprintf(what, sizeof what, "rope_heads %s rows=%lld heads=%lld hd=%lld rot=%lld pos0=%d",
                 inter ? "interleaved" : "half", (long long)rows, (long long)heads, (long long)hd,
                 (long long)rot, pos0);
        check(rel_err(y, ref, rows * n), what);

        float *z = fdup(x, rows * n), *u = rnd_vec(rows * n);
        krt_rope_heads(z, z, rows, pos0, heads, hd, rot, bases, inter);
        for (int64_t t = 0; t < rows; t++)
            krt_rope_heads(u + t * n, x + t * n, 1, pos0 + (int32_t)t, heads, hd, rot, bases, inter);
        snprintf(what, sizeof what, "rope_heads rows=%lld: in place and one-row calls are bit-identical",
                 (long long)rows);
        check_exact(memcmp(y, z, (size_t)(rows * n) * sizeof *y) == 0 &&
                        memcmp(y, u, (size_t)(rows * n) * sizeof *y) == 0, what);

        float *p = rnd_vec(rows * n), *q = rnd_vec(rows * n);
        krt_rope_heads(p, x, rows, pos0 + 1000 * rep, heads, hd, rot, same, inter);
        krt_rope(q, x, rows, pos0 + 1000 * rep, heads, hd, rot, same[0], inter);
        snprintf(what, sizeof what, "rope_heads with every base %g is krt_rope bit for bit (pos0=%d)",
                 (double)same[0], pos0 + 1000 * rep);
        check_exact(memcmp(p, q, (size_t)(rows * n) * sizeof *p) == 0, what);
        free(x), free(y), free(z), free(u), free(p), free(q), free(ref);
    }
}

/* ---- attention: scores, causal softmax, apply; GQA included ---- */

static void test_attention(void)
{
    static const int64_t shapes[][3] = {{1, 1, 16}, {4, 4, 8}, {8, 2, 6}, {6, 3, 5}, {12, 1, 7}, {4, 2, 64}};
    for (size_t r = 0; r < 2 * sizeof shapes / sizeof shapes[0]; r++) {
        int64_t H = shapes[r % 6][0], KV = shapes[r % 6][1], hd = shapes[r % 6][2];
        int64_t rows = block_rows[r % 3], kvw = KV * hd;
        int32_t pos0 = (int32_t)rnd_int(0, 30);
        int64_t cap = pos0 + rows + rnd_int(0, 4), sn = rows * H * cap;
        float *q = rnd_vec(rows * H * hd), *kc = rnd_vec(cap * kvw), *vc = rnd_vec(cap * kvw);
        krt_kv kkv = {kc, KBLOB_F32, 0, KV, hd, cap}, vkv = {vc, KBLOB_F32, 0, KV, hd, cap};
        float *s = rnd_vec(sn), *s0 = fdup(s, sn), *s1 = fdup(s, sn);
        double *rs = dvec(sn);
        for (int64_t k = 0; k < sn; k++)
            rs[k] = s[k];       /* columns past pos0 + t must be left alone */
        for (int64_t t = 0; t < rows; t++)
            for (int64_t c = 0; c <= pos0 + t; c++)
                for (int64_t h = 0; h < H; h++) {
                    int64_t kvh = h * KV / H;
                    double d = 0;
                    for (int64_t i = hd - 1; i >= 0; i--)
                        d += (double)q[(t * H + h) * hd + i] * kc[c * kvw + kvh * hd + i];
                    rs[(t * H + h) * cap + c] = d;
                }
        char what[128], shape[80];
        snprintf(shape, sizeof shape, "rows=%lld heads=%lld kv=%lld hd=%lld pos0=%d cap=%lld",
                 (long long)rows, (long long)H, (long long)KV, (long long)hd, pos0, (long long)cap);
        krt_attn_scores(s, q, rows, kkv, H, pos0, 0, 1);
        snprintf(what, sizeof what, "attn_scores %s", shape);
        check(rel_err(s, rs, sn), what);
        int untouched = 1;
        for (int64_t t = 0; t < rows; t++)
            for (int64_t c = pos0 + t + 1; c < cap; c++)
                for (int64_t h = 0; h < H; h++)
                    untouched &= s[(t * H + h) * cap + c] == s0[(t * H + h) * cap + c];
        for (int64_t t = 0; t < rows; t++)
            krt_attn_scores(s1 + t * H * cap, q + t * H * hd, 1, kkv, H, pos0 + (int32_t)t, 0, 1);
        snprintf(what, sizeof what, "attn_scores rows=%lld: one-row calls bit-identical, columns past pos0+t untouched",
                 (long long)rows);
        check_exact(untouched && memcmp(s, s1, (size_t)sn * sizeof *s) == 0, what);

        for (int64_t t = 0; t < rows; t++)   /* reference softmax: two-pass in double */
            for (int64_t h = 0; h < H; h++) {
                double *row = rs + (t * H + h) * cap, m = -INFINITY, z = 0;
                int64_t n = pos0 + t + 1;
                for (int64_t c = 0; c < n; c++)
                    m = fmax(m, row[c]);
                for (int64_t c = 0; c < n; c++)
                    z += exp(row[c] - m);
                for (int64_t c = 0; c < n; c++)
                    row[c] = exp(row[c] - m) / z;
            }
        float *p = rnd_vec(sn), *pb = fdup(p, sn), *p1 = fdup(p, sn);
        krt_softmax_causal(p, s, rows, H, pos0, cap, 0, 1);
        untouched = 1;
        for (int64_t k = 0; k < sn; k++)
            if (k % cap > pos0 + k / (H * cap)) {
                untouched &= p[k] == pb[k];
                rs[k] = pb[k];
            }
        snprintf(what, sizeof what, "softmax_causal %s", shape);
        check(rel_err(p, rs, sn), what);
        for (int64_t t = 0; t < rows; t++)
            krt_softmax_causal(p1 + t * H * cap, s + t * H * cap, 1, H, pos0 + (int32_t)t, cap, 0, 1);
        float *pin = fdup(s, sn);
        krt_softmax_causal(pin, pin, rows, H, pos0, cap, 0, 1);        /* in place */
        int inplace = 1;
        for (int64_t k = 0; k < sn; k++)
            inplace &= k % cap > pos0 + k / (H * cap) ? pin[k] == s[k] : pin[k] == p[k];
        snprintf(what, sizeof what, "softmax_causal rows=%lld: one-row calls and in place bit-identical, "
                 "columns past pos0+t untouched", (long long)rows);
        check_exact(untouched && inplace && memcmp(p, p1, (size_t)sn * sizeof *p) == 0, what);

        double *ro = dvec(rows * H * hd);
        for (int64_t t = 0; t < rows; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < hd; i++)
                    for (int64_t c = pos0 + t; c >= 0; c--)
                        ro[(t * H + h) * hd + i] += rs[(t * H + h) * cap + c] * vc[c * kvw + (h / (H / KV)) * hd + i];
        float *o = rnd_vec(rows * H * hd), *o1 = rnd_vec(rows * H * hd);
        krt_attn_apply(o, p, rows, vkv, H, pos0, 0, 1);
        snprintf(what, sizeof what, "attn_apply %s", shape);
        check(rel_err(o, ro, rows * H * hd), what);
        for (int64_t t = 0; t < rows; t++)
            krt_attn_apply(o1 + t * H * hd, p + t * H * cap, 1, vkv, H, pos0 + (int32_t)t, 0, 1);
        snprintf(what, sizeof what, "attn_apply rows=%lld is bit-identical to one-row calls", (long long)rows);
        check_exact(memcmp(o, o1, (size_t)(rows * H * hd) * sizeof *o) == 0, what);
        free(q), free(kc), free(vc), free(s), free(s0), free(s1), free(rs), free(p), free(pb);
        free(p1), free(pin), free(ro), free(o), free(o1);
    }
}

/* ---- the fused attention and the KV layouts (head-major, f16/bf16 caches) ---- */

static void check_tol(double err, double tol, const char *what)
{
    n_test++;
    int ok = err < tol;
    if (!ok)
        n_fail++;
    printf("%s %d - %s (max rel err %.3g, bound %.3g)\n", ok ? "ok" : "not ok", n_test, what,
           err, tol);
}

/* Element i of kv head g at position c of a cache, as stored, in double; written from the
 * layout's definition (kernels.h), not from kernels.c. */
static double kv_value(const krt_kv *kv, int64_t g, int64_t c, int64_t i)
{
    int64_t off = kv->head_major ? g * kv->cap * kv->head_dim + c * kv->head_dim + i
                                 : c * kv->kv_heads * kv->head_dim + g * kv->head_dim + i;
    if (kv->dtype == KBLOB_F32)
        return ((const float *)kv->data)[off];
    uint16_t h = ((const uint16_t *)kv->data)[off];
    return kv->dtype == KBLOB_F16 ? kblob_f16_to_f32(h) : kblob_bf16_to_f32(h);
}

/* The composition in double: scores, scale, two-pass softmax over 0 .. pos0+t, apply. */
static void attention_ref(double *ro, const float *q, int64_t rows, const krt_kv *k,
                          const krt_kv *v, int64_t H, double scale, int32_t pos0)
{
    int64_t hd = k->head_dim, n_max = pos0 + rows;
    double *sc = dvec(n_max);
    for (int64_t t = 0; t < rows; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t n = pos0 + t + 1, g = h * k->kv_heads / H;
            double mx = -INFINITY, z = 0;
            for (int64_t c = 0; c < n; c++) {
                double d = 0;
                for (int64_t i = 0; i < hd; i++)
                    d += (double)q[(t * H + h) * hd + i] * kv_value(k, g, c, i);
                sc[c] = d * scale;
                mx = fmax(mx, sc[c]);
            }
            for (int64_t c = 0; c < n; c++)
                z += exp(sc[c] - mx);
            for (int64_t i = 0; i < v->head_dim; i++) {
                double o = 0;
                for (int64_t c = n - 1; c >= 0; c--)
                    o += exp(sc[c] - mx) / z * kv_value(v, g, c, i);
                ro[(t * H + h) * v->head_dim + i] = o;
            }
        }
    free(sc);
}

/* A cache of cap positions of kv_heads x hd in `dtype` and `layout`, its positions
 * 0 .. n-1 stored by krt_cache_store from x [n, kv_heads * hd] in blocks of `block` rows,
 * the rest NaN (a kernel that reads past pos0 + t gives NaN). */
static krt_kv make_cache(const float *x, int64_t n, int64_t block, uint32_t dtype, int layout,
                         int64_t kv_heads, int64_t hd, int64_t cap)
{
    krt_kv kv = {NULL, dtype, layout, kv_heads, hd, cap};
    size_t elem = dtype == KBLOB_F32 ? 4 : 2, count = (size_t)(cap * kv_heads * hd);
    kv.data = malloc(count * elem);
    for (size_t i = 0; i < count; i++) {
        if (dtype == KBLOB_F32)
            ((float *)kv.data)[i] = NAN;
        else
            ((uint16_t *)kv.data)[i] = dtype == KBLOB_F16 ? 0x7e00u : 0x7fc0u;
    }
    for (int64_t p = 0; p < n; p += block)
        krt_cache_store(kv, x + p * kv_heads * hd, p + block <= n ? block : n - p, (int32_t)p);
    return kv;
}

/* The stored values are x's, rounded to the cache's type, at the layout's places. */
static int cache_holds(const krt_kv *kv, const float *x, int64_t n)
{
    int ok = 1;
    for (int64_t c = 0; c < n; c++)
        for (int64_t g = 0; g < kv->kv_heads; g++)
            for (int64_t i = 0; i < kv->head_dim; i++) {
                float want = x[(c * kv->kv_heads + g) * kv->head_dim + i];
                if (kv->dtype == KBLOB_F16)
                    want = kblob_f16_to_f32(kblob_f32_to_f16(want));
                else if (kv->dtype == KBLOB_BF16)
                    want = kblob_bf16_to_f32(kblob_f32_to_bf16(want));
                ok &= kv_value(kv, g, c, i) == (double)want;
            }
    return ok;
}

static void test_fused_attention(void)
{
    /* heads, kv heads, head dim: GQA, MHA, MQA, odd dims, a head dim past one widening piece */
    static const int64_t shapes[][3] = {{4, 2, 16}, {3, 3, 5}, {8, 1, 7}, {6, 2, 64}, {2, 1, 300}};
    static const uint32_t dtypes[] = {KBLOB_F32, KBLOB_F16, KBLOB_BF16};
    static const char *const dnames[] = {"f32", "f16", "bf16"};
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int r = 0; r < 2 * nshapes; r++) {
        int64_t H = shapes[r % nshapes][0], KV = shapes[r % nshapes][1];
        int64_t hd = shapes[r % nshapes][2], rows = block_rows[r % 3], kvw = KV * hd;
        /* up to 150 positions: several chunks of KRT_ATTN_CHUNK scores, the max moving */
        int32_t pos0 = (int32_t)(r % 2 ? rnd_int(60, 150) : rnd_int(0, 20));
        int64_t n = pos0 + rows, cap = n + rnd_int(0, 5);
        float scale = (float)(0.2 + 0.8 * (rnd_f() + 1) / 2);
        float *q = rnd_vec(rows * H * hd), *xk = rnd_vec(n * kvw), *xv = rnd_vec(n * kvw);
        for (int64_t i = 0; i < rows * H * hd; i++)
            q[i] *= 4.0f;                     /* peaked probabilities */
        for (int d = 0; d < 3; d++)
            for (int layout = 0; layout < 2; layout++) {
                char shape[160], what[240];
                snprintf(shape, sizeof shape, "rows=%lld H=%lld KV=%lld hd=%lld pos0=%d cap=%lld "
                         "%s %s-major", (long long)rows, (long long)H, (long long)KV,
                         (long long)hd, pos0, (long long)cap, dnames[d],
                         layout ? "head" : "position");
                krt_kv k = make_cache(xk, n, 3, dtypes[d], layout, KV, hd, cap);
                krt_kv v = make_cache(xv, n, 5, dtypes[d], layout, KV, hd, cap);
                snprintf(what, sizeof what, "cache_store %s: x rounded to the type, at the "
                         "layout's places", shape);
                check_exact(cache_holds(&k, xk, n) && cache_holds(&v, xv, n), what);

                int64_t on = rows * H * hd;
                double *ro = dvec(on);
                attention_ref(ro, q, rows, &k, &v, H, scale, pos0);
                float *o = rnd_vec(on), *o1 = rnd_vec(on), *oc = rnd_vec(on);
                krt_attention(o, q, rows, k, v, H, scale, pos0, 0, 1);
                snprintf(what, sizeof what, "attention %s against scores, softmax, apply in "
                         "double", shape);
                check(rel_err(o, ro, on), what);

                /* the unfused kernels on the same cache: the composition the pass replaces */
                int64_t sn = rows * H * cap;
                float *sc = rnd_vec(sn);
                krt_attn_scores(sc, q, rows, k, H, pos0, 0, 1);
                for (int64_t t = 0; t < rows; t++)
                    for (int64_t c = 0; c <= pos0 + t; c++)
                        for (int64_t h = 0; h < H; h++)
                            sc[(t * H + h) * cap + c] *= scale;
                krt_softmax_causal(sc, sc, rows, H, pos0, cap, 0, 1);
                krt_attn_apply(oc, sc, rows, v, H, pos0, 0, 1);
                snprintf(what, sizeof what, "attn_scores, softmax_causal, attn_apply %s against "
                         "double", shape);
                check(rel_err(oc, ro, on), what);

                for (int64_t t = 0; t < rows; t++)
                    krt_attention(o1 + t * H * hd, q + t * H * hd, 1, k, v, H, scale,
                                  pos0 + (int32_t)t, 0, 1);
                snprintf(what, sizeof what, "attention rows=%lld %s %s: bit-identical to one-row "
                         "calls", (long long)rows, dnames[d], layout ? "head" : "position");
                check_exact(memcmp(o, o1, (size_t)on * sizeof *o) == 0, what);

                /* every path and thread split: the same bits as the portable reference */
                int same = 1;
                krt_path best = krt_cpu_use(KRT_PATH_COUNT), was = krt_kernel_path;
                float *op = rnd_vec(on);
                krt_cpu_use(KRT_PATH_PORTABLE);
                krt_attention(op, q, rows, k, v, H, scale, pos0, 0, 1);
                for (int path = KRT_PATH_PORTABLE; path <= (int)best; path++)
                    for (int nsh = 1; nsh <= 3; nsh++) {
                        krt_cpu_use((krt_path)path);
                        float *os = rnd_vec(on);
                        for (int sh = 0; sh < nsh; sh++)
                            krt_attention(os, q, rows, k, v, H, scale, pos0, sh, nsh);
                        same &= memcmp(os, op, (size_t)on * sizeof *os) == 0;
                        free(os);
                    }
                krt_cpu_use(was);
                snprintf(what, sizeof what, "attention %s: every path up to %s, 1-3 shares, the "
                         "portable bits", shape, krt_path_name(best));
                check_exact(same, what);
                free(op);

                if (dtypes[d] != KBLOB_F32) {  /* against the values before rounding */
                    krt_kv k32 = make_cache(xk, n, n, KBLOB_F32, 0, KV, hd, cap);
                    krt_kv v32 = make_cache(xv, n, n, KBLOB_F32, 0, KV, hd, cap);
                    attention_ref(ro, q, rows, &k32, &v32, H, scale, pos0);
                    double tol = dtypes[d] == KBLOB_F16 ? 5e-3 : 4e-2;
                    snprintf(what, sizeof what, "attention %s against f32 caches", shape);
                    check_tol(rel_err(o, ro, on), tol, what);
                    free(k32.data), free(v32.data);
                }
                free(k.data), free(v.data), free(ro), free(o), free(o1), free(oc), free(sc);
            }
        free(q), free(xk), free(xv);
    }
}

/* ---- krt_expf ---- */

static void test_expf(void)
{
    double worst = 0;
    float at = 0;
    for (float x = -87.0f; x < 88.7f; x += 0.00731f) {
        double r = exp((double)x), got = krt_expf(x);
        float rf = (float)r;
        double ulp = fabs(got - r) / ((double)nextafterf(rf, INFINITY) - rf);
        if (ulp > worst)
            worst = ulp, at = x;
    }
    char what[160];
    snprintf(what, sizeof what, "krt_expf within 2 ulp of e^x on [-87, 88.7] (worst %.2f ulp at %g)",
             worst, (double)at);
    check_exact(worst <= 2.0, what);
    check_exact(krt_expf(0.0f) == 1.0f && krt_expf(-90.0f) == 0.0f && isinf(krt_expf(90.0f)) &&
                isnan(krt_expf(NAN)) && krt_expf(-INFINITY) == 0.0f && isinf(krt_expf(INFINITY)),
                "krt_expf: e^0 = 1, underflow to 0, overflow to inf, NaN stays NaN");
}

/* ---- softmax, reductions, topk ---- */

static void test_rows(void)
{
    for (int rep = 0; rep < 6; rep++) {
        int64_t rows = rep < 3 ? block_rows[rep] : rnd_int(2, 9), n = rnd_int(1, 77);
        float *x = rnd_vec(rows * n), *b = rnd_vec(rows * n), *y = rnd_vec(rows * n);
        for (int64_t k = 0; k < rows * n; k++)
            if (next_u64() % 4 == 0)
                x[k] = 0.0f;     /* zeros for count */
        double *ref = dvec(rows * n), *rr = dvec(rows);
        char what[96], shape[48];
        snprintf(shape, sizeof shape, "rows=%lld n=%lld", (long long)rows, (long long)n);

        for (int64_t t = 0; t < rows; t++) {
            double m = -INFINITY, z = 0;
            for (int64_t i = n - 1; i >= 0; i--)
                m = fmax(m, x[t * n + i]);
            for (int64_t i = 0; i < n; i++)
                z += exp(x[t * n + i] - m);
            for (int64_t i = 0; i < n; i++)
                ref[t * n + i] = exp(x[t * n + i] - m) / z;
        }
        krt_softmax(y, x, rows, n);
        snprintf(what, sizeof what, "softmax %s", shape);
        check(rel_err(y, ref, rows * n), what);

        float r[16];
        for (int op = 0; op < 6; op++) {
            static const char *const names[] = {"sum", "mean", "amax", "count", "dot", "dot shared b"};
            for (int64_t t = 0; t < rows; t++) {
                double s = op == 2 ? -INFINITY : 0;
                for (int64_t i = n - 1; i >= 0; i--) {
                    double a = x[t * n + i];
                    switch (op) {
                    case 0: case 1: s += a; break;
                    case 2: s = fmax(s, a); break;
                    case 3: s += a != 0; break;
                    case 4: s += a * b[t * n + i]; break;
                    default: s += a * b[i]; break;
                    }
                }
                rr[t] = op == 1 ? s / (double)n : s;
            }
            switch (op) {
            case 0: krt_sum(r, x, rows, n); break;
            case 1: krt_mean(r, x, rows, n); break;
            case 2: krt_amax(r, x, rows, n); break;
            case 3: krt_count(r, x, rows, n); break;
            case 4: krt_dot(r, x, b, rows, n, 1); break;
            default: krt_dot(r, x, b, rows, n, 0); break;
            }
            snprintf(what, sizeof what, "%s %s", names[op], shape);
            if (op == 2 || op == 3)
                check_exact(rel_err(r, rr, rows) == 0, what);
            else
                check(rel_err(r, rr, rows), what);
        }

        /* topk: few distinct values, so ties are common */
        int64_t k = rnd_int(1, n);
        for (int64_t i = 0; i < rows * n; i++)
            x[i] = (float)(next_u64() % 5);
        krt_topk(y, x, rows, n, k);
        int ok = 1;
        for (int64_t t = 0; t < rows; t++)
            for (int64_t i = 0; i < n; i++) {
                int64_t before = 0;    /* entries that rank ahead of i */
                for (int64_t j = 0; j < n; j++)
                    before += x[t * n + j] > x[t * n + i] || (x[t * n + j] == x[t * n + i] && j < i);
                ok &= y[t * n + i] == (before < k ? 1.0f : 0.0f);
            }
        snprintf(what, sizeof what, "topk k=%lld %s (lower index first on ties)", (long long)k, shape);
        check_exact(ok, what);
        free(x), free(b), free(y), free(ref), free(rr);
    }
}

int main(void)
{
    test_pool();
    test_widen_all();
    test_embed_widen_cache();
    test_rope();
    test_rope_heads();
    test_attention();
    test_fused_attention();
    test_rows();
    test_expf();
    printf("1..%d\n", n_test);
    return n_fail ? 1 : 0;
}
