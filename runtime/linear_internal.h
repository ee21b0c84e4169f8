/* linear_internal.h - what linear.c (the split, the reference) shares with the SIMD kernels
 * of each instruction set (linear_simd.h, instantiated by linear_avx2.c and
 * linear_avx512.c). Not part of kernels.h.
 */
#ifndef KILN_LINEAR_INTERNAL_H
#define KILN_LINEAR_INTERNAL_H

#include <stdint.h>

#include "cpu.h"
#include "kernels.h"
#include "kiln_blob.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KRT_HAVE_SIMD 1
#endif

/* kernels.h: the scratch's sizes */
#define LIN_KC KRT_LIN_KC
#define LIN_NP_MAX KRT_LIN_NP

/* One product as the kernels see it: the krt_lin, the tensor's row size, and this thread's
 * scratch (kernels.h: krt_linear_scratch): the quantized input rows (8-bit activations),
 * a widened piece of a panel and the partial sums of a GEMM. */
typedef struct lin_job {
    const krt_lin *l;
    const unsigned char *w;    /* the tensor */
    int64_t row_bytes;         /* bytes of one tensor row */
    int int8;                  /* block weights with 8-bit activations */
    int64_t nb;                /* blocks of 32 in the view's columns */
    int64_t qstride;           /* bytes per quantized row: q[in], then dq[nb], sq[nb] */
    int8_t *q;                 /* the quantized rows (8-bit activations) or, in the same */
    float *xp;                 /* place, the rows packed for the register tiles (f32) */
    float *wbuf, *cbuf;
} lin_job;

static inline int64_t lin_align64(int64_t n) { return (n + 63) / 64 * 64; }

/* q[in] int8, dq[nb] float, sq[nb] int32, each 64-byte aligned (kernels.h:
 * krt_linear_scratch). */
static inline int64_t lin_qstride(int64_t in)
{
    int64_t nb = in / 32;
    return lin_align64(in) + 2 * lin_align64(4 * nb);
}

static inline int64_t lin_token(const krt_lin *l, int64_t t)
{
    return l->rowidx ? l->rowidx[t] : t;
}
static inline const float *lin_xrow(const krt_lin *l, int64_t t)
{
    return l->x + lin_token(l, t) * l->ldx;
}
static inline float *lin_yrow(const krt_lin *l, int64_t t)
{
    return l->y + lin_token(l, t) * l->ldy;
}
static inline const float *lin_rrow(const krt_lin *l, int64_t t)
{
    return l->res ? l->res + lin_token(l, t) * l->ldr : (const float *)0;
}
static inline int8_t *lin_qrow(const lin_job *j, int64_t t) { return j->q + t * j->qstride; }
/* (the scratch is the thread's own and writable; const only says who reads here) */
static inline float *lin_qdq(const lin_job *j, const int8_t *q)
{
    return (float *)(uintptr_t)(q + lin_align64(j->l->in));
}
static inline int32_t *lin_qsq(const lin_job *j, const int8_t *q)
{
    return (int32_t *)(uintptr_t)(q + lin_align64(j->l->in) + lin_align64(4 * j->nb));
}

/* The activation quantizer (kernels.h: krt_quant_q8), one function for every instruction
 * set: each compiles this same code, so each gives the same bits. */
static inline void lin_quant_blocks(int8_t *q, float *dq, int32_t *sq, const float *x,
                                    int64_t n)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int k = 0; k < 32; k++) {
            float a = __builtin_fabsf(xb[k]);
            amax = a > amax ? a : amax;
        }
        /* llama.cpp's activation quantizer: the scale rounded to f16 is what the products
         * use, while the values are rounded with 127 / amax (not with 1 / that scale) */
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        dq[b] = kblob_f16_to_f32(kblob_f32_to_f16(amax / 127.0f));
        int32_t s = 0;
        for (int k = 0; k < 32; k++) {
            float v = __builtin_rintf(xb[k] * id);   /* half to even, as vroundps does */
            v = v > -127.0f ? v : -127.0f;           /* NaN gives -127, as max_ps would */
            v = v < 127.0f ? v : 127.0f;
            q[b * 32 + k] = (int8_t)v;
            s += (int8_t)v;
        }
        sq[b] = s;
    }
}

typedef void (*lin_quant_fn)(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n);

void lin_job_init(lin_job *j, const krt_lin *l, void *scratch);
void lin_quantize_rows(lin_job *j, lin_quant_fn quant);
lin_quant_fn lin_quant_for(krt_path path);
/* The reference for tensor rows [r0, r1) of the view, every token. */
void lin_reference_rows(const lin_job *j, int64_t r0, int64_t r1);

#ifdef KRT_HAVE_SIMD
/* Panels [p0, p1) of the view (a panel-layout tensor), the input prepared (lin_prepare_*:
 * quantized when j->int8, else packed for the tiles of a block of tokens); panels narrower
 * than 16 rows go to lin_reference_rows. */
void lin_panels_avx2(const lin_job *j, int64_t p0, int64_t p1);
void lin_panels_avx512(const lin_job *j, int64_t p0, int64_t p1);
void lin_prepare_avx2(const lin_job *j);
void lin_prepare_avx512(const lin_job *j);
void lin_quant_avx2(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n);
void lin_quant_avx512(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n);
#endif

#endif
