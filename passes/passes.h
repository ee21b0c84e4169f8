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
/* Expert pruning (--keep-experts, --prune-experts): dropped experts leave the IR and the
 * blob. Unchanged unless passes_opts asks; NULL after an error. */
ir_module *pass_prune_experts(ir_module *m);
/* Routing statistics: a "route l=L e=E" statistic per expert region (--profile-routing). */
ir_module *pass_route_stats(ir_module *m);
/* Constant folding: dot(linear(x, W), v) over weights, elementwise ops of constants,
 * identities (fold_const.c). */
ir_module *pass_fold_const(ir_module *m);
/* A norm's gain folded into the weights of the linears that read the norm (fold_gain.c). */
ir_module *pass_fold_gain(ir_module *m);
/* Linears reading one input become one product over stacked weights (fuse_linear.c). */
ir_module *pass_fuse_linear(ir_module *m);
/* A matrix products read in disjoint pieces becomes one tensor per piece (split_views.c). */
ir_module *pass_split_views(ir_module *m);
/* Common-subexpression elimination: one instruction per distinct computation. */
ir_module *pass_cse(ir_module *m);
/* Dead-code elimination: drops instructions no effect depends on. */
ir_module *pass_dce(ir_module *m);
/* Fused attention: scores, scale, softmax and apply as one `attention` op (fuse_attn.c). */
ir_module *pass_fuse_attn(ir_module *m);
/* KV caches: head-major layout and the --kv-type storage type (kvlayout.c). */
ir_module *pass_kvlayout(ir_module *m);
/* Softmax sharing (UniAttn), only when share_softmax_requested(): a reuser layer's attention
 * reads its leader's probabilities. Changes the model. */
ir_module *pass_share_softmax(ir_module *m);
int share_softmax_requested(void);
/* 8-bit activations for products over q8_0/q4_0 weights (quant_act.c), unless --act f32. */
ir_module *pass_quant_act(ir_module *m);
/* The weights' layout: panels for the matrices only products, embeddings and widening read
 * (wlayout.c). */
ir_module *pass_wlayout(ir_module *m);
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
    int act_f32;               /* --act f32: block-weight products keep f32 activations */
} passes_options;
extern passes_options passes_opts;
/* Whether o asks for a pass that changes the model (share-softmax, expert pruning): then
 * `kiln build` measures the divergence from the unchanged model (codegen/calib.c). */
int passes_changes_model(const passes_options *o);

/* The decisions passes made, for `kiln build --report` and `kiln dump --report`: each pass
 * says what it did, one line per decision ("shared the softmax of l=2 with l=3, l=4"). */
void pass_note(const char *pass, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int passes_note_count(void);
/* Note i as "pass: text" (the pipeline owns the string). */
const char *passes_note(int i);
void passes_notes_clear(void);
/* Drops the notes after the first n (a second run's, such as a calibration's reference). */
void passes_notes_truncate(int n);

/* ---------------------------------------------------------------- the pipeline (pipeline.c)
 *
 * One flat table of passes, in order. A pass's flags say when it runs:
 *   PASS_REQUIRED    correctness needs it: it runs at -O0 and cannot be disabled
 *   PASS_ON_REQUEST  it changes the model, so it runs only when its `requested` predicate
 *                    says a command-line option asks for it (even at -O0)
 *   neither          an optimization: runs unless -O0 or --disable-pass=NAME
 */
enum { PASS_REQUIRED = 1 << 0, PASS_ON_REQUEST = 1 << 1 };

typedef struct pass_info {
    const char *name;
    ir_module *(*run)(ir_module *m);
    unsigned flags;
    int (*requested)(const passes_options *o);   /* PASS_ON_REQUEST only */
    const char *summary;       /* one line each, shown by --list-passes */
    const char *requires;
    const char *preserves;
} pass_info;

int passes_count(void);
const pass_info *passes_info(int i);
/* The index of the pass named `name` in the pipeline, or -1. */
int passes_lookup(const char *name);
/* Prints the table (--list-passes). */
void passes_list(FILE *out);

/* Why a pass did or did not run in the last passes_run_with (for the report). */
typedef enum pass_status {
    PASS_NOT_REACHED,          /* the run stopped before it (--stop-after, --before) */
    PASS_RAN,
    PASS_SKIPPED_O0,           /* -O0 runs only the required and the requested passes */
    PASS_SKIPPED_DISABLED,     /* --disable-pass */
    PASS_SKIPPED_UNREQUESTED,  /* on request, and nothing asked for it */
} pass_status;
typedef struct pass_record {
    pass_status status;
    int insts_before, insts_after;   /* instruction counts around the pass, when it ran */
} pass_record;
const pass_record *passes_record(int i);
/* The records of every pass (passes_count() of them) copied out, and put back: a second
 * run of the pipeline (the unchanged model a calibration builds) leaves the first's. */
void passes_records_save(pass_record *out);
void passes_records_restore(const pass_record *in);
const char *passes_status_name(pass_status s);

/* One run of the pipeline, as the command line shapes it. Zero: the whole pipeline with
 * passes_opts (-O0, --disable-pass), no dumps. */
typedef struct passes_run_opts {
    const char *stop_before;   /* --before P: stop before P */
    const char *stop_after;    /* --after / --stop-after P: stop after P ("none": before all) */
    const char *dump_before;   /* --dump-before=P: the IR before P, or "all": before each */
    const char *dump_after;    /* --dump-after=P: the IR after P, or "all": the input, then
                                * after each pass */
    const char *dump_dir;      /* one numbered file per dump (00-input.ir, 01-widen.ir ...);
                                * created if missing; NULL: dumps go to dump_stream */
    FILE *dump_stream;
    int dump_banners;          /* on the stream: a "; kiln: IR after P" line before each */
    const char *scope;         /* on the stream: only these instructions (--scope) */
    int verbose;               /* each pass and its instruction count, on stderr */
    int ndumps;                /* out: dumps written (the next file's number) */
} passes_run_opts;

/* Checks what passes_opts, r's pass names and the dump options ask for against the table
 * (unknown pass, a required one disabled, a dump or stop at a pass that will not run) and
 * reports the first problem. 0, or 1 after reporting. */
int passes_check_run(const passes_run_opts *r);
/* Runs the pipeline on *m (replacing it), verifying after each pass, with the dumps r asks
 * for. Checks r first (passes_check_run). Returns 0, or 1 after an error. */
int passes_run_with(ir_module **m, passes_run_opts *r);
/* The same with only stop points (NULL for none) and verbosity. */
int passes_run(ir_module **m, const char *before, const char *after, int verbose);
/* Runs exactly the passes named in `list` ("cse,dce"), in that order, verifying after
 * each: how a pass is tested .ir in, .ir out. Returns 0, or 1 after an error. */
int passes_run_list(ir_module **m, const char *list, int verbose);
/* The path of dump file number n in dir for `what` ("input", "widen", "before-cse",
 * "codegen") and extension ext ("ir", "c") into buf; returns buf. */
char *passes_dump_path(char *buf, size_t size, const char *dir, int n, const char *what,
                       const char *ext);
/* Makes dir (and its parents) if missing. 0, or -1 after reporting. */
int passes_make_dir(const char *dir);

#endif
