/* linear.c - the matrix products of kernels.h (krt_linear): the thread split, the choice of
 * kernel path (cpu.h), the 8-bit activation quantizer, and the portable reference that
 * defines every result.
 *
 * The reference walks the weights as stored and sums each output in the order kernels.h
 * states, with fmaf: one rounding per weight (or per block with 8-bit activations). The SIMD
 * kernels (linear_simd.h, instantiated in linear_avx2.c and linear_avx512.c) keep that order
 * exactly, so every path gives the same bits; the kernel test checks it. Panels narrower
 * than 16 rows (the last of a tensor) and the rows layout always take the reference here:
 * they are rare, and one definition of the arithmetic is easier to trust than two.
 */
#include "kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "kiln_blob.h"
#include "linear_internal.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define PANEL KBLOB_PANEL_ROWS
#define BLOCK ((int)KBLOB_BLOCK)

/* ---- the job: the product's geometry, shared by every path ---- */

void lin_job_init(lin_job *j, const krt_lin *l, void *scratch)
{
    memset(j, 0, sizeof *j);
    j->l = l;
    j->w = l->w;
    uint64_t rb = 0;
    kblob_row_bytes(l->dtype, (uint64_t)l->wcols, &rb);
    j->row_bytes = (int64_t)rb;
    j->int8 = (l->dtype == KBLOB_Q8_0 || l->dtype == KBLOB_Q4_0) && l->act == KRT_ACT_Q8;
    j->nb = l->in / KBLOB_BLOCK;
    j->qstride = lin_qstride(l->in);
    unsigned char *s = scratch;
    j->q = (int8_t *)s;
    j->xp = (float *)scratch;
    uint64_t q = (uint64_t)j->qstride * (uint64_t)l->rows;
    uint64_t xp = sizeof(float) * (uint64_t)l->in * ((uint64_t)l->rows + 11);
    s += ((q > xp ? q : xp) + 63) / 64 * 64;
    j->wbuf = (float *)s;
    s += sizeof(float) * LIN_KC * PANEL * LIN_NP_MAX;
    j->cbuf = (float *)s;
}

/* ---- 8-bit activations ---- */

void krt_quant_q8(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n)
{
    lin_quant_blocks(q, dq, sq, x, n);
}

/* Quantizes the product's input rows into the job's scratch, with `quant` (the path's). */
void lin_quantize_rows(lin_job *j, lin_quant_fn quant)
{
    const krt_lin *l = j->l;
    for (int64_t t = 0; t < l->rows; t++) {
        int8_t *q = lin_qrow(j, t);
        quant(q, lin_qdq(j, q), lin_qsq(j, q), lin_xrow(l, t), l->in);
    }
}

/* ---- the reference ---- */

/* The exact f32 value of element (r, k) of the tensor (any dtype, either layout). */
static float weight_at(const lin_job *j, int64_t r, int64_t k)
{
    const krt_lin *l = j->l;
    float v;
    kblob_read_row(&v, l->w, l->dtype, l->layout, (uint64_t)l->wrows, (uint64_t)l->wcols,
                   (uint64_t)r, (uint64_t)k, 1);
    return v;
}

/* The f16 scale of block b of tensor row r, and its 32 values as integers (q8_0: q; q4_0:
 * the nibble minus 8), read from either layout (kiln_blob.h). */
static float block_at(const lin_job *j, int64_t r, int64_t b, int v[KBLOB_BLOCK])
{
    const krt_lin *l = j->l;
    int q8 = l->dtype == KBLOB_Q8_0;
    uint64_t w = 1, i = 0, base = (uint64_t)r * (uint64_t)j->row_bytes;
    if (l->layout == KBLOB_PANEL)
        base = kblob_panel_at((uint64_t)l->wrows, (uint64_t)j->row_bytes, (uint64_t)r, &w, &i);
    const unsigned char *blk = j->w + base + (uint64_t)b * w * (q8 ? 34 : 18);
    uint16_t h;
    memcpy(&h, blk + (l->layout == KBLOB_PANEL ? 2 * i : 0), 2);
    for (int k = 0; k < BLOCK; k++) {
        int kk = q8 ? k : k % 16;     /* q4_0: byte kk holds columns kk and kk + 16 */
        const unsigned char *q = l->layout == KBLOB_PANEL
                                     ? blk + 2 * w + ((uint64_t)(kk / 4) * w + i) * 4 + kk % 4
                                     : blk + 2 + kk;
        v[k] = q8 ? (signed char)*q : (k < 16 ? (*q & 15) : (*q >> 4)) - 8;
    }
    return kblob_f16_to_f32(h);
}

/* Output row r (a tensor row) of token t, summed as kernels.h says. */
static float reference_dot(const lin_job *j, int64_t r, int64_t t)
{
    const krt_lin *l = j->l;
    float acc = 0.0f;
    if (j->int8) {
        const int8_t *q = lin_qrow(j, t);
        const float *dq = lin_qdq(j, q);
        int v[KBLOB_BLOCK];
        for (int64_t b = 0; b < j->nb; b++) {
            float d = block_at(j, r, l->col0 / KBLOB_BLOCK + b, v);
            int32_t s = 0;
            for (int k = 0; k < BLOCK; k++)
                s += v[k] * q[b * KBLOB_BLOCK + k];
            acc = fmaf(d * dq[b], (float)s, acc);
        }
        return acc;
    }
    const float *x = lin_xrow(l, t);
    for (int64_t k = 0; k < l->in; k++)
        acc = fmaf(weight_at(j, r, l->col0 + k), x[k], acc);
    return acc;
}

void lin_reference_rows(const lin_job *j, int64_t r0, int64_t r1)
{
    const krt_lin *l = j->l;
    for (int64_t t = 0; t < l->rows; t++)
        for (int64_t r = r0; r < r1; r++) {
            float acc = reference_dot(j, r, t);
            int64_t i = r - l->row0;
            const float *res = lin_rrow(l, t);
            lin_yrow(l, t)[i] = res ? res[i] + acc : acc;
        }
}

/* Panels [p0, p1) of the view on the portable path. */
static void reference_panels(const lin_job *j, int64_t p0, int64_t p1)
{
    const krt_lin *l = j->l;
    int64_t r0 = p0 * PANEL > l->row0 ? p0 * PANEL : l->row0;
    int64_t r1 = p1 * PANEL < l->row0 + l->out ? p1 * PANEL : l->row0 + l->out;
    if (r1 > r0)
        lin_reference_rows(j, r0, r1);
}

/* ---- the split and the path ---- */

struct krt_sched {
    atomic_int_fast64_t next[2];   /* the next panel of the current product, of the one after */
    int threads;
    int64_t calls[];               /* per share: the shared products it has run */
};

krt_sched *krt_sched_new(int threads)
{
    krt_sched *s = calloc(1, sizeof *s + sizeof(int64_t) * (size_t)(threads > 0 ? threads : 1));
    if (!s)
        return NULL;
    atomic_init(&s->next[0], 0);
    atomic_init(&s->next[1], 0);
    s->threads = threads;
    return s;
}

void krt_sched_free(krt_sched *s) { free(s); }

/* Panels [p0, p1) on the path's kernels. */
static void run_panels(const lin_job *j, krt_path path, int64_t p0, int64_t p1)
{
#ifdef KRT_HAVE_SIMD
    if (j->l->layout == KBLOB_PANEL && path == KRT_PATH_AVX2) {
        lin_panels_avx2(j, p0, p1);
        return;
    }
    if (j->l->layout == KBLOB_PANEL && path == KRT_PATH_AVX512) {
        lin_panels_avx512(j, p0, p1);
        return;
    }
#endif
    reference_panels(j, p0, p1);
}

void krt_linear(const krt_lin *l, int share, int nshares, void *scratch)
{
    if (l->out <= 0 || l->rows <= 0)
        return;
    /* whole panels (a panel is the kernels' unit; the rows layout goes by 16 rows the same) */
    int64_t pa = l->row0 / PANEL, pb = (l->row0 + l->out + PANEL - 1) / PANEL, n = pb - pa;
    krt_sched *s = nshares > 1 ? l->sched : NULL;
    if (!s && n * share / nshares >= n * (share + 1) / nshares)
        return;
    lin_job j;
    lin_job_init(&j, l, scratch);
    krt_path path = krt_kernel_path;
    if (j.int8)
        lin_quantize_rows(&j, lin_quant_for(path));
#ifdef KRT_HAVE_SIMD
    if (path == KRT_PATH_AVX2)
        lin_prepare_avx2(&j);
    else if (path == KRT_PATH_AVX512)
        lin_prepare_avx512(&j);
#endif
    if (!s) {
        run_panels(&j, path, pa + n * share / nshares, pa + n * (share + 1) / nshares);
        return;
    }
    /* chunks of about a quarter of a thread's share, to whoever asks; the first to ask
     * clears the other slot for the next product (this one's threads are past it) */
    int64_t call = s->calls[share]++, chunk = n / (4 * nshares) > 0 ? n / (4 * nshares) : 1;
    atomic_int_fast64_t *next = &s->next[call & 1];
    for (;;) {
        int64_t c0 = (int64_t)atomic_fetch_add(next, chunk);
        if (c0 == 0)
            atomic_store(&s->next[(call + 1) & 1], 0);
        if (c0 >= n)
            break;
        run_panels(&j, path, pa + c0, pa + (c0 + chunk < n ? c0 + chunk : n));
    }
}

lin_quant_fn lin_quant_for(krt_path path)
{
#ifdef KRT_HAVE_SIMD
    if (path == KRT_PATH_AVX2)
        return lin_quant_avx2;
    if (path == KRT_PATH_AVX512)
        return lin_quant_avx512;
#endif
    (void)path;
    return krt_quant_q8;
}
