/* gguf_hparams.c - a llama GGUF file's hyperparameters as spec parameters, read fully or
 * refused.
 *
 * The llama.* metadata keys become implied parameters of kiln's conventional names (dim,
 * hidden, layers, heads, kv_heads, ctx, eps, rope_base, rotary_dim, vocab, tied), as a
 * llama2.c header and a config.json do, so that `kiln build SPEC --weights model.gguf` fits
 * the file without -D (an explicit -D still wins). Every value is untrusted: its type and
 * range are checked, and a problem names the file and the key. After the front end,
 * gguf_hparams_check refuses a key that changes the computation when the spec has no
 * parameter for it and the value is not the one the spec computes with anyway (a GGUF half
 * read gives a model that runs and is silently wrong), as hf_config_check does for a config.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

/* What a key holds: an integer in 1..max, or a finite real in (0, max]. */
typedef enum { HK_INT, HK_REAL } hkind;

/* The llama.* keys kiln reads. param: the spec parameter it sets (NULL: none, the key is
 * only checked); max: the largest value taken (the .bin header's limits, or the int32 token
 * and position ids); required: llama.cpp cannot load a llama file without it. */
static const struct gguf_hkey {
    const char *key, *param;
    hkind kind;
    double max;
    int required;
} hkeys[] = {
    {"llama.embedding_length", "dim", HK_INT, 1 << 20, 1},
    {"llama.block_count", "layers", HK_INT, 1 << 12, 1},
    {"llama.attention.head_count", "heads", HK_INT, 1 << 12, 1},
    {"llama.attention.head_count_kv", "kv_heads", HK_INT, 1 << 12, 0},
    {"llama.feed_forward_length", "hidden", HK_INT, 1 << 22, 0},
    {"llama.context_length", "ctx", HK_INT, 2147483647.0, 0},
    {"llama.vocab_size", "vocab", HK_INT, 2147483647.0, 0},
    {"llama.attention.layer_norm_rms_epsilon", "eps", HK_REAL, 1.0, 0},
    {"llama.rope.freq_base", "rope_base", HK_REAL, 1e30, 0},
    {"llama.rope.dimension_count", "rotary_dim", HK_INT, 1 << 20, 0},
    {"llama.attention.key_length", NULL, HK_INT, 1 << 20, 0},
    {"llama.attention.value_length", NULL, HK_INT, 1 << 20, 0},
};
#define N_HKEYS (sizeof hkeys / sizeof hkeys[0])

static const struct gguf_hkey *hkey(const char *param)
{
    for (size_t i = 0; i < N_HKEYS; i++)
        if (hkeys[i].param && !strcmp(hkeys[i].param, param))
            return &hkeys[i];
    return NULL;
}

static const char *origin_of(const ckpt *c, const char *what)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s: %s", c->path, what);
    return base_intern_str(buf);
}

/* A real as parameter text: the fewest digits that read back to the stored value (an f32
 * 1e-5 is "1e-05", the text a -D would give, not 9.99999975e-06). */
static const char *real_text(double v, int is_f32)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v)
            break;
    }
    return base_intern_str(buf);
}

/* A key's value, checked: 1 with *iv / *rv set, 0 when absent, -1 after reporting. */
static int read_key(const ckpt *c, const struct gguf_hkey *k, int64_t *iv, double *rv)
{
    const gguf_kv *kv = ckpt_gguf_find(c, k->key);
    if (!kv) {
        if (k->required)
            diag_file_error(c->path, "the GGUF file has no '%s' (a llama model needs it)",
                            k->key);
        return k->required ? -1 : 0;
    }
    if (k->kind == HK_INT) {
        if (gguf_kv_int(kv, iv) < 0) {
            diag_file_error(c->path, "metadata key '%s' has type %s; it must be an integer "
                            "(key at byte %llu)", k->key, gguf_type_name(kv->type),
                            (unsigned long long)kv->offset);
            return -1;
        }
        if (*iv < 1 || (double)*iv > k->max) {
            diag_file_error(c->path, "metadata key '%s' is %lld, not in 1..%.0f (key at byte "
                            "%llu)", k->key, (long long)*iv, k->max,
                            (unsigned long long)kv->offset);
            return -1;
        }
        return 1;
    }
    if (gguf_kv_float(kv, rv) < 0) {
        diag_file_error(c->path, "metadata key '%s' has type %s; it must be f32 or f64 (key at "
                        "byte %llu)", k->key, gguf_type_name(kv->type),
                        (unsigned long long)kv->offset);
        return -1;
    }
    if (!isfinite(*rv) || *rv <= 0 || *rv > k->max) {
        diag_file_error(c->path, "metadata key '%s' is %g, not a finite number in (0, %g] (key "
                        "at byte %llu)", k->key, *rv, k->max, (unsigned long long)kv->offset);
        return -1;
    }
    return 1;
}

/* The vocabulary: the embedding's rows, which the weights fix; llama.vocab_size and the
 * tokenizer's token list, when present, must agree with them. 0 (*v = 0: unknown), or -1. */
static int read_vocab(const ckpt *c, int64_t vocab_size, int64_t *v, const char **origin)
{
    const ckpt_tensor *embed = ckpt_find(c, "model.embed_tokens.weight");
    const gguf_kv *tokens = NULL;
    int has_tokens = ckpt_gguf_array(c, "tokenizer.ggml.tokens", GGUF_STRING, &tokens);
    if (has_tokens < 0) {
        diag_file_error(c->path, "metadata key 'tokenizer.ggml.tokens' is not an array of "
                        "strings");
        return -1;
    }
    *v = 0;
    if (embed && embed->rank == 2) {
        *v = embed->shape[0];
        *origin = origin_of(c, "tensor 'token_embd.weight' (its rows)");
    } else if (vocab_size) {
        *v = vocab_size;
        *origin = origin_of(c, "key \"llama.vocab_size\"");
    } else if (has_tokens > 0) {
        *v = tokens->v.arr.n > INT32_MAX ? 0 : (int64_t)tokens->v.arr.n;
        *origin = origin_of(c, "key \"tokenizer.ggml.tokens\" (its length)");
    }
    if (vocab_size && vocab_size != *v) {
        diag_file_error(c->path, "metadata key 'llama.vocab_size' is %lld, but "
                        "token_embd.weight has %lld rows", (long long)vocab_size,
                        (long long)*v);
        return -1;
    }
    if (has_tokens > 0 && (uint64_t)*v != tokens->v.arr.n) {
        diag_file_error(c->path, "metadata key 'tokenizer.ggml.tokens' holds %llu tokens, but "
                        "the model's vocabulary is %lld", (unsigned long long)tokens->v.arr.n,
                        (long long)*v);
        return -1;
    }
    return 0;
}

int gguf_hparams_read(const ckpt *c, hf_param **out, int *n)
{
    *out = NULL;
    *n = 0;
    if (c->format != CKPT_GGUF)
        return 0;
    hf_param *p = calloc(N_HKEYS + 2, sizeof *p);
    if (!p)
        DIE("out of memory");
    int64_t ival[N_HKEYS] = {0};
    int bad = 0, np = 0;
    for (size_t i = 0; i < N_HKEYS; i++) {
        double rv = 0;
        const gguf_kv *kv = ckpt_gguf_find(c, hkeys[i].key);
        int got = read_key(c, &hkeys[i], &ival[i], &rv);
        if (got < 0)
            bad++;
        if (got <= 0 || !hkeys[i].param)
            continue;
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)ival[i]);
        char what[128];
        snprintf(what, sizeof what, "key \"%s\"", hkeys[i].key);
        p[np++] = (hf_param){base_intern_str(hkeys[i].param),
                             hkeys[i].kind == HK_INT ? base_intern_str(text)
                                                     : real_text(rv, kv->type == GGUF_F32),
                             HF_SCALAR, hkeys[i].key, origin_of(c, what)};
    }
    if (bad) {
        free(p);
        return -1;
    }
    /* shapes kiln's specs cannot take from any parameter */
    int64_t dim = ival[0], heads = ival[2], kv_heads = ival[3];
    if (dim % heads) {
        diag_file_error(c->path, "llama.embedding_length %lld is not a multiple of "
                        "llama.attention.head_count %lld", (long long)dim, (long long)heads);
        bad++;
    } else if (kv_heads && (kv_heads > heads || heads % kv_heads)) {
        diag_file_error(c->path, "llama.attention.head_count %lld is not a multiple of "
                        "llama.attention.head_count_kv %lld", (long long)heads,
                        (long long)kv_heads);
        bad++;
    }
    int64_t vocab;
    const char *vorigin = NULL;
    if (bad || read_vocab(c, ival[6], &vocab, &vorigin) != 0) {
        free(p);
        return -1;
    }
    if (vocab > 0) {
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)vocab);
        for (int i = 0; i < np; i++)   /* llama.vocab_size agrees; one candidate is enough */
            if (!strcmp(p[i].name, "vocab"))
                p[i] = p[--np];
        p[np++] = (hf_param){base_intern_str("vocab"), base_intern_str(text), HF_SCALAR,
                             "token_embd.weight", vorigin};
    }
    /* llama.cpp's classifier is the embedding when the file has no output.weight */
    p[np++] = (hf_param){base_intern_str("tied"),
                         base_intern_str(ckpt_find(c, "lm_head.weight") ? "0" : "1"), HF_SCALAR,
                         "output.weight", origin_of(c, "tensor 'output.weight' (present or not)")};
    *out = p;
    *n = np;
    return 0;
}

/* ---------------------------------------------------------------- the check */

static int spec_has(const hf_spec *s, const char *name)
{
    for (int i = 0; i < s->nnames; i++)
        if (!strcmp(s->names[i], name))
            return 1;
    return 0;
}

/* Keys with no parameter, or whose parameter the spec lacks, that change the computation
 * unless they hold the value the spec computes with. */
static int check_unused(const ckpt *c, const char *key, int64_t have,
                        int64_t want, const char *why)
{
    if (have == want)
        return 0;
    diag_file_error(c->path, "metadata key '%s' is %lld, but %s: refusing a file it would only "
                    "half read", key, (long long)have, why);
    return -1;
}

int gguf_hparams_check(const ckpt *c, const hf_spec *s)
{
    if (c->format != CKPT_GGUF)
        return 0;
    int64_t dim = 0, heads = 0, v = 0;
    ckpt_gguf_int(c, "llama.embedding_length", &dim);   /* checked by gguf_hparams_read */
    ckpt_gguf_int(c, "llama.attention.head_count", &heads);
    int64_t head_size = heads ? dim / heads : 0;
    int bad = 0;
    static const char *const always[] = {"dim", "layers", "heads", "hidden", "eps"};
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++) {
        const struct gguf_hkey *k = hkey(always[i]);
        if (ckpt_gguf_find(c, k->key) && !spec_has(s, k->param)) {
            diag_file_error(c->path, "metadata key '%s' sets the model's shape, but the spec "
                            "has no parameter '%s' for it: refusing a file it would only half "
                            "read", k->key, k->param);
            bad++;
        }
    }
    if (!spec_has(s, "kv_heads") && ckpt_gguf_int(c, "llama.attention.head_count_kv", &v) > 0)
        bad += check_unused(c, "llama.attention.head_count_kv", v, heads,
                            "the spec has no parameter 'kv_heads': it has as many key/value "
                            "heads as heads") != 0;
    double base = 10000;
    if (!spec_has(s, "rope_base") && ckpt_gguf_float(c, "llama.rope.freq_base", &base) > 0 &&
        base != 10000) {
        diag_file_error(c->path, "metadata key 'llama.rope.freq_base' is %g, but the spec has "
                        "no parameter 'rope_base': it turns with base 10000", base);
        bad++;
    }
    if (!spec_has(s, "rotary_dim") && ckpt_gguf_int(c, "llama.rope.dimension_count", &v) > 0)
        bad += check_unused(c, "llama.rope.dimension_count", v, head_size,
                            "the spec rotates the whole head (embedding_length / head_count) "
                            "and has no parameter 'rotary_dim' for a partial rotation") != 0;
    static const char *const head_keys[] = {"llama.attention.key_length",
                                            "llama.attention.value_length"};
    for (int i = 0; i < 2; i++)
        if (ckpt_gguf_int(c, head_keys[i], &v) > 0)
            bad += check_unused(c, head_keys[i], v, head_size,
                                "the spec's head size is embedding_length / head_count") != 0;
    if (!spec_has(s, "tied") && s->tied && ckpt_find(c, "lm_head.weight")) {
        diag_file_error(c->path, "the file has its own classifier (output.weight), but the "
                        "spec's classifier is the embedding and it has no parameter 'tied'");
        bad++;
    }
    /* rope scaling and experts: no llama spec of kiln's reads them */
    const gguf_str *type;
    if (ckpt_gguf_str(c, "llama.rope.scaling.type", &type) > 0 && strcmp(type->s, "none")) {
        diag_file_error(c->path, "metadata key 'llama.rope.scaling.type' is \"%.40s\", but the "
                        "spec's RoPE is unscaled", type->s);
        bad++;
    }
    static const char *const scale_keys[] = {"llama.rope.scaling.factor", "llama.rope.freq_scale"};
    for (int i = 0; i < 2; i++) {
        double f = 1;
        const gguf_kv *kv = ckpt_gguf_find(c, scale_keys[i]);
        if (kv && (gguf_kv_float(kv, &f) < 0 || !(f == 1 || (i == 0 && f == 0)))) {
            diag_file_error(c->path, "metadata key '%s' is not 1 (type %s), but the spec's "
                            "RoPE is unscaled", scale_keys[i], gguf_type_name(kv->type));
            bad++;
        }
    }
    if (ckpt_gguf_find(c, "llama.expert_count") &&
        (ckpt_gguf_int(c, "llama.expert_count", &v) < 0 || v != 0)) {
        diag_file_error(c->path, "metadata key 'llama.expert_count' says the model has "
                        "experts, which a llama GGUF's spec does not read");
        bad++;
    }
    return bad ? -1 : 0;
}
