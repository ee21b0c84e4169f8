/* route_stats.c - routing statistics: how often each expert runs.
 *
 * requires: verified IR
 * preserves: every value and effect; adds, after each guard of a guard region (an expert),
 *            `stat` of that guard into a new statistic named "route l=L e=E" (L and E
 *            from the guard's scope l= and e=, else E is its extract index), so the program
 *            counts per token whether the expert ran. The driver tells these from the
 *            spec's own statistics by the "route " prefix: `--profile-routing FILE` writes
 *            them as a routing profile (prune-experts reads it), `--stats` leaves them out.
 * Always on (also at -O0): a profile must describe the program as built. A guard that
 * already has its counter (a dump read back) gets no second one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* The statistic's name for guard g: "route l=L e=E". */
static const char *route_name(const ir_module *m, int g, char *buf, size_t size)
{
    const ir_inst *in = &m->insts[g];
    long l = ir_scope_index(in->scope, "l");
    long e = ir_scope_index(in->scope, "e");     /* the spec's number, also after pruning */
    if (e < 0 && in->op == IR_extract)
        e = (long)in->iattr[0];
    snprintf(buf, size, "route l=%ld e=%ld", l < 0 ? 0 : l, e < 0 ? (long)g : e);
    return buf;
}

ir_module *pass_route_stats(ir_module *m)
{
    char *is_guard = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    if (!is_guard)
        DIE("out of memory");
    for (int i = 0; i < m->ninsts; i++)
        if (m->insts[i].guard >= 0 && m->insts[m->insts[i].guard].guard < 0)
            is_guard[m->insts[i].guard] = 1;
    /* a module read back from a dump has its counters already: one per expert, not two */
    for (int i = 0; i < m->ninsts; i++)
        if (m->insts[i].op == IR_stat && !strncmp(m->stats[m->insts[i].iattr[0]].name, "route ", 6))
            is_guard[m->insts[i].args[0]] = 0;
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        int g = ir_rw_copy(&rw, i);
        if (!is_guard[i])
            continue;
        char name[96];
        int slot = ir_add_stat(rw.m, base_intern_str(route_name(m, i, name, sizeof name)));
        ir_inst st = ir_inst_make(IR_stat, 1, &g);
        st.iattr[0] = slot;
        st.type = ir_type_scalar(DT_F32);
        st.scope = m->insts[i].scope;
        st.loc = m->insts[i].loc;
        ir_rw_add(&rw, &st);
    }
    free(is_guard);
    return ir_rw_end(&rw);
}
