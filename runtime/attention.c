/* attention.c - the fused attention kernel (kernels.h: krt_attention): the split of (token,
 * head) pairs between threads, the choice of path, and the reference every path follows.
 *
 * The reference sums with fmaf, one rounding per product, in the order kernels.h states;
 * attention_avx2.c does the same with 8-lane vectors (AVX-512 machines take it too: the
 * lanes are 8 by definition), so every path gives the same bits.
 */
#include <math.h>
#include <string.h>

#include "attention_internal.h"
#include "cpu.h"
#include "kiln_blob.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define PIECE 256                 /* values of a cache row widened at once (the stack) */

/* q . (head g of k at position c): 8 lanes, fmaf each, the tail to lanes 0 .., pairwise. */
static float dot_lanes(const krt_kv *k, const float *q, int64_t g, int64_t c)
{
    float buf[PIECE], lane[8] = {0};
    int64_t off = kv_at(k, g, c);
    for (int64_t i0 = 0; i0 < k->head_dim; i0 += PIECE) {
        int64_t n = k->head_dim - i0 < PIECE ? k->head_dim - i0 : PIECE, nb = n / 8 * 8;
        const float *kp = kv_read(k, off + i0, n, buf), *qp = q + i0;
        for (int64_t i = 0; i < nb; i += 8)
            for (int l = 0; l < 8; l++)
                lane[l] = fmaf(qp[i + l], kp[i + l], lane[l]);
        for (int64_t i = nb; i < n; i++)
            lane[i - nb] = fmaf(qp[i], kp[i], lane[i - nb]);
    }
    for (int w = 4; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            lane[l] += lane[l + w];
    return lane[0];
}

/* o += a * (head g of v at position c), one fmaf per element. */
static void axpy(const krt_kv *v, float *o, float a, int64_t g, int64_t c)
{
    float buf[PIECE];
    int64_t off = kv_at(v, g, c);
    for (int64_t i0 = 0; i0 < v->head_dim; i0 += PIECE) {
        int64_t n = v->head_dim - i0 < PIECE ? v->head_dim - i0 : PIECE;
        const float *vp = kv_read(v, off + i0, n, buf);
        for (int64_t i = 0; i < n; i++)
            o[i0 + i] = fmaf(a, vp[i], o[i0 + i]);
    }
}

static void attention_head_ref(float *oh, const float *qh, const krt_kv *k, const krt_kv *v,
                               int64_t g, float scale, int64_t n)
{
    float sc[KRT_ATTN_CHUNK], max = -INFINITY, sum = 0.0f;
    for (int64_t i = 0; i < v->head_dim; i++)
        oh[i] = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += KRT_ATTN_CHUNK) {
        int64_t cn = n - c0 < KRT_ATTN_CHUNK ? n - c0 : KRT_ATTN_CHUNK;
        float cmax = -INFINITY;
        for (int64_t j = 0; j < cn; j++) {
            sc[j] = dot_lanes(k, qh, g, c0 + j) * scale;
            cmax = sc[j] > cmax ? sc[j] : cmax;
        }
        if (cmax > max) {      /* a larger max: what was summed shrinks by e^(old - new) */
            float r = krt_expf(max - cmax);
            sum *= r;
            for (int64_t i = 0; i < v->head_dim; i++)
                oh[i] *= r;
            max = cmax;
        }
        for (int64_t j = 0; j < cn; j++) {
            sc[j] = krt_expf(sc[j] - max);
            sum += sc[j];
        }
        for (int64_t j = 0; j < cn; j++)
            axpy(v, oh, sc[j], g, c0 + j);
    }
    for (int64_t i = 0; i < v->head_dim; i++)
        oh[i] /= sum;
}

void attention_group_ref(const attn_query *qs, int nq, const krt_kv *k, const krt_kv *v,
                         int64_t g, float scale)
{
    for (int a = 0; a < nq; a++)
        attention_head_ref(qs[a].o, qs[a].q, k, v, g, scale, qs[a].n);
}

void krt_attention(float *o, const float *q, int64_t rows, krt_kv k, krt_kv v, int64_t heads,
                   float scale, int32_t pos0, int sh, int nsh)
{
    int64_t group = heads / k.kv_heads, p0, p1;
    krt_pair_share(rows, heads, sh, nsh, &p0, &p1);
    if (p1 <= p0)
        return;
    void (*run)(const attn_query *, int, const krt_kv *, const krt_kv *, int64_t, float) =
        attention_group_ref;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (krt_kernel_path >= KRT_PATH_AVX2)   /* AVX-512 has AVX2: the lanes are 8 anyway */
        run = attention_group_avx2;
#endif
    /* this share's pairs (token t, head h) in groups on one kv head: the heads of a GQA
     * group at a token, then the next tokens (a block's queries of one head) */
    int64_t tstep = group >= ATTN_GROUP ? 1 : ATTN_GROUP / group;
    int64_t ta = p0 / heads, tz = (p1 - 1) / heads + 1;
    for (int64_t tb = ta; tb < tz; tb += tstep)
        for (int64_t g = 0; g < k.kv_heads; g++) {
            attn_query qs[ATTN_GROUP];
            int nq = 0;
            for (int64_t t = tb; t < tb + tstep && t < tz; t++)
                for (int64_t h = g * group; h < (g + 1) * group; h++) {
                    int64_t p = t * heads + h;
                    if (p < p0 || p >= p1)
                        continue;
                    qs[nq++] = (attn_query){o + p * v.head_dim, q + p * k.head_dim,
                                            (int64_t)pos0 + t + 1};
                    if (nq == ATTN_GROUP) {
                        run(qs, nq, &k, &v, g, scale);
                        nq = 0;
                    }
                }
            if (nq > 0)
                run(qs, nq, &k, &v, g, scale);
        }
}
