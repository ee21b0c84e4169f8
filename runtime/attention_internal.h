/* attention_internal.h - what the attention kernels share (kernels.c, attention.c, the SIMD
 * attention_avx2.c). Not part of kernels.h.
 */
#ifndef KILN_ATTENTION_INTERNAL_H
#define KILN_ATTENTION_INTERNAL_H

#include <stdint.h>

#include "kernels.h"
#include "kiln_blob.h"

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

/* The (token, head) pairs [*p0, *p1) of rows x heads that share sh of nsh computes. */
void krt_pair_share(int64_t rows, int64_t heads, int sh, int nsh, int64_t *p0, int64_t *p1);

/* One query: its output row (v's head dim), its row of q (k's head dim), the positions
 * 0 .. n-1 it attends to. */
typedef struct attn_query {
    float *o;
    const float *q;
    int64_t n;
} attn_query;

/* Queries krt_attention runs together: they read the same kv head, so the cache rows one
 * reads are in cache for the others, and the scalar chains of their sums overlap. */
#define ATTN_GROUP 4

/* nq <= ATTN_GROUP queries on kv head g (kernels.h: krt_attention): each oh = softmax(scale *
 * qh . k) v, online, in the order kernels.h states, alone (so how queries are grouped never
 * changes a bit). The reference (attention.c) and the AVX2 one (attention_avx2.c, only when
 * the CPU has AVX2, FMA and F16C) give the same bits. */
void attention_group_ref(const attn_query *qs, int nq, const krt_kv *k, const krt_kv *v,
                         int64_t g, float scale);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
void attention_group_avx2(const attn_query *qs, int nq, const krt_kv *k, const krt_kv *v,
                          int64_t g, float scale);
#endif

#endif
