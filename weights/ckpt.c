/* ckpt.c - opening checkpoints: format detection, mapping, lookup.
 *
 * A file that starts with "GGUF" is GGUF; one whose first 8 bytes are a plausible
 * little-endian header length followed by '{' is safetensors (so is any *.safetensors file,
 * and any *.gguf file is GGUF, to get that reader's precise errors); else a *.bin file is a
 * llama2.c v0 checkpoint; anything else is refused. A directory is a Hugging Face folder
 * (hfdir.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "weights.h"

int ckpt_json_size_ok(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= KILN_MAX_JSON_BYTES)
        return 1;
    diag_file_error(path, "the JSON file is %lld bytes; the limit is %lld (256 MiB)",
                    (long long)st.st_size, (long long)KILN_MAX_JSON_BYTES);
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static int looks_safetensors(const char *path, const uint8_t *map, size_t size) {
    if (size >= 9 && map[8] == '{') {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | map[i];
        /* a llama2.c header here reads as dim | hidden << 32: far larger */
        if (hlen < (1ull << 32)) return 1;
    }
    return ends_with(path, ".safetensors");
}

const uint8_t *ckpt_map_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        diag_file_error(path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    const uint8_t *map = NULL;
    if (fstat(fd, &st) != 0) {
        diag_file_error(path, "cannot stat: %s", strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        diag_file_error(path, "is a directory, not a checkpoint file");
    } else if (!S_ISREG(st.st_mode)) {
        diag_file_error(path, "is not a regular file");
    } else if (st.st_size == 0) {
        diag_file_error(path, "the file is empty (0 bytes)");
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        diag_file_error(path, "the file is too large to map");
    } else {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            diag_file_error(path, "cannot map: %s", strerror(errno));
        else
            map = m, *size = (size_t)st.st_size;
    }
    close(fd);
    return map;
}

ckpt *ckpt_open(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))   /* a Hugging Face folder */
        return hfdir_open(path);
    size_t size = 0;
    const uint8_t *map = ckpt_map_file(path, &size);
    if (!map) return NULL;
    size_t plen = strlen(path) + 1;
    ckpt *c = calloc(1, sizeof *c + plen);
    if (!c) {
        diag_file_error(path, "out of memory");
        munmap((void *)map, size);
        return NULL;
    }
    c->path = memcpy((char *)(c + 1), path, plen);
    c->map = map;
    c->size = size;
    int rc;
    int gguf_magic = size >= 4 && memcmp(map, "GGUF", 4) == 0;
    if (gguf_magic || (!looks_safetensors(path, map, size) && ends_with(path, ".gguf"))) {
        c->format = CKPT_GGUF;
        rc = gguf_parse(path, map, size, &c->gguf, &c->tensors, &c->n);
    } else if (looks_safetensors(path, map, size)) {
        c->format = CKPT_SAFETENSORS;
        rc = safetensors_parse(path, map, size, &c->tensors, &c->n);
    } else if (ends_with(path, ".bin")) {
        c->format = CKPT_LLAMA2C;
        rc = llama2c_parse(path, map, size, &c->l2c, &c->tensors, &c->n);
    } else {
        diag_file_error(path, "cannot tell the format of the checkpoint: it does not start "
                        "with \"GGUF\" or a safetensors header, and the name does not end in "
                        ".bin (llama2.c)");
        rc = -1;
    }
    if (rc) {
        ckpt_close(c);
        return NULL;
    }
    return c;
}

void ckpt_close(ckpt *c) {
    if (!c) return;
    if (c->map) munmap((void *)c->map, c->size);
    for (int i = 0; i < c->nshards; i++)
        if (c->shards[i].map) munmap((void *)c->shards[i].map, c->shards[i].size);
    free(c->shards);
    free(c->tensors);
    free(c->gguf.kv);
    free(c);
}

const ckpt_tensor *ckpt_find(const ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->tensors[i].name, name) == 0) return &c->tensors[i];
    return NULL;
}

const void *ckpt_data(const ckpt *c, const ckpt_tensor *t) {
    return (c->nshards ? c->shards[t->shard].map : c->map) + t->offset;
}

const char *ckpt_dtype_name(ckpt_dtype dt) {
    switch (dt) {
    case CK_F32: return "F32";
    case CK_F16: return "F16";
    case CK_BF16: return "BF16";
    case CK_Q8_0: return "Q8_0";
    case CK_Q4_0: return "Q4_0";
    }
    return "?";
}
