/* dce.c - dead-code elimination.
 *
 * requires: verified IR
 * preserves: everything an effect (output, stat, cache write) depends on, and its order;
 *            tensor and statistic tables are unchanged
 * Marks live what the effects read, transitively (guards count as reads), and sets `dead`
 * on the rest. Instructions are not renumbered, so dumps keep their value names.
 */
#include "passes.h"

void pass_dce(ir_module *m)
{
    for (int i = 0; i < m->ninsts; i++)
        if (!(ir_ops[m->insts[i].op].flags & OPF_EFFECT))
            m->insts[i].dead = 1;
    /* one backward sweep suffices: operands always precede their users */
    for (int i = m->ninsts - 1; i >= 0; i--) {
        ir_inst *in = &m->insts[i];
        if (in->dead)
            continue;
        for (int k = 0; k < in->nargs; k++)
            m->insts[in->args[k]].dead = 0;
        if (in->guard >= 0)
            m->insts[in->guard].dead = 0;
    }
}
