/* safetensors.c - reading and writing safetensors checkpoints.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {...}, NAME: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
 * then the data section; data_offsets are relative to its start. The reader checks every
 * field, size and offset against the file before anything is used.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "weights.h"

#define ST_MAX_HEADER ((unsigned long long)KILN_MAX_ST_HEADER) /* base/limits.h */

static const struct {
    const char *name;
    ckpt_dtype dt;
    unsigned size;
} st_dtypes[] = {{"F32", CK_F32, 4}, {"F16", CK_F16, 2}, {"BF16", CK_BF16, 2}};

typedef struct st_entry {
    const char *name; /* owned by the JSON tree while parsing */
    ckpt_dtype dt;
    int rank;
    int64_t shape[KILN_MAX_RANK];
    uint64_t begin, end;
} st_entry;

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Reports a JSON syntax error; for a duplicate key, digs the key out of the text. */
static void st_json_error(const char *path, const uint8_t *hdr, const json_error_t *e) {
    if (json_error_code(e) == json_error_duplicate_key) {
        /* the lexer stops just past the key: find the last quoted string before it */
        size_t end = (size_t)e->position, q2 = end;
        while (q2 > 0 && hdr[q2 - 1] != '"') q2--;
        size_t q1 = q2 ? q2 - 1 : 0;
        while (q1 > 0 && hdr[q1 - 1] != '"') q1--;
        if (q2 > q1 && q2 - 1 - q1 < 200) {
            diag_file_error(path, "duplicate tensor name '%.*s' in the JSON header (line %d, "
                            "column %d)", (int)(q2 - 1 - q1), (const char *)hdr + q1,
                            e->line, e->column);
            return;
        }
    }
    diag_file_error(path, "invalid JSON header at line %d, column %d (byte %" PRIu64
                    " of the file): %s", e->line, e->column, (uint64_t)e->position + 8, e->text);
}

/* Validates one header entry into *t; reports and returns -1 on a problem. */
static int st_entry_parse(const char *path, const char *name, json_t *v, uint64_t data_size,
                          st_entry *t) {
    memset(t, 0, sizeof *t);
    t->name = name;
    if (strlen(name) > KILN_MAX_TENSOR_NAME) {
        diag_file_error(path, "tensor '%.64s...': its name is %zu bytes long; the limit is %d",
                        name, strlen(name), KILN_MAX_TENSOR_NAME);
        return -1;
    }
    if (!json_is_object(v)) {
        diag_file_error(path, "tensor '%s': the header entry is not an object", name);
        return -1;
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape");
    json_t *off = json_object_get(v, "data_offsets");
    if (!dt || !sh || !off) {
        diag_file_error(path, "tensor '%s': the header entry has no '%s'", name,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
        return -1;
    }
    if (!json_is_string(dt)) {
        diag_file_error(path, "tensor '%s': dtype is not a string", name);
        return -1;
    }
    unsigned esize = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(json_string_value(dt), st_dtypes[i].name) == 0)
            t->dt = st_dtypes[i].dt, esize = st_dtypes[i].size;
    if (!esize) {
        diag_file_error(path, "unsupported dtype '%s' for tensor '%s' (kiln reads F32, F16 "
                        "and BF16)", json_string_value(dt), name);
        return -1;
    }
    if (!json_is_array(sh)) {
        diag_file_error(path, "tensor '%s': shape is not a list", name);
        return -1;
    }
    if (json_array_size(sh) > KILN_MAX_RANK) {
        diag_file_error(path, "tensor '%s': rank %zu is more than %d", name, json_array_size(sh),
                        KILN_MAX_RANK);
        return -1;
    }
    t->rank = (int)json_array_size(sh);
    uint64_t numel = 1;
    for (int i = 0; i < t->rank; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            diag_file_error(path, "tensor '%s': shape[%d] is not a non-negative integer",
                            name, i);
            return -1;
        }
        t->shape[i] = (int64_t)json_integer_value(d);
        if (wmul_u64(numel, (uint64_t)t->shape[i], &numel)) {
            diag_file_error(path, "tensor '%s': the element count of its shape overflows", name);
            return -1;
        }
    }
    if (numel > (uint64_t)KILN_MAX_ELEMS) {
        diag_file_error(path, "tensor '%s': it has %" PRIu64 " elements; the limit is %lld "
                        "(2^36)", name, numel, (long long)KILN_MAX_ELEMS);
        return -1;
    }
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) ||
        !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < 0) {
        diag_file_error(path, "tensor '%s': data_offsets is not a list of two non-negative "
                        "integers", name);
        return -1;
    }
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    if (t->begin > t->end) {
        diag_file_error(path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin is "
                        "past end", name, t->begin, t->end);
        return -1;
    }
    if (t->end > data_size) {
        diag_file_error(path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end past "
                        "the data section (%" PRIu64 " bytes)", name, t->begin, t->end,
                        data_size);
        return -1;
    }
    uint64_t nbytes;
    if (wmul_u64(numel, esize, &nbytes)) {
        diag_file_error(path, "tensor '%s': the byte size of its shape overflows", name);
        return -1;
    }
    if (nbytes != t->end - t->begin) {
        diag_file_error(path, "tensor '%s': %s of %" PRIu64 " elements needs %" PRIu64
                        " bytes, but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
                        name, json_string_value(dt), numel, nbytes, t->begin,
                        t->end, t->end - t->begin);
        return -1;
    }
    return 0;
}

static int st_by_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* No two non-empty tensors may share a byte. */
static int st_check_overlap(const char *path, const st_entry *e, int n) {
    st_entry *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    memcpy(s, e, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, st_by_begin);
    int rc = 0, far = -1; /* the non-empty tensor reaching furthest so far */
    for (int i = 0; i < n && !rc; i++) {
        if (s[i].begin == s[i].end) continue;
        if (far >= 0 && s[i].begin < s[far].end) {
            diag_file_error(path, "tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) "
                            "overlaps tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "])",
                            s[i].name, s[i].begin, s[i].end, s[far].name, s[far].begin,
                            s[far].end);
            rc = -1;
        }
        if (far < 0 || s[i].end > s[far].end) far = i;
    }
    free(s);
    return rc;
}

int safetensors_parse(const char *path, const uint8_t *map, size_t size, ckpt_tensor **out,
                      int *n) {
    *out = NULL;
    *n = 0;
    if (size < 8) {
        diag_file_error(path, "truncated: %zu bytes, a safetensors file starts with an 8-byte "
                        "header length", size);
        return -1;
    }
    uint64_t hlen = le64(map);
    if (hlen == 0) {
        diag_file_error(path, "header length 0: the file has no JSON header");
        return -1;
    }
    if (hlen > size - 8) {
        diag_file_error(path, "header length %" PRIu64 " is past the end of the file (%zu "
                        "bytes)", hlen, size);
        return -1;
    }
    if (hlen > ST_MAX_HEADER) {
        diag_file_error(path, "header length %" PRIu64 " is larger than the limit of %llu "
                        "bytes", hlen, ST_MAX_HEADER);
        return -1;
    }
    uint64_t data_size = size - 8 - hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st_json_error(path, map + 8, &jerr);
        return -1;
    }
    int rc = -1, count = 0;
    size_t names = 0;
    st_entry *ent = NULL;
    if (!json_is_object(root)) {
        diag_file_error(path, "the JSON header is not an object");
        goto done;
    }
    if (json_object_size(root) > (size_t)KILN_MAX_CKPT_TENSORS + 1) {   /* + __metadata__ */
        diag_file_error(path, "the header holds %zu tensors; the limit is %d",
                        json_object_size(root), KILN_MAX_CKPT_TENSORS);
        goto done;
    }
    ent = malloc((json_object_size(root) + 1) * sizeof *ent);
    if (!ent) {
        diag_file_error(path, "out of memory");
        goto done;
    }
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        if (strlen(key) != json_object_iter_key_len(it)) {
            diag_file_error(path, "a tensor name in the header contains a NUL character");
            goto done;
        }
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                diag_file_error(path, "__metadata__ is not an object");
                goto done;
            }
            continue;
        }
        if (st_entry_parse(path, key, v, data_size, &ent[count])) goto done;
        names += strlen(key) + 1;
        count++;
    }
    if (st_check_overlap(path, ent, count)) goto done;
    /* one block: the tensors, then their names */
    ckpt_tensor *t = malloc((size_t)count * sizeof *t + names);
    if (!t) {
        diag_file_error(path, "out of memory");
        goto done;
    }
    char *np = (char *)(t + count);
    for (int i = 0; i < count; i++) {
        size_t len = strlen(ent[i].name) + 1;
        memcpy(np, ent[i].name, len);
        t[i] = (ckpt_tensor){.name = np, .dtype = ent[i].dt, .rank = ent[i].rank,
                             .offset = 8 + hlen + ent[i].begin,
                             .nbytes = ent[i].end - ent[i].begin};
        memcpy(t[i].shape, ent[i].shape, sizeof t[i].shape);
        np += len;
    }
    *out = t;
    *n = count;
    rc = 0;
done:
    free(ent);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- writer */

static json_t *st_entry_json(const wspec *s, const char *dtype, uint64_t begin, uint64_t end) {
    json_t *o = json_object(), *sh = json_array(), *off = json_array();
    if (!o || !sh || !off) goto fail;
    for (int i = 0; i < s->rank; i++)
        if (json_array_append_new(sh, json_integer((json_int_t)s->shape[i]))) goto fail;
    if (json_array_append_new(off, json_integer((json_int_t)begin)) ||
        json_array_append_new(off, json_integer((json_int_t)end)) ||
        json_object_set_new(o, "dtype", json_string(dtype)))
        goto fail;
    json_object_set_new(o, "shape", sh);
    json_object_set_new(o, "data_offsets", off);
    return o;
fail:
    json_decref(o);
    json_decref(sh);
    json_decref(off);
    return NULL;
}

/* Builds the header JSON (padded with spaces to a multiple of 8); NULL after reporting. */
static char *st_header(const char *path, const wspec *t, int n, uint64_t seed, ckpt_dtype dtype,
                       size_t *len) {
    uint64_t esize = 0;
    const char *dtname = NULL;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dtype) dtname = st_dtypes[i].name, esize = st_dtypes[i].size;
    if (!dtname) {
        diag_file_error(path, "cannot write dtype %d", (int)dtype);
        return NULL;
    }
    char *text = NULL, seedstr[24];
    json_t *root = json_object(), *meta = json_object();
    snprintf(seedstr, sizeof seedstr, "%" PRIu64, seed);
    if (!root || !meta || json_object_set_new(meta, "format", json_string("pt")) ||
        json_object_set_new(meta, "weights", json_string("det-weights v1")) ||
        json_object_set_new(meta, "seed", json_string(seedstr)) ||
        json_object_set(root, "__metadata__", meta)) {
        diag_file_error(path, "out of memory");
        goto done;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const wspec *s = &t[i];
        uint64_t numel = 1, nbytes;
        if (s->rank < 0 || s->rank > 4) {
            diag_file_error(path, "tensor '%s': rank %d is not in 0..4", s->name, s->rank);
            goto done;
        }
        for (int k = 0; k < s->rank; k++)
            if (s->shape[k] < 0 || wmul_u64(numel, (uint64_t)s->shape[k], &numel)) {
                diag_file_error(path, "tensor '%s': bad shape", s->name);
                goto done;
            }
        if (wmul_u64(numel, esize, &nbytes) || wadd_u64(off, nbytes, &off) ||
            off > (uint64_t)INT64_MAX) {
            diag_file_error(path, "tensor '%s': the data section size overflows", s->name);
            goto done;
        }
        if (strcmp(s->name, "__metadata__") == 0 || json_object_get(root, s->name)) {
            diag_file_error(path, "tensor '%s' is %s", s->name,
                            json_object_get(root, s->name) ? "given twice" : "a reserved name");
            goto done;
        }
        json_t *e = st_entry_json(s, dtname, off - nbytes, off);
        if (!e || json_object_set_new(root, s->name, e)) {
            diag_file_error(path, "tensor '%s': cannot put it in the header (not UTF-8?)",
                            s->name);
            goto done;
        }
    }
    char *js = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!js) {
        diag_file_error(path, "out of memory");
        goto done;
    }
    size_t jl = strlen(js), pad = (8 - jl % 8) % 8;
    if ((text = malloc(jl + pad + 1))) {
        memcpy(text, js, jl);
        memset(text + jl, ' ', pad);
        text[jl + pad] = 0;
        *len = jl + pad;
    } else {
        diag_file_error(path, "out of memory");
    }
    free(js);
done:
    json_decref(meta);
    json_decref(root);
    return text;
}

int safetensors_write_detweights(const char *path, const wspec *t, int n, uint64_t seed,
                                 ckpt_dtype dtype) {
    size_t hlen = 0;
    char *hdr = st_header(path, t, n, seed, dtype, &hlen);
    if (!hdr) return -1;
    wfile *w = wfile_open(path);
    if (!w) {
        free(hdr);
        return -1;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int rc = wfile_write(w, lenb, 8) || wfile_write(w, hdr, hlen) ? -1 : 0;
    free(hdr);
    for (int i = 0; i < n && rc == 0; i++) {
        uint64_t numel = 1;
        for (int k = 0; k < t[i].rank; k++) numel *= (uint64_t)t[i].shape[k]; /* checked */
        rc = wfile_put_detweights_as(w, t[i].name, numel, seed, dtype);
    }
    if (rc) {
        wfile_abort(w);
        return -1;
    }
    return wfile_commit(w);
}
