/* kiln_rt.h - the contract between a program emitted by kiln and the runtime it links.
 *
 * The emitted C file defines one `const krt_model kiln_model` describing the model and its
 * forward function; the runtime (the runtime/ sources, linked as libkilnrt.a) provides
 * main(): it maps the weight blob, allocates the frame and the state, parses the command
 * line, runs the prompt through kiln_model.forward in blocks of tokens, and samples.
 * Kernels are declared in kernels.h. Depends on libc, libm and pthreads only.
 */
#ifndef KILN_RT_H
#define KILN_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "kiln_blob.h"

/* What the program expects of each blob tensor; checked against the blob at start. */
typedef struct krt_tensor_desc {
    const char *name;
    uint32_t dtype;            /* KBLOB_F32 ... (the storage type) */
    uint32_t rank;
    uint64_t dims[4];
    uint32_t layout;           /* KBLOB_ROWS or KBLOB_PANEL */
} krt_tensor_desc;

/* One KV cache of the model: for --stats (the memory report) and for clearing the rows a
 * run wrote. Position-major (head_major 0): position r is the `width` values at byte offset
 * + r * width * elem; head-major: head g's position r is the width / kv_heads values at
 * offset + (g * capacity + r) * (width / kv_heads) * elem. elem: 4 bytes (f32), 2 (f16,
 * bf16). */
typedef struct krt_cache_desc {
    const char *label;         /* "k_cache l=3", "v_cache l=3" */
    uint64_t width;            /* values per position */
    uint64_t capacity;         /* positions */
    uint64_t offset;           /* byte offset in the state */
    uint64_t kv_heads;         /* head-major: its heads (0 or 1: position-major) */
    uint32_t dtype;            /* KBLOB_F32, KBLOB_F16 or KBLOB_BF16 */
    int head_major;
} krt_cache_desc;

typedef struct krt_pool krt_pool;   /* runtime/pool.c */

/* Run-time state passed to the forward function. */
typedef struct krt_ctx {
    const void *const *w;      /* w[i]: tensor i of the blob, in krt_model.tensors order */
    unsigned char *frame;      /* krt_model.frame_bytes: the values of one call */
    unsigned char *state;      /* krt_model.state_bytes: the KV caches, kept across calls */
    float *rtparams;           /* current values of the run-time parameters */
    double *stat_sum;          /* per statistic slot: sum of the accumulated values */
    double *stat_count;        /* per slot: how many values (one per token) */
    int all_logits;            /* set by the caller: 1 every row's logits, 0 only the last */
    float *logits;             /* set by forward: row t of the block at logits + t * vocab
                                  (rows 0 .. T-1 when all_logits, else row T-1 only) */
    krt_pool *pool;            /* worker threads (--threads N > 1), or NULL */
    unsigned char *scratch;    /* krt_model.scratch_bytes for each thread, 64-byte aligned: */
    uint64_t scratch_stride;   /* share sh's at scratch + sh * scratch_stride */
    krt_sched *sched;          /* the pool's products share their panels through it (kernels.h),
                                  or NULL: a fixed part each */
} krt_ctx;

typedef struct krt_model {
    const char *name;
    int64_t vocab;
    int64_t ctx;               /* positions the program can take (0: unbounded) */
    int64_t max_batch;         /* the largest block of tokens one forward call takes */
    uint64_t frame_bytes, state_bytes;
    uint64_t scratch_bytes;    /* per thread: what the kernels need of their own (kernels.h) */
    int n_tensors;
    const krt_tensor_desc *tensors;
    int n_rtparams;
    const char *const *rtparam_names;
    const float *rtparam_defaults;
    int n_stats;
    const char *const *stat_names;
    int n_caches;
    const krt_cache_desc *caches;
    /* What one token costs (the lowering's count, for benchmarks): weight bytes the matrix
     * products and the embedding read for one decoded token, outside expert regions and in
     * them (every expert counted), and multiply-adds of the products for one token of a
     * block, split into those every row runs and those only the rows whose logits are
     * wanted run (the classifier: once per block when only the last row's are). */
    uint64_t decode_bytes, decode_bytes_experts;
    uint64_t macs_all_rows, macs_logits_rows;
    /* Feed tokens[0 .. T-1] at positions pos0 .. pos0+T-1 (1 <= T <= max_batch, pos0 + T <=
     * ctx); sets c->logits. Row t attends to positions 0 .. pos0 + t. Every thread of
     * c->pool runs it (one job), each its share of each step. */
    void (*forward)(krt_ctx *c, const int32_t *tokens, int32_t pos0, int32_t T);
} krt_model;

/* In the forward function: before each step, a barrier when this step or the one before was
 * split between the threads (a step one thread runs after one the same thread ran needs
 * none); *prev says whether the one before was, and becomes `split`. */
void krt_step_sync(krt_ctx *c, int *prev, int split);

extern const krt_model kiln_model;

#endif
