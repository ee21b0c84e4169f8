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
#include <string.h>

/* ---- e^x: one definition for every kernel, path and the emitted code ----
 *
 * krt_expf(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), e^r by a
 * degree-6 polynomial (Cephes' expf coefficients), 2^n added to the exponent. Only float
 * multiplies and adds, each rounded (never fused): so a loop of it vectorizes on any
 * instruction set and the SIMD kernels compute it with the same bits; within 2 ulp of e^x.
 * x > 88.7 gives +inf, x < -87 gives 0 (below 2^-125), NaN gives NaN. */
/* inlined wherever it is used, so that the emitted element loops vectorize */
#if defined(__GNUC__) || defined(__clang__)
#define KRT_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define KRT_ALWAYS_INLINE static inline
#endif
KRT_ALWAYS_INLINE float krt_expf(float x)
{
    float xc = x == x ? x : 0.0f;                  /* NaN: computed as 0, returned as NaN */
    xc = xc > 88.7f ? 88.7f : xc < -87.0f ? -87.0f : xc;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to even */
    float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = (p * (r * r) + r) + 1.0f;
    uint32_t bits;
    memcpy(&bits, &y, sizeof bits);
    bits += (uint32_t)(int32_t)n << 23;            /* n in [-126, 128]: y * 2^n, normal */
    memcpy(&y, &bits, sizeof y);
    return x != x ? x : x > 88.7f ? __builtin_inff() : x < -87.0f ? 0.0f : y;
}

/* ---- matrix products (linear.c; SIMD in linear_avx2.c, linear_avx512.c) ----
 *
 * Y[t, i] = sum_k W[row0 + i, col0 + k] * X[t, k] (+ R[t, i]) for the rows of a block of
 * tokens, i < out, k < in: a view of a weight tensor [wrows, wcols] stored as dtype in
 * `layout` (kiln_blob.h: KBLOB_PANEL, what these kernels stream, or KBLOB_ROWS). Every path
 * (cpu.h) computes each output exactly so, bit for bit:
 *   - f32, f16, bf16 weights, and q8_0 / q4_0 with act KRT_ACT_F32: acc = 0, then for
 *     k = 0 .. in-1 in order acc = fma(w_k, x_k, acc) with w_k the weight's exact f32 value
 *     (d * q for the block types); one rounding per weight;
 *   - q8_0 / q4_0 with act KRT_ACT_Q8: X's row is first quantized to Q8_0 blocks as
 *     llama.cpp does (krt_quant_q8 below), then acc = 0 and for each block b in order
 *     acc = fma(d_w * d_x, s_b, acc), where s_b = sum q_w q_x over the block is an exact
 *     integer and d_w * d_x is exact (two f16 values);
 *   - then Y = acc, or Y = R + acc (one add, as a separate add step would do it).
 * So a block of T tokens gives what T calls of one token give, any thread split gives the
 * same bits, and the instruction set changes only the speed. */
enum { KRT_ACT_F32 = 0, KRT_ACT_Q8 = 1 };

/* Who takes which panels of the products a forward call shares between threads: panels go
 * in chunks to whichever thread asks next (an atomic counter, a slot per call, two slots
 * used in turn since products are always a barrier apart), so a thread the machine slows
 * does less. Which thread computes a panel never changes its bits. krt_sched_new(threads)
 * makes one for a pool of that many threads (NULL when out of memory). */
typedef struct krt_sched krt_sched;
krt_sched *krt_sched_new(int threads);
void krt_sched_free(krt_sched *s);

typedef struct krt_lin {
    float *y;                  /* token t's outputs at y + t * ldy */
    const float *x;            /* token t's inputs at x + t * ldx */
    int64_t ldy, ldx;
    int64_t rows;              /* tokens */
    const int32_t *rowidx;     /* NULL: tokens 0 .. rows-1; else tokens rowidx[0 .. rows-1] */
    const void *w;             /* the weight tensor's first byte */
    uint32_t dtype, layout;    /* KBLOB_F32 ... KBLOB_Q4_0; KBLOB_ROWS or KBLOB_PANEL */
    int64_t wrows, wcols;      /* the whole tensor's shape */
    int64_t row0, col0;        /* the view's first row and column (col0 on a block boundary) */
    int64_t out, in;           /* the view's shape */
    const float *res;          /* NULL, or Y = R + ...: token t's row at res + t * ldr (ldr 0:
                                  one row for every token, a bias); R may be Y, never X */
    int64_t ldr;
    int act;                   /* block types: KRT_ACT_Q8 or KRT_ACT_F32 */
    krt_sched *sched;          /* NULL: share `share` takes a fixed part of the panels */
} krt_lin;

/* Share `share` of `nshares` of the product (whole panels of output rows per share; every
 * share must call it, in the same order of products, when l->sched is set), with `scratch`
 * of krt_linear_scratch(rows, in) bytes of this thread's own (64-byte aligned). */
void krt_linear(const krt_lin *l, int share, int nshares, void *scratch);

/* Columns of a panel a block of tokens holds widened at once (16 x 256 floats: L1-sized),
 * and panels a kernel works on together, at most. */
#define KRT_LIN_KC 256
#define KRT_LIN_NP 2
/* Scratch bytes one thread needs for a product of `rows` tokens and `in` columns: the input
 * rows quantized (q[in] int8, then a float scale and an int32 sum per block, each part
 * 64-byte aligned) or packed for the register tiles (tiles of up to 12 rows, column by
 * column), a widened piece of a panel, and the partial sums of a block of tokens. */
static inline uint64_t krt_linear_scratch(int64_t rows, int64_t in)
{
    uint64_t a = (uint64_t)(in + 63) / 64 * 64, nb = (uint64_t)in / 32;
    uint64_t qrow = a + 2 * ((4 * nb + 63) / 64 * 64);
    uint64_t q = qrow * (uint64_t)rows, xp = sizeof(float) * (uint64_t)in * ((uint64_t)rows + 11);
    uint64_t w = sizeof(float) * KRT_LIN_KC * 16 * KRT_LIN_NP;
    uint64_t c = sizeof(float) * 16 * KRT_LIN_NP * (uint64_t)rows;
    return ((q > xp ? q : xp) + 63) / 64 * 64 + w + (c + 63) / 64 * 64;
}

/* 8-bit activations (llama.cpp's Q8_0 of an activation row): for each block of 32, d =
 * amax / 127 rounded to f16 (dq[b] holds it widened), q = round-half-even(x * 127 / amax)
 * clamped to [-127, 127] (0 for an all-zero block), and sq[b] = the sum of the block's q.
 * n a multiple of 32. */
void krt_quant_q8(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n);

/* A weight tensor [wrows, wcols] as the kernels below read it: its bytes, storage type and
 * layout (kiln_blob.h), and the view's first row and column. */
typedef struct krt_wview {
    const void *w;
    uint32_t dtype, layout;
    int64_t wrows, wcols, row0, col0;
} krt_wview;

/* Y[t] = row tok[t] of the table (d columns of the view), widened to f32; a token outside
 * [0, vocab) gives a row of zeros. */
void krt_embed(float *y, const int32_t *tok, int64_t rows, krt_wview table, int64_t vocab,
               int64_t d);

/* Y[r, j] = W[r, j] of the view widened to f32, for r < rows, j < n (a weight read by an op
 * that computes in f32: norm gains, biases, a row picked at compile time). */
void krt_widen(float *y, krt_wview w, int64_t rows, int64_t n);

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

/* A KV cache as the attention kernels see it: kv_heads heads of head_dim values at each of
 * cap positions, stored as dtype (KBLOB_F32, KBLOB_F16, KBLOB_BF16; f16 and bf16 are
 * rounded to nearest even when stored, widened when read). Element i of head g at position
 * c is at c * kv_heads * head_dim + g * head_dim + i (position-major, head_major 0: one
 * position's heads side by side) or at (g * cap + c) * head_dim + i (head-major, 1: one
 * head's positions contiguous, which is what attention streams). */
typedef struct krt_kv {
    void *data;
    uint32_t dtype;
    int head_major;
    int64_t kv_heads, head_dim, cap;
} krt_kv;

/* The cache at positions pos0 .. pos0 + rows - 1 = x [rows, kv_heads * head_dim]. */
void krt_cache_store(krt_kv kv, const float *x, int64_t rows, int32_t pos0);

/* The attention kernels below split their (token, head) pairs between the threads: share sh
 * of nsh computes pairs [n sh / nsh, n (sh + 1) / nsh) of the n = rows * heads, each pair as
 * a single thread would. */

/* S[t, h, c] = q[t, h] . k[c, kv head of h] for c <= pos0 + t (unscaled); S rows are k.cap
 * floats. Query head h reads kv head h / (heads / k.kv_heads). Columns past pos0 + t are not
 * written. */
void krt_attn_scores(float *s, const float *q, int64_t rows, krt_kv k, int64_t heads,
                     int32_t pos0, int sh, int nsh);

/* O[t, h] = sum_{c <= pos0 + t} P[t, h, c] * v[c, kv head of h] (P rows v.cap floats). */
void krt_attn_apply(float *o, const float *p, int64_t rows, krt_kv v, int64_t heads,
                    int32_t pos0, int sh, int nsh);

/* Fused causal attention (attention.c; SIMD in attention_avx2.c): O[t, h] = sum_{c <= pos0 +
 * t} softmax_c(scale * q[t, h] . k[c]) * v[c] (kv head h / (heads / kv_heads); v.head_dim
 * values per head out). One pass over the positions with an online softmax (a running max
 * and sum per row and head, the sum of values rescaled when the max grows): no probabilities
 * are stored, O's row is the accumulator. Positions go in chunks of KRT_ATTN_CHUNK: their
 * scores, the chunk's max, the rescale by krt_expf(old max - new max), then krt_expf(s -
 * max) of each, added to the sum in order, and O += p v with one fused multiply-add per
 * element. q . k is summed in 8 lanes (element i to lane i mod 8, one fused multiply-add
 * each; a tail past the last 8 to lanes 0 ..) added pairwise (4, 2, 1). Every path computes
 * exactly that; each row and head is computed alone, so blocks of rows give what one-row
 * calls give, bit for bit. */
#define KRT_ATTN_CHUNK 64
void krt_attention(float *o, const float *q, int64_t rows, krt_kv k, krt_kv v, int64_t heads,
                   float scale, int32_t pos0, int sh, int nsh);

/* Softmax of each of `rows` rows of n floats (rows n apart), y may equal x. */
void krt_softmax(float *y, const float *x, int64_t rows, int64_t n);
/* Softmax of scores [rows, heads, cap] over the live columns c <= pos0 + t of row t; split
 * by (token, head) pairs as the attention kernels are. */
void krt_softmax_causal(float *y, const float *x, int64_t rows, int64_t heads, int32_t pos0,
                        int64_t cap, int sh, int nsh);

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
/* Inside a job: returns once every share of the pool has called it (p == NULL: at once). */
void krt_pool_barrier(krt_pool *p);
/* Threads of the pool, the caller included (1 for NULL). */
int krt_pool_size(const krt_pool *p);

/* Rows a share takes at least before a step over rows is split between the threads. */
#define KRT_ROWS_PER_SHARE 4
/* The rows [*lo, *hi) of [r0, r1) that share sh of nsh runs: a contiguous part each when
 * every share gets KRT_ROWS_PER_SHARE rows or more (returns 1), else all of them for share 0
 * and none for the others (returns 0). (Out of line: emitted code calls it at every step,
 * and inlining it there only makes the C slow to compile.) */
int krt_share_rows(int64_t r0, int64_t r1, int sh, int nsh, int64_t *lo, int64_t *hi);
#endif
