/* bind.c - bind the spec's declared tensors to a checkpoint's, for the packer.
 *
 * Every tensor of the module must exist in the checkpoint with the declared shape (of the
 * module after the passes: dce dropped the declared tensors nothing reads, which need not
 * exist); each problem is reported at the declaration in the spec, naming the file. Each tensor is packed in its
 * storage dtype (ir_tensor.type.dtype, chosen by bind_storage_types): as the checkpoint holds
 * it when the dtypes agree (no copy), else converted (narrowing rounds to nearest even).
 * What is packed is checked for NaN and infinities (finite.c) before it takes the panel
 * layout, so that an index names a row and a column.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "../runtime/kiln_blob.h"

uint32_t codegen_kblob_dtype(ir_dtype dt)
{
    switch (dt) {
    case DT_F32: return KBLOB_F32;
    case DT_F16: return KBLOB_F16;
    case DT_BF16: return KBLOB_BF16;
    case DT_Q8_0: return KBLOB_Q8_0;
    case DT_Q4_0: return KBLOB_Q4_0;
    case DT_I32: case DT_BOOL: case DT_COUNT: break;
    }
    return CODEGEN_NO_KBLOB;
}

const char *codegen_kblob_name(uint32_t code)
{
    switch (code) {
    case KBLOB_F32: return "KBLOB_F32";
    case KBLOB_F16: return "KBLOB_F16";
    case KBLOB_BF16: return "KBLOB_BF16";
    case KBLOB_Q8_0: return "KBLOB_Q8_0";
    case KBLOB_Q4_0: return "KBLOB_Q4_0";
    default: return NULL;
    }
}

static ir_dtype ckpt_storage(ckpt_dtype dt)
{
    switch (dt) {
    case CK_F16: return DT_F16;
    case CK_BF16: return DT_BF16;
    case CK_Q8_0: return DT_Q8_0;
    case CK_Q4_0: return DT_Q4_0;
    case CK_F32: break;
    }
    return DT_F32;
}

static int blocks_exact(const ckpt *ck, const ir_recipe *r, ckpt_dtype cdt);
static void shape_text(int rank, const int64_t *dim, char *buf, size_t size);

/* The checkpoint tensor a view tensor (a spec's weight bound to a slice or a transpose of a
 * stored tensor: ir_recipe_view_leaf) reads, present and of the shape the binding implies;
 * NULL after reporting at the declaration. */
static const ckpt_tensor *view_leaf(const ckpt *ck, const ir_tensor *t, const ir_recipe *leaf)
{
    const ckpt_tensor *ct = ckpt_find(ck, leaf->name);
    char want[64], got[64];
    if (!ct) {
        diag_error(t->loc, "weight '%s' is bound to a view of \"%s\", which %s does not have",
                   t->decl, leaf->name, ck->path);
        return NULL;
    }
    int same = ct->rank == leaf->type.rank;
    for (int k = 0; same && k < ct->rank; k++)
        same = ct->shape[k] == leaf->type.dim[k];
    if (!same) {
        shape_text(leaf->type.rank, leaf->type.dim, want, sizeof want);
        shape_text(ct->rank, ct->shape, got, sizeof got);
        diag_error(t->loc, "weight '%s' views \"%s\" as stored %s, but it is %s in %s",
                   t->decl, leaf->name, want, got, ck->path);
        return NULL;
    }
    return ct;
}

/* Whether a view recipe transposes what it reads. */
static int transposes(const ir_recipe *r)
{
    for (; r->op != RC_LOAD; r = r->src[0])
        if (r->op == RC_TRANSPOSE)
            return 1;
    return 0;
}

/* The storage types a weight can be given (--wtype, --wtype-of). */
static const struct { const char *name; ir_dtype dt; } storage_types[] = {
    {"f32", DT_F32}, {"f16", DT_F16}, {"bf16", DT_BF16}, {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0},
};

static int storage_lookup(const char *name)
{
    for (size_t k = 0; k < sizeof storage_types / sizeof storage_types[0]; k++)
        if (!strcmp(name, storage_types[k].name))
            return (int)storage_types[k].dt;
    return -1;
}

static int is_block(ir_dtype dt) { return dt == DT_Q8_0 || dt == DT_Q4_0; }

/* Whether tensor t can be stored as dt: a block type needs a matrix of whole 32-blocks. */
static int storage_fits(const ir_tensor *t, ir_dtype dt)
{
    return !is_block(dt) || (t->type.rank == 2 && t->type.dim[1] % 32 == 0);
}

/* Whether --wtype-of's name is tensor t's declaration: the same name, or the array it is an
 * element of ("wq" names wq[0], wq[1], ...). */
static int names_decl(const char *name, const ir_tensor *t)
{
    const char *d = t->decl ? t->decl : t->name;
    size_t n = strlen(name);
    return !strncmp(d, name, n) && (d[n] == 0 || d[n] == '[');
}

int bind_storage_types(ir_module *m, const ckpt *ck, const char *wtype, const bind_wtype_of *of,
                       int nof)
{
    int forced = -1, bad = 0;
    if (wtype && (forced = storage_lookup(wtype)) < 0) {
        diag_file_error("kiln", "cannot store weights as '%s': the weight types are f32, f16, "
                        "bf16, q8_0 and q4_0", wtype);
        return -1;
    }
    for (int k = 0; k < nof; k++) {
        int used = 0;
        for (int i = 0; i < m->ntensors && !used; i++)
            used = names_decl(of[k].decl, &m->tensors[i]);
        if (storage_lookup(of[k].wtype) < 0 || !used) {
            diag_file_error("kiln", "--wtype-of %s=%s: %s", of[k].decl, of[k].wtype,
                            !used ? "the spec reads no weight of that name"
                                  : "the weight types are f32, f16, bf16, q8_0 and q4_0");
            bad++;
        }
    }
    for (int i = 0; i < m->ntensors && !bad; i++) {
        ir_tensor *t = &m->tensors[i];
        const ir_recipe *leaf = t->recipe ? ir_recipe_view_leaf(t->recipe) : NULL;
        const ckpt_tensor *ct = ck && !t->recipe ? ckpt_find(ck, t->name) : NULL;
        if (ck && leaf && !(ct = view_leaf(ck, t, leaf))) {
            bad++;
            continue;
        }
        /* as stored, a view as the tensor it views (a missing tensor is bind_weights' to
         * report; a computed one keeps its type), then --wtype where it fits (a block type:
         * matrices of whole blocks; the rest stay as stored, as llama-quantize keeps norm
         * gains f32), then --wtype-of */
        ir_dtype dt = ct ? ckpt_storage(ct->dtype) : t->recipe || ck ? t->type.dtype : DT_F32;
        if (forced >= 0 && storage_fits(t, (ir_dtype)forced))
            dt = (ir_dtype)forced;
        for (int k = 0; k < nof; k++) {
            if (!names_decl(of[k].decl, t))
                continue;
            ir_dtype want = (ir_dtype)storage_lookup(of[k].wtype);
            if (!storage_fits(t, want)) {
                diag_error(t->loc, "--wtype-of %s=%s: weight '%s' is %s; %s keeps rows of whole "
                           "32-element blocks", of[k].decl, of[k].wtype, t->decl,
                           t->type.rank == 2 ? "a matrix whose rows are not" : "not a matrix",
                           of[k].wtype);
                bad++;
                break;
            }
            dt = want;
        }
        /* a view of block weights stays in blocks only when it keeps whole blocks: their
         * values are not requantized */
        if (leaf && ct && is_block(dt) && is_block(ckpt_storage(ct->dtype)) &&
            !blocks_exact(ck, t->recipe, ct->dtype)) {
            diag_error(t->loc, "weight '%s' views \"%s\" (%s in %s) %s: its blocks of 32 "
                       "cannot be kept; --wtype f32, f16 or bf16 (or --wtype-of) dequantizes it",
                       t->decl, leaf->name, ckpt_dtype_name(ct->dtype), ck->path,
                       transposes(t->recipe) ? "transposed"
                                             : "in pieces that are not whole blocks");
            bad++;
            continue;
        }
        ir_set_storage(m, i, dt);
    }
    return bad ? -1 : 0;
}

/* Element j of a checkpoint tensor of dtype dt, as f32 (exact for every checkpoint dtype). */
static float load_f32(const uint8_t *src, ckpt_dtype dt, uint64_t j)
{
    if (dt == CK_F32) {
        float f;
        memcpy(&f, src + 4 * j, 4);
        return f;
    }
    if (dt == CK_Q8_0 || dt == CK_Q4_0)    /* a block's f16 scale times a small integer */
        return dequant_at(dt, src, j);
    uint16_t h;
    memcpy(&h, src + 2 * j, 2);
    return dt == CK_F16 ? kblob_f16_to_f32(h) : kblob_bf16_to_f32(h);
}

/* n elements of src (checkpoint dtype from) into dst in the storage type `to` (f32, f16 or
 * bf16): one rounding at most, since every checkpoint value is exact in f32. */
static void convert(void *dst, uint32_t to, const uint8_t *src, ckpt_dtype from, uint64_t n)
{
    unsigned char *d = dst;
    for (uint64_t j = 0; j < n; j++) {
        float f = load_f32(src, from, j);
        if (to == KBLOB_F32) {
            memcpy(d + 4 * j, &f, 4);
        } else {
            uint16_t h = to == KBLOB_F16 ? kblob_f32_to_f16(f) : kblob_f32_to_bf16(f);
            memcpy(d + 2 * j, &h, 2);
        }
    }
}

float bind_src_at(const bind_src *s, uint64_t j)
{
    return s->f ? s->f[j] : load_f32(s->ck, s->dt, j);
}

static void shape_text(int rank, const int64_t *dim, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)dim[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* The checkpoint tensor a load reads, checked against its declaration: present, of the
 * declared shape. NULL after reporting at the declaration. */
static const ckpt_tensor *find_leaf(const ckpt *ck, const char *name, const ir_type *type,
                                    src_loc loc, const char *decl)
{
    const ckpt_tensor *ct = ckpt_find(ck, name);
    if (!ct) {
        diag_error(loc, "weight '%s' is bound to \"%s\", which %s does not have", decl, name,
                   ck->path);
        return NULL;
    }
    int same = ct->rank == type->rank;
    for (int k = 0; same && k < ct->rank; k++)
        same = ct->shape[k] == type->dim[k];
    if (!same) {
        char want[64], got[64];
        shape_text(type->rank, type->dim, want, sizeof want);
        shape_text(ct->rank, ct->shape, got, sizeof got);
        diag_error(loc, "weight '%s' is %s in the spec, but \"%s\" is %s in %s", decl, want,
                   name, got, ck->path);
        return NULL;
    }
    return ct;
}

static float *floats(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!p)
        DIE("out of memory");
    return p;
}

/* The values a recipe makes, in f32 (ir_type_numel of its type, malloc'ed); NULL after
 * reporting a leaf the checkpoint lacks. Every value of a checkpoint is exact in f32, so
 * stacking and cutting are exact; scaling rounds once, and a product sums in double. */
static float *recipe_eval(const ckpt *ck, const ir_recipe *r, const char *decl)
{
    int64_t n = ir_type_numel(&r->type);
    float *out = NULL, *a = NULL, *b = NULL;
    if (r->op == RC_LOAD) {
        const ckpt_tensor *ct = find_leaf(ck, r->name, &r->type, r->loc, r->name);
        if (!ct)
            return NULL;
        out = floats(n);
        const uint8_t *src = ckpt_data(ck, ct);
        for (int64_t j = 0; j < n; j++)
            out[j] = load_f32(src, ct->dtype, (uint64_t)j);
        return out;
    }
    if (!(a = recipe_eval(ck, r->src[0], decl)))
        return NULL;
    if (r->nsrc > 1 && r->op != RC_CONCAT && !(b = recipe_eval(ck, r->src[1], decl))) {
        free(a);
        return NULL;
    }
    const ir_type *at = &r->src[0]->type;
    int64_t cols = at->rank == 2 ? at->dim[1] : 1;
    out = floats(n);
    switch (r->op) {
    case RC_CONCAT: {
        int64_t at_elem = ir_type_numel(at);
        memcpy(out, a, sizeof(float) * (size_t)at_elem);
        for (int k = 1; k < r->nsrc; k++) {
            float *s = recipe_eval(ck, r->src[k], decl);
            if (!s) {
                free(a);
                free(out);
                return NULL;
            }
            int64_t sn = ir_type_numel(&r->src[k]->type);
            memcpy(out + at_elem, s, sizeof(float) * (size_t)sn);
            at_elem += sn;
            free(s);
        }
        break;
    }
    case RC_ROWS: {
        int64_t o = 0;
        for (int k = 0; k < r->nrange; k++) {
            int64_t len = (r->range[2 * k + 1] - r->range[2 * k]) * cols;
            memcpy(out + o, a + r->range[2 * k] * cols, sizeof(float) * (size_t)len);
            o += len;
        }
        break;
    }
    case RC_COLS: {
        int64_t o = 0;
        for (int64_t row = 0; row < at->dim[0]; row++)
            for (int k = 0; k < r->nrange; k++)
                for (int64_t c = r->range[2 * k]; c < r->range[2 * k + 1]; c++)
                    out[o++] = a[row * cols + c];
        break;
    }
    case RC_SCALE_COLS:
        for (int64_t row = 0; row < at->dim[0]; row++)
            for (int64_t c = 0; c < cols; c++)
                out[row * cols + c] = a[row * cols + c] * b[c];
        break;
    case RC_MATVEC_T:
        for (int64_t c = 0; c < cols; c++) {
            double acc = 0;
            for (int64_t row = 0; row < at->dim[0]; row++)
                acc += (double)a[row * cols + c] * b[row];
            out[c] = (float)acc;
        }
        break;
    case RC_TRANSPOSE:
        for (int64_t row = 0; row < at->dim[0]; row++)
            for (int64_t c = 0; c < cols; c++)
                out[c * at->dim[0] + row] = a[row * cols + c];
        break;
    case RC_LOAD: case RC_COUNT:
        break;
    }
    free(a);
    free(b);
    return out;
}

/* The checkpoint dtype of a block storage type. */
static ckpt_dtype block_ckpt(ir_dtype dt) { return dt == DT_Q8_0 ? CK_Q8_0 : CK_Q4_0; }

/* Whether recipe r can be assembled from the checkpoint's bytes as they are, in the block
 * type cdt: its leaves are present, of their declared shapes, stored as cdt, and it only
 * stacks, keeps rows, or keeps columns on block boundaries (no arithmetic: a block type's
 * values are not requantized). */
static int blocks_exact(const ckpt *ck, const ir_recipe *r, ckpt_dtype cdt)
{
    switch (r->op) {
    case RC_LOAD: {
        const ckpt_tensor *ct = ckpt_find(ck, r->name);
        if (!ct || ct->dtype != cdt || ct->rank != r->type.rank)
            return 0;
        for (int k = 0; k < ct->rank; k++)
            if (ct->shape[k] != r->type.dim[k])
                return 0;
        return 1;
    }
    case RC_COLS:
        for (int k = 0; k < 2 * r->nrange; k++)
            if (r->range[k] % 32)
                return 0;
        /* fall through */
    case RC_CONCAT: case RC_ROWS:
        for (int k = 0; k < r->nsrc; k++)
            if (!blocks_exact(ck, r->src[k], cdt))
                return 0;
        return r->type.rank == 2;
    default:
        return 0;
    }
}

/* The bytes (rows layout) of a recipe blocks_exact accepted, into out (its size). */
static void blocks_assemble(const ckpt *ck, const ir_recipe *r, ckpt_dtype cdt, unsigned char *out)
{
    uint32_t code = cdt == CK_Q8_0 ? KBLOB_Q8_0 : KBLOB_Q4_0;
    uint64_t rb = 0, srb = 0;
    kblob_row_bytes(code, (uint64_t)r->type.dim[1], &rb);
    if (r->op == RC_LOAD) {
        const ckpt_tensor *ct = ckpt_find(ck, r->name);
        memcpy(out, ckpt_data(ck, ct), (size_t)(rb * (uint64_t)r->type.dim[0]));
        return;
    }
    if (r->op == RC_CONCAT) {
        for (int k = 0; k < r->nsrc; k++) {
            blocks_assemble(ck, r->src[k], cdt, out);
            out += rb * (uint64_t)r->src[k]->type.dim[0];
        }
        return;
    }
    const ir_type *st = &r->src[0]->type;
    kblob_row_bytes(code, (uint64_t)st->dim[1], &srb);
    unsigned char *src = malloc((size_t)(srb * (uint64_t)st->dim[0]));
    if (!src)
        DIE("out of memory");
    blocks_assemble(ck, r->src[0], cdt, src);
    uint64_t bb = cdt == CK_Q8_0 ? 34 : 18;
    if (r->op == RC_ROWS) {
        for (int k = 0; k < r->nrange; k++) {
            uint64_t n = (uint64_t)(r->range[2 * k + 1] - r->range[2 * k]) * srb;
            memcpy(out, src + (uint64_t)r->range[2 * k] * srb, (size_t)n);
            out += n;
        }
    } else {                   /* RC_COLS, block boundaries */
        for (int64_t row = 0; row < st->dim[0]; row++)
            for (int k = 0; k < r->nrange; k++) {
                uint64_t n = (uint64_t)(r->range[2 * k + 1] - r->range[2 * k]) / 32 * bb;
                memcpy(out, src + (uint64_t)row * srb + (uint64_t)r->range[2 * k] / 32 * bb,
                       (size_t)n);
                out += n;
            }
    }
    free(src);
}

/* rows x cols f32 values quantized into dst, row by row (the block type `to`, rows layout),
 * as ggml's reference quantizers do (weights/quant.c). */
static void quantize_rows(void *dst, uint32_t to, const float *x, int64_t rows, int64_t cols)
{
    uint64_t rb = 0;
    kblob_row_bytes(to, (uint64_t)cols, &rb);
    for (int64_t r = 0; r < rows; r++) {
        unsigned char *d = (unsigned char *)dst + (uint64_t)r * rb;
        if (to == KBLOB_Q8_0)
            quant_q8_0_row(x + r * cols, d, cols);
        else
            quant_q4_0_row(x + r * cols, d, cols);
    }
}

/* All of a checkpoint tensor's values as f32 (exact for every dtype), malloc'ed. */
static float *load_all(const ckpt *ck, const ckpt_tensor *ct, int64_t n)
{
    float *f = floats(n);
    const uint8_t *src = ckpt_data(ck, ct);
    for (int64_t j = 0; j < n; j++)
        f[j] = load_f32(src, ct->dtype, (uint64_t)j);
    return f;
}

/* The packed tensor p (rows layout) into the panel layout (runtime/kiln_blob.h), in a buffer
 * of its own; a converted buffer p had is freed (the last of owned[]). */
static void to_panels(pack_tensor *p, void **owned, int *nowned)
{
    void *buf = malloc(p->nbytes ? (size_t)p->nbytes : 1);
    if (!buf)
        DIE("out of memory");
    if (kblob_to_panel(buf, p->data, p->dtype, p->dims[0], p->dims[1]) != 0)
        DIE("tensor %s: no panel layout for %s", p->name, kblob_dtype_name(p->dtype));
    if (*nowned > 0 && owned[*nowned - 1] == p->data)
        free(owned[--*nowned]);
    owned[(*nowned)++] = buf;
    p->data = buf;
    p->layout = KBLOB_PANEL;
}

int bind_weights(const ir_module *m, const ckpt *ck, pack_tensor *out, void ***owned, int *nowned)
{
    int bad = 0;
    *owned = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof(void *));
    *nowned = 0;
    if (!*owned)
        DIE("out of memory");
    for (int i = 0; i < m->ntensors; i++) {
        const ir_tensor *t = &m->tensors[i];
        const ckpt_tensor *ct = NULL;
        if (!t->recipe && !(ct = find_leaf(ck, t->name, &t->type, t->loc, t->decl))) {
            bad++;
            continue;
        }
        uint32_t code = codegen_kblob_dtype(t->type.dtype);
        pack_tensor *p = &out[i];
        memset(p, 0, sizeof *p);
        p->name = t->name;
        p->dtype = code;
        p->rank = (uint32_t)t->type.rank;
        for (int k = 0; k < t->type.rank; k++)
            p->dims[k] = (uint64_t)t->type.dim[k];
        if (is_block(t->type.dtype) &&
            (t->type.rank != 2 || t->type.dim[1] % 32 != 0)) {   /* an IR dump may say so */
            diag_error(t->loc, "weight '%s' (\"%s\"): cannot store it as %s: its rows are not "
                       "whole 32-element blocks", t->decl, t->name, ir_dtype_name(t->type.dtype));
            bad++;
            continue;
        }
        if (kblob_tensor_bytes(code, p->rank, p->dims, &p->nbytes) < 0 || p->nbytes > SIZE_MAX) {
            diag_error(t->loc, "weight '%s' (\"%s\"): its byte size overflows", t->decl, t->name);
            bad++;
            continue;
        }
        bind_src src = {NULL, NULL, CK_F32};   /* what conversion started from, for finite.c */
        if (ct && ckpt_storage(ct->dtype) == t->type.dtype) {   /* stored as is: no copy */
            p->data = ckpt_data(ck, ct);
            bad += finite_check(t, p, &src) != 0;
        } else if (is_block(t->type.dtype)) {
            /* stacked or cut blocks as they are; anything else computed in f32 and quantized
             * once, as ggml's quantizers do */
            void *buf = malloc(p->nbytes ? (size_t)p->nbytes : 1);
            if (!buf)
                DIE("out of memory");
            ckpt_dtype cdt = block_ckpt(t->type.dtype);
            (*owned)[(*nowned)++] = buf;
            p->data = buf;
            if (t->recipe && blocks_exact(ck, t->recipe, cdt)) {
                blocks_assemble(ck, t->recipe, cdt, buf);
                bad += finite_check(t, p, &src) != 0;
            } else {
                int64_t n = ir_type_numel(&t->type);
                float *f = t->recipe ? recipe_eval(ck, t->recipe, t->decl) : load_all(ck, ct, n);
                if (!f) {
                    bad++;
                    continue;
                }
                quantize_rows(buf, code, f, t->type.dim[0], t->type.dim[1]);
                src.f = f;
                bad += finite_check(t, p, &src) != 0;
                free(f);
            }
        } else {
            const uint8_t *from = ct ? ckpt_data(ck, ct) : NULL;
            float *made = NULL;
            if (t->recipe && !(made = recipe_eval(ck, t->recipe, t->decl))) {
                bad++;
                continue;
            }
            void *buf = malloc(p->nbytes ? (size_t)p->nbytes : 1);
            if (!buf)
                DIE("out of memory");
            if (made)
                convert(buf, code, (const uint8_t *)made, CK_F32,
                        (uint64_t)ir_type_numel(&t->type));
            else
                convert(buf, code, from, ct->dtype, (uint64_t)ir_type_numel(&t->type));
            (*owned)[(*nowned)++] = buf;
            p->data = buf;
            src = made ? (bind_src){made, NULL, CK_F32} : (bind_src){NULL, from, ct->dtype};
            bad += finite_check(t, p, &src) != 0;
            free(made);
        }
        if (t->layout == IR_LAYOUT_PANEL)
            to_panels(p, *owned, nowned);
    }
    return bad ? -1 : 0;
}

/* The module's integer parameter `name`, or -1 when it has none. */
static int64_t param_value(const ir_module *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) {
            char *end;
            long long v = strtoll(m->params[i].text, &end, 10);
            return *end ? -1 : v;
        }
    return -1;
}

int bind_check_llama2c(const ir_module *m, const ckpt *ck)
{
    if (ck->format != CKPT_LLAMA2C)
        return 0;
    int bad = 0;
    /* the header fields that shapes cannot show, against the spec's parameters; not seq_len:
     * it is the context trained for, a capacity the spec may choose otherwise (--ctx) */
    const struct { const char *param; int64_t value; } fields[] = {
        {"heads", ck->l2c.heads}, {"kv_heads", ck->l2c.kv_heads}, {"layers", ck->l2c.layers},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int64_t want = param_value(m, fields[i].param);
        if (want >= 0 && want != fields[i].value) {
            diag_file_error(ck->path, "the llama2.c header says %s = %lld, the spec has %lld",
                            fields[i].param, (long long)fields[i].value, (long long)want);
            bad++;
        }
    }
    /* a llama2.c file is one model: every tensor of it must be read by the spec (m is the
     * module after the passes: a declared weight nothing reads is no longer in it) */
    for (int i = 0; i < ck->n && !bad; i++) {
        const char *name = ck->tensors[i].name;
        if (!strncmp(name, "freq_cis", 8))
            continue;
        int used = 0;
        for (int k = 0; k < m->ntensors && !used; k++)
            used = ir_recipe_reads(ir_recipe_of(&m->tensors[k]), name);
        if (!used) {
            diag_file_error(ck->path, "the llama2.c file holds \"%s\", which the spec does not "
                            "declare or never reads (%s)", name,
                            !strcmp(name, "lm_head.weight") ? "the file has an untied classifier"
                                                            : "a different model?");
            bad++;
        }
    }
    return bad ? -1 : 0;
}

void bind_free(void **owned, int nowned)
{
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
}
