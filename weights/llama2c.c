/* llama2c.c - llama2.c legacy "version 0" checkpoints (.bin), reading and writing.
 *
 * Header: 7 x int32 LE (dim, hidden, layers, heads, kv_heads, vocab, seq_len); vocab < 0
 * means an untied classifier. Then float32 tensors, per-layer ones stacked over layers:
 * embed, rms_att[L], wq[L], wk[L], wv[L], wo[L], rms_ffn[L], w1[L], w2[L], w3[L], rms_final,
 * freq_cis_real, freq_cis_imag, and wcls when untied. The layout names them with Hugging
 * Face names (w1 = gate_proj, w2 = down_proj, w3 = up_proj).
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

#define L2C_HEADER 28
#define L2C_NAME 64 /* longest name: model.layers.4095.post_attention_layernorm.weight */

/* Per-layer tensors in file order: HF suffix, rows, cols (codes resolved in l2c_dims). */
enum { D_DIM, D_HID, D_Q, D_KV, D_ONE };
static const struct {
    const char *suffix;
    int rows, cols;
} l2c_layer[] = {
    {"input_layernorm.weight", D_DIM, D_ONE},     {"self_attn.q_proj.weight", D_Q, D_DIM},
    {"self_attn.k_proj.weight", D_KV, D_DIM},     {"self_attn.v_proj.weight", D_KV, D_DIM},
    {"self_attn.o_proj.weight", D_DIM, D_Q},      {"post_attention_layernorm.weight", D_DIM, D_ONE},
    {"mlp.gate_proj.weight", D_HID, D_DIM},       {"mlp.down_proj.weight", D_DIM, D_HID},
    {"mlp.up_proj.weight", D_HID, D_DIM},
};
#define L2C_PER_LAYER ((int)(sizeof l2c_layer / sizeof l2c_layer[0]))

static int32_t le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static void l2c_describe(const llama2c_header *h, char *buf, size_t n) {
    snprintf(buf, n, "dim %d, hidden %d, layers %d, heads %d, kv_heads %d, vocab %d, seq_len %d",
             h->dim, h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len);
}

int llama2c_check_header(const char *path, const llama2c_header *h) {
    static const struct {
        const char *name;
        size_t off;
        int32_t max;
    } f[] = {
        {"dim", offsetof(llama2c_header, dim), 1 << 20},
        {"hidden", offsetof(llama2c_header, hidden), 1 << 22},
        {"layers", offsetof(llama2c_header, layers), 1 << 12},
        {"heads", offsetof(llama2c_header, heads), 1 << 12},
        {"kv_heads", offsetof(llama2c_header, kv_heads), 1 << 12},
        {"vocab", offsetof(llama2c_header, vocab), KILN_MAX_VOCAB},
        {"seq_len", offsetof(llama2c_header, seq_len), 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        int32_t v;
        memcpy(&v, (const char *)h + f[i].off, sizeof v);
        int is_vocab = f[i].off == offsetof(llama2c_header, vocab);
        int64_t a = is_vocab && v < 0 ? -(int64_t)v : v; /* vocab's sign = untied classifier */
        if (a <= 0 || a > f[i].max) {
            if (path)
                diag_file_error(path, "llama2.c header: %s = %d is not in 1..%d%s", f[i].name, v,
                                f[i].max, is_vocab ? " (or negative for an untied classifier)" : "");
            return -1;
        }
    }
    const char *why = h->dim % h->heads ? "dim is not a multiple of heads"
                    : h->heads % h->kv_heads ? "heads is not a multiple of kv_heads"
                    : (h->dim / h->heads) % 2 ? "the head size dim/heads is odd (RoPE needs pairs)"
                    : NULL;
    if (why) {
        if (path) {
            char d[200];
            l2c_describe(h, d, sizeof d);
            diag_file_error(path, "llama2.c header (%s): %s", d, why);
        }
        return -1;
    }
    return 0;
}

static void l2c_set(ckpt_tensor *t, char **np, const char *name, int64_t r, int64_t c,
                    uint64_t *off) {
    size_t len = strlen(name) + 1;
    memcpy(*np, name, len);
    *t = (ckpt_tensor){.name = *np, .dtype = CK_F32, .rank = c ? 2 : 1, .shape = {r, c},
                       .offset = *off, .nbytes = (uint64_t)r * (uint64_t)(c ? c : 1) * 4};
    *np += len;
    *off += t->nbytes; /* bounded: every field is capped in llama2c_check_header */
}

int llama2c_layout(const llama2c_header *h, ckpt_tensor **out, int *n) {
    *out = NULL;
    *n = 0;
    if (llama2c_check_header(NULL, h)) return -1;
    int64_t dim = h->dim, dh = h->dim / h->heads, L = h->layers;
    int64_t V = h->vocab < 0 ? -(int64_t)h->vocab : h->vocab;
    int64_t dims[] = {[D_DIM] = dim, [D_HID] = h->hidden, [D_Q] = h->heads * dh,
                      [D_KV] = h->kv_heads * dh, [D_ONE] = 0};
    int count = 1 + L2C_PER_LAYER * (int)L + 3 + (h->vocab < 0);
    ckpt_tensor *t = malloc((size_t)count * (sizeof *t + L2C_NAME));
    if (!t) return -1;
    char *np = (char *)(t + count), name[L2C_NAME];
    uint64_t off = L2C_HEADER;
    int k = 0;
    l2c_set(&t[k++], &np, "model.embed_tokens.weight", V, dim, &off);
    for (int j = 0; j < L2C_PER_LAYER; j++)
        for (int l = 0; l < L; l++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, l2c_layer[j].suffix);
            l2c_set(&t[k++], &np, name, dims[l2c_layer[j].rows], dims[l2c_layer[j].cols], &off);
        }
    l2c_set(&t[k++], &np, "model.norm.weight", dim, 0, &off);
    l2c_set(&t[k++], &np, "freq_cis_real", h->seq_len, dh / 2, &off);
    l2c_set(&t[k++], &np, "freq_cis_imag", h->seq_len, dh / 2, &off);
    if (h->vocab < 0) l2c_set(&t[k++], &np, "lm_head.weight", V, dim, &off);
    *out = t;
    *n = k;
    return 0;
}

static uint64_t l2c_end(const ckpt_tensor *t, int n) {
    return t[n - 1].offset + t[n - 1].nbytes;
}

int llama2c_parse(const char *path, const uint8_t *map, size_t size, llama2c_header *h,
                  ckpt_tensor **out, int *n) {
    *out = NULL;
    *n = 0;
    if (size < L2C_HEADER) {
        diag_file_error(path, "truncated: the llama2.c header needs %d bytes, the file has %zu",
                        L2C_HEADER, size);
        return -1;
    }
    *h = (llama2c_header){le32(map), le32(map + 4), le32(map + 8), le32(map + 12),
                          le32(map + 16), le32(map + 20), le32(map + 24)};
    if (llama2c_check_header(path, h)) return -1;
    ckpt_tensor *t;
    int cnt;
    if (llama2c_layout(h, &t, &cnt)) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    char d[200];
    l2c_describe(h, d, sizeof d);
    uint64_t need = l2c_end(t, cnt);
    if (need != size) {
        if (need > size) {
            int i = 0;
            while (t[i].offset + t[i].nbytes <= size) i++;
            diag_file_error(path, "truncated: the llama2.c layout for %s needs %" PRIu64
                            " bytes, the file has %zu (tensor '%s' at byte %" PRIu64 " is cut "
                            "short)", d, need, size, t[i].name, t[i].offset);
        } else {
            diag_file_error(path, "%" PRIu64 " trailing bytes at byte %" PRIu64 ": the llama2.c "
                            "layout for %s needs %" PRIu64 " bytes, the file has %zu",
                            (uint64_t)size - need, need, d, need, size);
        }
        free(t);
        return -1;
    }
    *out = t;
    *n = cnt;
    return 0;
}

/* ---------------------------------------------------------------- writer */

static void l2c_shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The specs must be exactly the layout's model tensors (all but freq_cis). */
static int l2c_match(const char *path, const ckpt_tensor *lt, int ln, const wspec *s, int n) {
    int rc = -1;
    char *seen = calloc((size_t)ln, 1);
    if (!seen) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < ln && (strcmp(lt[j].name, s[i].name) || !strncmp(s[i].name, "freq_cis_", 9)))
            j++;
        if (j == ln) {
            diag_file_error(path, "the llama2.c layout has no tensor '%s'", s[i].name);
            goto done;
        }
        if (seen[j]++) {
            diag_file_error(path, "tensor '%s' is given twice", s[i].name);
            goto done;
        }
        int same = s[i].rank == lt[j].rank;
        for (int k = 0; same && k < s[i].rank; k++) same = s[i].shape[k] == lt[j].shape[k];
        if (!same) {
            char a[120], b[120];
            l2c_shape_str(a, sizeof a, s[i].rank < 0 || s[i].rank > 4 ? 0 : s[i].rank, s[i].shape);
            l2c_shape_str(b, sizeof b, lt[j].rank, lt[j].shape);
            diag_file_error(path, "tensor '%s' is %s in the spec but %s in the llama2.c layout",
                            s[i].name, a, b);
            goto done;
        }
    }
    for (int j = 0; j < ln; j++)
        if (!seen[j] && strncmp(lt[j].name, "freq_cis_", 9)) {
            diag_file_error(path, "tensor '%s' of the llama2.c layout is missing from the spec",
                            lt[j].name);
            goto done;
        }
    rc = 0;
done:
    free(seen);
    return rc;
}

/* freq_cis_real (cos) or _imag (sin) of pos * 10000^(-2i/dh), in double, stored as float. */
static int l2c_put_freq(wfile *w, const llama2c_header *h, int imag) {
    int dh = h->dim / h->heads, half = dh / 2;
    float *row = malloc((size_t)half * sizeof *row);
    if (!row) return -1;
    int rc = 0;
    for (int pos = 0; pos < h->seq_len && rc == 0; pos++) {
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(10000.0, (double)(2 * i) / (double)dh);
            double ang = (double)pos * freq;
            row[i] = (float)(imag ? sin(ang) : cos(ang));
        }
        rc = wfile_put_f32(w, row, (size_t)half);
    }
    free(row);
    return rc;
}

int llama2c_write_detweights(const char *path, const llama2c_header *h, const wspec *t, int n,
                             uint64_t seed) {
    if (llama2c_check_header(path, h)) return -1;
    ckpt_tensor *lt;
    int ln;
    if (llama2c_layout(h, &lt, &ln)) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    if (l2c_match(path, lt, ln, t, n)) {
        free(lt);
        return -1;
    }
    wfile *w = wfile_open(path);
    if (!w) {
        free(lt);
        return -1;
    }
    uint8_t hb[L2C_HEADER];
    const int32_t f[7] = {h->dim, h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len};
    for (int i = 0; i < 7; i++)
        for (int k = 0; k < 4; k++) hb[4 * i + k] = (uint8_t)((uint32_t)f[i] >> (8 * k));
    int rc = wfile_write(w, hb, sizeof hb);
    for (int j = 0; j < ln && rc == 0; j++) {
        if (!strcmp(lt[j].name, "freq_cis_real") || !strcmp(lt[j].name, "freq_cis_imag")) {
            rc = l2c_put_freq(w, h, lt[j].name[9] == 'i');
            if (rc) diag_file_error(path, "cannot write tensor '%s'", lt[j].name);
        } else {
            rc = wfile_put_detweights(w, lt[j].name, lt[j].nbytes / 4, seed);
        }
    }
    free(lt);
    if (rc) {
        wfile_abort(w);
        return -1;
    }
    return wfile_commit(w);
}
