/* dce.c - dead-code elimination.
 *
 * requires: verified IR
 * preserves: everything an effect (output, stat, cache write) depends on, and its order;
 *            the statistic table is unchanged
 * drops: instructions no effect depends on, and the tensors no live `weight` instruction
 *        views (a declared weight nothing reads is not packed, and the checkpoint need not
 *        hold it; the tensor table keeps its order and closes up)
 * Marks live what the effects read, transitively (guards count as reads), and rebuilds the
 * module without the rest; value numbers close up.
 */
#include <stdlib.h>

#include "passes.h"

ir_module *pass_dce(ir_module *m)
{
    char *live = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    int *keep = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *keep);
    if (!live || !keep)
        DIE("out of memory");
    /* one backward sweep suffices: operands always precede their users */
    for (int i = m->ninsts - 1; i >= 0; i--) {
        const ir_inst *in = &m->insts[i];
        if (ir_ops[in->op].flags & OPF_EFFECT)
            live[i] = 1;
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
    for (int t = 0; t < m->ntensors; t++)
        if (!keep[t])
            pass_note("dce", "tensor %s (\"%s\") is read by nothing: not packed",
                      m->tensors[t].decl, m->tensors[t].name);
    free(live);
    free(keep);
    return ir_rw_end(&rw);
}
