/* emit_c.c - the C backend: one IR module in, one C file out.
 *
 * The file defines `kiln_model` (runtime/kiln_rt.h): the tensor table the blob must match,
 * run-time parameters, statistics, KV caches, and the forward function, which runs the
 * instructions in order. Every value lives at a fixed offset of one arena whose size is
 * known here (caches included, since they persist across steps). Shapes are literals, so the
 * C compiler specializes the kernels of runtime/kernels.h it inlines. Elementwise ops come
 * from the op table's C expressions. A guarded instruction runs inside `if (guard)`.
 *
 * Values that need no storage: the token (a parameter), weights (pointers into the blob),
 * constants (literals) and run-time parameters (read from the context).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

typedef struct emitter {
    FILE *out;
    const ir_module *m;
    int64_t *off;              /* arena offset of each value (floats), -1 if none */
    int64_t arena;
} emitter;

/* Constants have a slot too (set at the start of each step), so any op can point at them. */
static int has_storage(const ir_inst *in) { return ir_needs_storage(in); }

/* The float constant v as an exact C expression. */
static const char *float_lit(double v, char *buf, size_t size)
{
    snprintf(buf, size, "(float)%a", (double)(float)v);
    return buf;
}

/* A pointer expression to value id's first element. */
static const char *ptr(const emitter *e, int id, char *buf, size_t size)
{
    const ir_inst *in = &e->m->insts[id];
    switch (in->op) {
    case IR_weight:
        snprintf(buf, size, "(c->w[%" PRId64 "] + %" PRId64 ")", in->iattr[0], in->iattr[1]);
        break;
    case IR_rtparam:
        snprintf(buf, size, "(c->rtparams + %" PRId64 ")", in->iattr[0]);
        break;
    default:
        if (e->off[id] < 0)
            DIE("value %%%d (%s) has no storage", id, ir_ops[in->op].name);
        snprintf(buf, size, "(A + %" PRId64 ")", e->off[id]);
    }
    return buf;
}

/* A scalar expression for value id (a scalar). */
static const char *scalar(const emitter *e, int id, char *buf, size_t size)
{
    const ir_inst *in = &e->m->insts[id];
    if (in->op == IR_const)
        return float_lit(in->fattr, buf, size);
    if (in->op == IR_token || in->op == IR_position)
        return snprintf(buf, size, "(float)%s", in->op == IR_token ? "token" : "pos"), buf;
    char p[96];
    snprintf(buf, size, "%s[0]", ptr(e, id, p, sizeof p));
    return buf;
}

static int64_t numel(const ir_type *t) { return ir_type_numel(t); }

/* The seq dimension's capacity (S), for [S, w] and [H, S] values. */
static int64_t cap_of(const ir_type *t) { return t->seq & 1u ? t->dim[0] : t->dim[1]; }

static void emit_elementwise(const emitter *e, int id, const ir_inst *in)
{
    FILE *o = e->out;
    char buf[3][128], dst[96];
    static const char names[] = "abc";
    fprintf(o, "    {\n");
    for (int k = 0; k < in->nargs; k++) {
        const ir_inst *a = &e->m->insts[in->args[k]];
        if (a->type.rank == 0)
            fprintf(o, "      const float %c0 = %s;\n", names[k],
                    scalar(e, in->args[k], buf[k], sizeof buf[k]));
        else
            fprintf(o, "      const float *%cp = %s;\n", names[k],
                    ptr(e, in->args[k], buf[k], sizeof buf[k]));
    }
    ptr(e, id, dst, sizeof dst);
    if (in->type.rank == 0) {
        fprintf(o, "      const int64_t i = 0;\n");
    } else if (in->type.seq == 2u) {   /* [rows, S]: only the first n columns are valid */
        fprintf(o, "      for (int64_t r = 0; r < %" PRId64 "; r++)\n"
                   "      for (int64_t t = 0; t < n; t++) {\n"
                   "        const int64_t i = r * %" PRId64 " + t;\n",
                in->type.dim[0], in->type.dim[1]);
    } else if (in->type.seq == 1u) {   /* [S, w]: the first n rows */
        fprintf(o, "      for (int64_t i = 0; i < n * %" PRId64 "; i++) {\n", in->type.dim[1]);
    } else {
        fprintf(o, "      for (int64_t i = 0; i < %" PRId64 "; i++) {\n", numel(&in->type));
    }
    for (int k = 0; k < in->nargs; k++) {
        const ir_inst *a = &e->m->insts[in->args[k]];
        if (a->type.rank == 0)
            fprintf(o, "        const float %c = %c0;\n", names[k], names[k]);
        else
            fprintf(o, "        const float %c = %cp[i];\n", names[k], names[k]);
    }
    fprintf(o, "        %s[i] = %s;\n", dst, ir_ops[in->op].cexpr);
    if (in->type.rank == 0)
        fprintf(o, "    }\n");
    else
        fprintf(o, "      }\n    }\n");
}

/* A reduction to a scalar; the caller has declared `a_`, the operand. */
static void emit_reduce(const emitter *e, int id, const ir_inst *in)
{
    char b[96], d[96];
    int64_t n = numel(&e->m->insts[in->args[0]].type);
    ptr(e, id, d, sizeof d);
    FILE *o = e->out;
    switch (in->op) {
    case IR_sum: case IR_mean: case IR_count: {
        char div[48] = "";
        if (in->op == IR_mean)
            snprintf(div, sizeof div, " / (float)%" PRId64, n);
        fprintf(o, "    { float s = 0.0f; for (int64_t i = 0; i < %" PRId64 "; i++) s += %s;"
                   " %s[0] = s%s; }\n",
                n, in->op == IR_count ? "(a_[i] != 0.0f)" : "a_[i]", d, div);
        break;
    }
    case IR_amax:
        fprintf(o, "    { float s = a_[0]; for (int64_t i = 1; i < %" PRId64 "; i++)"
                   " if (a_[i] > s) s = a_[i]; %s[0] = s; }\n", n, d);
        break;
    case IR_dot:
        ptr(e, in->args[1], b, sizeof b);
        fprintf(o, "    { const float *b_ = %s; float s = 0.0f;"
                   " for (int64_t i = 0; i < %" PRId64 "; i++) s += a_[i] * b_[i];"
                   " %s[0] = s; }\n", b, n, d);
        break;
    default:
        DIE("not a reduction");
    }
}

static void emit_inst(const emitter *e, int id)
{
    const ir_inst *in = &e->m->insts[id];
    const ir_type *t = &in->type;
    FILE *o = e->out;
    char d[96], a[96], b[96], s[96];
    const ir_type *t0 = in->nargs > 0 ? &e->m->insts[in->args[0]].type : NULL;
    const ir_type *t1 = in->nargs > 1 ? &e->m->insts[in->args[1]].type : NULL;
    if (has_storage(in))
        ptr(e, id, d, sizeof d);
    a[0] = b[0] = 0;
    if (in->nargs > 0 && e->m->insts[in->args[0]].type.dtype != DT_I32)
        ptr(e, in->args[0], a, sizeof a);
    if (in->nargs > 1 && e->m->insts[in->args[1]].type.dtype != DT_I32)
        ptr(e, in->args[1], b, sizeof b);

    if (ir_ops[in->op].flags & OPF_ELEMWISE) {
        emit_elementwise(e, id, in);
        return;
    }
    switch (in->op) {
    case IR_token: case IR_position: case IR_weight: case IR_const: case IR_rtparam:
        return;
    case IR_zeros:
        fprintf(o, "    memset(%s, 0, %" PRId64 " * sizeof(float));\n", d, numel(t));
        return;
    case IR_embed: {   /* the row of a weight view: rows lie `stride` floats apart */
        const ir_inst *w = &e->m->insts[in->args[0]];
        const char *row = e->m->insts[in->args[1]].op == IR_position ? "pos" : "token";
        fprintf(o, "    if ((uint32_t)%s < %" PRId64 "u) krt_embed(%s, %s, %s, %" PRId64 ", %" PRId64
                   "); else memset(%s, 0, %" PRId64 " * sizeof(float));\n",
                row, w->type.dim[0], d, a, row, w->iattr[2], t->dim[0], d, t->dim[0]);
        return;
    }
    case IR_topk:   /* k passes, each taking the largest element not yet taken */
        fprintf(o, "    memset(%s, 0, %" PRId64 " * sizeof(float));\n"
                   "    for (int64_t k = 0; k < %" PRId64 "; k++) {\n"
                   "      int64_t best = -1;\n"
                   "      for (int64_t i = 0; i < %" PRId64 "; i++)\n"
                   "        if (%s[i] == 0.0f && (best < 0 || %s[i] > %s[best])) best = i;\n"
                   "      %s[best] = 1.0f;\n    }\n",
                d, numel(t), in->iattr[0], numel(t), d, a, a, d);
        return;
    case IR_linear: {
        const ir_inst *w = &e->m->insts[in->args[1]];
        if (w->op != IR_weight)
            DIE("linear: the matrix of %%%d is not a weight", id);
        /* large products may be split across threads; small ones stay inline */
        int par = t1->dim[0] * t1->dim[1] >= 1 << 15;
        fprintf(o, "    krt_linear%s(%s%s, %s, %" PRId64 ", %s, %" PRId64 ", %" PRId64 ");\n",
                par ? "_mt" : "", par ? "c, " : "", d, b, w->iattr[2], a, t1->dim[0],
                t1->dim[1]);
        return;
    }
    case IR_sum: case IR_mean: case IR_amax: case IR_count: case IR_dot:
        fprintf(o, "    { const float *a_ = %s;\n", a);
        emit_reduce(e, id, in);
        fprintf(o, "    }\n");
        return;
    case IR_extract:
        fprintf(o, "    %s[0] = %s[%" PRId64 "];\n", d, a, in->iattr[0]);
        return;
    case IR_slice:
        fprintf(o, "    memcpy(%s, %s + %" PRId64 ", %" PRId64 " * sizeof(float));\n", d, a,
                in->iattr[0], numel(t));
        return;
    case IR_concat:
        fprintf(o, "    memcpy(%s, %s, %" PRId64 " * sizeof(float));\n", d, a, numel(t0));
        fprintf(o, "    memcpy(%s + %" PRId64 ", %s, %" PRId64 " * sizeof(float));\n", d,
                numel(t0), b, numel(t1));
        return;
    case IR_softmax:   /* copy, then in place; of [rows, S] only the n live columns */
        if (t->seq == 2u) {
            fprintf(o, "    for (int64_t r = 0; r < %" PRId64 "; r++)\n"
                       "      memcpy(%s + r * %" PRId64 ", %s + r * %" PRId64
                       ", (size_t)n * sizeof(float));\n",
                    t->dim[0], d, t->dim[1], a, t->dim[1]);
            fprintf(o, "    krt_softmax_rows(%s, %" PRId64 ", n, %" PRId64 ");\n", d, t->dim[0],
                    t->dim[1]);
        } else if (t->seq) {
            DIE("softmax over a cache");
        } else {
            fprintf(o, "    memcpy(%s, %s, %" PRId64 " * sizeof(float));\n", d, a, numel(t));
            fprintf(o, "    krt_softmax_rows(%s, 1, %" PRId64 ", %" PRId64 ");\n", d, numel(t),
                    numel(t));
        }
        return;
    case IR_rope:
        fprintf(o, "    memcpy(%s, %s, %" PRId64 " * sizeof(float));\n", d, a, numel(t));
        fprintf(o, "    krt_rope(%s, %" PRId64 ", %" PRId64 ", %" PRId64 ", pos, %s, %d);\n", d,
                in->iattr[0], numel(t) / in->iattr[0], in->iattr[1],
                float_lit(in->fattr, s, sizeof s),
                strcmp(in->sattr, "interleaved") == 0);
        return;
    case IR_cache:
        fprintf(o, "    krt_cache_store(%s, %s, %" PRId64 ", pos);\n", d, a, t->dim[1]);
        return;
    case IR_attn_scores: {
        int64_t heads = in->iattr[0], hd = t0->dim[0] / heads, kvh = t1->dim[1] / hd;
        fprintf(o, "    krt_attn_scores(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64
                   ", n, %" PRId64 ");\n", d, a, b, heads, kvh, hd, cap_of(t));
        return;
    }
    case IR_attn_apply: {
        int64_t kvh = in->iattr[0], hd = t1->dim[1] / kvh;
        fprintf(o, "    krt_attn_apply(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64
                   ", n, %" PRId64 ");\n", d, a, b, t0->dim[0], kvh, hd, cap_of(t0));
        return;
    }
    case IR_accum_if: {
        char p[96];
        fprintf(o, "    memcpy(%s, %s, %" PRId64 " * sizeof(float));\n", d, a, numel(t));
        fprintf(o, "    if (%s != 0.0f) for (int64_t i = 0; i < %" PRId64 "; i++) %s[i] += %s[i];\n",
                scalar(e, in->args[2], p, sizeof p), numel(t), d, b);
        return;
    }
    case IR_stat: {
        char v[96];
        fprintf(o, "    c->stat_sum[%" PRId64 "] += %s; c->stat_count[%" PRId64 "] += 1;\n",
                in->iattr[0], scalar(e, in->args[0], v, sizeof v), in->iattr[0]);
        return;
    }
    case IR_output:
        fprintf(o, "    c->logits = %s;\n", a);
        return;
    default:
        DIE("emit_c: no code for op %s", ir_ops[in->op].name);
    }
}

static void emit_string(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', o);
        if ((unsigned char)*s < 32)
            fprintf(o, "\\%03o", (unsigned char)*s);
        else
            fputc(*s, o);
    }
    fputc('"', o);
}

static void emit_tables(const emitter *e)
{
    FILE *o = e->out;
    const ir_module *m = e->m;
    fprintf(o, "static const krt_tensor_desc tensors[] = {\n");
    for (int i = 0; i < m->ntensors; i++) {
        const ir_type *t = &m->tensors[i].type;
        fprintf(o, "    {");
        emit_string(o, m->tensors[i].name);
        fprintf(o, ", KBLOB_F32, %d, {", t->rank);
        for (int k = 0; k < 4; k++)
            fprintf(o, "%s%" PRId64, k ? ", " : "", k < t->rank ? t->dim[k] : 0);
        fprintf(o, "}},\n");
    }
    fprintf(o, "    {0}\n};\n\nstatic const char *const rtparam_names[] = {");
    for (int i = 0; i < m->nrtparams; i++) {
        emit_string(o, m->rtparams[i].name);
        fprintf(o, ", ");
    }
    fprintf(o, "0};\nstatic const float rtparam_defaults[] = {");
    char buf[64];
    for (int i = 0; i < m->nrtparams; i++)
        fprintf(o, "%s, ", float_lit(m->rtparams[i].value, buf, sizeof buf));
    fprintf(o, "0};\nstatic const char *const stat_names[] = {");
    for (int i = 0; i < m->nstats; i++) {
        emit_string(o, m->stats[i].name);
        fprintf(o, ", ");
    }
    fprintf(o, "0};\nstatic const krt_cache_desc caches[] = {\n");
    int ncaches = 0;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->dead || in->op != IR_cache)
            continue;
        char label[256];
        snprintf(label, sizeof label, "%s%s%s", in->label ? in->label : "cache",
                 in->scope ? " " : "", in->scope ? in->scope : "");
        fprintf(o, "    {");
        emit_string(o, label);
        fprintf(o, ", %" PRId64 ", %" PRId64 "},\n", in->type.dim[1], in->type.dim[0]);
        ncaches++;
    }
    fprintf(o, "    {0}\n};\n\n");
    fprintf(o, "const krt_model kiln_model = {\n    .name = ");
    emit_string(o, m->name);
    fprintf(o, ",\n    .vocab = %" PRId64 ",\n    .ctx = %" PRId64 ",\n"
               "    .arena_floats = %" PRId64 ",\n"
               "    .n_tensors = %d, .tensors = tensors,\n"
               "    .n_rtparams = %d, .rtparam_names = rtparam_names,"
               " .rtparam_defaults = rtparam_defaults,\n"
               "    .n_stats = %d, .stat_names = stat_names,\n"
               "    .n_caches = %d, .caches = caches,\n"
               "    .forward = kiln_forward,\n};\n",
            m->vocab, m->ctx, e->arena, m->ntensors, m->nrtparams, m->nstats, ncaches);
}

int codegen_emit_c(FILE *out, const ir_module *m)
{
    emitter e = {.out = out, .m = m};
    e.off = malloc(sizeof(int64_t) * (size_t)(m->ninsts ? m->ninsts : 1));
    if (!e.off)
        DIE("out of memory");
    /* the slots of memory planning; without it, one slot per value */
    e.arena = m->arena_floats;
    for (int i = 0; i < m->ninsts; i++) {
        e.off[i] = -1;
        if (!has_storage(&m->insts[i]))
            continue;
        if (m->arena_floats) {
            e.off[i] = m->insts[i].slot;
            continue;
        }
        e.off[i] = e.arena;
        int64_t n = numel(&m->insts[i].type);
        e.arena += (n + 15) / 16 * 16;   /* 64-byte aligned slots */
    }
    fprintf(out, "/* Generated by kiln from model '%s'. Do not edit. */\n"
                 "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
                 "#include \"kiln_rt.h\"\n#include \"kernels.h\"\n\n", m->name);
    fprintf(out, "static void kiln_forward(krt_ctx *c, int32_t token, int32_t pos)\n{\n"
                 "    float *A = c->arena;\n    const int64_t n = (int64_t)pos + 1;\n"
                 "    (void)A; (void)n; (void)token;\n");
    for (int i = 0; i < m->ninsts; i++) {
        char lit[64];
        if (m->insts[i].op == IR_const && !m->insts[i].dead)
            fprintf(out, "    A[%" PRId64 "] = %s;\n", e.off[i],
                    float_lit(m->insts[i].fattr, lit, sizeof lit));
    }
    int open_guard = -1;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->dead || (ir_ops[in->op].flags & OPF_SOURCE && in->op != IR_zeros))
            continue;
        if (in->guard != open_guard) {
            if (open_guard >= 0)
                fprintf(out, "  }\n");
            open_guard = in->guard;
            if (open_guard >= 0) {
                char g[96];
                fprintf(out, "  if (%s != 0.0f) {\n", scalar(&e, open_guard, g, sizeof g));
            }
        }
        fprintf(out, "    /* %%%d %s%s%s */\n", i, ir_ops[in->op].name, in->label ? " " : "",
                in->label ? in->label : "");
        emit_inst(&e, i);
    }
    if (open_guard >= 0)
        fprintf(out, "  }\n");
    fprintf(out, "}\n\n");
    emit_tables(&e);
    free(e.off);
    return ferror(out) ? -1 : 0;
}
