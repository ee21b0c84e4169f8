/* wlayout.c - the weights' layout in the blob: panels for the matrices the products stream.
 *
 * requires: verified IR, after every pass that changes which ops read a weight (widen, the
 *           folds, fuse-linear, dce)
 * preserves: every instruction, value and effect; only the tensors' layout changes, and a
 *            tensor takes the same bytes in either layout
 * decides, for each matrix (a rank-2 tensor): the panel layout (runtime/kiln_blob.h: panels
 *        of 16 rows stored column by column, `tensor @N q8_0[768, 768] panel ...`), which a
 *        matrix kernel reads as one stream per panel, with 16 rows' weights for each column
 *        side by side, when every op that reads it reads panels: a product (as its weight),
 *        an embedding (as its table, gathering a row) or a widening. A matrix anything else
 *        reads directly (an f32 weight in an elementwise op or a dot) keeps the rows layout,
 *        and its products take the reference kernel. Each rows-layout matrix that a product
 *        reads is noted with its reason.
 *        Required: the kernels for block weights (q8_0, q4_0) read panels only.
 */
#include "passes.h"

/* Whether every reader of tensor t's views reads panels; else *why names the op that
 * does not. */
static int reads_panels(const ir_module *m, const ir_uses *u, int t, const char **why,
                        int *product)
{
    *product = 0;
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *w = &m->insts[v];
        if (w->op != IR_weight || w->iattr[0] != t)
            continue;
        for (int j = u->first[v]; j < u->first[v + 1]; j++) {
            const ir_inst *r = &m->insts[u->user[j]];
            for (int k = 0; k < r->nargs; k++) {
                if (r->args[k] != v)
                    continue;
                *product |= r->op == IR_linear && k == 1;
                if (!((r->op == IR_linear && k == 1) || (r->op == IR_embed && k == 0) ||
                      (r->op == IR_widen && k == 0))) {
                    *why = ir_ops[r->op].name;
                    return 0;
                }
            }
        }
    }
    return 1;
}

ir_module *pass_wlayout(ir_module *m)
{
    ir_uses u;
    ir_uses_build(m, &u);
    for (int t = 0; t < m->ntensors; t++) {
        ir_tensor *tn = &m->tensors[t];
        const char *why = NULL;
        int product;
        if (tn->type.rank != 2) {
            tn->layout = IR_LAYOUT_ROWS;
            continue;
        }
        int panel = reads_panels(m, &u, t, &why, &product);
        tn->layout = panel ? IR_LAYOUT_PANEL : IR_LAYOUT_ROWS;
        if (!panel && product)
            pass_note("wlayout", "%s keeps the rows layout: %s reads it directly", tn->decl, why);
    }
    ir_uses_free(&u);
    return m;
}
