/* sema_internal.h - what the parts of the semantic pass share: values, scopes, the state of
 * the lowering in progress, and the helpers that emit IR. Private to frontend/sema*.c and
 * frontend/builtins.c; the interface of the pass is sema.h.
 *
 *   sema.c          values, scopes, expressions, calls, statements, the model
 *   builtins.c      the builtin operations (linear, rope, cache, softmax, ...)
 *   sema_weights.c  weight declarations: loops, conditions, name templates, views
 */
#ifndef KILN_SEMA_INTERNAL_H
#define KILN_SEMA_INTERNAL_H

#include <stdint.h>

#include "../ir/ir.h"
#include "sema.h"

/* ---------------------------------------------------------------- values */

typedef enum vkind { V_ERR, V_NONE, V_INT, V_FLOAT, V_STR, V_TENSOR, V_WARRAY, V_WVIEW,
                     V_VARRAY, V_BLOCK, V_DEF, V_LIST } vkind;

typedef struct wdecl wdecl;
typedef struct varray varray;
typedef struct slist slist;
typedef struct scope scope;

typedef struct sval {
    vkind kind;
    int64_t i;                 /* V_INT */
    double f;                  /* V_FLOAT */
    const char *s;             /* V_STR */
    int id;                    /* V_TENSOR: IR value */
    wdecl *wd;                 /* V_WARRAY / V_WVIEW: the declaration */
    int nidx;                  /* V_WARRAY: array indices given so far */
    int64_t idx[KILN_MAX_WEIGHT_LOOPS];
    int tensor;                /* V_WVIEW: module tensor index */
    int64_t row, col;          /* V_WVIEW: first row and column of the view in the tensor */
    ir_type vt;                /* V_WVIEW: view shape */
    varray *va;                /* V_VARRAY */
    ast_node *fn;              /* V_BLOCK / V_DEF */
    scope *fn_scope;           /* where the block/def was defined */
    slist *list;               /* V_LIST */
} sval;

extern const sval err_val;

/* One declared weight name: an array over its loop indices (0-d for plain weights). */
struct wdecl {
    const char *name;
    ast_node *decl;
    int ndim;
    const char *dim_name[KILN_MAX_WEIGHT_LOOPS];
    int64_t lo[KILN_MAX_WEIGHT_LOOPS], hi[KILN_MAX_WEIGHT_LOOPS];
    int *entries;              /* tensor index per index tuple, -1 when its condition was false */
    int64_t nentries;
};

/* A compile-time list (`param bases = [1, 2]`): items all V_INT, all V_FLOAT (a list of
 * numbers; integers among them become numbers) or all V_STR. Never empty. */
struct slist {
    vkind item;
    int n;
    sval *items;
};

struct varray {
    int64_t *keys;
    sval *vals;
    int n, cap;
};

typedef struct binding {
    const char *name;
    sval val;
    int read;                  /* looked up by an expression (for the unread -D warning) */
    ast_node *site;            /* the assignment of a tensor value, until it is read (the
                                  unused-value warning); NULL otherwise */
    struct binding *next;
} binding;

struct scope {
    binding *first;
    scope *parent;
};

/* ---------------------------------------------------------------- state */

typedef struct loopvar {
    const char *name;
    int64_t value;
} loopvar;

/* Limits that keep a mistaken spec (layers = 100000000) from running away (base/limits.h). */
enum { MAX_INSTS = KILN_MAX_INSTS, MAX_ITERATIONS = KILN_MAX_ITERATIONS,
       MAX_TENSORS = KILN_MAX_WEIGHTS, MAX_CALL_DEPTH = KILN_MAX_CALL_DEPTH,
       MAX_LOOP_DEPTH = KILN_MAX_LOOP_DEPTH, MAX_EXPR_DEPTH = KILN_MAX_EXPR_DEPTH };

struct sema_state {
    ir_module *m;
    scope *root, *model;
    loopvar loops[MAX_LOOP_DEPTH];   /* the `for`s and `sum`s being unrolled */
    int nloops;
    int guard;                 /* current guard (-1: none) */
    int depth;                 /* block call depth */
    int expr_depth;            /* eval recursion depth, for MAX_EXPR_DEPTH */
    uintptr_t stack_base;      /* frame address at sema_lower, and how far below it */
    size_t stack_budget;       /* eval may recurse (calls nest with their own counts) */
    int token_id;
    wdecl **wdecls;
    int nwdecls;
    int64_t iterations;        /* loop iterations so far, for MAX_ITERATIONS */
    int stopped;               /* a limit was hit: evaluation unwinds */
    ast_node *returned;        /* the value of the last `return` executed */
    int notes_err, notes;      /* "in this call" notes given for the current error */
    int *view_hash, *const_hash, *tensor_hash;   /* open addressing: id + 1, 0 = empty */
    int hash_cap;
    ast_node **sites;          /* assignments of tensor values, for the unused-value warning */
    int nsites, csites;
};

/* The state of the one lowering in progress (sema.c). */
extern struct sema_state S;


typedef struct wctx {          /* the weight loops enclosing a declaration */
    int nr;
    ast_node *ranges[KILN_MAX_WEIGHT_LOOPS];
    int64_t lo[KILN_MAX_WEIGHT_LOOPS], hi[KILN_MAX_WEIGHT_LOOPS], cur[KILN_MAX_WEIGHT_LOOPS];
} wctx;

static inline sval mk_int(int64_t i) { return (sval){.kind = V_INT, .i = i}; }
static inline sval mk_float(double f) { return (sval){.kind = V_FLOAT, .f = f}; }
static inline sval mk_tensor(int id) { return (sval){.kind = V_TENSOR, .id = id}; }
static inline int is_num(const sval *v) { return v->kind == V_INT || v->kind == V_FLOAT; }
static inline double num(const sval *v) { return v->kind == V_INT ? (double)v->i : v->f; }
static inline const ir_type *tensor_type(int id) { return &S.m->insts[id].type; }

/* sema.c */
void *sema_alloc(size_t size);
scope *scope_new(scope *parent);
binding *scope_find_local(scope *s, const char *name);
binding *scope_find(scope *s, const char *name);
void scope_set(scope *s, const char *name, sval v);
int over_limit(ast_node *at, int hit, const char *what);
uint64_t hash_string(const char *s);
int *hash_slot(int *t, uint64_t key, int (*same)(int id, const void *arg), const void *arg);
const char *kind_name(vkind k);
/* Emits op over args (ids) with the attributes of *proto (NULL: none; for weight views and
 * zeros, proto->type is the declared type) under the current guard and loop scope. The type
 * comes from the op's typing rule; a refusal is reported at `at`. Returns the id, or -1. */
int emit(ast_node *at, ir_op op, int nargs, const int *args, const ir_inst *proto);
/* A prototype carrying attributes for emit. */
ir_inst attrs_i(int64_t a, int64_t b, int64_t c);
int as_tensor(ast_node *at, const sval *v);
int expect_int(ast_node *at, const sval *v, const char *what, int64_t *out);
/* op over the values as tensors (constants become `const`s), with the attributes of *attrs
 * (NULL: none); the op's typing rule checks them. */
sval op_value(ast_node *at, ir_op op, int n, const sval *args, const ir_inst *attrs);
/* An elementwise op (scalars broadcast). */
sval elementwise(ast_node *at, ir_op op, int n, const sval *args);
sval eval(scope *sc, ast_node *e);
int64_t warray_entry(ast_node *at, const wdecl *wd, const int64_t *idx);

/* An error for a list used where one value is needed (at `at`, saying `what` needs it);
 * returns 1 if v is a list. */
int reject_list(ast_node *at, const sval *v, const char *what);

/* builtins.c */
typedef sval (*builtin_fn)(ast_node *e, sval *args);
typedef struct builtin {
    const char *name;
    int arity;
    builtin_fn fn;
    const char *usage;
} builtin;
/* The builtin operation called `name`, or NULL. */
const builtin *builtin_find(const char *name);

/* sema_weights.c: declares the items of a `weights` body (recursing into its loops). */
void weights_items(scope *sc, ast_node *body, wctx *w);

#endif
