/* verify.c - the IR verifier, run after the front end, after reading a dump and between
 * passes.
 *
 * Checks what every pass may rely on: operands defined before use, arity, every type equal
 * to what the op's typing rule (typing.c) gives, linear and embed reading weights, guards
 * well formed (a guarded value is used only under the same guard or as the term of an
 * accum_if on that guard), computed tensors of their recipe's shape, exactly one output,
 * and once memory is planned, every stored value inside its region. Each violation is printed; the count is returned.
 */
#include <stdarg.h>

#include <string.h>

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

static void check_type(const ir_module *m, int id, const ir_inst *in)
{
    ir_type args[IR_MAX_ARGS], want;
    char why[256], a[96], b[96];
    for (int k = 0; k < in->nargs; k++)
        args[k] = m->insts[in->args[k]].type;
    if (ir_infer(m, in, args, &want, why, sizeof why) != 0) {
        fail(m, id, "%s", why);
        return;
    }
    if (!ir_type_equal(&want, &in->type))
        fail(m, id, "has type %s, its operands give %s", ir_type_str(&in->type, a, sizeof a),
             ir_type_str(&want, b, sizeof b));
    if ((in->op == IR_linear && m->insts[in->args[1]].op != IR_weight) ||
        (in->op == IR_embed && m->insts[in->args[0]].op != IR_weight))
        fail(m, id, "reads a matrix that is not a weight");
}

/* A guarded value may be read only under its own guard, or as an accum_if's term. */
static void check_guard_use(const ir_module *m, int id, const ir_inst *in, int k)
{
    const ir_inst *def = &m->insts[in->args[k]];
    if (def->guard < 0 || def->guard == in->guard)
        return;
    if (in->op == IR_accum_if && k == 1 && in->args[2] == def->guard)
        return;
    fail(m, id, "reads %%%d, which exists only where %%%d is true", in->args[k], def->guard);
}

static void check_memory(const ir_module *m, int id, const ir_inst *in)
{
    if (!ir_needs_storage(in)) {
        if (in->mem != MEM_NONE)
            fail(m, id, "has memory but needs none");
        return;
    }
    int64_t bytes = ir_value_bytes(m, in);
    int64_t top = in->mem == MEM_STATE ? m->state_bytes : m->frame_bytes;
    ir_mem want = in->op == IR_cache ? MEM_STATE : MEM_FRAME;
    if (in->mem != want || in->offset < 0 || in->offset % 64 || in->offset > top - bytes)
        fail(m, id, "memory %s+%lld (%lld bytes) is not inside its region",
             in->mem == MEM_STATE ? "state" : in->mem == MEM_FRAME ? "frame" : "none",
             (long long)in->offset, (long long)bytes);
}

/* A computed tensor is what its recipe makes (its storage type aside). */
static void check_tensor(const ir_module *m, int t)
{
    const ir_tensor *tn = &m->tensors[t];
    if (!tn->recipe)
        return;
    ir_type want;
    char why[256], a[96], b[96];
    if (ir_recipe_type(tn->recipe, &want, why, sizeof why) != 0) {
        fprintf(stderr, "kiln: IR verifier: %s: tensor @%d: %s\n", m->name, t, why);
        errors++;
        return;
    }
    want.dtype = tn->type.dtype;
    if (!ir_type_equal(&want, &tn->type)) {
        fprintf(stderr, "kiln: IR verifier: %s: tensor @%d is %s, its recipe makes %s\n",
                m->name, t, ir_type_str(&tn->type, a, sizeof a), ir_type_str(&want, b, sizeof b));
        errors++;
    }
}

/* A panel-layout tensor (ir.h: ir_layout) is a matrix, and only what reads panels reads it:
 * a product (its weight), an embedding (its table), a widening. */
static void check_layout_use(const ir_module *m, int id, const ir_inst *in, int k)
{
    const ir_inst *a = &m->insts[in->args[k]];
    if (a->op != IR_weight || m->tensors[a->iattr[0]].layout != IR_LAYOUT_PANEL)
        return;
    int reads_panels = (in->op == IR_linear && k == 1) || (in->op == IR_embed && k == 0) ||
                       (in->op == IR_widen && k == 0);
    if (!reads_panels)
        fail(m, id, "operand %d is a view of panel tensor @%lld, which %s cannot read", k,
             (long long)a->iattr[0], ir_ops[in->op].name);
}

/* `act="q8_0"` (8-bit activations) only on a product over q8_0 or q4_0 weights. */
static void check_act(const ir_module *m, int id, const ir_inst *in)
{
    if (in->op != IR_linear || !in->sattr)
        return;
    ir_dtype w = m->insts[in->args[1]].type.dtype;
    if (strcmp(in->sattr, "q8_0") || (w != DT_Q8_0 && w != DT_Q4_0))
        fail(m, id, "act=\"%s\": only \"q8_0\", and only over q8_0 or q4_0 weights", in->sattr);
}

int ir_verify(const ir_module *m)
{
    errors = 0;
    int outputs = 0;
    for (int t = 0; t < m->ntensors; t++) {
        check_tensor(m, t);
        if (m->tensors[t].layout == IR_LAYOUT_PANEL && m->tensors[t].type.rank != 2) {
            fprintf(stderr, "kiln: IR verifier: %s: tensor @%d: the panel layout is for "
                    "matrices, this one has rank %d\n", m->name, t, m->tensors[t].type.rank);
            errors++;
        }
    }
    for (int id = 0; id < m->ninsts; id++) {
        const ir_inst *in = &m->insts[id];
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
            if (in->args[k] < 0 || in->args[k] >= id ||
                (ir_ops[m->insts[in->args[k]].op].flags & OPF_NOVALUE)) {
                fail(m, id, "operand %d is not an earlier value", k);
                ok = 0;
            }
        if (in->guard >= 0 &&
            (in->guard >= id || m->insts[in->guard].type.rank != 0 ||
             (ir_ops[in->op].flags & OPF_SOURCE) || in->op == IR_cache)) {
            fail(m, id, "guard is not an earlier scalar, or the op cannot be guarded");
            ok = 0;
        }
        if (!ok)
            continue;
        for (int k = 0; k < in->nargs; k++) {
            check_guard_use(m, id, in, k);
            check_layout_use(m, id, in, k);
        }
        check_act(m, id, in);
        check_type(m, id, in);
        if (m->planned)
            check_memory(m, id, in);
        if (in->op == IR_output)
            outputs++;
    }
    if (outputs != 1)
        fail(m, -1, "has %d outputs, needs exactly one", outputs);
    if (m->t_max < 1 || m->t_max > 65536)
        fail(m, -1, "the block size T<=%lld is not in 1..65536", (long long)m->t_max);
    return errors;
}
