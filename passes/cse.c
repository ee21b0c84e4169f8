/* cse.c - common-subexpression elimination.
 *
 * requires: verified IR
 * preserves: values and effects; every effect stays (an effect is never merged)
 * Two instructions that apply the same op to the same operands with the same attributes,
 * guard and type compute the same value: the later one is replaced by the earlier one.
 * Operands are compared after renaming, so chains of duplicates fold in one walk. Sources
 * (weight views, constants) are compared like any other op, so duplicate views merge too.
 * The dropped duplicates leave no readers behind; nothing else changes.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

typedef struct cse_table {
    int *slot;                 /* new ids + 1, 0 = empty; open addressing */
    size_t mask;
} cse_table;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t inst_hash(const ir_inst *in)
{
    uint64_t h = mix(0, (uint64_t)in->op);
    for (int k = 0; k < in->nargs; k++)
        h = mix(h, (uint64_t)in->args[k]);
    h = mix(h, (uint64_t)(int64_t)in->guard);
    for (int k = 0; k < 3; k++)
        h = mix(h, (uint64_t)in->iattr[k]);
    uint64_t f;
    memcpy(&f, &in->fattr, sizeof f);
    h = mix(h, f);
    for (int k = 0; k < in->type.rank; k++)
        h = mix(h, (uint64_t)in->type.dim[k]);
    return h;
}

static int same(const ir_inst *a, const ir_inst *b)
{
    if (a->op != b->op || a->nargs != b->nargs || a->guard != b->guard ||
        a->fattr != b->fattr || !ir_type_equal(&a->type, &b->type) ||
        memcmp(a->iattr, b->iattr, sizeof a->iattr) ||
        (a->sattr != b->sattr && (!a->sattr || !b->sattr || strcmp(a->sattr, b->sattr))) ||
        a->nfvec != b->nfvec ||
        (a->nfvec && memcmp(a->fvec, b->fvec, sizeof(float) * (size_t)a->nfvec)))
        return 0;
    for (int k = 0; k < a->nargs; k++)
        if (a->args[k] != b->args[k])
            return 0;
    return 1;
}

ir_module *pass_cse(ir_module *m)
{
    cse_table t;
    size_t cap = 16;
    while (cap < 2 * (size_t)m->ninsts)
        cap *= 2;
    t.slot = calloc(cap, sizeof(int));
    t.mask = cap - 1;
    if (!t.slot)
        DIE("out of memory");
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    int merged = 0;
    for (int i = 0; i < m->ninsts; i++) {
        ir_inst in = ir_rw_renamed(&rw, i);
        if (ir_ops[in.op].flags & OPF_EFFECT) {
            ir_rw_copy(&rw, i);
            continue;
        }
        size_t s = inst_hash(&in) & t.mask;
        for (; t.slot[s]; s = (s + 1) & t.mask)
            if (same(&rw.m->insts[t.slot[s] - 1], &in))
                break;
        if (t.slot[s])         /* a duplicate: its readers read the first one */
            ir_rw_replace(&rw, i, t.slot[s] - 1), merged++;
        else
            t.slot[s] = ir_rw_copy(&rw, i) + 1;
    }
    free(t.slot);
    if (merged)
        pass_note("cse", "merged %d duplicate instructions into the first of each", merged);
    return ir_rw_end(&rw);
}
