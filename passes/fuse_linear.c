/* fuse_linear.c - matrix products that read the same input become one product.
 *
 * requires: verified IR (after fold-gain, so products of one norm share one folded weight)
 * preserves: values exactly (each output row is the same dot product of the same rows);
 *            effects and their order; every other instruction
 * Linears that read the same input value under the same guard (or none), with weights of
 * one storage type, become one linear over a new tensor concat(W1, W2, ...) (each Wk its
 * view's rows/cols of its tensor), inserted where the first of them was, and one `slice` of
 * it per original value, where that value was. A linear joins only when every reader of
 * every view of its weight tensor is a linear of the same group, so the old tensors are
 * left unread (dce drops them) and the blob holds each weight once.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define PASS "fuse-linear"

/* Whether linear `i` may join a fusion: its weight a matrix view read by `i` alone, and
 * every view of that tensor read only by linears of i's input and guard. */
static int fusable(const ir_module *m, const ir_uses *u, int i)
{
    const ir_inst *in = &m->insts[i];
    int w = in->args[1];
    const ir_inst *wv = &m->insts[w];
    if (in->op != IR_linear || wv->op != IR_weight || wv->type.rank != 2 ||
        ir_use_count(u, w) != 1 || !ir_recipe_of_view(m, wv))
        return 0;
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *view = &m->insts[v];
        if (view->op != IR_weight || view->iattr[0] != wv->iattr[0])
            continue;
        for (int k = u->first[v]; k < u->first[v + 1]; k++) {
            const ir_inst *r = &m->insts[u->user[k]];
            if (r->op != IR_linear || r->args[1] != v || r->args[0] != in->args[0] ||
                r->guard != in->guard || ir_use_count(u, v) != 1)
                return 0;
        }
    }
    return 1;
}

/* Whether linears i and j (both fusable) belong to one product. */
static int same_group(const ir_module *m, int i, int j)
{
    const ir_inst *a = &m->insts[i], *b = &m->insts[j];
    return a->args[0] == b->args[0] && a->guard == b->guard &&
           m->insts[a->args[1]].type.dtype == m->insts[b->args[1]].type.dtype;
}

/* The name of the view w: its label, or its tensor's declaration. */
static const char *view_name(const ir_module *m, int w)
{
    const ir_inst *v = &m->insts[w];
    return v->label ? v->label : m->tensors[v->iattr[0]].decl;
}

/* The stacked tensor of the weights of linears lin[0 .. n-1] (old ids), in the new module. */
static int stacked_tensor(ir_rewriter *rw, const int *lin, int n, int64_t rows)
{
    const ir_module *m = rw->old;
    const ir_recipe **src = malloc(sizeof *src * (size_t)n);
    if (!src)
        DIE("out of memory");
    char decl[1024];
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        src[k] = ir_recipe_of_view(m, &m->insts[m->insts[lin[k]].args[1]]);
        if (len < sizeof decl)
            len += (size_t)snprintf(decl + len, sizeof decl - len, "%s%s", k ? "+" : "",
                                    view_name(m, m->insts[lin[k]].args[1]));
    }
    const ir_recipe *r;
    char why[160];
    if (ir_recipe_make(&r, RC_CONCAT, src, n, NULL, 0, why, sizeof why))
        DIE("fuse-linear: concat: %s", why);
    free(src);
    const ir_inst *w0 = &m->insts[m->insts[lin[0]].args[1]];
    if (r->type.dim[0] != rows)
        DIE("fuse-linear: %lld rows stacked, %lld expected", (long long)r->type.dim[0],
            (long long)rows);
    return ir_add_recipe_tensor(rw->m, base_intern_str(decl), w0->type.dtype, r,
                                m->tensors[w0->iattr[0]].loc);
}

/* Adds the fused product of group lin[0 .. n-1] (old ids); its new id. */
static int add_fused(ir_rewriter *rw, const int *lin, int n)
{
    const ir_module *m = rw->old;
    const ir_inst *first = &m->insts[lin[0]];
    int64_t rows = 0;
    char names[512];
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        rows += m->insts[lin[k]].type.dim[0];
        if (len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", k ? ", " : "",
                                    view_name(m, m->insts[lin[k]].args[1]));
    }
    int t = stacked_tensor(rw, lin, n, rows);
    ir_inst view = ir_inst_make(IR_weight, 0, NULL);
    view.type = rw->m->tensors[t].type;
    view.iattr[0] = t;
    int args[2] = {rw->map[first->args[0]], ir_rw_add(rw, &view)};
    ir_inst fused = ir_inst_make(IR_linear, 2, args);
    fused.type = first->type;
    fused.type.dim[0] = rows;
    fused.guard = first->guard >= 0 ? rw->map[first->guard] : -1;
    fused.scope = first->scope;
    fused.loc = first->loc;
    pass_note(PASS, "%s: %s -> one product [%lld, %lld]", first->scope ? first->scope : "top",
              names, (long long)rows, (long long)view.type.dim[1]);
    return ir_rw_add(rw, &fused);
}

ir_module *pass_fuse_linear(ir_module *m)
{
    if (passes_opts.o0)
        return m;
    ir_uses u;
    ir_uses_build(m, &u);
    size_t n = (size_t)(m->ninsts ? m->ninsts : 1);
    int *group = malloc(sizeof(int) * n);      /* the group's first linear, or -1 */
    int *start = malloc(sizeof(int) * n);      /* where its rows start in the product */
    int *members = malloc(sizeof(int) * n);
    int *fused = malloc(sizeof(int) * n);      /* by first linear: the product's new id */
    if (!group || !start || !members || !fused)
        DIE("out of memory");
    for (int i = 0; i < m->ninsts; i++)
        group[i] = -1;
    for (int i = 0; i < m->ninsts; i++) {
        if (group[i] >= 0 || !fusable(m, &u, i))
            continue;
        int nm = 0;
        for (int j = i; j < m->ninsts; j++)
            if (group[j] < 0 && (j == i || same_group(m, i, j)) && fusable(m, &u, j))
                members[nm++] = j;
        if (nm < 2)
            continue;
        int64_t at = 0;
        for (int k = 0; k < nm; k++) {
            group[members[k]] = i;
            start[members[k]] = (int)at;
            at += m->insts[members[k]].type.dim[0];
        }
    }
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (group[i] < 0) {
            ir_rw_copy(&rw, i);
            continue;
        }
        if (group[i] == i) {
            int nm = 0;
            for (int j = i; j < m->ninsts; j++)
                if (group[j] == i)
                    members[nm++] = j;
            fused[i] = add_fused(&rw, members, nm);
        }
        int src = fused[group[i]];
        ir_inst s = ir_inst_make(IR_slice, 1, &src);
        s.type = in->type;
        s.iattr[0] = start[i];
        s.iattr[1] = in->type.dim[0];
        s.guard = in->guard >= 0 ? rw.map[in->guard] : -1;
        s.label = in->label;
        s.scope = in->scope;
        s.loc = in->loc;
        ir_rw_replace(&rw, i, ir_rw_add(&rw, &s));
    }
    ir_uses_free(&u);
    free(group);
    free(start);
    free(members);
    free(fused);
    return ir_rw_end(&rw);
}
