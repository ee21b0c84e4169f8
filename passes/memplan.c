/* memplan.c - memory planning: one arena for every value, slots reused after last use.
 *
 * requires: verified IR; runs last (later passes would invalidate the slots)
 * preserves: the instructions; sets each stored value's `slot` (arena offset in floats,
 *            64-byte aligned) and the module's `arena_floats`
 * A value is live from its definition to its last reader (operands and guards). KV caches
 * and constants live for the whole run (caches persist across steps; constants are set once
 * per step before anything runs), and so do the logits the program reads after the step.
 * An instruction's result never shares a slot with its own operands: slots of values whose
 * life ends at an instruction are freed only after its result is placed. A freed slot is
 * reused by a later value of exactly the same size, which suits transformer graphs, where
 * most values are a few repeated widths.
 */
#include <stdlib.h>

#include "passes.h"

typedef struct free_slot {
    int64_t offset, size;
} free_slot;

static int64_t aligned_size(const ir_inst *in)
{
    int64_t n = ir_type_numel(&in->type);
    return (n + 15) / 16 * 16;
}

void pass_plan_memory(ir_module *m)
{
    int n = m->ninsts;
    int *last = malloc(sizeof(int) * (size_t)(n ? n : 1));
    free_slot *pool = malloc(sizeof(free_slot) * (size_t)(n ? n : 1));
    if (!last || !pool)
        DIE("out of memory");
    for (int i = 0; i < n; i++) {
        const ir_inst *in = &m->insts[i];
        last[i] = in->op == IR_cache || in->op == IR_const || i == m->output ? n : i;
    }
    for (int i = 0; i < n; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->dead)
            continue;
        for (int k = 0; k < in->nargs; k++)
            if (last[in->args[k]] < i)
                last[in->args[k]] = i;
        if (in->guard >= 0 && last[in->guard] < i)
            last[in->guard] = i;
    }
    int npool = 0;
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        ir_inst *in = &m->insts[i];
        in->slot = -1;
        if (ir_needs_storage(in)) {
            int64_t size = aligned_size(in);
            int found = -1;
            for (int p = 0; p < npool && found < 0; p++)
                if (pool[p].size == size)
                    found = p;
            if (found >= 0) {
                in->slot = pool[found].offset;
                pool[found] = pool[--npool];
            } else {
                in->slot = top;
                top += size;
            }
        }
        /* values whose life ends here give their slots back */
        for (int k = 0; k < in->nargs + (in->guard >= 0); k++) {
            int a = k < in->nargs ? in->args[k] : in->guard;
            if (last[a] != i || m->insts[a].slot < 0)
                continue;
            int dup = 0;   /* an operand named twice (mul %3, %3) is freed once */
            for (int j = 0; j < k; j++)
                dup |= (j < in->nargs ? in->args[j] : in->guard) == a;
            if (!dup)
                pool[npool++] = (free_slot){m->insts[a].slot, aligned_size(&m->insts[a])};
        }
        /* a value nobody reads is free at once (its instruction has an effect) */
        if (in->slot >= 0 && last[i] == i)
            pool[npool++] = (free_slot){in->slot, aligned_size(in)};
    }
    m->arena_floats = top ? top : 16;
    free(pool);
    free(last);
}
