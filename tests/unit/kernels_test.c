/* kernels_test.c - TAP test of runtime/kernels.h against naive references.
 *
 * Each reference is written independently: double accumulation, explicit index arithmetic,
 * loops in a different order. Shapes are random (fixed seed) and include odd sizes, ld > in
 * and grouped-query attention. The error reported per check is max |got - ref| / max |ref|.
 * RoPE is also checked bit for bit against a verbatim copy of llama2.c's loop.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/kernels.h"

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

static void test_linear(void)
{
    for (int rep = 0; rep < 8; rep++) {
        int64_t out = rnd_int(1, 67), in = rnd_int(1, 301), ld = in + (rep % 2 ? rnd_int(1, 9) : 0);
        float *W = rnd_vec(out * ld), *x = rnd_vec(in), *y = rnd_vec(out);
        double *ref = calloc((size_t)out, sizeof *ref);
        for (int64_t j = in - 1; j >= 0; j--) /* column order, reversed */
            for (int64_t i = 0; i < out; i++)
                ref[i] += (double)W[i * ld + j] * (double)x[j];
        krt_linear(y, W, ld, x, out, in);
        char what[80];
        snprintf(what, sizeof what, "linear out=%lld in=%lld ld=%lld", (long long)out, (long long)in, (long long)ld);
        check(rel_err(y, ref, out), what);
        free(W), free(x), free(y), free(ref);
    }
}

static void test_embed_cache(void)
{
    int64_t V = 13, d = 7;
    float *table = rnd_vec(V * d), y[7];
    double ref[7];
    krt_embed(y, table, 11, d, d);
    for (int i = 0; i < 7; i++)
        ref[i] = table[11 * 7 + i];
    check(rel_err(y, ref, 7), "embed row 11 of [13,7]");

    float *cache = calloc(5 * 7, sizeof *cache);
    krt_cache_store(cache, y, 7, 3);
    double got = 0;
    for (int i = 0; i < 5 * 7; i++)
        got += (i / 7 == 3) ? fabs(cache[i] - y[i % 7]) : fabs(cache[i]);
    check(got, "cache_store row 3 of [5,7]");
    free(table), free(cache);
}

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
    for (int rep = 0; rep < 8; rep++) {
        int64_t heads = rnd_int(1, 5), hd = 2 * rnd_int(1, 40), n = heads * hd;
        int32_t pos = (int32_t)rnd_int(0, 50);
        int inter = rep % 2;
        float base = rep < 4 ? 10000.0f : 500000.0f;
        float *x = rnd_vec(n);
        double *ref = malloc((size_t)n * sizeof *ref);
        for (int64_t k = 0; k < n; k++) {
            int64_t h = k / hd, e = k % hd, half = hd / 2;
            int64_t i = inter ? e / 2 : e % half;      /* pair index */
            int first = inter ? e % 2 == 0 : e < half;
            int64_t partner = h * hd + (inter ? (first ? e + 1 : e - 1) : (first ? e + half : e - half));
            double ang = (double)pos * pow((double)base, -2.0 * (double)i / (double)hd);
            double c = cos(ang), s = sin(ang), a = x[k], b = x[partner];
            ref[k] = first ? a * c - b * s : b * s + a * c;
        }
        krt_rope(x, heads, hd, hd, pos, base, inter);
        char what[96];
        snprintf(what, sizeof what, "rope %s heads=%lld hd=%lld pos=%d base=%g",
                 inter ? "interleaved" : "half", (long long)heads, (long long)hd, pos, base);
        check(rel_err(x, ref, n), what);
        free(x), free(ref);
    }
    /* bit-exact agreement with llama2.c at large positions */
    int exact = 1;
    for (int pos = 0; pos < 4096; pos += 97) {
        float a[3 * 48], b[3 * 48];
        for (int i = 0; i < 3 * 48; i++)
            a[i] = b[i] = rnd_f();
        krt_rope(a, 3, 48, 48, pos, 10000.0f, 1);
        rope_llama2c(b, 3 * 48, 48, pos);
        exact &= memcmp(a, b, sizeof a) == 0;
    }
    check(exact ? 0.0 : 1.0, "rope interleaved is bit-identical to llama2.c (pos up to 4096)");
}

/* scores, softmax and apply, GQA included */
static void test_attention(void)
{
    static const int64_t shapes[][3] = {{1, 1, 16}, {4, 4, 8}, {8, 2, 6}, {6, 3, 5}, {12, 1, 7}, {4, 2, 64}};
    for (size_t r = 0; r < sizeof shapes / sizeof shapes[0]; r++) {
        int64_t H = shapes[r][0], KV = shapes[r][1], hd = shapes[r][2];
        int64_t n = rnd_int(1, 37), cap = n + 3, stride = cap + 1, kvw = KV * hd;
        float *q = rnd_vec(H * hd), *kc = rnd_vec(cap * kvw), *vc = rnd_vec(cap * kvw);
        float *s = rnd_vec(H * stride), *out = rnd_vec(H * hd);
        double *rs = malloc((size_t)(H * stride) * sizeof *rs), *ro = calloc((size_t)(H * hd), sizeof *ro);
        for (int64_t k = 0; k < H * stride; k++)
            rs[k] = s[k]; /* entries t >= n must be left alone */
        for (int64_t t = 0; t < n; t++)
            for (int64_t h = 0; h < H; h++) {
                int64_t kvh = h * KV / H;
                double d = 0;
                for (int64_t i = 0; i < hd; i++)
                    d += (double)q[h * hd + i] * kc[t * kvw + kvh * hd + i];
                rs[h * stride + t] = d;
            }
        char what[96];
        snprintf(what, sizeof what, "attn_scores heads=%lld kv=%lld hd=%lld n=%lld", (long long)H, (long long)KV, (long long)hd, (long long)n);
        krt_attn_scores(s, q, kc, H, KV, hd, n, stride);
        check(rel_err(s, rs, H * stride), what);

        for (int64_t h = 0; h < H; h++) { /* reference softmax: two-pass in double */
            double *row = rs + h * stride, m = -INFINITY, z = 0;
            for (int64_t t = 0; t < n; t++)
                m = fmax(m, row[t]);
            for (int64_t t = 0; t < n; t++)
                z += exp(row[t] - m);
            for (int64_t t = 0; t < n; t++)
                row[t] = exp(row[t] - m) / z;
        }
        krt_softmax_rows(s, H, n, stride);
        snprintf(what, sizeof what, "softmax_rows rows=%lld n=%lld stride=%lld", (long long)H, (long long)n, (long long)stride);
        check(rel_err(s, rs, H * stride), what);

        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < hd; i++)
                for (int64_t t = n - 1; t >= 0; t--)
                    ro[h * hd + i] += rs[h * stride + t] * vc[t * kvw + (h / (H / KV)) * hd + i];
        krt_attn_apply(out, s, vc, H, KV, hd, n, stride);
        snprintf(what, sizeof what, "attn_apply heads=%lld kv=%lld hd=%lld n=%lld", (long long)H, (long long)KV, (long long)hd, (long long)n);
        check(rel_err(out, ro, H * hd), what);
        free(q), free(kc), free(vc), free(s), free(out), free(rs), free(ro);
    }
}

int main(void)
{
    test_linear();
    test_embed_cache();
    test_rope();
    test_attention();
    printf("1..%d\n", n_test);
    return n_fail ? 1 : 0;
}
