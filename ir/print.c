/* print.c - the IR as versioned, diff-friendly text, and as Graphviz.
 *
 *   kiln-ir 1
 *   model llama
 *   param dim = 64
 *   runtime tau = 0.5
 *   stat #0 active_fraction[0]
 *   tensor @0 f32[256, 64] "model.embed_tokens.weight"            ; embed
 *   forward {
 *     %0 : i32[] = token
 *     %1 : f32[256, 64] = weight tensor=@0 offset=0 stride=64
 *     %2 : f32[64] = embed %1, %0                                  ; x
 *     %9 : f32[32] = linear %7, %8 if %6                           ; l=0 e=1
 *     output %40
 *   }
 *
 * Attributes print in the op table's order; the trailing comment gives the source name and
 * the loop indices the value was made under. Removed (dead) instructions are not printed.
 * Bump IR_DUMP_VERSION when this format changes.
 */
#include <string.h>

#include "ir.h"

static int scope_matches(const ir_inst *in, const char *filter)
{
    if (!filter)
        return 1;
    if (!in->scope)
        return 0;
    size_t n = strlen(filter);
    return strncmp(in->scope, filter, n) == 0 && (in->scope[n] == 0 || in->scope[n] == ' ');
}

/* Prints " name=value" for each attribute slot of the op, in table order. */
static int print_attrs(FILE *out, const ir_inst *in)
{
    int col = 0;
    const char *p = ir_ops[in->op].attrs;
    int ki = 0;
    while (*p) {
        char kind = p[0];
        const char *name = p + 2, *end = strchr(name, ' ');
        int len = end ? (int)(end - name) : (int)strlen(name);
        if (kind == 'i' && in->op == IR_weight && ki == 0)
            col += fprintf(out, " %.*s=@%lld", len, name, (long long)in->iattr[ki++]);
        else if (kind == 'i')
            col += fprintf(out, " %.*s=%lld", len, name, (long long)in->iattr[ki++]);
        else if (kind == 'f')
            col += fprintf(out, " %.*s=%.9g", len, name, in->fattr);
        else if (kind == 's')
            col += fprintf(out, " %.*s=\"%s\"", len, name, in->sattr ? in->sattr : "");
        p = end ? end + 1 : name + len;
    }
    return col;
}

static void print_comment(FILE *out, int col, const char *label, const char *scope)
{
    if (!label && !scope)
        return;
    fprintf(out, "%*s; %s%s%s", col < 64 ? 64 - col : 1, "", label ? label : "",
            label && scope ? " " : "", scope ? scope : "");
}

void ir_print(FILE *out, const ir_module *m, const char *scope_filter)
{
    char tb[96];
    fprintf(out, "kiln-ir %d\nmodel %s\n", IR_DUMP_VERSION, m->name);
    for (int i = 0; i < m->nparams; i++)
        fprintf(out, "param %s = %s\n", m->params[i].name, m->params[i].text);
    for (int i = 0; i < m->nrtparams; i++)
        fprintf(out, "runtime %s = %.9g\n", m->rtparams[i].name, m->rtparams[i].value);
    for (int i = 0; i < m->nstats; i++)
        fprintf(out, "stat #%d %s\n", i, m->stats[i].name);
    for (int i = 0; i < m->ntensors; i++) {
        const ir_tensor *t = &m->tensors[i];
        int col = fprintf(out, "tensor @%d %s \"%s\"", i, ir_type_str(&t->type, tb, sizeof tb),
                          t->name);
        print_comment(out, col, t->decl, NULL);
        fputc('\n', out);
    }
    if (m->arena_floats) {   /* planned: where the arena goes */
        int64_t caches = 0;
        for (int i = 0; i < m->ninsts; i++)
            if (!m->insts[i].dead && m->insts[i].op == IR_cache)
                caches += ir_type_numel(&m->insts[i].type);
        fprintf(out, "arena %lld floats: KV caches %lld, values %lld\n",
                (long long)m->arena_floats, (long long)caches,
                (long long)(m->arena_floats - caches));
    }
    fprintf(out, "forward {\n");
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->dead || !scope_matches(in, scope_filter))
            continue;
        int col;
        if (in->op == IR_output || in->op == IR_stat)
            col = fprintf(out, "  %s", ir_ops[in->op].name);
        else
            col = fprintf(out, "  %%%d : %s = %s", i, ir_type_str(&in->type, tb, sizeof tb),
                          ir_ops[in->op].name);
        for (int a = 0; a < in->nargs; a++)
            col += fprintf(out, "%s %%%d", a ? "," : "", in->args[a]);
        col += print_attrs(out, in);
        if (in->guard >= 0)
            col += fprintf(out, " if %%%d", in->guard);
        print_comment(out, col, in->label, in->scope);
        fputc('\n', out);
    }
    fprintf(out, "}\n");
}

void ir_print_dot(FILE *out, const ir_module *m, const char *scope_filter)
{
    char tb[96];
    fprintf(out, "digraph \"%s\" {\n  node [shape=box, fontname=monospace];\n", m->name);
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->dead || !scope_matches(in, scope_filter))
            continue;
        fprintf(out, "  v%d [label=\"%%%d %s\\n%s%s%s\"%s];\n", i, i, ir_ops[in->op].name,
                ir_type_str(&in->type, tb, sizeof tb), in->label ? "\\n" : "",
                in->label ? in->label : "", in->guard >= 0 ? ", style=dashed" : "");
        for (int a = 0; a < in->nargs; a++)
            if (!m->insts[in->args[a]].dead && scope_matches(&m->insts[in->args[a]], scope_filter))
                fprintf(out, "  v%d -> v%d;\n", in->args[a], i);
    }
    fprintf(out, "}\n");
}
