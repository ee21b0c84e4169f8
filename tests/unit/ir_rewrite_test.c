/* ir_rewrite_test.c - TAP test of ir/rewrite.c and of the passes that rebuild modules.
 *
 * A small module (embedding, two products of one weight, a guarded term, a cache, an unused
 * tensor) is rebuilt through ir_rewriter: a plain copy prints the same text; an inserted
 * instruction lands before its reader; a replaced value's readers read the replacement; a
 * dropped instruction and a dropped tensor leave no trace and the tensor table closes up;
 * use lists count every reader once. Then the passes: cse merges the duplicate product and
 * leaves effects alone, dce drops what no effect reads (a cache nothing reads too), widen inserts a widen before an
 * elementwise reader of a bf16 weight but not before linear, memplan keeps every value
 * inside the frame. Every result must verify.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/ir.h"
#include "../../passes/passes.h"

static int n_test, n_fail;

static void ok(int cond, const char *what)
{
    n_test++;
    n_fail += !cond;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_test, what);
}

static ir_type vec(int tok, int64_t n)
{
    ir_type t;
    char why[64];
    if (ir_type_make(&t, DT_F32, tok, 1, &n, 0, why, sizeof why))
        DIE("%s", why);
    return t;
}

static ir_type mat(int64_t r, int64_t c)
{
    ir_type t;
    char why[64];
    int64_t d[2] = {r, c};
    if (ir_type_make(&t, DT_F32, 0, 2, d, 0, why, sizeof why))
        DIE("%s", why);
    return t;
}

/* Appends an instruction typed by its rule. */
static int add(ir_module *m, ir_inst in)
{
    ir_type args[IR_MAX_ARGS], t;
    char why[256];
    for (int k = 0; k < in.nargs; k++)
        args[k] = m->insts[in.args[k]].type;
    if (ir_infer(m, &in, args, &t, why, sizeof why))
        DIE("test module: %s", why);
    in.type = t;
    return ir_append(m, &in);
}

static int op(ir_module *m, ir_op o, int a, int b, int c)
{
    int args[3] = {a, b, c};
    return add(m, ir_inst_make(o, ir_ops[o].arity, args));
}

static int view(ir_module *m, int tensor, ir_type t)
{
    ir_inst w = ir_inst_make(IR_weight, 0, NULL);
    w.iattr[0] = tensor;
    w.type = t;
    return add(m, w);
}

/* x = embed(token); a = linear(x, W); b = linear(x, W) (a duplicate); g = sum(a) > 0;
 * h = silu(b) if g; y = accum_if(zeros, h, g) + a * gain; cache(y); output(linear(y, E)) */
static ir_module *module(void)
{
    ir_module *m = ir_module_new("rw");
    ir_add_tensor(m, "embed", "embed", mat(10, 4), (src_loc){0});
    ir_add_tensor(m, "w", "w", mat(4, 4), (src_loc){0});
    ir_add_tensor(m, "unused", "unused", vec(0, 3), (src_loc){0});
    ir_add_tensor(m, "gain", "gain", vec(0, 4), (src_loc){0});
    int tok = add(m, ir_inst_make(IR_token, 0, NULL));
    int e = view(m, 0, mat(10, 4)), w = view(m, 1, mat(4, 4));
    int x = op(m, IR_embed, e, tok, 0);
    int a = op(m, IR_linear, x, w, 0);
    int b = op(m, IR_linear, x, w, 0);
    int s = op(m, IR_sum, a, 0, 0);
    ir_inst zc = ir_inst_make(IR_const, 0, NULL);
    int zero = add(m, zc);
    int g = op(m, IR_gt, s, zero, 0);
    ir_inst h = ir_inst_make(IR_silu, 1, &b);
    h.guard = g;
    int hid = add(m, h);
    ir_inst z = ir_inst_make(IR_zeros, 0, NULL);
    z.type = vec(1, 4);
    int zid = add(m, z);
    int acc = op(m, IR_accum_if, zid, hid, g);
    int gain = view(m, 3, vec(0, 4));
    int ag = op(m, IR_mul, a, gain, 0);
    int y = op(m, IR_add, acc, ag, 0);
    ir_inst c = ir_inst_make(IR_cache, 1, &y);
    c.iattr[0] = 8;
    add(m, c);
    int dead = op(m, IR_exp, y, 0, 0);
    (void)dead;
    int logits = op(m, IR_linear, y, e, 0);
    op(m, IR_output, logits, 0, 0);
    ir_module_derive(m);
    return m;
}

static char *print(const ir_module *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ir_print(f, m, NULL);
    fclose(f);
    return buf;
}

static int count_op(const ir_module *m, ir_op o)
{
    int n = 0;
    for (int i = 0; i < m->ninsts; i++)
        n += m->insts[i].op == o;
    return n;
}

int main(void)
{
    ir_module *m = module();
    ok(ir_verify(m) == 0, "the test module verifies");
    char *text = print(m);

    /* a plain copy */
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++)
        ir_rw_copy(&rw, i);
    ir_module *copy = ir_rw_end(&rw);
    char *copied = print(copy);
    ok(!strcmp(text, copied), "a plain copy prints the same text");
    char *again = print(m);
    ok(ir_verify(m) == 0 && !strcmp(text, again), "the old module is left as it was");
    free(again);
    ir_module_free(copy);

    /* insert a neg before the output's operand reads y, replace y's readers by it */
    ir_rw_begin(&rw, m, NULL);
    int y_old = -1, logits_old = -1;
    for (int i = 0; i < m->ninsts; i++)
        if (m->insts[i].op == IR_add)
            y_old = i;
    for (int i = 0; i < m->ninsts; i++) {
        int id = ir_rw_copy(&rw, i);
        if (i == y_old) {
            ir_inst n = ir_inst_make(IR_neg, 1, &id);
            n.type = rw.m->insts[id].type;
            ir_rw_replace(&rw, i, ir_rw_add(&rw, &n));
        }
        if (m->insts[i].op == IR_output)
            logits_old = m->insts[i].args[0];
    }
    ir_module *ins = ir_rw_end(&rw);
    int neg = -1;
    for (int i = 0; i < ins->ninsts; i++)
        if (ins->insts[i].op == IR_neg)
            neg = i;
    ok(ir_verify(ins) == 0 && neg == y_old + 1, "an inserted instruction lands before its readers");
    int readers_ok = 1;
    for (int i = neg + 1; i < ins->ninsts; i++)
        for (int k = 0; k < ins->insts[i].nargs; k++)
            readers_ok &= ins->insts[i].args[k] != y_old;
    ok(readers_ok && ins->insts[ins->output].args[0] == neg,
       "the replaced value's readers (cache, exp, the classifier) read the replacement");
    (void)logits_old;

    /* use lists of the inserted module */
    ir_uses u;
    ir_uses_build(ins, &u);
    ok(ir_use_count(&u, y_old) == 1 && u.user[u.first[y_old]] == neg, "use lists: y is read by neg alone");
    ok(ir_use_count(&u, neg) == 3, "use lists: neg has three readers");
    int g = ins->insts[y_old - 3].op == IR_accum_if ? ins->insts[y_old - 3].args[2] : -1;
    ok(g >= 0 && ir_use_count(&u, g) == 2, "use lists: a guard read as operand and as guard counts per instruction");
    ir_uses_free(&u);
    ir_module_free(ins);

    /* drop the unused tensor: the table closes up, the views are renumbered */
    int keep[4] = {1, 1, 0, 1};
    ir_rw_begin(&rw, m, keep);
    for (int i = 0; i < m->ninsts; i++)
        ir_rw_copy(&rw, i);
    ir_module *pruned = ir_rw_end(&rw);
    int gain_at_2 = 0;
    for (int i = 0; i < pruned->ninsts; i++)
        if (pruned->insts[i].op == IR_weight && pruned->insts[i].type.rank == 1)
            gain_at_2 = pruned->insts[i].iattr[0] == 2;
    ok(pruned->ntensors == 3 && !strcmp(pruned->tensors[2].name, "gain") && gain_at_2 &&
       ir_verify(pruned) == 0, "a dropped tensor leaves the table; views of the rest are renumbered");
    ir_module_free(pruned);

    /* the passes */
    ir_module *p = module();
    int linears = count_op(p, IR_linear);
    p = pass_cse(p);
    ok(ir_verify(p) == 0 && count_op(p, IR_linear) == linears - 1 && count_op(p, IR_cache) == 1,
       "cse merges the duplicate product and keeps the cache");
    int before = p->ninsts;
    ir_module *d = pass_dce(p);
    ok(ir_verify(d) == 0 && d->ninsts == before - 2 && count_op(d, IR_exp) == 0 &&
       count_op(d, IR_cache) == 0,
       "dce drops exactly what no effect reads: the exp, and the cache nothing reads");
    ir_module_free(p);
    ir_module_free(d);
    /* widen and memplan on the module as cse left it, its cache kept */
    ir_module *src = module();
    d = pass_cse(src);
    if (d != src)
        ir_module_free(src);
    for (int t = 0; t < d->ntensors; t++)
        ir_set_storage(d, t, DT_BF16);
    ir_module *wd = pass_widen(d);
    ok(ir_verify(wd) == 0 && count_op(wd, IR_widen) == 1,
       "widen: one widen, before the elementwise reader of a bf16 weight, none before linear/embed");
    ir_module_free(d);
    wd->t_max = 3;
    wd = pass_plan_memory(wd);
    int inside = wd && wd->planned && ir_verify(wd) == 0;
    for (int i = 0; inside && i < wd->ninsts; i++)
        if (wd->insts[i].mem == MEM_FRAME)
            inside = wd->insts[i].offset + ir_value_bytes(wd, &wd->insts[i]) <= wd->frame_bytes;
    ok(inside && wd->state_bytes == 8 * 4 * 4, "memplan: every value inside the frame, the cache in the state");
    ir_module_free(wd);

    free(text);
    free(copied);
    ir_module_free(m);
    printf("1..%d\n", n_test);
    return n_fail != 0;
}
