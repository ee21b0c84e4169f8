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

static sval bi_mean(ast_node *e, sval *a) { return op_value(e, IR_mean, 1, a, NULL); }
static sval bi_total(ast_node *e, sval *a) { return op_value(e, IR_sum, 1, a, NULL); }
static sval bi_amax(ast_node *e, sval *a) { return op_value(e, IR_amax, 1, a, NULL); }
static sval bi_count(ast_node *e, sval *a) { return op_value(e, IR_count, 1, a, NULL); }
static sval bi_dot(ast_node *e, sval *a) { return op_value(e, IR_dot, 2, a, NULL); }
static sval bi_softmax(ast_node *e, sval *a) { return op_value(e, IR_softmax, 1, a, NULL); }
static sval bi_concat(ast_node *e, sval *a) { return op_value(e, IR_concat, 2, a, NULL); }

static sval bi_linear(ast_node *e, sval *args)
{
    if (args[1].kind != V_WVIEW && args[1].kind != V_WARRAY && args[1].kind != V_ERR) {
        diag_error(e->kids.v[1]->loc, "linear's matrix must be a weight (or a view of one)");
        return err_val;
    }
    return op_value(e, IR_linear, 2, args, NULL);
}

static sval bi_embedding(ast_node *e, sval *args)
{
    if (args[0].kind != V_WVIEW) {
        diag_error(e->loc, "embedding(table, token) needs a [V, d] weight and the token");
        return err_val;
    }
    return op_value(e, IR_embed, 2, args, NULL);
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
    ir_inst z = ir_inst_make(IR_zeros, 0, NULL);
    char why[128];
    if (ir_type_make(&z.type, DT_F32, 0, 1, &n, 0, why, sizeof why) != 0) {
        diag_error(e->loc, "zeros(%lld): %s", (long long)n, why);
        return err_val;
    }
    return op_value(e, IR_zeros, 0, args, &z);
}

static sval bi_len(ast_node *e, sval *args)
{
    if (args[0].kind != V_LIST) {
        diag_error(e->kids.v[0]->loc, "len() needs a list, got %s", kind_name(args[0].kind));
        return err_val;
    }
    return mk_int(args[0].list->n);
}

/* rope(x, heads, base, mode) rotates whole heads; rope_partial(..., rot) the first rot dims
 * of each head (GPT-J, GPT-NeoX, Phi). A list base gives each head its own (rope_heads). */
static sval rope(ast_node *e, sval *args, int partial)
{
    int64_t heads, rot = 0;
    if (!expect_int(e->kids.v[1], &args[1], "rope's head count", &heads))
        return err_val;
    const sval *base = &args[2];
    if (base->kind == V_LIST) {
        if (base->list->item == V_STR) {
            diag_error(e->kids.v[2]->loc, "rope's bases must be numbers, got a list of strings");
            return err_val;
        }
        if (base->list->n != heads) {
            diag_error(e->kids.v[2]->loc, "rope's base list has %d value%s, one per head is %lld",
                       base->list->n, base->list->n == 1 ? "" : "s", (long long)heads);
            return err_val;
        }
    } else if (!is_num(base)) {
        diag_error(e->kids.v[2]->loc, "rope's base must be a number (or a list of one per "
                                      "head) known at compile time");
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
    if (partial && !expect_int(e->kids.v[4], &args[4], "the rotary dims", &rot))
        return err_val;
    int id = as_tensor(e, &args[0]);
    if (id < 0)
        return err_val;
    const ir_type *t = tensor_type(id);
    if (!partial)   /* whole heads; the rule checks the head split */
        rot = heads > 0 && t->rank == 1 ? t->dim[0] / heads : 0;
    ir_inst a = attrs_i(heads, rot, 0);
    a.sattr = args[3].s;
    if (base->kind != V_LIST) {
        a.fattr = num(base);
        return op_value(e, IR_rope, 1, args, &a);
    }
    float *bases = base_alloc(sizeof(float) * (size_t)base->list->n);
    for (int h = 0; h < base->list->n; h++)
        bases[h] = (float)num(&base->list->items[h]);
    a.fvec = bases;
    a.nfvec = base->list->n;
    return op_value(e, IR_rope_heads, 1, args, &a);
}

static sval bi_rope(ast_node *e, sval *args) { return rope(e, args, 0); }
static sval bi_rope_partial(ast_node *e, sval *args) { return rope(e, args, 1); }

static sval bi_topk(ast_node *e, sval *args)
{
    int64_t k;
    if (!expect_int(e->kids.v[1], &args[1], "topk's k", &k))
        return err_val;
    ir_inst a = attrs_i(k, 0, 0);
    return op_value(e, IR_topk, 1, args, &a);
}

static sval bi_cache(ast_node *e, sval *args)
{
    int64_t cap;
    if (!expect_int(e->kids.v[1], &args[1], "the cache capacity", &cap))
        return err_val;
    if (S.guard >= 0) {
        diag_error(e->loc, "a cache cannot be written under a data-dependent condition");
        return err_val;
    }
    ir_inst a = attrs_i(cap, 0, 0);
    return op_value(e, IR_cache, 1, args, &a);
}

static sval bi_attn_scores(ast_node *e, sval *args)
{
    int64_t heads;
    if (!expect_int(e->kids.v[2], &args[2], "heads", &heads))
        return err_val;
    ir_inst a = attrs_i(heads, 0, 0);
    return op_value(e, IR_attn_scores, 2, args, &a);
}

static sval bi_attn_apply(ast_node *e, sval *args)
{
    int64_t kvh;
    if (!expect_int(e->kids.v[2], &args[2], "kv_heads", &kvh))
        return err_val;
    ir_inst a = attrs_i(kvh, 0, 0);
    return op_value(e, IR_attn_apply, 2, args, &a);
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
    {"len", 1, bi_len, "len(list)"},
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
