/* fold_const.c - constant folding: what can be computed before the program runs is.
 *
 * requires: verified IR, after widen (weights read by dot are f32 views or widens)
 * preserves: effects and their order; values exactly for the scalar folds, up to rounding
 *            for the product fold (x W^T . v = x . W^T v, summed in another order)
 * Three rewrites, in one walk:
 * - dot(linear(x, W), v), W and v weight views: dot(x, w') with w' a new f32 tensor, the
 *   recipe matvec_t(W, v), computed when packing (Finedeep's output-guided gates). The
 *   linear stays while something else reads it.
 * - an elementwise op whose operands are all `const`: one `const`, computed in f32 as the
 *   kernel's C expression (ops.h) computes it. Only the ops whose f32 result IEEE 754 fixes
 *   (neg, sqrt, rsqrt, add, sub, mul, div, max, min): a libm function may round otherwise
 *   on the machine that runs the program; bool results have no `const`.
 * - the identities that hold for every x, -0 and NaN included: x*1, 1*x, x/1, x-0, x+(-0)
 *   (not x+0: -0 + 0 is +0), when x has the result's type.
 */
#include <math.h>
#include <stdlib.h>

#include "passes.h"

#define PASS "fold-const"

static const char *scope_of(const ir_inst *in)
{
    return in->scope ? in->scope : "top";
}

/* The weight view `v` is, directly or through a widen (new module); -1 if none. */
static int weight_view_of(const ir_module *m, int v)
{
    const ir_inst *in = &m->insts[v];
    if (in->op == IR_widen)
        in = &m->insts[v = in->args[0]];
    return in->op == IR_weight ? v : -1;
}

/* dot(linear(x, W), v) -> dot(x, matvec_t(W, v)): the new dot's id, or -1 (new module). */
static int fold_dot(ir_rewriter *rw, const ir_inst *dot)
{
    ir_module *m = rw->m;
    for (int k = 0; k < 2; k++) {
        const ir_inst *lin = &m->insts[dot->args[k]];
        int v = weight_view_of(m, dot->args[1 - k]);
        if (lin->op != IR_linear || v < 0 || m->insts[lin->args[1]].op != IR_weight)
            continue;
        const ir_inst *w = &m->insts[lin->args[1]];
        const ir_recipe *src[2] = {ir_recipe_of_view(m, w), ir_recipe_of_view(m, &m->insts[v])};
        const ir_recipe *r;
        char why[160];
        if (!src[0] || !src[1] ||
            ir_recipe_make(&r, RC_MATVEC_T, src, 2, NULL, 0, why, sizeof why))
            continue;
        const char *wname = w->label ? w->label : m->tensors[w->iattr[0]].decl;
        const char *vname = m->insts[v].label ? m->insts[v].label
                                               : m->tensors[m->insts[v].iattr[0]].decl;
        int t = ir_add_recipe_tensor(m, base_intern_fmt("%s^T*%s", wname, vname), DT_F32, r,
                                     m->tensors[w->iattr[0]].loc);
        ir_inst view = ir_inst_make(IR_weight, 0, NULL);
        view.type = m->tensors[t].type;
        view.iattr[0] = t;
        view.label = m->tensors[t].decl;
        int x = lin->args[0];      /* before adding: the add may move the instructions */
        int args[2] = {x, ir_rw_add(rw, &view)};
        pass_note(PASS, "%s: dot(linear(%%, %s), %s) -> dot(%%, matvec_t)", scope_of(dot),
                  wname, vname);
        ir_inst nd = *dot;
        nd.args[0] = args[0];
        nd.args[1] = args[1];
        return ir_rw_add(rw, &nd);
    }
    return -1;
}

/* op applied to a, b as the kernel's C expression (ops.h) computes it, in f32; 0 when op
 * is not one whose result IEEE 754 fixes. */
static int eval_exact(ir_op op, float a, float b, float *out)
{
    switch (op) {
    case IR_neg: *out = -a; return 1;
    case IR_sqrt: *out = sqrtf(a); return 1;
    case IR_rsqrt: *out = 1.0f / sqrtf(a); return 1;
    case IR_add: *out = a + b; return 1;
    case IR_sub: *out = a - b; return 1;
    case IR_mul: *out = a * b; return 1;
    case IR_div: *out = a / b; return 1;
    case IR_max: *out = (a > b ? a : b); return 1;
    case IR_min: *out = (a < b ? a : b); return 1;
    default: return 0;
    }
}

/* An elementwise op over constants -> one const: its id, or -1 (new module). */
static int fold_scalar(ir_rewriter *rw, const ir_inst *in)
{
    const ir_module *m = rw->m;
    float x[2] = {0, 0}, y;
    if (!(ir_ops[in->op].flags & OPF_ELEMWISE) || in->nargs > 2 || in->guard >= 0)
        return -1;
    for (int k = 0; k < in->nargs; k++) {
        if (m->insts[in->args[k]].op != IR_const)
            return -1;
        x[k] = (float)m->insts[in->args[k]].fattr;
    }
    if (!eval_exact(in->op, x[0], x[1], &y))
        return -1;
    ir_inst c = ir_inst_make(IR_const, 0, NULL);
    c.type = ir_type_scalar(DT_F32);
    if (!ir_type_equal(&c.type, &in->type))
        return -1;
    c.fattr = y;
    c.label = in->label;
    c.scope = in->scope;
    c.loc = in->loc;
    pass_note(PASS, "%s: %s of constants -> const %.9g", scope_of(in), ir_ops[in->op].name, y);
    return ir_rw_add(rw, &c);
}

/* Whether value v is the constant `value` (its sign bit included). */
static int is_const(const ir_module *m, int v, float value)
{
    const ir_inst *in = &m->insts[v];
    return in->op == IR_const && (float)in->fattr == value &&
           signbit((float)in->fattr) == signbit(value);
}

/* x*1, 1*x, x/1, x-0, x+(-0) -> x: x's id, or -1 (new module). */
static int fold_identity(const ir_rewriter *rw, const ir_inst *in)
{
    const ir_module *m = rw->m;
    if (in->nargs != 2)
        return -1;
    int a = in->args[0], b = in->args[1], x = -1;
    if (in->op == IR_mul)
        x = is_const(m, b, 1.0f) ? a : is_const(m, a, 1.0f) ? b : -1;
    else if (in->op == IR_div || in->op == IR_sub || in->op == IR_add)
        x = is_const(m, b, in->op == IR_div ? 1.0f : in->op == IR_sub ? 0.0f : -0.0f) ? a : -1;
    if (x < 0 || !ir_type_equal(&m->insts[x].type, &in->type) || in->guard >= 0)
        return -1;
    pass_note(PASS, "%s: %s by its identity -> the operand", scope_of(in), ir_ops[in->op].name);
    return x;
}

ir_module *pass_fold_const(ir_module *m)
{
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        ir_inst in = ir_rw_renamed(&rw, i);
        int id = in.op == IR_dot ? fold_dot(&rw, &in) : fold_scalar(&rw, &in);
        if (id < 0)
            id = fold_identity(&rw, &in);
        if (id >= 0)
            ir_rw_replace(&rw, i, id);
        else
            ir_rw_copy(&rw, i);
    }
    return ir_rw_end(&rw);
}
