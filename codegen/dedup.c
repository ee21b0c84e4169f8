/* dedup.c - layer dedup (lower.h): layers of the same structure share one function.
 *
 * A step after the lowering, on its lw_program. Requires: a lowered program (lower_program).
 * Preserves: the steps, their order and their kernels; it only says which runs of steps a
 * back end prints once as a function and calls per layer, so the program computes exactly
 * what the straight-line one does.
 *
 * The layer of a step is the l=N of its instruction's scope; a maximal run of contiguous
 * steps of one layer, with its per-token loops whole, is a layer body. Two bodies have the
 * same structure when every field of every step and loop is equal except the slots: the
 * addresses (frame and state offsets, weight tensors and byte offsets, statistic slots) and
 * whether a step runs for all rows or only the logits rows (the last layer). A slot equal in
 * every layer of a structure stays a literal; the others become the function's arguments.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "../passes/passes.h"

/* Shorter runs (the hoisted constants of a layer) stay in forward: no call is worth it. */
#define DEDUP_MIN_STEPS 4

/* The most slots of a step: two per reference (tensor, offset; dst, src, a fused map's
 * operands, a linear's epilogue operand), its rows, its stat slot. */
#define DEDUP_STEP_SLOTS (2 * (1 + IR_MAX_ARGS + LW_EXPR_MAX + 1) + 2)
#define DEDUP_LOOP_SLOTS 3

/* A layer body: steps first .. last of the program, loops loop0 .. loop0 + nloops - 1. */
typedef struct dedup_run {
    int first, last;
    int layer;
    int loop0, nloops;
    int fn;
} dedup_run;

static void *dedup_alloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        DIE("out of memory");
    return p;
}

static int ref_has_address(const lw_ref *r)
{
    return r->place == LW_FRAME || r->place == LW_STATE || r->place == LW_WEIGHT;
}

/* Slots: the values that may differ between layers of one structure, in a fixed order, with
 * the field that names the argument a slot becomes (written in a function's own copy). */
typedef struct dedup_slots {
    int64_t *value;
    int **arg;
    int n;
} dedup_slots;

static void slot_add(dedup_slots *sl, int64_t value, int *arg)
{
    sl->value[sl->n] = value;
    sl->arg[sl->n] = arg;
    sl->n++;
}

static void ref_slots(dedup_slots *sl, lw_ref *r)
{
    if (r->place == LW_WEIGHT)
        slot_add(sl, r->tensor, &r->tensor_arg);
    if (ref_has_address(r))
        slot_add(sl, r->offset, &r->offset_arg);
}

static int rows_vary(lw_rows rows)
{
    return rows == LW_ROWS_ALL || rows == LW_ROWS_TAIL;
}

static void body_slots(dedup_slots *sl, lw_step *steps, int nsteps, lw_loop *loops, int nloops)
{
    sl->n = 0;
    for (int i = 0; i < nsteps; i++) {
        lw_step *s = &steps[i];
        ref_slots(sl, &s->dst);
        for (int k = 0; k < s->nsrc; k++)
            ref_slots(sl, &s->src[k]);
        for (int k = 0; k < s->nfsrc; k++)          /* fusion (fuse.c) */
            ref_slots(sl, &s->fsrc[k]);
        if (s->res.place != LW_NONE)
            ref_slots(sl, &s->res);
        if (rows_vary(s->rows))
            slot_add(sl, s->rows == LW_ROWS_TAIL, &s->rows_arg);
        if (s->kernel == LK_stat)
            slot_add(sl, s->n[0], &s->stat_arg);
    }
    for (int i = 0; i < nloops; i++) {
        ref_slots(sl, &loops[i].guard);
        slot_add(sl, loops[i].rows == LW_ROWS_TAIL, &loops[i].rows_arg);
    }
}

static void ref_blank(lw_ref *r)
{
    if (ref_has_address(r))
        r->offset = 0;
    if (r->place == LW_WEIGHT)
        r->tensor = 0;
}

/* A step with its slots blanked and its loop relative to its body's first loop: two steps
 * are alike when their keys are equal byte for byte, so that every field (also one added
 * later) is compared unless it is a slot. Padding is zero in the lowering's calloc'd
 * arrays; were it not, steps would only compare unequal (no sharing, never wrong code). */
static lw_step step_key(const lw_step *s, int loop0)
{
    lw_step k;
    memcpy(&k, s, sizeof k);
    k.inst = 0;
    k.loop = s->loop >= 0 ? s->loop - loop0 : -1;
    ref_blank(&k.dst);
    for (int j = 0; j < IR_MAX_ARGS; j++)
        ref_blank(&k.src[j]);
    for (int j = 0; j < LW_EXPR_MAX; j++) {    /* fusion (fuse.c): operands and instructions */
        ref_blank(&k.fsrc[j]);
        k.expr[j].inst = 0;
    }
    ref_blank(&k.res);
    k.res_inst = 0;
    if (k.rows == LW_ROWS_TAIL)
        k.rows = LW_ROWS_ALL;
    if (k.kernel == LK_stat)
        k.n[0] = 0;
    k.fvec = NULL;             /* compared by content */
    return k;
}

static int steps_alike(const lw_step *a, int aloop0, const lw_step *b, int bloop0)
{
    lw_step ka = step_key(a, aloop0), kb = step_key(b, bloop0);
    if (memcmp(&ka, &kb, sizeof ka) != 0)
        return 0;
    return a->nfvec == 0 || memcmp(a->fvec, b->fvec, (size_t)a->nfvec * sizeof *a->fvec) == 0;
}

static lw_loop loop_key(const lw_loop *l, int first)
{
    lw_loop k;
    memcpy(&k, l, sizeof k);
    k.first -= first;
    k.last -= first;
    ref_blank(&k.guard);
    if (k.rows == LW_ROWS_TAIL)
        k.rows = LW_ROWS_ALL;
    return k;
}

static int runs_alike(const lw_program *p, const dedup_run *a, const dedup_run *b)
{
    if (a->last - a->first != b->last - b->first || a->nloops != b->nloops)
        return 0;
    for (int i = 0; i <= a->last - a->first; i++)
        if (!steps_alike(&p->steps[a->first + i], a->loop0, &p->steps[b->first + i], b->loop0))
            return 0;
    for (int i = 0; i < a->nloops; i++) {
        lw_loop ka = loop_key(&p->loops[a->loop0 + i], a->first);
        lw_loop kb = loop_key(&p->loops[b->loop0 + i], b->first);
        if (memcmp(&ka, &kb, sizeof ka) != 0)
            return 0;
    }
    return 1;
}

/* layer[i]: the layer of step i, or -1 when it has none or shares a loop with another. */
static int *step_layers(const lw_program *p)
{
    int *layer = dedup_alloc((size_t)p->nsteps, sizeof *layer);
    for (int i = 0; i < p->nsteps; i++)
        layer[i] = (int)ir_scope_index(p->m->insts[p->steps[i].inst].scope, "l");
    for (int l = 0; l < p->nloops; l++) {
        const lw_loop *lp = &p->loops[l];
        int whole = 1;
        for (int i = lp->first; i <= lp->last; i++)
            whole &= layer[i] == layer[lp->first];
        for (int i = lp->first; i <= lp->last && !whole; i++)
            layer[i] = -1;     /* a loop across layers stays in forward, whole */
    }
    return layer;
}

/* The layer bodies of the program, in step order. */
static dedup_run *find_runs(const lw_program *p, int *nruns)
{
    int *layer = step_layers(p);
    dedup_run *runs = dedup_alloc((size_t)p->nsteps, sizeof *runs);
    *nruns = 0;
    for (int i = 0; i < p->nsteps;) {
        int j = i;
        while (j + 1 < p->nsteps && layer[j + 1] == layer[i])
            j++;
        if (layer[i] >= 0 && j - i + 1 >= DEDUP_MIN_STEPS) {
            dedup_run *r = &runs[(*nruns)++];
            *r = (dedup_run){.first = i, .last = j, .layer = layer[i], .loop0 = -1, .fn = -1};
            for (int k = i; k <= j; k++) {
                int lp = p->steps[k].loop;
                if (lp >= 0 && r->loop0 < 0)
                    r->loop0 = lp;
                if (lp >= 0)
                    r->nloops = lp - r->loop0 + 1;
            }
            if (r->loop0 < 0)
                r->loop0 = 0;
        }
        i = j + 1;
    }
    free(layer);
    return runs;
}

/* The argument (k > 0, a[k - 1]) slot k becomes, or 0 when it is the same in every member:
 * slots whose values agree in every member (x read twice; the rows of one layer's steps)
 * share one argument. slot_of_arg[k - 1]: the first slot of argument k. */
static int slot_arg(const int64_t *value, int nmembers, int nslots, int k,
                    int *slot_of_arg, int *nargs)
{
    int varies = 0;
    for (int m = 1; m < nmembers && !varies; m++)
        varies = value[(size_t)m * (size_t)nslots + (size_t)k] != value[k];
    if (!varies)
        return 0;
    for (int a = 0; a < *nargs; a++) {
        int j = slot_of_arg[a], same = 1;
        for (int m = 0; m < nmembers && same; m++)
            same = value[(size_t)m * (size_t)nslots + (size_t)j] ==
                   value[(size_t)m * (size_t)nslots + (size_t)k];
        if (same)
            return a + 1;
    }
    slot_of_arg[(*nargs)++] = k;
    return *nargs;
}

/* A layer function for the runs of structure fn: the first run's steps and loops, made its
 * own, with an argument for every slot that is not equal in all of them. */
static void make_fn(lw_program *p, lw_fn *f, int fn, const dedup_run *runs, int nruns,
                    dedup_slots *first, dedup_slots *other)
{
    const dedup_run *rep = NULL;
    for (int r = 0; r < nruns && !rep; r++)
        if (runs[r].fn == fn)
            rep = &runs[r];
    f->nsteps = rep->last - rep->first + 1;
    f->nloops = rep->nloops;
    f->steps = dedup_alloc((size_t)f->nsteps, sizeof *f->steps);
    f->loops = dedup_alloc((size_t)f->nloops, sizeof *f->loops);
    memcpy(f->steps, &p->steps[rep->first], (size_t)f->nsteps * sizeof *f->steps);
    memcpy(f->loops, &p->loops[rep->loop0], (size_t)f->nloops * sizeof *f->loops);
    for (int i = 0; i < f->nsteps; i++)
        if (f->steps[i].loop >= 0)
            f->steps[i].loop -= rep->loop0;
    for (int i = 0; i < f->nloops; i++) {
        f->loops[i].first -= rep->first;
        f->loops[i].last -= rep->first;
    }
    body_slots(first, f->steps, f->nsteps, f->loops, f->nloops);
    int nslots = first->n, nmembers = 0;
    for (int r = 0; r < nruns; r++)
        nmembers += runs[r].fn == fn;
    /* value[m * nslots + k]: slot k in member m (the runs of this structure, in order) */
    int64_t *value = dedup_alloc((size_t)nmembers * (size_t)nslots, sizeof *value);
    for (int r = 0, m = 0; r < nruns; r++) {
        if (runs[r].fn != fn)
            continue;
        body_slots(other, &p->steps[runs[r].first], f->nsteps, &p->loops[runs[r].loop0],
                   f->nloops);
        memcpy(value + (size_t)m++ * (size_t)nslots, other->value, (size_t)nslots * sizeof *value);
    }
    int *slot_of_arg = dedup_alloc((size_t)nslots, sizeof *slot_of_arg);
    for (int k = 0; k < nslots; k++)
        *first->arg[k] = slot_arg(value, nmembers, nslots, k, slot_of_arg, &f->nargs);
    for (int r = 0, m = 0; r < nruns; r++) {
        if (runs[r].fn != fn)
            continue;
        lw_call *c = &p->calls[p->ncalls++];
        *c = (lw_call){.fn = fn, .first = runs[r].first, .last = runs[r].last,
                       .layer = runs[r].layer};
        c->args = dedup_alloc((size_t)f->nargs, sizeof *c->args);
        for (int k = 0; k < f->nargs; k++)
            c->args[k] = value[(size_t)m * (size_t)nslots + (size_t)slot_of_arg[k]];
        m++;
        f->ncalls++;
    }
    free(slot_of_arg);
    free(value);
}

static int call_order(const void *a, const void *b)
{
    const lw_call *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

/* "l=0..30" or "l=0,1,2,5": the layers that call fn (runs of three or more as a..b). */
static void layer_list(const lw_program *p, int fn, char *buf, size_t size)
{
    int *layers = dedup_alloc((size_t)p->ncalls, sizeof *layers), n = 0;
    for (int i = 0; i < p->ncalls; i++)
        if (p->calls[i].fn == fn)
            layers[n++] = p->calls[i].layer;
    size_t len = (size_t)snprintf(buf, size, "l=");
    for (int i = 0; i < n && len < size; i++) {
        int j = i;
        while (j + 1 < n && layers[j + 1] == layers[j] + 1)
            j++;
        const char *sep = i ? "," : "";
        if (j - i >= 2)
            len += (size_t)snprintf(buf + len, size - len, "%s%d..%d", sep, layers[i], layers[j]);
        else
            len += (size_t)snprintf(buf + len, size - len, "%s%d", sep, layers[i]), j = i;
        i = j;
    }
    free(layers);
}

void lower_dedup(lw_program *p)
{
    if (passes_opts.o0) {
        pass_note("dedup", "off (-O0): one straight-line forward");
        return;
    }
    int nruns;
    dedup_run *runs = find_runs(p, &nruns);
    for (int r = 0; r < nruns; r++) {
        for (int q = 0; q < r && runs[r].fn < 0; q++)
            if (runs_alike(p, &runs[q], &runs[r]))
                runs[r].fn = runs[q].fn;
        if (runs[r].fn < 0)
            runs[r].fn = p->nfns++;
    }
    p->fns = dedup_alloc((size_t)p->nfns, sizeof *p->fns);
    p->calls = dedup_alloc((size_t)nruns, sizeof *p->calls);
    size_t most = (size_t)p->nsteps * DEDUP_STEP_SLOTS + (size_t)p->nloops * DEDUP_LOOP_SLOTS;
    dedup_slots sl[2];
    for (int k = 0; k < 2; k++)
        sl[k] = (dedup_slots){dedup_alloc(most, sizeof(int64_t)), dedup_alloc(most, sizeof(int *)), 0};
    for (int f = 0; f < p->nfns; f++)
        make_fn(p, &p->fns[f], f, runs, nruns, &sl[0], &sl[1]);
    qsort(p->calls, (size_t)p->ncalls, sizeof *p->calls, call_order);
    for (int f = 0; f < p->nfns; f++) {
        char layers[512];
        layer_list(p, f, layers, sizeof layers);
        if (p->fns[f].ncalls == 1)
            pass_note("dedup", "%s: alone in layer_%d (%d steps, %d arguments)", layers, f,
                      p->fns[f].nsteps, p->fns[f].nargs);
        else
            pass_note("dedup", "%s: %d layers share layer_%d (%d steps, %d arguments)", layers,
                      p->fns[f].ncalls, f, p->fns[f].nsteps, p->fns[f].nargs);
    }
    if (nruns == 0)
        pass_note("dedup", "no layer bodies: one straight-line forward");
    for (int k = 0; k < 2; k++)
        free(sl[k].value), free(sl[k].arg);
    free(runs);
}

void lower_dedup_free(lw_program *p)
{
    for (int f = 0; f < p->nfns; f++)
        free(p->fns[f].steps), free(p->fns[f].loops);
    for (int c = 0; c < p->ncalls; c++)
        free(p->calls[c].args);
    free(p->fns);
    free(p->calls);
    p->fns = NULL, p->calls = NULL;
    p->nfns = p->ncalls = 0;
}
