/* kernels.c - the compute kernels of kernels.h, in portable C11, and AVX2 variants of the
 * linears chosen at program start (cpu.h).
 *
 * The portable 16-lane loops have a fixed trip count so the C compiler turns them into
 * vector code at the baseline ISA; the AVX2 functions alone are compiled for AVX2 (a target
 * attribute) and compute the same sums in the same order. Every sum keeps the order documented in kernels.h (the
 * order of the single-token kernels before blocks of tokens), so the results do not depend
 * on the block size, the thread share or the machine.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "cpu.h"
#include "kiln_blob.h"

/* A fused multiply-add would round differently from the old kernels; gcc in ISO C mode
 * (-std=c11) does not contract, clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- linear ---- */

/* Unrolling the 16 lanes completely lets the compiler keep them in vector registers instead
 * of a stack array it reloads every step. */
#if defined(__GNUC__) || defined(__clang__)
#define KRT_UNROLL _Pragma("GCC unroll 16")
#else
#define KRT_UNROLL
#endif

#define LIN_R 4          /* weight rows per block: each is read once per block of tokens */
#define LIN_CHUNK 1024   /* columns of a widened f16/bf16 row held at once (LIN_R x 4 KB) */
#define LIN_TB 16        /* tokens per pass over a row wider than one chunk */

/* lane[r][k] += w[r][j] * x[j] over columns j < n of one chunk: columns below nb (a multiple
 * of KRT_LANES) go to lane j mod KRT_LANES, the tail (j >= nb, fewer than KRT_LANES) to lane
 * j - nb. The chunk starts at a multiple of KRT_LANES, so the lanes are those of the row. */
static void lin_acc(float (*lane)[KRT_LANES], const float *const *w, int rr, const float *x,
                    int64_t n, int64_t nb)
{
    for (int r = 0; r < rr; r++) {
        const float *wr = w[r];
        float l[KRT_LANES];      /* a local copy: no aliasing with w or x, so it stays in registers */
        memcpy(l, lane[r], sizeof l);
        for (int64_t j = 0; j < nb; j += KRT_LANES) {
            KRT_UNROLL
            for (int k = 0; k < KRT_LANES; k++)
                l[k] += wr[j + k] * x[j + k];
        }
        for (int64_t j = nb; j < n; j++)
            l[j - nb] += wr[j] * x[j];
        memcpy(lane[r], l, sizeof l);
    }
}

/* lin_acc for two tokens at once (x0, x1 with lanes a and b): each weight load serves both,
 * and 2 x 16 lanes still fit the baseline's 16 vector registers. Same order per token. */
static void lin_acc2(float (*a)[KRT_LANES], float (*b)[KRT_LANES], const float *const *w, int rr,
                     const float *x0, const float *x1, int64_t n, int64_t nb)
{
    for (int r = 0; r < rr; r++) {
        const float *wr = w[r];
        float l0[KRT_LANES], l1[KRT_LANES];
        memcpy(l0, a[r], sizeof l0);
        memcpy(l1, b[r], sizeof l1);
        for (int64_t j = 0; j < nb; j += KRT_LANES) {
            KRT_UNROLL
            for (int k = 0; k < KRT_LANES; k++) {
                float v = wr[j + k];
                l0[k] += v * x0[j + k];
                l1[k] += v * x1[j + k];
            }
        }
        for (int64_t j = nb; j < n; j++) {
            l0[j - nb] += wr[j] * x0[j];
            l1[j - nb] += wr[j] * x1[j];
        }
        memcpy(a[r], l0, sizeof l0);
        memcpy(b[r], l1, sizeof l1);
    }
}

/* y[r] = the pairwise sum of lane[r] (width 8, 4, 2, 1), for r < rr; with an epilogue,
 * res[r] + that sum (one float add, as a separate add step would do it; res may be y). */
static void lin_finish(float *y, float (*lane)[KRT_LANES], int rr, const float *res)
{
    for (int r = 0; r < rr; r++) {
        float *l = lane[r];
        for (int w = KRT_LANES / 2; w > 0; w /= 2)
            for (int k = 0; k < w; k++)
                l[k] += l[k + w];
        y[r] = res ? res[r] + l[0] : l[0];
    }
}

/* Row t of the epilogue's operand at column i, or NULL without one. */
static const float *lin_res(const float *res, int64_t ldr, int64_t t, int64_t i)
{
    return res ? res + t * ldr + i : NULL;
}

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

/* ---- linear, AVX2 ----
 *
 * The same sums as lin_acc / lin_acc2 / krt_widen_*: lanes 0..7 of a row in one __m256 and
 * 8..15 in another, a separate multiply and add per lane per step (no FMA: that rounds once
 * instead of twice), the tail added in scalar code on the stored lanes, the final pairwise
 * reduction left to lin_finish. So the results are the portable ones bit for bit. Only
 * compiled for x86 with gcc/clang, and only called when krt_kernel_path says the CPU has it.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KRT_HAVE_AVX2 1
#include <immintrin.h>
#define KRT_AVX2 __attribute__((target("avx2,f16c")))

/* the scalar tail of lin_acc, on lanes already stored */
static inline void lin_tail(float *l, const float *wr, const float *x, int64_t n, int64_t nb)
{
    for (int64_t j = nb; j < n; j++)
        l[j - nb] += wr[j] * x[j];
}

/* lin_acc for one row. */
KRT_AVX2 static void lin_acc_row_avx2(float *lane, const float *wr, const float *x, int64_t n,
                                      int64_t nb)
{
    __m256 a = _mm256_loadu_ps(lane), b = _mm256_loadu_ps(lane + 8);
    for (int64_t j = 0; j < nb; j += KRT_LANES) {
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(wr + j), _mm256_loadu_ps(x + j)));
        b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_loadu_ps(wr + j + 8), _mm256_loadu_ps(x + j + 8)));
    }
    _mm256_storeu_ps(lane, a);
    _mm256_storeu_ps(lane + 8, b);
    lin_tail(lane, wr, x, n, nb);
}

/* lin_acc for four rows at once: each x load serves all four. */
KRT_AVX2 static void lin_acc4_avx2(float (*lane)[KRT_LANES], const float *const *w,
                                   const float *x, int64_t n, int64_t nb)
{
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    __m256 a0 = _mm256_loadu_ps(lane[0]), b0 = _mm256_loadu_ps(lane[0] + 8);
    __m256 a1 = _mm256_loadu_ps(lane[1]), b1 = _mm256_loadu_ps(lane[1] + 8);
    __m256 a2 = _mm256_loadu_ps(lane[2]), b2 = _mm256_loadu_ps(lane[2] + 8);
    __m256 a3 = _mm256_loadu_ps(lane[3]), b3 = _mm256_loadu_ps(lane[3] + 8);
    for (int64_t j = 0; j < nb; j += KRT_LANES) {
        __m256 xa = _mm256_loadu_ps(x + j), xb = _mm256_loadu_ps(x + j + 8);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(w0 + j), xa));
        b0 = _mm256_add_ps(b0, _mm256_mul_ps(_mm256_loadu_ps(w0 + j + 8), xb));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(w1 + j), xa));
        b1 = _mm256_add_ps(b1, _mm256_mul_ps(_mm256_loadu_ps(w1 + j + 8), xb));
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_loadu_ps(w2 + j), xa));
        b2 = _mm256_add_ps(b2, _mm256_mul_ps(_mm256_loadu_ps(w2 + j + 8), xb));
        a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_loadu_ps(w3 + j), xa));
        b3 = _mm256_add_ps(b3, _mm256_mul_ps(_mm256_loadu_ps(w3 + j + 8), xb));
    }
    _mm256_storeu_ps(lane[0], a0), _mm256_storeu_ps(lane[0] + 8, b0);
    _mm256_storeu_ps(lane[1], a1), _mm256_storeu_ps(lane[1] + 8, b1);
    _mm256_storeu_ps(lane[2], a2), _mm256_storeu_ps(lane[2] + 8, b2);
    _mm256_storeu_ps(lane[3], a3), _mm256_storeu_ps(lane[3] + 8, b3);
    for (int r = 0; r < 4; r++)
        lin_tail(lane[r], w[r], x, n, nb);
}

static void lin_acc_avx2(float (*lane)[KRT_LANES], const float *const *w, int rr,
                         const float *x, int64_t n, int64_t nb)
{
    if (rr == 4) {
        lin_acc4_avx2(lane, w, x, n, nb);
        return;
    }
    for (int r = 0; r < rr; r++)
        lin_acc_row_avx2(lane[r], w[r], x, n, nb);
}

/* lin_acc2 for one row: two tokens share each weight load (a: x0's lanes, b: x1's). */
KRT_AVX2 static void lin_acc2_row_avx2(float *la, float *lb, const float *wr, const float *x0,
                                       const float *x1, int64_t n, int64_t nb)
{
    __m256 a0 = _mm256_loadu_ps(la), a1 = _mm256_loadu_ps(la + 8);
    __m256 b0 = _mm256_loadu_ps(lb), b1 = _mm256_loadu_ps(lb + 8);
    for (int64_t j = 0; j < nb; j += KRT_LANES) {
        __m256 v0 = _mm256_loadu_ps(wr + j), v1 = _mm256_loadu_ps(wr + j + 8);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(v0, _mm256_loadu_ps(x0 + j)));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(v1, _mm256_loadu_ps(x0 + j + 8)));
        b0 = _mm256_add_ps(b0, _mm256_mul_ps(v0, _mm256_loadu_ps(x1 + j)));
        b1 = _mm256_add_ps(b1, _mm256_mul_ps(v1, _mm256_loadu_ps(x1 + j + 8)));
    }
    _mm256_storeu_ps(la, a0), _mm256_storeu_ps(la + 8, a1);
    _mm256_storeu_ps(lb, b0), _mm256_storeu_ps(lb + 8, b1);
    lin_tail(la, wr, x0, n, nb);
    lin_tail(lb, wr, x1, n, nb);
}

/* lin_acc2 for two rows at once: 8 accumulators, each x load serves both rows. */
KRT_AVX2 static void lin_acc2_pair_avx2(float (*a)[KRT_LANES], float (*b)[KRT_LANES],
                                        const float *const *w, const float *x0,
                                        const float *x1, int64_t n, int64_t nb)
{
    const float *w0 = w[0], *w1 = w[1];
    __m256 p0 = _mm256_loadu_ps(a[0]), p1 = _mm256_loadu_ps(a[0] + 8);
    __m256 q0 = _mm256_loadu_ps(b[0]), q1 = _mm256_loadu_ps(b[0] + 8);
    __m256 r0 = _mm256_loadu_ps(a[1]), r1 = _mm256_loadu_ps(a[1] + 8);
    __m256 s0 = _mm256_loadu_ps(b[1]), s1 = _mm256_loadu_ps(b[1] + 8);
    for (int64_t j = 0; j < nb; j += KRT_LANES) {
        __m256 x00 = _mm256_loadu_ps(x0 + j), x01 = _mm256_loadu_ps(x0 + j + 8);
        __m256 x10 = _mm256_loadu_ps(x1 + j), x11 = _mm256_loadu_ps(x1 + j + 8);
        __m256 v0 = _mm256_loadu_ps(w0 + j), v1 = _mm256_loadu_ps(w0 + j + 8);
        p0 = _mm256_add_ps(p0, _mm256_mul_ps(v0, x00));
        p1 = _mm256_add_ps(p1, _mm256_mul_ps(v1, x01));
        q0 = _mm256_add_ps(q0, _mm256_mul_ps(v0, x10));
        q1 = _mm256_add_ps(q1, _mm256_mul_ps(v1, x11));
        v0 = _mm256_loadu_ps(w1 + j), v1 = _mm256_loadu_ps(w1 + j + 8);
        r0 = _mm256_add_ps(r0, _mm256_mul_ps(v0, x00));
        r1 = _mm256_add_ps(r1, _mm256_mul_ps(v1, x01));
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(v0, x10));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(v1, x11));
    }
    _mm256_storeu_ps(a[0], p0), _mm256_storeu_ps(a[0] + 8, p1);
    _mm256_storeu_ps(b[0], q0), _mm256_storeu_ps(b[0] + 8, q1);
    _mm256_storeu_ps(a[1], r0), _mm256_storeu_ps(a[1] + 8, r1);
    _mm256_storeu_ps(b[1], s0), _mm256_storeu_ps(b[1] + 8, s1);
    for (int r = 0; r < 2; r++) {
        lin_tail(a[r], w[r], x0, n, nb);
        lin_tail(b[r], w[r], x1, n, nb);
    }
}

static void lin_acc2_avx2(float (*a)[KRT_LANES], float (*b)[KRT_LANES], const float *const *w,
                          int rr, const float *x0, const float *x1, int64_t n, int64_t nb)
{
    int r = 0;
    for (; r + 1 < rr; r += 2)
        lin_acc2_pair_avx2(a + r, b + r, w + r, x0, x1, n, nb);
    if (r < rr)
        lin_acc2_row_avx2(a[r], b[r], w[r], x0, x1, n, nb);
}

/* krt_widen_f16 with the same branch-free integer/float steps as widen_f16, 8 at a time
 * (not vcvtph2ps: that quiets signalling NaNs, widen_f16 keeps them). */
KRT_AVX2 static void widen_f16_avx2(float *y, const uint16_t *h, int64_t n)
{
    const __m256i magn = _mm256_set1_epi32(0x7fff), sgn = _mm256_set1_epi32(0x8000);
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    const __m256 scale = _mm256_set1_ps(0x1p112f), big = _mm256_set1_ps(65536.0f);
    int64_t body = n - n % 8, j = 0;
    for (; j < body; j += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + j)));
        __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(v, magn), 13));
        f = _mm256_mul_ps(f, scale);
        __m256i u = _mm256_castps_si256(f);
        __m256i inf = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(f, big, _CMP_GE_OQ)), expo);
        u = _mm256_or_si256(_mm256_or_si256(u, inf), _mm256_slli_epi32(_mm256_and_si256(v, sgn), 16));
        _mm256_storeu_ps(y + j, _mm256_castsi256_ps(u));
    }
    for (; j < n; j++)
        y[j] = widen_f16(h[j]);
}

KRT_AVX2 static void widen_bf16_avx2(float *y, const uint16_t *h, int64_t n)
{
    int64_t body = n - n % 8, j = 0;
    for (; j < body; j += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + j)));
        _mm256_storeu_ps(y + j, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; j < n; j++) {
        uint32_t u = (uint32_t)h[j] << 16;
        memcpy(&y[j], &u, sizeof u);
    }
}
#endif

/* The kernel path's accumulators and widening (cpu.h): one branch per call. */
typedef void (*lin_acc_fn)(float (*)[KRT_LANES], const float *const *, int, const float *,
                           int64_t, int64_t);
typedef void (*lin_acc2_fn)(float (*)[KRT_LANES], float (*)[KRT_LANES], const float *const *,
                            int, const float *, const float *, int64_t, int64_t);

static void lin_widen(float *y, const uint16_t *h, int64_t n, uint32_t dt)
{
#ifdef KRT_HAVE_AVX2
    if (krt_kernel_path == KRT_PATH_AVX2) {
        if (dt == KBLOB_F16)
            widen_f16_avx2(y, h, n);
        else
            widen_bf16_avx2(y, h, n);
        return;
    }
#endif
    if (dt == KBLOB_F16)
        krt_widen_f16(y, h, n);
    else
        krt_widen_bf16(y, h, n);
}

/* Columns [c0, c1) of the rr weight rows at wb (ld bytes apart) as f32: f32 rows are used in
 * place, f16/bf16 are widened (exactly) into buf. */
static void lin_rows(const float **wr, float (*buf)[LIN_CHUNK], const char *wb, int64_t ld,
                     int rr, int64_t c0, int64_t c1, uint32_t dt)
{
    for (int r = 0; r < rr; r++) {
        const char *row = wb + r * ld;
        if (dt == KBLOB_F32) {
            wr[r] = (const float *)row + c0;
            continue;
        }
        const uint16_t *h = (const uint16_t *)row + c0;
        float *b = buf[r];
        lin_widen(b, h, c1 - c0, dt);
        wr[r] = b;
    }
}

static void linear(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                   int64_t out, int64_t in, int64_t i0, int64_t i1, uint32_t dt,
                   const float *res, int64_t ldr)
{
    int64_t body = in - in % KRT_LANES;
    int64_t chunk = dt == KBLOB_F32 ? in : LIN_CHUNK;
    float buf[LIN_R][LIN_CHUNK];
    const float *wr[LIN_R];
    lin_acc_fn acc = lin_acc;
    lin_acc2_fn acc2 = lin_acc2;
#ifdef KRT_HAVE_AVX2
    if (krt_kernel_path == KRT_PATH_AVX2)
        acc = lin_acc_avx2, acc2 = lin_acc2_avx2;
#endif
    for (int64_t i = i0; i < i1; i += LIN_R) {
        int rr = i1 - i < LIN_R ? (int)(i1 - i) : LIN_R;
        const char *wb = (const char *)w + i * ld;
        if (in <= chunk) {
            /* the whole block of rows at once (in cache, or widened once) for every token */
            lin_rows(wr, buf, wb, ld, rr, 0, in, dt);
            int64_t t = 0;
            for (; t + 1 < rows; t += 2) {
                float lane[2][LIN_R][KRT_LANES] = {{{0}}};
                acc2(lane[0], lane[1], wr, rr, x + t * in, x + (t + 1) * in, in, body);
                lin_finish(y + t * out + i, lane[0], rr, lin_res(res, ldr, t, i));
                lin_finish(y + (t + 1) * out + i, lane[1], rr, lin_res(res, ldr, t + 1, i));
            }
            if (t < rows) {
                float lane[LIN_R][KRT_LANES] = {{0}};
                acc(lane, wr, rr, x + t * in, in, body);
                lin_finish(y + t * out + i, lane, rr, lin_res(res, ldr, t, i));
            }
            continue;
        }
        /* a wide f16/bf16 row: widen it a chunk at a time, once per LIN_TB tokens, carrying
         * each token's lanes from chunk to chunk */
        for (int64_t t0 = 0; t0 < rows; t0 += LIN_TB) {
            int64_t tb = rows - t0 < LIN_TB ? rows - t0 : LIN_TB;
            float lane[LIN_TB][LIN_R][KRT_LANES];
            memset(lane, 0, sizeof lane);
            for (int64_t c0 = 0; c0 < in; c0 += chunk) {
                int64_t c1 = in - c0 < chunk ? in : c0 + chunk;
                int64_t nb = (body < c1 ? body : c1) - c0;
                lin_rows(wr, buf, wb, ld, rr, c0, c1, dt);
                const float *xc = x + t0 * in + c0;
                int64_t t = 0;
                for (; t + 1 < tb; t += 2)
                    acc2(lane[t], lane[t + 1], wr, rr, xc + t * in, xc + (t + 1) * in, c1 - c0, nb);
                if (t < tb)
                    acc(lane[t], wr, rr, xc + t * in, c1 - c0, nb);
            }
            for (int64_t t = 0; t < tb; t++)
                lin_finish(y + (t0 + t) * out + i, lane[t], rr, lin_res(res, ldr, t0 + t, i));
        }
    }
}

void krt_linear_f32(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                    int64_t out, int64_t in, int64_t i0, int64_t i1)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_F32, NULL, 0);
}

void krt_linear_f16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                    int64_t out, int64_t in, int64_t i0, int64_t i1)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_F16, NULL, 0);
}

void krt_linear_bf16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                     int64_t out, int64_t in, int64_t i0, int64_t i1)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_BF16, NULL, 0);
}

void krt_linear_res_f32(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                        int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                        int64_t ldr)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_F32, r, ldr);
}

void krt_linear_res_f16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                        int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                        int64_t ldr)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_F16, r, ldr);
}

void krt_linear_res_bf16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                         int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                         int64_t ldr)
{
    linear(y, x, rows, w, ld, out, in, i0, i1, KBLOB_BF16, r, ldr);
}

/* ---- weights read as f32 ---- */

/* y[j] = src[j] widened, j < n; a storage type without a widening here gives zeros. */
static void widen_row(float *y, const void *src, uint32_t dtype, int64_t n)
{
    const uint16_t *h = src;
    switch (dtype) {
    case KBLOB_F32:
        memcpy(y, src, (size_t)n * sizeof *y);
        break;
    case KBLOB_F16:
        krt_widen_f16(y, h, n);
        break;
    case KBLOB_BF16:
        krt_widen_bf16(y, h, n);
        break;
    default:
        memset(y, 0, (size_t)n * sizeof *y);
    }
}

void krt_embed(float *y, const int32_t *tok, int64_t rows, const void *table, uint32_t dtype,
               int64_t ld, int64_t vocab, int64_t d)
{
    for (int64_t t = 0; t < rows; t++) {
        if (tok[t] < 0 || tok[t] >= vocab)
            memset(y + t * d, 0, (size_t)d * sizeof *y);
        else
            widen_row(y + t * d, (const char *)table + tok[t] * ld, dtype, d);
    }
}

void krt_widen(float *y, const void *w, uint32_t dtype, int64_t rows, int64_t ld, int64_t n)
{
    for (int64_t r = 0; r < rows; r++)
        widen_row(y + r * n, (const char *)w + r * ld, dtype, n);
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

/* The element offset of head g at position c of a cache (kernels.h: krt_kv). */
static inline int64_t kv_at(const krt_kv *kv, int64_t g, int64_t c)
{
    return kv->head_major ? (g * kv->cap + c) * kv->head_dim
                          : (c * kv->kv_heads + g) * kv->head_dim;
}

/* The n values of a cache from element offset off, as f32: in place for an f32 cache,
 * else widened into buf. */
static inline const float *kv_read(const krt_kv *kv, int64_t off, int64_t n, float *buf)
{
    if (kv->dtype == KBLOB_F32)
        return (const float *)kv->data + off;
    const uint16_t *h = (const uint16_t *)kv->data + off;
    if (kv->dtype == KBLOB_F16)
        krt_widen_f16(buf, h, n);
    else
        krt_widen_bf16(buf, h, n);
    return buf;
}

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

/* The fused kernel's q . k: ATTN_LANES partial sums (lane j mod ATTN_LANES, the tail to
 * lanes 0 ..), added pairwise, so that it vectorizes; a fixed order all the same. */
#define ATTN_LANES 8
static inline float kv_dot_lanes(const krt_kv *kv, const float *restrict q, int64_t g,
                                 int64_t c)
{
    float buf[KV_PIECE], lane[ATTN_LANES] = {0};
    int64_t off = kv_at(kv, g, c);
    for (int64_t i0 = 0; i0 < kv->head_dim; i0 += KV_PIECE) {
        int64_t n = kv->head_dim - i0 < KV_PIECE ? kv->head_dim - i0 : KV_PIECE;
        const float *restrict k = kv_read(kv, off + i0, n, buf);
        const float *restrict qp = q + i0;
        int64_t nb = n / ATTN_LANES * ATTN_LANES;
        for (int64_t i = 0; i < nb; i += ATTN_LANES)
            KRT_UNROLL for (int l = 0; l < ATTN_LANES; l++)
                lane[l] += qp[i + l] * k[i + l];
        for (int64_t i = nb; i < n; i++)
            lane[i - nb] += qp[i] * k[i];
    }
    for (int w = ATTN_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            lane[l] += lane[l + w];
    return lane[0];
}

/* o[i] += a * (head g of the cache at position c)[i]; o is never the cache. */
static inline void kv_axpy(const krt_kv *kv, float *restrict o, float a, int64_t g, int64_t c)
{
    float buf[KV_PIECE];
    int64_t off = kv_at(kv, g, c);
    for (int64_t i0 = 0; i0 < kv->head_dim; i0 += KV_PIECE) {
        int64_t n = kv->head_dim - i0 < KV_PIECE ? kv->head_dim - i0 : KV_PIECE;
        const float *restrict v = kv_read(kv, off + i0, n, buf);
        float *restrict op = o + i0;
        int64_t nb = n / ATTN_LANES * ATTN_LANES;
        for (int64_t i = 0; i < nb; i += ATTN_LANES)   /* in blocks: vector code at -O2 */
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

void krt_attn_scores(float *s, const float *q, int64_t rows, krt_kv k, int64_t heads,
                     int32_t pos0)
{
    int64_t hd = k.head_dim, group = heads / k.kv_heads;
    for (int64_t t = 0; t < rows; t++) {
        int64_t n = (int64_t)pos0 + t + 1;
        for (int64_t h = 0; h < heads; h++) {
            const float *qh = q + (t * heads + h) * hd;
            float *sr = s + (t * heads + h) * k.cap;
            for (int64_t c = 0; c < n; c++)
                sr[c] = kv_dot(&k, qh, h / group, c);
        }
    }
}

void krt_attn_apply(float *o, const float *p, int64_t rows, krt_kv v, int64_t heads,
                    int32_t pos0)
{
    int64_t hd = v.head_dim, group = heads / v.kv_heads;
    for (int64_t t = 0; t < rows; t++) {
        int64_t n = (int64_t)pos0 + t + 1;
        for (int64_t h = 0; h < heads; h++) {
            float *oh = o + (t * heads + h) * hd;
            const float *ph = p + (t * heads + h) * v.cap;
            for (int64_t i = 0; i < hd; i++)
                oh[i] = 0.0f;
            for (int64_t c = 0; c < n; c++)
                kv_axpy(&v, oh, ph[c], h / group, c);
        }
    }
}

/* One query head over positions 0 .. n-1: oh = softmax(scale * qh . k) v, online. */
static void attention_head(float *oh, const float *qh, const krt_kv *k, const krt_kv *v,
                           int64_t g, float scale, int64_t n)
{
    float sc[KRT_ATTN_CHUNK], max = -INFINITY, sum = 0.0f;
    for (int64_t i = 0; i < v->head_dim; i++)
        oh[i] = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += KRT_ATTN_CHUNK) {
        int64_t cn = n - c0 < KRT_ATTN_CHUNK ? n - c0 : KRT_ATTN_CHUNK;
        float cmax = -INFINITY;
        for (int64_t j = 0; j < cn; j++) {
            sc[j] = kv_dot_lanes(k, qh, g, c0 + j) * scale;
            if (sc[j] > cmax)
                cmax = sc[j];
        }
        if (cmax > max) {      /* a larger max: what was summed shrinks by e^(old - new) */
            float r = expf(max - cmax);
            sum *= r;
            for (int64_t i = 0; i < v->head_dim; i++)
                oh[i] *= r;
            max = cmax;
        }
        for (int64_t j = 0; j < cn; j++) {   /* the exps first: apart, they overlap */
            sc[j] = expf(sc[j] - max);
            sum += sc[j];
        }
        for (int64_t j = 0; j < cn; j++)
            kv_axpy(v, oh, sc[j], g, c0 + j);
    }
    for (int64_t i = 0; i < v->head_dim; i++)
        oh[i] /= sum;
}

void krt_attention(float *o, const float *q, int64_t rows, krt_kv k, krt_kv v, int64_t heads,
                   float scale, int32_t pos0)
{
    int64_t group = heads / k.kv_heads;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t h = 0; h < heads; h++)
            attention_head(o + (t * heads + h) * v.head_dim, q + (t * heads + h) * k.head_dim,
                           &k, &v, h / group, scale, (int64_t)pos0 + t + 1);
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
        y[i] = expf(x[i] - max);
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
                        int64_t cap)
{
    for (int64_t t = 0; t < rows; t++)
        for (int64_t h = 0; h < heads; h++) {
            int64_t off = (t * heads + h) * cap;
            softmax_row(y + off, x + off, (int64_t)pos0 + t + 1);
        }
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
