/* typing.c - one typing rule per op (named in the op table, ops.h).
 *
 * A rule computes an instruction's result type from its operand types and attributes, or
 * says why it cannot, in words for a spec author (per-token shapes, as a spec writes them).
 * The front end calls the rules to type what it emits and turns a refusal into a caret
 * diagnostic; the verifier calls the same rules on every instruction. No shape rule is
 * written anywhere else.
 *
 * The token axis: a result has it when an operand has it, when the op depends on the
 * position (rope, attention), or when the instruction is guarded (a guard is per token).
 */
#include <math.h>
#include <string.h>

#include "ir.h"

#define RULE(name)                                                                             \
    int name(const ir_module *m, const ir_inst *in, const ir_type *args, ir_type *out,         \
             char *why, size_t size)
#define UNUSED (void)m, (void)in, (void)args, (void)why, (void)size
#define REFUSE(...) return snprintf(why, size, __VA_ARGS__), -1

static int any_tok(const ir_inst *in, const ir_type *args)
{
    int tok = in->guard >= 0;
    for (int k = 0; k < in->nargs; k++)
        tok |= args[k].tok;
    return tok;
}

/* f32, i32 and bool are what ops compute in; storage types need a widen first. */
static int computable(const ir_type *t) { return !ir_dtype_is_storage(t->dtype); }

static int is_vector(const ir_type *t) { return t->rank == 1 && !t->seq; }

static int make(ir_type *out, ir_dtype dt, int tok, int rank, const int64_t *dim, unsigned seq,
                char *why, size_t size)
{
    return ir_type_make(out, dt, tok, rank, dim, seq, why, size);
}

static int make_vec(ir_type *out, ir_dtype dt, int tok, int64_t n, char *why, size_t size)
{
    return make(out, dt, tok, 1, &n, 0, why, size);
}

RULE(rule_token)
{
    UNUSED;
    *out = ir_type_scalar(DT_I32);
    out->tok = 1;
    return 0;
}

RULE(rule_const)
{
    UNUSED;
    *out = ir_type_scalar(DT_F32);
    return 0;
}

RULE(rule_rtparam)
{
    UNUSED;
    if (in->iattr[0] < 0 || in->iattr[0] >= m->nrtparams)
        REFUSE("run-time parameter #%lld does not exist", (long long)in->iattr[0]);
    *out = ir_type_scalar(DT_F32);
    return 0;
}

/* zeros keep their declared type; per token under a guard */
RULE(rule_zeros)
{
    UNUSED;
    const ir_type *t = &in->type;
    if (t->dtype != DT_F32 || t->seq)
        REFUSE("zeros are f32 values without a cache axis");
    return make(out, DT_F32, t->tok || in->guard >= 0, t->rank, t->dim, 0, why, size);
}

/* A view: rows [row, row + rows) and columns [col, col + cols) of a tensor (rank 2), or
 * elements [col, col + cols) of a vector tensor; rank 1 is one row, rank 0 one element. */
RULE(rule_weight)
{
    UNUSED;
    int64_t t = in->iattr[0], row = in->iattr[1], col = in->iattr[2];
    if (t < 0 || t >= m->ntensors)
        REFUSE("tensor @%lld does not exist", (long long)t);
    const ir_type *tt = &m->tensors[t].type, *v = &in->type;
    int64_t trows = tt->rank == 2 ? tt->dim[0] : 1, tcols = tt->rank ? tt->dim[tt->rank - 1] : 1;
    int64_t rows = v->rank == 2 ? v->dim[0] : 1, cols = v->rank ? v->dim[v->rank - 1] : 1;
    if (v->tok || v->seq || v->rank > tt->rank || (tt->rank < 2 && row != 0))
        REFUSE("a view of %s has a shape the tensor cannot give", m->tensors[t].decl);
    if (row < 0 || col < 0 || row + rows > trows || col + cols > tcols)
        REFUSE("view [%lld.., %lld..] lies outside tensor %s", (long long)row, (long long)col,
               m->tensors[t].decl);
    if ((tt->dtype == DT_Q8_0 || tt->dtype == DT_Q4_0) && (col % 32 || (cols % 32 && v->rank)))
        REFUSE("a view of the %s tensor %s must cover whole blocks of 32 columns",
               ir_dtype_name(tt->dtype), m->tensors[t].decl);
    return make(out, tt->dtype, 0, v->rank, v->dim, 0, why, size);
}

RULE(rule_widen)
{
    UNUSED;
    if (args[0].tok || args[0].seq)
        REFUSE("widen reads a weight");
    return make(out, DT_F32, 0, args[0].rank, args[0].dim, 0, why, size);
}

RULE(rule_embed)
{
    UNUSED;
    const ir_type *t = &args[0], *k = &args[1];
    if (t->rank != 2 || t->tok || k->dtype != DT_I32 || k->rank != 0)
        REFUSE("embedding(table, token) needs a [V, d] weight and the token");
    return make_vec(out, DT_F32, 1, t->dim[1], why, size);
}

RULE(rule_linear)
{
    UNUSED;
    const ir_type *x = &args[0], *w = &args[1];
    char sx[64], sw[64];
    if (w->rank != 2 || w->tok || w->seq || !is_vector(x) || w->dim[1] != x->dim[0] ||
        !computable(x)) {
        REFUSE("shape mismatch: linear(x %s, W %s) needs W [out, %lld]",
               ir_shape_str(x, sx, sizeof sx), ir_shape_str(w, sw, sizeof sw),
               x->rank == 1 ? (long long)x->dim[0] : 0LL);
    }
    return make_vec(out, DT_F32, x->tok, w->dim[0], why, size);
}

/* Operands of one per-token shape; per-token scalars and values without the token axis
 * broadcast. */
RULE(rule_elementwise)
{
    UNUSED;
    const ir_type *shape = NULL;
    for (int k = 0; k < in->nargs; k++) {
        const ir_type *t = &args[k];
        if (!computable(t))
            REFUSE("%s reads a %s weight; widen it first", ir_ops[in->op].name,
                   ir_dtype_name(t->dtype));
        if (t->rank == 0)
            continue;
        if (shape && (shape->rank != t->rank || shape->seq != t->seq ||
                      memcmp(shape->dim, t->dim, sizeof(int64_t) * (size_t)t->rank))) {
            char sa[64], sb[64];
            REFUSE("shape mismatch: %s vs %s", ir_shape_str(shape, sa, sizeof sa),
                   ir_shape_str(t, sb, sizeof sb));
        }
        shape = t;
    }
    ir_dtype dt = (ir_ops[in->op].flags & OPF_BOOL) ? DT_BOOL : DT_F32;
    if (!shape)
        return make(out, dt, any_tok(in, args), 0, NULL, 0, why, size);
    return make(out, dt, any_tok(in, args), shape->rank, shape->dim, shape->seq, why, size);
}

RULE(rule_reduce)
{
    UNUSED;
    if (!is_vector(&args[0]) || !computable(&args[0]))
        REFUSE("a reduction (mean, total, amax, count) needs a vector");
    return make(out, DT_F32, any_tok(in, args), 0, NULL, 0, why, size);
}

RULE(rule_dot)
{
    UNUSED;
    const ir_type *a = &args[0], *b = &args[1];
    if (!is_vector(a) || !is_vector(b) || a->dim[0] != b->dim[0] || !computable(a) ||
        !computable(b)) {
        char sa[64], sb[64];
        REFUSE("dot needs two vectors of one length: %s vs %s", ir_shape_str(a, sa, sizeof sa),
               ir_shape_str(b, sb, sizeof sb));
    }
    return make(out, DT_F32, any_tok(in, args), 0, NULL, 0, why, size);
}

RULE(rule_extract)
{
    UNUSED;
    if (!is_vector(&args[0]) || !computable(&args[0]))
        REFUSE("only vectors can be indexed");
    if (in->iattr[0] < 0 || in->iattr[0] >= args[0].dim[0])
        REFUSE("index %lld is out of range for a tensor of %lld elements",
               (long long)in->iattr[0], (long long)args[0].dim[0]);
    return make(out, args[0].dtype, any_tok(in, args), 0, NULL, 0, why, size);
}

RULE(rule_topk)
{
    UNUSED;
    if (!is_vector(&args[0]) || !computable(&args[0]))
        REFUSE("topk needs a vector");
    if (in->iattr[0] < 0 || in->iattr[0] > args[0].dim[0])
        REFUSE("topk's k must be in 0..%lld, got %lld", (long long)args[0].dim[0],
               (long long)in->iattr[0]);
    return make_vec(out, DT_BOOL, any_tok(in, args), args[0].dim[0], why, size);
}

RULE(rule_slice)
{
    UNUSED;
    int64_t lo = in->iattr[0], len = in->iattr[1];
    if (!is_vector(&args[0]) || !computable(&args[0]))
        REFUSE("only vectors can be sliced");
    if (lo < 0 || len < 1 || lo > args[0].dim[0] - len)
        REFUSE("slice %lld:%lld is out of range for a dimension of %lld", (long long)lo,
               (long long)(lo + len), (long long)args[0].dim[0]);
    return make_vec(out, args[0].dtype, any_tok(in, args), len, why, size);
}

RULE(rule_concat)
{
    UNUSED;
    if (!is_vector(&args[0]) || !is_vector(&args[1]) || !computable(&args[0]) ||
        !computable(&args[1]))
        REFUSE("concat needs two vectors");
    int64_t n;
    if (__builtin_add_overflow(args[0].dim[0], args[1].dim[0], &n))
        REFUSE("concat of %lld and %lld elements is too large", (long long)args[0].dim[0],
               (long long)args[1].dim[0]);
    return make_vec(out, DT_F32, any_tok(in, args), n, why, size);
}

RULE(rule_softmax)
{
    UNUSED;
    const ir_type *t = &args[0];
    if (!computable(t) || !(is_vector(t) || (t->rank == 2 && t->seq == 2u && t->tok)))
        REFUSE("softmax needs a vector or attention scores [heads, S]");
    return make(out, DT_F32, any_tok(in, args), t->rank, t->dim, t->seq, why, size);
}

RULE(rule_rope)
{
    UNUSED;
    const ir_type *t = &args[0];
    int64_t heads = in->iattr[0], rot = in->iattr[1];
    if (!is_vector(t) || !computable(t) || heads <= 0 || t->dim[0] % heads ||
        (t->dim[0] / heads) % 2)
        REFUSE("rope needs a vector of heads * head_dim with an even head_dim (%lld heads)",
               (long long)heads);
    if (rot <= 0 || rot % 2 || rot > t->dim[0] / heads)
        REFUSE("the rotary dims must be positive, even and at most head_dim (%lld), got %lld",
               (long long)(t->dim[0] / heads), (long long)rot);
    if (!in->sattr || (strcmp(in->sattr, "half") && strcmp(in->sattr, "interleaved")))
        REFUSE("rope's mode must be \"half\" or \"interleaved\"");
    return make_vec(out, DT_F32, 1, t->dim[0], why, size);
}

RULE(rule_rope_heads)
{
    UNUSED;
    if (in->nfvec != in->iattr[0] || !in->fvec)
        REFUSE("rope with one base per head needs %lld bases, given %d", (long long)in->iattr[0],
               in->nfvec);
    for (int h = 0; h < in->nfvec; h++)
        if (!(in->fvec[h] > 0))
            REFUSE("rope's base of head %d must be positive, got %g", h, (double)in->fvec[h]);
    return rule_rope(m, in, args, out, why, size);
}

/* The storage of a cache: the dtype it was declared with (f16 and bf16 halve it, the KV
 * layout pass sets them), f32 otherwise; the layout "head" stores [heads][S][w/heads]. */
RULE(rule_cache)
{
    UNUSED;
    const ir_type *t = &args[0];
    if (!is_vector(t) || !computable(t) || in->iattr[0] <= 0)
        REFUSE("cache(x, capacity) needs a vector and a positive capacity");
    if (!t->tok)
        REFUSE("cache(x, capacity) needs a value computed from the token");
    if (in->sattr && strcmp(in->sattr, "head"))
        REFUSE("a cache's layout must be \"head\" (or absent: position-major), not \"%s\"",
               in->sattr);
    if (in->iattr[1] && !in->sattr)
        REFUSE("a cache's heads are given with its layout");
    if (in->sattr && (in->iattr[1] <= 0 || t->dim[0] % in->iattr[1]))
        REFUSE("a head-major cache of width %lld needs heads that divide it, not %lld",
               (long long)t->dim[0], (long long)in->iattr[1]);
    ir_dtype dt = in->type.dtype == DT_F16 || in->type.dtype == DT_BF16 ? in->type.dtype : DT_F32;
    int64_t dim[2] = {in->iattr[0], t->dim[0]};
    return make(out, dt, 0, 2, dim, 1u, why, size);
}

/* A cache in any of its storage types (attention reads f16 and bf16 caches as stored). */
static int is_cache(const ir_type *t)
{
    return t->rank == 2 && t->seq == 1u && !t->tok &&
           (t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16);
}

/* A head-major cache's heads are its layout: an op must read it with as many kv heads. */
static int cache_heads_fit(const ir_module *m, int id, int64_t kv_heads)
{
    if (id < 0 || id >= m->ninsts)
        return 1;
    const ir_inst *c = &m->insts[id];
    return c->op != IR_cache || !c->sattr || c->iattr[1] == kv_heads;
}

RULE(rule_attn_scores)
{
    UNUSED;
    const ir_type *q = &args[0], *kc = &args[1];
    int64_t heads = in->iattr[0];
    if (!is_vector(q) || !computable(q) || !is_cache(kc))
        REFUSE("attn_scores(q, k_cache, heads) needs a vector and a cache");
    if (heads <= 0 || q->dim[0] % heads || kc->dim[1] % (q->dim[0] / heads) ||
        heads % (kc->dim[1] / (q->dim[0] / heads)))
        REFUSE("attn_scores: q of %lld with %lld heads does not fit a cache of width %lld",
               (long long)q->dim[0], (long long)heads, (long long)kc->dim[1]);
    if (!cache_heads_fit(m, in->args[1], kc->dim[1] / (q->dim[0] / heads)))
        REFUSE("attn_scores: the head-major cache has other kv heads than q's heads give");
    int64_t dim[2] = {heads, kc->dim[0]};
    return make(out, DT_F32, 1, 2, dim, 2u, why, size);
}

RULE(rule_attn_apply)
{
    UNUSED;
    const ir_type *p = &args[0], *vc = &args[1];
    int64_t kvh = in->iattr[0];
    if (p->rank != 2 || p->seq != 2u || !p->tok || !computable(p) || !is_cache(vc))
        REFUSE("attn_apply(probs, v_cache, kv_heads) needs probs [heads, S] and a cache");
    if (kvh <= 0 || vc->dim[1] % kvh || p->dim[0] % kvh || p->dim[1] != vc->dim[0])
        REFUSE("attn_apply: %lld heads of probs over %lld positions do not fit a cache of "
               "%lld x %lld with %lld kv heads", (long long)p->dim[0], (long long)p->dim[1],
               (long long)vc->dim[0], (long long)vc->dim[1], (long long)kvh);
    if (!cache_heads_fit(m, in->args[1], kvh))
        REFUSE("attn_apply: the head-major cache has other kv heads than %lld", (long long)kvh);
    int64_t n;
    if (__builtin_mul_overflow(p->dim[0], vc->dim[1] / kvh, &n))
        REFUSE("attn_apply: the result is too large");
    return make_vec(out, DT_F32, 1, n, why, size);
}

/* attention q, k_cache, v_cache: q [heads * dh], k [S, kv_heads * dh], v [S, kv_heads *
 * dv] of one capacity -> [heads * dv]. */
RULE(rule_attention)
{
    UNUSED;
    const ir_type *q = &args[0], *kc = &args[1], *vc = &args[2];
    int64_t heads = in->iattr[0], kvh = in->iattr[1];
    if (!is_vector(q) || !computable(q) || !is_cache(kc) || !is_cache(vc))
        REFUSE("attention(q, k_cache, v_cache) needs a vector and two caches");
    if (heads <= 0 || kvh <= 0 || heads % kvh || q->dim[0] % heads ||
        kc->dim[1] != kvh * (q->dim[0] / heads) || vc->dim[1] % kvh || kc->dim[0] != vc->dim[0])
        REFUSE("attention: q of %lld with %lld heads does not fit caches of %lld x %lld and "
               "%lld x %lld with %lld kv heads", (long long)q->dim[0], (long long)heads,
               (long long)kc->dim[0], (long long)kc->dim[1], (long long)vc->dim[0],
               (long long)vc->dim[1], (long long)kvh);
    if (!cache_heads_fit(m, in->args[1], kvh) || !cache_heads_fit(m, in->args[2], kvh))
        REFUSE("attention: a head-major cache has other kv heads than %lld", (long long)kvh);
    if (!isfinite(in->fattr))
        REFUSE("attention's scale must be a finite number, not %g", in->fattr);
    int64_t n;
    if (__builtin_mul_overflow(heads, vc->dim[1] / kvh, &n))
        REFUSE("attention: the result is too large");
    return make_vec(out, DT_F32, 1, n, why, size);
}

RULE(rule_accum_if)
{
    UNUSED;
    const ir_type *a = &args[0], *b = &args[1];
    if (a->rank != b->rank || a->seq != b->seq || a->dtype != DT_F32 || b->dtype != DT_F32 ||
        memcmp(a->dim, b->dim, sizeof(int64_t) * (size_t)a->rank) || args[2].rank != 0)
        REFUSE("the terms of this sum have different shapes");
    return make(out, DT_F32, any_tok(in, args), a->rank, a->dim, a->seq, why, size);
}

RULE(rule_stat)
{
    UNUSED;
    if (args[0].rank != 0 || !computable(&args[0]))
        REFUSE("a statistic must be a scalar");
    if (in->iattr[0] < 0 || in->iattr[0] >= m->nstats)
        REFUSE("statistic #%lld does not exist", (long long)in->iattr[0]);
    *out = ir_type_scalar(DT_F32);
    return 0;
}

RULE(rule_output)
{
    UNUSED;
    const ir_type *t = &args[0];
    if (!is_vector(t) || t->dtype != DT_F32) {
        char buf[64];
        REFUSE("forward must return a vector of logits, not %s%s", t->rank ? "a tensor " : "",
               t->rank ? ir_shape_str(t, buf, sizeof buf) : "a scalar");
    }
    if (!t->tok)
        REFUSE("forward's logits must depend on the token");
    *out = ir_type_scalar(DT_F32);
    return 0;
}

int ir_infer(const ir_module *m, const ir_inst *in, const ir_type *args, ir_type *out,
             char *why, size_t size)
{
    if ((unsigned)in->op >= IR_OP_COUNT || in->nargs != ir_ops[in->op].arity) {
        snprintf(why, size, "bad op or operand count");
        return -1;
    }
    return ir_ops[in->op].rule(m, in, args, out, why, size);
}
