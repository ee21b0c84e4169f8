/* passes.h - the optimization passes and the pipeline that runs them (pipeline.c).
 *
 * Each pass is one file; its comment says what it requires and what it preserves. The
 * pipeline is one flat list, and the verifier runs after every pass.
 */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "../ir/ir.h"

/* Dead-code elimination: drops instructions no effect depends on. */
void pass_dce(ir_module *m);
/* Memory planning: arena slots reused after each value's last use; sets the arena size. */
void pass_plan_memory(ir_module *m);

/* Runs the pipeline on m. With `before` (a pass name), stops before that pass; with `after`,
 * stops after it ("none": before the first). Unknown names are reported. verbose: prints
 * each pass and the instruction count. Returns 0, or 1 after an error. */
int passes_run(ir_module *m, const char *before, const char *after, const char *unused,
               int verbose);

#endif
