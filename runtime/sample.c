/* sample.c - choosing the next token: greedy argmax, temperature and nucleus (top-p)
 * sampling, driven by a splitmix64 generator so runs are reproducible from --seed.
 */
#include <math.h>
#include <stdlib.h>

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

/* qsort order for the nucleus: probability descending, then index ascending. */
static const float *cmp_probs;
static int cmp_desc(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (cmp_probs[i] != cmp_probs[j])
        return cmp_probs[i] > cmp_probs[j] ? -1 : 1;
    return (i > j) - (i < j);
}

int32_t krt_sample(const float *logits, int64_t n, float temp, float top_p, krt_rng *r,
                   float *probs, int32_t *idx)
{
    if (temp <= 0.0f || n <= 1)
        return krt_argmax(logits, n);
    float max = logits[krt_argmax(logits, n)];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        probs[i] = expf((logits[i] - max) / temp);
        sum += probs[i];
    }
    for (int64_t i = 0; i < n; i++)
        probs[i] = (float)(probs[i] / sum);

    int64_t m = 0; /* candidates, in order */
    if (top_p < 1.0f) {
        /* Tokens below (1 - p)/(n - 1) can never be in the nucleus (as in llama2.c). */
        float cutoff = (1.0f - top_p) / (float)(n - 1);
        for (int64_t i = 0; i < n; i++)
            if (probs[i] >= cutoff)
                idx[m++] = (int32_t)i;
        if (m == 0) /* a near-uniform distribution with a tiny top_p */
            return krt_argmax(logits, n);
        cmp_probs = probs;
        qsort(idx, (size_t)m, sizeof *idx, cmp_desc);
        double cum = 0.0;
        int64_t keep = m;
        for (int64_t k = 0; k < m; k++) {
            cum += probs[idx[k]];
            if (cum > top_p) {
                keep = k + 1;
                break;
            }
        }
        m = keep;
    } else {
        for (int64_t i = 0; i < n; i++)
            idx[m++] = (int32_t)i;
    }
    double mass = 0.0;
    for (int64_t k = 0; k < m; k++)
        mass += probs[idx[k]];
    double u = krt_rng_unit(r) * mass, cum = 0.0;
    for (int64_t k = 0; k < m; k++) {
        cum += probs[idx[k]];
        if (u < cum)
            return idx[k];
    }
    return idx[m - 1]; /* rounding */
}
