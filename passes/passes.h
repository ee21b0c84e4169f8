/* passes.h - the optimization passes and the pipeline that runs them (pipeline.c).
 *
 * Each pass is one file; its comment says what it requires and what it preserves. A pass
 * takes a module and returns the module it made (passes rebuild through ir_rewriter, ir.h)
 * or the same one annotated; the pipeline frees what a pass replaced. The pipeline is one
 * flat list, and the verifier runs after every pass.
 */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "../ir/ir.h"

/* Widening: every op reads weights in a type it accepts (a widen before the others). */
ir_module *pass_widen(ir_module *m);
/* Common-subexpression elimination: one instruction per distinct computation. */
ir_module *pass_cse(ir_module *m);
/* Dead-code elimination: drops instructions no effect depends on. */
ir_module *pass_dce(ir_module *m);
/* Memory planning: frame slots reused after each value's last use; caches in the state. */
ir_module *pass_plan_memory(ir_module *m);

/* Runs the pipeline on *m (replacing it). With `before` (a pass name), stops before that
 * pass; with `after`, stops after it ("none": before the first). Unknown names are reported.
 * verbose: prints each pass and the instruction count. Returns 0, or 1 after an error. */
int passes_run(ir_module **m, const char *before, const char *after, int verbose);
/* Runs exactly the passes named in `list` ("cse,dce"), in that order, verifying after
 * each: how a pass is tested .ir in, .ir out. Returns 0, or 1 after an error. */
int passes_run_list(ir_module **m, const char *list, int verbose);
/* The names of the pipeline's passes, in order, NULL-terminated. */
extern const char *const passes_names[];

#endif
