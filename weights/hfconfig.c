/* hfconfig.c - hyperparameters from a Hugging Face config.json.
 *
 * Each top-level number, boolean or string of the file becomes a (name, value) pair. The
 * usual Hugging Face keys are also offered under kiln's conventional parameter names
 * (hidden_size -> dim, ...), so a spec written with those names fits a config unchanged;
 * the caller ignores pairs the spec has no parameter for.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

static const struct { const char *hf, *kiln; } aliases[] = {
    {"hidden_size", "dim"},         {"intermediate_size", "hidden"},
    {"num_hidden_layers", "layers"}, {"num_attention_heads", "heads"},
    {"num_key_value_heads", "kv_heads"}, {"vocab_size", "vocab"},
    {"max_position_embeddings", "ctx"}, {"rms_norm_eps", "eps"},
    {"rope_theta", "rope_base"},    {"tie_word_embeddings", "tied"},
};

static int add(hf_param **out, int *n, const char *name, const char *value)
{
    hf_param *grown = realloc(*out, sizeof **out * (size_t)(*n + 1));
    if (!grown)
        return -1;
    *out = grown;
    grown[*n].name = base_intern(name, strlen(name));
    grown[*n].value = base_intern(value, strlen(value));
    (*n)++;
    return 0;
}

int hf_config_read(const char *path, hf_param **out, int *n)
{
    json_error_t err;
    *out = NULL;
    *n = 0;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        diag_file_error(path, "line %d, column %d: %s", err.line, err.column, err.text);
        return -1;
    }
    if (!json_is_object(root)) {
        diag_file_error(path, "a config.json holds one JSON object");
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        char text[64];
        if (json_is_integer(v))
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(text, sizeof text, "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(text, sizeof text, "%d", json_is_true(v));
        else if (json_is_string(v) && strlen(json_string_value(v)) < sizeof text)
            snprintf(text, sizeof text, "%s", json_string_value(v));
        else
            continue;
        int rc = add(out, n, key, text);
        for (size_t i = 0; rc == 0 && i < sizeof aliases / sizeof aliases[0]; i++)
            if (!strcmp(aliases[i].hf, key))
                rc = add(out, n, aliases[i].kiln, text);
        if (rc) {
            json_decref(root);
            DIE("out of memory");
        }
    }
    json_decref(root);
    return 0;
}
