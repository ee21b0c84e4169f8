/* rt_internal.h - declarations shared by the runtime's own files (blob.c, sample.c,
 * state.c, driver.c, bench.c, library.c). Not part of the contract with emitted code; that
 * is kiln_rt.h.
 */
#ifndef KILN_RT_INTERNAL_H
#define KILN_RT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_rt.h"

/* blob.c: the mapped weight blob, checked against the model's tensor list. */
typedef struct krt_blob {
    void *map;                 /* the mmap'ed region (page-aligned) */
    size_t map_len;
    const void **w;            /* m->n_tensors pointers into the blob */
    int n;
    int huge;                  /* the weights were copied onto transparent huge pages */
    uint64_t huge_bytes;       /* of them, in huge pages (AnonHugePages of the region) */
    const void *tokenizer;     /* the serialized tokenizer (entry "kiln.tokenizer"), or NULL */
    uint64_t tokenizer_bytes;
    const unsigned char *base; /* the blob's first byte, its size, its entry table */
    uint64_t size, table;
    uint32_t n_entries;        /* entries of the table, extras included */
    const void *checksums;     /* entry "kiln.checksums" (n_entries + 1 words), or NULL */
} krt_blob;

/* Whether to put the weights on huge pages (krt_blob_huge): never, when the blob is large
 * and the kernel offers transparent huge pages (the default), or always when it offers them. */
typedef enum krt_huge { KRT_HUGE_OFF, KRT_HUGE_AUTO, KRT_HUGE_ON } krt_huge;

/* Where blob.c's messages go: standard error as `prog: error: weight blob: ...` (a program),
 * or with err set only into err, errlen bytes (the C library, which prints nothing). */
typedef struct krt_say {
    const char *prog;
    char *err;
    size_t errlen;
    const char *file;          /* set by blob.c: the file a tensor's message names */
} krt_say;

/* Map the blob: from `blob_path` (a standalone blob) or, if NULL, from the program's own
 * file (/proc/self/exe, via the trailer). Validates everything; on failure prints
 * `prog: error: weight blob: ...` and returns -1. */
int krt_blob_open(krt_blob *b, const char *prog, const char *blob_path, const krt_model *m);
/* The same, the failure told as `say` says. */
int krt_blob_open_at(krt_blob *b, const krt_say *say, const char *blob_path, const krt_model *m);
/* A blob already in memory (the C library's embedded blob, KBLOB_ALIGN-aligned at least),
 * checked as a file's is; b->map stays NULL and the memory the caller's. 0 or -1. */
int krt_blob_open_memory(krt_blob *b, const krt_say *say, const void *data, size_t size,
                         const krt_model *m);
/* Moves the weights of an open blob onto transparent huge pages, as `mode` says: an
 * anonymous 2 MiB-aligned mapping advised MADV_HUGEPAGE, the blob copied into it, the file
 * mapping dropped, b->w pointing into the copy. A matrix product then walks its weights with
 * a TLB entry per 2 MiB, not per 4 KiB. Nothing changes (returns 0) when the mode, the size
 * or the kernel says no; -1 only if the copy cannot be made (the file mapping stays). */
int krt_blob_huge(krt_blob *b, krt_huge mode);
/* Recomputes the checksums (kiln_blob.h, KBLOB_CHECKSUMS) of every entry and of the
 * metadata: 0 when all match, else -1 after telling (as `say` says, naming file) each
 * damaged entry (the C library: the first), or that the blob has no checksums. */
int krt_blob_verify(const krt_blob *b, const krt_say *say, const char *file);
void krt_blob_close(krt_blob *b);
/* The blob's tokenizer opened and checked against model m (no more tokens than its
 * vocabulary): *t, or NULL when the blob has none. -1 with the reason in why (the entry
 * named) when the entry is damaged. */
struct krt_tok;
int krt_blob_tokenizer(const krt_blob *b, const krt_model *m, struct krt_tok **t, char *why,
                       size_t why_len);

/* state.c: bytes of one value of a cache (f16 and bf16 caches store 2, f32 4); and zeroing
 * the cache rows 0 .. rows-1 of every cache of the state (a new conversation), only those:
 * the rest was never written, and its pages stay unallocated. */
uint64_t krt_cache_elem_bytes(const krt_cache_desc *k);
void krt_state_clear(const krt_model *m, unsigned char *state, int64_t rows);

/* pool.c: N threads, the caller included (NULL for N < 2 or when no thread starts). */
krt_pool *krt_pool_new(int threads);
void krt_pool_free(krt_pool *p);

/* sample.c: a small deterministic RNG (splitmix64) and the sampler chain. */
typedef struct krt_rng {
    uint64_t state;
} krt_rng;

void krt_rng_seed(krt_rng *r, uint64_t seed);
uint64_t krt_rng_u64(krt_rng *r);
double krt_rng_unit(krt_rng *r); /* uniform in [0, 1) */

/* The index of the first NaN or infinity of x[0 .. n), or -1 when all are finite: one
 * vectorized pass over the bits, then a search only when something is found. */
int64_t krt_nonfinite_at(const float *x, int64_t n);

/* Index of the largest value; the first one on ties. */
int32_t krt_argmax(const float *x, int64_t n);

/* The sampler chain (sample.c has the order and the rules): its options, as the program's
 * --temp, --top-p, --top-k, --min-p, --repeat-penalty and --repeat-last-n give them. */
typedef struct krt_sampling {
    double temp;               /* 0: greedy */
    double top_p;              /* 1: off */
    double min_p;              /* 0: off */
    double repeat_penalty;     /* 1: off */
    int64_t top_k;             /* 0: off */
    int64_t repeat_last_n;     /* the ids of the sequence the penalty looks back on */
} krt_sampling;

/* A token still in the running: its (penalized) logit and its id. */
typedef struct krt_candidate {
    float logit;
    int32_t id;
} krt_candidate;

/* The chain up to the temperature: the penalty over the ids recent[0..n_recent) (any order,
 * repeats counted once), then top-k, top-p and min-p. Writes the survivors to c (scratch of
 * n entries) with their penalized logits, most likely first when top-k or top-p ran, else
 * in id order, and returns how many there are (at least 1 when n >= 1). */
int64_t krt_sample_filter(const krt_sampling *o, const float *logits, int64_t n,
                          const int32_t *recent, int64_t n_recent, krt_candidate *c);
/* Temperature and the draw over c[0..m): the most likely (lowest id on ties) when temp is 0,
 * else one draw from softmax(logit / temp) with one number of r, in the order of c; w is
 * scratch of m floats. */
int32_t krt_sample_draw(const krt_sampling *o, const krt_candidate *c, int64_t m, krt_rng *r,
                        float *w);

/* The sampler of a run: the chain, its random numbers and the window of recent ids. */
typedef struct krt_sampler {
    krt_sampling opt;
    krt_rng rng;
    krt_candidate *cand;       /* n_vocab entries of scratch */
    float *weights;            /* n_vocab entries of scratch: the draw's */
    int32_t *recent;           /* a ring of the last `window` ids accepted */
    int64_t window, n_recent, next, n_vocab;
} krt_sampler;

/* Seeds the generator; the window is opt->repeat_last_n ids (none when the penalty is off).
 * 0, or -1 when out of memory. */
int krt_sampler_init(krt_sampler *s, const krt_sampling *opt, int64_t n_vocab, uint64_t seed);
/* An id of the sequence, prompt or generated, into the penalty's window. */
void krt_sampler_accept(krt_sampler *s, int32_t id);
/* The next token for these logits (n_vocab of them); does not accept it. Greedy without a
 * penalty is krt_argmax of the logits. */
int32_t krt_sampler_next(krt_sampler *s, const float *logits);
void krt_sampler_free(krt_sampler *s);

/* bench.c: PROG --bench-pp P --bench-tg N. driver.c sets the program up as for a run and
 * lends it here: `forward` is a run's forward call (only the last row's logits; the cache
 * rows it writes are recorded) returning that row's logits, `clear` zeroes the cache rows
 * written since the last clear, as between --bench runs. */
typedef struct krt_bench_run {
    void *run;                 /* driver.c's run state, passed back to forward and clear */
    const float *(*forward)(void *run, const int32_t *tokens, int64_t pos0, int64_t T);
    void (*clear)(void *run);
    int64_t threads, batch;
    const char *prog;          /* the program's name, for messages */
} krt_bench_run;

/* One untimed warm-up call, then a timed prompt of pp tokens and, from a cleared state,
 * tg timed decode steps (0: skipped); one line on standard output (its format: bench.c).
 * Returns the program's exit status. */
int krt_bench(const krt_bench_run *r, int64_t pp, int64_t tg);

#endif
