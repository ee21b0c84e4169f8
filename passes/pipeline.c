/* pipeline.c - the pass manager: one flat table of passes, verified after each, with the
 * command line's choices (-O0, --disable-pass, stop points, dumps around passes).
 *
 * To add a pass: write passes/NAME.c with its contract comment, declare it in passes.h and
 * add a line to `pipeline` below, in the place its requirements allow, with its flags and
 * the one-line summary, requires and preserves that --list-passes shows.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "passes.h"
passes_options passes_opts;

static char **notes;
static int nnotes, cnotes;

void pass_note(const char *pass, const char *fmt, ...)
{
    char text[1024];
    int n = snprintf(text, sizeof text, "%s: ", pass);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    if (nnotes == cnotes) {
        cnotes = cnotes ? 2 * cnotes : 64;
        notes = realloc(notes, sizeof *notes * (size_t)cnotes);
        if (!notes)
            DIE("out of memory");
    }
    if (!(notes[nnotes++] = strdup(text)))
        DIE("out of memory");
}

int passes_note_count(void) { return nnotes; }
const char *passes_note(int i) { return notes[i]; }

void passes_notes_truncate(int n)
{
    while (nnotes > n)
        free(notes[--nnotes]);
}

void passes_notes_clear(void)
{
    for (int i = 0; i < nnotes; i++)
        free(notes[i]);
    free(notes);
    notes = NULL;
    nnotes = cnotes = 0;
}

/* ---------------------------------------------------------------- the table */

/* the predicates of the passes that change the model */
static int share_requested(const passes_options *o) { return o->share_group > 0; }
static int prune_requested(const passes_options *o) { return o->keep_experts || o->prune_profile; }

int passes_changes_model(const passes_options *o)
{
    return share_requested(o) || prune_requested(o);
}

static const pass_info pipeline[] = {
    {"widen", pass_widen, PASS_REQUIRED, NULL,
     "a widen before every op that cannot read a weight's storage type",
     "storage types set", "values; linear and embed read weights as stored"},
    {"share-softmax", pass_share_softmax, PASS_ON_REQUEST, share_requested,
     "--share-softmax=G,b,e: each reuser layer reads its leader's attention probabilities",
     "verified IR; before any fusion of attention or products",
     "every layer's output but the reusers' attention (changes the model)"},
    {"prune-experts", pass_prune_experts, PASS_ON_REQUEST, prune_requested,
     "--keep-experts / --prune-experts: dropped experts leave the router, the IR and the blob",
     "verified IR; expert regions whose guard is an extract of a router's mask",
     "the kept experts' computation (changes the model)"},
    {"route-stats", pass_route_stats, PASS_REQUIRED, NULL,   /* after pruning: what remains */
     "a `route l=L e=E` statistic per expert region, for PROG --profile-routing",
     "verified IR", "every value; adds statistics"},
    {"fold-const", pass_fold_const, 0, NULL,
     "dot(linear(x, W), v) -> dot(x, W^T v); elementwise ops of constants; exact identities",
     "verified IR, after widen", "effects; values exactly, the dot fold up to rounding"},
    {"fold-gain", pass_fold_gain, 0, NULL,   /* before fuse-linear: Q/K/V share one weight */
     "a norm's gain folded into the weights of the linears that read the norm",
     "verified IR, after widen", "effects; values up to one rounding of the scaled weight"},
    {"fuse-linear", pass_fuse_linear, 0, NULL,
     "linears reading one input become one product over stacked weights, then slices",
     "verified IR; after fold-gain", "effects; values exactly"},
    {"split-views", pass_split_views, 0, NULL,   /* after fuse-linear: its stacks are whole */
     "a matrix products read in disjoint pieces becomes one tensor per piece (an expert's "
     "weights together)", "verified IR; after fuse-linear", "values exactly; effects; the blob's bytes"},
    {"cse", pass_cse, 0, NULL,
     "one instruction per distinct computation",
     "verified IR", "values and effects"},
    {"dce", pass_dce, 0, NULL,   /* after cse: the duplicates it leaves are dead */
     "drops what no effect depends on, and the tensors nothing reads",
     "verified IR", "every effect and what it depends on"},
    {"fuse-attn", pass_fuse_attn, 0, NULL,   /* after dce: no dead reader keeps probabilities */
     "attn_scores, scale, softmax, attn_apply as one attention op (online softmax)",
     "verified IR, after dce", "values up to rounding; effects; shared probabilities"},
    {"kvlayout", pass_kvlayout, 0, NULL,   /* after fuse-attn: it sees the final readers */
     "KV caches head-major and in the --kv-type storage type",
     "verified IR, before memplan", "values (exactly with f32 caches); every instruction"},
    {"quant-act", pass_quant_act, 0, NULL,
     "products over q8_0/q4_0 weights round their input to q8_0 blocks (--act f32: not)",
     "verified IR, storage types set", "instructions; values up to the activation's rounding"},
    {"wlayout", pass_wlayout, PASS_REQUIRED, NULL,   /* after every pass that moves readers */
     "matrices only products, embeddings and widening read are stored in panels",
     "verified IR; after the folds, fuse-linear and dce", "every instruction and value"},
    {"memplan", pass_plan_memory, PASS_REQUIRED, NULL,   /* last: nothing may change after */
     "frame slots reused after last use; KV caches in the state",
     "verified IR; runs last", "the instructions; sets mem, offset, frame and state bytes"},
};

enum { NPASSES = sizeof pipeline / sizeof pipeline[0] };

static pass_record records[NPASSES];

int passes_count(void) { return NPASSES; }
const pass_info *passes_info(int i) { return &pipeline[i]; }
const pass_record *passes_record(int i) { return &records[i]; }
void passes_records_save(pass_record *out) { memcpy(out, records, sizeof records); }
void passes_records_restore(const pass_record *in) { memcpy(records, in, sizeof records); }

int passes_lookup(const char *name)
{
    for (int i = 0; i < NPASSES; i++)
        if (!strcmp(pipeline[i].name, name))
            return i;
    return -1;
}

const char *passes_status_name(pass_status s)
{
    switch (s) {
    case PASS_RAN: return "ran";
    case PASS_SKIPPED_O0: return "skipped (-O0)";
    case PASS_SKIPPED_DISABLED: return "skipped (--disable-pass)";
    case PASS_SKIPPED_UNREQUESTED: return "skipped (not requested)";
    case PASS_NOT_REACHED: break;
    }
    return "not reached";
}

static const char *flags_text(const pass_info *p)
{
    return p->flags & PASS_REQUIRED     ? "required"
           : p->flags & PASS_ON_REQUEST ? "on request"
                                        : "optimization";
}

void passes_list(FILE *out)
{
    fprintf(out, "the pass pipeline, in order (-O0 runs the required and the requested ones):\n");
    for (int i = 0; i < NPASSES; i++) {
        const pass_info *p = &pipeline[i];
        fprintf(out, "%2d  %-16s %-13s %s\n", i + 1, p->name, flags_text(p), p->summary);
        fprintf(out, "    %-30s requires:  %s\n", "", p->requires);
        fprintf(out, "    %-30s preserves: %s\n", "", p->preserves);
    }
}

/* ---------------------------------------------------------------- choosing the passes */

static int is_disabled(const char *name)
{
    for (int k = 0; k < passes_opts.ndisabled; k++)
        if (!strcmp(passes_opts.disabled[k], name))
            return 1;
    return 0;
}

/* Whether pass i runs with passes_opts, and if not, why. */
static pass_status planned_status(int i)
{
    const pass_info *p = &pipeline[i];
    if (p->flags & PASS_REQUIRED)
        return PASS_RAN;
    if (p->flags & PASS_ON_REQUEST)
        return p->requested && p->requested(&passes_opts) ? PASS_RAN : PASS_SKIPPED_UNREQUESTED;
    if (passes_opts.o0)
        return PASS_SKIPPED_O0;
    return is_disabled(p->name) ? PASS_SKIPPED_DISABLED : PASS_RAN;
}

static void report_unknown(const char *option, const char *name)
{
    fprintf(stderr, "kiln: error: %s: no pass named '%s'; the pipeline is:", option, name);
    for (int i = 0; i < NPASSES; i++)
        fprintf(stderr, " %s", pipeline[i].name);
    fputc('\n', stderr);
}

/* A pass name given to `option`: must name a pass that runs ("none" and "all" where
 * allowed). 0, or 1 after reporting. */
static int check_pass_name(const char *option, const char *name, int none_ok, int all_ok)
{
    if (!name || (none_ok && !strcmp(name, "none")) || (all_ok && !strcmp(name, "all")))
        return 0;
    int i = passes_lookup(name);
    if (i < 0) {
        report_unknown(option, name);
        return 1;
    }
    pass_status s = planned_status(i);
    if (s != PASS_RAN) {
        fprintf(stderr, "kiln: error: %s: the pass '%s' does not run: %s\n", option, name,
                passes_status_name(s));
        return 1;
    }
    return 0;
}

int passes_check_run(const passes_run_opts *r)
{
    for (int k = 0; k < passes_opts.ndisabled; k++) {
        const char *name = passes_opts.disabled[k];
        int i = passes_lookup(name);
        if (i < 0) {
            report_unknown("--disable-pass", name);
            return 1;
        }
        if (pipeline[i].flags & PASS_REQUIRED) {
            fprintf(stderr, "kiln: error: --disable-pass: the pass '%s' is required (the "
                            "program is wrong without it); it cannot be disabled\n", name);
            return 1;
        }
    }
    return check_pass_name("--before", r->stop_before, 0, 0) ||
           check_pass_name("--stop-after", r->stop_after, 1, 0) ||
           check_pass_name("--dump-before", r->dump_before, 0, 1) ||
           check_pass_name("--dump-after", r->dump_after, 0, 1);
}

/* ---------------------------------------------------------------- dumps */

char *passes_dump_path(char *buf, size_t size, const char *dir, int n, const char *what,
                       const char *ext)
{
    snprintf(buf, size, "%s/%02d-%s.%s", dir, n, what, ext);
    return buf;
}

int passes_make_dir(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        fprintf(stderr, "kiln: error: %s: the path is too long\n", dir);
        return -1;
    }
    /* each parent, then the folder itself */
    for (char *p = path + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "kiln: error: %s: cannot make the folder: %s\n", path, strerror(errno));
            return -1;
        }
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "kiln: error: %s: not a folder\n", path);
            return -1;
        }
        if (!(*p = c))
            return 0;
    }
}

/* One dump of m as `what` ("input", "widen", "before-cse"): the next numbered file in the
 * dump folder (through base/outfile.c), or onto the stream. 0, or 1 after reporting. */
static int dump_module(passes_run_opts *r, const ir_module *m, const char *what)
{
    int n = r->ndumps++;
    if (!r->dump_dir) {
        FILE *f = r->dump_stream ? r->dump_stream : stderr;
        if (r->dump_banners)
            fprintf(f, "; kiln: IR %s%s\n", strcmp(what, "input") ? "after " : "", what);
        ir_print(f, m, r->scope);
        return 0;
    }
    char path[4200];
    passes_dump_path(path, sizeof path, r->dump_dir, n, what, "ir");
    outfile out;
    if (outfile_open(&out, path, 0644, OUTFILE_STREAM) != 0)
        return 1;
    ir_print(out.f, m, NULL);
    return outfile_commit(&out) != 0;
}

static int wants(const char *option, const char *name)
{
    return option && (!strcmp(option, "all") || !strcmp(option, name));
}

/* ---------------------------------------------------------------- running */

/* Runs pass i of the pipeline on *mp and verifies; 0, or 1 after the pass reported. */
static int run_one(ir_module **mp, int i, int verbose)
{
    records[i].insts_before = (*mp)->ninsts;
    ir_module *m = pipeline[i].run(*mp);
    if (!m)
        return 1;                    /* the pass reported why */
    if (m != *mp)
        ir_module_free(*mp);
    *mp = m;
    records[i].status = PASS_RAN;
    records[i].insts_after = m->ninsts;
    if (verbose)
        fprintf(stderr, "kiln: pass %-12s %d instructions\n", pipeline[i].name, m->ninsts);
    if (ir_verify(m))
        DIE("IR invalid after pass %s", pipeline[i].name);
    return 0;
}

int passes_run_list(ir_module **mp, const char *list, int verbose)
{
    char name[64];
    memset(records, 0, sizeof records);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        int found = passes_lookup(name);
        if (found < 0) {
            report_unknown("--passes", name);
            return 1;
        }
        if (run_one(mp, found, verbose))
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

int passes_run_with(ir_module **mp, passes_run_opts *r)
{
    memset(records, 0, sizeof records);
    if (passes_check_run(r))
        return 1;
    if (r->dump_dir && (r->dump_before || r->dump_after) && passes_make_dir(r->dump_dir))
        return 1;
    if (r->dump_after && !strcmp(r->dump_after, "all") && dump_module(r, *mp, "input"))
        return 1;
    if (r->stop_after && !strcmp(r->stop_after, "none"))
        return 0;
    for (int i = 0; i < NPASSES; i++) {
        const char *name = pipeline[i].name;
        if (r->stop_before && !strcmp(r->stop_before, name))
            return 0;
        pass_status s = planned_status(i);
        if (s != PASS_RAN) {
            records[i].status = s;
            if (r->verbose)
                fprintf(stderr, "kiln: pass %-12s %s\n", name, passes_status_name(s));
            continue;
        }
        char what[80];
        snprintf(what, sizeof what, "before-%s", name);
        if (wants(r->dump_before, name) && dump_module(r, *mp, what))
            return 1;
        if (run_one(mp, i, r->verbose))
            return 1;
        if (wants(r->dump_after, name) && dump_module(r, *mp, name))
            return 1;
        if (r->stop_after && !strcmp(r->stop_after, name))
            return 0;
    }
    return 0;
}

int passes_run(ir_module **mp, const char *before, const char *after, int verbose)
{
    passes_run_opts r = {.stop_before = before, .stop_after = after, .verbose = verbose};
    return passes_run_with(mp, &r);
}
