/* codegen.h - from IR to a program: lowering, the back ends, the C compiler driver, the
 * weight packer.
 *
 * Files: lower.c (planned IR -> the decisions: kernels, rows, threads, places; lower.h),
 * dedup.c (layer dedup: one function per layer structure), backend.c (the back-end
 * interface, backend.h), emit_c.c (the C back end), cc.c (runs cc on it and links the
 * runtime), pack.c (the weight blob, runtime/kiln_blob.h), bind.c (checks the spec's tensors
 * against a checkpoint and gathers them for the packer), build.c (all of it, into an
 * executable), calib.c (what a model-changing pass does to the logits).
 */
#ifndef KILN_CODEGEN_H
#define KILN_CODEGEN_H

#include <stdint.h>
#include <stdio.h>

#include "../ir/ir.h"
#include "../weights/weights.h"
#include "lower.h"
#include "pack.h"

/* Lowers the planned module m and writes its C program. Returns 0, -1 on a write error,
 * or -2 when lowering refused (reported). */
int codegen_emit_c(FILE *out, const ir_module *m);

/* build.c: writes the module's C to path ("-": standard output) through base/outfile.c;
 * 0, or -1 after reporting. */
int codegen_write_c(const ir_module *m, const char *path);
/* build.c: the executable out_path from the planned module m and its packed tensors
 * (packed[i] for m->tensors[i]): C in a temporary folder, compiled, the blob appended,
 * renamed into place only when all of it worked. emit_c: also keep the C there. packed
 * NULL: no blob appended (kiln build --blob: the program runs with --blob FILE). 0, or -1
 * after reporting. */
int codegen_build_program(const ir_module *m, const pack_tensor *packed, int npacked,
                          const char *out_path, const char *emit_c, int verbose);

/* build.c, kiln build --blob: the blob alone at `blob` and, when prog is not NULL, the
 * program without it (it runs as PROG --blob BLOB); neither is written unless both are
 * (but onto a device or FIFO, written last). 0, or -1 after reporting. */
int codegen_build_apart(const ir_module *m, const pack_tensor *packed, int npacked,
                        const char *prog, const char *blob, const char *emit_c, int verbose);

/* calib.c: the calibration tokens: the token ids of the file at path (separated by commas
 * or white space, each in [0, vocab), 1 .. ctx of them), or with path NULL the default
 * sequence: min(64, ctx) tokens, token i = (7 i^2 + 13 i + 1) mod vocab. malloc'ed, *n
 * set; NULL after reporting (the file and the place). */
int32_t *calib_tokens(const char *path, int64_t vocab, int64_t ctx, int *n);
/* What a changed model does to the logits on the calibration tokens: the mean and largest
 * KL(reference || changed) per token in nats (the rows' softmax, in double) and how many
 * rows' argmax agree. */
typedef struct calib_result {
    int tokens;
    double mean_kl;
    double max_kl;
    int agree;
} calib_result;
/* Builds both planned modules with their packed tensors (ref_w[i] for ref->tensors[i]) in
 * a temporary folder, runs each teacher-forced on tokens[0 .. n), compares the logits and
 * removes the temporaries. 0, or -1 after reporting. */
int calib_compare(const ir_module *ref, const pack_tensor *ref_w, const ir_module *changed,
                  const pack_tensor *changed_w, const int32_t *tokens, int n, int verbose,
                  calib_result *out);

/* Compiles the C file at c_path and links it with the runtime into the executable exe_path.
 * The runtime (libkilnrt.a, include/) is found beside the kiln executable, or in
 * $KILN_RUNTIME_DIR; the compiler is $CC or cc. Returns 0, or -1 after reporting. */
int codegen_compile(const char *c_path, const char *exe_path, int verbose);

/* cc.c, for the C library: compiles src_path (C, or assembly .S) into the object obj_path
 * with the compiler and flags of codegen_compile plus flags (NULL-terminated, or NULL); the
 * path of the runtime archive libkilnrt.a; runs a tool (ld, objcopy, ar: argv[0] found on
 * PATH) and reports a failure; the extra flags programs of this kiln build are compiled
 * with ("" but in the sanitizer build), which a program linking a library needs too. */
int codegen_compile_object(const char *src_path, const char *obj_path, const char *const *flags,
                           int verbose);
int codegen_runtime_archive(char *lib, size_t size);
int codegen_run_tool(char *const argv[], int verbose);
const char *codegen_program_cflags(void);

/* library.c: kiln build --lib: the folder dir holding NAME.h, libNAME.a and (unless embed:
 * the blob inside the archive) NAME.kblob, for the planned module m and its packed tensors;
 * name NULL: the module's name made a C identifier. Written into a temporary folder beside
 * dir and moved in only when all of it worked; dir is made if missing, and must be a
 * folder. 0, or -1 after reporting. */
int codegen_build_library(const ir_module *m, const pack_tensor *packed, int npacked,
                          const char *dir, const char *name, int embed, int verbose);
/* The module name as a C identifier (other characters become '_', a leading digit gets an
 * 'm' before it) into buf; and whether s is a C identifier already. */
void codegen_c_identifier(const char *s, char *buf, size_t size);
int codegen_is_c_identifier(const char *s);

/* The blob dtype code (KBLOB_*) of a storage type, or CODEGEN_NO_KBLOB for DT_I32/DT_BOOL;
 * and the name of a code's KBLOB_* constant ("KBLOB_BF16"), or NULL for an unknown code. */
#define CODEGEN_NO_KBLOB UINT32_MAX
uint32_t codegen_kblob_dtype(ir_dtype dt);
const char *codegen_kblob_name(uint32_t code);

/* A storage type asked for the weights declared under one name (--wtype-of NAME=TYPE: the
 * weight NAME, or every element of the array NAME). */
typedef struct bind_wtype_of {
    const char *decl;
    const char *wtype;
} bind_wtype_of;
/* Sets the storage dtype (m->tensors[i].type.dtype) of every tensor of m: the dtype the
 * checkpoint stores it in (f32 without a checkpoint: ck NULL), replaced by `wtype` ("f32",
 * "f16", "bf16", "q8_0", "q4_0") when given and the tensor fits it (the block types take
 * matrices whose rows are whole 32-element blocks; the rest, such as norm gains, stay), then
 * by the of[] asked for its declaration (which must fit). Tensors the checkpoint lacks keep
 * their type (bind_weights reports them). Returns 0, or -1 after reporting an unknown type,
 * a name the spec does not declare, or a weight a block type does not fit. */
int bind_storage_types(ir_module *m, const ckpt *ck, const char *wtype, const bind_wtype_of *of,
                       int nof);

/* Checks every tensor of m against the checkpoint (present, shape) and fills out[i] for
 * m->tensors[i] in its storage dtype: pointing into the checkpoint when it stores that
 * dtype, else converted (buffers owned by *owned, freed with bind_free). Reports each
 * problem at the spec's declaration; returns 0 or -1. */
int bind_weights(const ir_module *m, const ckpt *ck, pack_tensor *out, void ***owned, int *nowned);
void bind_free(void **owned, int nowned);

/* What a packed tensor was converted from (finite.c says why a value became non-finite): f
 * (f32 values), or ck in the checkpoint dtype dt; neither when it is packed as stored. */
typedef struct bind_src {
    const float *f;
    const uint8_t *ck;
    ckpt_dtype dt;
} bind_src;
float bind_src_at(const bind_src *s, uint64_t j);   /* element j as f32 */

/* finite.c: NaN and infinities in what is packed (rows layout, after conversion). Checks
 * tensor p of t: 0, or -1 after an error at t's declaration (the tensor, the first index,
 * the cause) unless finite_allow(1) (--allow-nonfinite), which counts them for
 * finite_report: one warning with the totals (and with verbose the time the scans took). */
void finite_allow(int on);
int finite_check(const ir_tensor *t, const pack_tensor *p, const bind_src *src);
void finite_report(int verbose);
/* For llama2.c checkpoints: the header fields shapes do not show (heads, kv_heads, layers;
 * not seq_len, a capacity) must equal the spec's parameters of those names, and the spec must
 * read every tensor of the file. Reports and returns -1 otherwise; 0 for other formats. */
int bind_check_llama2c(const ir_module *m, const ckpt *ck);

#endif
