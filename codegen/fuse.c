/* fuse.c - fusion on the lowered program (lower.h): elementwise chains computed inside the
 * map that reads them, residual and bias adds computed by the linear kernel that feeds them.
 *
 * requires: a lowered program (lower_program) of a memory-planned module; runs before any
 *           back end prints it, so back ends still decide nothing
 * preserves: the value of everything still stored, the order of the remaining steps, the
 *            per-token loops; the arithmetic of every element, operation for operation (a
 *            fused map evaluates the same float operations in the same order, a fused add is
 *            the same single float add), so results are bit for bit those without fusion.
 * Removes the steps whose value is now computed inside another. Their frame slots stay
 * planned and unused: harmless, the frame is no larger than before.
 *
 * A map step P is computed inside its reader R when R is the only use of P's value (IR use
 * lists: operands and guards, so logits, caches, statistics and readers in other layers or
 * in per-token loops all count), R is a plain map (not over causal scores or a cache) with
 * the same rows and per-token loop, P has R's element count or one value per row (then it is
 * computed once per row, before R's element loop), and every place P reads still holds the
 * same bytes when R runs. A linear L whose only use is an add A of L and r (a residual, one
 * row per token, or a bias, one row for all) computes dst(A) = r + L in the kernel, at L's
 * place, when r is ready before L and dst(A) is neither L's input nor touched by the steps
 * between L and A. Epilogues are fused first: the add then is no longer a map.
 * Layers stay alike (for dedup.c): a fusion that the memory plan forbids in one layer is not
 * made at the same place (the step's index among its layer's steps) in any other layer.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "../passes/passes.h"
#include "../runtime/kiln_blob.h"

typedef struct fuse_ctx {
    lw_program *p;
    const ir_module *m;
    int *uses;                 /* per value: its operand and guard uses */
    int *user;                 /* per value: an instruction that uses it */
    int *step_of;              /* per instruction: its step, or -1 */
    char *gone;                /* per step: now computed inside another step */
    int *pos;                  /* per step: its index in its layer, or -1 */
    char *forbid;              /* per index in a layer: no fusion there in any layer */
    int grew;                  /* this round forbade a new index */
    int note;                  /* this round records its decisions */
} fuse_ctx;

/* The bytes a place occupies: [lo, hi) in the frame or the state. */
typedef struct fuse_span {
    lw_place place;
    int64_t lo, hi;
} fuse_span;

static void *fuse_calloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size);
    if (!q)
        DIE("out of memory");
    return q;
}

/* The span of ref; 0 when it is not in the frame or the state (weights, tokens, literals
 * never change during a call). */
static int fuse_ref_span(const fuse_ctx *f, const lw_ref *r, fuse_span *s)
{
    if (r->place != LW_FRAME && r->place != LW_STATE)
        return 0;
    int64_t rows = r->tok ? f->m->t_max : 1;
    *s = (fuse_span){r->place, r->offset, r->offset + rows * r->row * 4};
    return 1;
}

static int fuse_spans_meet(const fuse_span *a, const fuse_span *b)
{
    return a->place == b->place && a->lo < b->hi && b->lo < a->hi;
}

/* Whether ref a overlaps ref b anywhere. */
static int fuse_refs_meet(const fuse_ctx *f, const lw_ref *a, const lw_ref *b)
{
    fuse_span sa, sb;
    return fuse_ref_span(f, a, &sa) && fuse_ref_span(f, b, &sb) && fuse_spans_meet(&sa, &sb);
}

/* Same place and element layout: reading element (r, i) of one and writing element (r, i)
 * of the other is safe in place. */
static int fuse_same_layout(const lw_ref *a, const lw_ref *b)
{
    return a->place == b->place && a->offset == b->offset && a->row == b->row &&
           a->tok == b->tok;
}

/* The operands step s reads. */
static int fuse_reads(const lw_step *s, const lw_ref **out)
{
    int n = 0;
    if (s->nexpr > 0)
        for (int k = 0; k < s->nfsrc; k++)
            out[n++] = &s->fsrc[k];
    else
        for (int k = 0; k < s->nsrc; k++)
            out[n++] = &s->src[k];
    if (s->res.place != LW_NONE)
        out[n++] = &s->res;
    return n;
}

/* Whether a step strictly between steps a and b writes ref (or, with reads, reads it). */
static int fuse_touched_between(const fuse_ctx *f, int a, int b, const lw_ref *ref, int reads)
{
    for (int k = a + 1; k < b; k++) {
        const lw_step *s = &f->p->steps[k];
        if (f->gone[k])
            continue;
        if (s->dst.place != LW_NONE && fuse_refs_meet(f, &s->dst, ref))
            return 1;
        if (!reads)
            continue;
        const lw_ref *rd[LW_EXPR_MAX + 1];
        int n = fuse_reads(s, rd);
        for (int j = 0; j < n; j++)
            if (fuse_refs_meet(f, rd[j], ref))
                return 1;
        if (s->loop >= 0 && f->p->loops[s->loop].first == k &&
            fuse_refs_meet(f, &f->p->loops[s->loop].guard, ref))
            return 1;
    }
    return 0;
}

/* The step of the only instruction that uses the value of step i, or -1. */
static int fuse_only_reader(const fuse_ctx *f, int i)
{
    int v = f->p->steps[i].inst;
    if (f->uses[v] != 1)
        return -1;
    int r = f->step_of[f->user[v]];
    return r >= 0 && !f->gone[r] ? r : -1;
}

/* ---- maps into maps ---- */

static int fuse_plain_map(const lw_step *s)
{
    return s->kernel == LK_map && s->op != IR_accum_if && s->n[3] == 0;
}

/* Gives a map step its expression form: its sources as leaves, its op as the root. */
static void fuse_expr_init(const ir_module *m, lw_step *s)
{
    if (s->nexpr > 0)
        return;
    const ir_inst *in = &m->insts[s->inst];
    lw_enode root = {.leaf = -1, .op = s->op, .inst = s->inst, .scalar = s->dst.row == 1};
    for (int k = 0; k < s->nsrc; k++) {
        s->fsrc[k] = s->src[k];
        s->expr[k] = (lw_enode){.leaf = k, .inst = in->args[k], .scalar = s->src[k].row == 1};
        root.arg[k] = k;
    }
    s->nfsrc = s->nsrc;
    s->expr[s->nsrc] = root;
    s->nexpr = s->nsrc + 1;
}

/* The index of ref among out's fused operands (added when new), or -1 when they are full. */
static int fuse_leaf(lw_step *out, const lw_ref *ref)
{
    for (int k = 0; k < out->nfsrc; k++) {
        const lw_ref *o = &out->fsrc[k];
        if (fuse_same_layout(o, ref) && o->tensor == ref->tensor && o->i32 == ref->i32 &&
            o->index == ref->index && o->value == ref->value && o->dtype == ref->dtype)
            return k;
    }
    if (out->nfsrc == LW_EXPR_MAX)
        return -1;
    out->fsrc[out->nfsrc] = *ref;
    return out->nfsrc++;
}

/* Copies node `node` of step from (and what is below it) to the end of out's expression,
 * with the leaf that reads value `inner_inst` replaced by the whole expression of step
 * inner. The new node's index, or -1 when the expression would be too large. */
static int fuse_splice(lw_step *out, const lw_step *from, int node, const lw_step *inner,
                       int inner_inst)
{
    const lw_enode *e = &from->expr[node];
    if (e->leaf >= 0 && inner && e->inst == inner_inst)
        return fuse_splice(out, inner, inner->nexpr - 1, NULL, -1);
    lw_enode copy = *e;
    if (e->leaf >= 0) {
        copy.leaf = fuse_leaf(out, &from->fsrc[e->leaf]);
        if (copy.leaf < 0)
            return -1;
    } else {
        for (int k = 0; k < ir_ops[e->op].arity; k++)
            if ((copy.arg[k] = fuse_splice(out, from, e->arg[k], inner, inner_inst)) < 0)
                return -1;
    }
    if (out->nexpr == LW_EXPR_MAX)
        return -1;
    out->expr[out->nexpr] = copy;
    return out->nexpr++;
}

/* Whether producer P may be computed inside reader R (see the file's comment). When the
 * shapes fit but the memory plan forbids it, *why says why. */
static int fuse_map_fits(const fuse_ctx *f, int ip, int ir, const char **why)
{
    *why = NULL;
    const lw_step *P = &f->p->steps[ip], *R = &f->p->steps[ir];
    if (!fuse_plain_map(P) || !fuse_plain_map(R) || P->dst.place != LW_FRAME)
        return 0;
    if (R->rows != P->rows || R->loop != P->loop || R->dst.tok != P->dst.tok)
        return 0;
    if (P->n[0] != R->n[0] && P->n[0] != 1)
        return 0;
    const lw_ref *rd[LW_EXPR_MAX + 1];
    int n = fuse_reads(P, rd);
    for (int k = 0; k < n; k++) {
        if (fuse_touched_between(f, ip, ir, rd[k], 0))
            return *why = "a step between them reuses the slot of an operand", 0;
        if (fuse_refs_meet(f, &R->dst, rd[k]) && !fuse_same_layout(&R->dst, rd[k]))
            return *why = "the reader's result overlaps an operand", 0;
    }
    return 1;
}

/* Computes step ip inside step ir; 0, or -1 (nothing changed) when too large. */
static int fuse_map_into(fuse_ctx *f, int ip, int ir)
{
    lw_step P = f->p->steps[ip], R = f->p->steps[ir];
    fuse_expr_init(f->m, &P);
    fuse_expr_init(f->m, &R);
    lw_step merged = R;
    merged.nexpr = 0;
    merged.nfsrc = 0;
    if (fuse_splice(&merged, &R, R.nexpr - 1, &P, P.inst) < 0)
        return -1;
    f->p->steps[ir] = merged;
    f->gone[ip] = 1;
    return 0;
}

/* ---- adds into linears ---- */

/* The residual or bias operand of add step A reading linear step L (its argument index in
 * *k), or NULL when A is not such an add. */
static const lw_ref *fuse_add_operand(const fuse_ctx *f, const lw_step *L, const lw_step *A,
                                      int *k)
{
    const ir_inst *in = &f->m->insts[A->inst];
    if (A->kernel != LK_map || A->op != IR_add || A->nexpr > 0 || A->n[3] != 0)
        return NULL;
    *k = in->args[0] == L->inst ? 1 : 0;
    const lw_ref *r = &A->src[*k];
    if (r->i32 || r->row != L->n[0] || (r->tok && !A->dst.tok))
        return NULL;
    if (r->place == LW_WEIGHT ? r->dtype != KBLOB_F32 || r->tok
                              : r->place != LW_FRAME && r->place != LW_STATE)
        return NULL;
    return r;
}

/* Makes linear step il compute the add step ia reading it, when that is safe. 0, or -1
 * (with *why set when the add fits but the memory plan forbids it). */
static int fuse_epilogue(fuse_ctx *f, int il, int ia, const char **why)
{
    lw_step *L = &f->p->steps[il], *A = &f->p->steps[ia];
    int k;
    *why = NULL;
    const lw_ref *r = fuse_add_operand(f, L, A, &k);
    if (!r || A->rows != L->rows || A->loop != L->loop || A->dst.tok != L->dst.tok ||
        A->dst.row != L->dst.row)
        return -1;
    int rv = f->m->insts[A->inst].args[k];
    if (f->step_of[rv] >= il)
        return *why = "the other operand is computed after the linear", -1;
    if (fuse_refs_meet(f, &A->dst, &L->src[0]))
        return *why = "the sum's slot is the linear's input", -1;
    if (fuse_touched_between(f, il, ia, &A->dst, 1))
        return *why = "a step between them uses the sum's slot", -1;
    if (fuse_refs_meet(f, &A->dst, r) && !fuse_same_layout(&A->dst, r))
        return *why = "the sum overlaps the other operand", -1;
    L->dst = A->dst;
    L->res = *r;
    L->res_inst = A->inst;
    f->gone[ia] = 1;
    return 0;
}

/* ---- the program ---- */

static const char *fuse_scope(const fuse_ctx *f, int inst)
{
    const char *s = f->m->insts[inst].scope;
    return s ? s : "top";
}

/* One note per fused map: the ops it computes in one loop. */
static void fuse_note_map(const fuse_ctx *f, const lw_step *s)
{
    char text[512];
    size_t n = 0;
    int ops = 0;
    for (int k = 0; k < s->nexpr && n < sizeof text; k++) {
        const lw_enode *e = &s->expr[k];
        if (e->leaf >= 0)
            continue;
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%s %%%d", ops ? ", " : "",
                              ir_ops[e->op].name, e->inst);
        ops++;
    }
    pass_note("fuse", "%s: %s: %d ops in one loop", fuse_scope(f, s->inst), text, ops);
}

/* Drops the steps computed elsewhere and renumbers the loops' first and last steps. */
static void fuse_compact(fuse_ctx *f)
{
    lw_program *p = f->p;
    int n = 0;
    for (int i = 0; i < p->nsteps; i++)
        if (!f->gone[i])
            p->steps[n++] = p->steps[i];
    p->nsteps = n;
    for (int l = 0; l < p->nloops; l++)
        p->loops[l].first = -1;
    for (int i = 0; i < n; i++) {
        int l = p->steps[i].loop;
        if (l < 0)
            continue;
        if (p->loops[l].first < 0)
            p->loops[l].first = i;
        p->loops[l].last = i;
    }
}

static void fuse_ctx_init(fuse_ctx *f, lw_program *p)
{
    const ir_module *m = p->m;
    f->p = p;
    f->m = m;
    f->uses = fuse_calloc((size_t)m->ninsts, sizeof *f->uses);
    f->user = fuse_calloc((size_t)m->ninsts, sizeof *f->user);
    f->step_of = fuse_calloc((size_t)m->ninsts, sizeof *f->step_of);
    f->gone = fuse_calloc((size_t)p->nsteps, 1);
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        f->step_of[i] = -1;
        for (int k = 0; k < in->nargs; k++)
            f->uses[in->args[k]]++, f->user[in->args[k]] = i;
        if (in->guard >= 0)
            f->uses[in->guard]++, f->user[in->guard] = i;
    }
    for (int i = 0; i < p->nsteps; i++)
        f->step_of[p->steps[i].inst] = i;
}

/* pos[i]: step i's index among the steps of its layer (l=N), or -1 outside layers. */
static int *fuse_layer_positions(const lw_program *p)
{
    int *pos = fuse_calloc((size_t)p->nsteps, sizeof *pos);
    int *seen = fuse_calloc((size_t)p->nsteps + 1, sizeof *seen);
    for (int i = 0; i < p->nsteps; i++) {
        int l = (int)ir_scope_index(p->m->insts[p->steps[i].inst].scope, "l");
        pos[i] = l >= 0 && l < p->nsteps ? seen[l]++ : -1;
    }
    free(seen);
    return pos;
}

/* Whether the fusion of step i is refused: the memory plan forbids it (why), or it was
 * forbidden at step i's place in its layer because another layer could not make it. A new
 * refusal forbids that place in every layer (f->grew). */
static int fuse_refused(fuse_ctx *f, int i, const char **why)
{
    int at = f->pos[i];
    if (*why && at >= 0 && !f->forbid[at])
        f->forbid[at] = 1, f->grew = 1;
    if (!*why && at >= 0 && f->forbid[at])
        *why = "not made in another layer either, so that the layers stay alike";
    return *why != NULL;
}

/* One round of fusion on the program (see the file's comment); notes only with f->note. */
static void fuse_round(fuse_ctx *f)
{
    lw_program *p = f->p;
    const char *why;
    for (int i = 0; i < p->nsteps; i++) {
        lw_step *s = &p->steps[i];
        int a;
        if (s->kernel != LK_linear || (a = fuse_only_reader(f, i)) < 0)
            continue;
        lw_step before = *s;
        int made = fuse_epilogue(f, i, a, &why) == 0;
        if ((made || why) && fuse_refused(f, i, &why)) {
            if (made)          /* made, but refused for the layers' sake: undone */
                *s = before, f->gone[a] = 0;
            if (f->note)
                pass_note("fuse", "%s: add %%%d stays apart from linear %%%d: %s",
                          fuse_scope(f, s->inst), p->steps[a].inst, s->inst, why);
        } else if (made && f->note) {
            pass_note("fuse", "%s: %s add %%%d into linear %%%d", fuse_scope(f, s->inst),
                      s->res.tok ? "residual" : "bias", s->res_inst, s->inst);
        }
    }
    for (int i = 0; i < p->nsteps; i++) {
        int r;
        if (f->gone[i] || (r = fuse_only_reader(f, i)) < 0)
            continue;
        const lw_step *P = &p->steps[i], *R = &p->steps[r];
        int fits = fuse_map_fits(f, i, r, &why);
        if ((fits || why) && fuse_refused(f, i, &why))
            fits = 0;
        if (fits && fuse_map_into(f, i, r) != 0)
            why = "the expression would be too large";
        if (why && f->note)
            pass_note("fuse", "%s: %s %%%d stays apart from %s %%%d: %s", fuse_scope(f, P->inst),
                      ir_ops[P->op].name, P->inst, ir_ops[R->op].name, R->inst, why);
    }
}

static void fuse_ctx_free(fuse_ctx *f)
{
    free(f->uses);
    free(f->user);
    free(f->step_of);
    free(f->gone);
}

void lower_fuse(lw_program *p)
{
    if (passes_opts.o0)
        return;
    /* Rounds on the original steps until no layer refuses a fusion that another layer
     * makes at the same place: what one layer cannot fuse, no layer fuses (the layers stay
     * alike for dedup.c). Then the last round again, noting its decisions. */
    lw_step *orig = fuse_calloc((size_t)p->nsteps, sizeof *orig);
    memcpy(orig, p->steps, (size_t)p->nsteps * sizeof *orig);
    fuse_ctx f = {.pos = fuse_layer_positions(p)};
    f.forbid = fuse_calloc((size_t)p->nsteps, 1);
    do {
        memcpy(p->steps, orig, (size_t)p->nsteps * sizeof *orig);
        fuse_ctx_init(&f, p);
        f.grew = 0;
        fuse_round(&f);
        fuse_ctx_free(&f);
    } while (f.grew);
    memcpy(p->steps, orig, (size_t)p->nsteps * sizeof *orig);
    fuse_ctx_init(&f, p);
    f.note = 1;
    fuse_round(&f);
    for (int i = 0; i < p->nsteps; i++)
        if (!f.gone[i] && p->steps[i].nexpr > 0)
            fuse_note_map(&f, &p->steps[i]);
    fuse_compact(&f);
    fuse_ctx_free(&f);
    free(f.pos);
    free(f.forbid);
    free(orig);
}
