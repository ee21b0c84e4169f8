/* sema_weights.c - weight declarations: `weights { ... }` bodies.
 *
 * Each declared name becomes a weight array over the indices of its enclosing loops (0-d for
 * a plain weight); each entry whose condition holds becomes a module tensor, with its
 * checkpoint name expanded from the template ("model.layers.{l}.x"). A checkpoint tensor may
 * be bound as it is once.
 *
 * A weight may also be bound to a view of what the checkpoint stores: a slice of a weight
 * declared before it (`wq [d, d] = c_attn[l][:, 0:d]`), a tensor stored transposed
 * (`wo [d, d] = transpose("...c_proj.weight")`), or the transpose of a slice. Such a weight
 * is a tensor with a recipe (ir/recipe.c: cols, rows, transpose over a load), which the
 * packer evaluates, so the blob holds the weight in the spec's shape; the stored tensor it
 * views is packed only if the forward pass reads it too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sema_internal.h"


/* Appends text to a tensor name being expanded; 0 when it would pass KILN_MAX_TENSOR_NAME
 * (diagnosed: a name is never cut short). */
static int name_put(char *out, size_t *n, const char *text, size_t len, const char *tmpl,
                    src_loc loc)
{
    if (*n + len > KILN_MAX_TENSOR_NAME) {
        diag_error(loc, "the tensor name \"%.40s...\" expands to more than %d bytes", tmpl,
                   KILN_MAX_TENSOR_NAME);
        return 0;
    }
    memcpy(out + *n, text, len);
    *n += len;
    return 1;
}

/* Expands "model.layers.{l}.x" (tmpl, written at loc) with the values of the names in
 * braces. */
static const char *expand_template(scope *sc, const char *tmpl, src_loc loc)
{
    char out[KILN_MAX_TENSOR_NAME + 1];
    size_t n = 0;
    for (const char *p = tmpl; *p; p++) {
        if (*p != '{') {
            if (!name_put(out, &n, p, 1, tmpl, loc))
                return NULL;
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end || end == p + 1) {
            diag_error(loc, "unterminated or empty '{' in the tensor name \"%s\"", tmpl);
            return NULL;
        }
        /* a name longer than an identifier can be names nothing */
        size_t len = (size_t)(end - p - 1);
        const char *name = base_intern(p + 1, len);
        binding *b = len <= KILN_MAX_IDENT ? scope_find(sc, name) : NULL;
        if (b)
            b->read = 1;   /* a parameter named in a tensor name is read */
        if (!b || (b->val.kind != V_INT && b->val.kind != V_STR)) {
            diag_error(loc, "'{%.*s}' in the tensor name is not a loop index or parameter",
                       len > 64 ? 64 : (int)len, name);
            return NULL;
        }
        char num[24];
        const char *val = num;
        if (b->val.kind == V_INT)
            snprintf(num, sizeof num, "%lld", (long long)b->val.i);
        else
            val = b->val.s;
        if (!name_put(out, &n, val, strlen(val), tmpl, loc))
            return NULL;
        p = end;
    }
    out[n] = 0;
    return base_intern(out, n);
}

static wdecl *find_wdecl(const char *name)
{
    for (int i = 0; i < S.nwdecls; i++)
        if (strcmp(S.wdecls[i]->name, name) == 0)
            return S.wdecls[i];
    return NULL;
}

static const char view_sources[] =
    "a weight is bound to a tensor name (\"...\"), a slice of a weight declared before it "
    "(w[l][:, 0:dim]), or transpose() of either";

/* The recipe of a slice of a weight declared before (c_attn[l][:, 0:dim]): rows and columns
 * of its tensor; bounds are checked against that weight's shape. NULL after reporting. */
static const ir_recipe *slice_of_weight(scope *sc, ast_node *src)
{
    if (src->kind == AST_STRING || (src->kind == AST_INDEX && src->a->kind == AST_STRING)) {
        diag_error(src->loc, "a tensor name is bound whole, or transposed; to bind a slice, "
                   "declare the stored tensor as a weight of its shape and slice that weight "
                   "(w[l][:, 0:dim])");
        return NULL;
    }
    if (src->kind != AST_INDEX && src->kind != AST_NAME) {
        diag_error(src->loc, "%s", view_sources);
        return NULL;
    }
    sval v = eval(sc, src);
    if (v.kind == V_ERR)
        return NULL;
    if (v.kind == V_WARRAY) {
        diag_error(src->loc, "'%s' is an array of weights: index it (e.g. %s[l])", v.wd->name,
                   v.wd->name);
        return NULL;
    }
    if (v.kind != V_WVIEW) {
        diag_error(src->loc, "%s, not %s", view_sources, kind_name(v.kind));
        return NULL;
    }
    const ir_tensor *t = &S.m->tensors[v.tensor];
    if (v.vt.rank != t->type.rank) {
        diag_error(src->loc, "a weight may be bound to slices (a:b) of another, not to one row "
                   "or element of it");
        return NULL;
    }
    const ir_recipe *r = ir_recipe_of(t);
    char why[160];
    /* a vector's slice starts at v.col (sema.c index_view), a matrix's at (v.row, v.col) */
    int64_t first[2] = {t->type.rank == 1 ? v.col : v.row, v.col};
    for (int k = 0; k < t->type.rank; k++) {
        int64_t rg[2] = {first[k], first[k] + v.vt.dim[k]};
        if (v.vt.dim[k] != t->type.dim[k] &&
            ir_recipe_make(&r, k ? RC_COLS : RC_ROWS, &r, 1, rg, 1, why, sizeof why))
            DIE("a weight slice the front end checked makes no recipe: %s", why);
    }
    return r;
}

/* The recipe of declaration d bound to a view (d->b): a slice of a weight, transpose() of
 * one or of a tensor name; it must make the declared type `want`. NULL after reporting. */
static const ir_recipe *bound_view(scope *sc, ast_node *d, const ir_type *want)
{
    ast_node *src = d->b;
    int transposed = src->kind == AST_CALL && !strcmp(src->name, "transpose");
    if (src->kind == AST_CALL && !transposed) {
        diag_error(src->loc, "%s; '%s' is not one of those", view_sources, src->name);
        return NULL;
    }
    if (transposed && src->kids.n != 1) {
        diag_error(src->loc, "transpose takes one argument (a tensor name or a slice of a "
                   "weight), given %d", src->kids.n);
        return NULL;
    }
    char a[64], b[64], why[160];
    const ir_recipe *r;
    if (transposed)
        src = src->kids.v[0];
    if (transposed && src->kind == AST_STRING) {
        if (want->rank != 2) {
            diag_error(d->b->loc, "transpose needs a matrix, and '%s' is declared %s", d->name,
                       ir_shape_str(want, a, sizeof a));
            return NULL;
        }
        const char *name = expand_template(sc, src->str, src->loc);
        if (!name)
            return NULL;
        ir_type stored = *want;              /* the checkpoint holds [in, out] */
        stored.dim[0] = want->dim[1];
        stored.dim[1] = want->dim[0];
        r = ir_recipe_load(name, stored, d->loc);
    } else if (!(r = slice_of_weight(sc, src))) {
        return NULL;
    }
    if (transposed && r->type.rank != 2) {
        diag_error(d->b->loc, "transpose needs a matrix, and this is a vector %s",
                   ir_shape_str(&r->type, a, sizeof a));
        return NULL;
    }
    if (transposed && ir_recipe_make(&r, RC_TRANSPOSE, &r, 1, NULL, 0, why, sizeof why))
        DIE("a transpose the front end checked makes no recipe: %s", why);
    int same = r->type.rank == want->rank;
    for (int k = 0; same && k < want->rank; k++)
        same = r->type.dim[k] == want->dim[k];
    if (!same) {
        diag_error(d->b->loc, "weight '%s' is declared %s, but its binding makes %s", d->name,
                   ir_shape_str(want, a, sizeof a), ir_shape_str(&r->type, b, sizeof b));
        return NULL;
    }
    if (r->depth > KILN_MAX_VIEW_DEPTH) {   /* each view adds at most 3: never past 32 */
        diag_error(d->b->loc, "weight '%s' is a view of a view ... %d deep; the limit is %d",
                   d->name, r->depth, KILN_MAX_VIEW_DEPTH);
        return NULL;
    }
    return r;
}

static int same_tensor_name(int id, const void *name)
{
    return strcmp(S.m->tensors[id].name, name) == 0;
}

static void weight_decl(scope *sc, ast_node *d, const wctx *w, int present)
{
    wdecl *wd = find_wdecl(d->name);
    if (!wd) {
        if (scope_find_local(S.model, d->name)) {
            diag_error(d->loc, "'%s' is already defined in this model", d->name);
            return;
        }
        wd = sema_alloc(sizeof *wd);
        wd->name = d->name;
        wd->decl = d;
        wd->ndim = w->nr;
        /* checked arithmetic: four 0..65536 loops make 2^64 entries, which wraps to 0 */
        int64_t total = 1, span;
        int too_many = 0;
        for (int k = 0; k < w->nr; k++) {
            wd->dim_name[k] = w->ranges[k]->name;
            wd->lo[k] = w->lo[k];
            wd->hi[k] = w->hi[k];
            if (__builtin_sub_overflow(w->hi[k], w->lo[k], &span) ||
                __builtin_mul_overflow(total, span, &total) || total > MAX_ITERATIONS)
                too_many = 1;
            if (too_many)
                break;
        }
        if (over_limit(d, too_many, "a weight array has more than " KILN_STR(KILN_MAX_ITERATIONS) " entries"))
            return;
        wd->nentries = total;
        wd->entries = sema_alloc(sizeof(int) * (size_t)(total ? total : 1));
        for (int64_t i = 0; i < total; i++)
            wd->entries[i] = -2;   /* -2: not visited, -1: condition false */
        S.wdecls = realloc(S.wdecls, sizeof *S.wdecls * (size_t)(S.nwdecls + 1));
        if (!S.wdecls)
            DIE("out of memory");
        S.wdecls[S.nwdecls++] = wd;
        sval v = {.kind = V_WARRAY, .wd = wd};
        scope_set(S.model, d->name, v);
    } else if (wd->decl != d) {
        diag_error(d->loc, "weight '%s' is declared twice", d->name);
        diag_note(wd->decl->loc, "first declared here");
        return;
    }
    int64_t flat = warray_entry(d, wd, w->cur);
    if (flat < 0)
        return;
    wd->entries[flat] = -1;
    if (!present)
        return;
    if (d->kids.n < 1 || d->kids.n > 2) {
        diag_error(d->loc, "weight '%s' needs 1 or 2 dimensions", d->name);
        return;
    }
    int64_t dim[2];
    for (int k = 0; k < d->kids.n; k++) {
        sval v = eval(sc, d->kids.v[k]);
        if (!expect_int(d->kids.v[k], &v, "a weight dimension", &dim[k]))
            return;
        if (dim[k] <= 0) {
            diag_error(d->kids.v[k]->loc, "weight dimension must be positive, got %lld",
                       (long long)dim[k]);
            return;
        }
    }
    ir_type t;
    char why[128];
    if (ir_type_make(&t, DT_F32, 0, d->kids.n, dim, 0, why, sizeof why) != 0) {
        diag_error(d->loc, "weight '%s': %s", d->name, why);
        return;
    }
    if (over_limit(d, S.m->ntensors >= MAX_TENSORS, "the model declares more than "
                                                    KILN_STR(KILN_MAX_WEIGHTS) " weight tensors"))
        return;
    char decl[KILN_MAX_IDENT + KILN_MAX_WEIGHT_LOOPS * 24 + 4];   /* name[i,j,k,l] */
    size_t n = (size_t)snprintf(decl, sizeof decl, "%s", d->name);
    for (int k = 0; k < w->nr && n < sizeof decl; k++)
        n += (size_t)snprintf(decl + n, sizeof decl - n, "%s%lld", k ? "," : "[",
                              (long long)w->cur[k]);
    if (w->nr && n < sizeof decl)
        snprintf(decl + n, sizeof decl - n, "]");
    if (d->b) {                /* a view: a recipe tensor named by its declaration */
        const ir_recipe *r = bound_view(sc, d, &t);
        if (r)
            wd->entries[flat] = ir_add_recipe_tensor(S.m, base_intern(decl, strlen(decl)),
                                                     DT_F32, r, d->loc);
        return;
    }
    const char *name = expand_template(sc, d->str, d->loc);
    if (!name)
        return;
    int *slot = hash_slot(S.tensor_hash, hash_string(name), same_tensor_name, name);
    if (*slot) {
        const ir_tensor *first = &S.m->tensors[*slot - 1];
        diag_error(d->loc, "checkpoint tensor \"%s\" is bound twice", name);
        diag_note(first->loc, "first bound here (as %s)", first->decl);
        return;
    }
    wd->entries[flat] = ir_add_tensor(S.m, name, base_intern(decl, strlen(decl)), t, d->loc);
    *slot = wd->entries[flat] + 1;
}


/* The `if` condition of a declaration or loop (absent: true) into *present; 0 on error. */
static int weight_condition(scope *sc, ast_node *cond, int *present)
{
    *present = 1;
    if (!cond)
        return 1;
    sval c = eval(sc, cond);
    if (c.kind != V_INT) {
        if (c.kind != V_ERR)
            diag_error(cond->loc, "a weight condition must be known at compile time");
        return 0;
    }
    *present = c.i != 0;
    return 1;
}

static void weights_for(scope *sc, ast_node *f, wctx *w, int k)
{
    if (k == f->ranges.n) {
        int present;
        if (!weight_condition(sc, f->a, &present))
            return;
        if (present)
            weights_items(sc, f->b, w);
        else {
            /* record the declarations as absent at these indices */
            for (int i = 0; i < f->b->kids.n; i++)
                if (f->b->kids.v[i]->kind == AST_WEIGHT_DECL)
                    weight_decl(sc, f->b->kids.v[i], w, 0);
        }
        return;
    }
    ast_node *r = f->ranges.v[k];
    sval lo = eval(sc, r->a), hi = eval(sc, r->b);
    int64_t a, b;
    if (!expect_int(r->a, &lo, "a range bound", &a) || !expect_int(r->b, &hi, "a range bound", &b))
        return;
    if (w->nr >= KILN_MAX_WEIGHT_LOOPS) {
        diag_error(r->loc, "weights nest at most %d loops deep", KILN_MAX_WEIGHT_LOOPS);
        return;
    }
    if (b <= a) {
        diag_error(r->loc, "empty range %lld..%lld", (long long)a, (long long)b);
        return;
    }
    int slot = w->nr++;
    w->ranges[slot] = r;
    w->lo[slot] = a;
    w->hi[slot] = b;
    for (int64_t i = a; i < b && !S.stopped; i++) {
        if (over_limit(r, ++S.iterations > MAX_ITERATIONS,
                       "weight loops run more than " KILN_STR(KILN_MAX_ITERATIONS) " iterations"))
            break;
        w->cur[slot] = i;
        scope_set(sc, r->name, mk_int(i));
        weights_for(sc, f, w, k + 1);
    }
    w->nr--;
}

void weights_items(scope *sc, ast_node *body, wctx *w)
{
    for (int i = 0; i < body->kids.n; i++) {
        ast_node *it = body->kids.v[i];
        if (it->kind == AST_WEIGHT_FOR) {
            weights_for(sc, it, w, 0);
            continue;
        }
        int present;
        if (weight_condition(sc, it->a, &present))
            weight_decl(sc, it, w, present);
    }
}
