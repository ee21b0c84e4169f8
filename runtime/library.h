/* library.h - the model as a C library (kiln build --lib): the runtime's side.
 *
 * kiln generates, for a model NAME, a header NAME.h and a thin C file whose NAME_* functions
 * call these with the model's krt_model (and its embedded blob); both are linked with the
 * model and the runtime into one object whose only global symbols are NAME_* (see
 * codegen/library.c). The documentation a user reads is NAME.h (its template:
 * codegen/lib/header.h.in); what this file adds is how it is done.
 *
 * State: a krt_lib (an open model: the mapped blob, the tokenizer) is read-only once open,
 * so any number of contexts on any threads share it; a krt_lib_ctx (one conversation: its
 * KV caches, frame, scratch, thread pool, RNG and last error) belongs to one thread at a
 * time. The kernel path is chosen once per process image of the library (krt_cpu_init_once).
 * Nothing is printed: failures return a KRT_LIB_ERR_* code and leave a message in the
 * model's or the context's error buffer.
 */
#ifndef KILN_LIBRARY_H
#define KILN_LIBRARY_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_rt.h"

/* Return codes; NAME.h gives them as NAME_OK, NAME_ERR_... with the same values. */
enum {
    KRT_LIB_OK = 0,
    KRT_LIB_ERR_ARGUMENT = -1,     /* a NULL pointer, a negative count or thread number */
    KRT_LIB_ERR_BLOB = -2,         /* the blob is missing, unreadable or another model's */
    KRT_LIB_ERR_MEMORY = -3,       /* out of memory */
    KRT_LIB_ERR_RANGE = -4,        /* positions beyond the context, a gap, a token outside
                                      the vocabulary */
    KRT_LIB_ERR_NO_TOKENIZER = -5, /* the blob carries no tokenizer */
    KRT_LIB_ERR_NO_LOGITS = -6,    /* sampling before any eval */
    KRT_LIB_ERR_NONFINITE = -7,    /* the logits sampled from hold a NaN or an infinity */
};

typedef struct krt_lib krt_lib;
typedef struct krt_lib_ctx krt_lib_ctx;

/* Opens the model m's blob: the file at path, or with path NULL the embedded blob
 * [embedded, embedded + embedded_size) (NULL: the library has none). Like sqlite3_open, *out
 * gets a handle even on failure (but out of memory: NULL), whose error tells why; close it
 * either way. */
int krt_lib_open(krt_lib **out, const krt_model *m, const char *path, const void *embedded,
                 size_t embedded_size);
void krt_lib_close(krt_lib *l);
/* Recomputes the blob's checksums (kiln_blob.h): KRT_LIB_OK, or KRT_LIB_ERR_BLOB with the
 * first damaged region (or "no checksums") in the model's error. */
int krt_lib_verify(krt_lib *l);
const char *krt_lib_error(const krt_lib *l);
const char *krt_lib_name(const krt_lib *l);
int64_t krt_lib_vocab(const krt_lib *l);
int64_t krt_lib_n_ctx(const krt_lib *l);
int64_t krt_lib_max_batch(const krt_lib *l);

/* A conversation on an open model: threads 0 or 1 runs eval on the calling thread alone,
 * N > 1 on N threads (the caller's and N - 1 workers of its own). */
int krt_lib_context_new(krt_lib *l, int threads, krt_lib_ctx **out);
void krt_lib_context_free(krt_lib_ctx *c);
const char *krt_lib_context_error(const krt_lib_ctx *c);
void krt_lib_reset(krt_lib_ctx *c);
int64_t krt_lib_pos(const krt_lib_ctx *c);
int krt_lib_eval(krt_lib_ctx *c, const int32_t *tokens, int64_t n, int64_t pos,
                 float *all_logits);
const float *krt_lib_logits(const krt_lib_ctx *c);
void krt_lib_seed(krt_lib_ctx *c, uint64_t seed);
int krt_lib_set_param(krt_lib_ctx *c, const char *name, float value);
int krt_lib_sample(krt_lib_ctx *c, float temp, float top_p, uint64_t *rng, int32_t *token);

int krt_lib_encode(const krt_lib *l, const char *text, size_t len, int add_bos, int32_t *ids,
                   int64_t cap, int64_t *n);
int krt_lib_decode(const krt_lib *l, int32_t prev, int32_t id, const char **bytes,
                   size_t *len);
int32_t krt_lib_bos(const krt_lib *l);
int32_t krt_lib_eos(const krt_lib *l);
int krt_lib_is_eog(const krt_lib *l, int32_t id);

const char *krt_lib_strerror(int code);

#endif
