/* fuse_linear.c - matrix products that read the same input become one product.
 *
 * requires: verified IR (after fold-gain, so products of one norm share one folded weight)
 * preserves: values exactly (each output row is the same dot product of the same rows);
 *            effects and their order; every other instruction
 * Linears that read the same input value under the same guard (or none), with weights of
 * one storage type, become one linear over a new tensor concat(W1, W2, ...) (each Wk its
 * view's rows/cols of its tensor), inserted where the first of them was, and one `slice` of
 * it per original value, where that value was. A linear joins only when every view of its
 * weight tensor is read by one linear that fuses (DSMoE's experts are row views of one
 * tensor: each expert's gate and up fuse, under its guard), so the old tensors are left
 * unread (dce drops them) and the blob holds each weight once.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define PASS "fuse-linear"

/* Whether linear `i` may join a fusion: its weight a matrix view that it alone reads and that
 * a recipe can express. */
static int candidate(const ir_module *m, const ir_uses *u, int i)
{
    const ir_inst *in = &m->insts[i];
    if (in->op != IR_linear)
        return 0;
    const ir_inst *wv = &m->insts[in->args[1]];
    return wv->op == IR_weight && wv->type.rank == 2 && ir_use_count(u, in->args[1]) == 1 &&
           ir_recipe_of_view(m, wv) != NULL;
}

/* Whether every reader of every view of tensor t is a linear that fuses (cand[] and a group
 * of two or more): else some of its rows would stay in t while others move, and the blob
 * would hold them twice. */
static int tensor_moves(const ir_module *m, const ir_uses *u, int64_t t, const char *cand,
                        const int *group, const int *size)
{
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *view = &m->insts[v];
        if (view->op != IR_weight || view->iattr[0] != t)
            continue;
        for (int k = u->first[v]; k < u->first[v + 1]; k++) {
            int r = u->user[k];
            if (!cand[r] || m->insts[r].args[1] != v || size[group[r]] < 2)
                return 0;
        }
    }
    return 1;
}

/* Whether linears i and j (both candidates) belong to one product. */
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

/* The loop indices all of lin[0 .. n-1] share: the longest common run of whole scope items
 * ("l=0 j=1" for the experts k=0 .. 3 of one sub-layer); NULL for none. */
static const char *common_scope(const ir_module *m, const int *lin, int n)
{
    const char *s0 = m->insts[lin[0]].scope;
    if (!s0)
        return NULL;
    size_t len = strlen(s0);
    for (int k = 1; k < n && len; k++) {
        const char *s = m->insts[lin[k]].scope;
        size_t same = 0;
        while (s && same < len && s[same] && s[same] == s0[same])
            same++;
        int whole = s && (same == len || s0[same] == ' ') && (!s[same] || s[same] == ' ');
        while (!whole && same > 0 && s0[same] != ' ')
            same--;                /* back to the end of the last whole item */
        len = same;
    }
    return len ? base_intern(s0, len) : NULL;
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
    fused.scope = common_scope(m, lin, n);
    fused.loc = first->loc;
    pass_note(PASS, "%s: %s -> one product [%lld, %lld]", fused.scope ? fused.scope : "top",
              names, (long long)rows, (long long)view.type.dim[1]);
    return ir_rw_add(rw, &fused);
}

/* Groups the candidates (group[i]: the first linear of i's group, -1 for none; size[first]),
 * dropping, until nothing changes, the candidates alone in their group and those whose
 * tensor does not move whole into products. */
static void group_linears(const ir_module *m, const ir_uses *u, char *cand, int *group, int *size)
{
    for (int changed = 1; changed;) {
        for (int i = 0; i < m->ninsts; i++)
            group[i] = -1, size[i] = 0;
        for (int i = 0; i < m->ninsts; i++) {
            if (!cand[i] || group[i] >= 0)
                continue;
            for (int j = i; j < m->ninsts; j++)
                if (cand[j] && group[j] < 0 && (j == i || same_group(m, i, j)))
                    group[j] = i, size[i]++;
        }
        changed = 0;
        for (int i = 0; i < m->ninsts; i++)
            if (cand[i] && !tensor_moves(m, u, m->insts[m->insts[i].args[1]].iattr[0], cand,
                                         group, size))
                cand[i] = 0, changed = 1;
    }
    for (int i = 0; i < m->ninsts; i++)
        if (group[i] >= 0 && size[group[i]] < 2)
            group[i] = -1;
}

ir_module *pass_fuse_linear(ir_module *m)
{
    ir_uses u;
    ir_uses_build(m, &u);
    size_t n = (size_t)(m->ninsts ? m->ninsts : 1);
    int *group = malloc(sizeof(int) * n);      /* the group's first linear, or -1 */
    int *size = malloc(sizeof(int) * n);       /* by first linear: the group's size */
    int *start = malloc(sizeof(int) * n);      /* where its rows start in the product */
    int *members = malloc(sizeof(int) * n);
    int *fused = malloc(sizeof(int) * n);      /* by first linear: the product's new id */
    char *cand = malloc(n);
    if (!group || !size || !start || !members || !fused || !cand)
        DIE("out of memory");
    for (int i = 0; i < m->ninsts; i++)
        cand[i] = (char)candidate(m, &u, i);
    group_linears(m, &u, cand, group, size);
    for (int i = 0; i < m->ninsts; i++) {
        if (group[i] != i)
            continue;
        int64_t at = 0;
        for (int j = i; j < m->ninsts; j++)
            if (group[j] == i) {
                start[j] = (int)at;
                at += m->insts[j].type.dim[0];
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
    free(size);
    free(cand);
    free(start);
    free(members);
    free(fused);
    return ir_rw_end(&rw);
}
