/* lower.h - the lowering stage: from planned IR to every decision a back end prints.
 *
 * One pass over a memory-planned module decides, per instruction: the kernel (by op, the
 * storage type of its weights, its shape and whether it has the token axis), which rows of
 * the block it runs for (all tokens; only the tokens whose logits are wanted; one token of a
 * guard region's per-token loop), how its work splits across threads, and where each
 * operand and result lives (frame, state, a weight's bytes, the tokens, a run-time
 * parameter, a literal). A back end (backend.h) prints the result and decides nothing.
 *
 * Rows: an instruction whose value reaches only the logits (not a cache, not a statistic)
 * runs for the rows t0 .. T-1, where t0 = 0 when every row's logits are wanted and T-1 when
 * only the last is (generation after a prompt); the rest runs for all rows.
 */
#ifndef KILN_LOWER_H
#define KILN_LOWER_H

#include <stdint.h>

#include "../ir/ir.h"

/* Where an operand or result lives. */
typedef enum lw_place {
    LW_NONE,
    LW_FRAME,                  /* the frame of one call: byte offset */
    LW_STATE,                  /* the state kept across calls (KV caches): byte offset */
    LW_WEIGHT,                 /* a blob tensor: byte offset into it, rows `ld` bytes apart */
    LW_TOKENS,                 /* the block's token ids (int32) */
    LW_RTPARAM,                /* a run-time parameter (float) */
    LW_CONST,                  /* a literal float */
} lw_place;

typedef struct lw_ref {
    lw_place place;
    int64_t offset;            /* bytes (LW_WEIGHT in the rows layout: of the view's start) */
    int tensor;                /* LW_WEIGHT: blob tensor index */
    int64_t ld;                /* LW_WEIGHT: bytes between the tensor's rows */
    uint32_t dtype;            /* LW_WEIGHT: storage type (KBLOB_*) */
    uint32_t layout;           /* LW_WEIGHT: KBLOB_ROWS or KBLOB_PANEL */
    int64_t wrows, wcols;      /* LW_WEIGHT: the whole tensor's rows and columns */
    int64_t row0, col0;        /* LW_WEIGHT: the view's first row and column */
    int tok;                   /* has the token axis: token row r starts `row` elements in */
    int64_t row;               /* elements per token row */
    int i32;                   /* elements are int32 (tokens, positions), else float */
    int index;                 /* LW_RTPARAM */
    float value;               /* LW_CONST */
    /* a KV cache (LW_STATE, the value of `cache`): its storage dtype (KBLOB_*) is `dtype` */
    int head_major;            /* 1: [kv_heads][cap][head_dim], 0: [cap][width] */
    int64_t kv_heads, cap;     /* kv_heads: of a head-major cache, else 0 (the reader says) */
    /* In a layer function (dedup.c): k > 0 when the offset (tensor) differs between the
     * layers that call it and is argument a[k - 1]; 0: the literal above. */
    int offset_arg, tensor_arg;
} lw_ref;

/* How a step's work is shared between the threads (every thread runs the forward function,
 * kiln_rt.h; a barrier separates steps where one reads what another thread wrote). */
typedef enum lw_par {
    LW_PAR_ONE,                /* share 0 alone runs it */
    LW_PAR_ROWS,               /* its rows split (kernels.h: krt_share_rows), when there are
                                  enough of them; else share 0 runs it */
    LW_PAR_PANELS,             /* a product: whole panels of output rows per thread */
    LW_PAR_PAIRS,              /* attention: (token, head) pairs per thread */
} lw_par;

/* The rows of the block a step runs for. */
typedef enum lw_rows {
    LW_ROWS_NONE,              /* the value has no token axis: computed once */
    LW_ROWS_ALL,               /* rows 0 .. T-1 */
    LW_ROWS_TAIL,              /* rows t0 .. T-1 (only logits rows are wanted) */
    LW_ROWS_LOOP,              /* the rows of its guard region: the tokens whose guard is true */
} lw_rows;

/* Kernels: X(name, doc). Parameters n[] and f per kernel are listed with it. */
#define LW_KERNELS(X)                                                                          \
    X(constant, "dst = value")                                                                 \
    X(positions, "dst[r] = pos0 + r (int32)")                                                  \
    X(zeros, "dst rows = 0; n0 elements per row")                                              \
    X(widen, "dst = weight src0 as f32; n0 rows, n1 columns")                                  \
    X(embed, "dst[r] = row src1[r] of table src0; n0 vocab, n1 width")                         \
    X(linear, "dst = src0 src1^T; n0 out, n1 in; flag: 8-bit activations (kernels.h)")        \
    X(map, "element by element (op's C expression); n0 elements per row; n1 heads, n2 "       \
           "capacity for causal [H, S] values (mode 1), cache rows (mode 2): n3 mode")          \
    X(reduce, "per-row reduction op; n0 elements")                                             \
    X(dot, "dst[r] = src0[r] . src1[r]; n0 elements")                                          \
    X(extract, "dst[r] = src0[r][n1]")                                                          \
    X(topk, "mask of the n1 largest of n0")                                                    \
    X(slice, "dst[r] = src0[r][n1 .. n1+n2)")                                                  \
    X(concat, "dst[r] = src0[r] (n0), src1[r] (n1)")                                           \
    X(softmax, "softmax of rows of n0")                                                        \
    X(softmax_causal, "softmax of [H, S] rows over live positions; n0 heads, n1 capacity")    \
    X(rope, "rotary; n0 heads, n1 head_dim, n2 rot, f base, flag interleaved")                 \
    X(rope_heads, "rotary, one base per head; n0 heads, n1 head_dim, n2 rot, fvec the n0 "     \
                  "bases, flag interleaved")                                                   \
    X(cache_store, "cache rows pos0 .. pos0+T-1 = src0; n1 kv heads, n2 head_dim")             \
    X(attn_scores, "n0 heads, n1 kv heads, n2 head_dim, n3 capacity")                          \
    X(attn_apply, "n0 heads, n1 kv heads, n2 head_dim, n3 capacity")                           \
    X(attention, "fused: n0 heads, n1 kv heads, n2 head_dim of k, n3 of v, f scale")          \
    X(stat, "statistic n0 += src0 for each row")                                               \
    X(output, "the logits are dst")

typedef enum lw_kernel {
#define X(name, doc) LK_##name,
    LW_KERNELS(X)
#undef X
    LK_COUNT
} lw_kernel;

/* Fusion (codegen/fuse.c): a map step that absorbed the maps producing its operands computes
 * one expression, a tree in postfix order (the root last) of at most LW_EXPR_MAX nodes. A
 * leaf reads operand `leaf` of the step's fsrc[]; an op node applies the op's cexpr to the
 * nodes arg[]. A node whose value is one float per row (every leaf below it is) is computed
 * once per row, before the element loop. */
#define LW_EXPR_MAX 16
typedef struct lw_enode {
    int leaf;                  /* >= 0: a leaf, index into fsrc; -1: an op node */
    ir_op op;
    int inst;                  /* op node: the IR instruction it computes */
    int arg[3];                /* op node: node indices (earlier in expr) */
    int scalar;                /* one value per row */
} lw_enode;

typedef struct lw_step {
    lw_kernel kernel;
    int inst;                  /* the IR instruction it computes */
    ir_op op;                  /* map/reduce: which op */
    lw_rows rows;
    lw_par par;                /* how the threads share it */
    int loop;                  /* >= 0: inside per-token loop #loop */
    lw_ref dst;
    int nsrc;
    lw_ref src[IR_MAX_ARGS];
    int64_t n[4];
    float f;
    const float *fvec;         /* rope_heads: nfvec bases (the module's arena owns them) */
    int nfvec;
    int flag;
    /* In a layer function (dedup.c), k > 0: argument a[k - 1] says whether rows (ALL) are
     * in fact LW_ROWS_TAIL (1) in the calling layer; stat_arg: a[k - 1] is the stat slot n0. */
    int rows_arg, stat_arg;
    /* fusion (fuse.c); zero: none */
    int nexpr;                 /* map: > 0, computes expr over fsrc instead of op over src */
    lw_enode expr[LW_EXPR_MAX];
    int nfsrc;
    lw_ref fsrc[LW_EXPR_MAX];
    lw_ref res;                /* linear: LW_NONE, or dst = res + src0 src1^T (the epilogue of */
    int res_inst;              /* the add instruction res_inst; res without the token axis: */
} lw_step;                     /* one row for every token, a bias) */

/* A guard region: steps first .. last run for each token whose guard row is true. */
typedef struct lw_loop {
    int first, last;
    lw_ref guard;
    lw_rows rows;              /* LW_ROWS_ALL or LW_ROWS_TAIL: which tokens it visits */
    int rows_arg;              /* in a layer function: as lw_step.rows_arg */
} lw_loop;

typedef struct lw_cache {
    const char *label;         /* "k_cache l=3" */
    int64_t width, capacity, offset;
    int64_t kv_heads;          /* head-major: its heads; position-major: 1 */
    uint32_t dtype;            /* storage type, KBLOB_* */
    int head_major;
} lw_cache;

/* A layer function (dedup.c): the steps of one layer body, shared by every layer of that
 * structure. Its loops' first/last index its own steps; its steps' loop, its own loops.
 * What differs between the layers (addresses, rows) is read from nargs int64 arguments. */
typedef struct lw_fn {
    lw_step *steps; int nsteps;
    lw_loop *loops; int nloops;
    int nargs;
    int ncalls;
} lw_fn;

/* A call of layer function fn in forward: it replaces the steps first .. last of the
 * program, the body of layer `layer`, and passes args (fn's nargs values). */
typedef struct lw_call {
    int fn;
    int first, last;
    int layer;
    int64_t *args;
} lw_call;

typedef struct lw_program {
    const ir_module *m;
    uint64_t scratch_bytes;    /* per thread: a guard region's rows, then what the kernels need */
    uint64_t index_bytes;      /* of them, the rows: t_max int32, 64-byte aligned */
    lw_step *steps; int nsteps;
    lw_loop *loops; int nloops;
    lw_cache *caches; int ncaches;
    uint32_t *tensor_dtype;    /* per blob tensor: its KBLOB_* storage type */
    lw_ref logits;
    lw_fn *fns; int nfns;      /* dedup.c: none when off (-O0), the steps straight-line */
    lw_call *calls; int ncalls;    /* in step order */
} lw_program;

/* Lowers a planned module. 0, or -1 after reporting what no kernel can do. */
int lower_program(const ir_module *m, lw_program *p);
/* Fuses elementwise chains into their reader and residual/bias adds into the linear that
 * feeds them (fuse.c), recording each fusion with pass_note("fuse", ...); nothing with -O0
 * (passes_opts.o0). */
void lower_fuse(lw_program *p);
void lower_free(lw_program *p);

/* dedup.c: layer dedup. Layers of the same structure (every field of every step but the
 * addresses) share one function; fills p->fns and p->calls and notes each decision
 * (pass_note "dedup"). Off under -O0 (passes_opts.o0). The steps stay as they were. */
void lower_dedup(lw_program *p);
void lower_dedup_free(lw_program *p);

#endif
