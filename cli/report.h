/* report.h - `kiln build|dump|check --report`: where the program's memory goes (weights by
 * group, each KV cache, the frame) and what the passes decided (their pass_note lines),
 * printed after a successful run. report.c.
 */
#ifndef KILN_REPORT_H
#define KILN_REPORT_H

#include <stdio.h>

#include "../codegen/pack.h"
#include "../ir/ir.h"

/* Prints the report of module m (after the passes). packed: the tensors as packed for the
 * blob (packed[i] for m->tensors[i]), or NULL to size them from their storage types as the
 * packer would. source: what was compiled (the spec's path), for the title. */
void report_print(FILE *out, const ir_module *m, const pack_tensor *packed,
                  const char *source);

#endif
