/* split_views.c - a matrix that products read in disjoint pieces becomes one tensor per piece.
 *
 * requires: verified IR, after fuse-linear (the pieces it stacks are tensors of their own)
 * preserves: every value exactly (a product over a piece is the product over its tensor);
 *            effects and their order; the blob's bytes (the pieces are the tensor's bytes)
 * decides, for each matrix whose every view is read only by products as their weight, and
 * whose views are pieces of whole rows (`W[a:b]`) or of whole columns (`W[:, a:b]`), two or
 * more, any two the same piece or apart: each piece becomes a tensor of its own (a `rows` or
 * `cols` recipe of the old one, `tensor @N ... = cols("...down_proj.weight" ..., 32:64)`) and
 * its views read all of it. So an expert's columns of a shared down projection lie together
 * in the blob: an expert that does not run is memory never read, and one that runs is one
 * stream. Each split is noted.
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define PASS "split-views"

/* A view's piece: whole rows [lo, hi) (cols 0), or whole columns [lo, hi) (cols 1). */
typedef struct piece {
    int cols;
    int64_t lo, hi;
} piece;

/* The piece weight view v is, or 0 when it is the whole matrix or no piece. */
static int piece_of(const ir_module *m, const ir_inst *v, piece *p)
{
    const ir_type *t = &m->tensors[v->iattr[0]].type, *vt = &v->type;
    if (t->rank != 2 || vt->rank != 2)
        return 0;
    int whole_rows = v->iattr[1] == 0 && vt->dim[0] == t->dim[0];
    int whole_cols = v->iattr[2] == 0 && vt->dim[1] == t->dim[1];
    if (whole_rows == whole_cols)              /* the whole matrix, or a block of both */
        return 0;
    p->cols = whole_rows;
    p->lo = whole_rows ? v->iattr[2] : v->iattr[1];
    p->hi = p->lo + (whole_rows ? vt->dim[1] : vt->dim[0]);
    return 1;
}

/* Whether tensor t splits: every view a piece read only as a product's weight, two pieces or
 * more, of one kind, each two equal or apart. */
static int splits(const ir_module *m, const ir_uses *u, int t, int *npieces)
{
    piece seen[64];
    int n = 0;
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *w = &m->insts[v];
        if (w->op != IR_weight || w->iattr[0] != t)
            continue;
        piece p;
        if (!piece_of(m, w, &p))
            return 0;
        for (int j = u->first[v]; j < u->first[v + 1]; j++) {
            const ir_inst *r = &m->insts[u->user[j]];
            if (r->op != IR_linear || r->args[1] != v || r->args[0] == v)
                return 0;
        }
        int same = 0;
        for (int k = 0; k < n; k++) {
            if (seen[k].cols != p.cols)
                return 0;
            if (seen[k].lo == p.lo && seen[k].hi == p.hi)
                same = 1;
            else if (seen[k].lo < p.hi && p.lo < seen[k].hi)
                return 0;
        }
        if (!same) {
            if (n == (int)(sizeof seen / sizeof seen[0]))
                return 0;
            seen[n++] = p;
        }
    }
    *npieces = n;
    return n >= 2;
}

/* The tensor of old view v's piece in the new module: made at its first view (pieces[] holds
 * the made ones of this tensor, by piece). */
static int piece_tensor(ir_rewriter *rw, int v, piece *made, int *made_t, int *nmade)
{
    const ir_module *m = rw->old;
    const ir_inst *w = &m->insts[v];
    piece p;
    piece_of(m, w, &p);
    for (int k = 0; k < *nmade; k++)
        if (made[k].cols == p.cols && made[k].lo == p.lo)
            return made_t[k];
    const ir_tensor *t = &m->tensors[w->iattr[0]];
    const ir_recipe *r = ir_recipe_of_view(m, w);
    if (!r)
        DIE(PASS ": no recipe for a piece of %s", t->decl);
    const char *decl = base_intern_fmt("%s[%s%lld:%lld]", t->decl, p.cols ? ":, " : "",
                                       (long long)p.lo, (long long)p.hi);
    int nt = ir_add_recipe_tensor(rw->m, decl, t->type.dtype, r, t->loc);
    made[*nmade] = p;
    made_t[(*nmade)++] = nt;
    return nt;
}

ir_module *pass_split_views(ir_module *m)
{
    ir_uses u;
    ir_uses_build(m, &u);
    int *keep = malloc(sizeof(int) * (size_t)(m->ntensors ? m->ntensors : 1));
    if (!keep)
        DIE("out of memory");
    int any = 0;
    for (int t = 0; t < m->ntensors; t++) {
        int n = 0;
        keep[t] = !splits(m, &u, t, &n);
        if (!keep[t]) {
            any = 1;
            pass_note(PASS, "%s: %d pieces, one tensor each (each piece's weights together in "
                      "the blob)", m->tensors[t].decl, n);
        }
    }
    ir_uses_free(&u);
    if (!any) {
        free(keep);
        return m;
    }
    ir_rewriter rw;
    ir_rw_begin(&rw, m, keep);
    /* the pieces made so far, per old tensor */
    piece *made = malloc(sizeof *made * 64 * (size_t)m->ntensors);
    int *made_t = malloc(sizeof(int) * 64 * (size_t)m->ntensors);
    int *nmade = calloc((size_t)m->ntensors, sizeof(int));
    if (!made || !made_t || !nmade)
        DIE("out of memory");
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->op != IR_weight || keep[in->iattr[0]]) {
            ir_rw_copy(&rw, i);
            continue;
        }
        int t = (int)in->iattr[0];
        ir_inst c = *in;           /* a source: no operands or guard to rename */
        c.iattr[0] = piece_tensor(&rw, i, made + 64 * t, made_t + 64 * t, &nmade[t]);
        c.iattr[1] = c.iattr[2] = 0;
        ir_rw_replace(&rw, i, ir_rw_add(&rw, &c));
    }
    free(made), free(made_t), free(nmade), free(keep);
    return ir_rw_end(&rw);
}
