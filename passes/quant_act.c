/* quant_act.c - 8-bit activations for the products over q8_0 and q4_0 weights.
 *
 * requires: verified IR, weights' storage types set
 * preserves: every instruction and its order; values up to the rounding of the activation
 *            (an optimization: -O0 keeps the exact f32 arithmetic)
 * decides: each product whose weight is q8_0 or q4_0 gets act="q8_0" (`linear %x, %w
 *        act="q8_0"`): its input row is rounded to Q8_0 blocks (32 values, an f16 scale
 *        amax/127) as llama.cpp does, and each block's dot product is an exact integer sum
 *        (vpdpbusd, vpmaddubsw), scaled once. That is how llama.cpp computes these products,
 *        and it is several times faster than widening the weights. `--act f32`
 *        (passes_opts.act_f32) keeps f32 activations instead: the weights dequantized
 *        exactly, one fused multiply-add per weight, as for f32 weights.
 */
#include "passes.h"

ir_module *pass_quant_act(ir_module *m)
{
    int n = 0;
    if (passes_opts.act_f32) {
        pass_note("quant-act", "--act f32: products over q8_0/q4_0 weights keep f32 activations");
        return m;
    }
    for (int i = 0; i < m->ninsts; i++) {
        ir_inst *in = &m->insts[i];
        if (in->op != IR_linear)
            continue;
        ir_dtype w = m->insts[in->args[1]].type.dtype;
        if (w == DT_Q8_0 || w == DT_Q4_0) {
            in->sattr = base_intern_str("q8_0");
            n++;
        }
    }
    if (n)
        pass_note("quant-act", "%d product%s over q8_0/q4_0 weights quantize their input to "
                  "q8_0 blocks", n, n == 1 ? "" : "s");
    return m;
}
