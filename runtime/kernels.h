/* kernels.h - the scalar compute kernels that emitted code calls.
 *
 * Every kernel is `static inline` and the emitted C passes literal shape arguments, so the C
 * compiler specializes each call site. Plain loops over float32; every sum runs left to right
 * in float, matching llama2.c's run.c operation for operation. All matrices are row-major.
 * The signatures are what a SIMD version would keep; only the bodies would change.
 */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* y[i] = sum_j W[i*ld + j] * x[j], for i < out, j < in; ld >= in is W's row stride.
 * Each row is summed in KRT_LANES independent partial sums (lane k takes j = k mod
 * KRT_LANES), added pairwise at the end: the compiler turns the lanes into vector registers
 * at the baseline instruction set, and the order is fixed, so results do not depend on the
 * machine. */
#define KRT_LANES 16
static inline void krt_linear(float *restrict y, const float *restrict W, int64_t ld,
                              const float *restrict x, int64_t out, int64_t in)
{
    int64_t body = in - in % KRT_LANES;
    for (int64_t i = 0; i < out; i++) {
        const float *row = W + i * ld;
        float lane[KRT_LANES] = {0};
        for (int64_t j = 0; j < body; j += KRT_LANES)
            for (int k = 0; k < KRT_LANES; k++)
                lane[k] += row[j + k] * x[j + k];
        for (int64_t j = body; j < in; j++)
            lane[j - body] += row[j] * x[j];
        for (int width = KRT_LANES / 2; width > 0; width /= 2)
            for (int k = 0; k < width; k++)
                lane[k] += lane[k + width];
        y[i] = lane[0];
    }
}

/* y = row `row` of a table whose rows lie `stride` floats apart (d floats are copied); the
 * caller has checked the row against the table. */
static inline void krt_embed(float *y, const float *table, int32_t row, int64_t stride, int64_t d)
{
    memcpy(y, table + (int64_t)row * stride, (size_t)d * sizeof(float));
}

/* Rotary position embedding in place on x[heads][head_dim]: the first `rot` dims of each head
 * rotate (rot = head_dim for full rotary; less for partial rotary), the rest pass through.
 * The angle of pair i is pos * freq_i with freq_i = 1 / base^(2i/rot), computed in float
 * exactly as llama2.c does. interleaved: pairs (2i, 2i+1); otherwise (HF rotate_half):
 * (i, i + rot/2). */
static inline void krt_rope(float *x, int64_t heads, int64_t head_dim, int64_t rot, int32_t pos,
                            float base, int interleaved)
{
    int64_t half = rot / 2;
    for (int64_t i = 0; i < half; i++) {
        float freq = 1.0f / powf(base, (float)(2 * i) / (float)rot);
        float val = (float)pos * freq;
        float fcr = cosf(val);
        float fci = sinf(val);
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + h * head_dim;
            int64_t a = interleaved ? 2 * i : i;
            int64_t b = interleaved ? 2 * i + 1 : i + half;
            float v0 = v[a], v1 = v[b];
            v[a] = v0 * fcr - v1 * fci;
            v[b] = v0 * fci + v1 * fcr;
        }
    }
}

/* s[h*s_stride + t] = q[h] . k[t, kv head of h], t < n. kc rows are kv_heads*head_dim wide;
 * query head h reads kv head h / (heads/kv_heads). Unscaled. */
static inline void krt_attn_scores(float *restrict s, const float *restrict q,
                                   const float *restrict kc, int64_t heads, int64_t kv_heads,
                                   int64_t head_dim, int64_t n, int64_t s_stride)
{
    int64_t kvw = kv_heads * head_dim, group = heads / kv_heads;
    for (int64_t h = 0; h < heads; h++) {
        const float *qh = q + h * head_dim;
        const float *kh = kc + (h / group) * head_dim;
        for (int64_t t = 0; t < n; t++) {
            const float *k = kh + t * kvw;
            float acc = 0.0f;
            for (int64_t i = 0; i < head_dim; i++)
                acc += qh[i] * k[i];
            s[h * s_stride + t] = acc;
        }
    }
}

/* Softmax in place over the first n entries of each of `rows` rows, `stride` apart. */
static inline void krt_softmax_rows(float *p, int64_t rows, int64_t n, int64_t stride)
{
    for (int64_t r = 0; r < rows; r++) {
        float *x = p + r * stride;
        float max = x[0];
        for (int64_t i = 1; i < n; i++)
            if (x[i] > max)
                max = x[i];
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            x[i] = expf(x[i] - max);
            sum += x[i];
        }
        for (int64_t i = 0; i < n; i++)
            x[i] /= sum;
    }
}

/* out[h*hd + i] = sum_{t<n} p[h*p_stride + t] * v[t, kv head of h][i]. */
static inline void krt_attn_apply(float *restrict out, const float *restrict p,
                                  const float *restrict vc, int64_t heads, int64_t kv_heads,
                                  int64_t head_dim, int64_t n, int64_t p_stride)
{
    int64_t kvw = kv_heads * head_dim, group = heads / kv_heads;
    for (int64_t h = 0; h < heads; h++) {
        float *o = out + h * head_dim;
        const float *ph = p + h * p_stride;
        const float *vh = vc + (h / group) * head_dim;
        for (int64_t i = 0; i < head_dim; i++)
            o[i] = 0.0f;
        for (int64_t t = 0; t < n; t++) {
            float a = ph[t];
            const float *v = vh + t * kvw;
            for (int64_t i = 0; i < head_dim; i++)
                o[i] += a * v[i];
        }
    }
}

/* cache[pos, 0..width-1] = x. */
static inline void krt_cache_store(float *cache, const float *x, int64_t width, int32_t pos)
{
    memcpy(cache + (int64_t)pos * width, x, (size_t)width * sizeof(float));
}

#endif
