/* sample_test.c - TAP test of runtime/sample.c, the sampler chain, against a plain reference
 * written here: the penalty over a window, then the whole vocabulary ranked by an insertion
 * sort and cut by top-k, top-p and min-p one after the other, as the chain's comment in
 * sample.c states them. Random small distributions with every combination of the options
 * must keep the same tokens with the same logits; hand-made ones check the rules that are
 * easy to get wrong (top-k 1 is argmax, min-p 1 keeps only the maximum, the penalty flips a
 * choice and counts a repeated id once, top-p's cut among ties, the window's length); the
 * draw follows the softmax at the temperature and a seed reproduces its tokens.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/rt_internal.h"

static int ntest, nfail;

static void ok(int cond, const char *desc)
{
    ntest++;
    if (!cond)
        nfail++;
    printf("%sok %d - %s\n", cond ? "" : "not ", ntest, desc);
}

enum { NMAX = 64 };

/* ---- the reference ---- */

/* The chain up to the draw: ids[0..return) most likely first, with their logits. */
static int ref_chain(const krt_sampling *o, const float *logits, int n, const int32_t *recent,
                     int n_recent, int32_t *ids, float *out)
{
    float l[NMAX];
    int seen[NMAX] = {0}, rank[NMAX];
    for (int i = 0; i < n; i++)
        l[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    for (int j = 0; j < n_recent; j++) {
        int t = recent[j];
        if (o->repeat_penalty != 1.0 && !seen[t]) {
            seen[t] = 1;
            float r = (float)o->repeat_penalty;
            l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
        }
    }
    for (int i = 0; i < n; i++) {      /* insertion sort: logit down, id up */
        int k = i;
        while (k > 0 && (l[rank[k - 1]] < l[i] || (l[rank[k - 1]] == l[i] && rank[k - 1] > i))) {
            rank[k] = rank[k - 1];
            k--;
        }
        rank[k] = i;
    }
    int m = n;
    if (o->top_k > 0 && o->top_k < m)
        m = (int)o->top_k;
    if (o->top_p < 1.0) {
        double sum = 0, cum = 0;
        for (int k = 0; k < m; k++)
            sum += l[rank[k]] == l[rank[0]] ? 1.0 : exp((double)l[rank[k]] - l[rank[0]]);
        for (int k = 0; k < m; k++) {
            cum += (l[rank[k]] == l[rank[0]] ? 1.0 : exp((double)l[rank[k]] - l[rank[0]])) / sum;
            if (cum >= o->top_p) {
                m = k + 1;
                break;
            }
        }
    }
    if (o->min_p > 0.0) {
        int kept = 0;
        for (int k = 0; k < m; k++)
            if (k == 0 || (double)l[rank[k]] - l[rank[0]] >= log(o->min_p))
                kept = k + 1;
        m = kept;
    }
    for (int k = 0; k < m; k++) {
        ids[k] = rank[k];
        out[k] = l[rank[k]];
    }
    return m;
}

/* ---- helpers ---- */

static uint64_t lcg = 12345;
static double uniform(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1.0p-53;
}

static krt_sampling opts(double temp, int64_t top_k, double top_p, double min_p, double penalty)
{
    return (krt_sampling){temp, top_p, min_p, penalty, top_k, 64};
}

/* The kept set of the chain against the reference's: the same ids with the same logits, in
 * the same order when top-k or top-p sorted them (id order otherwise). */
static int same_as_reference(const krt_sampling *o, const float *logits, int n,
                             const int32_t *recent, int n_recent)
{
    krt_candidate c[NMAX];
    int32_t ids[NMAX];
    float l[NMAX];
    int64_t m = krt_sample_filter(o, logits, n, recent, n_recent, c);
    int rm = ref_chain(o, logits, n, recent, n_recent, ids, l);
    if (m != rm)
        return 0;
    int sorted = (o->top_k > 0 && o->top_k < n) || o->top_p < 1.0;
    for (int k = 0; k < rm; k++) {
        int found = 0;
        for (int64_t i = 0; i < m; i++)
            if (c[i].id == ids[k] && c[i].logit == l[k] && (!sorted || i == k))
                found = 1;
        if (!found)
            return 0;
    }
    return 1;
}

static int32_t next_token(const krt_sampling *o, const float *logits, int n, const int32_t *acc,
                          int nacc, uint64_t seed)
{
    krt_sampler s;
    if (krt_sampler_init(&s, o, n, seed) != 0)
        return -1;
    for (int i = 0; i < nacc; i++)
        krt_sampler_accept(&s, acc[i]);
    int32_t t = krt_sampler_next(&s, logits);
    krt_sampler_free(&s);
    return t;
}

/* ---- the tests ---- */

static void test_against_reference(void)
{
    static const int64_t ks[] = {0, 1, 3, 9, 100};
    static const double ps[] = {1.0, 0.95, 0.6, 0.2};
    static const double mins[] = {0.0, 0.05, 0.4, 1.0};
    static const double pens[] = {1.0, 1.3, 0.7};
    int cases = 0, bad = 0;
    for (int trial = 0; trial < 40; trial++) {
        int n = 5 + (int)(uniform() * 40);
        float logits[NMAX];
        for (int i = 0; i < n; i++)   /* a spread of scales; some exact ties */
            logits[i] = trial % 4 == 3 && i % 5 == 0 ? 1.5f : (float)((uniform() - 0.5) * (1 + trial % 7));
        int32_t recent[12];
        int nr = trial % 3 == 0 ? 0 : 12;
        for (int j = 0; j < nr; j++)
            recent[j] = (int32_t)(uniform() * n);
        for (size_t a = 0; a < 5; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 4; c++)
                    for (size_t d = 0; d < 3; d++) {
                        krt_sampling o = opts(1.0, ks[a], ps[b], mins[c], pens[d]);
                        cases++;
                        bad += !same_as_reference(&o, logits, n, recent, nr);
                    }
    }
    char msg[160];
    snprintf(msg, sizeof msg, "every option combination on 40 random distributions keeps the "
             "reference's tokens and logits (%d of %d cases differ)", bad, cases);
    ok(bad == 0, msg);
}

static void test_top_k_one(void)
{
    int bad = 0;
    for (int trial = 0; trial < 30; trial++) {
        float logits[NMAX];
        int n = 2 + trial;
        for (int i = 0; i < n; i++)
            logits[i] = (float)(uniform() * 4 - 2);
        if (trial % 3 == 0)
            logits[n - 1] = logits[n / 2] = 3.0f;    /* a tie: the lower id wins */
        krt_sampling o = opts(1.5, 1, 1.0, 0.0, 1.0);
        if (next_token(&o, logits, n, NULL, 0, (uint64_t)trial) != krt_argmax(logits, n))
            bad++;
    }
    ok(bad == 0, "top-k 1 at temperature 1.5 is the argmax (lowest id on ties), every seed");
}

static void test_min_p_one(void)
{
    float logits[] = {0.5f, 2.0f, -1.0f, 2.0f, 1.99f};
    krt_sampling o = opts(1.0, 0, 1.0, 1.0, 1.0);
    krt_candidate c[5];
    int64_t m = krt_sample_filter(&o, logits, 5, NULL, 0, c);
    ok(m == 2 && c[0].id == 1 && c[1].id == 3, "min-p 1 keeps only the maximum (both of a tie)");
    float one[] = {0.5f, 2.0f, -1.0f, 1.99f};
    int bad = 0;
    for (uint64_t seed = 0; seed < 20; seed++)
        bad += next_token(&o, one, 4, NULL, 0, seed) != 1;
    ok(bad == 0, "min-p 1 always draws the maximum");
    o.min_p = 0.5;             /* p_i / p_max >= 0.5: logit >= 2 - log 2 = 1.307 */
    m = krt_sample_filter(&o, one, 4, NULL, 0, c);
    ok(m == 2 && c[0].id == 1 && c[1].id == 3, "min-p 0.5 keeps the tokens within log 2 of the max");
}

static void test_penalty(void)
{
    float pos[] = {2.0f, 1.9f, -1.0f};
    int32_t zero[] = {0}, three_zeros[] = {0, 0, 0};
    krt_sampling greedy = opts(0.0, 0, 1.0, 0.0, 1.0), pen = opts(0.0, 0, 1.0, 0.0, 1.1);
    ok(next_token(&greedy, pos, 3, zero, 1, 0) == 0 && next_token(&pen, pos, 3, zero, 1, 0) == 1,
       "penalty 1.1: a recent positive logit 2.0 is divided (1.82 < 1.9): the choice flips");
    pen.repeat_penalty = 1.04;
    ok(next_token(&pen, pos, 3, three_zeros, 3, 0) == 0,
       "an id three times in the window is penalized once (2.0 / 1.04 > 1.9, / 1.04^3 is not)");
    float neg[] = {-1.0f, -1.05f, -3.0f};
    pen.repeat_penalty = 1.1;
    ok(next_token(&greedy, neg, 3, zero, 1, 0) == 0 && next_token(&pen, neg, 3, zero, 1, 0) == 1,
       "penalty 1.1: a recent negative logit -1.0 is multiplied (-1.1 < -1.05): the choice flips");
    pen.repeat_penalty = 0.5;
    float low[] = {1.0f, 1.9f};
    ok(next_token(&pen, low, 2, zero, 1, 0) == 0, "a penalty below 1 favours the recent id");
    /* the window: 3 ids; 0 has left it after 1, 2, 3 */
    pen.repeat_penalty = 1.1;
    pen.repeat_last_n = 3;
    float five[] = {2.0f, 1.9f, -5.0f, -5.0f, -5.0f};
    int32_t old[] = {0, 2, 3, 4}, inside[] = {2, 0, 3};
    ok(next_token(&pen, five, 5, old, 4, 0) == 0 && next_token(&pen, five, 5, inside, 3, 0) == 1,
       "--repeat-last-n 3: only the last 3 ids accepted are penalized");
    krt_sampling off = opts(0.0, 0, 1.0, 0.0, 1.0);
    off.repeat_last_n = 0;
    ok(next_token(&off, pos, 3, zero, 1, 0) == 0, "--repeat-last-n 0: no penalty");
}

static void test_top_p_ties(void)
{
    float flat[] = {1.0f, 1.0f, 1.0f, 1.0f};
    krt_sampling o = opts(1.0, 0, 0.5, 0.0, 1.0);
    krt_candidate c[5];
    int64_t m = krt_sample_filter(&o, flat, 4, NULL, 0, c);
    ok(m == 2 && c[0].id == 0 && c[1].id == 1,
       "top-p 0.5 of four equal tokens: the two lowest ids (the mass reaches 0.5 exactly)");
    o.top_p = 0.51;
    m = krt_sample_filter(&o, flat, 4, NULL, 0, c);
    ok(m == 3 && c[2].id == 2, "top-p 0.51 of four equal tokens: three");
    float mixed[] = {0.0f, 2.0f, 0.0f, 2.0f, -10.0f};
    o.top_p = 0.7;             /* 2, 2 hold 0.87 of the mass, one of them 0.44 */
    m = krt_sample_filter(&o, mixed, 5, NULL, 0, c);
    ok(m == 2 && c[0].id == 1 && c[1].id == 3, "top-p 0.7 keeps both tied maxima, in id order");
    o.top_p = 1e-9;
    m = krt_sample_filter(&o, mixed, 5, NULL, 0, c);
    ok(m == 1 && c[0].id == 1, "a tiny top-p keeps the most likely token (the lower id of a tie)");
    o.top_p = 0.7;
    o.top_k = 3;               /* after top-k: 2, 2, 0 renormalized; the cut is the same */
    m = krt_sample_filter(&o, mixed, 5, NULL, 0, c);
    ok(m == 2 && c[0].id == 1 && c[1].id == 3, "top-k 3 then top-p 0.7");
}

static void test_draw(void)
{
    /* the draw follows softmax(logit / T) over what is kept */
    float logits[] = {1.0f, 0.0f, 2.0f, -0.5f, 1.5f, -30.0f};
    krt_sampling o = opts(0.8, 0, 1.0, 0.0, 1.0);
    krt_sampler s;
    int counts[6] = {0}, draws = 200000;
    if (krt_sampler_init(&s, &o, 6, 99) != 0)
        return;
    for (int i = 0; i < draws; i++)
        counts[krt_sampler_next(&s, logits)]++;
    krt_sampler_free(&s);
    double sum = 0, worst = 0;
    for (int i = 0; i < 6; i++)
        sum += exp(logits[i] / 0.8);
    for (int i = 0; i < 6; i++) {
        double p = exp(logits[i] / 0.8) / sum, sd = sqrt(draws * p * (1 - p)) + 1e-9;
        double z = fabs(counts[i] - draws * p) / sd;
        worst = z > worst ? z : worst;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "200000 draws at T 0.8 follow the softmax (worst deviation %.2f "
             "sigma, under 5)", worst);
    ok(worst < 5, msg);

    /* top-k 2 and T 2: only the two most likely, in the ratio exp((2 - 1.5) / 2) */
    o = opts(2.0, 2, 1.0, 0.0, 1.0);
    memset(counts, 0, sizeof counts);
    if (krt_sampler_init(&s, &o, 6, 5) != 0)
        return;
    for (int i = 0; i < draws; i++)
        counts[krt_sampler_next(&s, logits)]++;
    krt_sampler_free(&s);
    double p2 = 1 / (1 + exp(-0.25));
    ok(counts[2] + counts[4] == draws &&
       fabs(counts[2] - draws * p2) < 5 * sqrt(draws * p2 * (1 - p2)),
       "top-k 2 at T 2: only the two most likely, in the ratio of their softmax");

    /* seeds */
    o = opts(1.0, 4, 0.9, 0.02, 1.2);
    int32_t a[50], b[50], c[50];
    uint64_t seeds[3] = {7, 7, 8};
    int32_t *out[3] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        if (krt_sampler_init(&s, &o, 6, seeds[k]) != 0)
            return;
        for (int i = 0; i < 50; i++) {
            out[k][i] = krt_sampler_next(&s, logits);
            krt_sampler_accept(&s, out[k][i]);
        }
        krt_sampler_free(&s);
    }
    ok(!memcmp(a, b, sizeof a), "the same seed gives the same 50 tokens");
    ok(memcmp(a, c, sizeof a) != 0, "another seed gives other tokens");
}

static void test_greedy_and_nan(void)
{
    float logits[] = {0.1f, NAN, 0.3f, 0.3f, -2.0f};
    krt_sampling g = opts(0.0, 0, 1.0, 0.0, 1.0);
    ok(next_token(&g, logits, 5, NULL, 0, 0) == krt_argmax(logits, 5),
       "--temp 0 without a penalty is krt_argmax");
    g.repeat_penalty = 2.0;
    int32_t two[] = {2};
    ok(next_token(&g, logits, 5, two, 1, 0) == 3, "--temp 0 with a penalty: the argmax after it");
    krt_sampling o = opts(1.0, 2, 0.9, 0.1, 1.0);
    int bad = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        int32_t t = next_token(&o, logits, 5, NULL, 0, seed);
        bad += t != 2 && t != 3;
    }
    ok(bad == 0, "a NaN logit counts as -inf: never drawn");
    float inf[] = {INFINITY, 1.0f, INFINITY};
    o = opts(1.0, 0, 1.0, 0.0, 1.0);
    bad = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        int32_t t = next_token(&o, inf, 3, NULL, 0, seed);
        bad += t != 0 && t != 2;
    }
    ok(bad == 0, "infinite logits: only they are drawn");
}

/* krt_nonfinite_at: the first NaN or infinity of a row, in the runs of 64 and in the tail;
 * -1 for finite rows, the largest finite values and subnormals included. */
static void test_nonfinite(void)
{
    static float row[200];
    int bad = 0;
    for (int i = 0; i < 200; i++)
        row[i] = i % 3 ? 3.4e38f : i % 5 ? -1e-45f : (float)i;
    bad |= krt_nonfinite_at(row, 200) != -1 || krt_nonfinite_at(row, 0) != -1;
    const int at[] = {0, 63, 64, 130, 199};
    for (int k = 0; k < 5; k++) {
        for (int v = 0; v < 3; v++) {
            float save = row[at[k]];
            row[at[k]] = v == 0 ? NAN : v == 1 ? INFINITY : -INFINITY;
            bad |= krt_nonfinite_at(row, 200) != at[k];
            bad |= krt_nonfinite_at(row, at[k]) != -1;   /* before it: none */
            row[at[k]] = save;
        }
    }
    ok(!bad, "krt_nonfinite_at: NaN, +Inf and -Inf found first at 0, 63, 64, 130, 199; none in finite rows");
}

int main(void)
{
    test_nonfinite();
    test_against_reference();
    test_top_k_one();
    test_min_p_one();
    test_penalty();
    test_top_p_ties();
    test_draw();
    test_greedy_and_nan();
    printf("1..%d\n", ntest);
    return nfail ? 1 : 0;
}
