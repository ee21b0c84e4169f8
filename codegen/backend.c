/* backend.c - walking a lowered program through a back end (backend.h). */
#include "backend.h"

/* Steps with the per-token loops around their guard regions (loops: the steps' own). */
static void walk_step(const backend *b, FILE *out, const lw_program *p, const lw_step *steps,
                      int i, const lw_loop *loops)
{
    const lw_step *s = &steps[i];
    if (s->loop >= 0 && loops[s->loop].first == i)
        b->loop_begin(out, p, &loops[s->loop]);
    b->step(out, p, s);
    if (s->loop >= 0 && loops[s->loop].last == i)
        b->loop_end(out, p, &loops[s->loop]);
}

int backend_print(const backend *b, FILE *out, const lw_program *p)
{
    b->begin(out, p);
    for (int f = 0; f < p->nfns; f++) {
        const lw_fn *fn = &p->fns[f];
        b->fn_begin(out, p, f);
        for (int i = 0; i < fn->nsteps; i++)
            walk_step(b, out, p, fn->steps, i, fn->loops);
        b->fn_end(out, p, f);
    }
    b->forward_begin(out, p);
    int call = 0;
    for (int i = 0; i < p->nsteps; i++) {
        if (call < p->ncalls && p->calls[call].first == i) {
            b->call(out, p, &p->calls[call]);
            i = p->calls[call++].last;
            continue;
        }
        walk_step(b, out, p, p->steps, i, p->loops);
    }
    b->end(out, p);
    return ferror(out) ? -1 : 0;
}
