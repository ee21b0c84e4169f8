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
/* Constant folding: dot(linear(x, W), v) over weights, elementwise ops of constants,
 * identities (fold_const.c). */
ir_module *pass_fold_const(ir_module *m);
/* A norm's gain folded into the weights of the linears that read the norm (fold_gain.c). */
ir_module *pass_fold_gain(ir_module *m);
/* Linears reading one input become one product over stacked weights (fuse_linear.c). */
ir_module *pass_fuse_linear(ir_module *m);
/* Common-subexpression elimination: one instruction per distinct computation. */
ir_module *pass_cse(ir_module *m);
/* Dead-code elimination: drops instructions no effect depends on. */
ir_module *pass_dce(ir_module *m);
/* Memory planning: frame slots reused after each value's last use; caches in the state. */
ir_module *pass_plan_memory(ir_module *m);

/* What the command line asks of the passes (cli/kiln.c fills it before the pipeline runs;
 * a pass reads only its own fields). Zero: every default. */
typedef struct passes_options {
    int o0;                    /* -O0: only the passes correctness needs; no fusion, no dedup */
    const char *disabled[16];  /* --disable-pass=P */
    int ndisabled;
    const char *kv_type;       /* --kv-type f32|f16|bf16 (NULL: f32) */
    int share_group, share_begin, share_end;   /* --share-softmax=G,b,e (group 0: none) */
    const char *keep_experts;  /* --keep-experts=L:E,E;L:E... (NULL: none given) */
    const char *prune_profile; /* --prune-experts=FILE, a routing profile (JSON) */
    double min_freq;           /* --min-freq X: keep experts that fired at least X of tokens */
    double expert_budget;      /* --expert-budget P: 0 none, else share of firings kept */
} passes_options;
extern passes_options passes_opts;

/* The decisions passes made, for `kiln build --report` and `kiln dump --report`: each pass
 * says what it did, one line per decision ("shared the softmax of l=2 with l=3, l=4"). */
void pass_note(const char *pass, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int passes_note_count(void);
/* Note i as "pass: text" (the pipeline owns the string). */
const char *passes_note(int i);
void passes_notes_clear(void);

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
