/* verify.c - the IR verifier, run after the front end and between passes.
 *
 * Checks what every pass may rely on: operands defined before use and alive, arity and
 * operand types as each op requires, weight views inside their tensor, guards well formed
 * (a guarded value is used only under the same guard or as the term of an accum_if on that
 * guard), exactly one output. Each violation is printed; the count is returned.
 */
#include <stdarg.h>

#include "ir.h"

static int errors;

static void fail(const ir_module *m, int id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(const ir_module *m, int id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln: IR verifier: %s: %%%d (%s): ", m->name, id,
            id >= 0 && id < m->ninsts ? ir_ops[m->insts[id].op].name : "?");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    errors++;
}

static const ir_type *arg_type(const ir_module *m, const ir_inst *in, int k)
{
    return &m->insts[in->args[k]].type;
}

static int is_scalar(const ir_type *t) { return t->rank == 0; }

static void check_elementwise(const ir_module *m, int id, const ir_inst *in)
{
    const ir_type *shape = NULL;
    for (int k = 0; k < in->nargs; k++) {
        const ir_type *t = arg_type(m, in, k);
        if (is_scalar(t))
            continue;
        if (shape && (shape->rank != t->rank || ir_type_numel(shape) != ir_type_numel(t)))
            fail(m, id, "operand %d has another shape than operand 0", k);
        shape = t;
    }
    if (shape ? in->type.rank != shape->rank : in->type.rank != 0)
        fail(m, id, "result shape differs from the operands'");
    int want_bool = (ir_ops[in->op].flags & OPF_BOOL) != 0;
    if ((in->type.dtype == DT_BOOL) != want_bool)
        fail(m, id, "result dtype should be %s", want_bool ? "bool" : "f32");
}

static void check_op(const ir_module *m, int id, const ir_inst *in)
{
    const ir_type *t0 = in->nargs > 0 ? arg_type(m, in, 0) : NULL;
    const ir_type *t1 = in->nargs > 1 ? arg_type(m, in, 1) : NULL;
    if (ir_ops[in->op].flags & OPF_ELEMWISE) {
        check_elementwise(m, id, in);
        return;
    }
    switch (in->op) {
    case IR_weight: {
        if (in->iattr[0] < 0 || in->iattr[0] >= m->ntensors) {
            fail(m, id, "tensor @%lld does not exist", (long long)in->iattr[0]);
            break;
        }
        const ir_type *tt = &m->tensors[in->iattr[0]].type;
        int64_t rows = in->type.rank == 2 ? in->type.dim[0] : 1;
        int64_t cols = in->type.rank >= 1 ? in->type.dim[in->type.rank - 1] : 1;
        int64_t last = in->iattr[1] + (rows - 1) * in->iattr[2] + cols;
        if (in->iattr[1] < 0 || last > ir_type_numel(tt) || (rows > 1 && in->iattr[2] < cols))
            fail(m, id, "view lies outside tensor @%lld", (long long)in->iattr[0]);
        break;
    }
    case IR_embed:
        if (t0->rank != 2 || t1->dtype != DT_I32 || t1->rank != 0 || in->type.rank != 1 ||
            in->type.dim[0] != t0->dim[1])
            fail(m, id, "needs a [V, d] table and an i32 token, gives [d]");
        break;
    case IR_linear:
        if (t0->rank != 1 || t1->rank != 2 || t1->dim[1] != t0->dim[0] || in->type.rank != 1 ||
            in->type.dim[0] != t1->dim[0])
            fail(m, id, "needs x [in] and W [out, in], gives [out]");
        break;
    case IR_sum: case IR_mean: case IR_amax: case IR_count:
        if (in->type.rank != 0)
            fail(m, id, "a reduction gives a scalar");
        break;
    case IR_dot:
        if (t0->rank != 1 || t1->rank != 1 || t0->dim[0] != t1->dim[0] || in->type.rank != 0)
            fail(m, id, "needs two vectors of one length");
        break;
    case IR_extract:
        if (t0->rank != 1 || in->iattr[0] < 0 || in->iattr[0] >= t0->dim[0])
            fail(m, id, "index out of range");
        break;
    case IR_slice:
        if (t0->rank != 1 || in->iattr[0] < 0 || in->iattr[0] + in->type.dim[0] > t0->dim[0])
            fail(m, id, "slice out of range");
        break;
    case IR_rope:
        if (t0->rank != 1 || in->iattr[0] <= 0 || t0->dim[0] % (2 * in->iattr[0]) != 0 ||
            in->iattr[1] <= 0 || in->iattr[1] % 2 || in->iattr[1] > t0->dim[0] / in->iattr[0])
            fail(m, id, "needs [heads * head_dim] with an even head_dim and rot <= head_dim");
        break;
    case IR_topk:
        if (t0->rank != 1 || in->type.rank != 1 || in->type.dim[0] != t0->dim[0] ||
            in->iattr[0] < 0 || in->iattr[0] > t0->dim[0])
            fail(m, id, "needs a vector and 0 <= k <= its length");
        break;
    case IR_cache:
        if (t0->rank != 1 || in->type.rank != 2 || in->type.seq != 1u ||
            in->type.dim[1] != t0->dim[0])
            fail(m, id, "gives [S, width] from [width]");
        break;
    case IR_attn_scores:
        if (t0->rank != 1 || t1->rank != 2 || !(t1->seq & 1u) || in->iattr[0] <= 0 ||
            t0->dim[0] % in->iattr[0] != 0 || t1->dim[1] % (t0->dim[0] / in->iattr[0]) != 0)
            fail(m, id, "needs q [H*dh] and a cache [S, Hkv*dh]");
        break;
    case IR_attn_apply:
        if (t0->rank != 2 || !(t0->seq & 2u) || t1->rank != 2 || !(t1->seq & 1u) ||
            in->iattr[0] <= 0 || t1->dim[1] % in->iattr[0] != 0 || t0->dim[0] % in->iattr[0])
            fail(m, id, "needs probs [H, S] and a cache [S, Hkv*dh]");
        break;
    case IR_accum_if:
        if (!ir_type_equal(t0, t1) || arg_type(m, in, 2)->rank != 0)
            fail(m, id, "needs two values of one type and a scalar predicate");
        break;
    case IR_stat:
        if (t0->rank != 0 || in->iattr[0] < 0 || in->iattr[0] >= m->nstats)
            fail(m, id, "needs a scalar and an existing slot");
        break;
    default:
        break;
    }
}

/* A guarded value may be read only under its own guard, or as an accum_if's term. */
static void check_guard_use(const ir_module *m, int id, const ir_inst *in, int k)
{
    const ir_inst *def = &m->insts[in->args[k]];
    if (def->guard < 0 || def->guard == in->guard)
        return;
    if (in->op == IR_accum_if && k == 1 && in->args[2] == def->guard)
        return;
    fail(m, id, "reads %%%d, which exists only when %%%d is true", in->args[k], def->guard);
}

int ir_verify(const ir_module *m)
{
    errors = 0;
    int outputs = 0;
    for (int id = 0; id < m->ninsts; id++) {
        const ir_inst *in = &m->insts[id];
        if (in->dead)
            continue;
        if ((int)in->op < 0 || in->op >= IR_OP_COUNT) {
            fail(m, id, "unknown op");
            continue;
        }
        if (in->nargs != ir_ops[in->op].arity) {
            fail(m, id, "has %d operands, the op takes %d", in->nargs, ir_ops[in->op].arity);
            continue;
        }
        int ok = 1;
        for (int k = 0; k < in->nargs; k++)
            if (in->args[k] < 0 || in->args[k] >= id || m->insts[in->args[k]].dead) {
                fail(m, id, "operand %d is not a live earlier value", k);
                ok = 0;
            }
        if (in->guard >= 0 && (in->guard >= id || m->insts[in->guard].type.rank != 0 ||
                               m->insts[in->guard].dead)) {
            fail(m, id, "guard is not a live earlier scalar");
            ok = 0;
        }
        if (!ok)
            continue;
        for (int k = 0; k < in->nargs; k++)
            check_guard_use(m, id, in, k);
        check_op(m, id, in);
        if (in->op == IR_output)
            outputs++;
    }
    if (outputs != 1)
        fail(m, -1, "has %d outputs, needs exactly one", outputs);
    return errors;
}
