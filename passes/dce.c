/* dce.c - dead-code elimination.
 *
 * requires: verified IR
 * preserves: everything an effect (output, stat, cache write) depends on, and its order;
 *            the statistic table is unchanged
 * drops: instructions no effect depends on, a cache nothing reads (only its readers see
 *        what it writes: it would keep nothing), and the tensors no live `weight` instruction
 *        views (a declared weight nothing reads is not packed, and the checkpoint need not
 *        hold it; the tensor table keeps its order and closes up)
 * Marks live what the effects read, transitively (guards count as reads), and rebuilds the
 * module without the rest; value numbers close up.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* The length of a declared name without its indices: "wq" of "wq[3]". */
static size_t decl_base(const ir_tensor *t)
{
    const char *d = t->decl ? t->decl : t->name;
    return strcspn(d, "[");
}

/* One note per declaration whose tensors nothing reads: "wq (8 tensors)", or the tensor
 * and its checkpoint name when it is one. */
static void note_unread_tensors(const ir_module *m, const int *keep)
{
    for (int t = 0; t < m->ntensors; t++) {
        if (keep[t])
            continue;
        const ir_tensor *a = &m->tensors[t];
        const char *da = a->decl ? a->decl : a->name;
        size_t n = decl_base(a);
        int count = 0, first = 1;
        for (int u = 0; u < m->ntensors; u++) {
            const ir_tensor *b = &m->tensors[u];
            const char *db = b->decl ? b->decl : b->name;
            if (keep[u] || decl_base(b) != n || strncmp(da, db, n))
                continue;
            first &= u >= t;
            count++;
        }
        if (!first)
            continue;                  /* said with the first of its declaration */
        if (count == 1)
            pass_note("dce", "tensor %s (\"%s\") is read by nothing: not packed", da, a->name);
        else
            pass_note("dce", "tensors %.*s (%d of them) are read by nothing: not packed",
                      (int)n, da, count);
    }
}

ir_module *pass_dce(ir_module *m)
{
    char *live = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    int *keep = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *keep);
    if (!live || !keep)
        DIE("out of memory");
    /* one backward sweep suffices: operands always precede their users */
    for (int i = m->ninsts - 1; i >= 0; i--) {
        const ir_inst *in = &m->insts[i];
        if ((ir_ops[in->op].flags & OPF_EFFECT) && in->op != IR_cache)
            live[i] = 1;       /* a cache is live when a live instruction reads it */
        if (!live[i])
            continue;
        if (in->op == IR_weight)
            keep[in->iattr[0]] = 1;
        for (int k = 0; k < in->nargs; k++)
            live[in->args[k]] = 1;
        if (in->guard >= 0)
            live[in->guard] = 1;
    }
    ir_rewriter rw;
    ir_rw_begin(&rw, m, keep);
    int dropped = 0;
    for (int i = 0; i < m->ninsts; i++)
        if (live[i])
            ir_rw_copy(&rw, i);
        else
            dropped++;
    if (dropped)
        pass_note("dce", "dropped %d instructions no effect depends on", dropped);
    note_unread_tensors(m, keep);
    free(live);
    free(keep);
    return ir_rw_end(&rw);
}
