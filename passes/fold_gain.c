/* fold_gain.c - a norm's gain folded into the matrix products that read the norm.
 *
 * requires: verified IR, after widen (a f16/bf16 gain is read through its `widen`)
 * preserves: values up to rounding (x (n * g) W^T = n (W diag g)^T: the scaled weight is
 *            computed in f32 when packing and stored in W's storage type, one rounding);
 *            effects and their order; every other instruction
 * When `mul(n, g)`, g a weight vector view [d] (or a widen of one), is read only by linears
 * as their input, and every view of each such linear's weight tensor is read only by them,
 * the tensor is replaced by a new one, scale_cols(W, g), and the linears read n. The mul is
 * left out; the gain's view and the old tensor are left for dce. Not folded (and noted):
 * a mul with another reader, a weight also read elsewhere (a tied embedding and
 * classifier: folding would store a second copy of a vocab x d matrix), and a weight stored
 * in a block type (q8_0, q4_0): scaling it would quantize it anew, a different model from
 * the checkpoint's, not a rounding of it.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define PASS "fold-gain"

typedef struct gain_fold {
    int mul;                   /* the mul(n, g) folded, or -1 */
    int norm;                  /* n: what the linears read instead */
    int gain;                  /* g's weight view */
} gain_fold;                   /* old ids */

/* The weight view that `v` is, directly or through a widen; -1 if none. */
static int weight_view_of(const ir_module *m, int v)
{
    const ir_inst *in = &m->insts[v];
    if (in->op == IR_widen)
        in = &m->insts[v = in->args[0]];
    return in->op == IR_weight ? v : -1;
}

/* The gain operand of mul `i`: a weight vector [d] beside a per-token [d] value; -1. */
static int mul_gain(const ir_module *m, int i, int *norm)
{
    const ir_inst *in = &m->insts[i];
    if (in->op != IR_mul || in->type.rank != 1 || !in->type.tok)
        return -1;
    for (int k = 0; k < 2; k++) {
        int g = weight_view_of(m, in->args[k]);
        const ir_inst *n = &m->insts[in->args[1 - k]];
        if (g >= 0 && m->insts[g].type.rank == 1 && ir_type_equal(&n->type, &in->type)) {
            *norm = in->args[1 - k];
            return g;
        }
    }
    return -1;
}

/* Why the weight of linear `lin` cannot take the gain of mul `mul`, or NULL: every reader of
 * every view of its tensor must be a linear whose input is the mul, and the view must cover
 * the tensor's columns (scale_cols scales whole columns). */
static const char *weight_refusal(const ir_module *m, const ir_uses *u, int mul, int lin,
                                  char *why, size_t size)
{
    const ir_inst *w = &m->insts[m->insts[lin].args[1]];
    if (w->op != IR_weight || w->type.rank != 2)
        return "the weight is not a matrix view";
    const ir_tensor *t = &m->tensors[w->iattr[0]];
    if (t->type.rank != 2 || w->iattr[2] != 0 || w->type.dim[1] != t->type.dim[1])
        return "the weight view does not cover its tensor's columns";
    if (t->type.dtype == DT_Q8_0 || t->type.dtype == DT_Q4_0) {
        snprintf(why, size, "%s is stored as %s (scaling would quantize it anew)", t->decl,
                 ir_dtype_name(t->type.dtype));
        return why;
    }
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *view = &m->insts[v];
        if (view->op != IR_weight || view->iattr[0] != w->iattr[0])
            continue;
        for (int k = u->first[v]; k < u->first[v + 1]; k++) {
            const ir_inst *r = &m->insts[u->user[k]];
            if (r->op == IR_linear && r->args[0] == mul && r->args[1] == v)
                continue;
            snprintf(why, size, "%s is also read by %s (folding would store a second copy of "
                     "a [%lld, %lld] matrix)", t->decl, ir_ops[r->op].name,
                     (long long)t->type.dim[0], (long long)t->type.dim[1]);
            return why;
        }
    }
    return NULL;
}

/* Whether mul `i` folds; notes why not when it is a gain that does not. */
static int gain_folds(const ir_module *m, const ir_uses *u, int i, gain_fold *f)
{
    int norm, g = mul_gain(m, i, &norm);
    if (g < 0 || ir_use_count(u, i) == 0)
        return 0;
    const ir_inst *in = &m->insts[i];
    const char *gname = m->tensors[m->insts[g].iattr[0]].decl;
    const char *scope = in->scope ? in->scope : "top";
    char why[256];
    for (int k = u->first[i]; k < u->first[i + 1]; k++) {
        const ir_inst *r = &m->insts[u->user[k]];
        if (r->op != IR_linear || r->args[0] != i || r->args[1] == i) {
            pass_note(PASS, "%s: %s not folded: the product is also read by %s", scope, gname,
                      ir_ops[r->op].name);
            return 0;
        }
        const char *no = weight_refusal(m, u, i, u->user[k], why, sizeof why);
        if (no) {
            pass_note(PASS, "%s: %s not folded: %s", scope, gname, no);
            return 0;
        }
    }
    *f = (gain_fold){i, norm, g};
    return 1;
}

/* The tensor (new index) that replaces old tensor t, scaled by the gain of fold f. */
static int scaled_tensor(ir_rewriter *rw, const gain_fold *f, int t)
{
    const ir_module *m = rw->old;
    const ir_tensor *w = &m->tensors[t];
    const ir_recipe *src[2] = {ir_recipe_of(w), ir_recipe_of_view(m, &m->insts[f->gain])};
    const ir_recipe *r;
    char why[160];
    if (!src[1] || ir_recipe_make(&r, RC_SCALE_COLS, src, 2, NULL, 0, why, sizeof why))
        DIE("fold-gain: scale_cols(%s): %s", w->decl, src[1] ? why : "gain view");
    const char *decl = base_intern_fmt("%s*%s", w->decl,
                                       m->tensors[m->insts[f->gain].iattr[0]].decl);
    return ir_add_recipe_tensor(rw->m, decl, w->type.dtype, r, w->loc);
}

ir_module *pass_fold_gain(ir_module *m)
{
    ir_uses u;
    ir_uses_build(m, &u);
    gain_fold *by_tensor = malloc(sizeof *by_tensor * (size_t)(m->ntensors ? m->ntensors : 1));
    int *new_tensor = malloc(sizeof(int) * (size_t)(m->ntensors ? m->ntensors : 1));
    char *folded = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    int *norm_of = malloc(sizeof(int) * (size_t)(m->ninsts ? m->ninsts : 1));
    if (!by_tensor || !new_tensor || !folded || !norm_of)
        DIE("out of memory");
    for (int t = 0; t < m->ntensors; t++)
        by_tensor[t].mul = new_tensor[t] = -1;
    for (int i = 0; i < m->ninsts; i++) {
        gain_fold f;
        if (!gain_folds(m, &u, i, &f))
            continue;
        folded[i] = 1;
        norm_of[i] = f.norm;
        char names[512];
        size_t n = 0;
        names[0] = 0;
        for (int k = u.first[i]; k < u.first[i + 1]; k++) {
            int t = (int)m->insts[m->insts[u.user[k]].args[1]].iattr[0];
            if (by_tensor[t].mul < 0 && n < sizeof names)
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "",
                                      m->tensors[t].decl);
            by_tensor[t] = f;
        }
        pass_note(PASS, "%s: %s folded into %s", m->insts[i].scope ? m->insts[i].scope : "top",
                  m->tensors[m->insts[f.gain].iattr[0]].decl, names);
    }
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int t = 0; t < m->ntensors; t++)
        if (by_tensor[t].mul >= 0)
            new_tensor[t] = scaled_tensor(&rw, &by_tensor[t], t);
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (folded[i])
            continue;              /* its readers read the norm */
        ir_inst c;
        if (in->op == IR_linear && folded[in->args[0]]) {
            c = *in;
            c.args[0] = rw.map[norm_of[in->args[0]]];
            c.args[1] = rw.map[in->args[1]];
            if (c.guard >= 0)
                c.guard = rw.map[c.guard];
        } else {
            c = ir_rw_renamed(&rw, i);
            if (in->op == IR_weight && new_tensor[in->iattr[0]] >= 0)
                c.iattr[0] = new_tensor[in->iattr[0]];
        }
        rw.map[i] = ir_rw_add(&rw, &c);
    }
    ir_uses_free(&u);
    free(by_tensor);
    free(new_tensor);
    free(folded);
    free(norm_of);
    return ir_rw_end(&rw);
}
