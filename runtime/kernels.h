/* kernels.h - the compute kernels emitted programs call (runtime/kernels.c, linked from
 * libkilnrt.a; external linkage so that per-ISA variants can be chosen at start and LLVM IR
 * can call them).
 *
 * Activations are f32, row-major; a value with the token axis is [rows, n] with rows n floats
 * apart (row t is token t of the block). Weights are read in their storage type (KBLOB_F32,
 * KBLOB_F16, KBLOB_BF16), their rows `ld` BYTES apart. Every sum runs in a fixed order that
 * depends only on the shape, never on `rows` or on the thread share, so a block of T tokens
 * gives bit for bit what T calls with one token give, whatever the thread count.
 * Positions: row t of a block that starts at position pos0 is at position pos0 + t; causal
 * attention lets row t see cache positions 0 .. pos0 + t.
 */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stdint.h>

/* Y[t, i] = sum_j W[i, j] * X[t, j] for t < rows, i0 <= i < i1 (Y rows are `out` floats
 * wide, X rows `in`). Each dot product is summed in KRT_LANES partial sums (lane k takes
 * j = k mod KRT_LANES) added pairwise at the end. Each weight row is read once per block of
 * rows, not once per token. The thread pool hands out [i0, i1) shares. */
#define KRT_LANES 16
typedef void (*krt_linear_fn)(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                              int64_t out, int64_t in, int64_t i0, int64_t i1);
void krt_linear_f32(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                    int64_t out, int64_t in, int64_t i0, int64_t i1);
void krt_linear_f16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                    int64_t out, int64_t in, int64_t i0, int64_t i1);
void krt_linear_bf16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                     int64_t out, int64_t in, int64_t i0, int64_t i1);
/* The linear kernels with an epilogue (a residual or bias add fused into them):
 * Y[t, i] = R[t * ldr + i] + (the sum krt_linear_* computes), one float add after the same
 * sum, so bit for bit the linear followed by an add step. ldr = out: one row of R per token
 * (a residual; R may be Y); ldr = 0: one row shared by every token (a bias). R must not
 * overlap X. */
typedef void (*krt_linear_res_fn)(float *y, const float *x, int64_t rows, const void *w,
                                  int64_t ld, int64_t out, int64_t in, int64_t i0, int64_t i1,
                                  const float *r, int64_t ldr);
void krt_linear_res_f32(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                        int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                        int64_t ldr);
void krt_linear_res_f16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                        int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                        int64_t ldr);
void krt_linear_res_bf16(float *y, const float *x, int64_t rows, const void *w, int64_t ld,
                         int64_t out, int64_t in, int64_t i0, int64_t i1, const float *r,
                         int64_t ldr);

/* Y[t] = row tok[t] of a [vocab, d] table (storage type dtype, rows ld bytes apart), widened
 * to f32; a token outside [0, vocab) gives a row of zeros. */
void krt_embed(float *y, const int32_t *tok, int64_t rows, const void *table, uint32_t dtype,
               int64_t ld, int64_t vocab, int64_t d);

/* Y[r, j] = W[r, j] widened to f32, for r < rows, j < n (a weight read by an op that computes
 * in f32: norm gains, biases, a row picked at compile time). */
void krt_widen(float *y, const void *w, uint32_t dtype, int64_t rows, int64_t ld, int64_t n);

/* y[j] = h[j] widened, j < n: kiln_blob.h's kblob_f16_to_f32 / kblob_bf16_to_f32, bit for
 * bit, as loops the compiler vectorizes (helpers of the kernels above). */
void krt_widen_f16(float *y, const uint16_t *h, int64_t n);
void krt_widen_bf16(float *y, const uint16_t *h, int64_t n);

/* Rotary embedding of x [rows, heads * head_dim] into y (y may equal x): row t at position
 * pos0 + t; the first `rot` dims of each head rotate, the rest are copied. freq_i =
 * 1 / base^(2i/rot) in float, as llama2.c computes it. interleaved: pairs (2i, 2i+1);
 * otherwise (Hugging Face rotate_half) (i, i + rot/2). */
void krt_rope(float *y, const float *x, int64_t rows, int32_t pos0, int64_t heads,
              int64_t head_dim, int64_t rot, float base, int interleaved);
/* krt_rope with one base per head: head h turns by bases[h] (heads floats). Each head's
 * arithmetic is krt_rope's operation for operation, so with every base equal to b it gives
 * krt_rope(..., b, ...) bit for bit. */
void krt_rope_heads(float *y, const float *x, int64_t rows, int32_t pos0, int64_t heads,
                    int64_t head_dim, int64_t rot, const float *bases, int interleaved);

/* cache[pos0 + t, :] = x[t, :] for t < rows (rows `width` floats). */
void krt_cache_store(float *cache, const float *x, int64_t rows, int64_t width, int32_t pos0);

/* S[t, h, c] = q[t, h] . k[c, kv head of h] for c <= pos0 + t (unscaled); S rows are `cap`
 * floats (the cache capacity). Cache rows are kv_heads * head_dim wide; query head h reads kv
 * head h / (heads / kv_heads). Columns past pos0 + t are not written. */
void krt_attn_scores(float *s, const float *q, int64_t rows, const float *kc, int64_t heads,
                     int64_t kv_heads, int64_t head_dim, int32_t pos0, int64_t cap);

/* O[t, h] = sum_{c <= pos0 + t} P[t, h, c] * v[c, kv head of h] (P rows `cap` floats). */
void krt_attn_apply(float *o, const float *p, int64_t rows, const float *vc, int64_t heads,
                    int64_t kv_heads, int64_t head_dim, int32_t pos0, int64_t cap);

/* Softmax of each of `rows` rows of n floats (rows n apart), y may equal x. */
void krt_softmax(float *y, const float *x, int64_t rows, int64_t n);
/* Softmax of scores [rows, heads, cap] over the live columns c <= pos0 + t of row t. */
void krt_softmax_causal(float *y, const float *x, int64_t rows, int64_t heads, int32_t pos0,
                        int64_t cap);

/* Per-row reductions of x [rows, n] into y[rows]: left-to-right float sums. */
void krt_sum(float *y, const float *x, int64_t rows, int64_t n);
void krt_mean(float *y, const float *x, int64_t rows, int64_t n);
void krt_amax(float *y, const float *x, int64_t rows, int64_t n);
void krt_count(float *y, const float *x, int64_t rows, int64_t n);   /* non-zero entries */
/* y[t] = a[t] . b[t]; b_rows 0: b is one vector shared by every row. */
void krt_dot(float *y, const float *a, const float *b, int64_t rows, int64_t n, int b_rows);
/* mask[t, i] = 1 for the k largest x[t, i] of each row (the lower index first on ties). */
void krt_topk(float *mask, const float *x, int64_t rows, int64_t n, int64_t k);

/* ---- threads (pool.c): one persistent pool that runs any job ---- */
typedef struct krt_pool krt_pool;
/* fn(arg, share, nshares) for share = 0 .. nshares-1, the caller taking share 0; returns when
 * all are done. p == NULL runs fn(arg, 0, 1). */
typedef void (*krt_job_fn)(void *arg, int share, int nshares);
void krt_pool_run(krt_pool *p, krt_job_fn fn, void *arg);
/* fn over output rows [0, out), split into one contiguous share per thread. */
void krt_linear_mt(krt_pool *p, krt_linear_fn fn, float *y, const float *x, int64_t rows,
                   const void *w, int64_t ld, int64_t out, int64_t in);
/* krt_linear_mt for the kernels with an epilogue. */
void krt_linear_res_mt(krt_pool *p, krt_linear_res_fn fn, float *y, const float *x,
                       int64_t rows, const void *w, int64_t ld, int64_t out, int64_t in,
                       const float *r, int64_t ldr);

#endif
