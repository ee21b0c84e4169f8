/* sample.c - choosing the next token: llama.cpp's classic sampler chain, driven by a
 * splitmix64 generator so that runs are reproducible from --seed.
 *
 * The chain, in the order of llama.cpp's default (common/sampling: penalties, top-k, top-p,
 * min-p, temperature, dist), each step on what the one before kept:
 *   1. repeat penalty R: every distinct id among the last N of the sequence (the prompt
 *      included, as llama.cpp accepts it) has its logit divided by R when positive, else
 *      multiplied by R (R = 1: off).
 *   2. top-k: keep the K largest logits (K = 0: off).
 *   3. top-p: softmax of the kept logits (at temperature 1); keep the smallest set of most
 *      likely tokens whose probability reaches P (P = 1: off).
 *   4. min-p: keep the tokens whose probability is at least P times the largest one's,
 *      i.e. logit >= max + log P (P = 0: off).
 *   5. temperature T: divide the kept logits by T; T = 0 takes the largest one (greedy,
 *      after the penalty; the filters always keep it) and draws nothing.
 *   6. draw: softmax of the kept, scaled logits and one uniform number: the first token whose
 *      cumulative probability exceeds it.
 * Ties are broken by the lower id everywhere ("most likely first" means logit descending,
 * then id ascending), so a seed gives the same tokens on every machine. A NaN logit counts
 * as -inf. The tokens are drawn in the order they stand: most likely first once top-k or
 * top-p sorted them, else in id order (min-p and the temperature alone sort nothing: those
 * cases stay linear in the vocabulary).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

void krt_rng_seed(krt_rng *r, uint64_t seed) { r->state = seed; }

uint64_t krt_rng_u64(krt_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double krt_rng_unit(krt_rng *r) { return (double)(krt_rng_u64(r) >> 11) * 0x1.0p-53; }

int64_t krt_nonfinite_at(const float *x, int64_t n)
{
    /* an exponent of all ones is a NaN or an infinity, and exactly then (b & E) + 2^23
     * carries into bit 31: an OR of those sums has no branch and no comparison, and in runs
     * of 64 (a fixed count, which gcc -O2 vectorizes) costs a read of the row */
    uint32_t any = 0, b;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int64_t k = 0; k < 64; k++) {
            memcpy(&b, x + i + k, 4);
            any |= (b & 0x7f800000u) + 0x00800000u;
        }
    for (; i < n; i++) {
        memcpy(&b, x + i, 4);
        any |= (b & 0x7f800000u) + 0x00800000u;
    }
    for (i = 0; (any >> 31) && i < n; i++) {
        memcpy(&b, x + i, 4);
        if ((b & 0x7f800000u) == 0x7f800000u)
            return i;
    }
    return -1;
}

int32_t krt_argmax(const float *x, int64_t n)
{
    /* the largest value in 8 lanes first (a loop the compiler vectorizes), then its first
     * index; with a NaN, the old left-to-right scan decides */
    float lane[8] = {x[0], x[0], x[0], x[0], x[0], x[0], x[0], x[0]};
    int64_t nb = n / 8 * 8;
    for (int64_t i = 0; i < nb; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    float max = x[0];
    for (int l = 0; l < 8; l++)
        max = lane[l] > max ? lane[l] : max;
    for (int64_t i = nb; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int64_t i = 0; i < n; i++)
        if (x[i] == max)
            return (int32_t)i;
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

/* ---- the chain ---- */

/* Whether a comes before b, most likely first: logit descending, then id ascending (a total
 * order: NaN logits were made -inf). */
static int before(const krt_candidate *a, const krt_candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_candidates(const void *pa, const void *pb)
{
    const krt_candidate *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void sort_candidates(krt_candidate *c, int64_t m)
{
    qsort(c, (size_t)m, sizeof *c, cmp_candidates);
}

/* Moves the k most likely of c[0..m) to c[0..k), most likely first, with a heap of the k
 * best seen so far whose root is the worst of them: O(m log k), not a sort of the whole
 * vocabulary. */
static void select_top_k(krt_candidate *c, int64_t m, int64_t k)
{
    for (int64_t i = 0; i < m; i++) {
        krt_candidate x = c[i];
        int64_t at;
        if (i < k) {           /* grow the heap: sift x up from the end */
            at = i;
            while (at > 0 && before(&c[(at - 1) / 2], &x)) {
                c[at] = c[(at - 1) / 2];
                at = (at - 1) / 2;
            }
        } else if (before(&x, &c[0])) {   /* x beats the worst kept: sift it down from the root */
            at = 0;
            for (;;) {
                int64_t child = 2 * at + 1;
                if (child >= k)
                    break;
                if (child + 1 < k && before(&c[child], &c[child + 1]))
                    child++;       /* the worse child */
                if (!before(&x, &c[child]))
                    break;         /* x is no better than it: x goes here */
                c[at] = c[child];
                at = child;
            }
        } else {
            continue;
        }
        c[at] = x;
    }
    sort_candidates(c, k);
}

/* exp((l - max) / temp), with l == max giving 1 even for infinite logits (inf - inf is
 * NaN); in float, as llama2.c and llama.cpp compute the softmax (sums are in double). */
static float weight(float l, float max, float temp)
{
    return l == max ? 1.0f : expf((l - max) / temp);
}

static float max_logit(const krt_candidate *c, int64_t m)
{
    float max = c[0].logit;
    for (int64_t i = 1; i < m; i++)
        max = c[i].logit > max ? c[i].logit : max;
    return max;
}

int64_t krt_sample_filter(const krt_sampling *o, const float *logits, int64_t n,
                          const int32_t *recent, int64_t n_recent, krt_candidate *c)
{
    for (int64_t i = 0; i < n; i++)
        c[i] = (krt_candidate){isnan(logits[i]) ? -INFINITY : logits[i], (int32_t)i};
    /* 1. the penalty, once per distinct id: a penalized candidate's id is set to -1 so that
     * a repeat of it in the window is skipped, then every id is put back */
    if (o->repeat_penalty != 1.0) {
        float r = (float)o->repeat_penalty;
        for (int64_t j = 0; j < n_recent; j++) {
            int32_t t = recent[j];
            if (t < 0 || t >= n || c[t].id < 0)
                continue;
            c[t].logit = c[t].logit > 0 ? c[t].logit / r : c[t].logit * r;
            c[t].id = -1;
        }
        for (int64_t j = 0; j < n_recent; j++)
            if (recent[j] >= 0 && recent[j] < n)
                c[recent[j]].id = recent[j];
    }
    int64_t m = n;
    int sorted = 0;
    /* 2. top-k */
    if (o->top_k > 0 && o->top_k < m) {
        select_top_k(c, m, o->top_k);
        m = o->top_k;
        sorted = 1;
    }
    /* 3. top-p, over the probabilities of all m survivors */
    if (o->top_p < 1.0) {
        float max = sorted ? c[0].logit : max_logit(c, m);
        double sum = 0.0;
        for (int64_t i = 0; i < m; i++)
            sum += weight(c[i].logit, max, 1.0f);
        if (!sorted) {
            /* A token below (1 - P) / (m - 1) is never in the set (llama2.c's argument: the
             * tokens from it on would hold less than 1 - P), the most likely one aside: only
             * the rest need sorting. */
            double cutoff = m > 1 ? (1.0 - o->top_p) / (double)(m - 1) * sum : 0.0;
            int64_t kept = 0;
            for (int64_t i = 0; i < m; i++)
                if (c[i].logit == max || weight(c[i].logit, max, 1.0f) >= cutoff)
                    c[kept++] = c[i];
            m = kept;
            sort_candidates(c, m);
            sorted = 1;
        }
        double cum = 0.0;
        for (int64_t i = 0; i < m; i++) {
            cum += weight(c[i].logit, c[0].logit, 1.0f) / sum;
            if (cum >= o->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    /* 4. min-p: p_i >= P p_max is l_i - l_max >= log P; the order is kept (unsorted: no
     * sort for the draw, which takes them in any fixed order) */
    if (o->min_p > 0.0) {
        float max = sorted ? c[0].logit : max_logit(c, m);
        double floor_ = log(o->min_p);
        int64_t kept = 0;
        for (int64_t i = 0; i < m; i++)
            if (c[i].logit == max || (double)c[i].logit - (double)max >= floor_)
                c[kept++] = c[i];
        m = kept;
    }
    return m;
}

int32_t krt_sample_draw(const krt_sampling *o, const krt_candidate *c, int64_t m, krt_rng *r,
                        float *w)
{
    if (m <= 0)                /* an empty vocabulary: nothing to choose from */
        return 0;
    int64_t best = 0;
    for (int64_t i = 1; i < m; i++)
        if (before(&c[i], &c[best]))
            best = i;
    if (o->temp <= 0.0 || m == 1)
        return c[best].id;
    float max = c[best].logit, temp = (float)o->temp;
    double sum = 0.0;
    for (int64_t i = 0; i < m; i++)
        sum += w[i] = weight(c[i].logit, max, temp);
    double u = krt_rng_unit(r) * sum, cum = 0.0;
    for (int64_t i = 0; i < m; i++) {
        cum += w[i];
        if (u < cum)
            return c[i].id;
    }
    return c[m - 1].id; /* rounding */
}

/* ---- the sampler of a run ---- */

int krt_sampler_init(krt_sampler *s, const krt_sampling *o, int64_t n_vocab, uint64_t seed)
{
    s->opt = *o;
    s->n_vocab = n_vocab;
    s->n_recent = s->next = 0;
    s->window = o->repeat_penalty != 1.0 && o->repeat_last_n > 0 ? o->repeat_last_n : 0;
    krt_rng_seed(&s->rng, seed);
    s->cand = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *s->cand);
    s->weights = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *s->weights);
    s->recent = malloc((size_t)(s->window > 0 ? s->window : 1) * sizeof *s->recent);
    if (!s->cand || !s->weights || !s->recent) {
        krt_sampler_free(s);
        return -1;
    }
    return 0;
}

void krt_sampler_accept(krt_sampler *s, int32_t id)
{
    if (!s->window)
        return;
    s->recent[s->next] = id;   /* a ring: the oldest id is overwritten */
    s->next = (s->next + 1) % s->window;
    s->n_recent += s->n_recent < s->window;
}

int32_t krt_sampler_next(krt_sampler *s, const float *logits)
{
    const krt_sampling *o = &s->opt;
    if (o->temp <= 0.0 && !s->window)    /* plain greedy: no copy of the logits */
        return krt_argmax(logits, s->n_vocab);
    int64_t m = krt_sample_filter(o, logits, s->n_vocab, s->recent, s->n_recent, s->cand);
    return krt_sample_draw(o, s->cand, m, &s->rng, s->weights);
}

void krt_sampler_free(krt_sampler *s)
{
    free(s->cand);
    free(s->weights);
    free(s->recent);
    s->cand = NULL;
    s->weights = NULL;
    s->recent = NULL;
}
