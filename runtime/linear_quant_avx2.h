/* linear_quant_avx2.h - the activation quantizer (kernels.h: krt_quant_q8) with AVX2, for
 * the instruction sets that have it (linear_avx2.c, linear_avx512.c): lin_quant_blocks'
 * operations lane by lane, so the same bits (vroundps rounds half to even as rintf does;
 * max_ps / min_ps pick their second operand on NaN, as its clamps do).
 */
#ifndef KILN_LINEAR_QUANT_AVX2_H
#define KILN_LINEAR_QUANT_AVX2_H

#include <immintrin.h>

#include "linear_internal.h"

static inline void quant_q8_avx2(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256 hi = _mm256_set1_ps(127.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            __m256 a = _mm256_andnot_ps(sign, v[k]);
            m = _mm256_max_ps(a, m);            /* a > m ? a : m */
        }
        float lane[8], amax = 0.0f;
        _mm256_storeu_ps(lane, m);
        for (int l = 0; l < 8; l++)
            amax = lane[l] > amax ? lane[l] : amax;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m128 d = _mm_set_ss(amax / 127.0f);
        dq[b] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT)));
        __m256 idv = _mm256_set1_ps(id);
        __m256i iq[4], sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], idv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            iq[k] = _mm256_cvtps_epi32(r);
            sum = _mm256_add_epi32(sum, iq[k]);
        }
        /* 32 int32 to 32 int8 in order: packs work within 128-bit lanes, a permute fixes it */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iq[0], iq[1]),
                                       _mm256_packs_epi32(iq[2], iq[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)(q + b * 32), p);
        int32_t s[8];
        _mm256_storeu_si256((__m256i *)(void *)s, sum);
        sq[b] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    }
}

#endif
