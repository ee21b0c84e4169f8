/* kernels.c - the compute kernels of kernels.h but the matrix products (linear.c): weights
 * read as f32, positions, KV caches and attention, softmax, reductions, in portable C11.
 *
 * Every sum keeps the order documented in kernels.h, so the results do not depend on the
 * block size, the thread share or the machine.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "attention_internal.h"
#include "cpu.h"
#include "kiln_blob.h"

/* A fused multiply-add would round differently from the old kernels; gcc in ISO C mode
 * (-std=c11) does not contract, clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Fixed-width loops fully unrolled: the compiler keeps them in vector registers. */
#if defined(__GNUC__) || defined(__clang__)
#define KRT_UNROLL _Pragma("GCC unroll 16")
#else
#define KRT_UNROLL
#endif
#define KRT_LANES 16

/* ---- widening ---- */

/* f16 -> f32, exactly kblob_f16_to_f32 but branch-free so that the loop vectorizes: the
 * exponent and mantissa shifted into place are a float 2^112 too small (subnormal halves
 * included), a power-of-two multiply fixes that exactly, and infinities / NaNs (>= 2^16 after
 * it) get the all-ones exponent. Checked against kblob_f16_to_f32 on all 65536 values. */
static inline float widen_f16(uint16_t h)
{
    uint32_t u = (uint32_t)(h & 0x7fff) << 13, sign = (uint32_t)(h & 0x8000) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    f *= 0x1p112f;
    memcpy(&u, &f, sizeof u);
    u |= f >= 65536.0f ? 0x7f800000u : 0u;
    u |= sign;
    memcpy(&f, &u, sizeof f);
    return f;
}

void krt_widen_f16(float *y, const uint16_t *h, int64_t n)
{
    int64_t body = n - n % KRT_LANES, j = 0;
    for (; j < body; j += KRT_LANES) {   /* fixed-width steps: vectorized even at -O2 */
        KRT_UNROLL
        for (int k = 0; k < KRT_LANES; k++)
            y[j + k] = widen_f16(h[j + k]);
    }
    for (; j < n; j++)
        y[j] = widen_f16(h[j]);
}

void krt_widen_bf16(float *y, const uint16_t *h, int64_t n)
{
    int64_t body = n - n % KRT_LANES, j = 0;
    for (; j < body; j += KRT_LANES) {
        KRT_UNROLL
        for (int k = 0; k < KRT_LANES; k++) {
            uint32_t u = (uint32_t)h[j + k] << 16;
            memcpy(&y[j + k], &u, sizeof u);
        }
    }
    for (; j < n; j++) {
        uint32_t u = (uint32_t)h[j] << 16;
        memcpy(&y[j], &u, sizeof u);
    }
}

/* ---- weights read as f32 ---- */

/* Row r, columns c0 .. c0+n-1, of a view as f32: f32 rows in place are copied, every other
 * type and layout goes through kiln_blob.h's reader (exact). */
static void widen_row(float *y, const krt_wview *v, int64_t r, int64_t n)
{
    uint64_t row_bytes = 0;
    kblob_row_bytes(v->dtype, (uint64_t)v->wcols, &row_bytes);
    const unsigned char *base = (const unsigned char *)v->w + (uint64_t)(v->row0 + r) * row_bytes;
    if (v->layout == KBLOB_ROWS && v->dtype == KBLOB_F32) {
        memcpy(y, base + 4 * v->col0, (size_t)n * sizeof *y);
    } else if (v->layout == KBLOB_ROWS && v->dtype == KBLOB_F16) {
        krt_widen_f16(y, (const uint16_t *)(const void *)base + v->col0, n);
    } else if (v->layout == KBLOB_ROWS && v->dtype == KBLOB_BF16) {
        krt_widen_bf16(y, (const uint16_t *)(const void *)base + v->col0, n);
    } else {
        kblob_read_row(y, v->w, v->dtype, v->layout, (uint64_t)v->wrows, (uint64_t)v->wcols,
                       (uint64_t)(v->row0 + r), (uint64_t)v->col0, (uint64_t)n);
    }
}

void krt_embed(float *y, const int32_t *tok, int64_t rows, krt_wview table, int64_t vocab,
               int64_t d)
{
    for (int64_t t = 0; t < rows; t++) {
        if (tok[t] < 0 || tok[t] >= vocab)
            memset(y + t * d, 0, (size_t)d * sizeof *y);
        else
            widen_row(y + t * d, &table, tok[t], d);
    }
}

void krt_widen(float *y, krt_wview w, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++)
        widen_row(y + r * n, &w, r, n);
}

/* ---- positions and attention ---- */

/* The angle of pair i at position pos, in float exactly as llama2.c computes it. */
static void rope_angle(int32_t pos, float base, int64_t i, int64_t rot, float *fcr, float *fci)
{
    float freq = 1.0f / powf(base, (float)(2 * i) / (float)rot);
    float val = (float)pos * freq;
    *fcr = cosf(val);
    *fci = sinf(val);
}

/* Rotates pair i of one head v: (2i, 2i+1) interleaved, else (i, i + rot/2). */
static void rope_rotate(float *v, int64_t i, int64_t half, int interleaved, float fcr, float fci)
{
    int64_t a = interleaved ? 2 * i : i;
    int64_t b = interleaved ? 2 * i + 1 : i + half;
    float v0 = v[a], v1 = v[b];
    v[a] = v0 * fcr - v1 * fci;
    v[b] = v0 * fci + v1 * fcr;
}

void krt_rope(float *y, const float *x, int64_t rows, int32_t pos0, int64_t heads,
              int64_t head_dim, int64_t rot, float base, int interleaved)
{
    int64_t width = heads * head_dim, half = rot / 2;
    for (int64_t t = 0; t < rows; t++) {
        float *yt = y + t * width;
        if (y != x)
            memcpy(yt, x + t * width, (size_t)width * sizeof *y);
        int32_t pos = pos0 + (int32_t)t;
        for (int64_t i = 0; i < half; i++) {   /* one angle serves every head */
            float fcr, fci;
            rope_angle(pos, base, i, rot, &fcr, &fci);
            for (int64_t h = 0; h < heads; h++)
                rope_rotate(yt + h * head_dim, i, half, interleaved, fcr, fci);
        }
    }
}

void krt_rope_heads(float *y, const float *x, int64_t rows, int32_t pos0, int64_t heads,
                    int64_t head_dim, int64_t rot, const float *bases, int interleaved)
{
    int64_t width = heads * head_dim, half = rot / 2;
    for (int64_t t = 0; t < rows; t++) {
        float *yt = y + t * width;
        if (y != x)
            memcpy(yt, x + t * width, (size_t)width * sizeof *y);
        int32_t pos = pos0 + (int32_t)t;
        for (int64_t h = 0; h < heads; h++)    /* the angles differ per head */
            for (int64_t i = 0; i < half; i++) {
                float fcr, fci;
                rope_angle(pos, bases[h], i, rot, &fcr, &fci);
                rope_rotate(yt + h * head_dim, i, half, interleaved, fcr, fci);
            }
    }
}

/* ---- KV caches and attention ---- */

/* Values of a cache row widened at once: a stack buffer, so head dims of any size go in
 * pieces of this many (the sums keep their order across pieces). */
#define KV_PIECE 256


/* q . (head g of the cache at position c), summed left to right over the head dim. */
static inline float kv_dot(const krt_kv *kv, const float *q, int64_t g, int64_t c)
{
    float buf[KV_PIECE], acc = 0.0f;
    int64_t off = kv_at(kv, g, c);
    for (int64_t i0 = 0; i0 < kv->head_dim; i0 += KV_PIECE) {
        int64_t n = kv->head_dim - i0 < KV_PIECE ? kv->head_dim - i0 : KV_PIECE;
        const float *k = kv_read(kv, off + i0, n, buf);
        for (int64_t i = 0; i < n; i++)
            acc += q[i0 + i] * k[i];
    }
    return acc;
}

/* o[i] += a * (head g of the cache at position c)[i] (a multiply, then an add); o is never
 * the cache. In blocks of 8: vector code at -O2. */
#define ATTN_LANES 8
static inline void kv_axpy(const krt_kv *kv, float *restrict o, float a, int64_t g, int64_t c)
{
    float buf[KV_PIECE];
    int64_t off = kv_at(kv, g, c);
    for (int64_t i0 = 0; i0 < kv->head_dim; i0 += KV_PIECE) {
        int64_t n = kv->head_dim - i0 < KV_PIECE ? kv->head_dim - i0 : KV_PIECE;
        const float *restrict v = kv_read(kv, off + i0, n, buf);
        float *restrict op = o + i0;
        int64_t nb = n / ATTN_LANES * ATTN_LANES;
        for (int64_t i = 0; i < nb; i += ATTN_LANES)
            KRT_UNROLL for (int l = 0; l < ATTN_LANES; l++)
                op[i + l] += a * v[i + l];
        for (int64_t i = nb; i < n; i++)
            op[i] += a * v[i];
    }
}

void krt_cache_store(krt_kv kv, const float *x, int64_t rows, int32_t pos0)
{
    int64_t hd = kv.head_dim;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t g = 0; g < kv.kv_heads; g++) {
            const float *src = x + (t * kv.kv_heads + g) * hd;
            int64_t off = kv_at(&kv, g, (int64_t)pos0 + t);
            if (kv.dtype == KBLOB_F32) {
                memcpy((float *)kv.data + off, src, (size_t)hd * sizeof *src);
                continue;
            }
            uint16_t *dst = (uint16_t *)kv.data + off;
            for (int64_t i = 0; i < hd; i++)   /* round to nearest even, as weights are */
                dst[i] = kv.dtype == KBLOB_F16 ? kblob_f32_to_f16(src[i])
                                               : kblob_f32_to_bf16(src[i]);
        }
}

/* The (token, head) pairs [*p0, *p1) of rows x heads that share sh of nsh computes. */
void krt_pair_share(int64_t rows, int64_t heads, int sh, int nsh, int64_t *p0, int64_t *p1)
{
    int64_t n = rows * heads;
    *p0 = n * sh / nsh;
    *p1 = n * (sh + 1) / nsh;
}

void krt_attn_scores(float *s, const float *q, int64_t rows, krt_kv k, int64_t heads,
                     int32_t pos0, int sh, int nsh)
{
    int64_t hd = k.head_dim, group = heads / k.kv_heads, p0, p1;
    krt_pair_share(rows, heads, sh, nsh, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        int64_t t = p / heads, h = p % heads, n = (int64_t)pos0 + t + 1;
        const float *qh = q + p * hd;
        float *sr = s + p * k.cap;
        for (int64_t c = 0; c < n; c++)
            sr[c] = kv_dot(&k, qh, h / group, c);
    }
}

void krt_attn_apply(float *o, const float *p, int64_t rows, krt_kv v, int64_t heads,
                    int32_t pos0, int sh, int nsh)
{
    int64_t hd = v.head_dim, group = heads / v.kv_heads, p0, p1;
    krt_pair_share(rows, heads, sh, nsh, &p0, &p1);
    for (int64_t pr = p0; pr < p1; pr++) {
        int64_t t = pr / heads, h = pr % heads, n = (int64_t)pos0 + t + 1;
        float *oh = o + pr * hd;
        const float *ph = p + pr * v.cap;
        for (int64_t i = 0; i < hd; i++)
            oh[i] = 0.0f;
        for (int64_t c = 0; c < n; c++)
            kv_axpy(&v, oh, ph[c], h / group, c);
    }
}

/* ---- softmax ---- */

/* The old krt_softmax_rows on one row of n: max, exp(x - max) summed left to right, divide. */
static void softmax_row(float *y, const float *x, int64_t n)
{
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        y[i] = krt_expf(x[i] - max);
        sum += y[i];
    }
    for (int64_t i = 0; i < n; i++)
        y[i] /= sum;
}

void krt_softmax(float *y, const float *x, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++)
        softmax_row(y + r * n, x + r * n, n);
}

void krt_softmax_causal(float *y, const float *x, int64_t rows, int64_t heads, int32_t pos0,
                        int64_t cap, int sh, int nsh)
{
    int64_t p0, p1;
    krt_pair_share(rows, heads, sh, nsh, &p0, &p1);
    for (int64_t p = p0; p < p1; p++)
        softmax_row(y + p * cap, x + p * cap, (int64_t)pos0 + p / heads + 1);
}

/* ---- reductions (the old emitted loops, one row at a time) ---- */

void krt_sum(float *y, const float *x, int64_t rows, int64_t n)
{
    for (int64_t t = 0; t < rows; t++) {
        const float *a = x + t * n;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++)
            s += a[i];
        y[t] = s;
    }
}

void krt_mean(float *y, const float *x, int64_t rows, int64_t n)
{
    krt_sum(y, x, rows, n);
    for (int64_t t = 0; t < rows; t++)
        y[t] = y[t] / (float)n;
}

void krt_amax(float *y, const float *x, int64_t rows, int64_t n)
{
    for (int64_t t = 0; t < rows; t++) {
        const float *a = x + t * n;
        float s = a[0];
        for (int64_t i = 1; i < n; i++)
            if (a[i] > s)
                s = a[i];
        y[t] = s;
    }
}

void krt_count(float *y, const float *x, int64_t rows, int64_t n)
{
    for (int64_t t = 0; t < rows; t++) {
        const float *a = x + t * n;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++)
            s += (a[i] != 0.0f);
        y[t] = s;
    }
}

void krt_dot(float *y, const float *a, const float *b, int64_t rows, int64_t n, int b_rows)
{
    for (int64_t t = 0; t < rows; t++) {
        const float *at = a + t * n, *bt = b_rows ? b + t * n : b;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++)
            s += at[i] * bt[i];
        y[t] = s;
    }
}

void krt_topk(float *mask, const float *x, int64_t rows, int64_t n, int64_t k)
{
    for (int64_t t = 0; t < rows; t++) {
        float *m = mask + t * n;
        const float *a = x + t * n;
        memset(m, 0, (size_t)n * sizeof *m);
        for (int64_t p = 0; p < k; p++) {
            int64_t best = -1;
            for (int64_t i = 0; i < n; i++)
                if (m[i] == 0.0f && (best < 0 || a[i] > a[best]))
                    best = i;
            if (best < 0)
                break;           /* k > n: every entry is taken */
            m[best] = 1.0f;
        }
    }
}
