/* ir.c - building IR modules and describing types.
 *
 * Modules own growable arrays of instructions, tensors, parameters and statistics. Strings
 * (names, labels) are interned by the front end and never freed here.
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
    m->tensors[m->ntensors] = (ir_tensor){name, decl, type, loc};
    return m->ntensors++;
}

int ir_add_rtparam(ir_module *m, const char *name, double value)
{
    GROW(m->rtparams, m->nrtparams, m->crtparams);
    m->rtparams[m->nrtparams] = (ir_rtparam){name, value};
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

int ir_emit(ir_module *m, ir_op op, int nargs, const int *args, ir_type type)
{
    if (nargs != ir_ops[op].arity || nargs > IR_MAX_ARGS)
        DIE("op %s takes %d operands, given %d", ir_ops[op].name, ir_ops[op].arity, nargs);
    GROW(m->insts, m->ninsts, m->cinsts);
    ir_inst *in = &m->insts[m->ninsts];
    memset(in, 0, sizeof *in);
    in->op = op;
    in->nargs = nargs;
    for (int i = 0; i < nargs; i++)
        in->args[i] = args[i];
    in->type = type;
    in->guard = -1;
    in->slot = -1;
    return m->ninsts++;
}

int ir_needs_storage(const ir_inst *in)
{
    switch (in->op) {
    case IR_token: case IR_position: case IR_weight: case IR_rtparam:
    case IR_stat: case IR_output:
        return 0;
    default:
        return !in->dead;
    }
}

ir_type ir_type_scalar(ir_dtype dt)
{
    return (ir_type){.dtype = dt};
}

ir_type ir_type_vec(ir_dtype dt, int64_t n)
{
    return (ir_type){.dtype = dt, .rank = 1, .dim = {n}};
}

ir_type ir_type_mat(ir_dtype dt, int64_t r, int64_t c)
{
    return (ir_type){.dtype = dt, .rank = 2, .dim = {r, c}};
}

int ir_type_equal(const ir_type *a, const ir_type *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank || a->seq != b->seq)
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

const char *ir_dtype_name(ir_dtype dt)
{
    switch (dt) {
    case DT_F32: return "f32";
    case DT_I32: return "i32";
    case DT_BOOL: return "bool";
    }
    return "?";
}

char *ir_type_str(const ir_type *t, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s[", ir_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && n < size; i++) {
        const char *sep = i ? ", " : "";
        if (t->seq & (1u << i))
            n += (size_t)snprintf(buf + n, size - n, "%sS<=%lld", sep, (long long)t->dim[i]);
        else
            n += (size_t)snprintf(buf + n, size - n, "%s%lld", sep, (long long)t->dim[i]);
    }
    if (n < size)
        snprintf(buf + n, size - n, "]");
    return buf;
}
