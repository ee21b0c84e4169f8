/* codegen.h - from IR to a program: the C emitter, the C compiler driver, the weight packer.
 *
 * Files: emit_c.c (IR -> C), cc.c (runs cc on it and links the runtime), pack.c (the weight
 * blob, runtime/kiln_blob.h), bind.c (checks the spec's tensors against a checkpoint and
 * gathers them for the packer).
 */
#ifndef KILN_CODEGEN_H
#define KILN_CODEGEN_H

#include <stdio.h>

#include "../ir/ir.h"
#include "../weights/weights.h"
#include "pack.h"

/* Writes the C program of module m. Returns 0, or -1 on a write error. */
int codegen_emit_c(FILE *out, const ir_module *m);

/* Compiles the C file at c_path and links it with the runtime into the executable exe_path.
 * The runtime (libkilnrt.a, include/) is found beside the kiln executable, or in
 * $KILN_RUNTIME_DIR; the compiler is $CC or cc. Returns 0, or -1 after reporting. */
int codegen_compile(const char *c_path, const char *exe_path, int verbose);

/* Checks every tensor of m against the checkpoint (present, shape, dtype) and fills
 * out[i] for m->tensors[i], converting to f32 where needed (buffers owned by *owned,
 * freed with bind_free). Reports each problem at the spec's declaration; returns 0 or -1. */
int bind_weights(const ir_module *m, const ckpt *ck, pack_tensor *out, void ***owned, int *nowned);
void bind_free(void **owned, int nowned);
/* For llama2.c checkpoints: the header fields shapes do not show (heads, kv_heads, layers,
 * ctx) must equal the spec's parameters of those names, and the spec must read every tensor
 * of the file. Reports and returns -1 otherwise; 0 for other formats. */
int bind_check_llama2c(const ir_module *m, const ckpt *ck);

#endif
