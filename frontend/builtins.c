/* builtins.c - the builtin operations of the language: each checks its arguments' kinds and
 * shapes, folds what is known at compile time, and emits IR for the rest. The table at the end
 * gives their names, arities and usage lines (shown in arity errors).
 */
#include <math.h>
#include <string.h>

#include "sema_internal.h"


static sval bi_unary(ast_node *e, ir_op op, sval *args)
{
    static double (*const folds[IR_OP_COUNT])(double) = {
        [IR_exp] = exp, [IR_sqrt] = sqrt, [IR_tanh] = tanh, [IR_erf] = erf,
    };
    if (is_num(&args[0])) {
        double x = num(&args[0]);
        if (folds[op])
            return mk_float(folds[op](x));
        if (op == IR_rsqrt)
            return mk_float(1.0 / sqrt(x));
        if (op == IR_sigmoid)
            return mk_float(1.0 / (1.0 + exp(-x)));
    }
    return elementwise(e, op, 1, args);
}

#define UNARY(name)                                                                            \
    static sval bi_##name(ast_node *e, sval *a) { return bi_unary(e, IR_##name, a); }
UNARY(exp) UNARY(sqrt) UNARY(rsqrt) UNARY(tanh) UNARY(sigmoid) UNARY(silu) UNARY(gelu)
UNARY(relu) UNARY(erf)
#undef UNARY

static sval bi_binary(ast_node *e, ir_op op, sval *args)
{
    if (is_num(&args[0]) && is_num(&args[1])) {
        double x = num(&args[0]), y = num(&args[1]);
        if (op == IR_pow)
            return mk_float(pow(x, y));
        sval r = (op == IR_max) == (x > y) ? args[0] : args[1];
        return r;
    }
    return elementwise(e, op, 2, args);
}

static sval bi_max(ast_node *e, sval *a) { return bi_binary(e, IR_max, a); }
static sval bi_min(ast_node *e, sval *a) { return bi_binary(e, IR_min, a); }
static sval bi_pow(ast_node *e, sval *a) { return bi_binary(e, IR_pow, a); }
static sval bi_select(ast_node *e, sval *a)
{
    if (a[0].kind == V_INT)
        return a[0].i ? a[1] : a[2];
    return elementwise(e, IR_select, 3, a);
}

static sval reduce(ast_node *e, ir_op op, sval *args)
{
    int id = as_tensor(e, &args[0]);
    if (id < 0)
        return err_val;
    if (tensor_type(id)->rank != 1 || tensor_type(id)->seq) {
        diag_error(e->loc, "'%s' needs a vector", e->name);
        return err_val;
    }
    return mk_tensor(emit(e, op, 1, &id, ir_type_scalar(DT_F32)));
}

static sval bi_mean(ast_node *e, sval *a) { return reduce(e, IR_mean, a); }
static sval bi_total(ast_node *e, sval *a) { return reduce(e, IR_sum, a); }
static sval bi_amax(ast_node *e, sval *a) { return reduce(e, IR_amax, a); }
static sval bi_count(ast_node *e, sval *a) { return reduce(e, IR_count, a); }

/* Two operands as tensors; 0 on error. */
static int two_tensors(ast_node *e, sval *args, int *ids)
{
    ids[0] = as_tensor(e, &args[0]);
    ids[1] = ids[0] < 0 ? -1 : as_tensor(e, &args[1]);
    return ids[0] >= 0 && ids[1] >= 0;
}

static sval bi_dot(ast_node *e, sval *args)
{
    int ids[2];
    if (!two_tensors(e, args, ids))
        return err_val;
    const ir_type *a = tensor_type(ids[0]), *b = tensor_type(ids[1]);
    if (a->rank != 1 || b->rank != 1 || a->dim[0] != b->dim[0]) {
        char sa[64], sb[64];
        type_text(a, sa, sizeof sa);
        type_text(b, sb, sizeof sb);
        diag_error(e->loc, "dot needs two vectors of one length: %s vs %s", sa, sb);
        return err_val;
    }
    return mk_tensor(emit(e, IR_dot, 2, ids, ir_type_scalar(DT_F32)));
}

static sval bi_linear(ast_node *e, sval *args)
{
    int ids[2];
    if (!two_tensors(e, args, ids))
        return err_val;
    if (S.m->insts[ids[1]].op != IR_weight) {
        diag_error(e->kids.v[1]->loc, "linear's matrix must be a weight (or a view of one)");
        return err_val;
    }
    const ir_type *x = tensor_type(ids[0]), *w = tensor_type(ids[1]);
    if (w->rank != 2 || x->rank != 1 || w->dim[1] != x->dim[0]) {
        char sx[64], sw[64];
        type_text(x, sx, sizeof sx);
        type_text(w, sw, sizeof sw);
        diag_error(e->loc, "shape mismatch: linear(x %s, W %s) needs W [out, %lld]", sx, sw,
                   x->rank == 1 ? (long long)x->dim[0] : 0LL);
        return err_val;
    }
    return mk_tensor(emit(e, IR_linear, 2, ids, ir_type_vec(DT_F32, w->dim[0])));
}

static sval bi_embedding(ast_node *e, sval *args)
{
    int ids[2];
    if (!two_tensors(e, args, ids))
        return err_val;
    const ir_type *t = tensor_type(ids[0]);
    if (t->rank != 2 || tensor_type(ids[1])->dtype != DT_I32 ||
        S.m->insts[ids[0]].op != IR_weight) {
        diag_error(e->loc, "embedding(table, token) needs a [V, d] weight and the token");
        return err_val;
    }
    return mk_tensor(emit(e, IR_embed, 2, ids, ir_type_vec(DT_F32, t->dim[1])));
}

static sval bi_softmax(ast_node *e, sval *args)
{
    int id = as_tensor(e, &args[0]);
    if (id < 0)
        return err_val;
    const ir_type *t = tensor_type(id);
    if (!(t->rank == 1 && !t->seq) && !(t->rank == 2 && t->seq == 2u)) {
        diag_error(e->loc, "softmax needs a vector or attention scores [heads, S]");
        return err_val;
    }
    return mk_tensor(emit(e, IR_softmax, 1, &id, *tensor_type(id)));
}

static sval bi_concat(ast_node *e, sval *args)
{
    int ids[2];
    if (!two_tensors(e, args, ids))
        return err_val;
    const ir_type *a = tensor_type(ids[0]), *b = tensor_type(ids[1]);
    if (a->rank != 1 || b->rank != 1) {
        diag_error(e->loc, "concat needs two vectors");
        return err_val;
    }
    return mk_tensor(emit(e, IR_concat, 2, ids, ir_type_vec(DT_F32, a->dim[0] + b->dim[0])));
}

static sval bi_width(ast_node *e, sval *args)
{
    int id = as_tensor(e, &args[0]);
    if (id < 0)
        return err_val;
    const ir_type *t = tensor_type(id);
    return mk_int(t->rank ? t->dim[t->rank - 1] : 1);
}

static sval bi_zeros(ast_node *e, sval *args)
{
    int64_t n;
    if (!expect_int(e, &args[0], "zeros' length", &n))
        return err_val;
    if (n <= 0) {
        diag_error(e->loc, "zeros(n) needs n > 0");
        return err_val;
    }
    return mk_tensor(emit(e, IR_zeros, 0, NULL, ir_type_vec(DT_F32, n)));
}

/* rope(x, heads, base, mode) rotates whole heads; rope_partial(..., rot) the first rot dims
 * of each head (GPT-J, GPT-NeoX, Phi). */
static sval rope(ast_node *e, sval *args, int partial)
{
    int id = as_tensor(e, &args[0]);
    int64_t heads;
    if (id < 0 || !expect_int(e->kids.v[1], &args[1], "rope's head count", &heads))
        return err_val;
    if (!is_num(&args[2])) {
        diag_error(e->kids.v[2]->loc, "rope's base must be a number known at compile time");
        return err_val;
    }
    if (args[3].kind != V_STR) {
        diag_error(e->kids.v[3]->loc, "rope's mode must be the string \"half\" or "
                                      "\"interleaved\", got %s", kind_name(args[3].kind));
        return err_val;
    }
    if (strcmp(args[3].s, "half") && strcmp(args[3].s, "interleaved")) {
        diag_error(e->kids.v[3]->loc, "rope's mode must be \"half\" or \"interleaved\", got "
                                      "\"%s\"", args[3].s);
        return err_val;
    }
    const ir_type *t = tensor_type(id);
    if (t->rank != 1 || heads <= 0 || t->dim[0] % heads || (t->dim[0] / heads) % 2) {
        diag_error(e->loc, "rope needs a vector of heads * head_dim with an even head_dim "
                           "(%lld heads)", (long long)heads);
        return err_val;
    }
    int64_t head_dim = t->dim[0] / heads, rot = head_dim;
    if (partial && !expect_int(e->kids.v[4], &args[4], "the rotary dims", &rot))
        return err_val;
    if (rot <= 0 || rot % 2 || rot > head_dim) {
        diag_error(e->kids.v[4]->loc, "the rotary dims must be positive, even and at most head_dim "
                   "(%lld), got %lld", (long long)head_dim, (long long)rot);
        return err_val;
    }
    int r = emit(e, IR_rope, 1, &id, *t);
    ir_inst *in = ir_get(S.m, r);
    in->iattr[0] = heads;
    in->iattr[1] = rot;
    in->fattr = num(&args[2]);
    in->sattr = args[3].s;
    return mk_tensor(r);
}

static sval bi_rope(ast_node *e, sval *args) { return rope(e, args, 0); }
static sval bi_rope_partial(ast_node *e, sval *args) { return rope(e, args, 1); }

static sval bi_topk(ast_node *e, sval *args)
{
    int id = as_tensor(e, &args[0]);
    int64_t k;
    if (id < 0 || !expect_int(e->kids.v[1], &args[1], "topk's k", &k))
        return err_val;
    const ir_type *t = tensor_type(id);
    if (t->rank != 1 || t->seq) {
        diag_error(e->loc, "topk needs a vector");
        return err_val;
    }
    if (k < 0 || k > t->dim[0]) {
        diag_error(e->kids.v[1]->loc, "topk's k must be in 0..%lld, got %lld",
                   (long long)t->dim[0], (long long)k);
        return err_val;
    }
    int r = emit(e, IR_topk, 1, &id, ir_type_vec(DT_BOOL, t->dim[0]));
    ir_get(S.m, r)->iattr[0] = k;
    return mk_tensor(r);
}

static sval bi_cache(ast_node *e, sval *args)
{
    int id = as_tensor(e, &args[0]);
    int64_t cap;
    if (id < 0 || !expect_int(e->kids.v[1], &args[1], "the cache capacity", &cap))
        return err_val;
    const ir_type *t = tensor_type(id);
    if (t->rank != 1 || cap <= 0) {
        diag_error(e->loc, "cache(x, capacity) needs a vector and a positive capacity");
        return err_val;
    }
    if (S.guard >= 0) {
        diag_error(e->loc, "a cache cannot be written under a data-dependent condition");
        return err_val;
    }
    ir_type ct = ir_type_mat(DT_F32, cap, t->dim[0]);
    ct.seq = 1u;
    if (!S.m->ctx || cap < S.m->ctx)
        S.m->ctx = cap;
    return mk_tensor(emit(e, IR_cache, 1, &id, ct));
}

static sval bi_attn_scores(ast_node *e, sval *args)
{
    int ids[2];
    int64_t heads;
    if (!two_tensors(e, args, ids) || !expect_int(e->kids.v[2], &args[2], "heads", &heads))
        return err_val;
    const ir_type *q = tensor_type(ids[0]), *kc = tensor_type(ids[1]);
    if (q->rank != 1 || kc->rank != 2 || !(kc->seq & 1u)) {
        diag_error(e->loc, "attn_scores(q, k_cache, heads) needs a vector and a cache");
        return err_val;
    }
    if (heads <= 0 || q->dim[0] % heads || kc->dim[1] % (q->dim[0] / heads) ||
        heads % (kc->dim[1] / (q->dim[0] / heads))) {
        diag_error(e->loc, "attn_scores: q of %lld with %lld heads does not fit a cache of "
                   "width %lld", (long long)q->dim[0], (long long)heads, (long long)kc->dim[1]);
        return err_val;
    }
    ir_type st = ir_type_mat(DT_F32, heads, kc->dim[0]);
    st.seq = 2u;
    int r = emit(e, IR_attn_scores, 2, ids, st);
    ir_get(S.m, r)->iattr[0] = heads;
    return mk_tensor(r);
}

static sval bi_attn_apply(ast_node *e, sval *args)
{
    int ids[2];
    int64_t kvh;
    if (!two_tensors(e, args, ids) || !expect_int(e->kids.v[2], &args[2], "kv_heads", &kvh))
        return err_val;
    const ir_type *p = tensor_type(ids[0]), *vc = tensor_type(ids[1]);
    if (p->rank != 2 || !(p->seq & 2u) || vc->rank != 2 || !(vc->seq & 1u)) {
        diag_error(e->loc, "attn_apply(probs, v_cache, kv_heads) needs probs [heads, S] "
                           "and a cache");
        return err_val;
    }
    if (kvh <= 0 || vc->dim[1] % kvh || p->dim[0] % kvh || p->dim[1] != vc->dim[0]) {
        diag_error(e->loc, "attn_apply: %lld heads of probs over %lld positions do not fit "
                   "a cache of %lld x %lld with %lld kv heads", (long long)p->dim[0],
                   (long long)p->dim[1], (long long)vc->dim[0], (long long)vc->dim[1],
                   (long long)kvh);
        return err_val;
    }
    int64_t hd = vc->dim[1] / kvh;
    int r = emit(e, IR_attn_apply, 2, ids, ir_type_vec(DT_F32, p->dim[0] * hd));
    ir_get(S.m, r)->iattr[0] = kvh;
    return mk_tensor(r);
}

static const builtin builtins[] = {
    {"linear", 2, bi_linear, "linear(x, W)"},
    {"embedding", 2, bi_embedding, "embedding(table, token)"},
    {"exp", 1, bi_exp, "exp(x)"},
    {"sqrt", 1, bi_sqrt, "sqrt(x)"},
    {"rsqrt", 1, bi_rsqrt, "rsqrt(x)"},
    {"tanh", 1, bi_tanh, "tanh(x)"},
    {"sigmoid", 1, bi_sigmoid, "sigmoid(x)"},
    {"silu", 1, bi_silu, "silu(x)"},
    {"gelu", 1, bi_gelu, "gelu(x)"},
    {"relu", 1, bi_relu, "relu(x)"},
    {"erf", 1, bi_erf, "erf(x)"},
    {"topk", 2, bi_topk, "topk(x, k)"},
    {"rope_partial", 5, bi_rope_partial, "rope_partial(x, heads, base, mode, rotary_dims)"},
    {"max", 2, bi_max, "max(a, b)"},
    {"min", 2, bi_min, "min(a, b)"},
    {"pow", 2, bi_pow, "pow(a, b)"},
    {"select", 3, bi_select, "select(cond, a, b)"},
    {"mean", 1, bi_mean, "mean(x)"},
    {"total", 1, bi_total, "total(x)"},
    {"amax", 1, bi_amax, "amax(x)"},
    {"count", 1, bi_count, "count(mask)"},
    {"dot", 2, bi_dot, "dot(a, b)"},
    {"softmax", 1, bi_softmax, "softmax(x)"},
    {"concat", 2, bi_concat, "concat(a, b)"},
    {"width", 1, bi_width, "width(x)"},
    {"zeros", 1, bi_zeros, "zeros(n)"},
    {"rope", 4, bi_rope, "rope(x, heads, base, mode)"},
    {"cache", 2, bi_cache, "cache(x, capacity)"},
    {"attn_scores", 3, bi_attn_scores, "attn_scores(q, k_cache, heads)"},
    {"attn_apply", 3, bi_attn_apply, "attn_apply(probs, v_cache, kv_heads)"},
};

const builtin *builtin_find(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}
