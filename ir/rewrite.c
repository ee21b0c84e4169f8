/* rewrite.c - building a module from another through an id map, and use lists.
 *
 * Passes do not patch a module in place: they walk the old module in order and build a new
 * one, copying each instruction (its operands renamed through the map), leaving it out
 * (dropping it), inserting new instructions before the users that need them, or mapping an
 * old value onto a new one (replacing it). Tensors can be dropped too (pruning): every
 * weight view of a kept tensor is renumbered, and a view of a dropped one must not be
 * copied. The old module is not changed, so a pass may read it freely while it builds.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        DIE("out of memory");
    return p;
}

void ir_rw_begin(ir_rewriter *rw, const ir_module *old, const int *keep_tensor)
{
    ir_module *m = ir_module_new(old->name);
    for (int i = 0; i < old->nparams; i++)
        ir_add_param(m, old->params[i].name, old->params[i].text);
    for (int i = 0; i < old->nrtparams; i++)
        ir_add_rtparam(m, old->rtparams[i].name, old->rtparams[i].value);
    for (int i = 0; i < old->nstats; i++)
        ir_add_stat(m, old->stats[i].name);
    rw->tensor_map = xmalloc(sizeof(int) * (size_t)old->ntensors);
    for (int i = 0; i < old->ntensors; i++) {
        const ir_tensor *t = &old->tensors[i];
        rw->tensor_map[i] = !keep_tensor || keep_tensor[i]
                                ? ir_add_tensor(m, t->name, t->decl, t->type, t->loc)
                                : -1;
        if (rw->tensor_map[i] >= 0) {
            m->tensors[rw->tensor_map[i]].recipe = t->recipe;
            m->tensors[rw->tensor_map[i]].layout = t->layout;
        }
    }
    m->t_max = old->t_max;
    rw->old = old;
    rw->m = m;
    rw->map = xmalloc(sizeof(int) * (size_t)old->ninsts);
    for (int i = 0; i < old->ninsts; i++)
        rw->map[i] = -1;
}

static int mapped(const ir_rewriter *rw, int old_id, int user)
{
    int id = rw->map[old_id];
    if (id < 0)
        DIE("rewrite: %%%d reads %%%d, which was dropped", user, old_id);
    return id;
}

ir_inst ir_rw_renamed(const ir_rewriter *rw, int id)
{
    ir_inst in = rw->old->insts[id];
    for (int k = 0; k < in.nargs; k++)
        in.args[k] = mapped(rw, in.args[k], id);
    if (in.guard >= 0)
        in.guard = mapped(rw, in.guard, id);
    if (in.op == IR_weight) {
        int t = rw->tensor_map[in.iattr[0]];
        if (t < 0)
            DIE("rewrite: %%%d views tensor @%lld, which was dropped", id, (long long)in.iattr[0]);
        in.iattr[0] = t;
    }
    in.mem = MEM_NONE;            /* memory is planned again after any change */
    in.offset = 0;
    return in;
}

int ir_rw_copy(ir_rewriter *rw, int id)
{
    ir_inst in = ir_rw_renamed(rw, id);
    return rw->map[id] = ir_append(rw->m, &in);
}

int ir_rw_add(ir_rewriter *rw, const ir_inst *proto)
{
    ir_inst in = *proto;
    in.mem = MEM_NONE;
    in.offset = 0;
    return ir_append(rw->m, &in);
}

void ir_rw_replace(ir_rewriter *rw, int id, int new_id)
{
    rw->map[id] = new_id;
}

ir_module *ir_rw_end(ir_rewriter *rw)
{
    ir_module *m = rw->m;
    ir_module_derive(m);
    free(rw->map);
    free(rw->tensor_map);
    memset(rw, 0, sizeof *rw);
    return m;
}

void ir_uses_build(const ir_module *m, ir_uses *u)
{
    int n = m->ninsts;
    u->first = calloc((size_t)n + 1, sizeof(int));
    if (!u->first)
        DIE("out of memory");
    /* count, then fill: a value read twice by one instruction counts once */
    for (int pass = 0; pass < 2; pass++) {
        int *fill = pass ? xmalloc(sizeof(int) * (size_t)(n ? n : 1)) : NULL;
        if (pass) {
            for (int v = 0; v < n; v++)
                u->first[v + 1] += u->first[v];
            for (int v = 0; v < n; v++)
                fill[v] = u->first[v];
            u->user = xmalloc(sizeof(int) * (size_t)u->first[n]);
        }
        for (int i = 0; i < n; i++) {
            const ir_inst *in = &m->insts[i];
            int reads[IR_MAX_ARGS + 1], nr = 0;
            for (int k = 0; k < in->nargs; k++)
                reads[nr++] = in->args[k];
            if (in->guard >= 0)
                reads[nr++] = in->guard;
            for (int k = 0; k < nr; k++) {
                int dup = 0;
                for (int j = 0; j < k; j++)
                    dup |= reads[j] == reads[k];
                if (dup)
                    continue;
                if (pass)
                    u->user[fill[reads[k]]++] = i;
                else
                    u->first[reads[k] + 1]++;
            }
        }
        free(fill);
    }
}

void ir_uses_free(ir_uses *u)
{
    free(u->first);
    free(u->user);
    u->first = u->user = NULL;
}

ir_module *ir_module_copy(const ir_module *m)
{
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++)
        ir_rw_copy(&rw, i);
    return ir_rw_end(&rw);
}
