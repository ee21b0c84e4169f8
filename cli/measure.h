/* measure.h - what a model-changing pass does to the logits, for `kiln build`.
 *
 * A pass that changes the model (share-softmax, prune-experts: passes_changes_model) is
 * measured: the unchanged model goes through the same pipeline with those options cleared,
 * both are built and run on calibration tokens (codegen/calib.c), and the divergence is
 * reported on stderr and as a decision note for --report.
 */
#ifndef KILN_MEASURE_H
#define KILN_MEASURE_H

#include "../codegen/codegen.h"
#include "../passes/passes.h"

/* What the model-changing options ask for, as flags: "share-softmax=2,1,4, ...". */
void measure_describe(const passes_options *p, char *buf, size_t size);
/* A command without weights cannot measure: says so (stderr and a note) when a
 * model-changing option is set. */
void measure_note_unmeasured(const char *command);
/* The pipeline without the model-changing options on *m (stopping as before/after say);
 * the reference's own decision notes and pass records are not kept. 0, or 1 after an error. */
int measure_reference_passes(ir_module **m, const char *before, const char *after, int verbose);
/* Builds the unchanged model (`unchanged`: the front end's module, storage types bound,
 * before the passes; consumed) and the changed one (planned, with its packed tensors), runs
 * both on the calibration tokens (calib: a file, or NULL for the default sequence) and
 * reports the divergence. 0, or 1 after an error. */
int measure_divergence(const char *calib, int verbose, ir_module *unchanged, const ckpt *ck,
                       const ir_module *changed, const pack_tensor *changed_w);

#endif
