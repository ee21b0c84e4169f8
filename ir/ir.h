/* ir.h - the kiln graph IR: one decode step of a model as a list of typed SSA instructions.
 *
 * A module is what one call of the compiled forward function computes: it reads the token
 * at the current position (`pos`, implicit) and produces the logits. Layer loops, blocks and
 * compile-time conditions are already unrolled by the front end, so the instruction list is
 * straight-line; the only control flow is a guard: an instruction with guard >= 0 runs only
 * when that scalar bool value is true (data-dependent expert selection). The value of a
 * guarded instruction may be used only by instructions with the same guard, or as the term
 * of an accum_if whose predicate is that guard (the verifier checks this).
 *
 * Files: ir.c (builder, types), print.c (versioned text dump), verify.c (verifier),
 * ops.c (op table).
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include <stdint.h>
#include <stdio.h>

#include "../base/base.h"
#include "ops.h"

#define IR_MAX_RANK 4
#define IR_MAX_ARGS 3
#define IR_DUMP_VERSION 1

typedef enum ir_dtype { DT_F32, DT_I32, DT_BOOL } ir_dtype;

typedef struct ir_type {
    ir_dtype dtype;
    int rank;                  /* 0 = scalar */
    int64_t dim[IR_MAX_RANK];
    unsigned seq;              /* bit k set: dim[k] is the symbolic S; dim[k] is its capacity */
} ir_type;

typedef struct ir_inst {
    ir_op op;
    int nargs;
    int args[IR_MAX_ARGS];     /* value ids (= instruction indices) */
    ir_type type;
    int guard;                 /* -1, or the id of a scalar bool: runs only when it is true */
    int64_t iattr[3];          /* integer attributes, in the op table's "i:" order */
    double fattr;              /* the "f:" attribute */
    const char *sattr;         /* the "s:" attribute */
    const char *label;         /* source name bound to the value ("q", "act"), or NULL */
    const char *scope;         /* loop indices when it was made ("l=3 e=2"), or NULL */
    src_loc loc;
    int dead;                  /* set by passes that remove it; skipped everywhere */
    int64_t slot;              /* arena offset in floats (set by memory planning), or -1 */
} ir_inst;

/* A checkpoint tensor the model reads, whole; weight instructions are views into it. */
typedef struct ir_tensor {
    const char *name;          /* checkpoint name, templates expanded */
    const char *decl;          /* spec name with array indices: "wq[3]" */
    ir_type type;
    src_loc loc;               /* the declaration, for diagnostics about the file */
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
    int output;                /* id of the output instruction's operand (the logits), or -1 */
    int64_t vocab;             /* logits length */
    int64_t ctx;               /* most positions the program can take: least cache capacity */
    int64_t arena_floats;      /* arena size once memory is planned (slots set), else 0 */
} ir_module;

ir_module *ir_module_new(const char *name);
void ir_module_free(ir_module *m);

/* builder (ir.c) */
int ir_add_param(ir_module *m, const char *name, const char *text);
int ir_add_tensor(ir_module *m, const char *name, const char *decl, ir_type type, src_loc loc);
int ir_add_rtparam(ir_module *m, const char *name, double value);
int ir_add_stat(ir_module *m, const char *name);
/* Appends an instruction and returns its id; type, attributes, guard are set by the caller on
 * the returned ir_inst (ir_get). */
int ir_emit(ir_module *m, ir_op op, int nargs, const int *args, ir_type type);
static inline ir_inst *ir_get(ir_module *m, int id) { return &m->insts[id]; }

/* types */
ir_type ir_type_scalar(ir_dtype dt);
ir_type ir_type_vec(ir_dtype dt, int64_t n);
ir_type ir_type_mat(ir_dtype dt, int64_t r, int64_t c);
int ir_type_equal(const ir_type *a, const ir_type *b);
int64_t ir_type_numel(const ir_type *t);        /* with S at its capacity */
/* Whether the value of `in` lives in the arena (token, position, weights, run-time
 * parameters and effects without a value do not). */
int ir_needs_storage(const ir_inst *in);
/* "f32[64]", "f32[4, S<=128]", "bool[]" into buf; returns buf */
char *ir_type_str(const ir_type *t, char *buf, size_t size);
const char *ir_dtype_name(ir_dtype dt);

/* print.c: the versioned text dump ("kiln-ir 1"). layer_filter: print only instructions whose
 * scope starts with it (e.g. "l=2"), or NULL for all. */
void ir_print(FILE *out, const ir_module *m, const char *scope_filter);
/* Graphviz of the same graph. */
void ir_print_dot(FILE *out, const ir_module *m, const char *scope_filter);

/* verify.c: checks every invariant; prints each violation to stderr and returns their count. */
int ir_verify(const ir_module *m);

#endif
