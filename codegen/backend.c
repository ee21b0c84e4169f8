/* backend.c - walking a lowered program through a back end (backend.h). */
#include "backend.h"

int backend_print(const backend *b, FILE *out, const lw_program *p)
{
    b->begin(out, p);
    for (int i = 0; i < p->nsteps; i++) {
        const lw_step *s = &p->steps[i];
        if (s->loop >= 0 && p->loops[s->loop].first == i)
            b->loop_begin(out, p, &p->loops[s->loop]);
        b->step(out, p, s);
        if (s->loop >= 0 && p->loops[s->loop].last == i)
            b->loop_end(out, p, &p->loops[s->loop]);
    }
    b->end(out, p);
    return ferror(out) ? -1 : 0;
}
