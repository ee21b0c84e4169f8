/* linear_avx2.c - the matrix products (linear_simd.h) for AVX2 + FMA + F16C: 8 lanes, a
 * panel of 16 rows in two registers. Compiled with -mavx2 -mfma -mf16c (mk/targets.ninja)
 * and called only when the CPU has all three (cpu.h: KRT_PATH_AVX2).
 *
 * 8-bit products without VNNI: vpmaddubsw multiplies unsigned by signed bytes, so a q8_0
 * weight goes in as |w| against the activation with w's sign (vpsignb); every pair sum stays
 * below 2^15 (|w| <= 128, |x| <= 127), so vpmaddubsw never saturates and the sums are exact.
 * q4_0 nibbles are unsigned already.
 */
#include "linear_internal.h"

#ifdef KRT_HAVE_SIMD
#include <immintrin.h>

#include "linear_quant_avx2.h"

#define KT(name) name##_avx2
#define VW 8
#define KT_NT 6          /* GEMM tile: 6 tokens x 16 rows = 12 accumulators */
#define KT_NTQ 2         /* 8-bit tile: 2 tokens (sums and accumulators: 8 registers) */
#define KT_QUANT quant_q8_avx2
#define KT_Q8_CORR 0
typedef __m256 vf;
typedef __m256i vi;

#define VF_ZERO() _mm256_setzero_ps()
#define VF_LOADU(p) _mm256_loadu_ps(p)
#define VF_STOREU(p, v) _mm256_storeu_ps(p, v)
#define VF_SET1(f) _mm256_set1_ps(f)
#define VF_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VF_ADD(a, b) _mm256_add_ps(a, b)
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define VF_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define VF_FROM_I32(v) _mm256_cvtepi32_ps(v)
#define VI_ZERO() _mm256_setzero_si256()
#define VI_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VI_ADD(a, b) _mm256_add_epi32(a, b)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_SET1(i) _mm256_set1_epi32(i)
#define VI_BYTE_S(v, c) _mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * (c)), 24)
#define VI_NIB(v, c, hi) _mm256_and_si256(_mm256_srli_epi32(v, 8 * (c) + 4 * (hi)), \
                                          _mm256_set1_epi32(15))
#define VI_NIB_LO(v) _mm256_and_si256(v, _mm256_set1_epi8(15))
#define VI_NIB_HI(v) _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15))
#define VI_Q8_PREP(w) _mm256_sign_epi8(w, w)
#define VI_Q8_CORR(c, w) (c)
#define VI_Q8_DOT(s, wp, w, x) _mm256_add_epi32(s, _mm256_madd_epi16( \
    _mm256_maddubs_epi16(wp, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1)))
#define VI_Q4_DOT(s, nib, x) _mm256_add_epi32(s, _mm256_madd_epi16( \
    _mm256_maddubs_epi16(nib, x), _mm256_set1_epi16(1)))

#include "linear_simd.h"
#endif
