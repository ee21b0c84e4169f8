/* linear_simd.h - the matrix products of krt_linear (kernels.h) in SIMD, written once over
 * a vector of VW floats and instantiated per instruction set: linear_avx2.c (VW 8) and
 * linear_avx512.c (VW 16); tests/unit/linear_emu.c instantiates it a third time with 16
 * lanes emulated on AVX2, so this code is tested at both widths on any machine.
 *
 * The includer defines KT(name) (the instruction set's suffix), VW, the types vf and vi and
 * the operations below (VF_*, VI_*), each an exact operation on VW lanes. A panel of 16
 * weight rows (kiln_blob.h: KBLOB_PANEL) is RV = 16 / VW vectors wide. Every sum is the one
 * linear.c's reference computes, in its order: for the float weights, one fused multiply-add
 * per weight in column order; for 8-bit activations, an exact integer sum per block and one
 * fused multiply-add per block. Only how many rows and tokens go at once differs:
 *   - one token (decode): two panels from two places of the thread's share at once (two
 *     memory streams, 2 x RV independent sums), block weights fetched KT_PREFETCH ahead;
 *   - a block of tokens (prefill): a register tile of one panel x KT_NT tokens; a panel of
 *     f16, bf16 or block weights is first widened, LIN_KC columns at a time, into the
 *     scratch (once for every token), and the partial sums wait in the scratch between
 *     pieces (a float stored and reloaded is exact, so the order holds).
 */
#include <string.h>

#include "kiln_blob.h"
#include "linear_internal.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define KT_PANEL KBLOB_PANEL_ROWS
#define RV (KT_PANEL / VW)
#define KT_UNROLL _Pragma("GCC unroll 16")
#define KT_INLINE static inline __attribute__((always_inline))

/* Decode over block weights asks for them this many bytes ahead of where each stream
 * reads: the hardware's stream prefetch stops at every 4 KiB page, and one token's product
 * has little else to hide the memory's latency with (Zen 3, stories110M Q4_0: 1.15-1.25x
 * tok/s, 2-4 KiB ahead best). Float weights go without: their loads alone keep the memory
 * busy, and the extra instructions cost (f32: slower). */
#define KT_PREFETCH 4096
#define KT_FETCH(p) __builtin_prefetch((const char *)(p) + KT_PREFETCH)

/* ---- writing a panel's sums: Y = acc, or R + acc; only the view's rows ---- */

KT_INLINE void KT(put)(const lin_job *j, int64_t p, int64_t t, const vf *acc)
{
    const krt_lin *l = j->l;
    int64_t first = p * KT_PANEL - l->row0;          /* the panel's row 0 in Y's columns */
    float *y = lin_yrow(l, t);
    const float *res = lin_rrow(l, t);
    if (first >= 0 && first + KT_PANEL <= l->out) {
        KT_UNROLL
        for (int v = 0; v < RV; v++) {
            vf s = acc[v];
            if (res)
                s = VF_ADD(VF_LOADU(res + first + v * VW), s);
            VF_STOREU(y + first + v * VW, s);
        }
        return;
    }
    float tmp[KT_PANEL];
    KT_UNROLL
    for (int v = 0; v < RV; v++)
        VF_STOREU(tmp + v * VW, acc[v]);
    for (int i = 0; i < KT_PANEL; i++)
        if (first + i >= 0 && first + i < l->out)
            y[first + i] = res ? res[first + i] + tmp[i] : tmp[i];
}

/* The panel's first byte at the view's first column. */
static inline const unsigned char *KT(panel)(const lin_job *j, int64_t p)
{
    const krt_lin *l = j->l;
    const unsigned char *base = j->w + p * KT_PANEL * j->row_bytes;
    switch (l->dtype) {
    case KBLOB_F32: return base + l->col0 * KT_PANEL * 4;
    case KBLOB_F16: case KBLOB_BF16: return base + l->col0 * KT_PANEL * 2;
    case KBLOB_Q8_0: return base + l->col0 / 32 * KT_PANEL * 34;
    default: return base + l->col0 / 32 * KT_PANEL * 18;
    }
}

/* ---- float weights: one fused multiply-add per weight ---- */

/* acc[n] += W[n][k] x[k] for columns k0 .. k0+nk-1 of np panels (f32, f16, bf16: pan[n]
 * at the view's column 0). */
KT_INLINE void KT(fma_cols)(vf (*acc)[RV], const unsigned char *const *pan, int np,
                            uint32_t dt, const float *x, int64_t k0, int64_t nk)
{
    for (int64_t k = k0; k < k0 + nk; k++) {
        vf xb = VF_SET1(x[k]);
        KT_UNROLL
        for (int n = 0; n < np; n++)
            KT_UNROLL
            for (int v = 0; v < RV; v++) {
                int64_t e = k * KT_PANEL + v * VW;
                vf w = dt == KBLOB_F32 ? VF_LOADU((const float *)(const void *)pan[n] + e)
                     : dt == KBLOB_F16 ? VF_F16((const uint16_t *)(const void *)pan[n] + e)
                                       : VF_BF16((const uint16_t *)(const void *)pan[n] + e);
                acc[n][v] = VF_FMA(w, xb, acc[n][v]);
            }
    }
}

/* Block b's 16 scales as floats. */
KT_INLINE void KT(scales)(vf *d, const unsigned char *blk)
{
    KT_UNROLL
    for (int v = 0; v < RV; v++)
        d[v] = VF_F16((const uint16_t *)(const void *)blk + v * VW);
}

/* acc[n] += (d q) x over whole blocks b0 .. b0+nb-1 of np q8_0 / q4_0 panels, in column
 * order: the weight d * q is exact, then one fused multiply-add. */
KT_INLINE void KT(fma_blocks)(vf (*acc)[RV], const unsigned char *const *pan, int np, int q8,
                              const float *x, int64_t b0, int64_t nb)
{
    int64_t bb = q8 ? 34 * KT_PANEL : 18 * KT_PANEL;
    for (int64_t b = b0; b < b0 + nb; b++) {
        const float *xb = x + b * 32;
        KT_UNROLL
        for (int n = 0; n < np; n++) {
            const unsigned char *blk = pan[n] + b * bb, *grp = blk + 2 * KT_PANEL;
            vf d[RV];
            for (int64_t o = 0; o < bb; o += 64)
                KT_FETCH(blk + o);
            KT(scales)(d, blk);
            if (q8) {
                for (int g = 0; g < 8; g++) {
                    vi w[RV];
                    KT_UNROLL
                    for (int v = 0; v < RV; v++)
                        w[v] = VI_LOADU(grp + (g * KT_PANEL + v * VW) * 4);
                    KT_UNROLL
                    for (int c = 0; c < 4; c++) {
                        vf xv = VF_SET1(xb[4 * g + c]);
                        KT_UNROLL
                        for (int v = 0; v < RV; v++)
                            acc[n][v] = VF_FMA(VF_MUL(VF_FROM_I32(VI_BYTE_S(w[v], c)), d[v]),
                                               xv, acc[n][v]);
                    }
                }
                continue;
            }
            /* q4_0: columns 0..15 are the low nibbles of the 4 groups, 16..31 the high */
            KT_UNROLL
            for (int hi = 0; hi < 2; hi++)
                for (int g = 0; g < 4; g++) {
                    vi w[RV];
                    KT_UNROLL
                    for (int v = 0; v < RV; v++)
                        w[v] = VI_LOADU(grp + (g * KT_PANEL + v * VW) * 4);
                    KT_UNROLL
                    for (int c = 0; c < 4; c++) {
                        vf xv = VF_SET1(xb[16 * hi + 4 * g + c]);
                        KT_UNROLL
                        for (int v = 0; v < RV; v++) {
                            vi q = VI_SUB(VI_NIB(w[v], c, hi), VI_SET1(8));
                            acc[n][v] = VF_FMA(VF_MUL(VF_FROM_I32(q), d[v]), xv, acc[n][v]);
                        }
                    }
                }
        }
    }
}

/* One token, np panels (float arithmetic): the whole view's columns. */
KT_INLINE void KT(gemv_f)(const lin_job *j, const int64_t *p, int np, int64_t t)
{
    const krt_lin *l = j->l;
    const unsigned char *pan[LIN_NP_MAX];
    vf acc[LIN_NP_MAX][RV];
    KT_UNROLL
    for (int n = 0; n < np; n++) {
        pan[n] = KT(panel)(j, p[n]);
        KT_UNROLL
        for (int v = 0; v < RV; v++)
            acc[n][v] = VF_ZERO();
    }
    const float *x = lin_xrow(l, t);
    if (l->dtype == KBLOB_Q8_0 || l->dtype == KBLOB_Q4_0)
        KT(fma_blocks)(acc, pan, np, l->dtype == KBLOB_Q8_0, x, 0, l->in / 32);
    else
        KT(fma_cols)(acc, pan, np, l->dtype, x, 0, l->in);
    for (int n = 0; n < np; n++)
        KT(put)(j, p[n], t, acc[n]);
}

/* Columns k0 .. k0+nk-1 of panel `pan` (f16, bf16, q8_0, q4_0) widened into buf as f32
 * [nk][16] (k0, nk multiples of 32 for the block types): the weights exactly. */
static void KT(widen_panel)(const lin_job *j, const unsigned char *pan, int64_t k0, int64_t nk,
                            float *buf)
{
    uint32_t dt = j->l->dtype;
    if (dt == KBLOB_F16 || dt == KBLOB_BF16) {
        const uint16_t *h = (const uint16_t *)(const void *)pan + k0 * KT_PANEL;
        for (int64_t e = 0; e < nk * KT_PANEL; e += VW)
            VF_STOREU(buf + e, dt == KBLOB_F16 ? VF_F16(h + e) : VF_BF16(h + e));
        return;
    }
    int q8 = dt == KBLOB_Q8_0;
    int64_t bb = q8 ? 34 * KT_PANEL : 18 * KT_PANEL;
    for (int64_t b = 0; b < nk / 32; b++) {
        const unsigned char *blk = pan + (k0 / 32 + b) * bb, *grp = blk + 2 * KT_PANEL;
        float *o = buf + b * 32 * KT_PANEL;
        vf d[RV];
        KT(scales)(d, blk);
        for (int g = 0; g < (q8 ? 8 : 4); g++)
            KT_UNROLL
            for (int v = 0; v < RV; v++) {
                vi w = VI_LOADU(grp + (g * KT_PANEL + v * VW) * 4);
                KT_UNROLL
                for (int c = 0; c < 4; c++) {
                    if (q8) {
                        VF_STOREU(o + (4 * g + c) * KT_PANEL + v * VW,
                                  VF_MUL(VF_FROM_I32(VI_BYTE_S(w, c)), d[v]));
                        continue;
                    }
                    KT_UNROLL
                    for (int hi = 0; hi < 2; hi++)
                        VF_STOREU(o + (16 * hi + 4 * g + c) * KT_PANEL + v * VW,
                                  VF_MUL(VF_FROM_I32(VI_SUB(VI_NIB(w, c, hi), VI_SET1(8))), d[v]));
                }
            }
    }
}

/* The input rows packed for the tiles: tile i (tokens i KT_NT ..) as [in][KT_NT] floats, a
 * partial last tile padded with zeros; a tile then reads its inputs as one stream (rows a
 * power of two apart would share L1 sets), each thread packing its own copy once. */
static void KT(pack_x)(const lin_job *j)
{
    const krt_lin *l = j->l;
    for (int64_t t0 = 0; t0 < l->rows; t0 += KT_NT) {
        int64_t nt = l->rows - t0 < KT_NT ? l->rows - t0 : KT_NT;
        float *dst = j->xp + t0 * l->in;
        const float *x[KT_NT];
        for (int t = 0; t < KT_NT; t++)
            x[t] = t < nt ? lin_xrow(l, t0 + t) : NULL;
        for (int64_t k = 0; k < l->in; k++)
            for (int t = 0; t < KT_NT; t++)
                dst[k * KT_NT + t] = x[t] ? x[t][k] : 0.0f;
    }
}

/* The register tile: tokens t0 .. t0+NT-1 of one panel over columns k0 .. k0+nk-1, whose f32
 * weights are w[(k - k0) * 16 + i] (in the panel itself for f32, else the widened piece) and
 * inputs the packed tile (pack_x); the sums start at zero (first) or from the scratch, and
 * end in the scratch or, for the last piece, in Y. */
KT_INLINE void KT(tile)(const lin_job *j, int64_t p, const float *w, int64_t t0, int NT,
                        int64_t k0, int64_t nk, int first, int last)
{
    vf acc[KT_NT][RV];
    const float *xp = j->xp + t0 * j->l->in;
    float *cb = j->cbuf + t0 * KT_PANEL;
    KT_UNROLL
    for (int t = 0; t < NT; t++)
        KT_UNROLL
        for (int v = 0; v < RV; v++)
            acc[t][v] = first ? VF_ZERO() : VF_LOADU(cb + t * KT_PANEL + v * VW);
    for (int64_t k = k0; k < k0 + nk; k++) {
        vf wv[RV];
        KT_UNROLL
        for (int v = 0; v < RV; v++)
            wv[v] = VF_LOADU(w + (k - k0) * KT_PANEL + v * VW);
        KT_UNROLL
        for (int t = 0; t < NT; t++) {
            vf xb = VF_SET1(xp[k * KT_NT + t]);
            KT_UNROLL
            for (int v = 0; v < RV; v++)
                acc[t][v] = VF_FMA(wv[v], xb, acc[t][v]);
        }
    }
    KT_UNROLL
    for (int t = 0; t < NT; t++) {
        if (last) {
            KT(put)(j, p, t0 + t, acc[t]);
            continue;
        }
        KT_UNROLL
        for (int v = 0; v < RV; v++)
            VF_STOREU(cb + t * KT_PANEL + v * VW, acc[t][v]);
    }
}

/* A tile of n < KT_NT tokens: the tile's code for each size, so its registers stay fixed. */
static void KT(tile_n)(const lin_job *j, int64_t p, const float *w, int64_t t0, int n,
                       int64_t k0, int64_t nk, int first, int last)
{
    switch (n) {
#define KT_TILE_CASE(c) case c: KT(tile)(j, p, w, t0, c, k0, nk, first, last); return;
    KT_TILE_CASE(1) KT_TILE_CASE(2) KT_TILE_CASE(3) KT_TILE_CASE(4) KT_TILE_CASE(5)
#if KT_NT > 6
    KT_TILE_CASE(6) KT_TILE_CASE(7) KT_TILE_CASE(8) KT_TILE_CASE(9) KT_TILE_CASE(10)
    KT_TILE_CASE(11)
#endif
#undef KT_TILE_CASE
    default: break;
    }
}

/* A block of tokens, one panel (float arithmetic): pieces of LIN_KC columns, each widened
 * once (unless f32) and run through every token tile. */
static void KT(gemm_f)(const lin_job *j, int64_t p)
{
    const krt_lin *l = j->l;
    const unsigned char *pan = KT(panel)(j, p);
    for (int64_t k0 = 0; k0 < l->in; k0 += LIN_KC) {
        int64_t nk = l->in - k0 < LIN_KC ? l->in - k0 : LIN_KC;
        const float *w = (const float *)(const void *)pan + k0 * KT_PANEL;
        if (l->dtype != KBLOB_F32) {
            KT(widen_panel)(j, pan, k0, nk, j->wbuf);
            w = j->wbuf;
        }
        int first = k0 == 0, last = k0 + nk >= l->in;
        /* the next piece's weights (the next panel's first after the last piece: panels
         * lie one after another) are fetched a share per tile, so that the first tile of the
         * next piece does not wait on memory */
        int64_t esz = l->dtype == KBLOB_F32 ? 4 : 2, lines = nk * KT_PANEL * esz / 64;
        const char *next = (const char *)pan + (k0 + nk) * KT_PANEL * esz;
        int64_t tiles = (l->rows + KT_NT - 1) / KT_NT, line = 0;
        int64_t t0 = 0;
        for (; t0 + KT_NT <= l->rows; t0 += KT_NT) {
            if (l->dtype <= KBLOB_BF16)
                for (int64_t e = lines * (t0 / KT_NT + 1) / tiles; line < e; line++)
                    __builtin_prefetch(next + line * 64);
            KT(tile)(j, p, w, t0, KT_NT, k0, nk, first, last);
        }
        if (t0 < l->rows)
            KT(tile_n)(j, p, w, t0, (int)(l->rows - t0), k0, nk, first, last);
    }
}

/* ---- 8-bit activations: exact integer sums per block ---- */

/* The integer sums of block b of one panel for NT tokens into s[t][v], and the panel's
 * scales into d. */
KT_INLINE void KT(block_dots)(const lin_job *j, const unsigned char *blk, int q8, int64_t b,
                              int8_t *const *q, int NT, vi (*s)[RV])
{
    const unsigned char *grp = blk + 2 * KT_PANEL;
    vi corr[RV];
    KT_UNROLL
    for (int v = 0; v < RV; v++) {
        corr[v] = VI_ZERO();
        KT_UNROLL
        for (int t = 0; t < NT; t++)
            s[t][v] = VI_ZERO();
    }
    if (q8) {
        for (int g = 0; g < 8; g++) {
            vi w[RV], wp[RV];
            KT_UNROLL
            for (int v = 0; v < RV; v++) {
                w[v] = VI_LOADU(grp + (g * KT_PANEL + v * VW) * 4);
                wp[v] = VI_Q8_PREP(w[v]);
                corr[v] = VI_Q8_CORR(corr[v], w[v]);
            }
            (void)wp;
            KT_UNROLL
            for (int t = 0; t < NT; t++) {
                int32_t x4;
                memcpy(&x4, q[t] + b * 32 + 4 * g, 4);
                vi xs = VI_SET1(x4);
                KT_UNROLL
                for (int v = 0; v < RV; v++)
                    s[t][v] = VI_Q8_DOT(s[t][v], wp[v], w[v], xs);
            }
        }
#if KT_Q8_CORR
        KT_UNROLL
        for (int t = 0; t < NT; t++)
            KT_UNROLL
            for (int v = 0; v < RV; v++)
                s[t][v] = VI_SUB(s[t][v], corr[v]);
#endif
        return;
    }
    for (int g = 0; g < 4; g++) {
        vi lo[RV], hi[RV];
        KT_UNROLL
        for (int v = 0; v < RV; v++) {
            vi w = VI_LOADU(grp + (g * KT_PANEL + v * VW) * 4);
            lo[v] = VI_NIB_LO(w);
            hi[v] = VI_NIB_HI(w);
        }
        KT_UNROLL
        for (int t = 0; t < NT; t++) {
            int32_t xl, xh;
            memcpy(&xl, q[t] + b * 32 + 4 * g, 4);
            memcpy(&xh, q[t] + b * 32 + 16 + 4 * g, 4);
            vi xsl = VI_SET1(xl), xsh = VI_SET1(xh);
            KT_UNROLL
            for (int v = 0; v < RV; v++)
                s[t][v] = VI_Q4_DOT(VI_Q4_DOT(s[t][v], lo[v], xsl), hi[v], xsh);
        }
    }
    /* the nibbles are q + 8: take 8 x the block's sum of the activation back */
    KT_UNROLL
    for (int t = 0; t < NT; t++) {
        vi c = VI_SET1(8 * lin_qsq(j, q[t])[b]);
        KT_UNROLL
        for (int v = 0; v < RV; v++)
            s[t][v] = VI_SUB(s[t][v], c);
    }
}

/* NT tokens (quantized rows q[t], tokens t0 ..) of np panels, all blocks. */
KT_INLINE void KT(int8_tile)(const lin_job *j, const int64_t *p, int np, int64_t t0, int NT)
{
    const krt_lin *l = j->l;
    int q8 = l->dtype == KBLOB_Q8_0;
    int64_t bb = (q8 ? 34 : 18) * KT_PANEL;
    const unsigned char *pan[LIN_NP_MAX];
    int8_t *q[KT_NTQ];
    const float *dq[KT_NTQ];
    vf acc[LIN_NP_MAX][KT_NTQ][RV];
    KT_UNROLL
    for (int t = 0; t < NT; t++) {
        q[t] = lin_qrow(j, t0 + t);
        dq[t] = lin_qdq(j, q[t]);
    }
    KT_UNROLL
    for (int n = 0; n < np; n++) {
        pan[n] = KT(panel)(j, p[n]);
        KT_UNROLL
        for (int t = 0; t < NT; t++)
            KT_UNROLL
            for (int v = 0; v < RV; v++)
                acc[n][t][v] = VF_ZERO();
    }
    for (int64_t b = 0; b < j->nb; b++)
        KT_UNROLL
        for (int n = 0; n < np; n++) {
            const unsigned char *blk = pan[n] + b * bb;
            vi s[KT_NTQ][RV];
            vf d[RV];
            if (NT == 1)       /* decode: the lines a block ahead */
                for (int64_t o = 0; o < bb; o += 64)
                    KT_FETCH(blk + o);
            KT(block_dots)(j, blk, q8, b, q, NT, s);
            KT(scales)(d, blk);
            KT_UNROLL
            for (int t = 0; t < NT; t++) {
                vf dx = VF_SET1(dq[t][b]);
                KT_UNROLL
                for (int v = 0; v < RV; v++)
                    acc[n][t][v] = VF_FMA(VF_MUL(d[v], dx), VF_FROM_I32(s[t][v]), acc[n][t][v]);
            }
        }
    KT_UNROLL
    for (int n = 0; n < np; n++)
        KT_UNROLL
        for (int t = 0; t < NT; t++)
            KT(put)(j, p[n], t0 + t, acc[n][t]);
}

static void KT(int8_tile_n)(const lin_job *j, int64_t p, int64_t t0, int n)
{
    switch (n) {
#define KT_TILE_CASE(c) case c: KT(int8_tile)(j, &p, 1, t0, c); return;
    KT_TILE_CASE(1)
#if KT_NTQ > 2
    KT_TILE_CASE(2) KT_TILE_CASE(3)
#endif
#if KT_NTQ > 4
    KT_TILE_CASE(4) KT_TILE_CASE(5) KT_TILE_CASE(6) KT_TILE_CASE(7)
#endif
#undef KT_TILE_CASE
    default: break;
    }
}

/* ---- the panels of one share ---- */

void KT(lin_panels)(const lin_job *j, int64_t p0, int64_t p1)
{
    const krt_lin *l = j->l;
    /* a last panel narrower than 16 rows: the reference */
    int64_t full = l->wrows / KT_PANEL;
    if (p1 > full) {
        int64_t r0 = full * KT_PANEL > l->row0 ? full * KT_PANEL : l->row0;
        if (l->row0 + l->out > r0)
            lin_reference_rows(j, r0, l->row0 + l->out);
        p1 = full;
    }
    if (p1 <= p0)
        return;
    if (l->rows == 1) {
        /* two streams: panel p0 + i with the one half a share further on */
        int64_t n = p1 - p0, h = (n + 1) / 2;
        for (int64_t i = 0; i + h < p1 - p0; i++) {
            int64_t p[2] = {p0 + i, p0 + h + i};
            if (j->int8)
                KT(int8_tile)(j, p, 2, 0, 1);
            else
                KT(gemv_f)(j, p, 2, 0);
        }
        if (n % 2) {
            int64_t p[1] = {p0 + h - 1};
            if (j->int8)
                KT(int8_tile)(j, p, 1, 0, 1);
            else
                KT(gemv_f)(j, p, 1, 0);
        }
        return;
    }
    for (int64_t p = p0; p < p1; p++) {
        if (!j->int8) {
            KT(gemm_f)(j, p);
            continue;
        }
        int64_t t0 = 0;
        for (; t0 + KT_NTQ <= l->rows; t0 += KT_NTQ)
            KT(int8_tile)(j, &p, 1, t0, KT_NTQ);
        if (t0 < l->rows)
            KT(int8_tile_n)(j, p, t0, (int)(l->rows - t0));
    }
}

/* What a thread does once before its panels of a product: a block of tokens' float inputs
 * packed for the tiles (the 8-bit ones are quantized by linear.c). */
void KT(lin_prepare)(const lin_job *j)
{
    if (!j->int8 && j->l->rows > 1 && j->l->layout == KBLOB_PANEL)
        KT(pack_x)(j);
}

/* The activation quantizer for this instruction set: the includer's KT_QUANT (the same
 * bits), or the reference's code compiled here. */
void KT(lin_quant)(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n)
{
#ifdef KT_QUANT
    KT_QUANT(q, dq, sq, x, n);
#else
    lin_quant_blocks(q, dq, sq, x, n);
#endif
}
