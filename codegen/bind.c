/* bind.c - bind the spec's declared tensors to a checkpoint's, for the packer.
 *
 * Every tensor of the module must exist in the checkpoint with the declared shape (of the
 * module after the passes: dce dropped the declared tensors nothing reads, which need not
 * exist); each problem is reported at the declaration in the spec, naming the file. Each tensor is packed in its
 * storage dtype (ir_tensor.type.dtype, chosen by bind_storage_types): as the checkpoint holds
 * it when the dtypes agree (no copy), else converted (narrowing rounds to nearest even).
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

int bind_storage_types(ir_module *m, const ckpt *ck, const char *wtype)
{
    static const struct { const char *name; ir_dtype dt; } types[] = {
        {"f32", DT_F32}, {"f16", DT_F16}, {"bf16", DT_BF16},
    };
    int forced = -1;
    if (wtype) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
            if (!strcmp(wtype, types[k].name))
                forced = (int)k;
        if (forced < 0) {
            diag_file_error("kiln", "cannot store weights as '%s': the weight types are f32, "
                            "f16 and bf16", wtype);
            return -1;
        }
    }
    for (int i = 0; i < m->ntensors; i++) {
        ir_tensor *t = &m->tensors[i];
        const ckpt_tensor *ct = ckpt_find(ck, t->name);
        if (forced >= 0)
            ir_set_storage(m, i, types[forced].dt);
        else if (ct)   /* a missing tensor is bind_weights' to report */
            ir_set_storage(m, i, ckpt_storage(ct->dtype));
    }
    return 0;
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
    case RC_LOAD: case RC_COUNT:
        break;
    }
    free(a);
    free(b);
    return out;
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
        /* only f32/f16/bf16 can be made from a checkpoint tensor until quantizing lands */
        if (code != KBLOB_F32 && code != KBLOB_F16 && code != KBLOB_BF16) {
            diag_error(t->loc, "weight '%s' (\"%s\"): cannot store it as %s", t->decl, t->name,
                       ir_dtype_name(t->type.dtype));
            bad++;
            continue;
        }
        if (kblob_tensor_bytes(code, p->rank, p->dims, &p->nbytes) < 0 || p->nbytes > SIZE_MAX) {
            diag_error(t->loc, "weight '%s' (\"%s\"): its byte size overflows", t->decl, t->name);
            bad++;
            continue;
        }
        if (ct && ckpt_storage(ct->dtype) == t->type.dtype) {   /* stored as is: no copy */
            p->data = ckpt_data(ck, ct);
        } else {
            const uint8_t *src = ct ? ckpt_data(ck, ct) : NULL;
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
                convert(buf, code, src, ct->dtype, (uint64_t)ir_type_numel(&t->type));
            free(made);
            (*owned)[(*nowned)++] = buf;
            p->data = buf;
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
