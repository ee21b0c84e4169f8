/* ir.h - the kiln graph IR: what one call of the compiled forward function computes for a
 * block of T tokens, as a list of typed SSA instructions.
 *
 * A module reads the tokens of a block at positions pos0 .. pos0+T-1 (pos0 and T are
 * implicit) and produces their logits. Layer loops, blocks and compile-time conditions are
 * unrolled by the front end, so the list is straight-line. The only control flow is a guard:
 * an instruction with guard >= 0 runs, for each token, only when that token's row of the
 * scalar bool value `guard` is true (data-dependent expert selection). A guarded value is
 * used only by instructions with the same guard, or as the term of an accum_if whose
 * predicate is that guard (the verifier checks this). A run of instructions with one guard
 * is a guard region (ir_guard_regions): it runs token by token.
 *
 * Types: every value has a dtype and a static shape. Values computed from the tokens have a
 * leading token axis T (symbolic, at most the module's t_max); weights, constants and caches
 * do not. The cached-positions axis S is symbolic too (capacity in the dim). Weights keep
 * their checkpoint's storage type (f32, f16, bf16, block types); every op computes in f32.
 *
 * Files: ir.c (types, builder), recipe.c (tensors computed when packing), rewrite.c
 * (building a module from another, use lists), typing.c (one typing rule per op), print.c
 * (the versioned text dump), read.c (reading it back), verify.c (the verifier), ops.c (the
 * op table). Format: docs/ir.md.
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include <stdint.h>
#include <stdio.h>

#include "../base/base.h"
#include "ops.h"

#define IR_MAX_RANK KILN_MAX_RANK
#define IR_MAX_ARGS 3
#define IR_DUMP_VERSION 2
/* Limits of the checked type constructor: a value holds at most 2^36 elements (per
 * token, for values with the token axis); the frame and the state at most IR_MAX_BYTES. */
#define IR_MAX_ELEMS KILN_MAX_ELEMS   /* base/limits.h */
#define IR_MAX_BYTES KILN_MAX_BYTES
#define IR_DEFAULT_BATCH 64

typedef enum ir_dtype {
    DT_F32, DT_I32, DT_BOOL,                  /* what ops compute in */
    DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0,        /* storage types of weights */
    DT_COUNT
} ir_dtype;

typedef struct ir_type {
    ir_dtype dtype;
    int tok;                   /* 1: a leading token axis T, not counted in rank */
    int rank;                  /* per-token rank; 0 = scalar */
    int64_t dim[IR_MAX_RANK];
    unsigned seq;              /* bit k set: dim[k] is the symbolic S; dim[k] is its capacity */
} ir_type;

/* Where a value lives once memory is planned (passes/memplan.c). */
typedef enum ir_mem { MEM_NONE, MEM_FRAME, MEM_STATE } ir_mem;

typedef struct ir_inst {
    ir_op op;
    int nargs;
    int args[IR_MAX_ARGS];     /* value ids (= instruction indices) */
    ir_type type;
    int guard;                 /* -1, or the id of a scalar bool: runs only where it is true */
    int64_t iattr[3];          /* integer and tensor attributes, in the op table's order */
    double fattr;              /* the "f:" attribute, always a float value */
    const float *fvec;         /* the "v:" attribute: nfvec floats (arena-owned, base.h) */
    int nfvec;
    const char *sattr;         /* the "s:" attribute (interned) */
    const char *label;         /* source name bound to the value ("q", "act"), or NULL */
    const char *scope;         /* loop indices when it was made ("l=3 e=2"), or NULL */
    src_loc loc;               /* in the spec; no file when read from a dump */
    ir_mem mem;                /* after memory planning: the region of the value ... */
    int64_t offset;            /* ... and its byte offset there */
} ir_inst;

/* How a tensor computed when packing is made (recipe.c): a tree whose leaves are checkpoint
 * tensors. Shapes are checked when a recipe is made (ir_recipe_type). */
typedef enum ir_recipe_op {
    RC_LOAD,                   /* the checkpoint tensor `name` of type `type` */
    RC_CONCAT,                 /* the sources stacked along their first dimension */
    RC_ROWS,                   /* rows [range[2k], range[2k+1]) of the source, in order */
    RC_COLS,                   /* the same for columns of a matrix */
    RC_SCALE_COLS,             /* w [o, i] with column j times g[j]: a norm gain folded */
    RC_MATVEC_T,               /* a [n, m], v [n] -> a^T v [m]: a vector folded through */
    RC_TRANSPOSE,              /* a [n, m] -> [m, n]: a weight stored transposed ([in, out]) */
    RC_COUNT
} ir_recipe_op;

typedef struct ir_recipe {
    ir_recipe_op op;
    const char *name;          /* RC_LOAD: the checkpoint name */
    ir_type type;              /* the result's shape (RC_LOAD: declared, with its dtype) */
    src_loc loc;               /* RC_LOAD: the declaration */
    int nsrc;
    const struct ir_recipe *const *src;
    int nrange;                /* RC_ROWS, RC_COLS: nrange [begin, end) pairs */
    const int64_t *range;
    int depth;                 /* ops above the deepest RC_LOAD (0 for one): at most
                                  KILN_MAX_RECIPE_DEPTH, so printing and evaluating recurse
                                  a bounded depth */
} ir_recipe;

/* How a tensor's bytes are ordered in the blob (runtime/kiln_blob.h): row after row, or in
 * panels of 16 rows stored column by column, the order the matrix kernels stream
 * (passes/wlayout.c chooses it for matrices only products, embeddings and widening read). */
typedef enum ir_layout { IR_LAYOUT_ROWS, IR_LAYOUT_PANEL } ir_layout;

/* A tensor the model reads, whole; weight instructions are views into it. Without a recipe
 * it is the checkpoint's tensor `name`; with one, the packer computes it. */
typedef struct ir_tensor {
    const char *name;          /* checkpoint name, templates expanded (recipe: the decl) */
    const char *decl;          /* spec name with array indices: "wq[3]", "e[0,1]" */
    ir_type type;              /* dtype: the storage type */
    src_loc loc;               /* the declaration, for diagnostics about the file */
    const ir_recipe *recipe;   /* NULL: loaded as it is */
    ir_layout layout;          /* printed "panel" after the type; rows by default */
} ir_tensor;

typedef struct ir_rtparam {
    const char *name;
    double value;              /* default */
} ir_rtparam;

typedef struct ir_stat {
    const char *name;          /* "active_fraction[2]" */
} ir_stat;

/* A compile-time parameter and its final value (after -D), recorded for the dump. */
typedef struct ir_param {
    const char *name;
    const char *text;          /* the value as printed: 64, 1e-05, "half" */
} ir_param;

typedef struct ir_module {
    const char *name;
    ir_param *params;   int nparams, cparams;
    ir_tensor *tensors; int ntensors, ctensors;
    ir_rtparam *rtparams; int nrtparams, crtparams;
    ir_stat *stats;     int nstats, cstats;
    ir_inst *insts;     int ninsts, cinsts;
    int output;                /* id of the logits value (the output's operand), or -1 */
    int64_t vocab;             /* logits per token */
    int64_t ctx;               /* most positions the program can take: least cache capacity */
    int64_t t_max;             /* the largest block of tokens (T) one call takes */
    int planned;               /* memory planned: every value's mem and offset are set */
    int64_t frame_bytes;       /* when planned: the frame (values of one call) ... */
    int64_t state_bytes;       /* ... and the state (KV caches, kept across calls) */
} ir_module;

ir_module *ir_module_new(const char *name);
void ir_module_free(ir_module *m);

/* builder (ir.c) */
int ir_add_param(ir_module *m, const char *name, const char *text);
int ir_add_tensor(ir_module *m, const char *name, const char *decl, ir_type type, src_loc loc);
int ir_add_rtparam(ir_module *m, const char *name, double value);
int ir_add_stat(ir_module *m, const char *name);
/* Appends a copy of *proto (op, nargs, args, attributes, guard, type, names) and returns its
 * id. The type is not checked here: front ends use ir_infer first. */
int ir_append(ir_module *m, const ir_inst *proto);
/* A prototype instruction of op with its operands, no guard, no attributes. */
ir_inst ir_inst_make(ir_op op, int nargs, const int *args);
static inline ir_inst *ir_get(ir_module *m, int id) { return &m->insts[id]; }
/* Sets the storage type of tensor t and of every weight view of it. */
void ir_set_storage(ir_module *m, int t, ir_dtype dt);
/* The integer after "key=" in a scope ("l=3 e=2": key "l" gives 3, "e" 2), or -1 when the
 * scope (which may be NULL) has no such index: the layer and the expert of an instruction. */
long ir_scope_index(const char *scope, const char *key);
/* Recomputes what follows from the instructions: vocab, ctx and output. */
void ir_module_derive(ir_module *m);

/* recipe.c: tensors computed when packing. Recipes live in the arena (base.h). */
extern const char *const ir_recipe_names[RC_COUNT];
int ir_recipe_lookup(const char *name, size_t len);          /* -1 if none (never RC_LOAD) */
const ir_recipe *ir_recipe_load(const char *name, ir_type type, src_loc loc);
/* The recipe of tensor t: its own, or a load of its checkpoint name. */
const ir_recipe *ir_recipe_of(const ir_tensor *t);
/* A recipe of op over src[] (and ranges for rows/cols), its type checked: 0, or -1 with a
 * message. The result's dtype is the first source's. */
int ir_recipe_make(const ir_recipe **out, ir_recipe_op op, const ir_recipe *const *src,
                   int nsrc, const int64_t *range, int nrange, char *why, size_t size);
int ir_recipe_type(const ir_recipe *r, ir_type *out, char *why, size_t size);
/* Appends a tensor made by recipe r, stored as dtype; its name is decl. Returns its index. */
int ir_add_recipe_tensor(ir_module *m, const char *decl, ir_dtype dtype, const ir_recipe *r,
                         src_loc loc);
/* The recipe of what the weight instruction `view` sees of its tensor: the tensor's own when
 * the view is all of it, else rows/cols of it (a row of a matrix is [1, n], which scale_cols
 * and matvec_t take as a vector). NULL for views no recipe can express. */
const ir_recipe *ir_recipe_of_view(const ir_module *m, const ir_inst *view);
/* Whether the checkpoint tensor `name` is one of r's leaves. */
int ir_recipe_reads(const ir_recipe *r, const char *name);
/* Whether sub is r or a part of it: the same operations, ranges, leaf names and shapes
 * (storage types aside). */
int ir_recipe_contains(const ir_recipe *r, const ir_recipe *sub);
/* The leaf (RC_LOAD) of a recipe that only cuts and transposes one checkpoint tensor (load,
 * rows, cols, transpose: a view of it, as a spec's weight binding makes), else NULL. */
const ir_recipe *ir_recipe_view_leaf(const ir_recipe *r);

/* types (ir.c) */
/* The one checked constructor: dims >= 1, element counts within IR_MAX_ELEMS. Returns 0, or
 * -1 with a message in why[]. */
int ir_type_make(ir_type *out, ir_dtype dt, int tok, int rank, const int64_t *dim,
                 unsigned seq, char *why, size_t size);
ir_type ir_type_scalar(ir_dtype dt);
int ir_type_equal(const ir_type *a, const ir_type *b);
int64_t ir_type_numel(const ir_type *t);       /* per token, with S at its capacity */
int ir_dtype_is_storage(ir_dtype dt);          /* f16, bf16 and the block types */
/* Bytes of the value of `in` for one token (or the whole value without a token axis), and
 * with T at t_max. */
int64_t ir_value_bytes(const ir_module *m, const ir_inst *in);
/* Whether the value of `in` lives in memory planned for it (tokens, weights, run-time
 * parameters and effects without a value do not). */
int ir_needs_storage(const ir_inst *in);
/* "f32[T, 64]", "f32[4, S<=128]", "bool[]" into buf; returns buf */
char *ir_type_str(const ir_type *t, char *buf, size_t size);
/* The per-token shape as a spec author writes it: "[64]", "[4, 128]", "[]" */
char *ir_shape_str(const ir_type *t, char *buf, size_t size);
const char *ir_dtype_name(ir_dtype dt);
int ir_dtype_lookup(const char *name);         /* -1 if none */

/* typing.c: the result type of `in` (its op, attributes, guard, declared type) over operand
 * types args[]; 0, or -1 with a message. */
int ir_infer(const ir_module *m, const ir_inst *in, const ir_type *args, ir_type *out,
             char *why, size_t size);

/* Guard regions: end[i] = the last instruction of the guard region of i (i itself when i
 * is not guarded). A region is a run of instructions with one guard; weight views,
 * run-time parameters, the tokens and constants between them do not end it. malloc'ed,
 * m->ninsts entries. */
int *ir_guard_regions(const ir_module *m);

/* rewrite.c: building a new module from an old one. The new module starts with the old
 * one's tables (tensors may be dropped); instructions are copied, replaced, inserted or left
 * out, in order. map[old id] is the new id of an old value (-1: not copied). */
typedef struct ir_rewriter {
    const ir_module *old;
    ir_module *m;              /* the module being built */
    int *map;                  /* old value id -> new id, -1 */
    int *tensor_map;           /* old tensor -> new tensor, -1 if dropped */
} ir_rewriter;
/* keep_tensor: NULL keeps every tensor, else keep_tensor[t] != 0 keeps tensor t. */
void ir_rw_begin(ir_rewriter *rw, const ir_module *old, const int *keep_tensor);
/* Old instruction id with its operands, guard and tensor renamed, not yet added. */
ir_inst ir_rw_renamed(const ir_rewriter *rw, int id);
/* Copies old instruction id (operands and guard mapped); returns its new id. */
int ir_rw_copy(ir_rewriter *rw, int id);
/* Appends a new instruction whose operands are already new ids. */
int ir_rw_add(ir_rewriter *rw, const ir_inst *proto);
/* From now on, readers of old value id read new value new_id (replace). */
void ir_rw_replace(ir_rewriter *rw, int id, int new_id);
/* The new module; the old one is left as it was (the caller frees it). */
ir_module *ir_rw_end(ir_rewriter *rw);
/* A copy of m, unplanned (a starting point kept while passes change the original). */
ir_module *ir_module_copy(const ir_module *m);

/* Use lists: users of value v are user[first[v] .. first[v+1]-1], in order (an operand or
 * guard read counts once per instruction). */
typedef struct ir_uses {
    int *first;                /* ninsts + 1 entries */
    int *user;
} ir_uses;
void ir_uses_build(const ir_module *m, ir_uses *u);
void ir_uses_free(ir_uses *u);
static inline int ir_use_count(const ir_uses *u, int v) { return u->first[v + 1] - u->first[v]; }

/* print.c: the versioned text dump ("kiln-ir 2"). scope_filter: print only instructions
 * whose scope starts with it (e.g. "l=2"), or NULL for all. */
void ir_print(FILE *out, const ir_module *m, const char *scope_filter);
/* Graphviz of the same graph. */
void ir_print_dot(FILE *out, const ir_module *m, const char *scope_filter);

/* read.c: parses a dump (path names it in messages). NULL after reporting errors as
 * path:line:col: error: ... */
ir_module *ir_read(const src_file *file);

/* verify.c: checks every invariant; prints each violation to stderr and returns their count. */
int ir_verify(const ir_module *m);

#endif
