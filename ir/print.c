/* print.c - the IR as versioned, diff-friendly text ("kiln-ir 2", docs/ir.md), and as
 * Graphviz.
 *
 *   kiln-ir 2
 *   model llama
 *   param dim = 64
 *   runtime tau = 0.5
 *   stat #0 active_fraction[0]
 *   tensor @0 f32[256, 64] "model.embed_tokens.weight"            ; embed
 *   batch T<=64
 *   memory frame 52480 bytes, state 65536 bytes
 *   forward {
 *     %0 : i32[T] = token                                          ; token
 *     %1 : f32[256, 64] = weight tensor=@0 row=0 col=0             ; embed
 *     %2 : f32[T, 64] = embed %1, %0 mem=frame+0                   ; x
 *     %9 : f32[T, 32] = linear %7, %8 if %6 mem=frame+4096         ; l=0 e=1
 *     output %40
 *   }
 *
 * Attributes print in the op table's order (an optional slot only when it is set); the trailing comment gives the source name and
 * the loop indices the value was made under. read.c reads exactly this back, so printing a
 * module read from a dump gives the dump again byte for byte. Bump IR_DUMP_VERSION when the
 * format changes.
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

/* A quoted string with \" \\ and \ooo escapes. Returns the columns printed. */
static int print_string(FILE *out, const char *s)
{
    int col = 2;
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            col += fprintf(out, "\\%c", c);
        else if (c < 32 || c == 127)
            col += fprintf(out, "\\%03o", c);
        else
            col += (fputc(c, out), 1);
    }
    fputc('"', out);
    return col;
}

/* Prints " name=value" for each attribute slot of the op, in table order. */
static int print_attrs(FILE *out, const ir_inst *in)
{
    int col = 0, ki = 0;
    const char *p = ir_ops[in->op].attrs;
    while (*p) {
        char kind = p[0];
        const char *name = p + 2, *end = strchr(name, ' ');
        int len = end ? (int)(end - name) : (int)strlen(name);
        if (p[1] == '?' && !(kind == 'i' ? in->iattr[ki] != 0 : in->sattr != NULL)) {
            ki += kind == 'i';     /* an optional slot not set is not printed */
            p = end ? end + 1 : name + len;
            continue;
        }
        if (kind == 't')
            col += fprintf(out, " %.*s=@%lld", len, name, (long long)in->iattr[ki++]);
        else if (kind == 'i')
            col += fprintf(out, " %.*s=%lld", len, name, (long long)in->iattr[ki++]);
        else if (kind == 'f')
            col += fprintf(out, " %.*s=%.9g", len, name, in->fattr);
        else if (kind == 'v') {    /* [a,b,c]: no spaces, so the attribute stays one token */
            col += fprintf(out, " %.*s=[", len, name);
            for (int k = 0; k < in->nfvec; k++)
                col += fprintf(out, "%s%.9g", k ? "," : "", (double)in->fvec[k]);
            col += fprintf(out, "]");
        }
        else if (kind == 's') {
            /* quoted like tensor names, so that read.c can read any string back */
            col += fprintf(out, " %.*s=", len, name);
            col += print_string(out, in->sattr ? in->sattr : "");
        }
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

/* `"name" f32[4, 8]` for a checkpoint tensor, `concat(A, B)`, `rows(A, 0:2, 4:8)`; the
 * columns printed. */
static int print_recipe(FILE *out, const ir_recipe *r)
{
    char tb[96];
    if (r->op == RC_LOAD) {
        int col = print_string(out, r->name);
        return col + fprintf(out, " %s", ir_type_str(&r->type, tb, sizeof tb));
    }
    int col = fprintf(out, "%s(", ir_recipe_names[r->op]);
    for (int k = 0; k < r->nsrc; k++) {
        if (k)
            col += fprintf(out, ", ");
        col += print_recipe(out, r->src[k]);
    }
    for (int k = 0; k < r->nrange; k++)
        col += fprintf(out, ", %lld:%lld", (long long)r->range[2 * k],
                       (long long)r->range[2 * k + 1]);
    return col + fprintf(out, ")");
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
        int col = fprintf(out, "tensor @%d %s %s", i, ir_type_str(&t->type, tb, sizeof tb),
                          t->layout == IR_LAYOUT_PANEL ? "panel " : "");
        if (t->recipe)
            col += fprintf(out, "= ") + print_recipe(out, t->recipe);
        else
            col += print_string(out, t->name);
        print_comment(out, col, t->decl, NULL);
        fputc('\n', out);
    }
    fprintf(out, "batch T<=%lld\n", (long long)m->t_max);
    if (m->planned)
        fprintf(out, "memory frame %lld bytes, state %lld bytes\n", (long long)m->frame_bytes,
                (long long)m->state_bytes);
    fprintf(out, "forward {\n");
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (!scope_matches(in, scope_filter))
            continue;
        int col;
        if (ir_ops[in->op].flags & OPF_NOVALUE)
            col = fprintf(out, "  %s", ir_ops[in->op].name);
        else
            col = fprintf(out, "  %%%d : %s = %s", i, ir_type_str(&in->type, tb, sizeof tb),
                          ir_ops[in->op].name);
        for (int a = 0; a < in->nargs; a++)
            col += fprintf(out, "%s %%%d", a ? "," : "", in->args[a]);
        col += print_attrs(out, in);
        if (in->guard >= 0)
            col += fprintf(out, " if %%%d", in->guard);
        if (in->mem != MEM_NONE)
            col += fprintf(out, " mem=%s+%lld", in->mem == MEM_STATE ? "state" : "frame",
                           (long long)in->offset);
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
        if (!scope_matches(in, scope_filter))
            continue;
        fprintf(out, "  v%d [label=\"%%%d %s\\n%s%s%s\"%s];\n", i, i, ir_ops[in->op].name,
                ir_type_str(&in->type, tb, sizeof tb), in->label ? "\\n" : "",
                in->label ? in->label : "", in->guard >= 0 ? ", style=dashed" : "");
        for (int a = 0; a < in->nargs; a++)
            if (scope_matches(&m->insts[in->args[a]], scope_filter))
                fprintf(out, "  v%d -> v%d;\n", in->args[a], i);
    }
    fprintf(out, "}\n");
}
