/* pipeline.c - the pass manager: one flat list of passes, verified after each.
 *
 * To add a pass: write passes/NAME.c with its contract comment, declare it in passes.h and
 * add a line to `pipeline` below, in the place its requirements allow.
 */
#include <string.h>

#include "passes.h"

static const struct pass {
    const char *name;
    void (*run)(ir_module *m);
} pipeline[] = {
    {"dce", pass_dce},
    {"memplan", pass_plan_memory},   /* last: slots hold only while nothing else changes */
};

enum { NPASSES = sizeof pipeline / sizeof pipeline[0] };

static int known(const char *name)
{
    if (!strcmp(name, "none"))
        return 1;
    for (int i = 0; i < NPASSES; i++)
        if (!strcmp(pipeline[i].name, name))
            return 1;
    return 0;
}

static int live_count(const ir_module *m)
{
    int n = 0;
    for (int i = 0; i < m->ninsts; i++)
        n += !m->insts[i].dead;
    return n;
}

int passes_run(ir_module *m, const char *before, const char *after, const char *unused,
               int verbose)
{
    (void)unused;
    const char *names[2] = {before, after};
    for (int k = 0; k < 2; k++)
        if (names[k] && !known(names[k])) {
            fprintf(stderr, "kiln: error: no pass named '%s'; the pipeline is:", names[k]);
            for (int i = 0; i < NPASSES; i++)
                fprintf(stderr, " %s", pipeline[i].name);
            fputc('\n', stderr);
            return 1;
        }
    if (after && !strcmp(after, "none"))
        return 0;
    for (int i = 0; i < NPASSES; i++) {
        if (before && !strcmp(before, pipeline[i].name))
            return 0;
        pipeline[i].run(m);
        if (verbose)
            fprintf(stderr, "kiln: pass %-12s %d instructions\n", pipeline[i].name,
                    live_count(m));
        if (ir_verify(m))
            DIE("IR invalid after pass %s", pipeline[i].name);
        if (after && !strcmp(after, pipeline[i].name))
            return 0;
    }
    return 0;
}
