/* ir.c - building IR modules and describing types.
 *
 * Modules own growable arrays of instructions, tensors, parameters and statistics. Strings
 * (names, labels) are interned (base.h) and never freed here. Every type made from numbers
 * that a spec controls goes through ir_type_make, which refuses zero or negative dims and
 * element counts past IR_MAX_ELEMS, so shape arithmetic can never overflow later.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define GROW(arr, n, cap)                                                                      \
    do {                                                                                       \
        if ((n) == (cap)) {                                                                    \
            (cap) = (cap) ? 2 * (cap) : 16;                                                    \
            void *grown_ = realloc((arr), (size_t)(cap) * sizeof *(arr));                      \
            if (!grown_)                                                                       \
                DIE("out of memory");                                                          \
            (arr) = grown_;                                                                    \
        }                                                                                      \
    } while (0)

ir_module *ir_module_new(const char *name)
{
    ir_module *m = calloc(1, sizeof *m);
    if (!m)
        DIE("out of memory");
    m->name = name;
    m->output = -1;
    m->t_max = IR_DEFAULT_BATCH;
    return m;
}

void ir_module_free(ir_module *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->tensors);
    free(m->rtparams);
    free(m->stats);
    free(m->insts);
    free(m);
}

int ir_add_param(ir_module *m, const char *name, const char *text)
{
    GROW(m->params, m->nparams, m->cparams);
    m->params[m->nparams] = (ir_param){name, text};
    return m->nparams++;
}

int ir_add_tensor(ir_module *m, const char *name, const char *decl, ir_type type, src_loc loc)
{
    GROW(m->tensors, m->ntensors, m->ctensors);
    m->tensors[m->ntensors] = (ir_tensor){name, decl, type, loc, NULL, IR_LAYOUT_ROWS};
    return m->ntensors++;
}

int ir_add_rtparam(ir_module *m, const char *name, double value)
{
    GROW(m->rtparams, m->nrtparams, m->crtparams);
    m->rtparams[m->nrtparams] = (ir_rtparam){name, (double)(float)value};
    return m->nrtparams++;
}

int ir_add_stat(ir_module *m, const char *name)
{
    for (int i = 0; i < m->nstats; i++)
        if (strcmp(m->stats[i].name, name) == 0)
            return i;
    GROW(m->stats, m->nstats, m->cstats);
    m->stats[m->nstats] = (ir_stat){name};
    return m->nstats++;
}

ir_inst ir_inst_make(ir_op op, int nargs, const int *args)
{
    ir_inst in;
    memset(&in, 0, sizeof in);
    in.op = op;
    in.nargs = nargs;
    for (int i = 0; i < nargs && i < IR_MAX_ARGS; i++)
        in.args[i] = args[i];
    in.guard = -1;
    return in;
}

int ir_append(ir_module *m, const ir_inst *proto)
{
    if (proto->nargs != ir_ops[proto->op].arity || proto->nargs > IR_MAX_ARGS)
        DIE("op %s takes %d operands, given %d", ir_ops[proto->op].name, ir_ops[proto->op].arity,
            proto->nargs);
    GROW(m->insts, m->ninsts, m->cinsts);
    ir_inst *in = &m->insts[m->ninsts];
    *in = *proto;
    in->fattr = (double)(float)in->fattr;   /* float attributes are f32 values */
    return m->ninsts++;
}

void ir_set_storage(ir_module *m, int t, ir_dtype dt)
{
    m->tensors[t].type.dtype = dt;
    for (int i = 0; i < m->ninsts; i++)
        if (m->insts[i].op == IR_weight && m->insts[i].iattr[0] == t)
            m->insts[i].type.dtype = dt;
}

void ir_module_derive(ir_module *m)
{
    m->output = -1;
    m->ctx = 0;
    m->vocab = 0;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->op == IR_output && in->nargs == 1) {
            m->output = in->args[0];
            const ir_type *t = &m->insts[in->args[0]].type;
            m->vocab = t->rank == 1 ? t->dim[0] : 0;
        }
        if (in->op == IR_cache && (!m->ctx || in->type.dim[0] < m->ctx))
            m->ctx = in->type.dim[0];
    }
}

int ir_needs_storage(const ir_inst *in)
{
    switch (in->op) {
    case IR_token: case IR_weight: case IR_rtparam: case IR_stat: case IR_output:
        return 0;
    default:
        return 1;
    }
}

int ir_type_make(ir_type *out, ir_dtype dt, int tok, int rank, const int64_t *dim,
                 unsigned seq, char *why, size_t size)
{
    memset(out, 0, sizeof *out);
    if (rank < 0 || rank > IR_MAX_RANK) {
        snprintf(why, size, "a tensor has at most %d dimensions", IR_MAX_RANK);
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dim[i] < 1) {
            snprintf(why, size, "dimension %d of a tensor must be positive, not %lld", i + 1,
                     (long long)dim[i]);
            return -1;
        }
        if (__builtin_mul_overflow(n, dim[i], &n) || n > IR_MAX_ELEMS) {
            snprintf(why, size, "a tensor of more than 2^36 elements%s is too large",
                     tok ? " per token" : "");
            return -1;
        }
        out->dim[i] = dim[i];
    }
    out->dtype = dt;
    out->tok = tok != 0;
    out->rank = rank;
    out->seq = seq & ((1u << rank) - 1);
    return 0;
}

ir_type ir_type_scalar(ir_dtype dt)
{
    return (ir_type){.dtype = dt};
}

int ir_type_equal(const ir_type *a, const ir_type *b)
{
    if (a->dtype != b->dtype || a->tok != b->tok || a->rank != b->rank || a->seq != b->seq)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return 0;
    return 1;
}

int64_t ir_type_numel(const ir_type *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dim[i];
    return n;
}

int ir_dtype_is_storage(ir_dtype dt)
{
    return dt == DT_F16 || dt == DT_BF16 || dt == DT_Q8_0 || dt == DT_Q4_0;
}

int64_t ir_value_bytes(const ir_module *m, const ir_inst *in)
{
    /* activations are 4-byte f32, i32 or bool (0.0f / 1.0f); a cache keeps its storage type */
    int elem = in->type.dtype == DT_F16 || in->type.dtype == DT_BF16 ? 2 : 4;
    int64_t n = ir_type_numel(&in->type) * elem;
    return in->type.tok ? n * m->t_max : n;
}

static const char *const dtype_names[DT_COUNT] = {
    [DT_F32] = "f32", [DT_I32] = "i32", [DT_BOOL] = "bool", [DT_F16] = "f16",
    [DT_BF16] = "bf16", [DT_Q8_0] = "q8_0", [DT_Q4_0] = "q4_0",
};

const char *ir_dtype_name(ir_dtype dt)
{
    return (unsigned)dt < DT_COUNT ? dtype_names[dt] : "?";
}

int ir_dtype_lookup(const char *name)
{
    for (int i = 0; i < DT_COUNT; i++)
        if (!strcmp(dtype_names[i], name))
            return i;
    return -1;
}

static size_t dims_str(const ir_type *t, char *buf, size_t size, size_t n, int first)
{
    for (int i = 0; i < t->rank && n < size; i++) {
        const char *sep = i || !first ? ", " : "";
        if (t->seq & (1u << i))
            n += (size_t)snprintf(buf + n, size - n, "%sS<=%lld", sep, (long long)t->dim[i]);
        else
            n += (size_t)snprintf(buf + n, size - n, "%s%lld", sep, (long long)t->dim[i]);
    }
    if (n < size)
        n += (size_t)snprintf(buf + n, size - n, "]");
    return n;
}

char *ir_type_str(const ir_type *t, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s[%s", ir_dtype_name(t->dtype), t->tok ? "T" : "");
    dims_str(t, buf, size, n, !t->tok);
    return buf;
}

char *ir_shape_str(const ir_type *t, char *buf, size_t size)
{
    ir_type plain = *t;
    plain.seq = 0;             /* a spec author sees capacities */
    size_t n = (size_t)snprintf(buf, size, "[");
    dims_str(&plain, buf, size, n, 1);
    return buf;
}

/* Instructions that neither compute per token nor need a slot of their own (views, run-time
 * parameters, the tokens, constants) do not interrupt a guard region: the front end makes
 * weight views where a guarded term first reads them. */
static int region_transparent(const ir_inst *in)
{
    return in->op == IR_weight || in->op == IR_rtparam || in->op == IR_token || in->op == IR_const;
}

int *ir_guard_regions(const ir_module *m)
{
    int *end = malloc(sizeof(int) * (size_t)(m->ninsts ? m->ninsts : 1));
    if (!end)
        DIE("out of memory");
    int next = -1;             /* the next instruction that is not transparent */
    for (int i = m->ninsts - 1; i >= 0; i--) {
        int g = m->insts[i].guard;
        end[i] = g >= 0 && next >= 0 && m->insts[next].guard == g ? end[next] : i;
        if (!region_transparent(&m->insts[i]))
            next = i;
    }
    return end;
}

long ir_scope_index(const char *scope, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = scope; p && *p; p++)
        if ((p == scope || p[-1] == ' ') && !strncmp(p, key, n) && p[n] == '=' &&
            p[n + 1] >= '0' && p[n + 1] <= '9') {
            long v = strtol(p + n + 1, NULL, 10);
            return v > (1L << 30) ? -1 : v;
        }
    return -1;
}
