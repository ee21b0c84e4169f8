/* kiln_rt.h - the contract between a program emitted by kiln and the runtime it links.
 *
 * The emitted C file defines one `const krt_model kiln_model` describing the model and its
 * forward function; the runtime (the runtime/ sources, linked as libkilnrt.a) provides main(): it maps
 * the weight blob, allocates the arena, parses the command line, runs the tokens through
 * kiln_model.forward and samples. Depends on libc, libm and pthreads only.
 */
#ifndef KILN_RT_H
#define KILN_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_blob.h"

/* What the program expects of each blob tensor; checked against the blob at start. */
typedef struct krt_tensor_desc {
    const char *name;
    uint32_t dtype;            /* KBLOB_F32 ... */
    uint32_t rank;
    uint64_t dims[4];
} krt_tensor_desc;

/* One KV cache of the model (for --stats: the memory report). */
typedef struct krt_cache_desc {
    const char *label;         /* "k l=3", "v l=3" */
    uint64_t width;            /* floats per position */
    uint64_t capacity;         /* positions */
} krt_cache_desc;

typedef struct krt_pool krt_pool;   /* runtime/pool.c */

/* Run-time state passed to the forward function. */
typedef struct krt_ctx {
    const float *const *w;     /* w[i]: tensor i of the blob, in krt_model.tensors order */
    float *arena;              /* krt_model.arena_floats floats, zeroed at start; caches included */
    float *rtparams;           /* current values of the run-time parameters */
    double *stat_sum;          /* per statistic slot: sum of the accumulated values */
    double *stat_count;        /* per slot: how many values */
    float *logits;             /* set by forward: points at vocab floats (inside the arena) */
    krt_pool *pool;            /* worker threads (--threads N > 1), or NULL */
} krt_ctx;

/* krt_linear (kernels.h) with its rows split across the pool's threads when the product is
 * large enough to pay for it; bit-identical results whatever the thread count. */
void krt_linear_mt(krt_ctx *c, float *restrict y, const float *restrict W, int64_t ld,
                   const float *restrict x, int64_t out, int64_t in);

typedef struct krt_model {
    const char *name;
    int64_t vocab;
    int64_t ctx;               /* positions the program can take (0: unbounded) */
    uint64_t arena_floats;
    int n_tensors;
    const krt_tensor_desc *tensors;
    int n_rtparams;
    const char *const *rtparam_names;
    const float *rtparam_defaults;
    int n_stats;
    const char *const *stat_names;
    int n_caches;
    const krt_cache_desc *caches;
    /* Feed `token` at position `pos` (0-based, < ctx); sets c->logits. */
    void (*forward)(krt_ctx *c, int32_t token, int32_t pos);
} krt_model;

extern const krt_model kiln_model;

#endif
