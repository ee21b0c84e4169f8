/* emit_c.c - the C back end: prints a lowered program (lower.h) as one C file.
 *
 * The file defines `kiln_model` (runtime/kiln_rt.h): the tensor table the blob must match,
 * run-time parameters, statistics, KV caches, and kiln_forward(c, tokens, pos0, T), which
 * runs kiln_body on every thread of the pool (one job). The body runs the steps in order,
 * each thread its share of each step (lower.h: lw_par) in rows [lo, hi), with a barrier
 * before a step when it or the one before was shared (kiln_rt.h: krt_step_sync). Values
 * live at the byte offsets the memory plan gave them in the frame F (one call) or the state
 * S (caches); X is the thread's scratch. Kernels are the runtime's (kernels.h), called with
 * literal shapes; element-by-element steps are loops over the op table's C expressions.
 * Every decision (kernel, rows, thread split, places) was made by the lowering: this file
 * only spells it.
 */
#include <inttypes.h>
#include <string.h>

#include "backend.h"
#include "codegen.h"
#include "../passes/passes.h"
#include "../runtime/kiln_blob.h"

/* The float constant v as an exact C expression. */
static const char *float_lit(float v, char *buf, size_t size)
{
    snprintf(buf, size, "(float)%a", (double)v);
    return buf;
}

/* The first row (a C expression) and row count of a step. In a layer function that serves
 * both, argument rows_arg says whether the rows are all of them or only the logits rows. */
static const char *row0(lw_rows rows, int rows_arg, char *buf, size_t size)
{
    if (rows_arg)
        return snprintf(buf, size, "(a[%d] ? t0 : 0)", rows_arg - 1), buf;
    switch (rows) {
    case LW_ROWS_ALL: return "0";
    case LW_ROWS_TAIL: return "t0";
    case LW_ROWS_LOOP: return "t";
    default: return "0";
    }
}

/* A literal, or argument a[arg - 1] of a layer function when arg > 0. */
static const char *arg_or(int arg, int64_t value, char *buf, size_t size)
{
    if (arg)
        snprintf(buf, size, "a[%d]", arg - 1);
    else
        snprintf(buf, size, "%" PRId64, value);
    return buf;
}

/* A pointer expression to ref's element 0 of token row `r` (a C expression). */
static const char *ptr(const lw_ref *ref, const char *r, char *buf, size_t size)
{
    const char *ty = ref->i32 ? "int32_t" : "float";
    char rowoff[96] = "", off[32], tensor[32];
    if (ref->tok && strcmp(r, "0"))
        snprintf(rowoff, sizeof rowoff, " + (%s) * %" PRId64, r, ref->row);
    arg_or(ref->offset_arg, ref->offset, off, sizeof off);
    switch (ref->place) {
    case LW_FRAME:
        snprintf(buf, size, "((%s *)(F + %s)%s)", ty, off, rowoff);
        break;
    case LW_STATE:
        snprintf(buf, size, "((%s *)(S + %s)%s)", ty, off, rowoff);
        break;
    case LW_WEIGHT:
        snprintf(buf, size, "((const unsigned char *)c->w[%s] + %s)",
                 arg_or(ref->tensor_arg, ref->tensor, tensor, sizeof tensor), off);
        break;
    case LW_TOKENS:
        snprintf(buf, size, "(tokens%s)", rowoff);
        break;
    case LW_RTPARAM:
        snprintf(buf, size, "(c->rtparams + %d)", ref->index);
        break;
    default:
        DIE("emit_c: no pointer to this operand");
    }
    return buf;
}

/* A KV cache operand as the kernels take it (kernels.h: krt_kv), read with kv_heads heads
 * of head_dim. */
static const char *kv_lit(const lw_ref *ref, int64_t kv_heads, int64_t head_dim, char *buf,
                          size_t size)
{
    char p[160];
    snprintf(buf, size, "(krt_kv){%s, %u, %d, %" PRId64 ", %" PRId64 ", %" PRId64 "}",
             ptr(ref, "0", p, sizeof p), ref->dtype, ref->head_major, kv_heads, head_dim,
             ref->cap);
    return buf;
}

/* One element of operand `ref` in a map loop: row r, element i (scalars broadcast). */
static const char *element(const lw_ref *ref, const char *name, char *buf, size_t size)
{
    char lit[48];
    const char *cast = ref->i32 ? "(float)" : "";
    switch (ref->place) {
    case LW_CONST:
        return snprintf(buf, size, "%s", float_lit(ref->value, lit, sizeof lit)), buf;
    case LW_RTPARAM:
        return snprintf(buf, size, "c->rtparams[%d]", ref->index), buf;
    case LW_WEIGHT:
        if (ref->dtype != KBLOB_F32)
            DIE("emit_c: an element-by-element step reads a packed weight");
        break;
    default:
        break;
    }
    if (ref->row == 1)
        snprintf(buf, size, "%s%s_[%s]", cast, name, ref->tok ? "r" : "0");
    else if (ref->tok)
        snprintf(buf, size, "%s%s_[r * %" PRId64 " + i]", cast, name, ref->row);
    else
        snprintf(buf, size, "%s%s_[i]", cast, name);
    return buf;
}

static void declare_operand(FILE *o, const lw_ref *ref, const char *name)
{
    char b[160];
    if (ref->place == LW_CONST || ref->place == LW_RTPARAM)
        return;
    if (ref->place == LW_WEIGHT)
        fprintf(o, "      const float *%s_ = (const float *)%s;\n", name, ptr(ref, "0", b, sizeof b));
    else if (ref->place == LW_TOKENS)
        fprintf(o, "      const int32_t *%s_ = tokens;\n", name);
    else
        fprintf(o, "      const %s *%s_ = %s;\n", ref->i32 ? "int32_t" : "float", name,
                ptr(ref, "0", b, sizeof b));
}

/* The row loop of a step: its rows [lo, hi) (step_rows_begin), or in a guard region the
 * gathered rows I_[lo .. hi). */
static void row_loop(FILE *o, const lw_step *s)
{
    if (s->rows == LW_ROWS_LOOP)
        fprintf(o, "      for (int64_t j_ = lo; j_ < hi; j_++) {\n"
                   "        const int64_t r = I_[j_];\n");
    else
        fprintf(o, "      for (int64_t r = lo; r < hi; r++) {\n");
}

static void emit_map(FILE *o, const lw_step *s)
{
    static const char *const names[] = {"a", "b", "c"};
    char e[3][96], d[160];
    fprintf(o, "    {\n");
    for (int k = 0; k < s->nsrc; k++)
        declare_operand(o, &s->src[k], names[k]);
    fprintf(o, "      float *d_ = %s;\n", ptr(&s->dst, "0", d, sizeof d));
    fprintf(o, "      (void)d_;\n");
    row_loop(o, s);
    if (s->n[3] == 1)          /* [H, S]: row r sees positions 0 .. pos0 + r */
        fprintf(o, "        for (int64_t h = 0; h < %" PRId64 "; h++)\n"
                   "        for (int64_t p = 0; p <= (int64_t)pos0 + r; p++) {\n"
                   "          const int64_t i = h * %" PRId64 " + p;\n", s->n[1], s->n[2]);
    else if (s->n[3] == 2)     /* [S, w] over a cache: the positions written so far */
        fprintf(o, "        for (int64_t i = 0; i < ((int64_t)pos0 + T) * %" PRId64 "; i++) {\n",
                s->n[1]);
    else
        fprintf(o, "        for (int64_t i = 0; i < %" PRId64 "; i++) {\n", s->n[0]);
    for (int k = 0; k < s->nsrc; k++)
        fprintf(o, "          const float %s = %s;\n", names[k],
                element(&s->src[k], names[k], e[k], sizeof e[k]));
    if (s->dst.tok)
        fprintf(o, "          d_[r * %" PRId64 " + i] = %s;\n", s->dst.row, ir_ops[s->op].cexpr);
    else
        fprintf(o, "          d_[i] = %s;\n", ir_ops[s->op].cexpr);
    fprintf(o, "        }\n      }\n    }\n");
}

/* ---- fused maps (fuse.c): one loop over an expression tree ---- */

typedef struct expr_buf {
    char *s;
    size_t n, size;
} expr_buf;

static void expr_put(expr_buf *b, const char *text, size_t len)
{
    if (b->n + len + 1 > b->size)
        DIE("emit_c: a fused expression is longer than %zu bytes", b->size);
    memcpy(b->s + b->n, text, len);
    b->n += len;
    b->s[b->n] = 0;
}

static int is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.';
}

static void expr_text(expr_buf *b, const lw_step *s, int node, int hoisted);

/* Operand node of an expression: a leaf's variable, a per-row value computed before the
 * element loop, or the operand's own expression in parentheses. */
static void expr_operand(expr_buf *b, const lw_step *s, int node, int hoisted)
{
    char name[32];
    const lw_enode *e = &s->expr[node];
    if (e->leaf >= 0 || (hoisted && e->scalar)) {
        int len = snprintf(name, sizeof name, "%s%d", e->leaf >= 0 ? "l" : "s",
                           e->leaf >= 0 ? e->leaf : node);
        expr_put(b, name, (size_t)len);
        return;
    }
    expr_put(b, "(", 1);
    expr_text(b, s, node, hoisted);
    expr_put(b, ")", 1);
}

/* The op's C expression (ops.h) with its operands a, b, c replaced by the nodes below it.
 * hoisted: per-row nodes are the variables s<node>. */
static void expr_text(expr_buf *b, const lw_step *s, int node, int hoisted)
{
    const lw_enode *e = &s->expr[node];
    if (e->leaf >= 0) {
        expr_operand(b, s, node, hoisted);
        return;
    }
    const char *c = ir_ops[e->op].cexpr;
    while (*c) {
        size_t len = 1;
        if (is_ident(*c))      /* a whole word: expf, 1.0f, or an operand name */
            while (is_ident(c[len]))
                len++;
        if (len == 1 && *c >= 'a' && *c <= 'c')
            expr_operand(b, s, e->arg[*c - 'a'], hoisted);
        else
            expr_put(b, c, len);
        c += len;
    }
}

static void emit_fused_map(FILE *o, const lw_step *s)
{
    char text[8192], ev[96], d[160], name[16];
    expr_buf b = {text, 0, sizeof text};
    int root = s->nexpr - 1, hoist = !s->expr[root].scalar;
    fprintf(o, "    {\n");
    for (int k = 0; k < s->nfsrc; k++) {
        snprintf(name, sizeof name, "l%d", k);
        declare_operand(o, &s->fsrc[k], name);
    }
    fprintf(o, "      float *d_ = %s;\n", ptr(&s->dst, "0", d, sizeof d));
    row_loop(o, s);
    /* per-row operands and values, once per row (with hoist) */
    for (int k = 0; hoist && k < s->nfsrc; k++)
        if (s->fsrc[k].row == 1) {
            snprintf(name, sizeof name, "l%d", k);
            fprintf(o, "        const float l%d = %s;\n", k,
                    element(&s->fsrc[k], name, ev, sizeof ev));
        }
    for (int k = 0; hoist && k < root; k++)
        if (s->expr[k].leaf < 0 && s->expr[k].scalar) {
            b.n = 0;
            expr_text(&b, s, k, 1);
            fprintf(o, "        const float s%d = %s;\n", k, text);
        }
    fprintf(o, "        for (int64_t i = 0; i < %" PRId64 "; i++) {\n", s->n[0]);
    for (int k = 0; k < s->nfsrc; k++)
        if (!hoist || s->fsrc[k].row != 1) {
            snprintf(name, sizeof name, "l%d", k);
            fprintf(o, "          const float l%d = %s;\n", k,
                    element(&s->fsrc[k], name, ev, sizeof ev));
        }
    b.n = 0;
    expr_text(&b, s, root, hoist);
    if (s->dst.tok)
        fprintf(o, "          d_[r * %" PRId64 " + i] = %s;\n", s->dst.row, text);
    else
        fprintf(o, "          d_[i] = %s;\n", text);
    fprintf(o, "        }\n      }\n    }\n");
}

/* A weight view as the kernels take it (kernels.h: krt_wview). */
static const char *wview_lit(const lw_ref *w, char *buf, size_t size)
{
    char tensor[32];
    snprintf(buf, size, "(krt_wview){c->w[%s], %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64
                        ", %" PRId64 "}",
             arg_or(w->tensor_arg, w->tensor, tensor, sizeof tensor),
             codegen_kblob_name(w->dtype), w->layout == KBLOB_PANEL ? "KBLOB_PANEL" : "KBLOB_ROWS",
             w->wrows, w->wcols, w->row0, w->col0);
    return buf;
}

/* A product (kernels.h: krt_linear) of rows [lo, hi): shared by panels, or share 0's; with
 * its epilogue (fuse.c), dst = res + x W^T, res one row per token or one for all (a bias). */
static void emit_linear(FILE *o, const lw_step *s, const char *d, const char *a,
                        const char *x_rows)
{
    const lw_ref *w = &s->src[1];
    char tensor[32], r[160] = "0";
    if (s->res.place != LW_NONE)
        snprintf(r, sizeof r, "%s", s->res.place == LW_WEIGHT ? "(const float *)" : "");
    int gathered = s->rows == LW_ROWS_LOOP;   /* a guard region's rows: I_[lo .. hi) */
    if (s->res.place != LW_NONE) {
        char rp[160];
        ptr(&s->res, s->res.tok && !gathered ? "lo" : "0", rp, sizeof rp);
        strncat(r, rp, sizeof r - strlen(r) - 1);
    }
    int shared = s->par == LW_PAR_PANELS;
    fprintf(o, "    %skrt_linear(&(krt_lin){.y = %s, .x = %s, .ldy = %" PRId64 ", .ldx = %" PRId64
               ", .rows = %s,%s\n        .w = c->w[%s], .dtype = %s, .layout = %s, .wrows = %"
               PRId64 ", .wcols = %" PRId64 ", .row0 = %" PRId64 ", .col0 = %" PRId64 ",\n"
               "        .out = %" PRId64 ", .in = %" PRId64 ", .res = %s, .ldr = %" PRId64
               ", .act = %s, .sched = c->sched}, %s, XK);\n",
            shared ? "" : "if (sh == 0) ", d, a, s->dst.tok ? s->dst.row : 0,
            s->src[0].tok ? s->src[0].row : 0, x_rows, gathered ? " .rowidx = I_ + lo," : "",
            arg_or(w->tensor_arg, w->tensor, tensor, sizeof tensor), codegen_kblob_name(w->dtype),
            w->layout == KBLOB_PANEL ? "KBLOB_PANEL" : "KBLOB_ROWS", w->wrows, w->wcols, w->row0,
            w->col0, s->n[0], s->n[1], r, s->res.place != LW_NONE && s->res.tok ? s->n[0] : 0,
            s->flag ? "KRT_ACT_Q8" : "KRT_ACT_F32", shared ? "sh, nsh" : "0, 1");
}

/* Per-row copies: extract, slice, concat. */
static void emit_copy(FILE *o, const lw_step *s)
{
    char a[160], b[160], d[160];
    const lw_ref *x = &s->src[0];
    fprintf(o, "    {\n      const float *a_ = %s;\n      float *d_ = %s;\n",
            ptr(x, "0", a, sizeof a), ptr(&s->dst, "0", d, sizeof d));
    if (s->kernel == LK_concat)
        fprintf(o, "      const float *b_ = %s;\n", ptr(&s->src[1], "0", b, sizeof b));
    row_loop(o, s);
    const char *xa = x->tok ? "r" : "0";
    const char *da = s->dst.tok ? "r" : "0";
    switch (s->kernel) {
    case LK_extract:
        fprintf(o, "        d_[%s] = a_[%s * %" PRId64 " + %" PRId64 "];\n", da, xa, s->n[0],
                s->n[1]);
        break;
    case LK_slice:
        fprintf(o, "        memcpy(d_ + %s * %" PRId64 ", a_ + %s * %" PRId64 " + %" PRId64
                   ", %" PRId64 " * sizeof(float));\n", da, s->n[2], xa, s->n[0], s->n[1], s->n[2]);
        break;
    default: {
        const char *xb = s->src[1].tok ? "r" : "0";
        int64_t w = s->n[0] + s->n[1];
        fprintf(o, "        memcpy(d_ + %s * %" PRId64 ", a_ + %s * %" PRId64 ", %" PRId64
                   " * sizeof(float));\n", da, w, xa, s->n[0], s->n[0]);
        fprintf(o, "        memcpy(d_ + %s * %" PRId64 " + %" PRId64 ", b_ + %s * %" PRId64
                   ", %" PRId64 " * sizeof(float));\n", da, w, s->n[0], xb, s->n[1], s->n[1]);
    }
    }
    fprintf(o, "      }\n    }\n");
}

/* The instructions a step computes: "%12 mul x", "%12 add, %13 rsqrt, %14 mul" (a fused
 * map), "%20 linear + %21 add x" (a linear with its epilogue). */
static void step_comment(FILE *o, const lw_program *p, const lw_step *s)
{
    const ir_inst *in = &p->m->insts[s->inst];
    fprintf(o, "    /* ");
    if (s->nexpr > 0) {
        fprintf(o, "fused:");
        for (int k = 0; k < s->nexpr; k++)
            if (s->expr[k].leaf < 0)
                fprintf(o, " %%%d %s", s->expr[k].inst, ir_ops[s->expr[k].op].name);
    } else {
        fprintf(o, "%%%d %s", s->inst, ir_ops[in->op].name);
    }
    if (s->res.place != LW_NONE) {
        in = &p->m->insts[s->res_inst];
        fprintf(o, " + %%%d %s", s->res_inst, ir_ops[in->op].name);
    }
    fprintf(o, "%s%s */\n", in->label ? " " : "", in->label ? in->label : "");
}

/* The rows [lo, hi) of the step this thread runs, and the barrier before it (kiln_rt.h:
 * krt_step_sync); opens a block the step's code goes in. Returns 1 when the step's code
 * must be guarded by `if (hi > lo)` (rows shared), 2 by `if (sh == 0)` (one thread). */
static int step_rows_begin(FILE *o, const lw_step *s)
{
    char first[48];
    const char *r0 = row0(s->rows, s->rows_arg, first, sizeof first);
    const char *end = s->rows == LW_ROWS_LOOP ? "n_" : s->rows == LW_ROWS_NONE ? "1" : "T";
    if (s->rows == LW_ROWS_NONE || s->rows == LW_ROWS_LOOP)
        r0 = "0";                      /* a region's steps: the gathered rows I_[0 .. n_) */
    switch (s->par) {
    case LW_PAR_ROWS:
        fprintf(o, "    { int64_t lo, hi;\n"
                   "    krt_step_sync(c, par, krt_share_rows(%s, %s, sh, nsh, &lo, &hi));\n",
                r0, end);
        return 1;
    case LW_PAR_PANELS: case LW_PAR_PAIRS:
        fprintf(o, "    { const int64_t lo = %s, hi = %s; (void)hi;\n"
                   "    krt_step_sync(c, par, nsh > 1);\n", r0, end);
        return 0;
    default:
        fprintf(o, "    { const int64_t lo = %s, hi = %s; (void)lo; (void)hi;\n"
                   "    krt_step_sync(c, par, 0);\n", r0, end);
        return 2;
    }
}

/* Whether a step of a guard region runs its kernel once per gathered row (r_ = I_[j_]):
 * every kernel that takes a run of contiguous rows; a product takes the row list itself, and
 * the steps that print their own row loop (row_loop) loop over it. */
static int per_gathered_row(const lw_step *s)
{
    switch (s->kernel) {
    case LK_linear: case LK_map: case LK_stat: case LK_extract: case LK_slice: case LK_concat:
        return 0;
    default:
        return s->rows == LW_ROWS_LOOP;
    }
}

static void c_step(FILE *o, const lw_program *p, const lw_step *s)
{
    char d[160], a[160], b[160], lit[48], k[256], wv[256];
    int each = per_gathered_row(s);
    const char *rows = s->rows == LW_ROWS_NONE || each ? "1" : "(hi - lo)";
    const char *lo = each ? "r_" : s->rows == LW_ROWS_LOOP ? "0" : "lo";
    step_comment(o, p, s);
    int guard = step_rows_begin(o, s);
    if (guard == 1)
        fprintf(o, "    if (hi > lo) {\n");
    else if (guard == 2 && s->kernel != LK_linear)
        fprintf(o, "    if (sh == 0) {\n");
    if (each)
        fprintf(o, "    for (int64_t j_ = lo; j_ < hi; j_++) {\n"
                   "    const int64_t r_ = I_[j_];\n");
    if (s->dst.place != LW_NONE)
        ptr(&s->dst, lo, d, sizeof d);
    if (s->nsrc > 0 && s->src[0].place != LW_CONST)
        ptr(&s->src[0], lo, a, sizeof a);
    if (s->nsrc > 1 && s->src[1].place != LW_CONST)
        ptr(&s->src[1], lo, b, sizeof b);
    switch (s->kernel) {
    case LK_constant:
        fprintf(o, "    *%s = %s;\n", d, float_lit(s->f, lit, sizeof lit));
        break;
    case LK_positions:
        fprintf(o, "    for (int64_t r = 0; r < T; r++) %s[r] = pos0 + (int32_t)r;\n",
                ptr(&s->dst, "0", d, sizeof d));
        break;
    case LK_zeros:
        fprintf(o, "    memset(%s, 0, (size_t)%s * %" PRId64 " * sizeof(float));\n", d,
                s->dst.tok ? rows : "1", s->n[0]);
        break;
    case LK_widen:
        fprintf(o, "    krt_widen(%s, %s, %" PRId64 ", %" PRId64 ");\n", d,
                wview_lit(&s->src[0], wv, sizeof wv), s->n[0], s->n[1]);
        break;
    case LK_embed:
        fprintf(o, "    krt_embed(%s, %s, %s, %s, %" PRId64 ", %" PRId64 ");\n", d,
                ptr(&s->src[1], lo, b, sizeof b), rows, wview_lit(&s->src[0], wv, sizeof wv),
                s->n[0], s->n[1]);
        break;
    case LK_linear:
        emit_linear(o, s, d, a, s->src[0].tok ? s->rows == LW_ROWS_LOOP ? "(hi - lo)" : rows : "1");
        break;
    case LK_map:
        if (s->nexpr > 0)
            emit_fused_map(o, s);
        else
            emit_map(o, s);
        break;
    case LK_reduce: {
        static const char *const fn[IR_OP_COUNT] = {
            [IR_sum] = "krt_sum", [IR_mean] = "krt_mean", [IR_amax] = "krt_amax",
            [IR_count] = "krt_count"};
        fprintf(o, "    %s(%s, %s, %s, %" PRId64 ");\n", fn[s->op], d, a,
                s->src[0].tok ? rows : "1", s->n[0]);
        break;
    }
    case LK_dot: {
        /* the operand with the token axis first; the other is shared by every row */
        int swap = !s->src[0].tok && s->src[1].tok;
        /* an f32 weight (the widen pass widened the others) is a vector of floats */
        const char *cast_a = s->src[0].place == LW_WEIGHT ? "(const float *)" : "";
        const char *cast_b = s->src[1].place == LW_WEIGHT ? "(const float *)" : "";
        fprintf(o, "    krt_dot(%s, %s%s, %s%s, %s, %" PRId64 ", %d);\n", d,
                swap ? cast_b : cast_a, swap ? b : a, swap ? cast_a : cast_b, swap ? a : b,
                s->src[0].tok || s->src[1].tok ? rows : "1", s->n[0],
                s->src[0].tok && s->src[1].tok);
        break;
    }
    case LK_extract: case LK_slice: case LK_concat:
        emit_copy(o, s);
        break;
    case LK_topk:
        fprintf(o, "    krt_topk(%s, %s, %s, %" PRId64 ", %" PRId64 ");\n", d, a,
                s->src[0].tok ? rows : "1", s->n[0], s->n[1]);
        break;
    case LK_softmax:
        fprintf(o, "    krt_softmax(%s, %s, %s, %" PRId64 ");\n", d, a,
                s->src[0].tok ? rows : "1", s->n[0]);
        break;
    case LK_softmax_causal:
        fprintf(o, "    krt_softmax_causal(%s, %s, %s, %" PRId64 ", pos0 + (int32_t)%s, %" PRId64
                   ", sh, nsh);\n", d, a, rows, s->n[0], lo, s->n[1]);
        break;
    case LK_rope:
        fprintf(o, "    krt_rope(%s, %s, %s, pos0 + (int32_t)%s, %" PRId64 ", %" PRId64 ", %" PRId64
                   ", %s, %d);\n", d, a, rows, lo, s->n[0], s->n[1], s->n[2],
                float_lit(s->f, lit, sizeof lit), s->flag);
        break;
    case LK_rope_heads:
        fprintf(o, "    krt_rope_heads(%s, %s, %s, pos0 + (int32_t)%s, %" PRId64 ", %" PRId64
                   ", %" PRId64 ", rope_bases_%d, %d);\n", d, a, rows, lo, s->n[0], s->n[1],
                s->n[2], s->inst, s->flag);
        break;
    case LK_cache_store:
        fprintf(o, "    krt_cache_store(%s, %s, %s, pos0 + (int32_t)%s);\n",
                kv_lit(&s->dst, s->n[1], s->n[2], k, sizeof k), a, rows, lo);
        break;
    case LK_attn_scores: case LK_attn_apply:
        fprintf(o, "    krt_%s(%s, %s, %s, %s, %" PRId64 ", pos0 + (int32_t)%s, sh, nsh);\n",
                s->kernel == LK_attn_scores ? "attn_scores" : "attn_apply", d, a, rows,
                kv_lit(&s->src[1], s->n[1], s->n[2], k, sizeof k), s->n[0], lo);
        break;
    case LK_attention: {
        char v[256];
        fprintf(o, "    krt_attention(%s, %s, %s, %s, %s, %" PRId64 ", %s, pos0 + (int32_t)%s, "
                   "sh, nsh);\n",
                d, a, rows, kv_lit(&s->src[1], s->n[1], s->n[2], k, sizeof k),
                kv_lit(&s->src[2], s->n[1], s->n[3], v, sizeof v), s->n[0],
                float_lit(s->f, lit, sizeof lit), lo);
        break;
    }
    case LK_stat: {
        char e[96], slot[32];
        arg_or(s->stat_arg, s->n[0], slot, sizeof slot);
        fprintf(o, "    {\n");
        declare_operand(o, &s->src[0], "a");
        row_loop(o, s);
        fprintf(o, "        c->stat_sum[%s] += %s;\n"
                   "        c->stat_count[%s] += 1;\n      }\n    }\n",
                slot, element(&s->src[0], "a", e, sizeof e), slot);
        break;
    }
    case LK_output:
        fprintf(o, "    c->logits = %s;\n", ptr(&s->src[0], "0", a, sizeof a));
        break;
    default:
        DIE("emit_c: no code for kernel %d", (int)s->kernel);
    }
    if (each)
        fprintf(o, "    }\n");
    if (guard == 1 || (guard == 2 && s->kernel != LK_linear))
        fprintf(o, "    }\n");
    fprintf(o, "    }\n");
}

/* A guard region: the tokens whose guard is true are gathered into I_[0 .. n_) (every thread
 * makes the same list, after a barrier: the guard is everyone's to read), and each step runs
 * once for all of them: a product over an expert's weights reads them once per block, not
 * once per token. */
static void c_loop_begin(FILE *o, const lw_program *p, const lw_loop *l)
{
    (void)p;
    char g[96], first[48];
    fprintf(o, "  {   /* the guard region: its tokens gathered */\n"
               "    int64_t n_ = 0;\n"
               "    krt_step_sync(c, par, 1);\n"
               "    { const float *g_ = %s;\n"
               "      for (int64_t t = %s; t < T; t++)\n"
               "        if (g_[%s] != 0.0f) I_[n_++] = (int32_t)t; }\n"
               "    if (n_ > 0) {\n",
            ptr(&l->guard, "0", g, sizeof g), row0(l->rows, l->rows_arg, first, sizeof first),
            l->guard.tok ? "t" : "0");
}

static void c_loop_end(FILE *o, const lw_program *p, const lw_loop *l)
{
    (void)p, (void)l;
    fprintf(o, "    }\n    *par = 1;   /* the region's last step may have been shared */\n  }\n");
}

/* The costs of one token (kiln_rt.h: krt_model.decode_bytes ...): weight bytes and
 * multiply-adds of the linears (and one embedding row per token). */
typedef struct token_costs {
    uint64_t bytes, bytes_experts, macs_all, macs_logits;
} token_costs;

static token_costs count_costs(const lw_program *p)
{
    token_costs k = {0, 0, 0, 0};
    for (int i = 0; i < p->nsteps; i++) {
        const lw_step *s = &p->steps[i];
        uint64_t row = 0;
        if (s->kernel == LK_linear) {
            if (kblob_row_bytes(s->src[1].dtype, (uint64_t)s->n[1], &row) < 0)
                DIE("emit_c: no row size");
            uint64_t bytes = row * (uint64_t)s->n[0], macs = (uint64_t)(s->n[0] * s->n[1]);
            *(s->loop >= 0 ? &k.bytes_experts : &k.bytes) += bytes;
            *(s->rows == LW_ROWS_TAIL ? &k.macs_logits : &k.macs_all) += macs;
        } else if (s->kernel == LK_embed) {
            if (kblob_row_bytes(s->src[0].dtype, (uint64_t)s->n[1], &row) < 0)
                DIE("emit_c: no row size");
            k.bytes += row;
        }
    }
    return k;
}

/* The element loops get an AVX2 copy only in models whose tokens take this many
 * multiply-adds or more (a model of a few million parameters): the copy doubles their
 * compile time, and a smaller model's element loops take microseconds either way. */
#define CLONE_MIN_MACS (UINT64_C(1) << 22)

static void c_begin(FILE *o, const lw_program *p)
{
    fprintf(o, "/* Generated by kiln from model '%s'. Do not edit. */\n"
               "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
               "#include \"kiln_rt.h\"\n#include \"kernels.h\"\n\n"
               "/* fused expressions must round like the separate steps: no multiply-adds */\n"
               "#if defined(__clang__)\n#pragma STDC FP_CONTRACT OFF\n#endif\n", p->m->name);
    if (!passes_opts.o0)       /* -O0: the C compiles faster, and computes the same */
        fprintf(o, "/* element loops vectorize: comparisons may be computed for every lane (no FP\n"
                   " * traps), and aliasing is checked at run time (their places are the frame's) */\n"
                   "#if defined(__GNUC__) && !defined(__clang__)\n"
                   "#pragma GCC optimize(\"no-trapping-math\", \"vect-cost-model=dynamic\")\n"
                   "#endif\n");
    token_costs cost = count_costs(p);
    if (!passes_opts.o0 && cost.macs_all >= CLONE_MIN_MACS)
        fprintf(o, "/* ... and are compiled twice on x86-64, for AVX2 and for any CPU, the copy\n"
                   " * chosen at load; the same bits, since nothing is contracted */\n"
                   "#if defined(__x86_64__) && defined(__OPTIMIZE__) && defined(__has_attribute)\n"
                   "#if __has_attribute(target_clones)\n"
                   "#define KILN_LOOPS __attribute__((target_clones(\"avx2\", \"default\")))\n"
                   "#endif\n#endif\n");
    fprintf(o, "#ifndef KILN_LOOPS\n#define KILN_LOOPS\n#endif\n");
    fputc('\n', o);
    /* per-head RoPE bases: exact literals, one array per rope_heads step */
    int arrays = 0;
    for (int i = 0; i < p->nsteps; i++) {
        const lw_step *s = &p->steps[i];
        if (s->kernel != LK_rope_heads)
            continue;
        arrays++;
        char lit[48];
        fprintf(o, "static const float rope_bases_%d[%d] = {", s->inst, s->nfvec);
        for (int k = 0; k < s->nfvec; k++)
            fprintf(o, "%s%s", k ? ", " : "", float_lit(s->fvec[k], lit, sizeof lit));
        fprintf(o, "};\n");
    }
    if (arrays)
        fputc('\n', o);
}

/* The context every step's code refers to: F, S, t0, the thread's scratch (I_: a guard
 * region's rows; XK: the kernels'), and c, tokens, pos0, T, the share sh of nsh, par and the
 * arguments. */
static void step_context(FILE *o, const lw_program *p)
{
    fprintf(o, "    unsigned char *F = c->frame, *S = c->state;\n"
               "    unsigned char *X = c->scratch + (uint64_t)sh * c->scratch_stride;   /* this thread's */\n"
               "    int32_t *I_ = (int32_t *)(void *)X;   /* a guard region's rows */\n"
               "    unsigned char *XK = X + %" PRIu64 ";   /* the kernels' */\n"
               "    (void)F; (void)S; (void)I_; (void)XK; (void)t0; (void)tokens; (void)pos0;"
               " (void)T; (void)nsh;\n", p->index_bytes);
}

/* A layer function: the body of every layer of one structure; a[] holds what differs. */
static void c_fn_begin(FILE *o, const lw_program *p, int fn)
{
    fprintf(o, "/* layer_%d: %d layer%s; a[]: the %d addresses and row choices that differ */\n"
               "KILN_LOOPS\nstatic void layer_%d(krt_ctx *c, const int32_t *tokens, int32_t pos0, int32_t T,"
               " int64_t t0, const int64_t *a,\n                    int sh, int nsh, int *par)\n"
               "{\n",
            fn, p->fns[fn].ncalls, p->fns[fn].ncalls == 1 ? "" : "s", p->fns[fn].nargs, fn);
    step_context(o, p);
    fprintf(o, "    (void)a;\n");
}

static void c_fn_end(FILE *o, const lw_program *p, int fn)
{
    (void)p, (void)fn;
    fprintf(o, "}\n\n");
}

static void c_call(FILE *o, const lw_program *p, const lw_call *c)
{
    int n = p->fns[c->fn].nargs;
    if (n == 0) {
        fprintf(o, "    layer_%d(c, tokens, pos0, T, t0, 0, sh, nsh, par);   /* l=%d */\n", c->fn,
                c->layer);
        return;
    }
    fprintf(o, "    { static const int64_t a[] = {");
    for (int k = 0; k < n; k++)
        fprintf(o, "%s%" PRId64, k ? ", " : "", c->args[k]);
    fprintf(o, "}; layer_%d(c, tokens, pos0, T, t0, a, sh, nsh, par); }   /* l=%d */\n", c->fn,
            c->layer);
}

static void c_forward_begin(FILE *o, const lw_program *p)
{
    (void)p;
    fprintf(o, "/* share sh of nsh of one forward call: every thread of the pool runs it */\n"
               "KILN_LOOPS\nstatic void kiln_body(krt_ctx *c, const int32_t *tokens, int32_t pos0, int32_t T,"
               " int sh, int nsh)\n"
               "{\n"
               "    const int64_t t0 = c->all_logits ? 0 : (int64_t)T - 1;   /* rows whose "
               "logits are wanted */\n"
               "    int par_ = 0, *par = &par_;   /* the step before was shared */\n");
    step_context(o, p);
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

/* Tables have several entries a line: they grow with the layers, the code does not. */
#define TABLE_LINE_ENTRIES 4

static const char *table_line_end(int i, int n)
{
    return i % TABLE_LINE_ENTRIES == TABLE_LINE_ENTRIES - 1 || i == n - 1 ? "\n" : "";
}

static void c_end(FILE *o, const lw_program *p)
{
    const ir_module *m = p->m;
    token_costs cost = count_costs(p);
    fprintf(o, "}\n\n"
               "typedef struct kiln_call {\n"
               "    krt_ctx *c;\n    const int32_t *tokens;\n    int32_t pos0, T;\n"
               "} kiln_call;\n\n"
               "static void kiln_job(void *arg, int sh, int nsh)\n{\n"
               "    const kiln_call *k = arg;\n"
               "    kiln_body(k->c, k->tokens, k->pos0, k->T, sh, nsh);\n}\n\n"
               "static void kiln_forward(krt_ctx *c, const int32_t *tokens, int32_t pos0, int32_t T)\n"
               "{\n"
               "    kiln_call k = {c, tokens, pos0, T};\n"
               "    krt_pool_run(c->pool, kiln_job, &k);   /* every thread, each its shares */\n"
               "}\n\nstatic const krt_tensor_desc tensors[] = {\n");
    for (int i = 0; i < m->ntensors; i++) {
        const ir_type *t = &m->tensors[i].type;
        const char *code = codegen_kblob_name(p->tensor_dtype[i]);
        if (!code)
            DIE("tensor '%s' has no storage type (%s)", m->tensors[i].name, ir_dtype_name(t->dtype));
        fprintf(o, i % TABLE_LINE_ENTRIES ? " {" : "    {");
        emit_string(o, m->tensors[i].name);
        fprintf(o, ", %s, %d, {", code, t->rank);
        for (int k = 0; k < 4; k++)
            fprintf(o, "%s%" PRId64, k ? ", " : "", k < t->rank ? t->dim[k] : 0);
        fprintf(o, "}, %s},%s", m->tensors[i].layout == IR_LAYOUT_PANEL ? "KBLOB_PANEL" : "KBLOB_ROWS",
                table_line_end(i, m->ntensors));
    }
    fprintf(o, "    {0}\n};\n\nstatic const char *const rtparam_names[] = {");
    for (int i = 0; i < m->nrtparams; i++) {
        emit_string(o, m->rtparams[i].name);
        fprintf(o, ", ");
    }
    fprintf(o, "0};\nstatic const float rtparam_defaults[] = {");
    char buf[64];
    for (int i = 0; i < m->nrtparams; i++)
        fprintf(o, "%s, ", float_lit((float)m->rtparams[i].value, buf, sizeof buf));
    fprintf(o, "0};\nstatic const char *const stat_names[] = {");
    for (int i = 0; i < m->nstats; i++) {
        emit_string(o, m->stats[i].name);
        fprintf(o, ", ");
    }
    fprintf(o, "0};\nstatic const krt_cache_desc caches[] = {\n");
    for (int i = 0; i < p->ncaches; i++) {
        fprintf(o, i % TABLE_LINE_ENTRIES ? " {" : "    {");
        emit_string(o, p->caches[i].label);
        fprintf(o, ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ", %u, %d},%s",
                p->caches[i].width, p->caches[i].capacity, p->caches[i].offset,
                p->caches[i].kv_heads, p->caches[i].dtype, p->caches[i].head_major,
                table_line_end(i, p->ncaches));
    }
    fprintf(o, "    {0}\n};\n\n");
    fprintf(o, "const krt_model kiln_model = {\n    .name = ");
    emit_string(o, m->name);
    fprintf(o, ",\n    .vocab = %" PRId64 ",\n    .ctx = %" PRId64 ",\n"
               "    .max_batch = %" PRId64 ",\n"
               "    .frame_bytes = %" PRId64 ", .state_bytes = %" PRId64 ",\n"
               "    .scratch_bytes = %" PRIu64 ",\n"
               "    .n_tensors = %d, .tensors = tensors,\n"
               "    .n_rtparams = %d, .rtparam_names = rtparam_names,"
               " .rtparam_defaults = rtparam_defaults,\n"
               "    .n_stats = %d, .stat_names = stat_names,\n"
               "    .n_caches = %d, .caches = caches,\n"
               "    .decode_bytes = %" PRIu64 ", .decode_bytes_experts = %" PRIu64 ",\n"
               "    .macs_all_rows = %" PRIu64 ", .macs_logits_rows = %" PRIu64 ",\n"
               "    .forward = kiln_forward,\n};\n",
            m->vocab, m->ctx, m->t_max, m->frame_bytes, m->state_bytes, p->scratch_bytes,
            m->ntensors,
            m->nrtparams, m->nstats, p->ncaches, cost.bytes, cost.bytes_experts, cost.macs_all,
            cost.macs_logits);
}

const backend backend_c = {
    .name = "c",
    .begin = c_begin,
    .fn_begin = c_fn_begin,
    .fn_end = c_fn_end,
    .forward_begin = c_forward_begin,
    .step = c_step,
    .call = c_call,
    .loop_begin = c_loop_begin,
    .loop_end = c_loop_end,
    .end = c_end,
};

int codegen_emit_c(FILE *out, const ir_module *m)
{
    lw_program p;
    if (lower_program(m, &p) != 0)
        return -2;
    lower_fuse(&p);
    lower_dedup(&p);
    int rc = backend_print(&backend_c, out, &p);
    lower_free(&p);
    return rc;
}
