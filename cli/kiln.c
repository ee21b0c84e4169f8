/* kiln.c - the `kiln` command: parse a spec, lower it to IR, run the passes, and then build a
 * program, dump the IR, write test weights, or inspect a checkpoint.
 *
 *   kiln build SPEC|FILE.ir --weights FILE -o PROG [--wtype f32|f16|bf16] [--max-batch N]
 *              [-D name=value ...] [--config FILE] [--ctx N]
 *   kiln weights SPEC --seed S -o FILE [--format safetensors|llama2c] [--dtype T] [-D ...]
 *   kiln dump SPEC|FILE.ir [--after PASS] [--scope l=2] [--dot] [-D ...]
 *   kiln check SPEC [-D ...]
 *   kiln emit-c SPEC -o FILE.c [-D ...]
 *   kiln inspect FILE
 *   kiln ops
 * Every command takes -w (no warnings) and -Werror (warnings are errors: exit 1, no output).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../codegen/codegen.h"
#include "../frontend/sema.h"
#include "../passes/passes.h"

#define KILN_VERSION "0.1.0"

extern const char kiln_std_source[];

static const char usage_text[] =
    "usage: kiln COMMAND [options]\n"
    "\n"
    "kiln compiles a language-model architecture written as a spec file (.kiln) into a\n"
    "standalone program that runs the model on the CPU.\n"
    "\n"
    "commands:\n"
    "  build SPEC --weights FILE -o PROG   compile SPEC with the checkpoint FILE (safetensors\n"
    "                                      or llama2.c .bin) into the executable PROG; the\n"
    "                                      weights are packed into PROG itself\n"
    "                                      (SPEC may be an IR dump, FILE.ir)\n"
    "  weights SPEC --seed S -o FILE       write det-weights v1 test weights for every tensor\n"
    "                                      SPEC declares (--format safetensors, the default,\n"
    "                                      or llama2c)\n"
    "  dump SPEC                           print the IR (kiln-ir 2 text, docs/ir.md) after the\n"
    "                                      passes; of a FILE.ir, the dump as read back (with\n"
    "                                      --after or --passes, after those passes)\n"
    "  check SPEC                          parse and check SPEC; print nothing when it is fine\n"
    "  emit-c SPEC -o FILE                 write the generated C program (-o -: stdout)\n"
    "  inspect FILE                        list the tensors of a checkpoint\n"
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
    "  --weights FILE    checkpoint to build with\n"
    "  --seed S          det-weights seed (weights; default 1)\n"
    "  --format F        safetensors | llama2c (weights)\n"
    "  --dtype T         weights: write the values rounded to T (f32, f16, bf16; safetensors\n"
    "                    only; default f32)\n"
    "  --wtype T         store weights as T (f32, f16, bf16) when packing; default: as the\n"
    "                    checkpoint stores them (dump: show the IR for weights of type T)\n"
    "  --max-batch N     the largest block of prompt tokens the program runs at once\n"
    "                    (1..65536; default 64); each weight is read once per block\n"
    "  --before PASS     dump the IR before PASS instead of after the last pass\n"
    "  --after PASS      dump the IR after PASS (or `none`: straight from the front end);\n"
    "                    the passes: widen fold-const fold-gain fuse-linear cse dce memplan\n"
    "  --passes P,Q      dump: run exactly these passes, in this order (a pass test:\n"
    "                    kiln dump in.ir --passes cse)\n"
    "  -O0               run only the passes correctness needs (no folding, no fusion)\n"
    "  --disable-pass P  do not run the optimization pass P (fold-const, fold-gain, ...)\n"
    "  --scope TEXT      dump only the instructions made under these loop indices (l=2)\n"
    "  --dot             dump as Graphviz\n"
    "  --emit-c FILE     build: also keep the generated C in FILE\n"
    "  -v, --verbose     show the passes and the C compiler command\n"
    "  -w                print no warnings\n"
    "  -Werror           treat warnings as errors (exit 1, write nothing)\n"
    "  -h, --help        this text;  --version  the version\n"
    "\n"
    "A weight the spec declares but never reads is not packed (a warning says so), and the\n"
    "checkpoint need not hold it.\n"
    "\n"
    "environment: CC (the C compiler, default cc), KILN_RUNTIME_DIR (libkilnrt.a and include/,\n"
    "default: beside this executable).\n"
    "\n"
    "example:\n"
    "  kiln weights examples/llama.kiln --seed 1 -o llama.safetensors\n"
    "  kiln build examples/llama.kiln --weights llama.safetensors -o llama\n"
    "  ./llama --tokens 1,5,9 -n 16 --temp 0\n";

typedef struct options {
    const char *command, *spec, *out, *weights, *format, *before, *after, *scope, *emit_c;
    const char *config, *wtype, *dtype, *passes;
    uint64_t seed;
    int dot, verbose;
    int warnings;              /* DIAG_WARN, DIAG_NO_WARN (-w), DIAG_WERROR (-Werror) */
    const char *ctx;           /* --ctx N, as text; NULL if not given */
    int64_t max_batch;         /* --max-batch, 0: the default */
    sema_define defs[256];
    int ndefs;
} options;

static _Noreturn void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "kiln: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ntry 'kiln --help'\n");
    exit(2);
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(field)                                                                            \
    do {                                                                                       \
        if (!next)                                                                             \
            usage_error("%s needs a value", a);                                                \
        o->field = next;                                                                       \
        i++;                                                                                   \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("kiln %s (IR dump version %d)\n", KILN_VERSION, IR_DUMP_VERSION);
            exit(0);
        } else if (!strcmp(a, "-o")) {
            TAKE(out);
        } else if (!strcmp(a, "--weights")) {
            TAKE(weights);
        } else if (!strcmp(a, "--format")) {
            TAKE(format);
        } else if (!strcmp(a, "--passes")) {
            TAKE(passes);
        } else if (!strcmp(a, "--wtype")) {
            TAKE(wtype);
        } else if (!strcmp(a, "--max-batch")) {
            if (!next)
                usage_error("%s needs a value", a);
            char *end;
            errno = 0;
            long long v = strtoll(next, &end, 10);
            if (errno || end == next || *end || v < 1 || v > 65536)
                usage_error("--max-batch needs an integer in 1..65536, not '%s'", next);
            o->max_batch = v;
            i++;
        } else if (!strcmp(a, "--dtype")) {
            TAKE(dtype);
        } else if (!strcmp(a, "--config")) {
            TAKE(config);
        } else if (!strcmp(a, "--before")) {
            TAKE(before);
        } else if (!strcmp(a, "--after")) {
            TAKE(after);
        } else if (!strcmp(a, "--scope")) {
            TAKE(scope);
        } else if (!strcmp(a, "--emit-c")) {
            TAKE(emit_c);
        } else if (!strcmp(a, "-O0")) {
            passes_opts.o0 = 1;
        } else if (!strcmp(a, "--disable-pass") || !strncmp(a, "--disable-pass=", 15)) {
            const char *p = a[14] ? a + 15 : next;
            if (!p)
                usage_error("%s needs a pass name", a);
            if (!a[14])
                i++;
            if (passes_opts.ndisabled == 16)
                usage_error("--disable-pass is given more than 16 times%s", "");
            passes_opts.disabled[passes_opts.ndisabled++] = p;
        } else if (!strcmp(a, "--dot")) {
            o->dot = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "-w")) {
            o->warnings = DIAG_NO_WARN;
        } else if (!strcmp(a, "-Werror")) {
            o->warnings = DIAG_WERROR;
        } else if (!strcmp(a, "--ctx")) {
            if (!next)
                usage_error("%s needs a value", a);
            char *end;
            errno = 0;
            long long v = strtoll(next, &end, 10);
            if (errno || end == next || *end || v < 1 || v > INT32_MAX)
                usage_error("--ctx needs a positive integer, not '%s'", next);
            o->ctx = next;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (!next)
                usage_error("%s needs a value", a);
            char *end;
            errno = 0;
            o->seed = strtoull(next, &end, 10);
            if (errno || end == next || *end || *next == '-')
                usage_error("--seed needs a non-negative integer, not '%s'", next);
            i++;
        } else if (!strncmp(a, "-D", 2)) {
            const char *def = a[2] ? a + 2 : next;
            if (!def)
                usage_error("%s needs name=value", a);
            if (!a[2])
                i++;
            const char *eq = strchr(def, '=');
            if (!eq || eq == def || !eq[1])
                usage_error("-D needs name=value, not '%s'", def);
            if (o->ndefs == 64)   /* the rest of defs[] is for implied values */
                usage_error("too many -D options%s", "");
            o->defs[o->ndefs].name = base_intern(def, (size_t)(eq - def));
            o->defs[o->ndefs++].value = eq + 1;
        } else if (a[0] == '-' && a[1]) {
            usage_error("unknown option '%s'", a);
        } else if (!o->command) {
            o->command = a;
        } else if (!o->spec) {
            o->spec = a;
        } else {
            usage_error("unexpected argument '%s'", a);
        }
#undef TAKE
    }
    if (!o->command)
        usage_error("no command given%s", "");
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

/* The config against the spec as lowered: every key that changes the computation must be
 * used by one of the spec's parameters or be neutral (weights/hfconfig.c). 0, or -1. */
static int check_config(const hf_config *c, const ir_module *m, int verbose)
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
    int rc = hf_config_check(c, &spec, verbose);
    free(names);
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
    hf_config *config = NULL;
    if (o->config && !(config = apply_config(o)))
        return NULL;
    src_file_from_string(&fe->std, "<std>", kiln_std_source);
    ast_node *std = parse_file(&fe->std);
    if (!std)
        DIE("the standard library does not parse");
    ir_module *m = NULL;
    ast_node *spec = NULL;
    if (src_file_read(&fe->spec, o->spec) && (spec = parse_file(&fe->spec)))
        m = sema_lower(std, spec, o->defs, o->ndefs);
    if (m && config && check_config(config, m, o->verbose) != 0) {
        ir_module_free(m);
        m = NULL;
    }
    hf_config_free(config);
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

static int has_tensor(const ir_module *m, const char *name)
{
    for (int t = 0; t < m->ntensors; t++)
        if (ir_recipe_reads(ir_recipe_of(&m->tensors[t]), name))
            return 1;
    return 0;
}

/* Warns about each declared weight the passes dropped (dce: nothing reads it), once per
 * declaration: an array none of whose elements is read is one warning. */
static void warn_unread(const front *fe, const ir_module *m)
{
    for (int i = 0; i < fe->ndeclared; i++) {
        const ir_tensor *t = &fe->declared[i];
        if (has_tensor(m, t->name))
            continue;
        int first = 1, all = 1, n = 0;
        for (int j = 0; j < fe->ndeclared; j++) {
            if (!same_loc(fe->declared[j].loc, t->loc))
                continue;
            n++;
            int unread = !has_tensor(m, fe->declared[j].name);
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

/* The pipeline, then the warnings about what it dropped. 0, or 1 after an error. */
static int run_passes(ir_module **m, const front *fe, const char *before, const char *after,
                      int verbose)
{
    int rc = passes_run(m, before, after, verbose);
    if (rc == 0)
        warn_unread(fe, *m);
    return rc;
}

static int finish(int rc)
{
    if (rc == 0 && diag_error_count())
        rc = 1;
    return rc;
}

/* ---------------------------------------------------------------- commands */

static int cmd_check(const options *o)
{
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    int rc = run_passes(&m, &fe, NULL, NULL, o->verbose);
    ir_module_free(m);
    front_free(&fe);
    return finish(rc);
}

static int cmd_dump(const options *o)
{
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    if (o->passes && (o->before || o->after))
        usage_error("--passes runs the passes it names; it does not mix with --before/--after%s", "");
    if (o->wtype) {            /* the IR as a build with weights of that storage type sees it */
        int dt = ir_dtype_lookup(o->wtype);
        if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
            usage_error("--wtype must be f32, f16 or bf16, not '%s'", o->wtype);
        if (dt != DT_F32 && ((o->after && !strcmp(o->after, "none")) ||
                             (o->before && !strcmp(o->before, "widen"))))
            usage_error("--wtype %s: weights of a storage type are read through the widen pass; "
                        "the IR before it is the front end's, with f32 weights", o->wtype);
        for (int t = 0; t < m->ntensors; t++)
            ir_set_storage(m, t, (ir_dtype)dt);
    }
    /* a dump read back prints as it was read, unless passes are asked for */
    int as_read = is_ir_input(o->spec) && !o->passes && !o->before && !o->after;
    int rc = as_read    ? 0
             : o->passes ? passes_run_list(&m, o->passes, o->verbose)
                         : run_passes(&m, &fe, o->before, o->after, o->verbose);
    if (rc == 0 && !diag_error_count()) {      /* -Werror: a warning leaves no dump */
        if (o->dot)
            ir_print_dot(stdout, m, o->scope);
        else
            ir_print(stdout, m, o->scope);
    }
    ir_module_free(m);
    front_free(&fe);
    return finish(rc);
}

static int cmd_emit_c(const options *o)
{
    if (!o->out)
        usage_error("emit-c needs -o FILE%s", "");
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m)
        return 1;
    int rc = run_passes(&m, &fe, NULL, NULL, o->verbose);
    if (rc == 0 && !diag_error_count())
        rc = codegen_write_c(m, o->out);
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

static int cmd_build(const options *o_in)
{
    options opts = *o_in, *o = &opts;
    if (!o->out)
        usage_error("build needs -o PROG%s", "");
    if (!o->weights)
        usage_error("build needs --weights FILE (use 'kiln weights' to make test weights)%s", "");
    if (!o->spec)
        usage_error("'%s' needs a spec file", o->command);
    if (o->wtype && strcmp(o->wtype, "f32") && strcmp(o->wtype, "f16") && strcmp(o->wtype, "bf16"))
        usage_error("--wtype must be f32, f16 or bf16, not '%s'", o->wtype);
    if (o->verbose)
        fprintf(stderr, "kiln: reading %s\n", o->weights);
    ckpt *ck = ckpt_open(o->weights);
    if (!ck)
        return 1;
    if (ck->format == CKPT_LLAMA2C && !is_ir_input(o->spec))
        imply_llama2c_params(o, ck);
    front fe;
    ir_module *m = front_end(o, &fe);
    if (!m) {
        ckpt_close(ck);
        return 1;
    }
    int rc = 1;
    pack_tensor *packed = NULL;
    void **owned = NULL;
    int nowned = 0;
    /* the storage types first: they decide which ops need a widen (pass widen) */
    if (bind_storage_types(m, ck, o->wtype) != 0)
        goto out;
    if (run_passes(&m, &fe, NULL, NULL, o->verbose) != 0)
        goto out;
    warn_llama2c_rope(o->spec, m, ck);
    packed = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *packed);
    if (!packed)
        DIE("out of memory");
    if (bind_weights(m, ck, packed, &owned, &nowned) != 0 || bind_check_llama2c(m, ck) != 0)
        goto out;
    if (diag_error_count())    /* -Werror: a warning leaves no program */
        goto out;
    if (codegen_build_program(m, packed, m->ntensors, o->out, o->emit_c, o->verbose) != 0)
        goto out;
    rc = 0;
out:
    bind_free(owned, nowned);
    free(packed);
    ckpt_close(ck);
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

static int cmd_weights(const options *o)
{
    if (!o->out)
        usage_error("weights needs -o FILE%s", "");
    const char *format = o->format ? o->format : "safetensors";
    if (strcmp(format, "safetensors") && strcmp(format, "llama2c"))
        usage_error("--format must be safetensors or llama2c, not '%s'", format);
    const char *dtname = o->dtype ? o->dtype : "f32";
    ckpt_dtype dtype = CK_F32;
    if (!strcmp(dtname, "f16"))
        dtype = CK_F16;
    else if (!strcmp(dtname, "bf16"))
        dtype = CK_BF16;
    else if (strcmp(dtname, "f32"))
        usage_error("--dtype must be f32, f16 or bf16, not '%s'", dtname);
    if (dtype != CK_F32 && strcmp(format, "safetensors"))
        usage_error("--format llama2c holds f32 only (--dtype %s needs safetensors)", dtname);
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
    for (int i = 0; i < m->ntensors; i++) {
        ws[i].name = m->tensors[i].name;
        ws[i].rank = m->tensors[i].type.rank;
        for (int k = 0; k < ws[i].rank; k++)
            ws[i].shape[k] = m->tensors[i].type.dim[k];
    }
    int rc;
    if (!strcmp(format, "safetensors")) {
        rc = safetensors_write_detweights(o->out, ws, m->ntensors, o->seed, dtype);
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
            rc = llama2c_write_detweights(o->out, &h, ws, m->ntensors, o->seed);
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
    printf("%s: %s, %d tensors\n", ck->path,
           ck->format == CKPT_SAFETENSORS ? "safetensors" : "llama2.c v0", ck->n);
    for (int i = 0; i < ck->n; i++) {
        const ckpt_tensor *t = &ck->tensors[i];
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
