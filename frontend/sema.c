/* sema.c - semantic analysis: from the syntax tree of a spec to the IR of one call over a
 * block of tokens (a spec says what one token computes; every value computed from the
 * tokens gets the token axis T, ir.h).
 *
 * The spec is evaluated like a small program. Everything known at compile time (parameters,
 * loop indices, shapes, `def` functions, `if` conditions, weight-array indices) is computed
 * here; every tensor operation becomes an IR instruction. Layer loops and block calls are
 * unrolled, so the IR is straight-line. Values:
 *   int, float, string        compile-time constants (bool is an int 0/1)
 *   tensor                    an IR value (dtype, static shape)
 *   weight array / view       a declared checkpoint tensor, possibly per layer/expert, and
 *                             views of it (rows, columns); becomes a `weight` instruction
 *                             only when an op reads it
 *   value array               `P[l] = ...`: values kept by compile-time index across
 *                             iterations (UniAttn's shared attention probabilities)
 *   list                      `[a, b, c]`: compile-time numbers or strings, read with
 *                             name[i] and len(name) (per-head rope bases)
 * Data-dependent selection (`sum e in 0..n where act[e]: ...`) emits the body under a guard.
 * Shapes are checked by the op table's typing rules (ir/typing.c) as each op is emitted
 * (emit()); a refusal becomes a caret diagnostic. Sema itself checks only what the IR does
 * not see: kinds of compile-time arguments, names, indices.
 *
 * Scoping is Python-like: `for`, `if` and `sum` do not open scopes; a block call does, and
 * sees its arguments plus the scope it was defined in (the model, or the file).
 * Errors go through diag_error at the offending node; evaluation goes on with an error value
 * so that one run reports several independent mistakes.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../ir/ir.h"
#include "sema_internal.h"

/* ---------------------------------------------------------------- state */

const sval err_val = {.kind = V_ERR};
struct sema_state S;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        DIE("out of memory");
    return p;
}

/* Allocations live until sema_free (scopes, bindings, arrays): track them in one list. */
static void **allocs;
static int nallocs, callocs;

void *sema_alloc(size_t size)
{
    void *p = xcalloc(1, size);
    if (nallocs == callocs) {
        callocs = callocs ? 2 * callocs : 64;
        allocs = realloc(allocs, (size_t)callocs * sizeof *allocs);
        if (!allocs)
            DIE("out of memory");
    }
    allocs[nallocs++] = p;
    return p;
}

static void sema_free(void)
{
    for (int i = 0; i < nallocs; i++)
        free(allocs[i]);
    free(allocs);
    allocs = NULL;
    nallocs = callocs = 0;
}

/* ---------------------------------------------------------------- scopes */

scope *scope_new(scope *parent)
{
    scope *s = sema_alloc(sizeof *s);
    s->parent = parent;
    return s;
}

binding *scope_find_local(scope *s, const char *name)
{
    for (binding *b = s->first; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            return b;
    return NULL;
}

binding *scope_find(scope *s, const char *name)
{
    for (; s; s = s->parent) {
        binding *b = scope_find_local(s, name);
        if (b)
            return b;
    }
    return NULL;
}

void scope_set(scope *s, const char *name, sval v)
{
    binding *b = scope_find_local(s, name);
    if (!b) {
        b = sema_alloc(sizeof *b);
        b->name = name;
        b->next = s->first;
        s->first = b;
    }
    b->val = v;
    b->site = NULL;   /* assign() sets it again for a tensor assignment */
}

/* ---------------------------------------------------------------- helpers */

/* 1 if one more `for` or `sum` fits on the loop stack S.loops; else diagnoses at `at`. */
static int loop_room(ast_node *at)
{
    if (S.nloops < MAX_LOOP_DEPTH)
        return 1;
    diag_error(at->loc, "loops and sums nest more than %d deep", MAX_LOOP_DEPTH);
    return 0;
}

/* Stops evaluation after a limit was hit (reported once). */
int over_limit(ast_node *at, int hit, const char *what)
{
    if (hit && !S.stopped) {
        diag_error(at->loc, "%s; is a parameter such as layers far too large?", what);
        S.stopped = 1;
    }
    return S.stopped;
}

static uint64_t hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

uint64_t hash_string(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Finds the slot of `key` in table t (ids + 1; 0 empty) for which same(id) holds, or the
 * empty slot where it would go. The tables are sized for MAX_INSTS, so they never fill. */
int *hash_slot(int *t, uint64_t key, int (*same)(int id, const void *arg), const void *arg)
{
    size_t mask = (size_t)S.hash_cap - 1;
    for (size_t i = hash_mix(key) & mask;; i = (i + 1) & mask)
        if (!t[i] || same(t[i] - 1, arg))
            return &t[i];
}


const char *kind_name(vkind k)
{
    static const char *names[] = {"an erroneous value", "nothing", "an integer", "a number",
                                  "a string", "a tensor", "a weight array", "a weight",
                                  "a value array", "a block", "a function", "a list"};
    return names[k];
}


static const char *scope_label(void)
{
    if (S.nloops == 0)
        return NULL;
    char buf[MAX_LOOP_DEPTH * (KILN_MAX_IDENT + 24)];   /* every "name=value" fits */
    size_t n = 0;
    for (int i = 0; i < S.nloops && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s=%lld", i ? " " : "",
                              S.loops[i].name, (long long)S.loops[i].value);
    return base_intern(buf, strlen(buf));
}

int emit(ast_node *at, ir_op op, int nargs, const int *args, const ir_inst *proto)
{
    if (S.m->ninsts >= MAX_INSTS && at)
        over_limit(at, 1, "the model unrolls to more than " KILN_STR(KILN_MAX_INSTS) " instructions");
    if (S.stopped)
        return -1;
    ir_inst in = proto ? *proto : ir_inst_make(op, nargs, args);
    in.op = op;
    in.nargs = nargs;
    ir_type types[IR_MAX_ARGS];
    for (int k = 0; k < nargs; k++) {
        in.args[k] = args[k];
        types[k] = S.m->insts[args[k]].type;
    }
    in.guard = (ir_ops[op].flags & OPF_SOURCE) ? -1 : S.guard;
    in.scope = scope_label();
    if (at)
        in.loc = at->loc;
    char why[256];
    ir_type t;
    if (ir_infer(S.m, &in, types, &t, why, sizeof why) != 0) {
        diag_error(at ? at->loc : (src_loc){0}, "%s", why);
        return -1;
    }
    in.type = t;
    return ir_append(S.m, &in);
}

ir_inst attrs_i(int64_t a, int64_t b, int64_t c)
{
    ir_inst in = ir_inst_make(IR_const, 0, NULL);
    in.iattr[0] = a;
    in.iattr[1] = b;
    in.iattr[2] = c;
    return in;
}

static int same_const(int id, const void *arg)
{
    return S.m->insts[id].fattr == *(const double *)arg;
}

/* A scalar constant (one instruction per distinct value). */
static int emit_const(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int *slot = hash_slot(S.const_hash, bits, same_const, &v);
    if (*slot)
        return *slot - 1;
    ir_inst c = ir_inst_make(IR_const, 0, NULL);
    c.fattr = v;
    int id = emit(NULL, IR_const, 0, NULL, &c);
    ir_get(S.m, id)->scope = NULL;
    *slot = id + 1;
    return id;
}

static int same_view(int id, const void *arg)
{
    const ir_inst *in = &S.m->insts[id];
    const sval *v = arg;
    return in->iattr[0] == v->tensor && in->iattr[1] == v->row && in->iattr[2] == v->col &&
           ir_type_equal(&in->type, &v->vt);
}

/* The weight instruction of a view (one per distinct view, shared by all readers). */
static int emit_view(const sval *v)
{
    uint64_t key = (uint64_t)v->tensor * 0x9E3779B97F4A7C15ULL ^ (uint64_t)v->row * 31 ^
                   (uint64_t)v->col * 0x100000001b3ULL ^ (uint64_t)v->vt.rank << 60 ^
                   (uint64_t)v->vt.dim[0] << 40;
    int *slot = hash_slot(S.view_hash, key, same_view, v);
    if (*slot)
        return *slot - 1;
    ir_inst w = attrs_i(v->tensor, v->row, v->col);
    w.type = v->vt;
    w.label = S.m->tensors[v->tensor].decl;
    int id = emit(NULL, IR_weight, 0, NULL, &w);
    if (id < 0)
        DIE("a weight view the front end made is invalid");
    *slot = id + 1;
    ir_get(S.m, id)->scope = NULL;
    return id;
}

/* Turns a value into a tensor operand; constants become scalar `const`s. -1 on error. */
int as_tensor(ast_node *at, const sval *v)
{
    switch (v->kind) {
    case V_TENSOR: return v->id;
    case V_WVIEW: return emit_view(v);
    case V_INT: case V_FLOAT: return emit_const(num(v));
    case V_ERR: return -1;
    case V_WARRAY:
        diag_error(at->loc, "'%s' is an array of weights: index it (e.g. %s[l])", v->wd->name,
                   v->wd->name);
        return -1;
    case V_LIST:
        reject_list(at, v, "a tensor operand");
        return -1;
    default:
        diag_error(at->loc, "expected a tensor, got %s", kind_name(v->kind));
        return -1;
    }
}


int reject_list(ast_node *at, const sval *v, const char *what)
{
    if (v->kind != V_LIST)
        return 0;
    diag_error(at->loc, "%s must be one value, got a list of %d (pick an item: name[i])", what,
               v->list->n);
    return 1;
}

int expect_int(ast_node *at, const sval *v, const char *what, int64_t *out)
{
    if (v->kind == V_INT) {
        *out = v->i;
        return 1;
    }
    if (v->kind == V_FLOAT)
        diag_error(at->loc, "%s must be an integer, got the number %g", what, v->f);
    else if (v->kind == V_LIST)
        reject_list(at, v, what);
    else if (v->kind == V_TENSOR && S.m->insts[v->id].op == IR_rtparam)
        diag_error(at->loc, "%s must be known at compile time; '%s' is a run-time parameter",
                   what, S.m->insts[v->id].label);
    else if (v->kind != V_ERR)
        diag_error(at->loc, "%s must be an integer known at compile time, got %s", what,
                   kind_name(v->kind));
    return 0;
}

/* ---------------------------------------------------------------- expressions */

sval eval(scope *sc, ast_node *e);
static sval call(scope *sc, ast_node *e);
static int exec_stmts(scope *sc, ast_node *stmts, sval *ret);

static sval fold_binary(ast_node *e, int op, sval a, sval b)
{
    if (a.kind == V_STR || b.kind == V_STR) {
        if (a.kind == V_STR && b.kind == V_STR && (op == AST_OP_EQ || op == AST_OP_NE))
            return mk_int((strcmp(a.s, b.s) == 0) == (op == AST_OP_EQ));
        diag_error(e->loc, "operator '%s' does not apply to strings", ast_op_text(op));
        return err_val;
    }
    if (a.kind == V_INT && b.kind == V_INT) {
        int64_t x = a.i, y = b.i, r;
        int overflow = 0;
        switch (op) {
        case AST_OP_ADD: overflow = __builtin_add_overflow(x, y, &r); break;
        case AST_OP_SUB: overflow = __builtin_sub_overflow(x, y, &r); break;
        case AST_OP_MUL: overflow = __builtin_mul_overflow(x, y, &r); break;
        case AST_OP_DIV:
        case AST_OP_MOD:
            if (y == 0) {
                diag_error(e->loc, "division by zero");
                return err_val;
            }
            overflow = x == INT64_MIN && y == -1;
            r = overflow ? 0 : op == AST_OP_DIV ? x / y : x % y;
            break;
        default: goto compare;
        }
        if (overflow) {
            diag_error(e->loc, "integer overflow in %lld %s %lld", (long long)x,
                       ast_op_text(op), (long long)y);
            return err_val;
        }
        return mk_int(r);
    }
compare:;
    double x = num(&a), y = num(&b);
    switch (op) {
    case AST_OP_ADD: return mk_float(x + y);
    case AST_OP_SUB: return mk_float(x - y);
    case AST_OP_MUL: return mk_float(x * y);
    case AST_OP_DIV: return mk_float(x / y);
    case AST_OP_MOD: return mk_float(fmod(x, y));
    case AST_OP_LT: return mk_int(x < y);
    case AST_OP_GT: return mk_int(x > y);
    case AST_OP_LE: return mk_int(x <= y);
    case AST_OP_GE: return mk_int(x >= y);
    case AST_OP_EQ: return mk_int(x == y);
    case AST_OP_NE: return mk_int(x != y);
    case AST_OP_AND: return mk_int(x != 0 && y != 0);
    case AST_OP_OR: return mk_int(x != 0 || y != 0);
    }
    return err_val;
}

sval op_value(ast_node *at, ir_op op, int n, const sval *args, const ir_inst *attrs)
{
    int ids[IR_MAX_ARGS];
    for (int k = 0; k < n; k++) {
        ids[k] = as_tensor(at, &args[k]);
        if (ids[k] < 0)
            return err_val;
    }
    int id = emit(at, op, n, ids, attrs);
    return id < 0 ? err_val : mk_tensor(id);
}

sval elementwise(ast_node *at, ir_op op, int n, const sval *args)
{
    return op_value(at, op, n, args, NULL);
}

static sval binary(ast_node *e, int op, sval a, sval b)
{
    if (a.kind == V_ERR || b.kind == V_ERR)
        return err_val;
    if (a.kind == V_LIST || b.kind == V_LIST) {
        diag_error(e->loc, "operator '%s' does not apply to a list (pick an item: name[i])",
                   ast_op_text(op));
        return err_val;
    }
    if ((is_num(&a) || a.kind == V_STR) && (is_num(&b) || b.kind == V_STR))
        return fold_binary(e, op, a, b);
    static const ir_op ops[] = {
        [AST_OP_ADD] = IR_add, [AST_OP_SUB] = IR_sub, [AST_OP_MUL] = IR_mul,
        [AST_OP_DIV] = IR_div, [AST_OP_LT] = IR_lt,   [AST_OP_GT] = IR_gt,
        [AST_OP_LE] = IR_le,   [AST_OP_GE] = IR_ge,   [AST_OP_EQ] = IR_eq,
        [AST_OP_NE] = IR_ne,   [AST_OP_AND] = IR_and, [AST_OP_OR] = IR_or,
    };
    if (op == AST_OP_MOD) {
        diag_error(e->loc, "operator '%%' applies to compile-time numbers only");
        return err_val;
    }
    /* a known side of && / || decides or drops out: `true && t` is t, `false || t` is t */
    if (op == AST_OP_AND || op == AST_OP_OR) {
        const sval *k = a.kind == V_INT ? &a : b.kind == V_INT ? &b : NULL;
        const sval *t = k == &a ? &b : &a;
        if (k && t->kind == V_TENSOR && tensor_type(t->id)->dtype == DT_BOOL)
            return (k->i != 0) == (op == AST_OP_AND) ? *t : mk_int(op == AST_OP_OR);
    }
    sval args[2] = {a, b};
    return elementwise(e, ops[op], 2, args);
}

static sval warray_view(ast_node *at, wdecl *wd, const int64_t *idx);

static sval lookup(scope *sc, ast_node *e)
{
    binding *b = scope_find(sc, e->name);
    if (!b) {
        diag_error(e->loc, "unknown name '%s'", e->name);
        return err_val;
    }
    b->read = 1;
    if (b->site)
        b->site->mark = 2;   /* this assignment's value is used */
    if (b->val.kind == V_WARRAY && b->val.wd->ndim == 0)   /* a plain weight */
        return warray_view(e, b->val.wd, b->val.idx);
    return b->val;
}

/* The index tuple of a weight array as a flat entry number, or -1 (diagnosed). */
int64_t warray_entry(ast_node *at, const wdecl *wd, const int64_t *idx)
{
    int64_t flat = 0;
    for (int k = 0; k < wd->ndim; k++) {
        if (idx[k] < wd->lo[k] || idx[k] >= wd->hi[k]) {
            diag_error(at->loc, "index %lld of '%s' is out of range %lld..%lld",
                       (long long)idx[k], wd->name, (long long)wd->lo[k], (long long)wd->hi[k]);
            return -1;
        }
        flat = flat * (wd->hi[k] - wd->lo[k]) + (idx[k] - wd->lo[k]);
    }
    return flat;
}

/* A whole-tensor view of array entry idx. */
static sval warray_view(ast_node *at, wdecl *wd, const int64_t *idx)
{
    int64_t flat = warray_entry(at, wd, idx);
    if (flat < 0)
        return err_val;
    int t = wd->entries[flat];
    if (t < 0) {
        char buf[KILN_MAX_WEIGHT_LOOPS * 24] = "";
        size_t n = 0;
        for (int k = 0; k < wd->ndim && n < sizeof buf; k++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", k ? ", " : "",
                                  (long long)idx[k]);
        diag_error(at->loc, "weight '%s%s%s%s' is not declared: its condition is false there",
                   wd->name, wd->ndim ? "[" : "", buf, wd->ndim ? "]" : "");
        diag_note(wd->decl->loc, "'%s' is declared here", wd->name);
        return err_val;
    }
    const ir_type *tt = &S.m->tensors[t].type;
    sval v = {.kind = V_WVIEW, .wd = wd, .tensor = t, .vt = *tt};
    return v;
}

/* Slice bounds [lo, hi) of dimension size n from an AST_SLICE. */
/* Slice bounds [lo, hi) of dimension size n from an AST_SLICE; check_range: refuse bounds
 * outside the dimension here (weight views; a tensor's slice is checked by its op's rule). */
static int slice_bounds(scope *sc, ast_node *s, int64_t n, int64_t *lo, int64_t *hi,
                        int check_range)
{
    *lo = 0;
    *hi = n;
    if (s->a) {
        sval v = eval(sc, s->a);
        if (!expect_int(s->a, &v, "a slice bound", lo))
            return 0;
    }
    if (s->b) {
        sval v = eval(sc, s->b);
        if (!expect_int(s->b, &v, "a slice bound", hi))
            return 0;
    }
    if (check_range && (*lo < 0 || *hi > n || *lo >= *hi)) {
        diag_error(s->loc, "slice %lld:%lld is out of range for a dimension of %lld",
                   (long long)*lo, (long long)*hi, (long long)n);
        return 0;
    }
    return 1;
}

/* Indexing a weight view: an integer picks a row, slices narrow rows or columns. */
static sval index_view(scope *sc, ast_node *e, sval v, ast_node **items, int nitems)
{
    if (nitems == 1 && items[0]->kind != AST_SLICE) {
        sval iv = eval(sc, items[0]);
        if (iv.kind == V_TENSOR) {   /* a run-time index: embedding lookup */
            if (tensor_type(iv.id)->dtype != DT_I32 || v.vt.rank != 2) {
                diag_error(e->loc, "a weight can be indexed at run time only by the token or "
                                   "the position");
                return err_val;
            }
            int args[2] = {emit_view(&v), iv.id};
            int id = emit(e, IR_embed, 2, args, NULL);
            return id < 0 ? err_val : mk_tensor(id);
        }
        int64_t r;
        if (!expect_int(items[0], &iv, "an index", &r))
            return err_val;
        if (v.vt.rank == 0) {
            diag_error(e->loc, "a scalar cannot be indexed");
            return err_val;
        }
        if (r < 0 || r >= v.vt.dim[0]) {
            diag_error(items[0]->loc, "index %lld is out of range 0..%lld", (long long)r,
                       (long long)v.vt.dim[0]);
            return err_val;
        }
        if (v.vt.rank == 1) {          /* one element of a vector */
            v.col += r;
            v.vt.rank = 0;
            return v;
        }
        v.row += r;                    /* one row of a matrix */
        v.vt.rank = 1;
        v.vt.dim[0] = v.vt.dim[1];
        return v;
    }
    if (nitems > v.vt.rank) {
        diag_error(e->loc, "too many indices for a weight of %d dims", v.vt.rank);
        return err_val;
    }
    for (int k = 0; k < nitems; k++) {
        if (items[k]->kind != AST_SLICE) {
            diag_error(items[k]->loc, "use a slice (a:b) here, or a single row index");
            return err_val;
        }
        int64_t lo, hi;
        if (!slice_bounds(sc, items[k], v.vt.dim[k], &lo, &hi, 1))
            return err_val;
        if (k == 0 && v.vt.rank == 2)
            v.row += lo;
        else
            v.col += lo;
        v.vt.dim[k] = hi - lo;
    }
    return v;
}

/* Indexing a tensor: one index (extract) or one slice; the op's rule checks the rest. */
static sval index_tensor(scope *sc, ast_node *e, sval v, ast_node **items, int nitems)
{
    if (nitems != 1) {
        diag_error(e->loc, "a tensor takes one index or slice, given %d", nitems);
        return err_val;
    }
    if (items[0]->kind == AST_SLICE) {
        int64_t lo, hi;
        const ir_type *t = tensor_type(v.id);
        if (!slice_bounds(sc, items[0], t->rank ? t->dim[0] : 1, &lo, &hi, 0))
            return err_val;
        ir_inst a = attrs_i(lo, hi - lo, 0);
        int id = emit(items[0], IR_slice, 1, &v.id, &a);
        return id < 0 ? err_val : mk_tensor(id);
    }
    sval iv = eval(sc, items[0]);
    int64_t i;
    if (!expect_int(items[0], &iv, "a tensor index", &i))
        return err_val;
    ir_inst a = attrs_i(i, 0, 0);
    int id = emit(items[0], IR_extract, 1, &v.id, &a);
    return id < 0 ? err_val : mk_tensor(id);
}

static sval index_expr(scope *sc, ast_node *e)
{
    sval base = eval(sc, e->a);
    ast_node **items = e->kids.v;
    int n = e->kids.n;
    switch (base.kind) {
    case V_ERR:
        return err_val;
    case V_WARRAY: {
        wdecl *wd = base.wd;
        while (n > 0 && base.nidx < wd->ndim) {
            if (items[0]->kind == AST_SLICE) {
                diag_error(items[0]->loc, "'%s' needs an index for '%s' here, not a slice",
                           wd->name, wd->dim_name[base.nidx]);
                return err_val;
            }
            sval iv = eval(sc, items[0]);
            if (!expect_int(items[0], &iv, "a weight-array index", &base.idx[base.nidx]))
                return err_val;
            base.nidx++;
            items++;
            n--;
        }
        if (base.nidx < wd->ndim)
            return base;
        sval v = warray_view(e, wd, base.idx);
        return n == 0 || v.kind == V_ERR ? v : index_view(sc, e, v, items, n);
    }
    case V_WVIEW:
        return index_view(sc, e, base, items, n);
    case V_TENSOR:
        return index_tensor(sc, e, base, items, n);
    case V_LIST: {
        const char *name = e->a->kind == AST_NAME ? e->a->name : "the list";
        if (n != 1 || items[0]->kind == AST_SLICE) {
            diag_error(e->loc, "a list takes one index, an integer known at compile time");
            return err_val;
        }
        sval iv = eval(sc, items[0]);
        int64_t k;
        if (iv.kind == V_TENSOR) {
            diag_error(items[0]->loc, "a list index must be known at compile time");
            return err_val;
        }
        if (!expect_int(items[0], &iv, "a list index", &k))
            return err_val;
        if (k < 0 || k >= base.list->n) {
            diag_error(items[0]->loc, "index %lld is out of range for '%s', a list of %d "
                       "(0..%d)", (long long)k, name, base.list->n, base.list->n - 1);
            return err_val;
        }
        return base.list->items[k];
    }
    case V_VARRAY: {
        int64_t k;
        sval iv = n == 1 ? eval(sc, items[0]) : err_val;
        if (!expect_int(e, &iv, "a value-array index", &k))
            return err_val;
        for (int i = 0; i < base.va->n; i++)
            if (base.va->keys[i] == k)
                return base.va->vals[i];
        diag_error(e->loc, "'%s[%lld]' has not been assigned",
                   e->a->kind == AST_NAME ? e->a->name : "array", (long long)k);
        return err_val;
    }
    default:
        diag_error(e->loc, "%s cannot be indexed", kind_name(base.kind));
        return err_val;
    }
}

/* sum i in lo..hi [where c]: body  — static terms add up; a run-time `where` guards the term */
static sval sum_expr(scope *sc, ast_node *e)
{
    ast_node *r = e->ranges.v[0];
    sval lo = eval(sc, r->a), hi = eval(sc, r->b);
    int64_t a, b;
    if (!expect_int(r->a, &lo, "a range bound", &a) || !expect_int(r->b, &hi, "a range bound", &b))
        return err_val;
    if (!loop_room(e))
        return err_val;
    binding *old = scope_find_local(sc, r->name);
    sval saved = old ? old->val : err_val;
    sval acc = {.kind = V_NONE};
    int acc_id = -1;
    for (int64_t i = a; i < b; i++) {
        if (over_limit(e, ++S.iterations > MAX_ITERATIONS,
                       "loops run more than " KILN_STR(KILN_MAX_ITERATIONS) " iterations"))
            return err_val;
        scope_set(sc, r->name, mk_int(i));
        S.loops[S.nloops++] = (loopvar){r->name, i};
        int guard = -1;
        if (e->a) {
            sval c = eval(sc, e->a);
            if (c.kind == V_INT && !c.i) {
                S.nloops--;
                continue;
            }
            if (c.kind == V_TENSOR) {
                if (tensor_type(c.id)->rank != 0) {
                    diag_error(e->a->loc, "the 'where' condition must be a scalar");
                    S.nloops--;
                    return err_val;
                }
                if (S.guard >= 0) {
                    diag_error(e->a->loc, "a data-dependent sum inside another is not supported");
                    S.nloops--;
                    return err_val;
                }
                guard = c.id;
            } else if (c.kind != V_INT) {
                S.nloops--;
                return err_val;
            }
        }
        int saved_guard = S.guard;
        if (guard >= 0)
            S.guard = guard;
        sval term = eval(sc, e->b);
        S.guard = saved_guard;
        S.nloops--;
        if (term.kind == V_ERR)
            return err_val;
        if (guard < 0) {
            acc = acc.kind == V_NONE ? term : binary(e, AST_OP_ADD, acc, term);
            acc_id = -1;
            continue;
        }
        int tid = as_tensor(e, &term);
        if (tid < 0)
            return err_val;
        if (acc.kind == V_NONE) {
            ir_inst z = ir_inst_make(IR_zeros, 0, NULL);
            z.type = *tensor_type(tid);
            z.type.dtype = DT_F32;
            z.type.tok = 1;            /* the guard is per token */
            acc_id = emit(e, IR_zeros, 0, NULL, &z);
            if (acc_id < 0)
                return err_val;
        } else {
            acc_id = as_tensor(e, &acc);
            if (acc_id < 0)
                return err_val;
        }
        int args[3] = {acc_id, tid, guard};
        int id = emit(e, IR_accum_if, 3, args, NULL);
        if (id < 0)
            return err_val;
        acc = mk_tensor(id);
    }
    if (old)
        scope_set(sc, r->name, saved);
    if (acc.kind == V_NONE)
        return mk_int(0);
    return acc;
}

/* [a, b, c]: compile-time numbers (integers, or numbers once one item is not an integer)
 * or strings, one kind per list. */
static sval list_expr(scope *sc, ast_node *e)
{
    if (e->kids.n == 0) {
        diag_error(e->loc, "a list needs at least one item");
        return err_val;
    }
    slist *l = sema_alloc(sizeof *l);
    l->items = sema_alloc(sizeof(sval) * (size_t)e->kids.n);
    l->item = V_INT;
    for (int k = 0; k < e->kids.n; k++) {
        ast_node *it = e->kids.v[k];
        sval v = eval(sc, it);
        if (v.kind == V_ERR)
            return err_val;
        if (v.kind != V_INT && v.kind != V_FLOAT && v.kind != V_STR) {
            diag_error(it->loc, "a list item must be a number or a string known at compile "
                       "time, got %s", kind_name(v.kind));
            return err_val;
        }
        if (k > 0 && (v.kind == V_STR) != (l->item == V_STR)) {
            diag_error(it->loc, "a list holds items of one kind: this is %s, the first is %s",
                       kind_name(v.kind), kind_name(l->items[0].kind));
            diag_note(e->kids.v[0]->loc, "the first item");
            return err_val;
        }
        if (k == 0 || v.kind == V_STR)
            l->item = v.kind;
        else if (v.kind == V_FLOAT)
            l->item = V_FLOAT;
        l->items[l->n++] = v;
    }
    if (l->item == V_FLOAT)   /* a list of numbers: all items numbers */
        for (int k = 0; k < l->n; k++)
            l->items[k] = mk_float(num(&l->items[k]));
    return (sval){.kind = V_LIST, .list = l};
}

static sval eval_node(scope *sc, ast_node *e);

/* eval recurses once per level of the syntax tree: a limit keeps `exp(exp(...))` thousands
 * deep from overflowing the C stack. */
sval eval(scope *sc, ast_node *e)
{
    if (S.expr_depth >= MAX_EXPR_DEPTH) {
        diag_error(e->loc, "expression nests more than %d deep", MAX_EXPR_DEPTH);
        return err_val;
    }
    /* Calls restart the count, and frame sizes differ between builds (sanitizers): the
     * stack in use is what bounds block calls nested within deep expressions. */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (here < S.stack_base && S.stack_base - here > S.stack_budget) {
        if (!S.stopped)
            diag_error(e->loc, "expressions, statements and calls nest too deeply "
                               "(more than %zu KB of the compiler's stack)",
                       S.stack_budget >> 10);
        S.stopped = 1;   /* unwind: every caller is as deep */
        return err_val;
    }
    S.expr_depth++;
    sval v = eval_node(sc, e);
    S.expr_depth--;
    return v;
}

static sval eval_node(scope *sc, ast_node *e)
{
    switch (e->kind) {
    case AST_INT: return mk_int(e->ival);
    case AST_FLOAT: return mk_float(e->fval);
    case AST_STRING: return (sval){.kind = V_STR, .s = e->str};
    case AST_NAME: return lookup(sc, e);
    case AST_BINARY: {
        sval a = eval(sc, e->a);
        /* && and || short-circuit at compile time, so conditions can guard names */
        if ((e->op == AST_OP_AND || e->op == AST_OP_OR) && a.kind == V_INT &&
            (e->op == AST_OP_AND ? !a.i : a.i))
            return mk_int(e->op == AST_OP_OR);
        return binary(e, e->op, a, eval(sc, e->b));
    }
    case AST_UNARY: {
        sval a = eval(sc, e->a);
        if (a.kind == V_ERR)
            return a;
        if (a.kind == V_INT && e->op == AST_OP_NEG && a.i == INT64_MIN) {
            diag_error(e->loc, "integer overflow in -(%lld)", (long long)a.i);
            return err_val;
        }
        if (a.kind == V_INT)
            return mk_int(e->op == AST_OP_NEG ? -a.i : !a.i);
        if (a.kind == V_FLOAT)
            return e->op == AST_OP_NEG ? mk_float(-a.f) : mk_int(a.f == 0);
        return elementwise(e, e->op == AST_OP_NEG ? IR_neg : IR_not, 1, &a);
    }
    case AST_COND: {
        sval c = eval(sc, e->a);
        if (c.kind == V_INT)
            return eval(sc, c.i ? e->b : e->c);
        if (c.kind == V_ERR)
            return c;
        sval args[3] = {c, eval(sc, e->b), eval(sc, e->c)};
        if (args[1].kind == V_ERR || args[2].kind == V_ERR)
            return err_val;
        return elementwise(e, IR_select, 3, args);
    }
    case AST_CALL: return call(sc, e);
    case AST_INDEX: return index_expr(sc, e);
    case AST_SUM: return sum_expr(sc, e);
    case AST_LIST: return list_expr(sc, e);
    case AST_SLICE:
        diag_error(e->loc, "a slice is allowed only inside [ ]");
        return err_val;
    default:
        DIE("eval: unexpected node %s", ast_kind_name(e->kind));
    }
}

/* ---------------------------------------------------------------- calls */

static sval call_user(scope *sc, ast_node *e, sval fnv)
{
    ast_node *fn = fnv.fn;
    const char *what = fn->kind == AST_DEF ? "function" : "block";
    if (e->kids.n != fn->params.n) {
        diag_error(e->loc, "%s '%s' takes %d argument%s, given %d", what, fn->name,
                   fn->params.n, fn->params.n == 1 ? "" : "s", e->kids.n);
        diag_note(fn->loc, "'%s' is defined here", fn->name);
        return err_val;
    }
    if (S.depth >= MAX_CALL_DEPTH) {
        diag_error(e->loc, "calls nest more than %d deep (does %s '%s' call itself?)",
                   MAX_CALL_DEPTH, what, fn->name);
        return err_val;
    }
    scope *inner = scope_new(fnv.fn_scope);
    for (int i = 0; i < e->kids.n; i++) {
        sval a = eval(sc, e->kids.v[i]);
        if (a.kind == V_ERR)
            return err_val;
        scope_set(inner, fn->params.v[i]->name, a);
    }
    S.depth++;
    int saved_expr_depth = S.expr_depth;   /* the callee's body nests on its own count */
    S.expr_depth = 0;
    int errors = diag_error_count();
    sval ret = {.kind = V_NONE};
    if (fn->kind == AST_DEF)
        ret = eval(inner, fn->a);
    else if (!exec_stmts(inner, fn->b, &ret) && ret.kind == V_NONE)
        diag_error(e->loc, "block '%s' returned no value", fn->name);
    S.depth--;
    S.expr_depth = saved_expr_depth;
    if (diag_error_count() > errors) {
        /* the call chain of an error, innermost first, at most 4 deep */
        if (S.notes_err != diag_error_count()) {
            S.notes_err = diag_error_count();
            S.notes = 0;
        }
        if (S.notes++ < 4)
            diag_note(e->loc, "in this call of '%s'", fn->name);
    }
    return ret;
}

static sval call(scope *sc, ast_node *e)
{
    binding *b = scope_find(sc, e->name);
    if (b && (b->val.kind == V_BLOCK || b->val.kind == V_DEF))
        return call_user(sc, e, b->val);
    const builtin *bi = builtin_find(e->name);
    if (bi) {
        if (e->kids.n != bi->arity) {
            diag_error(e->loc, "'%s' takes %d argument%s, given %d (%s)", e->name, bi->arity,
                       bi->arity == 1 ? "" : "s", e->kids.n, bi->usage);
            return err_val;
        }
        sval args[8];
        for (int k = 0; k < e->kids.n; k++) {
            args[k] = eval(sc, e->kids.v[k]);
            if (args[k].kind == V_ERR)
                return err_val;
        }
        return bi->fn(e, args);
    }
    if (b)
        diag_error(e->loc, "'%s' is %s, not something to call", e->name,
                   b->val.kind == V_WARRAY && b->val.wd->ndim == 0 ? "a weight"
                                                                   : kind_name(b->val.kind));
    else
        diag_error(e->loc, "unknown function or block '%s'", e->name);
    return err_val;
}

/* ---------------------------------------------------------------- statements */

static void label_value(sval v, const char *name)
{
    if (v.kind == V_TENSOR && !S.m->insts[v.id].label && S.m->insts[v.id].op != IR_const)
        S.m->insts[v.id].label = name;
}

static void assign(scope *sc, ast_node *target, sval v)
{
    if (target->kind == AST_NAME) {
        label_value(v, target->name);
        scope_set(sc, target->name, v);
        return;
    }
    /* name[i] = v: an element of a value array */
    ast_node *base = target->a;
    if (target->kids.n != 1 || target->kids.v[0]->kind == AST_SLICE) {
        diag_error(target->loc, "assign to name[index] with one integer index");
        return;
    }
    sval iv = eval(sc, target->kids.v[0]);
    int64_t k;
    if (!expect_int(target->kids.v[0], &iv, "a value-array index", &k))
        return;
    binding *b = scope_find(sc, base->name);
    if (b && b->val.kind != V_VARRAY) {
        diag_error(base->loc, "'%s' is %s, not a value array", base->name, kind_name(b->val.kind));
        return;
    }
    if (!b) {
        sval arr = {.kind = V_VARRAY, .va = sema_alloc(sizeof(varray))};
        scope_set(sc, base->name, arr);
        b = scope_find(sc, base->name);
    }
    varray *va = b->val.va;
    char label[KILN_MAX_IDENT + 24];   /* name[index] */
    snprintf(label, sizeof label, "%s[%lld]", base->name, (long long)k);
    label_value(v, base_intern(label, strlen(label)));
    for (int i = 0; i < va->n; i++)
        if (va->keys[i] == k) {
            va->vals[i] = v;
            return;
        }
    if (va->n == va->cap) {
        int cap = va->cap ? 2 * va->cap : 8;
        int64_t *keys = sema_alloc(sizeof(int64_t) * (size_t)cap);
        sval *vals = sema_alloc(sizeof(sval) * (size_t)cap);
        if (va->n) {
            memcpy(keys, va->keys, sizeof(int64_t) * (size_t)va->n);
            memcpy(vals, va->vals, sizeof(sval) * (size_t)va->n);
        }
        va->keys = keys;
        va->vals = vals;
        va->cap = cap;
    }
    va->keys[va->n] = k;
    va->vals[va->n++] = v;
}

static void stat_stmt(scope *sc, ast_node *st)
{
    char name[KILN_MAX_IDENT + 24];   /* name or name[index] */
    ast_node *t = st->a;
    if (t->kind == AST_NAME) {
        snprintf(name, sizeof name, "%s", t->name);
    } else {
        sval iv = t->kids.n == 1 ? eval(sc, t->kids.v[0]) : err_val;
        int64_t k;
        if (!expect_int(t, &iv, "a statistic index", &k))
            return;
        snprintf(name, sizeof name, "%s[%lld]", t->a->name, (long long)k);
    }
    sval v = eval(sc, st->b);
    int id = as_tensor(st->b, &v);
    if (id < 0)
        return;
    ir_inst a = attrs_i(ir_add_stat(S.m, base_intern(name, strlen(name))), 0, 0);
    emit(st->b, IR_stat, 1, &id, &a);
}

/* Remembers the assignment `st` of a tensor to a name until something reads the name: one
 * never read in any unrolling is warned about at the end (names starting with '_' are
 * kept quiet on purpose). */
static void note_site(scope *sc, ast_node *st, sval v)
{
    if (st->a->kind != AST_NAME || v.kind != V_TENSOR || st->a->name[0] == '_')
        return;
    binding *b = scope_find_local(sc, st->a->name);
    if (!b)
        return;
    b->site = st;
    if (st->mark)
        return;
    st->mark = 1;
    if (S.nsites == S.csites) {
        S.csites = S.csites ? 2 * S.csites : 64;
        S.sites = realloc(S.sites, (size_t)S.csites * sizeof *S.sites);
        if (!S.sites)
            DIE("out of memory");
    }
    S.sites[S.nsites++] = st;
}

static int pure_operand(const ast_node *e)
{
    if (!e)
        return 1;
    if (e->kind == AST_CALL || e->kind == AST_SUM || e->kind == AST_LIST)
        return 0;
    return pure_operand(e->a) && pure_operand(e->b) && pure_operand(e->c);
}

/* assert cond, "message": cond is known at compile time; false stops with the message. */
static void check_assert(scope *sc, ast_node *st)
{
    sval c = eval(sc, st->a);
    if (c.kind == V_ERR)
        return;
    if (!is_num(&c)) {
        if (c.kind == V_TENSOR)
            diag_error(st->a->loc, "the condition of 'assert' must be known at compile time; "
                                   "this one depends on the input or a run-time parameter");
        else
            diag_error(st->a->loc, "the condition of 'assert' must be a compile-time "
                                   "condition, got %s", kind_name(c.kind));
        return;
    }
    if (num(&c) != 0)
        return;
    diag_error(st->loc, "%s", st->str);
    /* the values compared, when that costs no evaluation with effects (calls emit IR) */
    ast_node *k = st->a;
    if (k->kind == AST_BINARY && k->op >= AST_OP_LT && k->op <= AST_OP_NE &&
        pure_operand(k)) {
        sval x = eval(sc, k->a), y = eval(sc, k->b);
        char tx[64], ty[64];
        if (is_num(&x) && is_num(&y)) {
            snprintf(tx, sizeof tx, x.kind == V_INT ? "%.0f" : "%g", num(&x));
            snprintf(ty, sizeof ty, y.kind == V_INT ? "%.0f" : "%g", num(&y));
            diag_note(k->loc, "the condition is false: %s %s %s", tx, ast_op_text(k->op), ty);
        }
    }
}

/* Runs statements; returns 1 when a `return` was executed (its value in *ret). */
static int exec_stmts(scope *sc, ast_node *stmts, sval *ret)
{
    for (int i = 0; i < stmts->kids.n && !S.stopped; i++) {
        ast_node *st = stmts->kids.v[i];
        switch (st->kind) {
        case AST_ASSIGN: {
            sval v = eval(sc, st->b);
            assign(sc, st->a, v);
            note_site(sc, st, v);
            break;
        }
        case AST_ASSERT:
            check_assert(sc, st);
            break;
        case AST_RETURN:
            *ret = eval(sc, st->a);
            S.returned = st->a;
            return 1;
        case AST_STAT:
            stat_stmt(sc, st);
            break;
        case AST_IF: {
            sval c = eval(sc, st->a);
            if (c.kind == V_ERR || reject_list(st->a, &c, "the condition of 'if'"))
                break;
            if (c.kind != V_INT) {
                diag_error(st->a->loc, "the condition of 'if' must be known at compile time "
                                       "(for data-dependent choices use select() or "
                                       "sum ... where)");
                break;
            }
            ast_node *branch = c.i ? st->b : st->c;
            if (!branch)
                break;
            if (branch->kind == AST_IF) {
                ast_node wrap = {.kind = AST_STMTS};
                ast_node *one[1] = {branch};
                wrap.kids.v = one;
                wrap.kids.n = 1;
                if (exec_stmts(sc, &wrap, ret))
                    return 1;
            } else if (exec_stmts(sc, branch, ret)) {
                return 1;
            }
            break;
        }
        case AST_FOR: {
            ast_node *r = st->ranges.v[0];
            sval lo = eval(sc, r->a), hi = eval(sc, r->b);
            int64_t a, b;
            if (!expect_int(r->a, &lo, "a range bound", &a) ||
                !expect_int(r->b, &hi, "a range bound", &b))
                break;
            if (!loop_room(st))
                break;
            for (int64_t k = a; k < b && !S.stopped; k++) {
                if (over_limit(st, ++S.iterations > MAX_ITERATIONS,
                               "loops run more than " KILN_STR(KILN_MAX_ITERATIONS) " iterations"))
                    break;
                scope_set(sc, r->name, mk_int(k));
                S.loops[S.nloops++] = (loopvar){r->name, k};
                int returned = exec_stmts(sc, st->b, ret);
                S.nloops--;
                if (returned)
                    return 1;
            }
            break;
        }
        default:
            DIE("exec: unexpected statement %s", ast_kind_name(st->kind));
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- model */

static void param_text(sval v, char *buf, size_t size)
{
    if (v.kind == V_INT)
        snprintf(buf, size, "%lld", (long long)v.i);
    else if (v.kind == V_FLOAT)
        snprintf(buf, size, "%.9g", v.f);
    else if (v.kind == V_STR) {   /* quoted as a dump prints strings, so it reads back */
        size_t n = 0;
        buf[n++] = '"';
        for (const char *p = v.s; *p && n + 6 < size; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\')
                n += (size_t)snprintf(buf + n, size - n, "\\%c", c);
            else if (c < 32 || c == 127)
                n += (size_t)snprintf(buf + n, size - n, "\\%03o", c);
            else
                buf[n++] = (char)c;
        }
        snprintf(buf + n, size - n, "\"");
    }
    else
        snprintf(buf, size, "?");
}

/* The text of a parameter for the IR's param table (interned): a list as "[a, b, c]". */
static const char *value_text(sval v)
{
    char item[4 * KILN_MAX_STRING + 8];   /* a string, every byte escaped as \ooo */
    if (v.kind != V_LIST) {
        param_text(v, item, sizeof item);
        return base_intern_str(item);
    }
    size_t cap = 64, n = 0;
    char *buf = xcalloc(cap, 1);
    for (int k = 0; k <= v.list->n; k++) {
        if (k < v.list->n)
            param_text(v.list->items[k], item, sizeof item);
        const char *piece = k == v.list->n ? "]" : item;
        size_t need = strlen(piece) + 3;
        if (n + need >= cap) {
            while (n + need >= cap)
                cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                DIE("out of memory");
        }
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k == 0 ? "[" : k < v.list->n ? ", " : "",
                              piece);
    }
    const char *text = base_intern(buf, n);
    free(buf);
    return text;
}

/* An error about a define, naming who gave it: `-D: error: name=value: ...` for -D, and for
 * a config value the file, then what its origin says after the path (`config.json: error:
 * key "num_heads" = 2.5: ...`). */
static void define_error(const sema_define *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void define_error(const sema_define *d, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *sep = d->origin ? strstr(d->origin, ": ") : NULL;
    if (!d->origin)
        diag_file_error("-D", "%s=%s: %s", d->name, d->value, msg);
    else if (!sep)
        diag_file_error(d->origin, "%s=%s: %s", d->name, d->value, msg);
    else {
        char *path = strndup(d->origin, (size_t)(sep - d->origin));   /* paths have no limit */
        if (!path)
            DIE("out of memory");
        diag_file_error(path, "%s = %s: %s", sep + 2, d->value, msg);
        free(path);
    }
}

/* An integer in any spelling of one: 1000000, 1e6, 1000000.0 (not 2.5). */
static int parse_integer(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 10);
    if (*text && !*end && errno == 0) {
        *out = i;
        return 1;
    }
    errno = 0;
    double f = strtod(text, &end);
    if (*text && !*end && errno == 0 && isfinite(f) && f == floor(f) && fabs(f) < 9.2e18) {
        *out = (int64_t)f;
        return 1;
    }
    return 0;
}

/* One value of kind `kind` from text; list: the parameter is a list (for the message). */
static sval define_item(const sema_define *d, const char *text, vkind kind, int list)
{
    if (kind == V_STR) {
        if (strlen(text) > KILN_MAX_STRING) {   /* as a string literal in a spec */
            define_error(d, "'%s' is a string of %zu bytes; the limit is %d", d->name,
                         strlen(text), KILN_MAX_STRING);
            return err_val;
        }
        return (sval){.kind = V_STR, .s = base_intern_str(text)};
    }
    if (!strcmp(text, "true") || !strcmp(text, "false"))
        return kind == V_FLOAT ? mk_float(text[0] == 't') : mk_int(text[0] == 't');
    if (kind == V_INT) {
        int64_t i;
        if (parse_integer(text, &i))
            return mk_int(i);
        if (list)
            define_error(d, "'%s' is a list of integers; '%s' is not one", d->name, text);
        else
            define_error(d, "'%s' is an integer parameter", d->name);
        return err_val;
    }
    char *end;
    errno = 0;
    double f = strtod(text, &end);
    if (*text && !*end && errno == 0 && isfinite(f))
        return mk_float(f);
    if (list)
        define_error(d, "'%s' is a list of numbers; '%s' is not one", d->name, text);
    else
        define_error(d, "'%s' is a number parameter", d->name);
    return err_val;
}

/* A define's value, of the kind of the parameter's default `def`: an integer parameter takes
 * an integer (1000000, 1e6, 1000000.0) or true/false, a number parameter any finite number, a
 * string parameter any text; a list parameter takes "a,b,c" (any length, items of the
 * list's kind), and a single item as a list of one. */
static sval define_value(const sema_define *d, sval def)
{
    int comma = strchr(d->value, ',') != NULL;
    if (def.kind != V_LIST) {
        if (d->shape == SD_LIST || (d->shape == SD_TEXT && comma)) {
            define_error(d, "'%s' takes one value, not a list", d->name);
            return err_val;
        }
        return define_item(d, d->value, def.kind, 0);
    }
    if (d->shape == SD_SCALAR) {
        define_error(d, "'%s' is a list parameter: give a list", d->name);
        return err_val;
    }
    if (!d->value[0]) {
        define_error(d, "'%s' is a list: give at least one item", d->name);
        return err_val;
    }
    int nitems = 1;
    for (const char *p = d->value; *p; p++)
        nitems += *p == ',';
    slist *l = sema_alloc(sizeof *l);
    l->item = def.list->item;
    l->items = sema_alloc(sizeof(sval) * (size_t)nitems);
    for (const char *p = d->value;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0 && l->item != V_STR) {
            define_error(d, "'%s' is a list: an item is empty", d->name);
            return err_val;
        }
        sval v = define_item(d, base_intern(p, len), l->item, 1);
        if (v.kind == V_ERR)
            return err_val;
        l->items[l->n++] = v;
        if (!q)
            break;
        p = q + 1;
    }
    return (sval){.kind = V_LIST, .list = l};
}

static void define_callables(scope *sc, ast_node *items)
{
    for (int i = 0; i < items->kids.n; i++) {
        ast_node *it = items->kids.v[i];
        if (it->kind != AST_BLOCK && it->kind != AST_DEF)
            continue;
        binding *prev = scope_find_local(sc, it->name);
        if (prev && prev->val.fn && prev->val.fn != it) {
            diag_error(it->loc, "'%s' is defined twice", it->name);
            diag_note(prev->val.fn->loc, "first defined here");
            continue;
        }
        sval v = {.kind = it->kind == AST_BLOCK ? V_BLOCK : V_DEF, .fn = it, .fn_scope = sc};
        scope_set(sc, it->name, v);
    }
}

static int lower_model(ast_node *model, const sema_define *defs, int ndefs)
{
    S.model = scope_new(S.root);
    int *used = xcalloc((size_t)(ndefs ? ndefs : 1), sizeof(int));
    ast_node *forward = NULL;
    for (int i = 0; i < model->kids.n; i++) {
        ast_node *it = model->kids.v[i];
        if (it->kind == AST_FORWARD) {
            if (forward) {
                diag_error(it->loc, "a model has one forward");
                diag_note(forward->loc, "the first is here");
            }
            forward = it;
        }
    }
    define_callables(S.model, model);
    for (int i = 0; i < model->kids.n; i++) {
        ast_node *it = model->kids.v[i];
        if (it->kind == AST_ASSERT)   /* in order with the params and lets it checks */
            check_assert(S.model, it);
        if (it->kind != AST_PARAM && it->kind != AST_LET)
            continue;
        binding *prev = scope_find_local(S.model, it->name);
        if (prev) {
            diag_error(it->loc, "'%s' is already defined in this model", it->name);
            if (prev->val.fn)
                diag_note(prev->val.fn->loc, "'%s' is a %s defined here", it->name,
                          prev->val.kind == V_BLOCK ? "block" : "function");
            else
                for (int j = 0; j < i; j++)
                    if (model->kids.v[j]->name == it->name) {
                        diag_note(model->kids.v[j]->loc, "first defined here");
                        break;
                    }
            continue;
        }
        sval v = eval(S.model, it->a);
        if (it->kind == AST_PARAM) {
            int explicit = 0;
            for (int d = 0; d < ndefs; d++)
                if (!strcmp(defs[d].name, it->name)) {
                    used[d] = 1;
                    if (defs[d].implied && explicit)
                        continue;
                    if (!defs[d].implied && explicit)
                        diag_file_error("-D", "'%s' is given twice", it->name);
                    if (v.kind == V_INT || v.kind == V_FLOAT || v.kind == V_STR ||
                        v.kind == V_LIST)
                        v = define_value(&defs[d], v);
                    explicit |= !defs[d].implied;
                }
        }
        if (v.kind != V_INT && v.kind != V_FLOAT && v.kind != V_STR && v.kind != V_LIST) {
            if (v.kind != V_ERR)
                diag_error(it->a->loc, "'%s' must be a number, a string or a list known at "
                                       "compile time", it->name);
            scope_set(S.model, it->name, err_val);
            continue;
        }
        if (it->kind == AST_PARAM && it->flag) {
            if (!is_num(&v)) {
                diag_error(it->a->loc, "run-time parameter '%s' must be a number", it->name);
                continue;
            }
            ir_inst a = attrs_i(ir_add_rtparam(S.m, it->name, num(&v)), 0, 0);
            a.label = it->name;
            int id = emit(it, IR_rtparam, 0, NULL, &a);
            scope_set(S.model, it->name, mk_tensor(id));
            continue;
        }
        if (it->kind == AST_PARAM)
            ir_add_param(S.m, it->name, value_text(v));
        scope_set(S.model, it->name, v);
    }
    for (int d = 0; d < ndefs; d++)
        if (!used[d] && !defs[d].implied)
            diag_file_error("-D", "model '%s' has no parameter '%s'", model->name, defs[d].name);
    free(used);

    for (int i = 0; i < model->kids.n; i++)
        if (model->kids.v[i]->kind == AST_WEIGHTS) {
            wctx w = {0};
            weights_items(scope_new(S.model), model->kids.v[i], &w);
        }
    if (!forward) {
        diag_error(model->loc, "model '%s' has no forward", model->name);
        return 0;
    }
    if (forward->params.n < 1 || forward->params.n > 2) {
        diag_error(forward->loc, "forward takes the token and, optionally, the position: "
                                 "forward(token) or forward(token, pos)");
        return 0;
    }
    if (diag_error_count())
        return 0;
    scope *body = scope_new(S.model);
    S.token_id = emit(forward, IR_token, 0, NULL, NULL);
    ir_get(S.m, S.token_id)->label = forward->params.v[0]->name;
    scope_set(body, forward->params.v[0]->name, mk_tensor(S.token_id));
    if (forward->params.n == 2) {
        int pos = emit(forward, IR_position, 0, NULL, NULL);
        ir_get(S.m, pos)->label = forward->params.v[1]->name;
        scope_set(body, forward->params.v[1]->name, mk_tensor(pos));
    }
    sval ret = {.kind = V_NONE};
    if (!exec_stmts(body, forward->b, &ret)) {
        if (!S.stopped)
            diag_error(forward->loc, "forward does not return the logits");
        return 0;
    }
    int id = ret.kind == V_ERR ? -1 : as_tensor(forward, &ret);
    if (id < 0)
        return 0;
    if (emit(S.returned ? S.returned : forward, IR_output, 1, &id, NULL) < 0)
        return 0;
    if (diag_error_count())   /* warnings only about a spec that compiles */
        return 0;
    for (int k = 0; k < S.nsites; k++)
        if (S.sites[k]->mark == 1)
            diag_warning(S.sites[k]->a->loc, "'%s' is computed but never used",
                         S.sites[k]->a->name);
    for (int d = 0; d < ndefs; d++) {
        binding *b = defs[d].implied ? NULL : scope_find_local(S.model, defs[d].name);
        if (b && !b->read && b->val.kind != V_BLOCK && b->val.kind != V_DEF)
            diag_file_warning("-D", "parameter '%s' is set but nothing reads it",
                              defs[d].name);
    }
    ir_module_derive(S.m);
    return 1;
}

/* Half the stack limit (the rest is for the caller and for reporting), at most 64 MB. */
static size_t stack_budget(void)
{
    struct rlimit rl;
    size_t cap = (size_t)64 << 20;
    if (getrlimit(RLIMIT_STACK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur / 2 > cap)
        return cap;
    return (size_t)rl.rlim_cur / 2;
}

ir_module *sema_lower(ast_node *std, ast_node *spec, const sema_define *defs, int ndefs)
{
    memset(&S, 0, sizeof S);
    S.guard = -1;
    S.stack_base = (uintptr_t)__builtin_frame_address(0);
    S.stack_budget = stack_budget();
    S.root = scope_new(NULL);
    define_callables(S.root, std);
    scope *file = scope_new(S.root);
    S.root = file;
    define_callables(S.root, spec);
    ast_node *model = NULL;
    for (int i = 0; i < spec->kids.n; i++)
        if (spec->kids.v[i]->kind == AST_MODEL) {
            if (model) {
                diag_error(spec->kids.v[i]->loc, "one model per spec file");
                diag_note(model->loc, "the first is here");
                continue;
            }
            model = spec->kids.v[i];
        }
    if (!model) {
        diag_file_error(spec->loc.file ? spec->loc.file->path : "spec", "no model in this file");
        sema_free();
        return NULL;
    }
    S.m = ir_module_new(model->name);
    S.hash_cap = 1 << 22;   /* > 2 * MAX_INSTS: the tables never fill */
    S.view_hash = xcalloc((size_t)S.hash_cap, sizeof(int));
    S.const_hash = xcalloc((size_t)S.hash_cap, sizeof(int));
    S.tensor_hash = xcalloc((size_t)S.hash_cap, sizeof(int));
    int ok = lower_model(model, defs, ndefs) && diag_error_count() == 0;
    free(S.wdecls);
    free(S.sites);
    free(S.view_hash);
    free(S.const_hash);
    free(S.tensor_hash);
    sema_free();
    if (!ok) {
        ir_module_free(S.m);
        return NULL;
    }
    return S.m;
}
