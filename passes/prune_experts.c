/* prune_experts.c - expert pruning: experts that are (almost) never routed to are removed,
 * from an explicit keep-list (--keep-experts=L:E,E;L:E) or a routing profile written by a
 * built program's --profile-routing (--prune-experts=FILE with --min-freq X or
 * --expert-budget P).
 *
 * requires: verified IR, widened; runs only when passes_opts asks for it
 * preserves: every value for the tokens whose routing selects kept experts only; a dropped
 *            expert is never selected, as if its router logit were -infinity: its guard
 *            region and its accum_if are gone, the router's chain (the linear over a weight
 *            whose rows are the experts, and every elementwise, topk or softmax value
 *            derived from it) has only the kept experts on its expert axis, extract indices
 *            are renumbered, and count / sum / amax / topk range over the kept experts.
 *            Experts are named by the spec's numbers (the guards' scope e=), so a dump of a
 *            pruned model prunes further in the same terms; a dropped expert's routing
 *            counter goes with it (its statistic stays in the table, never counted).
 *            The router weight becomes rows(router, kept rows); an expert weight that is a
 *            view into a shared tensor (DSMoE's rows of w_gate) leaves the tensor, which
 *            becomes rows(...) or cols(...) of the ranges still viewed, the views re-offset;
 *            a tensor nothing views any more is dropped by dce.
 * refuses: (naming the layer) a chain value read by anything else (mean, a linear, a
 *          vector not derived from the router), a dropped expert's value read outside its
 *          region, keeping fewer experts than the router selects.
 * Every decision is a pass_note: the experts dropped per layer and the bytes saved.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

typedef struct router {
    int root;                  /* the linear giving one logit per expert */
    int view;                  /* its weight view [experts, in] */
    int64_t n;                 /* experts */
    int64_t *name;             /* index on the axis -> the spec's expert number (e=) */
    int64_t span;              /* the largest number + 1: a profile's expert count */
    int layer;                 /* l= of its scope */
    int64_t need;              /* the fewest experts it can keep: 1, or topk's k */
    const char *unsound;       /* why its chain cannot shrink, or NULL */
    char *keep;                /* n flags */
    int *index;                /* old expert -> new index, -1 dropped */
    int nkept;
    int64_t saved;             /* bytes the blob loses */
} router;

typedef struct pruner {
    const ir_module *m;
    ir_uses uses;
    router *r;
    int nr;
    int *chain;                /* per value: its router when on the expert axis, else -1 */
    int *removed_by;           /* per instruction: the router that removed it, else -1 */
    char *skip_accum;          /* accum_if of a dropped expert: replaced by its sum so far */
    char *dead_view;           /* weight view only removed instructions read */
    int *view_tensor;          /* per view: its tensor in the new module (-1: as renamed) */
    int64_t *view_row, *view_col;
    char why[256];
} pruner;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        DIE("out of memory");
    return p;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln: error: prune-experts: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

static int on_axis(const ir_type *t, int64_t n)
{
    return t->tok && t->rank == 1 && !t->seq && t->dim[0] == n;
}

static int64_t storage_bytes(ir_dtype dt, int64_t n)
{
    switch (dt) {
    case DT_F16: case DT_BF16: return 2 * n;
    case DT_Q8_0: return n / 32 * 34;
    case DT_Q4_0: return n / 32 * 18;
    default: return 4 * n;
    }
}

static int64_t tensor_bytes(const ir_type *t) { return storage_bytes(t->dtype, ir_type_numel(t)); }

/* ---------------------------------------------------------------- finding the routers */

/* From v, the mask or gate an expert's guard extracts from, back to the linear that makes
 * one logit per expert: -1 if the chain has another op. */
static int trace_root(const ir_module *m, int v, int64_t n)
{
    for (;;) {
        const ir_inst *in = &m->insts[v];
        if (in->op == IR_linear)
            return m->insts[in->args[1]].op == IR_weight ? v : -1;
        if (!(ir_ops[in->op].flags & OPF_ELEMWISE) && in->op != IR_topk && in->op != IR_softmax)
            return -1;
        int next = -1;
        for (int k = 0; k < in->nargs && next < 0; k++)
            if (on_axis(&m->insts[in->args[k]].type, n))
                next = in->args[k];
        if (next < 0)
            return -1;
        v = next;
    }
}

static router *new_router(pruner *p, int root, int64_t n);

static void find_routers(pruner *p)
{
    const ir_module *m = p->m;
    p->r = xcalloc((size_t)m->ninsts, sizeof *p->r);
    for (int i = 0; i < m->ninsts; i++) {
        int g = m->insts[i].guard;
        if (g < 0 || m->insts[g].op != IR_extract)
            continue;
        const ir_type *mask = &m->insts[m->insts[g].args[0]].type;
        if (mask->rank != 1 || !mask->tok)
            continue;
        int root = trace_root(m, m->insts[g].args[0], mask->dim[0]);
        if (root < 0)
            continue;
        router *r = NULL;
        for (int k = 0; k < p->nr; k++)
            if (p->r[k].root == root)
                r = &p->r[k];
        if (!r)
            r = new_router(p, root, mask->dim[0]);
        /* a dump of a pruned model keeps the spec's numbers in the scopes */
        long e = ir_scope_index(m->insts[g].scope, "e");
        int64_t at = m->insts[g].iattr[0];
        if (e >= 0 && at >= 0 && at < r->n) {
            r->name[at] = e;
            r->span = e + 1 > r->span ? e + 1 : r->span;
        }
    }
}

/* A router found at linear `root`, keeping its n experts until told otherwise. */
static router *new_router(pruner *p, int root, int64_t n)
{
    const ir_module *m = p->m;
    router *r = &p->r[p->nr];
    r->root = root;
    r->view = m->insts[root].args[1];
    r->n = n;
    r->name = xcalloc((size_t)n, sizeof *r->name);
    for (int64_t k = 0; k < n; k++)
        r->name[k] = k;
    r->span = n;
    long l = ir_scope_index(m->insts[root].scope, "l");
    r->layer = l >= 0 ? (int)l : p->nr;
    r->need = 1;
    r->keep = xcalloc((size_t)r->n, 1);
    memset(r->keep, 1, (size_t)r->n);
    r->index = xcalloc((size_t)r->n, sizeof(int));
    r->nkept = (int)r->n;
    p->nr++;
    return r;
}

/* Marks the values on router ri's expert axis and checks every reader can shrink. */
static void trace_chain(pruner *p, int ri)
{
    const ir_module *m = p->m;
    router *r = &p->r[ri];
    p->chain[r->root] = ri;
    for (int i = r->root + 1; i < m->ninsts && !r->unsound; i++) {
        const ir_inst *in = &m->insts[i];
        int reads = 0, others = 0;
        for (int k = 0; k < in->nargs; k++) {
            const ir_type *t = &m->insts[in->args[k]].type;
            if (p->chain[in->args[k]] == ri)
                reads = 1;
            else if (t->rank != 0)
                others = 1;
        }
        if (!reads)
            continue;
        int elem = (ir_ops[in->op].flags & OPF_ELEMWISE) != 0;
        if (((elem && !others) || in->op == IR_softmax || in->op == IR_topk) &&
            on_axis(&in->type, r->n)) {
            p->chain[i] = ri;
            if (in->op == IR_topk && in->iattr[0] > r->need)
                r->need = in->iattr[0];
        } else if (in->op != IR_extract && in->op != IR_count && in->op != IR_sum &&
                   in->op != IR_amax) {
            snprintf(p->why, sizeof p->why, "%%%d (%s) reads the router's expert axis %s", i,
                     ir_ops[in->op].name, elem ? "together with a vector not derived from the "
                     "router" : "and cannot range over the kept experts only");
            r->unsound = base_intern_str(p->why);
        }
    }
}

/* ---------------------------------------------------------------- what to keep */

static router *router_of_layer(pruner *p, long layer)
{
    for (int k = 0; k < p->nr; k++)
        if (p->r[k].layer == layer)
            return &p->r[k];
    return NULL;
}

static void routed_layers(const pruner *p, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < p->nr && n + 16 < size; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s%d", k ? ", " : "", p->r[k].layer);
}

/* The index on r's axis of the spec's expert e, or -1. */
static long index_of(const router *r, long e)
{
    for (int64_t k = 0; k < r->n; k++)
        if (r->name[k] == e)
            return (long)k;
    return -1;
}

/* The spec's numbers of r's experts whose flag is `want` ("0-7", "1, 3, 5") into buf. */
static const char *expert_names(const router *r, const char *flag, int want, char *buf,
                                size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int64_t k = 0; k < r->n && n + 48 < size; k++) {
        if ((flag ? flag[k] != 0 : 1) != want)
            continue;
        int64_t j = k;
        while (j + 1 < r->n && (flag ? flag[j + 1] != 0 : 1) == want &&
               r->name[j + 1] == r->name[j] + 1)
            j++;
        n += (size_t)snprintf(buf + n, size - n, n ? ", %lld" : "%lld", (long long)r->name[k]);
        if (j > k + 1)
            n += (size_t)snprintf(buf + n, size - n, "-%lld", (long long)r->name[j]);
        else if (j == k + 1)
            n += (size_t)snprintf(buf + n, size - n, ", %lld", (long long)r->name[j]);
        k = j;
    }
    return buf;
}

/* --keep-experts=L:E,E;L:E */
static int parse_keep_list(pruner *p, const char *text)
{
    const char *s = text;
    char layers[256];
    routed_layers(p, layers, sizeof layers);
    char *seen = xcalloc((size_t)p->nr, 1);
    int rc = 0;
    while (*s && rc == 0) {
        size_t len = strcspn(s, ";");
        char *end;
        long l = strtol(s, &end, 10);
        router *r = end != s && *end == ':' ? router_of_layer(p, l) : NULL;
        if (end == s || *end != ':' || l < 0)
            rc = fail("--keep-experts: '%.*s' is not LAYER:EXPERT,EXPERT,...", (int)len, s);
        else if (!r)
            rc = fail("--keep-experts: the model has no routed layer %ld (routed layers: %s)", l,
                      *layers ? layers : "none");
        else if (seen[r - p->r]++)
            rc = fail("--keep-experts: layer %ld is named twice", l);
        if (rc)
            break;
        memset(r->keep, 0, (size_t)r->n);
        const char *q = end + 1;
        while (q < s + len && rc == 0) {
            long e = strtol(q, &end, 10), k;
            if (end == q || (end < s + len && *end != ','))
                rc = fail("--keep-experts: '%.*s': expected expert numbers separated by ','",
                          (int)len, s);
            else if ((k = index_of(r, e)) < 0)
                rc = fail("--keep-experts: layer %ld has no expert %ld (its experts: %s)", l, e,
                          expert_names(r, NULL, 1, p->why, sizeof p->why));
            else
                r->keep[k] = 1;
            q = end + (end < s + len);
        }
        s += len + (s[len] == ';');
    }
    free(seen);
    return rc;
}

typedef struct profile_layer {
    int64_t *count;
    int present;
} profile_layer;

/* Reads the profile into counts per router; 0, or -1 after a message naming file and key. */
static int read_profile(pruner *p, const char *path, profile_layer *pl, int64_t *tokens)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        fprintf(stderr, "%s:%d:%d: error: not a routing profile: %s\n", path, err.line,
                err.column, err.text);
        return -1;
    }
    int rc = -1;
    json_t *model = json_object_get(root, "model"), *tok = json_object_get(root, "tokens");
    json_t *layers = json_object_get(root, "layers");
    if (!json_is_object(root))
        diag_file_error(path, "a routing profile is a JSON object");
    else if (model && (!json_is_string(model) || strcmp(json_string_value(model), p->m->name)))
        diag_file_error(path, "'model': the profile is of %s%s%s, the model is '%s'",
                        json_is_string(model) ? "'" : "",
                        json_is_string(model) ? json_string_value(model) : "a non-string",
                        json_is_string(model) ? "'" : "", p->m->name);
    else if (!json_is_integer(tok) || json_integer_value(tok) < 1)
        diag_file_error(path, "'tokens': needs a positive integer (the tokens run)");
    else if (!json_is_array(layers))
        diag_file_error(path, "'layers': needs an array of {\"layer\": L, \"experts\": "
                        "[counts]}");
    else
        rc = 0;
    *tokens = rc ? 0 : json_integer_value(tok);
    for (size_t i = 0; rc == 0 && i < json_array_size(layers); i++) {
        json_t *item = json_array_get(layers, i);
        json_t *l = json_object_get(item, "layer"), *ex = json_object_get(item, "experts");
        router *r = json_is_integer(l) ? router_of_layer(p, (long)json_integer_value(l)) : NULL;
        rc = -1;
        if (!json_is_integer(l) || !json_is_array(ex))
            diag_file_error(path, "'layers[%zu]': needs \"layer\" (an integer) and "
                            "\"experts\" (an array of counts)", i);
        else if (!r)
            diag_file_error(path, "'layers[%zu].layer': the model has no routed layer %lld", i,
                            (long long)json_integer_value(l));
        else if (pl[r - p->r].present)
            diag_file_error(path, "'layers[%zu].layer': layer %d is listed twice", i, r->layer);
        else if ((int64_t)json_array_size(ex) != r->span)
            diag_file_error(path, "'layers[%zu].experts': %zu counts, but layer %d has %lld "
                            "experts", i, json_array_size(ex), r->layer, (long long)r->span);
        else
            rc = 0;
        if (rc)
            break;
        profile_layer *q = &pl[r - p->r];
        q->present = 1;
        q->count = xcalloc((size_t)r->span, sizeof *q->count);
        for (size_t e = 0; rc == 0 && e < json_array_size(ex); e++) {
            json_t *c = json_array_get(ex, e);
            if (json_is_integer(c) && json_integer_value(c) >= 0 &&
                json_integer_value(c) <= *tokens) {
                q->count[e] = json_integer_value(c);
                continue;
            }
            diag_file_error(path, "'layers[%zu].experts[%zu]': needs a count in 0..%lld (the "
                            "tokens)", i, e, (long long)*tokens);
            rc = -1;
        }
    }
    for (int k = 0; rc == 0 && k < p->nr; k++)
        if (!pl[k].present) {
            diag_file_error(path, "'layers': layer %d of the model is routed, but the profile "
                            "has no entry for it", p->r[k].layer);
            rc = -1;
        }
    json_decref(root);
    return rc;
}

/* The experts of r to keep by the profile: at least min_freq of the tokens, or the fewest
 * (most frequent first, the lower index on ties) covering expert_budget of the firings. */
static void choose_from_profile(router *r, const int64_t *by_name, int64_t tokens)
{
    int64_t *count = xcalloc((size_t)r->n, sizeof *count);
    for (int64_t k = 0; k < r->n; k++)
        count[k] = by_name[r->name[k]];
    if (passes_opts.expert_budget <= 0) {
        for (int64_t e = 0; e < r->n; e++)
            r->keep[e] = (double)count[e] >= passes_opts.min_freq * (double)tokens;
        free(count);
        return;
    }
    int64_t total = 0, covered = 0, taken = 0;
    for (int64_t e = 0; e < r->n; e++)
        total += count[e];
    memset(r->keep, 0, (size_t)r->n);
    while (taken < r->n && (taken < 1 || (double)covered < passes_opts.expert_budget * (double)total)) {
        int64_t best = -1;
        for (int64_t e = 0; e < r->n; e++)
            if (!r->keep[e] && (best < 0 || count[e] > count[best]))
                best = e;
        r->keep[best] = 1;
        covered += count[best];
        taken++;
    }
    free(count);
}

static int choose(pruner *p)
{
    if (passes_opts.keep_experts)
        return parse_keep_list(p, passes_opts.keep_experts);
    profile_layer *pl = xcalloc((size_t)p->nr, sizeof *pl);
    int64_t tokens = 0;
    int rc = read_profile(p, passes_opts.prune_profile, pl, &tokens);
    for (int k = 0; rc == 0 && k < p->nr; k++)
        choose_from_profile(&p->r[k], pl[k].count, tokens);
    for (int k = 0; k < p->nr; k++)
        free(pl[k].count);
    free(pl);
    return rc;
}

/* Counts what each router keeps; refuses what cannot be kept soundly. */
static int settle(pruner *p)
{
    for (int k = 0; k < p->nr; k++) {
        router *r = &p->r[k];
        r->nkept = 0;
        for (int64_t e = 0; e < r->n; e++)
            r->index[e] = r->keep[e] ? r->nkept++ : -1;
        if (r->nkept == r->n)
            continue;
        if (r->nkept < r->need)
            return fail("layer %d: keeping %d of %lld experts, but its router selects %lld",
                        r->layer, r->nkept, (long long)r->n, (long long)r->need);
        if (r->unsound)
            return fail("layer %d: cannot drop experts: %s", r->layer, r->unsound);
        for (int j = 0; j < p->nr; j++)
            if (j != k && p->r[j].layer == r->layer)
                return fail("layer %d has two routers; name one expert set per router",
                            r->layer);
    }
    return 0;
}

/* ---------------------------------------------------------------- what goes */

static int dropped_extract(const pruner *p, const ir_inst *in)
{
    if (in->op != IR_extract || p->chain[in->args[0]] < 0)
        return -1;
    const router *r = &p->r[p->chain[in->args[0]]];
    return r->index[in->iattr[0]] < 0 ? p->chain[in->args[0]] : -1;
}

/* removed_by: a dropped expert's extracts and what runs under them; skip_accum: the
 * accum_if adding a dropped expert's term. Anything else reading them: refused. */
static int mark_removed(pruner *p)
{
    const ir_module *m = p->m;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        int by = in->guard >= 0 ? p->removed_by[in->guard] : -1;
        p->removed_by[i] = by >= 0 ? by : dropped_extract(p, in);
        if (p->removed_by[i] >= 0)
            continue;
        if (in->op == IR_stat && p->removed_by[in->args[0]] >= 0 &&
            !strncmp(m->stats[in->iattr[0]].name, "route ", 6)) {
            p->removed_by[i] = p->removed_by[in->args[0]];   /* its counter (route-stats) */
            continue;
        }
        if (in->op == IR_accum_if && p->removed_by[in->args[2]] >= 0 &&
            p->removed_by[in->args[1]] >= 0) {
            p->skip_accum[i] = 1;
            continue;
        }
        for (int k = 0; k < in->nargs; k++)
            if (p->removed_by[in->args[k]] >= 0)
                return fail("layer %d: %%%d (%s) reads %%%d, a value of a dropped expert, "
                            "outside the expert's region", p->r[p->removed_by[in->args[k]]].layer,
                            i, ir_ops[in->op].name, in->args[k]);
    }
    for (int v = 0; v < m->ninsts; v++) {
        if (m->insts[v].op != IR_weight || !ir_use_count(&p->uses, v))
            continue;
        int live = 0;
        for (int u = p->uses.first[v]; u < p->uses.first[v + 1]; u++)
            live |= p->removed_by[p->uses.user[u]] < 0;
        p->dead_view[v] = !live;
    }
    return 0;
}

/* ---------------------------------------------------------------- the tensors */

static int is_router_view(const pruner *p, int v)
{
    for (int k = 0; k < p->nr; k++)
        if (p->r[k].view == v && p->r[k].nkept < p->r[k].n)
            return 1;
    return 0;
}

/* Merged [begin, end) ranges of the flags set in used[0 .. n-1]; their count. */
static int ranges_of(const char *used, int64_t n, int64_t *range)
{
    int nr = 0;
    for (int64_t i = 0; i < n; i++)
        if (used[i] && (i == 0 || !used[i - 1])) {
            range[2 * nr] = i;
            int64_t e = i;
            while (e < n && used[e])
                e++;
            range[2 * nr++ + 1] = e;
        }
    return nr;
}

/* The router's weight becomes its kept rows. */
static int shrink_router(pruner *p, ir_rewriter *rw, router *r)
{
    const ir_inst *v = &p->m->insts[r->view];
    const ir_tensor *t = &p->m->tensors[v->iattr[0]];
    if (v->iattr[2] != 0 || t->type.rank != 2 || v->type.dim[1] != t->type.dim[1])
        return fail("layer %d: the router's weight is a part of the columns of %s", r->layer,
                    t->decl);
    char *used = xcalloc((size_t)t->type.dim[0], 1);
    for (int64_t e = 0; e < r->n; e++)
        used[v->iattr[1] + e] = r->keep[e];
    int64_t *range = xcalloc((size_t)(2 * t->type.dim[0]), sizeof *range);
    int nrange = ranges_of(used, t->type.dim[0], range);
    const ir_recipe *src = ir_recipe_of(t), *rec;
    if (ir_recipe_make(&rec, RC_ROWS, &src, 1, range, nrange, p->why, sizeof p->why) != 0)
        DIE("prune-experts: %s", p->why);
    p->view_tensor[r->view] = ir_add_recipe_tensor(rw->m, t->decl, t->type.dtype, rec, t->loc);
    p->view_row[r->view] = p->view_col[r->view] = 0;
    r->saved -= tensor_bytes(&rw->m->tensors[p->view_tensor[r->view]].type);
    free(used);
    free(range);
    return 0;
}

/* Tensor t lost views to dropped experts: it keeps only the rows (or columns) views still
 * read, when every view takes whole columns (or rows); the views are re-offset. */
static void trim_tensor(pruner *p, ir_rewriter *rw, int t, int owner)
{
    const ir_module *m = p->m;
    const ir_tensor *tt = &m->tensors[t];
    int rank = tt->type.rank, live = 0, by_rows = rank == 2, by_cols = rank == 2;
    int64_t trows = rank == 2 ? tt->type.dim[0] : 1, tcols = tt->type.dim[rank - 1];
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *in = &m->insts[v];
        if (in->op != IR_weight || in->iattr[0] != t || p->removed_by[v] >= 0)
            continue;
        if (p->dead_view[v] || !ir_use_count(&p->uses, v))
            continue;
        int64_t rows = in->type.rank == 2 ? in->type.dim[0] : 1;
        int64_t cols = in->type.rank ? in->type.dim[in->type.rank - 1] : 1;
        by_rows &= in->iattr[2] == 0 && cols == tcols;
        by_cols &= in->iattr[1] == 0 && rows == trows;
        live++;
    }
    if (!live) {
        p->r[owner].saved += tensor_bytes(&tt->type);    /* dce drops it */
        return;
    }
    if (!by_rows && !by_cols) {
        pass_note("prune-experts", "l=%d: %s keeps the parts dropped experts read (its views "
                  "are neither whole rows nor whole columns)", p->r[owner].layer, tt->decl);
        return;
    }
    int axis = by_rows ? 0 : 1;
    int64_t n = tt->type.dim[axis];
    char *used = xcalloc((size_t)n, 1);
    for (int v = 0; v < m->ninsts; v++) {
        const ir_inst *in = &m->insts[v];
        if (in->op != IR_weight || in->iattr[0] != t || p->dead_view[v] ||
            !ir_use_count(&p->uses, v))
            continue;
        int64_t len = axis == 0 ? (in->type.rank == 2 ? in->type.dim[0] : 1)
                                : in->type.dim[in->type.rank - 1];
        memset(used + in->iattr[1 + axis], 1, (size_t)len);
    }
    int64_t *range = xcalloc((size_t)(2 * n), sizeof *range), *offset = xcalloc((size_t)n, sizeof *offset);
    int nrange = ranges_of(used, n, range);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++)
        offset[i] = used[i] ? kept++ : -1;
    if (kept < n) {
        const ir_recipe *src = ir_recipe_of(tt), *rec;
        if (ir_recipe_make(&rec, axis ? RC_COLS : RC_ROWS, &src, 1, range, nrange, p->why,
                           sizeof p->why) != 0)
            DIE("prune-experts: %s", p->why);
        int nt = ir_add_recipe_tensor(rw->m, tt->decl, tt->type.dtype, rec, tt->loc);
        for (int v = 0; v < m->ninsts; v++) {
            const ir_inst *in = &m->insts[v];
            if (in->op != IR_weight || in->iattr[0] != t || p->dead_view[v] ||
                !ir_use_count(&p->uses, v))
                continue;
            p->view_tensor[v] = nt;
            p->view_row[v] = axis == 0 ? offset[in->iattr[1]] : 0;
            p->view_col[v] = axis == 1 ? offset[in->iattr[2]] : 0;
        }
        p->r[owner].saved += tensor_bytes(&tt->type) - tensor_bytes(&rw->m->tensors[nt].type);
    }
    free(used);
    free(range);
    free(offset);
}

/* Which router's experts viewed tensor t through a now dead view, or -1. */
static int tensor_owner(const pruner *p, int t)
{
    for (int v = 0; v < p->m->ninsts; v++) {
        const ir_inst *in = &p->m->insts[v];
        if (in->op == IR_weight && in->iattr[0] == t && p->dead_view[v])
            return p->removed_by[p->uses.user[p->uses.first[v]]];
    }
    return -1;
}

static int shrink_tensors(pruner *p, ir_rewriter *rw)
{
    const ir_module *m = p->m;
    char *router_tensor = xcalloc((size_t)m->ntensors, 1);
    for (int k = 0; k < p->nr; k++) {
        router *r = &p->r[k];
        if (r->nkept == r->n)
            continue;
        router_tensor[m->insts[r->view].iattr[0]] = 1;
        if (shrink_router(p, rw, r) != 0) {
            free(router_tensor);
            return -1;
        }
    }
    for (int t = 0; t < m->ntensors; t++) {
        int owner = tensor_owner(p, t);
        if (owner >= 0 && !router_tensor[t])
            trim_tensor(p, rw, t, owner);
    }
    /* a router tensor nothing else views leaves the blob */
    for (int k = 0; k < p->nr; k++) {
        router *r = &p->r[k];
        if (r->nkept == r->n)
            continue;
        int t = (int)m->insts[r->view].iattr[0], other = 0;
        for (int v = 0; v < m->ninsts; v++)
            other |= m->insts[v].op == IR_weight && m->insts[v].iattr[0] == t && v != r->view &&
                     !p->dead_view[v] && ir_use_count(&p->uses, v) > 0;
        if (!other)
            r->saved += tensor_bytes(&m->tensors[t].type);
    }
    free(router_tensor);
    return 0;
}

/* ---------------------------------------------------------------- the rewrite */

static int reads_chain(const pruner *p, const ir_inst *in)
{
    for (int k = 0; k < in->nargs; k++)
        if (p->chain[in->args[k]] >= 0 && p->r[p->chain[in->args[k]]].nkept < p->r[p->chain[in->args[k]]].n)
            return 1;
    return 0;
}

static ir_module *rebuild(pruner *p)
{
    const ir_module *m = p->m;
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    if (shrink_tensors(p, &rw) != 0) {
        ir_module_free(ir_rw_end(&rw));
        return NULL;
    }
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *old = &m->insts[i];
        if (p->removed_by[i] >= 0 || p->dead_view[i])
            continue;
        if (p->skip_accum[i]) {
            ir_rw_replace(&rw, i, rw.map[old->args[0]]);
            continue;
        }
        ir_inst in = ir_rw_renamed(&rw, i);
        if (p->view_tensor[i] >= 0) {
            in.iattr[0] = p->view_tensor[i];
            in.iattr[1] = p->view_row[i];
            in.iattr[2] = p->view_col[i];
            if (is_router_view(p, i))
                for (int k = 0; k < p->nr; k++)
                    if (p->r[k].view == i)
                        in.type.dim[0] = p->r[k].nkept;
        }
        if (reads_chain(p, old) || (p->chain[i] >= 0 && p->r[p->chain[i]].nkept < p->r[p->chain[i]].n)) {
            if (old->op == IR_extract)
                in.iattr[0] = p->r[p->chain[old->args[0]]].index[old->iattr[0]];
            ir_type args[IR_MAX_ARGS];
            for (int k = 0; k < in.nargs; k++)
                args[k] = rw.m->insts[in.args[k]].type;
            if (ir_infer(rw.m, &in, args, &in.type, p->why, sizeof p->why) != 0)
                DIE("prune-experts: %%%d: %s", i, p->why);
        }
        rw.map[i] = ir_rw_add(&rw, &in);
    }
    return ir_rw_end(&rw);
}

static void note_decisions(const pruner *p)
{
    int64_t total = 0;
    int dropped = 0, layers = 0;
    for (int k = 0; k < p->nr; k++) {
        const router *r = &p->r[k];
        if (r->nkept == r->n) {
            pass_note("prune-experts", "l=%d: keeps all %lld experts", r->layer, (long long)r->n);
            continue;
        }
        char list[512];
        expert_names(r, r->keep, 0, list, sizeof list);
        pass_note("prune-experts", "l=%d: dropped expert%s %s of %lld (kept %d); router %lld -> "
                  "%d rows; %lld bytes saved", r->layer, r->n - r->nkept > 1 ? "s" : "", list,
                  (long long)r->n, r->nkept, (long long)r->n, r->nkept, (long long)r->saved);
        total += r->saved;
        dropped += (int)(r->n - r->nkept);
        layers++;
    }
    pass_note("prune-experts", "dropped %d expert%s in %d layer%s: %lld bytes saved", dropped,
              dropped == 1 ? "" : "s", layers, layers == 1 ? "" : "s", (long long)total);
}

static void pruner_free(pruner *p)
{
    for (int k = 0; k < p->nr; k++)
        free(p->r[k].keep), free(p->r[k].index), free(p->r[k].name);
    free(p->r), free(p->chain), free(p->removed_by), free(p->skip_accum), free(p->dead_view);
    free(p->view_tensor), free(p->view_row), free(p->view_col);
    ir_uses_free(&p->uses);
}

ir_module *pass_prune_experts(ir_module *m)
{
    if (!passes_opts.keep_experts && !passes_opts.prune_profile)
        return m;
    pruner p;
    memset(&p, 0, sizeof p);
    p.m = m;
    size_t n = (size_t)m->ninsts;
    p.chain = xcalloc(n, sizeof(int));
    p.removed_by = xcalloc(n, sizeof(int));
    p.view_tensor = xcalloc(n, sizeof(int));
    for (size_t i = 0; i < n; i++)
        p.chain[i] = p.removed_by[i] = p.view_tensor[i] = -1;
    p.skip_accum = xcalloc(n, 1);
    p.dead_view = xcalloc(n, 1);
    p.view_row = xcalloc(n, sizeof(int64_t));
    p.view_col = xcalloc(n, sizeof(int64_t));
    ir_uses_build(m, &p.uses);
    find_routers(&p);
    for (int k = 0; k < p.nr; k++)
        trace_chain(&p, k);
    ir_module *out = NULL;
    if (!p.nr)
        fail("the model has no routed experts (no guard region extracts from a router)");
    else if (choose(&p) == 0 && settle(&p) == 0 && mark_removed(&p) == 0 &&
             (out = rebuild(&p)) != NULL)
        note_decisions(&p);
    pruner_free(&p);
    return out;
}
