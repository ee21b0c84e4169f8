/* linear_avx512.c - the matrix products (linear_simd.h) for AVX-512 (F, BW, VL) with VNNI:
 * 16 lanes, a panel of 16 rows in one register. Compiled with the AVX-512 flags
 * (mk/targets.ninja) and called only when the CPU has them (cpu.h: KRT_PATH_AVX512).
 *
 * 8-bit products with vpdpbusd (unsigned bytes times signed bytes, 4 to a lane, exact): a
 * q8_0 weight is the signed operand and the activation goes in as x + 128 (unsigned), so
 * 128 x the weights' sum (the same instruction on 0x80 bytes, once per weight vector, shared
 * by every token) is taken back; q4_0 nibbles are the unsigned operand as they are.
 */
#include "linear_internal.h"

#ifdef KRT_HAVE_SIMD
#include <immintrin.h>

#include "linear_quant_avx2.h"

#define KT(name) name##_avx512
#define VW 16
#define KT_NT 12         /* GEMM tile: 12 tokens x 16 rows */
#define KT_NTQ 8         /* 8-bit tile: 8 tokens */
#define KT_QUANT quant_q8_avx2
#define KT_Q8_CORR 1
typedef __m512 vf;
typedef __m512i vi;

#define VF_ZERO() _mm512_setzero_ps()
#define VF_LOADU(p) _mm512_loadu_ps(p)
#define VF_STOREU(p, v) _mm512_storeu_ps(p, v)
#define VF_SET1(f) _mm512_set1_ps(f)
#define VF_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VF_ADD(a, b) _mm512_add_ps(a, b)
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define VF_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32( \
    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define VF_FROM_I32(v) _mm512_cvtepi32_ps(v)
#define VI_ZERO() _mm512_setzero_si512()
#define VI_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define VI_ADD(a, b) _mm512_add_epi32(a, b)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_SET1(i) _mm512_set1_epi32(i)
#define VI_BYTE_S(v, c) _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * (c)), 24)
#define VI_NIB(v, c, hi) _mm512_and_si512(_mm512_srli_epi32(v, 8 * (c) + 4 * (hi)), \
                                          _mm512_set1_epi32(15))
#define VI_NIB_LO(v) _mm512_and_si512(v, _mm512_set1_epi8(15))
#define VI_NIB_HI(v) _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15))
#define VI_Q8_PREP(w) (w)
#define VI_Q8_CORR(c, w) _mm512_dpbusd_epi32(c, _mm512_set1_epi8((char)0x80), w)
#define VI_Q8_DOT(s, wp, w, x) _mm512_dpbusd_epi32(s, _mm512_xor_si512(x, \
    _mm512_set1_epi8((char)0x80)), w)
#define VI_Q4_DOT(s, nib, x) _mm512_dpbusd_epi32(s, nib, x)

#include "linear_simd.h"
#endif
