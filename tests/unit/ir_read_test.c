/* ir_read_test.c - TAP test of ir/read.c: dumps read back print the same text, and
 * malformed dumps are refused with a diagnostic, never a crash.
 *
 * (a) Small modules are built with the builder API (every type from ir_infer, as the front
 *     end does), printed with ir_print into memory, read back with ir_read, verified and
 *     printed again: the two texts must be byte-identical. Between them the modules use a
 *     guard region, accum_if, a KV cache, attention, rope with its string attribute, weight
 *     views and a widen, a statistic, run-time parameters, tensor names with quotes,
 *     backslashes and newlines, and a planned memory layout.
 * (b) Every truncation of a good dump and a list of hand-broken texts must give NULL with
 *     at least one more error counted. Build it with -fsanitize=address,undefined as well
 *     (build/asan/tests/ir_read_test): a reader bug then fails loudly.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/ir.h"

static int n_test, n_fail;

static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ok(int cond, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '#')
            *p = ' '; /* keep TAP lines whole */
    n_test++;
    n_fail += !cond;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_test, msg);
    fflush(stdout);
    return cond;
}

/* ---------------------------------------------------------------- building modules */

static ir_type ty(ir_dtype dt, int tok, int rank, int64_t d0, int64_t d1)
{
    int64_t dim[2] = {d0, d1};
    ir_type t;
    char why[128];
    if (ir_type_make(&t, dt, tok, rank, dim, 0, why, sizeof why))
        DIE("test type: %s", why);
    return t;
}

/* Appends in with the type its rule gives (the declared type is the input for weights and
 * zeros), as the front end does. */
static int emit(ir_module *m, ir_inst in)
{
    ir_type args[IR_MAX_ARGS], t;
    char why[256];
    for (int k = 0; k < in.nargs; k++)
        args[k] = m->insts[in.args[k]].type;
    if (ir_infer(m, &in, args, &t, why, sizeof why))   /* not into in.type: rules read it */
        DIE("test module: %s: %s", ir_ops[in.op].name, why);
    in.type = t;
    return ir_append(m, &in);
}

static int op0(ir_module *m, ir_op op) { return emit(m, ir_inst_make(op, 0, NULL)); }

static int op1(ir_module *m, ir_op op, int a)
{
    return emit(m, ir_inst_make(op, 1, &a));
}

static int op2(ir_module *m, ir_op op, int a, int b)
{
    int args[2] = {a, b};
    return emit(m, ir_inst_make(op, 2, args));
}

static int weight(ir_module *m, int t, int64_t row, int64_t col, ir_type view)
{
    ir_inst in = ir_inst_make(IR_weight, 0, NULL);
    in.iattr[0] = t;
    in.iattr[1] = row;
    in.iattr[2] = col;
    in.type = view;
    in.label = m->tensors[t].decl;
    return emit(m, in);
}

static int tensor(ir_module *m, const char *name, const char *decl, ir_type t)
{
    src_loc none = {0};
    return ir_add_tensor(m, base_intern_str(name), decl ? base_intern_str(decl) : NULL, t, none);
}

static void name(ir_module *m, int id, const char *label, const char *scope)
{
    m->insts[id].label = label ? base_intern_str(label) : NULL;
    m->insts[id].scope = scope ? base_intern_str(scope) : NULL;
}

/* One attention layer and a two-expert guarded FFN over d = 8, 2 heads, vocab 16. */
static ir_module *build_layer(const char *mode)
{
    ir_module *m = ir_module_new(base_intern_str("tiny"));
    ir_add_param(m, base_intern_str("dim"), base_intern_str("8"));
    ir_add_param(m, base_intern_str("eps"), base_intern_str("1e-05"));
    ir_add_param(m, base_intern_str("rope"), base_intern_str("\"half\""));
    ir_add_rtparam(m, base_intern_str("tau"), 0.1);
    ir_add_rtparam(m, base_intern_str("scale"), -3e-7);
    ir_add_stat(m, base_intern_str("active_fraction[0]"));
    int t_emb = tensor(m, "tok \"emb\"\\weight\nline2\t\177", "embed", ty(DT_F32, 0, 2, 16, 8));
    int t_q = tensor(m, "q_proj", "wq[0]", ty(DT_BF16, 0, 2, 8, 8));
    int t_k = tensor(m, "k_proj", "wk[0]", ty(DT_F32, 0, 2, 8, 8));
    int t_r = tensor(m, "router", "router[0]", ty(DT_F32, 0, 2, 2, 8));
    int t_e = tensor(m, "experts.\\w", "w[0,1]", ty(DT_F32, 0, 2, 16, 8));
    int t_n = tensor(m, "norm", NULL, ty(DT_F16, 0, 1, 8, 0));
    int t_h = tensor(m, "lm_head", "lm_head", ty(DT_F32, 0, 2, 16, 8));
    m->t_max = 4;

    int tok = op0(m, IR_token);
    name(m, tok, "token", NULL);
    int emb = weight(m, t_emb, 0, 0, ty(DT_F32, 0, 2, 16, 8));
    int x = op2(m, IR_embed, emb, tok);
    name(m, x, "x", NULL);
    op0(m, IR_position);                         /* unused: still printed and read */
    int q = op2(m, IR_linear, x, weight(m, t_q, 0, 0, ty(DT_BF16, 0, 2, 8, 8)));
    name(m, q, "q", "l=0");
    ir_inst rope = ir_inst_make(IR_rope, 1, &q);
    rope.iattr[0] = 2;
    rope.iattr[1] = 4;
    rope.fattr = 10000.5;
    rope.sattr = base_intern_str(mode);
    int qr = emit(m, rope);
    name(m, qr, NULL, "l=0");
    int k = op2(m, IR_linear, x, weight(m, t_k, 0, 0, ty(DT_F32, 0, 2, 8, 8)));
    ir_inst cache = ir_inst_make(IR_cache, 1, &k);
    cache.iattr[0] = 8;
    int kc = emit(m, cache);
    name(m, kc, "k_cache", "l=0");
    ir_inst sc = ir_inst_make(IR_attn_scores, 2, (int[]){qr, kc});
    sc.iattr[0] = 2;
    int s = emit(m, sc);
    int p = op1(m, IR_softmax, s);
    ir_inst ap = ir_inst_make(IR_attn_apply, 2, (int[]){p, kc});
    ap.iattr[0] = 2;
    int att = emit(m, ap);
    name(m, att, "att", "l=0");

    int logits = op2(m, IR_linear, att, weight(m, t_r, 0, 0, ty(DT_F32, 0, 2, 2, 8)));
    ir_inst topk = ir_inst_make(IR_topk, 1, &logits);
    topk.iattr[0] = 1;
    int mask = emit(m, topk);
    ir_inst ex = ir_inst_make(IR_extract, 1, &mask);
    ex.iattr[0] = 1;
    int g = emit(m, ex);
    name(m, g, "sel", "l=0 e=1");
    int w1 = weight(m, t_e, 8, 0, ty(DT_F32, 0, 2, 8, 8));
    ir_inst lin = ir_inst_make(IR_linear, 2, (int[]){att, w1});
    lin.guard = g;
    int y = emit(m, lin);
    ir_inst act = ir_inst_make(IR_silu, 1, &y);
    act.guard = g;
    int ya = emit(m, act);                        /* a guard region of two */
    name(m, ya, "act", "l=0 e=1");
    ir_inst z = ir_inst_make(IR_zeros, 0, NULL);
    z.type = ty(DT_F32, 1, 1, 8, 0);
    int zero = emit(m, z);
    int acc = emit(m, ir_inst_make(IR_accum_if, 3, (int[]){zero, ya, g}));
    name(m, acc, "ffn", "l=0");
    ir_inst st = ir_inst_make(IR_stat, 1, (int[]){op1(m, IR_count, mask)});
    st.iattr[0] = 0;
    emit(m, st);
    ir_inst c = ir_inst_make(IR_const, 0, NULL);
    c.fattr = 0.3;
    int half = emit(m, c);
    ir_inst rt = ir_inst_make(IR_rtparam, 0, NULL);
    rt.iattr[0] = 1;
    int scale = emit(m, rt);
    int h = op2(m, IR_add, op2(m, IR_mul, acc, half), scale);
    int nw = op1(m, IR_widen, weight(m, t_n, 0, 0, ty(DT_F16, 0, 1, 8, 0)));
    h = op2(m, IR_mul, h, nw);
    int out = op2(m, IR_linear, h, weight(m, t_h, 0, 0, ty(DT_F32, 0, 2, 16, 8)));
    name(m, out, "logits", NULL);
    op1(m, IR_output, out);
    ir_module_derive(m);
    return m;
}

/* The same module with every stored value placed, as passes/memplan.c would (no reuse). */
static ir_module *build_planned(void)
{
    ir_module *m = build_layer("interleaved");
    int64_t top[3] = {0, 0, 0};
    for (int i = 0; i < m->ninsts; i++) {
        ir_inst *in = &m->insts[i];
        if (!ir_needs_storage(in))
            continue;
        in->mem = in->op == IR_cache ? MEM_STATE : MEM_FRAME;
        in->offset = top[in->mem];
        top[in->mem] += (ir_value_bytes(m, in) + 63) / 64 * 64;
    }
    m->planned = 1;
    m->frame_bytes = top[MEM_FRAME];
    m->state_bytes = top[MEM_STATE];
    return m;
}

/* The smallest module: no parameters, no tensors but the table, T<=1. */
static ir_module *build_minimal(void)
{
    ir_module *m = ir_module_new(base_intern_str("min"));
    int t = tensor(m, "", "", ty(DT_F32, 0, 2, 4, 4));
    m->t_max = 1;
    int tok = op0(m, IR_token);
    int x = op2(m, IR_embed, weight(m, t, 0, 0, ty(DT_F32, 0, 2, 4, 4)), tok);
    op1(m, IR_output, op1(m, IR_neg, x));
    ir_module_derive(m);
    return m;
}

/* Computed tensors: a stacked product, pruned rows, a folded gain and a folded vector, one
 * recipe nested in another, each viewed by an instruction. */
static ir_module *build_recipes(void)
{
    ir_module *m = ir_module_new(base_intern_str("recipes"));
    src_loc none = {0};
    ir_type mat = ty(DT_F32, 0, 2, 8, 4), vec = ty(DT_F32, 0, 1, 4, 0);
    const ir_recipe *q = ir_recipe_load(base_intern_str("q.weight"), mat, none);
    const ir_recipe *k = ir_recipe_load(base_intern_str("k \"odd\" name"), mat, none);
    const ir_recipe *g = ir_recipe_load(base_intern_str("norm.weight"), vec, none);
    const ir_recipe *scaled[2], *stacked, *cut, *folded;
    char why[256];
    int64_t keep[4] = {0, 2, 5, 8};
    if (ir_recipe_make(&scaled[0], RC_SCALE_COLS, (const ir_recipe *[]){q, g}, 2, NULL, 0, why,
                       sizeof why) ||
        ir_recipe_make(&scaled[1], RC_SCALE_COLS, (const ir_recipe *[]){k, g}, 2, NULL, 0, why,
                       sizeof why) ||
        ir_recipe_make(&stacked, RC_CONCAT, scaled, 2, NULL, 0, why, sizeof why) ||
        ir_recipe_make(&cut, RC_ROWS, (const ir_recipe *[]){q}, 1, keep, 2, why, sizeof why) ||
        ir_recipe_make(&folded, RC_MATVEC_T,
                       (const ir_recipe *[]){ir_recipe_load(base_intern_str("down"),
                                                            ty(DT_F32, 0, 2, 4, 4), none), g},
                       2, NULL, 0, why, sizeof why))
        DIE("recipe: %s", why);
    int embed = tensor(m, "embed", "embed", ty(DT_F32, 0, 2, 16, 4));
    int qk = ir_add_recipe_tensor(m, base_intern_str("wq[0]+wk[0]"), DT_BF16, stacked, none);
    int rows = ir_add_recipe_tensor(m, base_intern_str("gate[0]"), DT_F32, cut, none);
    int fv = ir_add_recipe_tensor(m, base_intern_str("r'"), DT_F32, folded, none);
    m->t_max = 4;
    int tok = op0(m, IR_token);
    int x = op2(m, IR_embed, weight(m, embed, 0, 0, ty(DT_F32, 0, 2, 16, 4)), tok);
    int y = op2(m, IR_linear, x, weight(m, qk, 0, 0, ty(DT_BF16, 0, 2, 16, 4)));
    int z = op2(m, IR_linear, x, weight(m, rows, 0, 0, ty(DT_F32, 0, 2, 5, 4)));
    int d = op2(m, IR_dot, x, weight(m, fv, 0, 0, ty(DT_F32, 0, 1, 4, 0)));
    (void)y;
    (void)d;
    op1(m, IR_output, op1(m, IR_neg, z));
    ir_module_derive(m);
    return m;
}

/* ---------------------------------------------------------------- helpers */

static char *print_module(const ir_module *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        DIE("open_memstream");
    ir_print(f, m, NULL);
    fclose(f);
    return buf;
}

/* Reads text; NULL if it did not read. The text must outlive the module's tensor locs,
 * so the caller keeps it. */
static ir_module *read_text(const char *text, src_file *file)
{
    src_file_from_string(file, "test.ir", text);
    return ir_read(file);
}

static void round_trip(const char *what, ir_module *m)
{
    ok(ir_verify(m) == 0, "%s: the built module verifies", what);
    char *text = print_module(m);
    src_file file;
    ir_module *back = read_text(text, &file);
    if (ok(back != NULL, "%s: its dump reads back", what)) {
        ok(ir_verify(back) == 0, "%s: the module read back verifies", what);
        char *again = print_module(back);
        if (!ok(strcmp(text, again) == 0, "%s: printed again, the dump is byte-identical", what))
            fprintf(stderr, "--- first\n%s--- again\n%s", text, again);
        ok(back->output == m->output && back->vocab == m->vocab && back->ctx == m->ctx &&
               back->planned == m->planned,
           "%s: derived fields (output, vocab, ctx) and planned agree", what);
        free(again);
        ir_module_free(back);
    }
    free(text);
    ir_module_free(m);
}

/* Expects text to be refused with at least one more error counted. */
static void refuse(const char *what, const char *text)
{
    int before = diag_error_count();
    src_file file;
    ir_module *m = read_text(text, &file);
    ok(m == NULL && diag_error_count() > before, "refused: %s", what);
    ir_module_free(m);
}

/* A good dump with `from` replaced by `to` (first occurrence). */
static char *edit(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    if (!at)
        DIE("edit: '%s' not in the dump", from);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    if (!out)
        DIE("out of memory");
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

static void refuse_edit(const char *what, const char *good, const char *from, const char *to)
{
    char *bad = edit(good, from, to);
    refuse(what, bad);
    free(bad);
}

/* ---------------------------------------------------------------- tests */

static void test_round_trips(void)
{
    round_trip("layer (half)", build_layer("half"));
    round_trip("planned layer", build_planned());
    round_trip("minimal", build_minimal());
    round_trip("computed tensors", build_recipes());
}

static void test_recipes_refused(void)
{
    ir_module *m = build_recipes();
    char *good = print_module(m);
    ir_module_free(m);
    refuse_edit("an unknown recipe", good, "= concat(", "= stack(");
    refuse_edit("a recipe of the wrong shape", good, "f32[5, 4] = rows(", "f32[6, 4] = rows(");
    refuse_edit("ranges out of order", good, "0:2, 5:8", "5:8, 0:2");
    refuse_edit("a range past the end", good, "0:2, 5:8", "0:2, 5:9");
    refuse_edit("an empty range", good, "0:2, 5:8", "0:2, 5:5");
    refuse_edit("a tensor after a range", good, "0:2, 5:8)", "0:2, \"x\" f32[4])");
    refuse_edit("a concat that makes another shape", good, "concat(scale_cols(", "concat(rows(\"x\" f32[4, 4], 0:1), scale_cols(");
    refuse_edit("scale_cols of mismatched widths", good,
                "scale_cols(\"q.weight\" f32[8, 4], \"norm.weight\" f32[4])",
                "scale_cols(\"q.weight\" f32[8, 4], \"norm.weight\" f32[5])");
    refuse_edit("an unclosed recipe", good, "0:2, 5:8)", "0:2, 5:8");
    free(good);
}

/* Value names need only increase: %0 %5 %9 read as dense ids 0 1 2. */
static void test_sparse_names(void)
{
    const char *text = "kiln-ir 2\nmodel sparse\ntensor @0 f32[4, 4] \"e\"\nbatch T<=2\n"
                       "forward {\n  %0 : i32[T] = token\n"
                       "  %5 : f32[4, 4] = weight tensor=@0 row=0 col=0\n"
                       "  %9 : f32[T, 4] = embed %5, %0 ; x l=-1\n  output %9\n}\n";
    src_file file;
    ir_module *m = read_text(text, &file);
    if (ok(m != NULL, "sparse value names read")) {
        ok(ir_verify(m) == 0 && m->ninsts == 4 && m->insts[2].args[0] == 1 &&
               m->insts[2].args[1] == 0 && m->output == 2 && m->vocab == 4,
           "sparse names map to dense ids");
        ok(m->insts[2].label == base_intern_str("x") &&
               m->insts[2].scope == base_intern_str("l=-1"),
           "label and scope are interned as printed");
        ok(m->tensors[0].loc.line == 3 && m->tensors[0].loc.file == &file,
           "a tensor's location points at its line of the dump");
        ir_module_free(m);
    }
}

/* Whether the first n bytes of text are refused. */
static int prefix_refused(const char *text, size_t n)
{
    char *cut = malloc(n + 1);
    if (!cut)
        DIE("out of memory");
    memcpy(cut, text, n);
    cut[n] = 0;
    src_file file;
    ir_module *r = read_text(cut, &file);
    int refused = r == NULL;
    ir_module_free(r);
    free(cut);
    return refused;
}

static void test_truncations(void)
{
    ir_module *m = build_layer("half");
    char *text = print_module(m);
    ir_module_free(m);
    int lines = 0, refused = 0, before = diag_error_count();
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++) {
        if (p[1] == 0)
            break;             /* the whole file */
        lines++;
        refused += prefix_refused(text, (size_t)(p + 1 - text));
    }
    ok(lines > 30 && refused == lines && diag_error_count() - before >= lines,
       "all %d truncations at a line end are refused (%d were)", lines, refused);
    /* and mid-line: every prefix short of the last newline */
    size_t len = strlen(text);
    int bytes = 0;
    refused = 0;
    for (size_t n = 0; n + 1 < len; n++, bytes++)
        refused += prefix_refused(text, n);
    ok(refused == bytes, "all %d truncations at a byte are refused (%d were)", bytes, refused);
    free(text);
}

static void test_malformed(void)
{
    ir_module *m = build_layer("half");
    char *good = print_module(m);
    ir_module_free(m);
    const char *head = "kiln-ir 2\nmodel x\ntensor @0 f32[4, 4] \"e\"\nbatch T<=2\nforward {\n";

    refuse("an empty file", "");
    refuse("garbage", "\x01\x02 hello world\n\xff\xfe");
    refuse("version 1", "kiln-ir 1\nmodel dsmoe\n");
    refuse("version 3", "kiln-ir 3\nmodel x\n");
    refuse("a huge version", "kiln-ir 99999999999999999999999\n");
    refuse("only the version", "kiln-ir 2\n");
    refuse_edit("an unknown dtype", good, "f32[16, 8]", "f33[16, 8]");
    refuse_edit("a zero dimension", good, "f32[16, 8]", "f32[16, 0]");
    refuse_edit("a separator without space", good, "f32[16, 8]", "f32[16,8]");
    refuse_edit("five dimensions", good, "f32[16, 8]", "f32[1, 1, 1, 1, 1]");
    refuse_edit("a type too large", good, "f32[16, 8]", "f32[65536, 65536, 32]");
    refuse_edit("a huge dimension", good, "f32[16, 8]", "f32[99999999999999999999, 8]");
    refuse_edit("an unclosed type", good, "f32[16, 8] \"", "f32[16, 8 \"");
    refuse_edit("an unknown op", good, "= token", "= foo");
    refuse_edit("a forward reference", good, "embed %1, %0", "embed %1, %7");
    refuse_edit("a self reference", good, "embed %1, %0", "embed %2, %0");
    refuse_edit("attributes out of order", good, "heads=2 rot=4", "rot=4 heads=2");
    refuse_edit("a missing attribute", good, "heads=2 rot=4", "rot=4");
    refuse_edit("an unknown attribute", good, "heads=2 rot=4", "heads=2 spin=4");
    refuse_edit("an attribute twice", good, "mode=\"half\"", "mode=\"half\" mode=\"half\"");
    refuse_edit("a huge integer attribute", good, "rot=4", "rot=9223372036854775808");
    refuse_edit("a float out of f32 range", good, "base=10000.5", "base=1e39");
    refuse_edit("a float that is not one", good, "base=10000.5", "base=1.2.3");
    refuse_edit("a huge value name", good, "embed %1, %0", "embed %1, %99999999999");
    refuse_edit("too many operands", good, "embed %1, %0", "embed %1, %0, %0");
    refuse_edit("too few operands", good, "embed %1, %0", "embed %1");
    refuse_edit("a value-less op with a value", good, "  stat %", "  %99 : f32[] = stat %");
    refuse_edit("a valued op without one", good, "  %0 : i32[T] = token", "  token");
    refuse_edit("an unterminated string", good, "\"q_proj\"", "\"q_proj");
    refuse_edit("an unknown escape", good, "\"q_proj\"", "\"q\\x41\"");
    refuse_edit("a NUL escape", good, "\"q_proj\"", "\"q\\000\"");
    refuse_edit("a raw tab in a string", good, "\"q_proj\"", "\"q\tproj\"");
    refuse_edit("tensors out of order", good, "tensor @1", "tensor @2");
    refuse_edit("a view of a missing tensor", good, "tensor=@1", "tensor=@99");
    refuse_edit("a header line out of order", good, "batch T<=4\n", "");
    refuse_edit("a duplicate statistic", good, "stat #0 active_fraction[0]\n",
                "stat #0 active_fraction[0]\nstat #1 active_fraction[0]\n");
    refuse_edit("a bad guard", good, "if %", "if ");
    refuse_edit("a bad memory region", good, "embed %1, %0", "embed %1, %0 mem=heap+0");
    refuse_edit("text after the op", good, "embed %1, %0", "embed %1, %0 junk");
    refuse_edit("a comment with a bad scope", good, "; q l=0", "; q l=x");
    refuse_edit("a comment with two labels", good, "; q l=0", "; q r l=0");
    refuse_edit("an unindented instruction", good, "  %0 :", "%0 :");
    refuse_edit("text after the closing brace", good, "\n}\n", "\n}\nmore\n");
    refuse_edit("a missing closing brace", good, "\n}\n", "\n");
    refuse_edit("a carriage return", good, "forward {\n", "forward {\r\n");
    refuse_edit("an unknown header line", good, "batch", "bench");
    refuse_edit("a second batch line", good, "batch T<=4\n", "batch T<=4\nbatch T<=4\n");
    refuse_edit("a bad runtime value", good, "runtime tau = ", "runtime tau = x");
    refuse_edit("a bad memory line", good, "batch T<=4\n", "batch T<=4\nmemory frame 1\n");
    refuse("decreasing value names", "kiln-ir 2\nmodel x\nbatch T<=1\nforward {\n"
                                     "  %3 : i32[T] = token\n  %2 : i32[T] = token\n}\n");
    char buf[512];
    snprintf(buf, sizeof buf, "%s  %%0 : i32[T] = token\n  %%1 : f32[4, 4] = weight tensor=@0 "
             "row=0 col=0\n  %%2 : f32[T, 4] = embed %%1, %%0\n  output %%2 %%2\n}\n", head);
    refuse("an extra operand to output", buf);
    snprintf(buf, sizeof buf, "%s  %%0 : i32[T] = token \\\n}\n", head);
    refuse("a stray backslash", buf);
    free(good);
}

/* Random byte edits of a good dump (fixed seed): each text is refused, or it reads to a
 * module the verifier can check without crashing; and when that module verifies, printing
 * and reading it is stable. */
static void test_mutations(void)
{
    ir_module *m = build_planned();
    char *good = print_module(m);
    ir_module_free(m);
    size_t len = strlen(good);
    char *buf = malloc(len + 2);
    static const char alphabet[] = "%@#:=,;[]{}\\\"\" 0123456789-+eTS<fabi\n\t\001\377";
    unsigned seed = 12345;
    int runs = 2000, read_ok = 0, stable = 0, verified = 0;
    for (int i = 0; i < runs; i++) {
        memcpy(buf, good, len + 1);
        size_t n = len;
        for (int e = 0; e < 1 + i % 3; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            char c = alphabet[(seed >> 20) % (sizeof alphabet - 1)];
            switch ((seed >> 4) % 3) {
            case 0: buf[at] = c; break;                                  /* replace */
            case 1: memmove(buf + at, buf + at + 1, n - at); n--; break; /* delete */
            default:                                                     /* insert */
                if (n < len + 1) {
                    memmove(buf + at + 1, buf + at, n - at + 1);
                    buf[at] = c;
                    n++;
                }
            }
        }
        src_file file;
        ir_module *r = read_text(buf, &file);
        if (!r)
            continue;
        read_ok++;
        if (ir_verify(r) == 0) {
            verified++;
            char *once = print_module(r);
            src_file f2;
            ir_module *r2 = read_text(once, &f2);
            char *twice = r2 ? print_module(r2) : NULL;
            stable += twice && strcmp(once, twice) == 0;
            free(twice);
            ir_module_free(r2);
            free(once);
        } else {
            stable++;
        }
        ir_module_free(r);
    }
    ok(stable == read_ok, "%d random edits: %d read (%d verified), every one that verified "
       "prints stably", runs, read_ok, verified);
    free(buf);
    free(good);
}

int main(void)
{
    test_round_trips();
    test_recipes_refused();
    test_sparse_names();
    test_truncations();
    test_malformed();
    test_mutations();
    printf("1..%d\n", n_test);
    base_free_all();
    return n_fail != 0;
}
