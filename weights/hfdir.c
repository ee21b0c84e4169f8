/* hfdir.c - a Hugging Face model folder as one checkpoint.
 *
 * A folder holds config.json (the hyperparameters: the build reads it as --config), the
 * weights as model.safetensors or as shards listed by model.safetensors.index.json
 * ({"weight_map": {tensor name: shard file name}, "metadata": {...}}), and often
 * tokenizer.json. Big checkpoints are sharded, so nothing is copied: each shard is mapped
 * once and parsed as a single safetensors file is (every size and offset checked); the
 * folder's tensors are those the index names, each pointing into its shard's mapping. The
 * index is untrusted too: a shard path must stay inside the folder, every shard it names must
 * exist and hold the tensors mapped to it.
 */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/base.h"
#include "weights.h"

/* DIR/name, interned. */
static const char *in_dir(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    char *buf = malloc(n + strlen(name) + 2);
    if (!buf)
        DIE("out of memory");
    sprintf(buf, "%.*s/%s", (int)n, dir, name);
    const char *out = base_intern_str(buf);
    free(buf);
    return out;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard's name from the index must name a file inside the folder: relative, no ".."
 * component. 0 if it does, else -1 (reported against the index). */
static int check_shard_name(const char *index, const char *tensor, const char *file)
{
    const char *why = NULL;
    if (!*file)
        why = "is empty";
    else if (file[0] == '/')
        why = "is an absolute path";
    for (const char *p = file; !why && p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && !strncmp(p, "..", 2))
            why = "leaves the folder (a '..' component)";
        p = p[len] ? p + len + 1 : NULL;
    }
    if (!why)
        return 0;
    diag_file_error(index, "weight_map: tensor '%s' is in \"%s\", which %s; a shard must be a "
                    "file of the folder", tensor, file, why);
    return -1;
}

/* One shard as the index names it, and its tensors (safetensors_parse: one allocation). */
typedef struct shard_read {
    const char *file;          /* the name in the index */
    ckpt_tensor *tensors;
    int n;
} shard_read;

static ckpt *new_ckpt(const char *dir)
{
    ckpt *c = calloc(1, sizeof *c);
    if (!c)
        DIE("out of memory");
    c->path = base_intern_str(dir);
    c->format = CKPT_SAFETENSORS;
    return c;
}

/* The folder's tokenizer.json, when present. */
static void note_side_files(ckpt *c, const char *dir)
{
    const char *tok = in_dir(dir, "tokenizer.json");
    c->tokenizer_json = is_file(tok) ? tok : NULL;
}

/* Index of the shard named file in shards[0..n), or -1. */
static int find_shard(const shard_read *s, int n, const char *file)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].file, file))
            return i;
    return -1;
}

static const ckpt_tensor *shard_tensor(const shard_read *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->tensors[i].name, name))
            return &s->tensors[i];
    return NULL;
}

/* Maps and parses every shard the index names, in order of first mention. 0, or -1. */
static int open_shards(ckpt *c, const char *dir, const char *index, json_t *map,
                       shard_read **out, int *nout)
{
    size_t cap = json_object_size(map) + 1;
    shard_read *s = calloc(cap, sizeof *s);
    c->shards = calloc(cap, sizeof *c->shards);
    if (!s || !c->shards)
        DIE("out of memory");
    *out = s;
    *nout = 0;
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        if (!json_is_string(v)) {
            diag_file_error(index, "weight_map: the shard of tensor '%s' is not a string", name);
            return -1;
        }
        const char *file = json_string_value(v);
        if (check_shard_name(index, name, file) != 0)
            return -1;
        if (find_shard(s, *nout, file) >= 0)
            continue;
        ckpt_shard *sh = &c->shards[c->nshards];
        sh->path = in_dir(dir, file);
        if (!(sh->map = ckpt_map_file(sh->path, &sh->size))) {
            diag_file_error(index, "weight_map: tensor '%s' is in \"%s\", which cannot be read "
                            "(above)", name, file);
            return -1;
        }
        c->nshards++;
        s[*nout].file = file;
        if (safetensors_parse(sh->path, sh->map, sh->size, &s[*nout].tensors, &s[*nout].n))
            return -1;
        ++*nout;
    }
    return 0;
}

/* The index's tensors, each pointing into its shard: one allocation with the names. */
static int gather_tensors(ckpt *c, const char *index, json_t *map, const shard_read *s, int ns)
{
    size_t names = 0, count = json_object_size(map);
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v)
        names += strlen(name) + 1;
    ckpt_tensor *t = malloc(count * sizeof *t + names + 1);
    if (!t)
        DIE("out of memory");
    char *np = (char *)(t + count);
    int n = 0;
    json_object_foreach(map, name, v) {
        int k = find_shard(s, ns, json_string_value(v));
        const ckpt_tensor *st = shard_tensor(&s[k], name);
        if (!st) {
            diag_file_error(index, "weight_map: tensor '%s' is mapped to \"%s\", but %s does not "
                            "hold it", name, s[k].file, c->shards[k].path);
            free(t);
            return -1;
        }
        t[n] = *st;
        t[n].shard = k;
        t[n].name = strcpy(np, name);
        np += strlen(name) + 1;
        n++;
    }
    c->tensors = t;
    c->n = n;
    return 0;
}

/* DIR/model.safetensors.index.json and its shards into c. 0, or -1. */
static int open_sharded(ckpt *c, const char *dir, const char *index)
{
    json_error_t err;
    if (!ckpt_json_size_ok(index))
        return -1;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &err);
    if (!root) {               /* line -1: the file could not be read at all */
        if (err.line < 0)
            diag_file_error(index, "%s", err.text);
        else
            diag_file_error(index, "line %d, column %d: %s", err.line, err.column, err.text);
        return -1;
    }
    json_t *map = json_object_get(root, "weight_map");
    int rc = -1, ns = 0;
    shard_read *s = NULL;
    if (!json_is_object(root) || !json_is_object(map))
        diag_file_error(index, "a safetensors index is an object with a \"weight_map\" object "
                        "(tensor name: shard file)");
    else if (json_object_size(map) == 0)
        diag_file_error(index, "weight_map is empty: the index names no tensor");
    else if (json_object_size(map) > (size_t)KILN_MAX_CKPT_TENSORS)
        diag_file_error(index, "weight_map holds %zu tensors; the limit is %d",
                        json_object_size(map), KILN_MAX_CKPT_TENSORS);
    else if (open_shards(c, dir, index, map, &s, &ns) == 0)
        rc = gather_tensors(c, index, map, s, ns);
    for (int i = 0; i < ns; i++)
        free(s[i].tensors);
    free(s);
    json_decref(root);
    return rc;
}

ckpt *hfdir_open(const char *dir)
{
    const char *single = in_dir(dir, "model.safetensors");
    const char *index = in_dir(dir, "model.safetensors.index.json");
    if (is_file(single)) {     /* one file: read as any safetensors file is */
        ckpt *c = ckpt_open(single);
        if (c)
            note_side_files(c, dir);
        return c;
    }
    if (!is_file(index)) {
        diag_file_error(dir, "a Hugging Face folder holds model.safetensors or "
                        "model.safetensors.index.json; this one has neither");
        return NULL;
    }
    ckpt *c = new_ckpt(dir);
    note_side_files(c, dir);
    if (open_sharded(c, dir, index) != 0) {
        ckpt_close(c);
        return NULL;
    }
    return c;
}

const char *hfdir_config(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? in_dir(path, "config.json") : NULL;
}
