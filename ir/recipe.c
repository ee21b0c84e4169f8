/* recipe.c - tensors computed when packing: how a pass says "this weight is those
 * checkpoint tensors, stacked, cut, scaled or multiplied".
 *
 * A pass that fuses two products (stacking their weights), prunes experts (keeping some rows
 * of a tensor) or folds a constant through a product (a vector times a matrix) makes a new
 * tensor whose recipe is a small tree over checkpoint tensors (RC_LOAD leaves). The packer
 * (codegen/bind.c) evaluates the tree in f32 from the checkpoint and stores the result in the
 * tensor's storage type, so the program reads one ready-made weight. Recipes print inside the
 * tensor lines of a dump (print.c) and read back (read.c): `= concat("a" f32[4, 8], "b"
 * f32[2, 8])`. The front end makes recipes too: a spec's weight bound to a slice of another
 * or to a tensor stored transposed (`transpose(c_attn[l][:, 0:dim])`) is a view recipe,
 * `transpose(cols("...c_attn.weight" f32[64, 192], 0:64))`.
 */
#include <string.h>

#include "ir.h"

const char *const ir_recipe_names[RC_COUNT] = {
    [RC_LOAD] = "load", [RC_CONCAT] = "concat", [RC_ROWS] = "rows", [RC_COLS] = "cols",
    [RC_SCALE_COLS] = "scale_cols", [RC_MATVEC_T] = "matvec_t", [RC_TRANSPOSE] = "transpose",
};

int ir_recipe_lookup(const char *name, size_t len)
{
    for (int k = 1; k < RC_COUNT; k++)
        if (strlen(ir_recipe_names[k]) == len && !strncmp(ir_recipe_names[k], name, len))
            return k;
    return -1;
}

const ir_recipe *ir_recipe_load(const char *name, ir_type type, src_loc loc)
{
    ir_recipe *r = base_alloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->op = RC_LOAD;
    r->name = name;
    r->type = type;
    r->loc = loc;
    return r;
}

const ir_recipe *ir_recipe_of(const ir_tensor *t)
{
    return t->recipe ? t->recipe : ir_recipe_load(t->name, t->type, t->loc);
}

int ir_recipe_make(const ir_recipe **out, ir_recipe_op op, const ir_recipe *const *src,
                   int nsrc, const int64_t *range, int nrange, char *why, size_t size)
{
    ir_recipe *r = base_alloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->op = op;
    r->nsrc = nsrc;
    const ir_recipe **s = base_alloc(sizeof *s * (size_t)(nsrc ? nsrc : 1));
    if (nsrc)
        memcpy(s, src, sizeof *s * (size_t)nsrc);
    r->src = s;
    r->nrange = nrange;
    int64_t *rg = base_alloc(sizeof *rg * (size_t)(2 * nrange + 1));
    if (nrange)
        memcpy(rg, range, sizeof *rg * (size_t)(2 * nrange));
    r->range = rg;
    for (int k = 0; k < nsrc; k++)
        if (src[k]->depth + 1 > r->depth)
            r->depth = src[k]->depth + 1;
    if (r->depth > KILN_MAX_RECIPE_DEPTH) {
        snprintf(why, size, "a recipe nests more than %d deep", KILN_MAX_RECIPE_DEPTH);
        return -1;
    }
    if (ir_recipe_type(r, &r->type, why, size) != 0)
        return -1;
    *out = r;
    return 0;
}

/* rows/cols: the ranges lie in [0, n), ascending, not overlapping; their total length. */
static int64_t ranges_length(const ir_recipe *r, int64_t n, char *why, size_t size)
{
    int64_t total = 0, last = 0;
    if (r->nrange < 1) {
        snprintf(why, size, "%s needs at least one range", ir_recipe_names[r->op]);
        return -1;
    }
    for (int k = 0; k < r->nrange; k++) {
        int64_t b = r->range[2 * k], e = r->range[2 * k + 1];
        if (b < last || e <= b || e > n) {
            snprintf(why, size, "%s: range %lld:%lld is not inside 0:%lld after the ranges "
                     "before it", ir_recipe_names[r->op], (long long)b, (long long)e,
                     (long long)n);
            return -1;
        }
        total += e - b;
        last = e;
    }
    return total;
}

/* A vector of n values: [n], or one row [1, n] (a view of a matrix's row as a recipe). */
static int is_vector(const ir_type *t, int64_t n)
{
    return (t->rank == 1 && t->dim[0] == n) || (t->rank == 2 && t->dim[0] == 1 && t->dim[1] == n);
}

int ir_recipe_type(const ir_recipe *r, ir_type *out, char *why, size_t size)
{
    const ir_type *a = r->nsrc > 0 ? &r->src[0]->type : NULL;
    const ir_type *b = r->nsrc > 1 ? &r->src[1]->type : NULL;
    int64_t dim[IR_MAX_RANK];
    int want = r->op == RC_LOAD ? 0 : r->op == RC_CONCAT ? -1 : r->op == RC_ROWS ||
               r->op == RC_COLS || r->op == RC_TRANSPOSE ? 1 : 2;
    if (want >= 0 && r->nsrc != want) {
        snprintf(why, size, "%s takes %d tensor%s, not %d", ir_recipe_names[r->op], want,
                 want == 1 ? "" : "s", r->nsrc);
        return -1;
    }
    for (int k = 0; k < r->nsrc; k++)
        if (r->src[k]->type.tok || r->src[k]->type.seq) {
            snprintf(why, size, "%s reads a tensor with a token or position axis",
                     ir_recipe_names[r->op]);
            return -1;
        }
    switch (r->op) {
    case RC_LOAD:
        *out = r->type;
        return 0;
    case RC_CONCAT: {                          /* stacked along the first dimension */
        if (r->nsrc < 2) {
            snprintf(why, size, "concat takes at least 2 tensors");
            return -1;
        }
        int64_t rows = 0;
        for (int k = 0; k < r->nsrc; k++) {
            const ir_type *t = &r->src[k]->type;
            int same = t->rank == a->rank && t->rank >= 1;
            for (int d = 1; same && d < t->rank; d++)
                same = t->dim[d] == a->dim[d];
            if (!same) {
                snprintf(why, size, "concat: tensor %d has another shape than the first "
                         "beyond its first dimension", k);
                return -1;
            }
            rows += t->dim[0];
        }
        memcpy(dim, a->dim, sizeof dim);
        dim[0] = rows;
        return ir_type_make(out, a->dtype, 0, a->rank, dim, 0, why, size);
    }
    case RC_ROWS: case RC_COLS: {
        int axis = r->op == RC_ROWS ? 0 : 1;
        if (a->rank != 2 && !(a->rank == 1 && axis == 0)) {
            snprintf(why, size, "%s reads a matrix", ir_recipe_names[r->op]);
            return -1;
        }
        int64_t n = ranges_length(r, a->dim[axis], why, size);
        if (n < 0)
            return -1;
        memcpy(dim, a->dim, sizeof dim);
        dim[axis] = n;
        return ir_type_make(out, a->dtype, 0, a->rank, dim, 0, why, size);
    }
    case RC_SCALE_COLS:                        /* w [o, i], g [i]: column j times g[j] */
        if (a->rank != 2 || !is_vector(b, a->dim[1])) {
            snprintf(why, size, "scale_cols needs a matrix [o, i] and a vector [i]");
            return -1;
        }
        return ir_type_make(out, a->dtype, 0, 2, a->dim, 0, why, size);
    case RC_MATVEC_T:                          /* a [n, m], v [n]: a^T v, [m] */
        if (a->rank != 2 || !is_vector(b, a->dim[0])) {
            snprintf(why, size, "matvec_t needs a matrix [n, m] and a vector [n]");
            return -1;
        }
        return ir_type_make(out, a->dtype, 0, 1, &a->dim[1], 0, why, size);
    case RC_TRANSPOSE:                         /* a [n, m]: [m, n] */
        if (a->rank != 2) {
            snprintf(why, size, "transpose needs a matrix");
            return -1;
        }
        dim[0] = a->dim[1];
        dim[1] = a->dim[0];
        return ir_type_make(out, a->dtype, 0, 2, dim, 0, why, size);
    case RC_COUNT:
        break;
    }
    snprintf(why, size, "unknown recipe");
    return -1;
}

int ir_add_recipe_tensor(ir_module *m, const char *decl, ir_dtype dtype, const ir_recipe *r,
                         src_loc loc)
{
    ir_type type = r->type;
    type.dtype = dtype;
    int t = ir_add_tensor(m, decl, decl, type, loc);
    m->tensors[t].recipe = r;
    return t;
}

const ir_recipe *ir_recipe_of_view(const ir_module *m, const ir_inst *view)
{
    const ir_tensor *t = &m->tensors[view->iattr[0]];
    const ir_type *vt = &view->type, *tt = &t->type;
    const ir_recipe *r = ir_recipe_of(t);
    int64_t row = view->iattr[1], col = view->iattr[2];
    int64_t rows = vt->rank == 2 ? vt->dim[0] : 1, cols = vt->rank >= 1 ? vt->dim[vt->rank - 1] : 1;
    char why[160];
    if (vt->rank == tt->rank && ir_type_numel(vt) == ir_type_numel(tt))
        return r;                              /* the whole tensor */
    if (tt->rank != 2 || vt->rank < 1 || vt->rank > 2)
        return NULL;
    int64_t rg[2] = {row, row + rows};
    if (rows != tt->dim[0] && ir_recipe_make(&r, RC_ROWS, &r, 1, rg, 1, why, sizeof why))
        return NULL;
    rg[0] = col, rg[1] = col + cols;
    if (cols != tt->dim[1] && ir_recipe_make(&r, RC_COLS, &r, 1, rg, 1, why, sizeof why))
        return NULL;
    return r;
}

int ir_recipe_reads(const ir_recipe *r, const char *name)
{
    if (r->op == RC_LOAD)
        return r->name == name || !strcmp(r->name, name);
    for (int k = 0; k < r->nsrc; k++)
        if (ir_recipe_reads(r->src[k], name))
            return 1;
    return 0;
}

/* The same recipe: operations, ranges, leaf names and shapes (storage types aside). */
static int recipe_equal(const ir_recipe *a, const ir_recipe *b)
{
    if (a == b)
        return 1;
    int same = a->op == b->op && a->nsrc == b->nsrc && a->nrange == b->nrange &&
               a->type.rank == b->type.rank;
    for (int k = 0; same && k < a->type.rank; k++)
        same = a->type.dim[k] == b->type.dim[k];
    for (int k = 0; same && k < 2 * a->nrange; k++)
        same = a->range[k] == b->range[k];
    if (same && a->op == RC_LOAD)
        same = !strcmp(a->name, b->name);
    for (int k = 0; same && k < a->nsrc; k++)
        same = recipe_equal(a->src[k], b->src[k]);
    return same;
}

int ir_recipe_contains(const ir_recipe *r, const ir_recipe *sub)
{
    if (recipe_equal(r, sub))
        return 1;
    for (int k = 0; k < r->nsrc; k++)
        if (ir_recipe_contains(r->src[k], sub))
            return 1;
    return 0;
}

const ir_recipe *ir_recipe_view_leaf(const ir_recipe *r)
{
    while (r->op == RC_ROWS || r->op == RC_COLS || r->op == RC_TRANSPOSE)
        r = r->src[0];
    return r->op == RC_LOAD ? r : NULL;
}
