/* attention_internal.h - what the attention kernels share (kernels.c, attention.c, the SIMD
 * attention_avx2.c). Not part of kernels.h.
 */
#ifndef KILN_ATTENTION_INTERNAL_H
#define KILN_ATTENTION_INTERNAL_H

#include <stdint.h>

#include "kernels.h"

/* The element offset of head g at position c of a cache (kernels.h: krt_kv). */
static inline int64_t kv_at(const krt_kv *kv, int64_t g, int64_t c)
{
    return kv->head_major ? (g * kv->cap + c) * kv->head_dim
                          : (c * kv->kv_heads + g) * kv->head_dim;
}

/* The (token, head) pairs [*p0, *p1) of rows x heads that share sh of nsh computes. */
void krt_pair_share(int64_t rows, int64_t heads, int sh, int nsh, int64_t *p0, int64_t *p1);

/* One query head over positions 0 .. n-1 (kernels.h: krt_attention): oh = softmax(scale *
 * qh . k) v, online, in the order kernels.h states. The reference (attention.c) and the AVX2
 * one (attention_avx2.c, only when the CPU has AVX2, FMA and F16C) give the same bits. */
void attention_head_ref(float *oh, const float *qh, const krt_kv *k, const krt_kv *v,
                        int64_t g, float scale, int64_t n);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
void attention_head_avx2(float *oh, const float *qh, const krt_kv *k, const krt_kv *v,
                         int64_t g, float scale, int64_t n);
#endif

#endif
