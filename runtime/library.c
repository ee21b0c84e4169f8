/* library.c - the model as a C library: open a blob once, run many conversations on it
 * (library.h; the user's documentation is the generated NAME.h).
 *
 * A context allocates what driver.c's main allocates for one run: the frame, the state (the
 * KV caches) and each thread's scratch as anonymous mappings (untouched pages cost nothing,
 * so a long context costs memory only for the positions reached), the run-time parameters
 * at their defaults, the statistics slots, a pool. Nothing here is global: the model handle
 * is read-only after open and every mutable thing lives in a context.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE    /* MAP_ANONYMOUS */

#include "library.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu.h"
#include "rt_internal.h"
#include "tokenizer.h"

/* The tokenizer travels in the blob as an extra entry, "kiln.tokenizer" (tokenizer.h,
 * kiln_blob.h); a blob without one makes the tokenizer functions answer
 * KRT_LIB_ERR_NO_TOKENIZER. */

#define ERR_LEN 512

struct krt_lib {
    const krt_model *m;
    krt_blob blob;
    int ready;                 /* the blob checked out: contexts may be made */
    krt_tok *tok;              /* NULL: the blob carries none */
    char err[ERR_LEN];         /* written by krt_lib_open only */
};

struct krt_lib_ctx {
    const krt_lib *lib;
    krt_ctx c;
    size_t frame_len, state_len, scratch_len;
    int64_t pos;               /* the next position: rows 0 .. pos-1 of the caches hold tokens */
    int64_t written;           /* rows written since the last reset (for krt_state_clear) */
    const float *last;         /* the latest eval's last row of logits, in the frame */
    krt_rng rng;
    float *probs;              /* the sampler's scratch, vocab entries each */
    krt_candidate *cand;
    char err[ERR_LEN];
};

static int fail(char *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
    return code;
}

const char *krt_lib_strerror(int code)
{
    switch (code) {
    case KRT_LIB_OK: return "no error";
    case KRT_LIB_ERR_ARGUMENT: return "invalid argument";
    case KRT_LIB_ERR_BLOB: return "the weight blob is missing, unreadable or another model's";
    case KRT_LIB_ERR_MEMORY: return "out of memory";
    case KRT_LIB_ERR_RANGE: return "outside the context or the vocabulary";
    case KRT_LIB_ERR_NO_TOKENIZER: return "the weight blob carries no tokenizer";
    case KRT_LIB_ERR_NO_LOGITS: return "no logits yet: eval first";
    case KRT_LIB_ERR_NONFINITE: return "the logits are not finite (NaN or infinity)";
    default: return "unknown error code";
    }
}

/* ---- the model ---- */

static int open_tokenizer(krt_lib *l)
{
    char why[512];
    if (krt_blob_tokenizer(&l->blob, l->m, &l->tok, why, sizeof why) < 0)
        return fail(l->err, KRT_LIB_ERR_BLOB, "%s", why);
    return KRT_LIB_OK;
}

int krt_lib_open(krt_lib **out, const krt_model *m, const char *path, const void *embedded,
                 size_t embedded_size)
{
    if (!out)
        return KRT_LIB_ERR_ARGUMENT;
    krt_lib *l = calloc(1, sizeof *l);
    if (!(*out = l))
        return KRT_LIB_ERR_MEMORY;
    l->m = m;
    krt_cpu_init_once();       /* the kernel path, before any kernel of this library runs */
    krt_say say = {m->name, l->err, sizeof l->err, NULL};
    if (!path && !embedded)
        return fail(l->err, KRT_LIB_ERR_BLOB, "no blob path given, and this library of '%s' "
                    "has no embedded blob (kiln build --lib --embed-blob)", m->name);
    if (path ? krt_blob_open_at(&l->blob, &say, path, m) != 0
             : krt_blob_open_memory(&l->blob, &say, embedded, embedded_size, m) != 0)
        return KRT_LIB_ERR_BLOB;
    int rc = open_tokenizer(l);
    if (rc != KRT_LIB_OK)
        return rc;
    l->ready = 1;
    return KRT_LIB_OK;
}

int krt_lib_verify(krt_lib *l)
{
    if (!l || !l->ready)
        return KRT_LIB_ERR_ARGUMENT;
    krt_say say = {l->m->name, l->err, sizeof l->err, NULL};
    l->err[0] = 0;
    return krt_blob_verify(&l->blob, &say, l->blob.map ? "the blob file" : "the embedded blob")
           ? KRT_LIB_ERR_BLOB : KRT_LIB_OK;
}

void krt_lib_close(krt_lib *l)
{
    if (!l)
        return;
    krt_tok_free(l->tok);
    krt_blob_close(&l->blob);
    free(l);
}

const char *krt_lib_error(const krt_lib *l)
{
    return !l ? "out of memory (no model handle)" : l->err[0] ? l->err : "no error";
}

/* The getters answer for a handle whose open failed too (the model is known); NULL gives
 * nothing rather than a crash. */
const char *krt_lib_name(const krt_lib *l) { return l ? l->m->name : ""; }
int64_t krt_lib_vocab(const krt_lib *l) { return l ? l->m->vocab : 0; }
int64_t krt_lib_n_ctx(const krt_lib *l)
{
    return !l ? 0 : l->m->ctx > 0 ? l->m->ctx : INT32_MAX;
}
int64_t krt_lib_max_batch(const krt_lib *l) { return l ? l->m->max_batch : 0; }

/* ---- contexts ---- */

/* An anonymous mapping of at least 64 bytes (page-aligned, so 64-byte aligned), or NULL. */
static unsigned char *map_zeroed(size_t len)
{
    void *p = mmap(NULL, len ? len : 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap(void *p, size_t len)
{
    if (p)
        munmap(p, len ? len : 64);
}

int krt_lib_context_new(krt_lib *l, int threads, krt_lib_ctx **out)
{
    if (!out)
        return KRT_LIB_ERR_ARGUMENT;
    *out = NULL;
    if (!l || !l->ready || threads < 0)
        return KRT_LIB_ERR_ARGUMENT;
    const krt_model *m = l->m;
    if (m->frame_bytes > SIZE_MAX / 2 || m->state_bytes > SIZE_MAX / 2 ||
        m->scratch_bytes > SIZE_MAX / 4096)
        return KRT_LIB_ERR_MEMORY;
    krt_lib_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return KRT_LIB_ERR_MEMORY;
    x->lib = l;
    krt_ctx *c = &x->c;
    c->w = l->blob.w;
    c->pool = krt_pool_new(threads > 1 ? threads : 1);   /* NULL for one thread */
    int nthreads = krt_pool_size(c->pool);
    c->scratch_stride = (m->scratch_bytes + 63) / 64 * 64;
    x->frame_len = (size_t)m->frame_bytes;
    x->state_len = (size_t)m->state_bytes;
    x->scratch_len = (size_t)(c->scratch_stride * (uint64_t)nthreads);
    c->frame = map_zeroed(x->frame_len);
    c->state = map_zeroed(x->state_len);
    c->scratch = map_zeroed(x->scratch_len);
    size_t n_rt = (size_t)(m->n_rtparams > 0 ? m->n_rtparams : 1);
    size_t n_st = (size_t)(m->n_stats > 0 ? m->n_stats : 1);
    c->rtparams = calloc(n_rt, sizeof *c->rtparams);
    c->stat_sum = calloc(n_st, sizeof *c->stat_sum);
    c->stat_count = calloc(n_st, sizeof *c->stat_count);
    x->probs = calloc((size_t)m->vocab, sizeof *x->probs);
    x->cand = calloc((size_t)m->vocab, sizeof *x->cand);
    if (c->pool)
        c->sched = krt_sched_new(nthreads);
    if (!c->frame || !c->state || !c->scratch || !c->rtparams || !c->stat_sum ||
        !c->stat_count || !x->probs || !x->cand || (c->pool && !c->sched)) {
        krt_lib_context_free(x);
        return KRT_LIB_ERR_MEMORY;
    }
    for (int i = 0; i < m->n_rtparams; i++)
        c->rtparams[i] = m->rtparam_defaults[i];
    *out = x;
    return KRT_LIB_OK;
}

void krt_lib_context_free(krt_lib_ctx *x)
{
    if (!x)
        return;
    krt_ctx *c = &x->c;
    unmap(c->frame, x->frame_len);
    unmap(c->state, x->state_len);
    unmap(c->scratch, x->scratch_len);
    krt_pool_free(c->pool);
    krt_sched_free(c->sched);
    free(c->rtparams), free(c->stat_sum), free(c->stat_count);
    free(x->probs), free(x->cand);
    free(x);
}

const char *krt_lib_context_error(const krt_lib_ctx *x)
{
    return !x ? "no context" : x->err[0] ? x->err : "no error";
}

void krt_lib_reset(krt_lib_ctx *x)
{
    if (!x)
        return;
    krt_state_clear(x->lib->m, x->c.state, x->written);
    x->written = 0;
    x->pos = 0;
    x->last = NULL;
    x->err[0] = 0;
}

int64_t krt_lib_pos(const krt_lib_ctx *x) { return x ? x->pos : 0; }

int krt_lib_eval(krt_lib_ctx *x, const int32_t *tokens, int64_t n, int64_t pos,
                 float *all_logits)
{
    if (!x)
        return KRT_LIB_ERR_ARGUMENT;
    const krt_model *m = x->lib->m;
    int64_t cap = krt_lib_n_ctx(x->lib);
    if (!tokens || n < 1)
        return fail(x->err, KRT_LIB_ERR_ARGUMENT, "eval: %s", !tokens ? "tokens is NULL"
                    : "no tokens (n < 1)");
    /* a gap would leave cache rows between holding zeros or another conversation's tokens */
    if (pos < 0 || pos > x->pos)
        return fail(x->err, KRT_LIB_ERR_RANGE, "eval: position %lld, but positions 0 .. %lld "
                    "hold tokens (no gaps)", (long long)pos, (long long)x->pos - 1);
    if (n > cap - pos)
        return fail(x->err, KRT_LIB_ERR_RANGE, "eval: %lld tokens at position %lld go beyond "
                    "the context of %lld positions", (long long)n, (long long)pos,
                    (long long)cap);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->vocab)
            return fail(x->err, KRT_LIB_ERR_RANGE, "eval: token %lld is %d, outside the "
                        "vocabulary [0, %lld)", (long long)i, (int)tokens[i],
                        (long long)m->vocab);
    x->c.all_logits = all_logits != NULL;
    for (int64_t done = 0; done < n;) {   /* blocks of up to max_batch tokens */
        int64_t T = n - done < m->max_batch ? n - done : m->max_batch;
        x->c.logits = NULL;
        m->forward(&x->c, tokens + done, (int32_t)(pos + done), (int32_t)T);
        if (all_logits)
            memcpy(all_logits + done * m->vocab, x->c.logits,
                   (size_t)(T * m->vocab) * sizeof *all_logits);
        x->last = x->c.logits + (T - 1) * m->vocab;
        done += T;
    }
    x->pos = pos + n;
    x->written = x->pos > x->written ? x->pos : x->written;
    return KRT_LIB_OK;
}

const float *krt_lib_logits(const krt_lib_ctx *x) { return x ? x->last : NULL; }

void krt_lib_seed(krt_lib_ctx *x, uint64_t seed)
{
    if (x)
        krt_rng_seed(&x->rng, seed);
}

int krt_lib_sample(krt_lib_ctx *x, float temp, float top_p, uint64_t *rng, int32_t *token)
{
    if (!x || !token)
        return KRT_LIB_ERR_ARGUMENT;
    if (!(temp >= 0) || !(top_p > 0 && top_p <= 1))
        return fail(x->err, KRT_LIB_ERR_ARGUMENT, "sample: temperature %g must be >= 0 and "
                    "top_p %g in (0, 1]", (double)temp, (double)top_p);
    if (!x->last)
        return fail(x->err, KRT_LIB_ERR_NO_LOGITS, "sample: no logits yet (eval first)");
    int64_t bad = krt_nonfinite_at(x->last, x->lib->m->vocab);
    if (bad >= 0)
        return fail(x->err, KRT_LIB_ERR_NONFINITE, "sample: the logits at position %lld are not "
                    "finite (%s at token id %lld); the weights or the model produce NaN or "
                    "infinities", (long long)x->pos - 1, isnan(x->last[bad]) ? "NaN" : "Inf",
                    (long long)bad);
    krt_rng held = {rng ? *rng : 0}, *r = rng ? &held : &x->rng;
    /* the program's chain with only these two options on (no penalty: no window) */
    krt_sampling o = {.temp = temp, .top_p = top_p, .min_p = 0, .repeat_penalty = 1,
                      .top_k = 0, .repeat_last_n = 0};
    int64_t kept = krt_sample_filter(&o, x->last, x->lib->m->vocab, NULL, 0, x->cand);
    *token = krt_sample_draw(&o, x->cand, kept, r, x->probs);
    if (rng)
        *rng = held.state;
    return KRT_LIB_OK;
}

int krt_lib_set_param(krt_lib_ctx *x, const char *name, float value)
{
    if (!x || !name)
        return KRT_LIB_ERR_ARGUMENT;
    const krt_model *m = x->lib->m;
    for (int i = 0; i < m->n_rtparams; i++)
        if (!strcmp(m->rtparam_names[i], name)) {
            x->c.rtparams[i] = value;
            return KRT_LIB_OK;
        }
    return fail(x->err, KRT_LIB_ERR_ARGUMENT, "set_param: the model '%s' has no run-time "
                "parameter '%s'%s", m->name, name, m->n_rtparams ? "" : " (it has none)");
}

/* ---- the tokenizer ---- */

int krt_lib_encode(const krt_lib *l, const char *text, size_t len, int add_bos, int32_t *ids,
                   int64_t cap, int64_t *n)
{
    if (!l || !text || !n || cap < 0 || (cap > 0 && !ids))
        return KRT_LIB_ERR_ARGUMENT;
    if (!l->tok)
        return KRT_LIB_ERR_NO_TOKENIZER;
    *n = krt_tok_encode(l->tok, text, len, add_bos, ids, cap);
    return *n < 0 ? KRT_LIB_ERR_MEMORY : KRT_LIB_OK;
}

int krt_lib_decode(const krt_lib *l, int32_t prev, int32_t id, const char **bytes, size_t *len)
{
    if (!l || !bytes || !len)
        return KRT_LIB_ERR_ARGUMENT;
    if (!l->tok)
        return KRT_LIB_ERR_NO_TOKENIZER;
    if (id < 0 || id >= l->m->vocab)
        return KRT_LIB_ERR_RANGE;
    *len = krt_tok_decode(l->tok, prev, id, bytes);
    return KRT_LIB_OK;
}

int32_t krt_lib_bos(const krt_lib *l)
{
    return l && l->tok ? krt_tok_bos(l->tok) : -1;
}

int32_t krt_lib_eos(const krt_lib *l)
{
    return l && l->tok ? krt_tok_eos(l->tok) : -1;
}

int krt_lib_is_eog(const krt_lib *l, int32_t id)
{
    return l && l->tok ? krt_tok_is_eog(l->tok, id) : 0;
}
