/* linear_emu.c - runtime/linear_simd.h instantiated a third time, with 16 lanes emulated by
 * pairs of AVX2 registers and vpdpbusd emulated exactly: the code the AVX-512 kernels run,
 * checked on a machine without AVX-512 (tests/unit/linear_test.c). Compiled with the AVX2
 * flags; only the operations below differ from linear_avx512.c, each a plain lane-by-lane
 * equivalent of its AVX-512 instruction.
 */
#include "../../runtime/linear_internal.h"

#ifdef KRT_HAVE_SIMD
#include <immintrin.h>

#define KT(name) name##_emu
#define VW 16
#define KT_NT 12
#define KT_NTQ 8
#define KT_Q8_CORR 1

typedef struct { __m256 lo, hi; } vf;
typedef struct { __m256i lo, hi; } vi;

static inline vf vf2(__m256 a, __m256 b) { vf r = {a, b}; return r; }
static inline vi vi2(__m256i a, __m256i b) { vi r = {a, b}; return r; }

/* vpdpbusd on 8 lanes: s + the sum of 4 products of unsigned bytes of a by signed bytes of
 * w per 32-bit lane, exact (bytes widened to 16 bits: a product is at most 255 x 128) */
static inline __m256i dpbusd8(__m256i s, __m256i a, __m256i w)
{
    __m256i m = _mm256_set1_epi16(0xff);
    __m256i ae = _mm256_and_si256(a, m), ao = _mm256_srli_epi16(a, 8);
    __m256i we = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), wo = _mm256_srai_epi16(w, 8);
    return _mm256_add_epi32(s, _mm256_add_epi32(_mm256_madd_epi16(ae, we),
                                                _mm256_madd_epi16(ao, wo)));
}
static inline vi dpbusd16(vi s, vi a, vi w)
{
    return vi2(dpbusd8(s.lo, a.lo, w.lo), dpbusd8(s.hi, a.hi, w.hi));
}

#define VF_ZERO() vf2(_mm256_setzero_ps(), _mm256_setzero_ps())
#define VF_LOADU(p) vf2(_mm256_loadu_ps(p), _mm256_loadu_ps((p) + 8))
#define VF_STOREU(p, v) (_mm256_storeu_ps(p, (v).lo), _mm256_storeu_ps((p) + 8, (v).hi))
#define VF_SET1(f) vf2(_mm256_set1_ps(f), _mm256_set1_ps(f))
#define VF_FMA(a, b, c) vf2(_mm256_fmadd_ps((a).lo, (b).lo, (c).lo), \
                            _mm256_fmadd_ps((a).hi, (b).hi, (c).hi))
#define VF_ADD(a, b) vf2(_mm256_add_ps((a).lo, (b).lo), _mm256_add_ps((a).hi, (b).hi))
#define VF_MUL(a, b) vf2(_mm256_mul_ps((a).lo, (b).lo), _mm256_mul_ps((a).hi, (b).hi))
#define VF_F16(p) vf2(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p))), \
                      _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p) + 1)))
static inline __m256 bf16_8(const void *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
#define VF_BF16(p) vf2(bf16_8(p), bf16_8((const __m128i *)(const void *)(p) + 1))
#define VF_FROM_I32(v) vf2(_mm256_cvtepi32_ps((v).lo), _mm256_cvtepi32_ps((v).hi))
#define VI_ZERO() vi2(_mm256_setzero_si256(), _mm256_setzero_si256())
#define VI_LOADU(p) vi2(_mm256_loadu_si256((const __m256i *)(const void *)(p)), \
                        _mm256_loadu_si256((const __m256i *)(const void *)(p) + 1))
#define VI_ADD(a, b) vi2(_mm256_add_epi32((a).lo, (b).lo), _mm256_add_epi32((a).hi, (b).hi))
#define VI_SUB(a, b) vi2(_mm256_sub_epi32((a).lo, (b).lo), _mm256_sub_epi32((a).hi, (b).hi))
#define VI_SET1(i) vi2(_mm256_set1_epi32(i), _mm256_set1_epi32(i))
#define VI_BYTE_S(v, c) vi2(_mm256_srai_epi32(_mm256_slli_epi32((v).lo, 24 - 8 * (c)), 24), \
                            _mm256_srai_epi32(_mm256_slli_epi32((v).hi, 24 - 8 * (c)), 24))
#define VI_NIB(v, c, hi_) vi2( \
    _mm256_and_si256(_mm256_srli_epi32((v).lo, 8 * (c) + 4 * (hi_)), _mm256_set1_epi32(15)), \
    _mm256_and_si256(_mm256_srli_epi32((v).hi, 8 * (c) + 4 * (hi_)), _mm256_set1_epi32(15)))
#define VI_NIB_LO(v) vi2(_mm256_and_si256((v).lo, _mm256_set1_epi8(15)), \
                         _mm256_and_si256((v).hi, _mm256_set1_epi8(15)))
#define VI_NIB_HI(v) vi2(_mm256_and_si256(_mm256_srli_epi16((v).lo, 4), _mm256_set1_epi8(15)), \
                         _mm256_and_si256(_mm256_srli_epi16((v).hi, 4), _mm256_set1_epi8(15)))
#define VI_Q8_PREP(w) (w)
#define VI_Q8_CORR(c, w) dpbusd16(c, VI_SET1((int32_t)0x80808080u), w)
#define VI_Q8_DOT(s, wp, w, x) dpbusd16(s, vi2(_mm256_xor_si256((x).lo, \
    _mm256_set1_epi8((char)0x80)), _mm256_xor_si256((x).hi, _mm256_set1_epi8((char)0x80))), w)
#define VI_Q4_DOT(s, nib, x) dpbusd16(s, nib, x)

#include "../../runtime/linear_simd.h"
#endif
