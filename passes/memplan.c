/* memplan.c - memory planning: one frame for the values of a call, slots reused after last
 * use; the KV caches in the state, which persists across calls.
 *
 * requires: verified IR; runs last (later passes would invalidate the plan)
 * preserves: the instructions; sets each stored value's mem and offset (bytes, 64-byte
 *            aligned) and the module's frame_bytes and state_bytes; planned = 1
 * A value is live from its definition to its last reader (operands and guards). Constants
 * are set at the start of a call, before anything runs, in slots of their own at the
 * frame's start; the logits are read after the call, so they live to its end. A guard
 * region runs token by token, so whatever an instruction inside it reads or writes stays
 * live to the end of the region. An instruction's result never shares a slot with its own
 * operands, nor with what its operands' producers were the last to read (so that the
 * lowering can fuse it into them: the residual add into its linear); an elementwise value
 * with one elementwise reader keeps its operands live until that reader (the lowering may
 * compute it there: silu(a) * b in one loop). A freed slot is reused by a later value of
 * exactly the same size, the one freed longest ago, which suits transformer graphs, where
 * most values are a few repeated widths.
 * Values with the token axis take T_max rows. Slots are offsets into the frame, not
 * addresses, so that one frame layout can serve calls that share code.
 */
#include <stdlib.h>

#include "passes.h"

typedef struct free_slot {
    int64_t offset, size;
    int freed_at;              /* the instruction whose reading ended the previous value */
} free_slot;

/* Whether value i may take a slot freed at instruction `at`: not when `at` produced one of
 * i's operands, since the lowering may fuse i into that producer (an epilogue: the linear
 * writes r + x W^T where the add's result goes), which then writes i's slot while it still
 * reads what was there. */
static int slot_allowed(const ir_inst *in, int at)
{
    for (int k = 0; k < in->nargs; k++)
        if (in->args[k] == at)
            return 0;
    return 1;
}

static int64_t aligned_size(const ir_module *m, const ir_inst *in)
{
    return (ir_value_bytes(m, in) + 63) / 64 * 64;
}

static int too_big(int64_t bytes, const char *what)
{
    if (bytes <= IR_MAX_BYTES)
        return 0;
    fprintf(stderr, "kiln: error: the %s would need %lld bytes, more than the limit of 2^40; "
                    "lower ctx, the widths, or --max-batch\n", what, (long long)bytes);
    return 1;
}

/* An elementwise value read by one elementwise reader only may be computed inside that
 * reader (codegen/fuse.c: silu(a) * b in one loop), so its operands must last until the
 * reader runs. Instructions come in order, so one backward sweep carries chains. */
static void extend_for_fusion(const ir_module *m, int *last)
{
    int n = m->ninsts;
    ir_uses u;
    ir_uses_build(m, &u);
    for (int i = n - 1; i >= 0; i--) {
        const ir_inst *in = &m->insts[i];
        if (!(ir_ops[in->op].flags & OPF_ELEMWISE) || ir_use_count(&u, i) != 1 || last[i] == n)
            continue;
        const ir_inst *r = &m->insts[u.user[u.first[i]]];
        if (!(ir_ops[r->op].flags & OPF_ELEMWISE) || r->guard != in->guard ||
            r->guard == i)        /* a guard is no fused operand */
            continue;
        for (int k = 0; k < in->nargs; k++)
            if (last[in->args[k]] < last[i] && last[in->args[k]] < n)
                last[in->args[k]] = last[i];
    }
    ir_uses_free(&u);
}

ir_module *pass_plan_memory(ir_module *m)
{
    int n = m->ninsts;
    int *last = malloc(sizeof(int) * (size_t)(n ? n : 1));
    free_slot *pool = malloc(sizeof(free_slot) * (size_t)(n ? n : 1));
    int *region_end = ir_guard_regions(m);
    if (!last || !pool)
        DIE("out of memory");
    for (int i = 0; i < n; i++) {
        const ir_inst *in = &m->insts[i];
        last[i] = in->op == IR_const || i == m->output ? n : region_end[i];
    }
    for (int i = 0; i < n; i++) {
        const ir_inst *in = &m->insts[i];
        int until = region_end[i];
        for (int k = 0; k < in->nargs; k++)
            if (last[in->args[k]] < until)
                last[in->args[k]] = until;
        if (in->guard >= 0 && last[in->guard] < until)
            last[in->guard] = until;
    }
    extend_for_fusion(m, last);
    /* dies[first[i] .. first[i+1]-1]: the values whose life ends at instruction i */
    int *first = calloc((size_t)n + 2, sizeof(int)), *dies = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!first || !dies)
        DIE("out of memory");
    for (int v = 0; v < n; v++)
        if (last[v] < n)
            first[last[v] + 1]++;
    for (int i = 0; i < n; i++)
        first[i + 1] += first[i];
    for (int v = 0, *fill = first; v < n; v++)
        if (last[v] < n)
            dies[fill[last[v]]++] = v;
    for (int i = n; i > 0; i--)   /* undo the fill's shift */
        first[i] = first[i - 1];
    first[0] = 0;
    int npool = 0;
    int64_t top = 0, state = 0;
    int failed = 0;
    /* constants first, in slots of their own: the program sets them before anything runs */
    for (int i = 0; i < n; i++)
        if (m->insts[i].op == IR_const) {
            m->insts[i].mem = MEM_FRAME;
            m->insts[i].offset = top;
            top += aligned_size(m, &m->insts[i]);
        }
    for (int i = 0; i < n && !failed; i++) {
        ir_inst *in = &m->insts[i];
        if (in->op == IR_const)
            continue;
        in->mem = MEM_NONE;
        in->offset = 0;
        if (in->op == IR_cache) {
            in->mem = MEM_STATE;
            in->offset = state;
            state += aligned_size(m, in);
            failed = too_big(state, "KV-cache state");
        } else if (ir_needs_storage(in)) {
            int64_t size = aligned_size(m, in);
            int found = -1;
            /* the slot freed longest ago: what was freed just now is often still wanted by
             * a chain the lowering fuses (silu(a) * b: a's slot while b is sliced) */
            for (int p = 0; p < npool; p++)
                if (pool[p].size == size && slot_allowed(in, pool[p].freed_at) &&
                    (found < 0 || pool[p].freed_at < pool[found].freed_at))
                    found = p;
            in->mem = MEM_FRAME;
            if (found >= 0) {
                in->offset = pool[found].offset;
                pool[found] = pool[--npool];
            } else {
                in->offset = top;
                top += size;
                failed = too_big(top, "frame (the values of one call)");
            }
        }
        /* after the result is placed, the values whose life ends here give their slots back */
        for (int k = first[i]; k < first[i + 1]; k++) {
            const ir_inst *d = &m->insts[dies[k]];
            if (d->mem == MEM_FRAME)
                pool[npool++] = (free_slot){d->offset, aligned_size(m, d), i};
        }
    }
    free(first);
    free(dies);
    m->frame_bytes = top ? top : 64;
    m->state_bytes = state;
    m->planned = !failed;
    free(region_end);
    free(pool);
    free(last);
    return failed ? NULL : m;
}
