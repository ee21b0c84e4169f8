/* attn_passes_test.c - TAP test of the decisions fuse-attn and kvlayout note, and of -O0.
 *
 * Reads a dump (the argument: tests/ir/pass-fuse-attn.in, a UniAttn of 3 layers whose layer
 * 1 shares its probabilities with layer 2) and checks: fuse-attn fuses layer 0 alone and
 * notes one line per attention (fused; kept for the reuser; read by the reuser); kvlayout
 * notes one descriptor per cache, with its role, heads, dtype and layout; at -O0 fuse-attn
 * changes nothing and notes nothing, and kvlayout keeps caches position-major but still
 * gives them the --kv-type dtype. The IR after each pass must verify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/ir.h"
#include "../../passes/passes.h"

static int n_test, n_fail;

static void ok(int cond, const char *what)
{
    n_test++;
    if (!cond)
        n_fail++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_test, what);
}

static int count_op(const ir_module *m, ir_op o)
{
    int n = 0;
    for (int i = 0; i < m->ninsts; i++)
        n += m->insts[i].op == o;
    return n;
}

/* Whether note i is exactly `want`; prints it otherwise. */
static int note_is(int i, const char *want)
{
    const char *got = i < passes_note_count() ? passes_note(i) : "(none)";
    if (strcmp(got, want))
        printf("# note %d: got '%s', want '%s'\n", i, got, want);
    return !strcmp(got, want);
}

/* Caches with layout="head" and caches of dtype dt. */
static void count_caches(const ir_module *m, ir_dtype dt, int *head, int *of_dt, int *all)
{
    *head = *of_dt = *all = 0;
    for (int i = 0; i < m->ninsts; i++)
        if (m->insts[i].op == IR_cache) {
            (*all)++;
            *head += m->insts[i].sattr && !strcmp(m->insts[i].sattr, "head");
            *of_dt += m->insts[i].type.dtype == dt;
        }
}

static ir_module *load(src_file *f, const char *path)
{
    if (!src_file_read(f, path))
        exit(1);
    ir_module *m = ir_read(f);
    if (!m)
        exit(1);
    return m;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: attn_passes_test tests/ir/pass-fuse-attn.in\n");
        return 2;
    }
    src_file file;
    ir_module *m = load(&file, argv[1]);
    int applies = count_op(m, IR_attn_apply);

    ir_module *f = pass_fuse_attn(m);
    ok(f != m && ir_verify(f) == 0 && count_op(f, IR_attention) == 1 &&
       count_op(f, IR_attn_apply) == applies - 1 && count_op(f, IR_softmax) == 1,
       "fuse-attn: layer 0 fused, layer 1's shared probabilities kept");
    ok(passes_note_count() == 3 &&
       note_is(0, "fuse-attn: l=0: attention fused (scores, scale 0.5, softmax, apply)") &&
       note_is(1, "fuse-attn: l=1: probabilities kept for 1 more reader (l=2)") &&
       note_is(2, "fuse-attn: l=2: reads the probabilities of l=1"),
       "fuse-attn notes one line per attention, by layer");
    passes_notes_clear();

    passes_opts.kv_type = "f16";
    ir_module *k = pass_kvlayout(f);
    int head, f16, all;
    count_caches(k, DT_F16, &head, &f16, &all);
    ok(k && ir_verify(k) == 0 && all == 5 && head == 5 && f16 == 5,
       "kvlayout --kv-type f16: all 5 caches head-major f16");
    ok(passes_note_count() == 5 &&
       note_is(0, "kvlayout: %13 v_cache l=0: V of %22 (attention), 2 kv heads x 4, capacity 8, "
                  "f16, head-major [2][S][4]") &&
       note_is(3, "kvlayout: %58 k_cache l=1: K of %59 (attn_scores), 2 kv heads x 4, "
                  "capacity 8, f16, head-major [2][S][4]"),
       "kvlayout notes one descriptor per cache: role, heads, head dim, capacity, dtype, layout");
    ok(ir_value_bytes(k, &k->insts[13]) == 8 * 8 * 2, "an f16 cache takes 2 bytes a value");
    passes_notes_clear();
    ir_module_free(k);
    ir_module_free(f);

    passes_opts.o0 = 1;
    passes_opts.kv_type = "bf16";
    f = pass_fuse_attn(m);
    ok(f == m && passes_note_count() == 0, "-O0: fuse-attn changes nothing");
    k = pass_kvlayout(m);
    count_caches(k, DT_BF16, &head, &f16, &all);
    ok(k && ir_verify(k) == 0 && head == 0 && f16 == all && all == 5,
       "-O0: kvlayout keeps the caches position-major, in the --kv-type dtype");
    ir_module_free(k);
    ir_module_free(m);
    free((void *)file.text);
    passes_notes_clear();
    printf("1..%d\n", n_test);
    return n_fail ? 1 : 0;
}
