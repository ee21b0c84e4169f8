/* bind.c - bind the spec's declared tensors to a checkpoint's, for the packer.
 *
 * Every declared tensor must exist in the checkpoint with the declared shape; each problem
 * is reported at the declaration in the spec, naming the file. F16 and BF16 tensors are
 * widened to F32 (the blob holds F32 until quantized layouts arrive).
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "../runtime/kiln_blob.h"

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0 && man == 0) {
        bits = sign;
    } else if (exp == 0) {           /* subnormal: normalize */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 1024));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 1023) << 13;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void shape_text(int rank, const int64_t *dim, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)dim[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
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
        const ckpt_tensor *ct = ckpt_find(ck, t->name);
        if (!ct) {
            diag_error(t->loc, "weight '%s' is bound to \"%s\", which %s does not have",
                       t->decl, t->name, ck->path);
            bad++;
            continue;
        }
        int same = ct->rank == t->type.rank;
        for (int k = 0; same && k < ct->rank; k++)
            same = ct->shape[k] == t->type.dim[k];
        if (!same) {
            char want[64], got[64];
            shape_text(t->type.rank, t->type.dim, want, sizeof want);
            shape_text(ct->rank, ct->shape, got, sizeof got);
            diag_error(t->loc, "weight '%s' is %s in the spec, but \"%s\" is %s in %s", t->decl,
                       want, t->name, got, ck->path);
            bad++;
            continue;
        }
        uint64_t n = (uint64_t)ir_type_numel(&t->type);
        pack_tensor *p = &out[i];
        memset(p, 0, sizeof *p);
        p->name = t->name;
        p->dtype = KBLOB_F32;
        p->rank = (uint32_t)t->type.rank;
        for (int k = 0; k < t->type.rank; k++)
            p->dims[k] = (uint64_t)t->type.dim[k];
        p->nbytes = n * 4;
        const uint8_t *src = ckpt_data(ck, ct);
        if (ct->dtype == CK_F32) {
            p->data = src;
            continue;
        }
        float *f = malloc(n * 4);
        if (!f)
            DIE("out of memory");
        for (uint64_t j = 0; j < n; j++) {
            uint16_t h;
            memcpy(&h, src + 2 * j, 2);
            if (ct->dtype == CK_F16) {
                f[j] = half_to_float(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&f[j], &bits, 4);
            }
        }
        (*owned)[(*nowned)++] = f;
        p->data = f;
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
    /* the header fields that shapes cannot show, against the spec's parameters */
    const struct { const char *param; int64_t value; } fields[] = {
        {"heads", ck->l2c.heads}, {"kv_heads", ck->l2c.kv_heads}, {"layers", ck->l2c.layers},
        {"ctx", ck->l2c.seq_len},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int64_t want = param_value(m, fields[i].param);
        if (want >= 0 && want != fields[i].value) {
            diag_file_error(ck->path, "the llama2.c header says %s = %lld, the spec has %lld",
                            fields[i].param, (long long)fields[i].value, (long long)want);
            bad++;
        }
    }
    /* a llama2.c file is one model: every tensor of it must be read by the spec */
    for (int i = 0; i < ck->n && !bad; i++) {
        const char *name = ck->tensors[i].name;
        if (!strncmp(name, "freq_cis", 8))
            continue;
        int used = 0;
        for (int k = 0; k < m->ntensors && !used; k++)
            used = !strcmp(m->tensors[k].name, name);
        if (!used) {
            diag_file_error(ck->path, "the llama2.c file holds \"%s\", which the spec does not "
                            "declare (%s)", name,
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
