/* bind_test.c - TAP test of codegen/bind.c's storage types: bind_storage_types picks each
 * tensor's dtype (from --wtype or the checkpoint), and bind_weights packs it in that dtype,
 * zero-copy when the checkpoint already stores it, else converted (f32 -> f16/bf16 rounded to
 * nearest even, f16/bf16 -> f32 exact, f16 <-> bf16 through f32); computed tensors (recipes:
 * rows, cols, concat, scale_cols, matvec_t) are evaluated from the checkpoint and stored once
 * in their storage type.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../codegen/codegen.h"
#include "../../runtime/kiln_blob.h"

static int ntest, nfail;

static void ok(int cond, const char *desc)
{
    ntest++;
    nfail += !cond;
    printf("%sok %d - %s\n", cond ? "" : "not ", ntest, desc);
}

static const wspec specs[] = {
    {"a.weight", 2, {3, 5}},
    {"model.norm.weight", 1, {7}},
    {"g.weight", 1, {5}},
    {"v.weight", 1, {3}},
};
enum { NT = 4 };

/* The f32 det-weights of tensor k, as the checkpoint of dtype `dt` stores them, widened. */
static float stored(int k, uint64_t j, ckpt_dtype dt)
{
    float f[64];
    detweights_fill(f, specs[k].name, 0, j + 1, 11);
    return dt == CK_F32 ? f[j] : dt == CK_F16 ? kblob_f16_to_f32(kblob_f32_to_f16(f[j]))
                                              : kblob_bf16_to_f32(kblob_f32_to_bf16(f[j]));
}

/* Element j of tensor k as the blob should hold it in `to` (a KBLOB code), from dt. */
static int want_bytes(int k, uint64_t j, ckpt_dtype dt, uint32_t to, unsigned char *out)
{
    float f = stored(k, j, dt);
    if (to == KBLOB_F32) {
        memcpy(out, &f, 4);
        return 4;
    }
    uint16_t h = to == KBLOB_F16 ? kblob_f32_to_f16(f) : kblob_f32_to_bf16(f);
    memcpy(out, &h, 2);
    return 2;
}

static ir_module *module(void)
{
    ir_module *m = ir_module_new("t");
    for (int k = 0; k < NT; k++) {
        ir_type t = {.dtype = DT_F32, .rank = specs[k].rank};
        for (int d = 0; d < t.rank; d++)
            t.dim[d] = specs[k].shape[d];
        ir_add_tensor(m, specs[k].name, specs[k].name, t, (src_loc){0});
    }
    return m;
}

static void one_case(const char *path, ckpt_dtype dt, const char *wtype, uint32_t to, int copy)
{
    char desc[160];
    ckpt *ck = ckpt_open(path);
    ir_module *m = module();
    pack_tensor p[NT];
    void **owned = NULL;
    int nowned = 0;
    int rc = ck && bind_storage_types(m, ck, wtype, NULL, 0) == 0 ? 0 : -1;
    if (rc == 0)
        rc = bind_weights(m, ck, p, &owned, &nowned);
    int good = rc == 0;
    for (int k = 0; good && k < NT; k++) {
        uint64_t want;
        good = p[k].dtype == to && codegen_kblob_dtype(m->tensors[k].type.dtype) == to &&
               kblob_tensor_bytes(to, p[k].rank, p[k].dims, &want) == 0 && p[k].nbytes == want &&
               (p[k].data == ckpt_data(ck, ckpt_find(ck, specs[k].name))) == copy;
        uint64_t n = (uint64_t)ir_type_numel(&m->tensors[k].type);
        for (uint64_t j = 0; good && j < n; j++) {
            unsigned char b[4];
            int w = want_bytes(k, j, dt, to, b);
            good = memcmp((const unsigned char *)p[k].data + j * (uint64_t)w, b, (size_t)w) == 0;
        }
    }
    snprintf(desc, sizeof desc, "%s checkpoint, wtype %s: packed as %s, %s, values as converted",
             ckpt_dtype_name(dt), wtype ? wtype : "(as stored)", kblob_dtype_name(to),
             copy ? "zero-copy" : "converted copy");
    ok(good, desc);
    if (owned)
        bind_free(owned, nowned);
    ir_module_free(m);
    ckpt_close(ck);
}

/* Recipes evaluated from an f32 checkpoint: each computed tensor against the same values
 * computed here from the det-weights, stored once in f32 and once rounded to bf16. */
static void recipe_cases(const char *path)
{
    ckpt *ck = ckpt_open(path);
    ir_module *m = module();
    const ir_recipe *leaf[NT], *r[5];
    for (int k = 0; k < NT; k++)
        leaf[k] = ir_recipe_of(&m->tensors[k]);
    char why[128];
    int64_t two_rows[2] = {1, 3}, cols[4] = {0, 1, 3, 5};
    int bad = ir_recipe_make(&r[0], RC_ROWS, &leaf[0], 1, two_rows, 1, why, sizeof why) ||
              ir_recipe_make(&r[1], RC_CONCAT, (const ir_recipe *[]){leaf[0], r[0]}, 2, NULL, 0,
                             why, sizeof why) ||
              ir_recipe_make(&r[2], RC_COLS, &leaf[0], 1, cols, 2, why, sizeof why) ||
              ir_recipe_make(&r[3], RC_SCALE_COLS, (const ir_recipe *[]){leaf[0], leaf[2]}, 2,
                             NULL, 0, why, sizeof why) ||
              ir_recipe_make(&r[4], RC_MATVEC_T, (const ir_recipe *[]){leaf[0], leaf[3]}, 2,
                             NULL, 0, why, sizeof why);
    ok(!bad, "recipes of the right shapes are made");
    float a[15], g[5], v[3];
    for (int j = 0; j < 15; j++)
        a[j] = stored(0, (uint64_t)j, CK_F32);
    for (int j = 0; j < 5; j++)
        g[j] = stored(2, (uint64_t)j, CK_F32);
    for (int j = 0; j < 3; j++)
        v[j] = stored(3, (uint64_t)j, CK_F32);
    float want[5][25];
    int n[5] = {10, 25, 9, 15, 5};
    for (int j = 0; j < 10; j++)
        want[0][j] = a[5 + j];                               /* rows 1 and 2 */
    for (int j = 0; j < 25; j++)
        want[1][j] = j < 15 ? a[j] : a[5 + j - 15];          /* a, then rows 1..2 */
    for (int row = 0, o = 0; row < 3; row++)
        for (int c = 0; c < 5; c++)
            if (c < 1 || c >= 3)
                want[2][o++] = a[row * 5 + c];
    for (int j = 0; j < 15; j++)
        want[3][j] = a[j] * g[j % 5];
    for (int c = 0; c < 5; c++)
        want[4][c] = (float)((double)a[c] * v[0] + (double)a[5 + c] * v[1] +
                             (double)a[10 + c] * v[2]);
    static const char *const what[5] = {"rows", "concat(a, rows)", "cols", "scale_cols",
                                        "matvec_t"};
    for (int dt = 0; dt < 2 && !bad; dt++) {
        ir_module *mm = module();
        int first = mm->ntensors;
        for (int k = 0; k < 5; k++)
            ir_add_recipe_tensor(mm, what[k], dt ? DT_BF16 : DT_F32, r[k], (src_loc){0});
        pack_tensor p[NT + 5];
        void **owned = NULL;
        int nowned = 0;
        int rc = bind_weights(mm, ck, p, &owned, &nowned);
        for (int k = 0; k < 5; k++) {
            int good = rc == 0 && p[first + k].nbytes == (uint64_t)n[k] * (dt ? 2 : 4);
            for (int j = 0; good && j < n[k]; j++) {
                if (dt) {
                    uint16_t h;
                    memcpy(&h, (const unsigned char *)p[first + k].data + 2 * j, 2);
                    good = h == kblob_f32_to_bf16(want[k][j]);
                } else {
                    float got;
                    memcpy(&got, (const unsigned char *)p[first + k].data + 4 * j, 4);
                    good = got == want[k][j];
                }
            }
            char desc[128];
            snprintf(desc, sizeof desc, "recipe %s packed as %s: every value as computed here",
                     what[k], dt ? "bf16 (rounded once)" : "f32");
            ok(good, desc);
        }
        bind_free(owned, nowned);
        ir_module_free(mm);
    }
    ir_module *mm = module();
    const ir_recipe *missing = ir_recipe_load("absent.weight", leaf[2]->type, (src_loc){0});
    const ir_recipe *bad_r;
    ir_recipe_make(&bad_r, RC_SCALE_COLS, (const ir_recipe *[]){leaf[0], missing}, 2, NULL, 0,
                   why, sizeof why);
    ir_add_recipe_tensor(mm, "bad", DT_F32, bad_r, (src_loc){0});
    pack_tensor p[NT + 1];
    void **owned = NULL;
    int nowned = 0;
    fprintf(stderr, "# (an error message about 'absent.weight' is expected next)\n");
    ok(bind_weights(mm, ck, p, &owned, &nowned) == -1,
       "a recipe reading a tensor the checkpoint lacks is refused");
    bind_free(owned, nowned);
    ir_module_free(mm);
    ir_module_free(m);
    ckpt_close(ck);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[256], path[3][300];
    snprintf(dir, sizeof dir, "%s/kiln-bind-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        printf("1..0 # SKIP cannot create a temporary directory\n");
        return 0;
    }
    static const ckpt_dtype dts[3] = {CK_F32, CK_F16, CK_BF16};
    static const uint32_t codes[3] = {KBLOB_F32, KBLOB_F16, KBLOB_BF16};
    static const char *const names[3] = {"f32", "f16", "bf16"};
    int made = 1;
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s.safetensors", dir, names[i]);
        made &= safetensors_write_detweights(path[i], specs, NT, 11, dts[i]) == 0;
    }
    ok(made, "det-weights checkpoints in f32, f16, bf16");
    for (int i = 0; i < 3; i++) {
        one_case(path[i], dts[i], NULL, codes[i], 1);          /* as the checkpoint stores it */
        for (int w = 0; w < 3; w++)
            one_case(path[i], dts[i], names[w], codes[w], w == i);
    }

    recipe_cases(path[0]);

    ckpt *ck = ckpt_open(path[0]);
    ir_module *m = module();
    fprintf(stderr, "# (an error message about 'q2_k' is expected next)\n");
    ok(ck && bind_storage_types(m, ck, "q2_k", NULL, 0) == -1 && m->tensors[0].type.dtype == DT_F32,
       "bind_storage_types refuses an unknown weight type and changes nothing");
    ir_type vec4;
    char why[64];
    int64_t four = 4;
    ir_type_make(&vec4, DT_F32, 0, 1, &four, 0, why, sizeof why);
    ir_add_tensor(m, "absent.weight", "absent", vec4, (src_loc){0});
    ok(bind_storage_types(m, ck, NULL, NULL, 0) == 0 && m->tensors[NT].type.dtype == DT_F32,
       "a tensor the checkpoint lacks keeps its dtype (bind_weights reports it)");
    ir_module_free(m);
    ckpt_close(ck);

    ok(codegen_kblob_dtype(DT_F32) == KBLOB_F32 && codegen_kblob_dtype(DT_F16) == KBLOB_F16 &&
       codegen_kblob_dtype(DT_BF16) == KBLOB_BF16 && codegen_kblob_dtype(DT_Q8_0) == KBLOB_Q8_0 &&
       codegen_kblob_dtype(DT_Q4_0) == KBLOB_Q4_0 && codegen_kblob_dtype(DT_I32) == CODEGEN_NO_KBLOB &&
       codegen_kblob_dtype(DT_BOOL) == CODEGEN_NO_KBLOB,
       "codegen_kblob_dtype maps every storage type, and no value-only type");
    ok(!strcmp(codegen_kblob_name(KBLOB_Q4_0), "KBLOB_Q4_0") &&
       !strcmp(codegen_kblob_name(KBLOB_BF16), "KBLOB_BF16") && !codegen_kblob_name(7) &&
       !strcmp(ir_dtype_name(DT_Q8_0), "q8_0") && !strcmp(ir_dtype_name(DT_BF16), "bf16"),
       "KBLOB_* constant names; ir_dtype_name of the storage types");

    for (int i = 0; i < 3; i++)
        unlink(path[i]);
    rmdir(dir);
    printf("1..%d\n", ntest);
    return nfail ? 1 : 0;
}
