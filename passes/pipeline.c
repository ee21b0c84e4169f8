/* pipeline.c - the pass manager: one flat list of passes, verified after each.
 *
 * To add a pass: write passes/NAME.c with its contract comment, declare it in passes.h and
 * add a line to `pipeline` below, in the place its requirements allow.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

void passes_notes_clear(void)
{
    for (int i = 0; i < nnotes; i++)
        free(notes[i]);
    free(notes);
    notes = NULL;
    nnotes = cnotes = 0;
}

static const struct pass {
    const char *name;
    ir_module *(*run)(ir_module *m);
} pipeline[] = {
    {"widen", pass_widen},           /* first: makes the IR valid after storage types are set */
    {"fold-const", pass_fold_const},
    {"fold-gain", pass_fold_gain},   /* before fuse-linear: Q/K/V then share one folded weight */
    {"fuse-linear", pass_fuse_linear},
    {"cse", pass_cse},
    {"dce", pass_dce},               /* after cse: the duplicates it leaves are dead */
    {"memplan", pass_plan_memory},   /* last: the plan holds only while nothing else changes */
};

enum { NPASSES = sizeof pipeline / sizeof pipeline[0] };

const char *const passes_names[] = {"widen", "fold-const", "fold-gain", "fuse-linear", "cse",
                                    "dce", "memplan", NULL};

static int known(const char *name)
{
    if (!strcmp(name, "none"))
        return 1;
    for (int i = 0; i < NPASSES; i++)
        if (!strcmp(pipeline[i].name, name))
            return 1;
    return 0;
}

/* Whether --disable-pass named it (the whole pipeline skips it; --passes does not). */
static int disabled(const char *name)
{
    for (int k = 0; k < passes_opts.ndisabled; k++)
        if (!strcmp(passes_opts.disabled[k], name))
            return 1;
    return 0;
}

/* Runs pass i of the pipeline on *mp and verifies; 0, or 1 after the pass reported. */
static int run_one(ir_module **mp, int i, int verbose)
{
    ir_module *m = pipeline[i].run(*mp);
    if (!m)
        return 1;                    /* the pass reported why */
    if (m != *mp)
        ir_module_free(*mp);
    *mp = m;
    if (verbose)
        fprintf(stderr, "kiln: pass %-12s %d instructions\n", pipeline[i].name, m->ninsts);
    if (ir_verify(m))
        DIE("IR invalid after pass %s", pipeline[i].name);
    return 0;
}

int passes_run_list(ir_module **mp, const char *list, int verbose)
{
    char name[64];
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        int found = -1;
        for (int i = 0; i < NPASSES; i++)
            if (!strcmp(pipeline[i].name, name))
                found = i;
        if (found < 0) {
            fprintf(stderr, "kiln: error: no pass named '%s'; the pipeline is:", name);
            for (int i = 0; i < NPASSES; i++)
                fprintf(stderr, " %s", pipeline[i].name);
            fputc('\n', stderr);
            return 1;
        }
        if (run_one(mp, found, verbose))
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

int passes_run(ir_module **mp, const char *before, const char *after, int verbose)
{
    const char *names[2] = {before, after};
    for (int k = 0; k < 2; k++)
        if (names[k] && !known(names[k])) {
            fprintf(stderr, "kiln: error: no pass named '%s'; the pipeline is:", names[k]);
            for (int i = 0; i < NPASSES; i++)
                fprintf(stderr, " %s", pipeline[i].name);
            fputc('\n', stderr);
            return 1;
        }
    for (int k = 0; k < passes_opts.ndisabled; k++) {
        const char *d = passes_opts.disabled[k];
        if (!known(d) || !strcmp(d, "none") || !strcmp(d, "widen") || !strcmp(d, "memplan")) {
            fprintf(stderr, "kiln: error: --disable-pass %s: %s\n", d,
                    known(d) && strcmp(d, "none") ? "the program cannot be built without it"
                                                  : "no pass of that name");
            return 1;
        }
    }
    if (after && !strcmp(after, "none"))
        return 0;
    for (int i = 0; i < NPASSES; i++) {
        if (before && !strcmp(before, pipeline[i].name))
            return 0;
        if (!disabled(pipeline[i].name) && run_one(mp, i, verbose))
            return 1;
        if (after && !strcmp(after, pipeline[i].name))
            return 0;
    }
    return 0;
}
