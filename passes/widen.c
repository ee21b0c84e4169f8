/* widen.c - every op reads weights in a type it accepts.
 *
 * requires: the tensors' storage types set (ir_set_storage); the IR may then have ops that
 *           read a weight they cannot (an elementwise op on a bf16 norm gain)
 * preserves: values; linear and embed keep reading weights in their storage type
 * establishes: verified IR: every other op that reads a weight of a storage type (f16, bf16,
 *           block types) reads a `widen` of it instead, one widen per weight view
 * With f32 weights, as a spec gives them before a checkpoint is bound, this changes nothing.
 */
#include <stdlib.h>

#include "passes.h"

/* Operand k of `in` may be a weight in any storage type. */
static int reads_storage(const ir_inst *in, int k)
{
    return (in->op == IR_linear && k == 1) || (in->op == IR_embed && k == 0) ||
           in->op == IR_widen;
}

ir_module *pass_widen(ir_module *m)
{
    int *widened = malloc(sizeof(int) * (size_t)(m->ninsts ? m->ninsts : 1));
    if (!widened)
        DIE("out of memory");
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        widened[i] = -1;
        ir_inst in = m->insts[i];
        for (int k = 0; k < in.nargs; k++) {
            int a = in.args[k];
            const ir_inst *w = &m->insts[a];
            if (w->op != IR_weight || !ir_dtype_is_storage(w->type.dtype) ||
                reads_storage(&in, k))
                continue;
            if (widened[a] < 0) {   /* inserted before its first reader */
                int src = rw.map[a];
                ir_inst wi = ir_inst_make(IR_widen, 1, &src);
                wi.type = w->type;
                wi.type.dtype = DT_F32;
                wi.label = w->label;
                widened[a] = ir_rw_add(&rw, &wi);
            }
        }
        int id = ir_rw_copy(&rw, i);
        for (int k = 0; k < in.nargs; k++)
            if (widened[in.args[k]] >= 0 && !reads_storage(&in, k))
                rw.m->insts[id].args[k] = widened[in.args[k]];
    }
    free(widened);
    return ir_rw_end(&rw);
}
