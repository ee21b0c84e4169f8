/* kiln.c - the `kiln` command: parse a spec, lower it to IR, run the passes, and then build a
 * program, dump the IR, write test weights, or inspect a checkpoint.
 *
 *   kiln build SPEC|FILE.ir --weights FILE -o PROG [--wtype f32|f16|bf16] [--max-batch N]
 *              [-D name=value ...] [--config FILE] [--ctx N] [--share-softmax=G,b,e]
 *              [--calib FILE] [--tokenizer FILE]
 *   kiln build SPEC --emit=c|ir|dot -o FILE      (or --stop-after=PASS|codegen)
 *   kiln build SPEC --weights FILE --lib [--embed-blob] [--name N] -o DIR   (a C library)
 *   kiln build SPEC --weights FILE --blob BLOB [-o PROG]   (the blob apart from the program)
 * The pass manager's options (-O0, --disable-pass, --dump-before/--dump-after/--dump-dir,
 * --stop-after, --report, --list-passes) apply to build, dump, check and emit-c.
 *   kiln weights SPEC --seed S -o FILE [--format safetensors|llama2c|gguf] [--dtype T] [-D ...]
 *   kiln dump SPEC|FILE.ir [--after PASS] [--scope l=2] [--dot] [-D ...]
 *   kiln check SPEC [-D ...]
 *   kiln emit-c SPEC -o FILE.c [-D ...]
 *   kiln inspect FILE
 *   kiln bench SPEC --weights FILE [...]       (cli/bench.c; kiln bench --help)
 *   kiln ops
 * Every command takes -w (no warnings) and -Werror (warnings are errors: exit 1, no output).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../codegen/codegen.h"
#include "../frontend/sema.h"
#include "../passes/passes.h"
#include "../runtime/kiln_blob.h"
#include "../weights/tokenizer.h"
#include "bench.h"
#include "measure.h"
#include "report.h"

#define KILN_VERSION "0.1.0"

extern const char kiln_std_source[];

static const char usage_text[] =
    "usage: kiln COMMAND [options]\n"
    "\n"
    "kiln compiles a language-model architecture written as a spec file (.kiln) into a\n"
    "standalone program that runs the model on the CPU.\n"
    "\n"
    "commands:\n"
    "  build SPEC --weights FILE -o PROG   compile SPEC with the checkpoint FILE (safetensors,\n"
    "                                      llama2.c .bin or GGUF) into the executable PROG; the\n"
    "                                      weights are packed into PROG itself\n"
    "                                      (SPEC may be an IR dump, FILE.ir)\n"
    "  build SPEC --emit=c|ir|dot -o FILE  the C, the IR or Graphviz of SPEC, no weights\n"
    "  build SPEC --weights FILE --lib -o DIR\n"
    "                                      the model as a C library: DIR/NAME.h, DIR/libNAME.a\n"
    "                                      and DIR/NAME.kblob (README: C LIBRARY)\n"
    "  weights SPEC --seed S -o FILE       write det-weights v1 test weights for every tensor\n"
    "                                      SPEC declares (--format safetensors, the default,\n"
    "                                      llama2c or gguf)\n"
    "  dump SPEC                           print the IR (kiln-ir 2 text, docs/ir.md) after the\n"
    "                                      passes; of a FILE.ir, the dump as read back (with\n"
    "                                      --after or --passes, after those passes)\n"
    "  check SPEC                          parse and check SPEC; print nothing when it is fine\n"
    "  emit-c SPEC -o FILE                 write the generated C program (-o -: stdout)\n"
    "  inspect FILE                        list the tensors of a checkpoint (GGUF: and its\n"
    "                                      metadata)\n"
    "  bench SPEC --weights FILE           build SPEC for each --wtype and measure prompt and\n"
    "                                      decode speed against the machine's read bandwidth\n"
    "                                      and FMA peak, like llama-bench (its own options:\n"
    "                                      kiln bench --help)\n"
    "  ops                                 list the IR ops\n"
    "\n"
    "options:\n"
    "  -D name=value     override a parameter of the spec (repeatable)\n"
    "  --config FILE     take parameters from a Hugging Face config.json: every key sets the\n"
    "                    parameter of its name (hidden_size also sets dim, num_attention_heads\n"
    "                    heads, ...; -D wins); a key that changes the computation but that the\n"
    "                    spec does not use (rope_scaling, hidden_act \"gelu\", ...) is an error;\n"
    "                    -v lists the keys the spec does not use\n"
    "  --ctx N           the context length: sets the spec's parameter ctx (over --config's\n"
    "                    max_position_embeddings; not together with -D ctx=)\n"
    "  -o FILE           output file\n"
    "  --weights FILE    checkpoint to build with: a file, or a Hugging Face folder (its\n"
    "                    config.json as --config, model.safetensors or the shards of\n"
    "                    model.safetensors.index.json); a llama2.c header's, a llama\n"
    "                    GGUF's or the folder's hyperparameters set the spec's parameters\n"
    "                    (also on dump, check and emit-c; -D wins; a key the spec cannot\n"
    "                    take is an error)\n"
    "  --seed S          det-weights seed (weights; default 1)\n"
    "  --format F        safetensors | llama2c | gguf (weights)\n"
    "  --dtype T         weights: write the values rounded to T (f32, f16, bf16; safetensors\n"
    "                    or gguf; default f32), or quantized to q8_0 or q4_0 (gguf: the\n"
    "                    matrices; norm gains stay f32)\n"
    "  --wtype T         store weights as T (f32, f16, bf16, q8_0, q4_0) when packing;\n"
    "                    default: as the checkpoint stores them (dump: show the IR for\n"
    "                    weights of type T). q8_0 and q4_0 (GGUF's blocks, quantized as\n"
    "                    llama-quantize does) take the matrices whose rows are whole blocks\n"
    "                    of 32; norm gains and the rest stay as they are\n"
    "  --wtype-of NAME=T the weights the spec declares as NAME (or the array NAME) as T, over\n"
    "                    --wtype: keep the embedding wider with --wtype-of embed=f16\n"
    "                    (repeatable)\n"
    "  --act A           products over q8_0/q4_0 weights: q8_0 (default) rounds their input\n"
    "                    to 8-bit blocks as llama.cpp does; f32 keeps it in f32 (the weights\n"
    "                    dequantized exactly: the logits of the dequantized f32 weights)\n"
    "  --kv-type T       build, dump: store the KV caches as T (f32, f16, bf16; default\n"
    "                    f32); attention reads them as stored\n"
    "  --max-batch N     the largest block of prompt tokens the program runs at once\n"
    "                    (1..65536; default 64); each weight is read once per block\n"
    "  --before PASS     dump the IR before PASS instead of after the last pass\n"
    "  --after PASS      dump the IR after PASS (or `none`: straight from the front end);\n"
    "                    the same as --stop-after PASS (kiln --list-passes: the passes)\n"
    "  --passes P,Q      dump: run exactly these passes, in this order (a pass test:\n"
    "                    kiln dump in.ir --passes cse)\n"
    "  --scope TEXT      dump only the instructions made under these loop indices (l=2)\n"
    "  --dot             dump as Graphviz (--emit=dot)\n"
    "  --emit-c FILE     build: also keep the generated C in FILE\n"
    "  --tokenizer FILE  build: the program's tokenizer (text in, text out): a llama2.c\n"
    "                    tokenizer.bin, a Hugging Face tokenizer.json or a GGUF file's\n"
    "                    vocabulary; over the checkpoint's own (a GGUF vocabulary, a\n"
    "                    folder's tokenizer.json); --tokenizer none: no tokenizer\n"
    "  --blob FILE       build: write the weight blob to FILE, and the program (-o, if\n"
    "                    given) without it: run it as PROG --blob FILE\n"
    "  --lib             build: a C library in the folder -o DIR (made if missing): NAME.h,\n"
    "                    libNAME.a (only NAME_* symbols global) and NAME.kblob\n"
    "  --embed-blob      --lib: the blob inside libNAME.a (NAME_open(&m, NULL)), no .kblob\n"
    "  --name N          --lib: the C name of the library's functions and files (default:\n"
    "                    the model's name, made a C identifier)\n"
    "  --allow-nonfinite build: pack weights that are NaN or infinite (after conversion)\n"
    "                    with a warning; without it they are an error naming the tensor\n"
    "  -v, --verbose     show the passes and the C compiler command\n"
    "  -w                print no warnings\n"
    "  -Werror           treat warnings as errors (exit 1, write nothing)\n"
    "  -h, --help        this text;  --version  the version\n"
    "\n"
    "pass manager (build, dump, check, emit-c; --x=V and --x V alike):\n"
    "  --list-passes     print the pipeline (flags, requires, preserves) and exit\n"
    "  -O0               run only the passes correctness needs (and those asked for)\n"
    "  --disable-pass P  skip the pass P (repeatable, or P,Q); a required one cannot be\n"
    "  --dump-before P   the IR before P (or `all`: before each pass)\n"
    "  --dump-after P    the IR after P (or `all`: the input, then after each pass);\n"
    "                    to stderr (dump: stdout, in place of the final dump)\n"
    "  --dump-dir DIR    the dumps as numbered files DIR/00-input.ir, 01-widen.ir, ...\n"
    "                    (DIR made if missing), and the C as the next one, NN-codegen.c\n"
    "  --stop-after P    stop after the pass P, or after `codegen` (the C); build then\n"
    "                    writes the IR (or the C) to -o and needs no --weights\n"
    "  --emit ir|c|dot   build, dump: write the IR, the C or Graphviz instead of a program\n"
    "                    (build: to -o; no --weights needed: f32 weights, or --wtype's)\n"
    "  --report          after the run, print the memory plan (weights by group, each KV\n"
    "                    cache, the frame) and every decision the passes recorded\n"
    "\n"
    "passes that change the model (build measures the divergence from the unchanged model\n"
    "on calibration tokens: mean KL per token, top-1 agreement):\n"
    "  --share-softmax=G,b,e  share attention probabilities (UniAttn): layer l leads iff\n"
    "                    l < b, l >= e or (l - b) % G == 0; every other layer reuses its\n"
    "                    leader's (b + (l - b) / G * G), so it computes no Q, K or softmax\n"
    "                    and keeps no K cache\n"
    "  --keep-experts=L:E,E;L:E  keep only these experts of these layers (the layers not\n"
    "                    named keep all); the others leave the program and the blob\n"
    "  --prune-experts=FILE  choose the experts from a routing profile (a program's\n"
    "                    --profile-routing FILE), with one of:\n"
    "  --min-freq X      keep the experts that ran for at least X of the tokens\n"
    "  --expert-budget P keep, per layer, the fewest experts covering P of the firings\n"
    "  --calib FILE      build: the calibration tokens (ids separated by commas or white\n"
    "                    space; default: 64 fixed tokens, fewer when ctx is shorter)\n"
    "\n"
    "A weight the spec declares but never reads is not packed (a warning says so), and the\n"
    "checkpoint need not hold it.\n"
    "\n"
    "environment: CC (the C compiler, default cc), KILN_RUNTIME_DIR (libkilnrt.a and include/,\n"
    "default: beside this executable), TMPDIR (build folders, default /tmp; a failed or\n"
    "interrupted build leaves nothing there).\n"
    "\n"
    "example:\n"
    "  kiln weights examples/llama.kiln --seed 1 -o llama.safetensors\n"
    "  kiln build examples/llama.kiln --weights llama.safetensors -o llama\n"
    "  ./llama --tokens 1,5,9 -n 16 --temp 0\n";

typedef struct options {
    const char *command, *spec, *out, *weights, *format, *before, *scope, *emit_c;
    const char *config, *wtype, *dtype, *passes;
    const char *stop_after;    /* --stop-after / --after: a pass, "none", or "codegen" */
    const char *dump_before, *dump_after, *dump_dir;
    const char *emit;          /* --emit ir|c|dot (--dot: dot) */
    const char *calib;         /* --calib FILE: calibration tokens (model-changing passes) */
    const char *tokenizer;     /* --tokenizer FILE: over the checkpoint's own */
    uint64_t seed;
    int dot, verbose, report;
    int warnings;              /* DIAG_WARN, DIAG_NO_WARN (-w), DIAG_WERROR (-Werror) */
    const char *ctx;           /* --ctx N, as text; NULL if not given */
    int64_t max_batch;         /* --max-batch, 0: the default */
    sema_define defs[256];
    int ndefs;
    bind_wtype_of wtype_of[64];   /* --wtype-of NAME=TYPE */
    int nwtype_of;
    int lib, embed_blob;       /* --lib, --embed-blob */
    const char *lib_name;      /* --name N */
    const char *blob_out;      /* --blob FILE */
    int allow_nonfinite;       /* --allow-nonfinite: pack NaN and infinities, with a warning */
} options;

static _Noreturn void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "kiln: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ntry 'kiln --help'\n");
    exit(2);
}

/* Options that take a value into a string field: each accepts `--x v` and `--x=v`. */
static const struct value_option {
    const char *name;
    size_t field;              /* offsetof(options, ...) */
} value_options[] = {
    {"-o", offsetof(options, out)},
    {"--weights", offsetof(options, weights)},
    {"--format", offsetof(options, format)},
    {"--passes", offsetof(options, passes)},
    {"--wtype", offsetof(options, wtype)},
    {"--dtype", offsetof(options, dtype)},
    {"--config", offsetof(options, config)},
    {"--before", offsetof(options, before)},
    {"--after", offsetof(options, stop_after)},
    {"--stop-after", offsetof(options, stop_after)},
    {"--dump-before", offsetof(options, dump_before)},
    {"--dump-after", offsetof(options, dump_after)},
    {"--dump-dir", offsetof(options, dump_dir)},
    {"--emit", offsetof(options, emit)},
    {"--scope", offsetof(options, scope)},
    {"--emit-c", offsetof(options, emit_c)},
    {"--calib", offsetof(options, calib)},
    {"--tokenizer", offsetof(options, tokenizer)},
    {"--name", offsetof(options, lib_name)},
    {"--blob", offsetof(options, blob_out)},
};

/* Options without a value that set an int field to a value. */
static const struct flag_option {
    const char *name;
    size_t field;
    int value;
} flag_options[] = {
    {"--dot", offsetof(options, dot), 1},
    {"--report", offsetof(options, report), 1},
    {"--lib", offsetof(options, lib), 1},
    {"--embed-blob", offsetof(options, embed_blob), 1},
    {"--allow-nonfinite", offsetof(options, allow_nonfinite), 1},
    {"-v", offsetof(options, verbose), 1},
    {"--verbose", offsetof(options, verbose), 1},
    {"-w", offsetof(options, warnings), DIAG_NO_WARN},
    {"-Werror", offsetof(options, warnings), DIAG_WERROR},
};

/* Whether argv[*i] is the option `name` with a value, as `name=v` or `name v` (then *i
 * moves past v); sets *val. A missing value is a usage error. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) || (a[n] && a[n] != '='))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
    } else {
        if (*i + 1 >= argc)
            usage_error("%s needs a value", name);
        *val = argv[++*i];
    }
    if (!**val)
        usage_error("%s needs a value", name);
    return 1;
}

/* An integer option's value in lo..hi, else a usage error with `what`. */
static long long integer_value(const char *name, const char *v, long long lo, long long hi,
                               const char *what)
{
    char *end, msg[160];
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        snprintf(msg, sizeof msg, "%s needs %s, not '%%s'", name, what);
        usage_error(msg, v);
    }
    return x;
}

/* --disable-pass P (repeatable, or P,Q): into passes_opts.disabled (names checked later,
 * against the pipeline, by passes_check_run). */
static void disable_passes(const char *list)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n) {
            if (passes_opts.ndisabled == (int)(sizeof passes_opts.disabled /
                                               sizeof passes_opts.disabled[0]))
                usage_error("too many passes disabled (at most 16)%s", "");
            passes_opts.disabled[passes_opts.ndisabled++] = base_intern(p, n);
        }
        p += n + (p[n] == ',');
    }
}

/* --share-softmax=G,b,e into passes_opts: G >= 1, 0 <= b <= e (e <= layers: the pass). */
static void parse_share_softmax(const char *text)
{
    long long v[3];
    const char *p = text;
    for (int k = 0; k < 3; k++) {
        char *end;
        errno = 0;
        v[k] = strtoll(p, &end, 10);
        if (errno || end == p || *p == '+' || *p == ' ' || v[k] < INT_MIN || v[k] > INT_MAX ||
            *end != (k < 2 ? ',' : '\0'))
            usage_error("--share-softmax needs G,b,e (three integers: the group size, the "
                        "first and the end layer of the sharing), not '%s'", text);
        p = end + 1;
    }
    if (v[0] < 1)
        usage_error("--share-softmax=%s: the group size G must be at least 1", text);
    if (v[1] < 0 || v[1] > v[2])
        usage_error("--share-softmax=%s: the layers must satisfy 0 <= b <= e", text);
    passes_opts.share_group = (int)v[0];
    passes_opts.share_begin = (int)v[1];
    passes_opts.share_end = (int)v[2];
}

static int min_freq_given;     /* --min-freq was given (0 is a valid share) */

/* --min-freq X in 0..1, --expert-budget P in (0, 1]: into passes_opts. */
static void parse_prune_share(const char *name, const char *v)
{
    int budget = !strncmp(name, "--expert-budget", 15);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= 0 && x <= 1) || (budget && x == 0))
        usage_error(budget ? "--expert-budget needs a share of the firings in (0, 1], not '%s'"
                           : "--min-freq needs a share of the tokens in 0..1, not '%s'", v);
    *(budget ? &passes_opts.expert_budget : &passes_opts.min_freq) = x;
    min_freq_given |= !budget;
}

/* The pruning flags go together one way only. */
static void check_prune_flags(void)
{
    const passes_options *p = &passes_opts;
    if (p->keep_experts && p->prune_profile)
        usage_error("--keep-experts and --prune-experts are two ways to choose; give one%s", "");
    if ((min_freq_given || p->expert_budget > 0) && !p->prune_profile)
        usage_error("--min-freq and --expert-budget choose from a profile: give "
                    "--prune-experts=FILE%s", "");
    if (p->prune_profile && min_freq_given == (p->expert_budget > 0))
        usage_error("--prune-experts=FILE needs one of --min-freq X and --expert-budget P%s", "");
}

/* One argument (and its value): a table option, or one of those with their own rules.
 * Returns 0 when argv[*i] is not an option kiln knows. */
static int parse_option(int argc, char **argv, int *i, options *o)
{
    const char *a = argv[*i], *v;
    for (size_t k = 0; k < sizeof value_options / sizeof value_options[0]; k++)
        if (option_value(argc, argv, i, value_options[k].name, &v)) {
            *(const char **)((char *)o + value_options[k].field) = v;
            return 1;
        }
    for (size_t k = 0; k < sizeof flag_options / sizeof flag_options[0]; k++)
        if (!strcmp(a, flag_options[k].name)) {
            *(int *)((char *)o + flag_options[k].field) = flag_options[k].value;
            return 1;
        }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        fputs(usage_text, stdout);
        exit(0);
    } else if (!strcmp(a, "--version")) {
        printf("kiln %s (IR dump version %d)\n", KILN_VERSION, IR_DUMP_VERSION);
        exit(0);
    } else if (!strcmp(a, "--list-passes")) {
        passes_list(stdout);
        exit(0);
    } else if (!strcmp(a, "-O0")) {
        passes_opts.o0 = 1;
    } else if (option_value(argc, argv, i, "--kv-type", &v)) {   /* passes/kvlayout.c */
        if (strcmp(v, "f32") && strcmp(v, "f16") && strcmp(v, "bf16"))
            usage_error("--kv-type must be f32, f16 or bf16, not '%s'", v);
        passes_opts.kv_type = v;
    } else if (option_value(argc, argv, i, "--wtype-of", &v)) {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1])
            usage_error("--wtype-of needs NAME=TYPE (a weight the spec declares, or an array of "
                        "them, and f32, f16, bf16, q8_0 or q4_0), not '%s'", v);
        if (o->nwtype_of == (int)(sizeof o->wtype_of / sizeof o->wtype_of[0]))
            usage_error("too many --wtype-of options%s", "");
        o->wtype_of[o->nwtype_of++] = (bind_wtype_of){base_intern(v, (size_t)(eq - v)), eq + 1};
    } else if (option_value(argc, argv, i, "--act", &v)) {    /* passes/quant_act.c */
        if (strcmp(v, "f32") && strcmp(v, "q8_0"))
            usage_error("--act must be q8_0 (the default) or f32, not '%s'", v);
        passes_opts.act_f32 = !strcmp(v, "f32");
    } else if (option_value(argc, argv, i, "--disable-pass", &v)) {
        disable_passes(v);
    } else if (option_value(argc, argv, i, "--share-softmax", &v)) {
        parse_share_softmax(v);
    } else if (option_value(argc, argv, i, "--keep-experts", &v)) {
        passes_opts.keep_experts = v;
    } else if (option_value(argc, argv, i, "--prune-experts", &v)) {
        passes_opts.prune_profile = v;
    } else if (option_value(argc, argv, i, "--min-freq", &v) ||
               option_value(argc, argv, i, "--expert-budget", &v)) {
        parse_prune_share(a, v);
    } else if (option_value(argc, argv, i, "--max-batch", &v)) {
        o->max_batch = integer_value("--max-batch", v, 1, 65536, "an integer in 1..65536");
    } else if (option_value(argc, argv, i, "--ctx", &v)) {
        integer_value("--ctx", v, 1, INT32_MAX, "a positive integer");
        o->ctx = v;
    } else if (option_value(argc, argv, i, "--seed", &v)) {
        char *end;
        errno = 0;
        o->seed = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-')
            usage_error("--seed needs a non-negative integer, not '%s'", v);
    } else if (!strncmp(a, "-D", 2)) {
        const char *def = a[2] ? a + 2 : *i + 1 < argc ? argv[*i + 1] : NULL;
        if (!def)
            usage_error("%s needs name=value", a);
        if (!a[2])
            ++*i;
        const char *eq = strchr(def, '=');
        if (!eq || eq == def || !eq[1])
            usage_error("-D needs name=value, not '%s'", def);
        if (o->ndefs == 64)   /* the rest of defs[] is for implied values */
            usage_error("too many -D options%s", "");
        o->defs[o->ndefs].name = base_intern(def, (size_t)(eq - def));
        o->defs[o->ndefs++].value = eq + 1;
    } else {
        return 0;
    }
    return 1;
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (parse_option(argc, argv, &i, o))
            continue;
        if (a[0] == '-' && a[1])
            usage_error("unknown option '%s'", a);
        else if (!o->command)
            o->command = a;
        else if (!o->spec)
            o->spec = a;
        else
            usage_error("unexpected argument '%s'", a);
    }
    if (!o->command)
        usage_error("no command given%s", "");
    if (passes_opts.o0 && passes_opts.kv_type && strcmp(passes_opts.kv_type, "f32"))
        usage_error("--kv-type %s needs the kvlayout pass, which -O0 does not run",
                    passes_opts.kv_type);
    check_prune_flags();
    if (o->tokenizer && strcmp(o->command, "build"))
        usage_error("--tokenizer applies to build, not to '%s'", o->command);
    if (o->calib && strcmp(o->command, "build"))
        usage_error("--calib applies to build (which measures a model-changing pass), not to "
                    "'%s'", o->command);
    if (o->dot)
        o->emit = o->emit ? o->emit : "dot";
    if (o->emit && strcmp(o->emit, "ir") && strcmp(o->emit, "c") && strcmp(o->emit, "dot"))
        usage_error("--emit must be ir, c or dot, not '%s'", o->emit);
    if (o->stop_after && !strcmp(o->stop_after, "codegen")) {
        if (o->emit && strcmp(o->emit, "c"))
            usage_error("--stop-after=codegen writes the C; it does not mix with --emit=%s",
                        o->emit);
        o->emit = "c";
    }
    if (o->ctx) {              /* --ctx is the define ctx=N, explicit: it wins over --config */
        for (int d = 0; d < o->ndefs; d++)
            if (!strcmp(o->defs[d].name, "ctx"))
                usage_error("'ctx' is given twice: -D ctx=%s and --ctx", o->defs[d].value);
        o->defs[o->ndefs++] = (sema_define){base_intern_str("ctx"), o->ctx, 0, SD_TEXT, "--ctx"};
    }
}

/* Adds the keys of --config FILE as implied defines, each with its shape and its origin
 * (the file and the key, for the front end's messages). NULL after reporting. */
static hf_config *apply_config(options *o)
{
    hf_config *c = hf_config_read(o->config);
    if (!c)
        return NULL;
    int n;
    const hf_param *p = hf_config_params(c, &n);
    for (int i = 0; i < n; i++) {
        if (o->ndefs == (int)(sizeof o->defs / sizeof o->defs[0])) {
            diag_file_error(o->config, "too many keys (key \"%s\"): kiln takes at most %d "
                            "parameters from a config", p[i].key, (int)(sizeof o->defs /
                            sizeof o->defs[0]) - 64);
            hf_config_free(c);
            return NULL;
        }
        o->defs[o->ndefs++] = (sema_define){p[i].name, p[i].value, 1,
                                            p[i].shape == HF_LIST ? SD_LIST : SD_SCALAR,
                                            p[i].origin};
    }
    return c;
}

/* The spec as lowered, as a config or a GGUF file is checked against it: its parameters
 * (spec.names: free() it), whether its classifier is the embedding, its context. */
static hf_spec spec_params(const ir_module *m)
{
    const char **names = calloc((size_t)(m->nparams + m->nrtparams + 1), sizeof *names);
    if (!names)
        DIE("out of memory");
    int n = 0;
    for (int i = 0; i < m->nparams; i++)
        names[n++] = m->params[i].name;
    for (int i = 0; i < m->nrtparams; i++)
        names[n++] = m->rtparams[i].name;
    hf_spec spec = {names, n, 1, m->ctx};
    for (int t = 0; t < m->ntensors; t++)
        if (!strcmp(m->tensors[t].name, "lm_head.weight"))
            spec.tied = 0;
    return spec;
}

/* The config against the spec as lowered: every key that changes the computation must be
 * used by one of the spec's parameters or be neutral (weights/hfconfig.c). 0, or -1. */
static int check_config(const hf_config *c, const ir_module *m, int verbose)
{
    hf_spec spec = spec_params(m);
    int rc = hf_config_check(c, &spec, verbose);
    free((void *)spec.names);
    return rc;
}

static void imply_llama2c_params(options *o, const ckpt *ck);

/* --weights FILE on a spec: the checkpoint's hyperparameters (a llama2.c header, a llama
 * GGUF's metadata: weights/gguf_hparams.c) become implied parameters, so the spec fits the
 * file without -D (an explicit -D still wins). The checkpoint, or NULL after reporting. */
static ckpt *checkpoint_params(options *o)
{
    ckpt *ck = ckpt_open(o->weights);
    if (!ck)
        return NULL;
    if (ck->format == CKPT_LLAMA2C)
        imply_llama2c_params(o, ck);
    hf_param *p;
    int n;
    if (gguf_hparams_read(ck, &p, &n) != 0) {
        ckpt_close(ck);
        return NULL;
    }
    for (int i = 0; i < n && o->ndefs < (int)(sizeof o->defs / sizeof o->defs[0]); i++)
        o->defs[o->ndefs++] = (sema_define){p[i].name, p[i].value, 1, SD_SCALAR, p[i].origin};
    free(p);
    return ck;
}

/* A GGUF file against the spec as lowered (weights/gguf_hparams.c). 0, or -1. */
static int check_checkpoint(const ckpt *ck, const ir_module *m)
{
    hf_spec spec = spec_params(m);
    int rc = gguf_hparams_check(ck, &spec);
    free((void *)spec.names);
    return rc;
}

/* Whether the input is an IR dump (FILE.ir, or text that starts with "kiln-ir"). */
static int is_ir_input(const char *path)
{
    size_t n = strlen(path);
    if (n > 3 && !strcmp(path + n - 3, ".ir"))
        return 1;
    char head[8] = "";
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t got = fread(head, 1, 7, f);
        head[got] = 0;
        fclose(f);
    }
    return !strcmp(head, "kiln-ir");
}

/* Reads an IR dump and verifies it. NULL after errors. */
static ir_module *read_ir(const options *o, src_file *file)
{
    if (o->ndefs || o->config)
        usage_error("-D and --config apply to specs (as does --ctx); %s is an IR dump", o->spec);
    if (!src_file_read(file, o->spec))
        return NULL;
    ir_module *m = ir_read(file);
    if (!m)
        return NULL;
    if (o->max_batch && o->max_batch != m->t_max) {
        m->t_max = o->max_batch;   /* another block size: the memory plan no longer holds */
        m->planned = 0;
        for (int i = 0; i < m->ninsts; i++)
            m->insts[i].mem = MEM_NONE, m->insts[i].offset = 0;
    }
    if (ir_verify(m)) {
        diag_file_error(o->spec, "the IR does not verify (above)");
        ir_module_free(m);
        return NULL;
    }
    return m;
}

/* What the front end leaves for the commands: the source files (diagnostics point into
 * them) and the tensors the spec declared, to tell which ones the passes dropped. */
typedef struct front {
    src_file spec, std;
    ir_tensor *declared;       /* NULL for an IR dump */
    int ndeclared;
} front;

/* Parses the standard library and the spec, lowers to IR, checks --config against it,
 * verifies. An IR dump is read back instead. NULL after errors. */
static ir_module *front_end(const options *o_in, front *fe)
{
    options opts = *o_in, *o = &opts;
    memset(fe, 0, sizeof *fe);
    if (!o->spec)
        usage_error("'%s' needs a spec file", o->command);
    if (is_ir_input(o->spec))
        return read_ir(o, &fe->spec);
    if (!o->config && o->weights)      /* a Hugging Face folder: its config.json (-D wins) */
        o->config = hfdir_config(o->weights);
    hf_config *config = NULL;
    if (o->config && !(config = apply_config(o)))
        return NULL;
    ckpt *ck = NULL;
    if (o->weights && !(ck = checkpoint_params(o))) {
        hf_config_free(config);
        return NULL;
    }
    src_file_from_string(&fe->std, "<std>", kiln_std_source);
    ast_node *std = parse_file(&fe->std);
    if (!std)
        DIE("the standard library does not parse");
    ir_module *m = NULL;
    ast_node *spec = NULL;
    if (src_file_read(&fe->spec, o->spec) && (spec = parse_file(&fe->spec)))
        m = sema_lower(std, spec, o->defs, o->ndefs);
    if (m && ((config && check_config(config, m, o->verbose) != 0) ||
              (ck && check_checkpoint(ck, m) != 0))) {
        ir_module_free(m);
        m = NULL;
    }
    hf_config_free(config);
    ckpt_close(ck);
    if (!m)
        return NULL;
    if (o->max_batch)
        m->t_max = o->max_batch;
    if (ir_verify(m))
        DIE("the front end produced invalid IR for %s", o->spec);
    fe->ndeclared = m->ntensors;
    fe->declared = malloc(sizeof *fe->declared * (size_t)(m->ntensors ? m->ntensors : 1));
    if (!fe->declared)
        DIE("out of memory");
    memcpy(fe->declared, m->tensors, sizeof *fe->declared * (size_t)m->ntensors);
    return m;
}

static void front_free(front *fe)
{
    free(fe->declared);
    fe->declared = NULL;
}

static int same_loc(src_loc a, src_loc b)
{
    return a.file == b.file && a.line == b.line && a.col == b.col;
}

/* Whether m still reads the declared tensor d: its checkpoint tensor, or (a weight bound to
 * a view) its recipe, inside whatever the passes made of it. */
static int has_tensor(const ir_module *m, const ir_tensor *d)
{
    for (int t = 0; t < m->ntensors; t++)
        if (d->recipe ? ir_recipe_contains(ir_recipe_of(&m->tensors[t]), d->recipe)
                      : ir_recipe_reads(ir_recipe_of(&m->tensors[t]), d->name))
            return 1;
    return 0;
}

/* Warns about each declared weight the passes dropped (dce: nothing reads it), once per
 * declaration: an array none of whose elements is read is one warning. */
static void warn_unread(const front *fe, const ir_module *m)
{
    for (int i = 0; i < fe->ndeclared; i++) {
        const ir_tensor *t = &fe->declared[i];
        if (has_tensor(m, t))
            continue;
        int first = 1, all = 1, n = 0;
        for (int j = 0; j < fe->ndeclared; j++) {
            if (!same_loc(fe->declared[j].loc, t->loc))
                continue;
            n++;
            int unread = !has_tensor(m, &fe->declared[j]);
            all &= unread;
            if (j < i && unread)
                first = 0;
        }
        if (all && !first)
            continue;          /* already said for the whole array */
        const char *bracket = strchr(t->decl, '[');
        int len = all && bracket ? (int)(bracket - t->decl) : (int)strlen(t->decl);
        if (all && n > 1)
            diag_warning(t->loc, "weight '%.*s' (all %d of them) is declared but never read; "
                         "it is not packed", len, t->decl, n);
        else
            diag_warning(t->loc, "weight '%.*s' is declared but never read; it is not packed",
                         len, t->decl);
    }
}

/* Whether the run reaches code generation: the stop point is no pass. */
static int stops_at_pass(const options *o)
{
    return (o->stop_after && strcmp(o->stop_after, "codegen")) || o->before;
}

/* The pipeline as the options shape it (stop points, dumps onto `stream` or into
 * --dump-dir), then the warnings about what it dropped. dumps: the pass manager's state, for
 * the file number of a later NN-codegen.c. 0, or 1 after an error. */
static int run_passes(ir_module **m, const front *fe, const options *o, FILE *stream,
                      passes_run_opts *dumps)
{
    *dumps = (passes_run_opts){
        .stop_before = o->before,
        .stop_after = o->stop_after && strcmp(o->stop_after, "codegen") ? o->stop_after : NULL,
        .dump_before = o->dump_before,
        .dump_after = o->dump_after,
        .dump_dir = o->dump_dir,
        .dump_stream = stream,
        .dump_banners = stream == stderr,
        .scope = o->scope,
        .verbose = o->verbose,
    };
    /* a model-changing pass leaves weights the spec reads unread (share-softmax: the
     * reusers' Q and K); the warnings are about the spec, so the unchanged pipeline says */
    ir_module *unchanged = passes_changes_model(&passes_opts) ? ir_module_copy(*m) : NULL;
    int rc = passes_run_with(m, dumps);
    if (rc == 0 && unchanged)
        rc = measure_reference_passes(&unchanged, dumps->stop_before, dumps->stop_after, 0);
    if (rc == 0)
        warn_unread(fe, unchanged ? unchanged : *m);
    if (unchanged)
        ir_module_free(unchanged);
    return rc;
}

/* The C of m into --dump-dir as the next numbered file (NN-codegen.c), when there is one.
 * 0, or -1 after reporting. */
static int dump_codegen(const ir_module *m, const options *o, passes_run_opts *dumps)
{
    if (!o->dump_dir)
        return 0;
    char path[4200];
    if (passes_make_dir(o->dump_dir) != 0)
        return -1;
    return codegen_write_c(m, passes_dump_path(path, sizeof path, o->dump_dir,
                                               dumps->ndumps++, "codegen", "c"));
}

/* --emit ir|dot|c of m to path ("-": standard output), through base/outfile.c. 0, or -1. */
static int write_emit(const ir_module *m, const options *o, const char *path)
{
    if (!strcmp(o->emit, "c")) {
        if (!m->planned)   /* only when the run stopped early: memplan is required */
            usage_error("--emit=c needs the whole pipeline; the run stops before '%s'",
                        o->before ? o->before : "memplan");
        return codegen_write_c(m, path);
    }
    outfile out;
    if (outfile_open(&out, path, 0644, OUTFILE_STREAM | OUTFILE_STDOUT) != 0)
        return -1;
    if (!strcmp(o->emit, "dot"))
        ir_print_dot(out.f, m, o->scope);
    else
        ir_print(out.f, m, o->scope);
    if (ferror(out.f)) {
        diag_file_error(path, "write failed: %s", strerror(errno));
        outfile_abort(&out);
        return -1;
    }
    return outfile_commit(&out);
}

/* -O0 and --disable-pass shape the pipeline; --passes is an exact list. */
static void check_pass_options(const options *o)
{
    if (o->passes && (o->before || o->stop_after || passes_opts.o0 || passes_opts.ndisabled ||
                      o->dump_before || o->dump_after))
        usage_error("--passes runs exactly the passes it names; it does not mix with "
                    "--before, --after/--stop-after, -O0, --disable-pass or --dump-*%s", "");
    if (o->emit && !strcmp(o->emit, "c") && stops_at_pass(o))
        usage_error("--emit=c writes the C of the whole pipeline; --before/--stop-after "
                    "stop it at a pass (use --emit=ir)%s", "");
}

static int finish(int rc)
{
    if (rc == 0 && diag_error_count())
        rc = 1;
    return rc;
}

/* ---------------------------------------------------------------- commands */

/* --wtype and --wtype-of for a command without weights: the storage types a build from an
 * f32 checkpoint would choose (codegen/bind.c). 0, or 1 after reporting. */
static int apply_wtype(ir_module *m, const char *wtype, const options *o)
{
    if ((wtype && strcmp(wtype, "f32")) || o->nwtype_of) {
        if ((o->stop_after && !strcmp(o->stop_after, "none")) ||
            (o->before && !strcmp(o->before, "widen")))
            usage_error("--wtype %s: weights of a storage type are read through the widen pass; "
                        "the IR before it is the front end's, with f32 weights",
                        wtype ? wtype : o->wtype_of[0].wtype);
    }
    return bind_storage_types(m, NULL, wtype, o->wtype_of, o->nwtype_of) != 0;
}

static int cmd_check(const options *o)
{
    if (o->emit)
        usage_error("check writes nothing; --emit is for build and dump%s", "");
    check_pass_options(o);
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    if ((o->wtype || o->nwtype_of) && apply_wtype(m, o->wtype, o)) {
        ir_module_free(m);
        front_free(&fe);
        return 1;
    }
    passes_run_opts dumps;
    int rc = run_passes(&m, &fe, o, stderr, &dumps);
    if (rc == 0 && !diag_error_count() && o->report)
        report_print(stdout, m, NULL, o->spec);
    ir_module_free(m);
    front_free(&fe);
    return finish(rc);
}

static int cmd_dump(const options *o)
{
    check_pass_options(o);
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    /* the IR as a build with weights of that storage type sees it */
    if ((o->wtype || o->nwtype_of) && apply_wtype(m, o->wtype, o)) {
        ir_module_free(m);
        front_free(&fe);
        return 1;
    }
    /* a dump read back prints as it was read, unless passes are asked for */
    int as_read = is_ir_input(o->spec) && !o->passes && !o->before && !o->stop_after &&
                  !o->dump_before && !o->dump_after && !o->emit && !passes_opts.o0 &&
                  !passes_opts.ndisabled && !passes_changes_model(&passes_opts);
    passes_run_opts dumps = {0};
    int rc = as_read    ? 0
             : o->passes ? passes_run_list(&m, o->passes, o->verbose)
                         : run_passes(&m, &fe, o, stdout, &dumps);
    if (rc == 0)
        measure_note_unmeasured("dump");
    /* dumps asked for on standard output take the place of the final one */
    int dumped = !o->dump_dir && (o->dump_before || o->dump_after);
    if (rc == 0 && !diag_error_count()) {      /* -Werror: a warning leaves no dump */
        if (o->emit && !strcmp(o->emit, "c"))
            rc = dump_codegen(m, o, &dumps) || codegen_write_c(m, "-") ? 1 : 0;
        else if (o->emit && !strcmp(o->emit, "dot"))
            ir_print_dot(stdout, m, o->scope);
        else if (!dumped)
            ir_print(stdout, m, o->scope);
        if (rc == 0 && o->report)
            report_print(stdout, m, NULL, o->spec);
    }
    ir_module_free(m);
    front_free(&fe);
    return finish(rc);
}

static int cmd_emit_c(const options *o)
{
    if (!o->out)
        usage_error("emit-c needs -o FILE%s", "");
    if (o->emit && strcmp(o->emit, "c"))
        usage_error("emit-c writes C; --emit=%s is for build and dump", o->emit);
    if (stops_at_pass(o))
        usage_error("emit-c writes the C of the whole pipeline; --before/--stop-after stop "
                    "it at a pass%s", "");
    check_pass_options(o);
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    if ((o->wtype || o->nwtype_of) && apply_wtype(m, o->wtype, o)) {
        ir_module_free(m);
        front_free(&fe);
        return 1;
    }
    passes_run_opts dumps;
    int rc = run_passes(&m, &fe, o, stderr, &dumps);
    if (rc == 0)
        measure_note_unmeasured("emit-c");
    if (rc == 0 && !diag_error_count())
        rc = dump_codegen(m, o, &dumps) || codegen_write_c(m, o->out) ? 1 : 0;
    ir_module_free(m);
    front_free(&fe);
    return finish(rc ? 1 : 0);
}

/* For a llama2.c checkpoint, the header's hyperparameters become implied -D values of the
 * parameters of the conventional names, so `kiln build llama2c.kiln --weights x.bin` fits
 * the file without flags; an explicit -D still wins (and a mismatch is then reported). */
static void imply_llama2c_params(options *o, const ckpt *ck)
{
    static char text[8][24];
    const llama2c_header *h = &ck->l2c;
    const struct { const char *name; long long v; } fields[] = {
        {"dim", h->dim},       {"hidden", h->hidden},
        {"layers", h->layers}, {"heads", h->heads},
        {"kv_heads", h->kv_heads}, {"vocab", h->vocab < 0 ? -(long long)h->vocab : h->vocab},
        {"ctx", h->seq_len},   {"tied", h->vocab > 0},
    };
    for (int i = 0; i < 8 && o->ndefs < 256; i++) {
        snprintf(text[i], sizeof text[i], "%lld", fields[i].v);
        o->defs[o->ndefs++] = (sema_define){fields[i].name, text[i], 1, SD_TEXT, NULL};
    }
}

/* llama2.c's export keeps Meta's adjacent-pair RoPE ("interleaved"): a spec turning the two
 * halves of each head ("half", the Hugging Face layout) reads the file's q/k rows in the
 * wrong pairing. It builds and runs, so say it. */
static void warn_llama2c_rope(const char *spec, const ir_module *m, const ckpt *ck)
{
    if (ck->format != CKPT_LLAMA2C)
        return;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if ((in->op == IR_rope || in->op == IR_rope_heads) && in->sattr &&
            !strcmp(in->sattr, "half")) {
            diag_file_warning(ck->path, "%s uses RoPE mode \"half\", but a llama2.c checkpoint "
                              "implies \"interleaved\" (adjacent pairs); the logits will be "
                              "wrong", spec);
            return;
        }
    }
}

/* The compile-time integer parameter `name`, or -1 when the module has none. */
static int64_t param_int_quiet(const ir_module *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) {
            char *end;
            long long v = strtoll(m->params[i].text, &end, 10);
            return *end == 0 ? v : -1;
        }
    return -1;
}

/* The outputs of a build once the passes ran: the --emit file, or the program (with its C
 * kept by --emit-c); the C also into --dump-dir; then the report. packed: the bound
 * tensors, NULL without --weights. 0, or 1 after reporting. */
static int build_outputs(const ir_module *m, const pack_tensor *packed, int npacked,
                         const options *o, passes_run_opts *dumps)
{
    int makes_c = !o->emit || !strcmp(o->emit, "c");
    if (makes_c && dump_codegen(m, o, dumps) != 0)
        return 1;
    if (o->emit)
        return write_emit(m, o, o->out) != 0;
    if (o->lib ? codegen_build_library(m, packed, npacked, o->out, o->lib_name,
                                       o->embed_blob, o->verbose) != 0
        : o->blob_out ? codegen_build_apart(m, packed, npacked, o->out, o->blob_out,
                                            o->emit_c, o->verbose) != 0
                      : codegen_build_program(m, packed, npacked, o->out, o->emit_c,
                                              o->verbose) != 0)
        return 1;
    if (o->report)
        report_print(stdout, m, packed, o->spec);
    return 0;
}

/* --lib, --embed-blob, --name and --blob: what they need and what they do not mix with. */
static void check_lib_options(const options *o)
{
    if ((o->embed_blob || o->lib_name) && !o->lib)
        usage_error("%s goes with --lib (a C library)", o->embed_blob ? "--embed-blob" : "--name");
    if (o->lib_name && !codegen_is_c_identifier(o->lib_name))
        usage_error("--name %s: not a C identifier (letters, digits and _, not first a digit)",
                    o->lib_name);
    if ((o->lib || o->blob_out) && (o->emit || o->stop_after || o->before))
        usage_error("%s builds with weights; it does not mix with --emit or --stop-after",
                    o->lib ? "--lib" : "--blob");
    if (o->lib && o->blob_out)
        usage_error("--lib writes its blob into the folder (NAME.kblob); --blob %s is for "
                    "programs", o->blob_out);
    if (o->lib && !o->out)
        usage_error("--lib needs -o DIR (the folder of the library)%s", "");
    if ((o->lib || o->blob_out) && !o->weights)
        usage_error("%s needs --weights FILE", o->lib ? "--lib" : "--blob");
    if (o->lib && o->emit_c)
        usage_error("--emit-c keeps the C of a program; --lib does not mix with it%s", "");
}

static int cmd_build(const options *o_in)
{
    options opts = *o_in, *o = &opts;
    check_lib_options(o);
    if (!o->out && !o->blob_out)
        usage_error("build needs -o PROG%s", "");
    if (!o->weights && !o->emit && !o->stop_after && !o->before)
        usage_error("build needs --weights FILE (use 'kiln weights' to make test weights)%s", "");
    if (o->tokenizer && (!o->weights || o->emit || o->stop_after))
        usage_error("--tokenizer %s goes into a program: it needs --weights and no --emit or "
                    "--stop-after", o->tokenizer);
    if (!o->spec)
        usage_error("'%s' needs a spec file", o->command);
    if (o->passes)
        usage_error("--passes is for dump (a pass test); build runs the pipeline%s", "");
    if (o->wtype && ir_dtype_lookup(o->wtype) != DT_F32 &&
        !ir_dtype_is_storage((ir_dtype)ir_dtype_lookup(o->wtype)))
        usage_error("--wtype must be f32, f16, bf16, q8_0 or q4_0, not '%s'", o->wtype);
    if (!o->emit)              /* stopped at a pass: what is there to write is the IR */
        o->emit = stops_at_pass(o) ? "ir" : NULL;
    if (o->calib && !passes_changes_model(&passes_opts))
        usage_error("--calib %s: the calibration tokens measure a pass that changes the model "
                    "(--share-softmax, --keep-experts, --prune-experts); none is asked for",
                    o->calib);
    check_pass_options(o);
    tmp_install_handlers();    /* an interrupted build leaves no temporaries (base/outfile.c) */
    ckpt *ck = NULL;
    if (o->weights) {
        if (o->verbose)
            fprintf(stderr, "kiln: reading %s\n", o->weights);
        if (!(ck = ckpt_open(o->weights)))
            return 1;
    }
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m) {
        ckpt_close(ck);
        return 1;
    }
    int rc = 1;
    pack_tensor *packed = NULL;
    void *tok_data = NULL;     /* the serialized tokenizer */
    void **owned = NULL;
    int nowned = 0;
    passes_run_opts dumps;
    ir_module *unchanged = NULL;   /* a model-changing pass: the model as it was, measured */
    /* the storage types first: they decide which ops need a widen (pass widen) */
    if (ck && bind_storage_types(m, ck, o->wtype, o->wtype_of, o->nwtype_of) != 0)
        goto out;
    if (!ck && apply_wtype(m, o->wtype, o))
        goto out;
    if (ck && !o->emit && passes_changes_model(&passes_opts))
        unchanged = ir_module_copy(m);
    if (run_passes(&m, &fe, o, stderr, &dumps) != 0)
        goto out;
    if (!ck || o->emit)
        measure_note_unmeasured("build --emit");
    if (ck) {
        warn_llama2c_rope(o->spec, m, ck);
        packed = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *packed);
        if (!packed)
            DIE("out of memory");
        /* a llama2.c file must be read whole by the spec: the unchanged model is checked
         * (measure_divergence), as a changed one leaves some of it unread */
        finite_allow(o->allow_nonfinite);
        int bound = bind_weights(m, ck, packed, &owned, &nowned);
        finite_report(o->verbose);
        if (bound != 0 || (!unchanged && bind_check_llama2c(m, ck) != 0))
            goto out;
    }
    if (diag_error_count())    /* -Werror: a warning leaves no program */
        goto out;
    if (unchanged) {           /* measured first: a failed measurement leaves no program */
        int failed = measure_divergence(o->calib, o->verbose, unchanged, ck, m, packed);
        unchanged = NULL;
        if (failed)
            goto out;
    }
    int npacked = m->ntensors;
    if (ck && !o->emit) {      /* the tokenizer: one more blob entry (kiln_blob.h) */
        size_t bytes;
        int has = tokenizer_for_build(o->tokenizer, ck, param_int_quiet(m, "vocab"), o->verbose,
                                      &tok_data, &bytes);
        if (has < 0)
            goto out;
        if (has) {
            pack_tensor *grown = realloc(packed, (size_t)(npacked + 1) * sizeof *packed);
            if (!grown)
                DIE("out of memory");
            packed = grown;
            packed[npacked++] = (pack_tensor){KBLOB_TOKENIZER, KBLOB_U8, 1, {bytes}, tok_data,
                                              bytes, KBLOB_ROWS};
        }
    }
    rc = build_outputs(m, packed, npacked, o, &dumps);
out:
    free(tok_data);
    bind_free(owned, nowned);
    free(packed);
    if (ck)
        ckpt_close(ck);
    if (unchanged)
        ir_module_free(unchanged);
    ir_module_free(m);
    front_free(&fe);
    return finish(rc);
}

/* A compile-time parameter of the module as an integer, or -1 (reported). */
static int64_t param_int(const ir_module *m, const char *name, const char *why)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) {
            char *end;
            long long v = strtoll(m->params[i].text, &end, 10);
            if (*end == 0)
                return v;
        }
    fprintf(stderr, "kiln: error: %s needs an integer parameter '%s' in the spec\n", why, name);
    return -1;
}

/* The checkpoint tensor that declared tensor t reads (a weight bound to a slice or a
 * transpose: the tensor it views, in its stored shape) into ws[*n], once per name; two
 * shapes for one name are an error at the declaration. 0, or -1. */
static int add_stored(wspec *ws, int *n, const ir_tensor *t)
{
    const ir_recipe *leaf = t->recipe ? ir_recipe_view_leaf(t->recipe) : NULL;
    const char *name = leaf ? leaf->name : t->name;
    const ir_type *type = leaf ? &leaf->type : &t->type;
    wspec w = {.name = name, .rank = type->rank};
    for (int k = 0; k < w.rank; k++)
        w.shape[k] = type->dim[k];
    for (int i = 0; i < *n; i++) {
        if (strcmp(ws[i].name, name))
            continue;
        if (ws[i].rank == w.rank && !memcmp(ws[i].shape, w.shape, sizeof w.shape))
            return 0;
        diag_error(t->loc, "weight '%s' reads \"%s\" in another shape than a weight "
                   "declared before it", t->decl, name);
        return -1;
    }
    ws[(*n)++] = w;
    return 0;
}

static int cmd_weights(const options *o)
{
    if (!o->out)
        usage_error("weights needs -o FILE%s", "");
    const char *format = o->format ? o->format : "safetensors";
    if (strcmp(format, "safetensors") && strcmp(format, "llama2c") && strcmp(format, "gguf"))
        usage_error("--format must be safetensors, llama2c or gguf, not '%s'", format);
    const char *dtname = o->dtype ? o->dtype : "f32";
    static const struct { const char *name; ckpt_dtype dt; } dtypes[] = {
        {"f32", CK_F32}, {"f16", CK_F16}, {"bf16", CK_BF16}, {"q8_0", CK_Q8_0}, {"q4_0", CK_Q4_0},
    };
    int dti = -1;
    for (int k = 0; k < 5; k++)
        if (!strcmp(dtname, dtypes[k].name))
            dti = k;
    if (dti < 0)
        usage_error("--dtype must be f32, f16, bf16, q8_0 or q4_0, not '%s'", dtname);
    ckpt_dtype dtype = dtypes[dti].dt;
    if (dtype != CK_F32 && !strcmp(format, "llama2c"))
        usage_error("--format llama2c holds f32 only (--dtype %s needs safetensors or gguf)",
                    dtname);
    if ((dtype == CK_Q8_0 || dtype == CK_Q4_0) && strcmp(format, "gguf"))
        usage_error("--dtype %s: quantized weights need --format gguf", dtname);
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    if (diag_error_count()) {  /* -Werror: a warning leaves no file */
        ir_module_free(m);
        front_free(&fe);
        return 1;
    }
    wspec *ws = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *ws);
    if (!ws)
        DIE("out of memory");
    int nws = 0, rc = 0;
    for (int i = 0; i < m->ntensors && rc == 0; i++)   /* a view: the tensor it views */
        rc = add_stored(ws, &nws, &m->tensors[i]);
    if (rc) {
        free(ws);
        ir_module_free(m);
        front_free(&fe);
        return 1;
    }
    if (!strcmp(format, "safetensors")) {
        rc = safetensors_write_detweights(o->out, ws, nws, o->seed, dtype);
    } else if (!strcmp(format, "gguf")) {
        gguf_param *gp = calloc((size_t)(m->nparams ? m->nparams : 1), sizeof *gp);
        if (!gp)
            DIE("out of memory");
        for (int i = 0; i < m->nparams; i++)
            gp[i] = (gguf_param){m->params[i].name, m->params[i].text};
        rc = gguf_write_detweights(o->out, m->name, gp, m->nparams, ws, nws, o->seed, dtype);
        free(gp);
    } else {
        const char *why = "--format llama2c (its header)";
        int64_t v[7] = {param_int(m, "dim", why),    param_int(m, "hidden", why),
                        param_int(m, "layers", why), param_int(m, "heads", why),
                        param_int(m, "kv_heads", why), param_int(m, "vocab", why),
                        param_int(m, "ctx", why)};
        rc = 0;
        for (int k = 0; k < 7; k++)
            if (v[k] < 0 || v[k] > INT32_MAX)
                rc = -1;
        if (rc == 0) {
            int untied = 0;
            for (int i = 0; i < m->ntensors; i++)
                untied |= !strcmp(m->tensors[i].name, "lm_head.weight");
            llama2c_header h = {(int32_t)v[0], (int32_t)v[1], (int32_t)v[2], (int32_t)v[3],
                                (int32_t)v[4], (int32_t)(untied ? -v[5] : v[5]), (int32_t)v[6]};
            rc = llama2c_write_detweights(o->out, &h, ws, nws, o->seed);
        }
    }
    free(ws);
    ir_module_free(m);
    front_free(&fe);
    return rc ? 1 : 0;
}

static int cmd_inspect(const options *o)
{
    if (!o->spec)
        usage_error("inspect needs a checkpoint file%s", "");
    ckpt *ck = ckpt_open(o->spec);
    if (!ck)
        return 1;
    if (ck->format == CKPT_GGUF) {
        int nkv;
        const gguf_kv *kv = ckpt_gguf_kv(ck, &nkv);
        printf("%s: gguf v%u, %d tensors, %d metadata keys, alignment %u\n", ck->path,
               (unsigned)ck->gguf.version, ck->n, nkv, (unsigned)ck->gguf.alignment);
        for (int i = 0; i < nkv; i++) {
            printf("  %-40s ", kv[i].key);
            gguf_print_value(stdout, &kv[i], 8, 120);
            putchar('\n');
        }
    } else {
        printf("%s: %s, %d tensors", ck->path,
               ck->format == CKPT_SAFETENSORS ? "safetensors" : "llama2.c v0", ck->n);
        if (ck->nshards)
            printf(" in %d shards", ck->nshards);
        printf("\n");
        if (ck->tokenizer_json)
            printf("  tokenizer %s\n", ck->tokenizer_json);
    }
    for (int i = 0; i < ck->n; i++) {
        const ckpt_tensor *t = &ck->tensors[i];
        if (t->gguf_name)      /* the name kiln binds, then the file's */
            printf("  %-48s %-24s %-4s [", t->name, t->gguf_name, ckpt_dtype_name(t->dtype));
        else
            printf("  %-56s %-4s [", t->name, ckpt_dtype_name(t->dtype));
        for (int k = 0; k < t->rank; k++)
            printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
        printf("]  @%llu\n", (unsigned long long)t->offset);
    }
    ckpt_close(ck);
    return 0;
}

static int cmd_ops(void)
{
    for (int i = 0; i < IR_OP_COUNT; i++)
        printf("%-12s %d  %-28s %s\n", ir_ops[i].name, ir_ops[i].arity, ir_ops[i].attrs,
               ir_ops[i].doc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench"))   /* options of its own: cli/bench.c */
        return bench_main(argc - 1, argv + 1);
    options o;
    parse_args(argc, argv, &o);
    diag_set_warnings(o.warnings);
    int rc;
    if (!strcmp(o.command, "build"))
        rc = cmd_build(&o);
    else if (!strcmp(o.command, "weights"))
        rc = cmd_weights(&o);
    else if (!strcmp(o.command, "dump"))
        rc = cmd_dump(&o);
    else if (!strcmp(o.command, "check"))
        rc = cmd_check(&o);
    else if (!strcmp(o.command, "emit-c"))
        rc = cmd_emit_c(&o);
    else if (!strcmp(o.command, "inspect"))
        rc = cmd_inspect(&o);
    else if (!strcmp(o.command, "ops"))
        rc = cmd_ops();
    else
        usage_error("unknown command '%s'", o.command);
    base_free_all();
    return rc;
}
