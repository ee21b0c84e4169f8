/* hfconfig.c - hyperparameters from a Hugging Face config.json, read fully or refused.
 *
 * Every top-level key is read. A scalar (number, boolean, string) becomes a scalar candidate
 * parameter of the key's name, an array of scalars a list candidate (items joined "a,b,c");
 * the usual Hugging Face keys are also offered under kiln's conventional names (hidden_size
 * -> dim, ...), so a spec written with those names fits a config unchanged. Which candidates
 * the spec takes is the front end's business; which keys it may leave unused is decided here,
 * after the front end (hf_config_check): a key that changes the computation must be used by
 * the spec or hold its neutral value, since a config half-read gives a model that runs and is
 * silently wrong. The table `keys` below lists such keys; so does any non-empty array whose
 * key names layers (no_rope_layers, ...: per-layer choices). A key it does not list is taken
 * to be metadata (architectures, torch_dtype, bos_token_id, ...) and may go unused.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

struct hf_config {
    const char *path;
    json_t *root;
    hf_param *params;
    int n, cap;
};

/* ---------------------------------------------------------------- neutral values
 *
 * Each test says whether value v of the key, left unused by the spec, leaves the computation
 * as the spec writes it. `c` gives the other keys, `s` the spec. */

typedef int neutral_fn(const hf_config *c, const json_t *v, const hf_spec *s);

static double num_or(const hf_config *c, const char *key, double dflt)
{
    const json_t *v = json_object_get(c->root, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int never(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)v, (void)s;
    return 0;
}
static int is_null(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)s;
    return json_is_null(v);
}
static int is_false(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)s;
    return json_is_null(v) || json_is_false(v);
}
static int is_one(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)s;
    return json_is_null(v) || (json_is_number(v) && json_number_value(v) == 1.0);
}
/* the dense examples hard-code SwiGLU with silu */
static int is_silu(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)s;
    return json_is_string(v) && !strcmp(json_string_value(v), "silu");
}
/* a spec without rope_base turns with the original base */
static int is_10000(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c, (void)s;
    return json_is_number(v) && json_number_value(v) == 10000.0;
}
static int head_dim_implied(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)s;
    double dim = num_or(c, "hidden_size", NAN), heads = num_or(c, "num_attention_heads", NAN);
    return json_is_null(v) || (json_is_number(v) && heads > 0 && json_number_value(v) * heads == dim);
}
static int kv_heads_all(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)s;
    return json_is_null(v) ||
           (json_is_number(v) && json_number_value(v) == num_or(c, "num_attention_heads", NAN));
}
/* no window, windows off, or a window the context never exceeds */
static int window_off(const hf_config *c, const json_t *v, const hf_spec *s)
{
    if (json_is_null(v) || json_is_false(json_object_get(c->root, "use_sliding_window")))
        return 1;
    double ctx = s->ctx > 0 ? (double)s->ctx : num_or(c, "max_position_embeddings", INFINITY);
    return json_is_number(v) && json_number_value(v) >= ctx;
}
static int windows_off(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)v, (void)s;
    return !json_is_true(json_object_get(c->root, "use_sliding_window"));
}
/* GPT-2's MLP width: null means 4 * n_embd (a spec without `hidden` has it so) */
static int inner_4x(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)s;
    return json_is_null(v) ||
           (json_is_number(v) && json_number_value(v) == 4 * num_or(c, "n_embd", NAN));
}
/* the spec's classifier is the embedding exactly when it declares no lm_head.weight */
static int tied_as_spec(const hf_config *c, const json_t *v, const hf_spec *s)
{
    (void)c;
    int tied = json_is_null(v) ? 1 : json_is_true(v) || (json_is_number(v) && json_number_value(v) != 0);
    return tied == s->tied;
}

/* The keys that change the computation. key: the Hugging Face name; param: kiln's name for it
 * (NULL: none), also offered as a candidate; neutral: when the spec may leave it unused; why:
 * what the spec does instead, for the error. A key with a kiln name is used when the spec
 * has a parameter of either name. */
static const struct hf_key {
    const char *key, *param;
    neutral_fn *neutral;
    const char *why;
} keys[] = {
    {"hidden_size", "dim", never, "it sets the model width"},
    {"intermediate_size", "hidden", never, "it sets the MLP width"},
    {"num_hidden_layers", "layers", never, "it sets the number of layers"},
    {"num_attention_heads", "heads", never, "it sets the number of heads"},
    {"vocab_size", "vocab", never, "it sets the vocabulary"},
    {"rms_norm_eps", "eps", never, "it sets the norm epsilon"},
    {"layer_norm_eps", "eps", never, "it sets the norm epsilon"},
    {"layer_norm_epsilon", "eps", never, "it sets the norm epsilon"},
    {"num_local_experts", "experts", never, "it sets the number of experts"},
    {"num_experts_per_tok", "top_k", never, "it sets the experts per token"},
    {"num_key_value_heads", "kv_heads", kv_heads_all,
     "without kv_heads the spec has as many key/value heads as heads"},
    {"rope_theta", "rope_base", is_10000, "without rope_base the spec turns with base 10000"},
    {"tie_word_embeddings", "tied", tied_as_spec,
     "without tied the spec's classifier is fixed (tied unless it declares lm_head.weight)"},
    {"max_position_embeddings", "ctx", NULL, NULL},   /* a capacity: neutral */
    /* GPT-2's names (GPT2Config) */
    {"n_embd", "dim", never, "it sets the model width"},
    {"n_layer", "layers", never, "it sets the number of layers"},
    {"n_head", "heads", never, "it sets the number of heads"},
    {"n_positions", "ctx", NULL, NULL},
    {"n_inner", NULL, inner_4x, "the spec's MLP is 4 * n_embd wide"},
    {"scale_attn_by_inverse_layer_idx", NULL, is_false,
     "the spec scales attention scores by 1/sqrt(head_dim) only"},
    {"hidden_act", NULL, is_silu, "the spec's MLP is fixed (silu)"},
    {"head_dim", NULL, head_dim_implied, "the spec's head size is hidden_size / num_attention_heads"},
    {"rope_scaling", NULL, is_null, "the spec's RoPE is unscaled"},
    {"partial_rotary_factor", NULL, is_one, "the spec turns the whole head"},
    {"attention_bias", NULL, is_false, "the spec's attention has no biases"},
    {"mlp_bias", NULL, is_false, "the spec's MLP has no biases"},
    {"use_sliding_window", NULL, is_false, "the spec's attention sees the whole context"},
    {"sliding_window", NULL, window_off, "the spec's attention sees the whole context"},
    {"max_window_layers", NULL, windows_off, "the spec's attention sees the whole context"},
    {"layer_types", NULL, never, "the spec's layers are as it writes them"},
    {"attn_logit_softcapping", NULL, is_null, "the spec does not cap attention scores"},
    {"final_logit_softcapping", NULL, is_null, "the spec does not cap the logits"},
    {"quantization_config", NULL, is_null, "the spec's weights are not quantized"},
};

static const struct hf_key *key_entry(const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}

/* ---------------------------------------------------------------- reading */

/* A JSON scalar as parameter text: integers and booleans as written, a real in the fewest
 * digits that read back to it (2048.0 -> "2048", 1e-06 -> "1e-06"), a string raw. 0 if v is
 * not a scalar (null, array, object). */
static int scalar_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    } else if (json_is_boolean(v)) {
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    } else {
        return 0;
    }
    return 1;
}

static void add(hf_config *c, const char *name, const char *value, hf_shape shape,
                const char *key, const char *origin)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        hf_param *grown = realloc(c->params, sizeof *grown * (size_t)c->cap);
        if (!grown)
            DIE("out of memory");
        c->params = grown;
    }
    c->params[c->n++] = (hf_param){base_intern_str(name), value, shape, key, origin};
}

/* The value of a key as candidate text: a scalar, or an array of scalars joined by commas.
 * NULL for null, objects and arrays holding arrays, objects or null (no parameter takes
 * them). */
static const char *value_text(const json_t *v, hf_shape *shape)
{
    char buf[64];
    if (json_is_string(v)) {
        *shape = HF_SCALAR;
        return base_intern_str(json_string_value(v));
    }
    if (scalar_text(v, buf, sizeof buf)) {
        *shape = HF_SCALAR;
        return base_intern_str(buf);
    }
    if (!json_is_array(v))
        return NULL;
    size_t len = 0, cap = 64, i;
    char *text = malloc(cap);
    const json_t *item;
    if (!text)
        DIE("out of memory");
    text[0] = 0;
    json_array_foreach(v, i, item) {
        const char *s = buf;
        if (json_is_string(item))
            s = json_string_value(item);
        else if (!scalar_text(item, buf, sizeof buf)) {
            free(text);
            return NULL;
        }
        size_t need = len + strlen(s) + 2;
        if (need > cap) {
            cap = 2 * need;
            char *grown = realloc(text, cap);
            if (!grown)
                DIE("out of memory");
            text = grown;
        }
        len += (size_t)sprintf(text + len, "%s%s", i ? "," : "", s);
    }
    *shape = HF_LIST;
    const char *out = base_intern(text, len);
    free(text);
    return out;
}

hf_config *hf_config_read(const char *path)
{
    json_error_t err;
    if (!ckpt_json_size_ok(path))
        return NULL;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root && err.line < 0) {      /* not read at all: no place in it to name */
        diag_file_error(path, "%s", err.text);
        return NULL;
    }
    if (!root) {
        diag_file_error(path, "line %d, column %d: %s", err.line, err.column, err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        diag_file_error(path, "a config.json holds one JSON object");
        json_decref(root);
        return NULL;
    }
    hf_config *c = calloc(1, sizeof *c);
    if (!c)
        DIE("out of memory");
    c->path = path;
    c->root = root;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        hf_shape shape;
        const char *text = value_text(v, &shape);
        if (!text)
            continue;
        const char *k = base_intern_str(key);
        /* sized to fit: sema splits the origin at its first ": " (paths have no limit) */
        size_t olen = strlen(path) + strlen(key) + 10;
        char *origin = malloc(olen);
        if (!origin)
            DIE("out of memory");
        snprintf(origin, olen, "%s: key \"%s\"", path, key);
        const char *o = base_intern_str(origin);
        free(origin);
        add(c, key, text, shape, k, o);
        const struct hf_key *e = key_entry(key);
        if (e && e->param)
            add(c, e->param, text, shape, k, o);
    }
    return c;
}

const hf_param *hf_config_params(const hf_config *c, int *n)
{
    *n = c->n;
    return c->params;
}

void hf_config_free(hf_config *c)
{
    if (!c)
        return;
    json_decref(c->root);
    free(c->params);
    free(c);
}

/* ---------------------------------------------------------------- the check */

static int spec_has(const hf_spec *s, const char *name)
{
    for (int i = 0; name && i < s->nnames; i++)
        if (!strcmp(s->names[i], name))
            return 1;
    return 0;
}

/* The value as it appears in the file, shortened, for messages. */
static void shown(const json_t *v, char *buf, size_t size)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        DIE("out of memory");
    if (strlen(text) >= size && size > 4)
        snprintf(buf, size, "%.*s...", (int)size - 4, text);
    else
        snprintf(buf, size, "%s", text);
    free(text);
}

int hf_config_check(const hf_config *c, const hf_spec *s, int verbose)
{
    int bad = 0;
    size_t nunused = 0, len = 0;
    char unused[4096] = "";
    const char *key;
    json_t *v;
    json_object_foreach(c->root, key, v) {
        const struct hf_key *e = key_entry(key);
        if (spec_has(s, key) || (e && spec_has(s, e->param))) {
            /* a value no parameter can take (null, an object, nested arrays) */
            hf_shape shape;
            if (!value_text(v, &shape)) {
                char val[64];
                shown(v, val, sizeof val);
                diag_file_error(c->path, "key \"%s\" is %s, which no parameter of the spec can "
                                "take", key, val);
                bad++;
            }
            continue;
        }
        int neutral = 1;
        const char *why = NULL;
        if (e && e->neutral) {
            neutral = e->neutral(c, v, s);
            why = e->why;
        } else if (!e && json_is_array(v) && json_array_size(v) && strstr(key, "layer")) {
            neutral = 0;   /* per-layer lists (no_rope_layers, mlp_only_layers, ...) */
            why = "it sets the layers one by one, and the spec's layers are as it writes them";
        }
        if (!neutral) {
            char val[64];   /* shown() abbreviates long values with "..." */
            shown(v, val, sizeof val);
            int p = e && e->param;   /* keys have no length limit: printed whole */
            diag_file_error(c->path, "key \"%s\" is %s, but the spec has no parameter %s%s%s'%s' "
                            "for it (%s): refusing a config it would only half read", key, val,
                            p ? "'" : "", p ? e->param : "", p ? "' or " : "", key, why);
            bad++;
            continue;
        }
        nunused++;
        if (len + strlen(key) + 8 < sizeof unused)
            len += (size_t)snprintf(unused + len, sizeof unused - len, "%s%s",
                                    len ? ", " : "", key);
        else if (len >= 3 && len + 6 < sizeof unused && strcmp(unused + len - 3, "..."))
            len += (size_t)snprintf(unused + len, sizeof unused - len, ", ...");
    }
    if (verbose && nunused && !bad)
        fprintf(stderr, "kiln: %s: keys the spec does not use: %s\n", c->path, unused);
    return bad ? -1 : 0;
}
