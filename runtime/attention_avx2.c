/* attention_avx2.c - one query head of the fused attention (attention_internal.h) with AVX2,
 * FMA and F16C: the reference's sums (attention.c) with 8-lane vectors, the same bits.
 * Compiled with the AVX2 flags (mk/targets.ninja); called only when the CPU has them.
 */
#include "attention_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kiln_blob.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* 8 values of a cache row at element offset e, as f32 (f16 and bf16 widened exactly). */
static inline __m256 load8(const krt_kv *kv, int64_t e)
{
    if (kv->dtype == KBLOB_F32)
        return _mm256_loadu_ps((const float *)kv->data + e);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)kv->data + e));
    if (kv->dtype == KBLOB_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float load1(const krt_kv *kv, int64_t e)
{
    if (kv->dtype == KBLOB_F32)
        return ((const float *)kv->data)[e];
    uint16_t h = ((const uint16_t *)kv->data)[e];
    return kv->dtype == KBLOB_F16 ? kblob_f16_to_f32(h) : kblob_bf16_to_f32(h);
}

static inline float dot_lanes(const krt_kv *k, const float *q, int64_t g, int64_t c)
{
    int64_t off = kv_at(k, g, c), n = k->head_dim, nb = n / 8 * 8;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, off + i), acc);
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    for (int64_t i = nb; i < n; i++)
        lane[i - nb] = fmaf(q[i], load1(k, off + i), lane[i - nb]);
    for (int w = 4; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            lane[l] += lane[l + w];
    return lane[0];
}

/* o[i] = fma(a, v[i], o[i]) for i from i0 to the head dim. */
static inline void axpy_from(const krt_kv *v, float *o, float a, int64_t g, int64_t c, int64_t i0)
{
    int64_t off = kv_at(v, g, c), n = v->head_dim, i = i0;
    __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_fmadd_ps(av, load8(v, off + i), _mm256_loadu_ps(o + i)));
    for (; i < n; i++)
        o[i] = fmaf(a, load1(v, off + i), o[i]);
}

/* krt_expf (kernels.h) on 8 lanes: the same float operations, so the same bits. */
static inline __m256 expf8(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.7f), lo = _mm256_set1_ps(-87.0f);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_andnot_ps(nan, x);                           /* NaN: 0 */
    xc = _mm256_blendv_ps(xc, hi, _mm256_cmp_ps(xc, hi, _CMP_GT_OQ));
    xc = _mm256_blendv_ps(xc, lo, _mm256_cmp_ps(xc, lo, _CMP_LT_OQ));
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                           magic), magic);
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f))),
                             _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
                             _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_add_epi32(_mm256_castps_si256(y),
                                    _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23));
    y = _mm256_castsi256_ps(bits);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, nan);
}

/* The pairwise sums (lanes 4 apart, then 2, then 1) of two 8-lane accumulators, at once:
 * lane 0 of the result is a's, lane 4 b's. */
static inline __m256 reduce2(__m256 a, __m256 b)
{
    __m256 t = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    t = _mm256_add_ps(t, _mm256_permute_ps(t, 0xee));       /* lanes 0, 1 += lanes 2, 3 */
    return _mm256_add_ps(t, _mm256_movehdup_ps(t));          /* lane 0 += lane 1 */
}

#define UNROLL _Pragma("GCC unroll 8")

/* Scores of 8 positions c .. c+7 (f32 cache, head dim a multiple of 8): dot_lanes each. */
static inline void dots8_f32(float *sc, const krt_kv *k, const float *q, int64_t g, int64_t c,
                             float scale)
{
    const float *kp[8];
    __m256 acc[8];
    UNROLL
    for (int p = 0; p < 8; p++) {
        kp[p] = (const float *)k->data + kv_at(k, g, c + p);
        acc[p] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < k->head_dim; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        UNROLL
        for (int p = 0; p < 8; p++)
            acc[p] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[p] + i), acc[p]);
    }
    float r[32];
    UNROLL
    for (int p = 0; p < 8; p += 2)
        _mm256_storeu_ps(r + 4 * p, reduce2(acc[p], acc[p + 1]));
    UNROLL
    for (int p = 0; p < 8; p++)
        sc[p] = r[4 * p] * scale;      /* lane 0 (p even) or 4 (p odd) of pair p / 2 */
}

/* The largest of sc[0 .. n-1], NaNs skipped (max_ps gives its second operand when the
 * first is NaN): what the reference's left-to-right `>` finds. */
static inline float chunk_max(const float *sc, int64_t n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        m = _mm256_max_ps(_mm256_loadu_ps(sc + j), m);
    float lane[8], cmax = -INFINITY;
    _mm256_storeu_ps(lane, m);
    for (int l = 0; l < 8; l++)
        cmax = lane[l] > cmax ? lane[l] : cmax;
    for (; j < n; j++)
        cmax = sc[j] > cmax ? sc[j] : cmax;
    return cmax;
}

/* The scores of one query over positions c0 .. c0+cn-1, scaled. */
static inline void chunk_scores(float *sc, const krt_kv *k, const float *q, int64_t g,
                                int64_t c0, int64_t cn, float scale)
{
    int64_t j = 0;
    if (k->dtype == KBLOB_F32 && k->head_dim % 8 == 0)
        for (; j + 8 <= cn; j += 8)
            dots8_f32(sc + j, k, q, g, c0 + j, scale);
    for (; j < cn; j++)
        sc[j] = dot_lanes(k, q, g, c0 + j) * scale;
}

/* oh += sum over the chunk's positions j of p[j] v[c0 + j], each element in position order. */
static inline void chunk_apply(float *oh, const float *p, const krt_kv *v, int64_t g,
                               int64_t c0, int64_t cn)
{
    int64_t i0 = 0, dv = v->head_dim;
    if (v->dtype == KBLOB_F32)     /* 64 values of O at a time in registers */
        for (; i0 + 64 <= dv; i0 += 64) {
            __m256 o[8];
            UNROLL
            for (int l = 0; l < 8; l++)
                o[l] = _mm256_loadu_ps(oh + i0 + 8 * l);
            for (int64_t j = 0; j < cn; j++) {
                const float *vp = (const float *)v->data + kv_at(v, g, c0 + j) + i0;
                __m256 pj = _mm256_set1_ps(p[j]);
                UNROLL
                for (int l = 0; l < 8; l++)
                    o[l] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vp + 8 * l), o[l]);
            }
            UNROLL
            for (int l = 0; l < 8; l++)
                _mm256_storeu_ps(oh + i0 + 8 * l, o[l]);
        }
    if (i0 < dv)               /* the rest of the values (and f16 / bf16 caches) */
        for (int64_t j = 0; j < cn; j++)
            axpy_from(v, oh, p[j], g, c0 + j, i0);
}

void attention_group_avx2(const attn_query *qs, int nq, const krt_kv *k, const krt_kv *v,
                          int64_t g, float scale)
{
    /* row ATTN_GROUP: zeros, read in place of a query that has no positions left */
    float sc[ATTN_GROUP + 1][KRT_ATTN_CHUNK], max[ATTN_GROUP + 1], sum[ATTN_GROUP + 1];
    int64_t cn[ATTN_GROUP + 1], nmax = 0;
    memset(sc[ATTN_GROUP], 0, sizeof sc[ATTN_GROUP]);
    for (int a = 0; a < nq; a++) {
        max[a] = -INFINITY, sum[a] = 0.0f;
        for (int64_t i = 0; i < v->head_dim; i++)
            qs[a].o[i] = 0.0f;
        nmax = qs[a].n > nmax ? qs[a].n : nmax;
    }
    for (int64_t c0 = 0; c0 < nmax; c0 += KRT_ATTN_CHUNK) {
        int64_t common = KRT_ATTN_CHUNK;   /* positions every query of the group has here */
        for (int a = 0; a < nq; a++) {
            int64_t left = qs[a].n - c0;
            cn[a] = left <= 0 ? 0 : left < KRT_ATTN_CHUNK ? left : KRT_ATTN_CHUNK;
            common = cn[a] < common ? cn[a] : common;
            if (cn[a] == 0)
                continue;
            chunk_scores(sc[a], k, qs[a].q, g, c0, cn[a], scale);
            float cmax = chunk_max(sc[a], cn[a]);
            if (cmax > max[a]) {   /* a larger max: what was summed shrinks by e^(old - new) */
                float r = krt_expf(max[a] - cmax);
                sum[a] *= r;
                for (int64_t i = 0; i < v->head_dim; i++)
                    qs[a].o[i] *= r;
                max[a] = cmax;
            }
            __m256 mv = _mm256_set1_ps(max[a]);
            int64_t j = 0;
            for (; j + 8 <= cn[a]; j += 8)
                _mm256_storeu_ps(sc[a] + j, expf8(_mm256_sub_ps(_mm256_loadu_ps(sc[a] + j), mv)));
            for (; j < cn[a]; j++)
                sc[a][j] = krt_expf(sc[a][j] - max[a]);
        }
        /* the sums, each in position order: the group's chains side by side (a chain
         * alone waits on its adds), then each query's own positions past the common ones */
        const float *r[ATTN_GROUP];
        float s[ATTN_GROUP];
        for (int a = 0; a < ATTN_GROUP; a++) {
            r[a] = a < nq ? sc[a] : sc[ATTN_GROUP];
            s[a] = a < nq ? sum[a] : 0.0f;
        }
        for (int64_t j = 0; j < common; j++) {
            UNROLL
            for (int a = 0; a < ATTN_GROUP; a++)
                s[a] += r[a][j];
        }
        for (int a = 0; a < nq; a++) {
            for (int64_t j = common; j < cn[a]; j++)
                s[a] += sc[a][j];
            sum[a] = s[a];
            if (cn[a] > 0)
                chunk_apply(qs[a].o, sc[a], v, g, c0, cn[a]);
        }
    }
    for (int a = 0; a < nq; a++)
        for (int64_t i = 0; i < v->head_dim; i++)
            qs[a].o[i] /= sum[a];
}
#endif
