/* fake_model.c - a hand-written `kiln_model`, shaped like the C that kiln emits, for testing
 * the runtime (linked with libkilnrt.a into fake_prog; driven by blob_test.c).
 *
 * The model: vocabulary V=11, width D=6, context CTX=8. Tensors: "tok_embeddings" [V, D] and
 * "output" [V, D+2] (only its first D columns are used: a column-slice view, ld = D+2), plus
 * four tensors the forward function never reads, one of each other storage type (q8_0, q4_0,
 * f16, bf16), so the blob reader's size and dtype checks are exercised for every dtype.
 *   x = embed(token); cache[pos] = x; p = softmax(x . cache[0..pos] / sqrt(D));
 *   h = x + sum_t p[t] cache[t];  logits = logit_scale * (output[:, :D] h)
 * One run-time parameter (logit_scale, default 1) and one statistic (attn_max[0]: the
 * largest attention weight). blob_test.c recomputes all of this on its own.
 */
#include "../../runtime/kernels.h"
#include "../../runtime/kiln_rt.h"

enum { V = 11, D = 6, CTX = 8, LD = D + 2, TMAX = 4 };
/* frame layout, in floats, for blocks of up to TMAX tokens; the cache is the state */
enum { A_X = 0, A_S = A_X + TMAX * D, A_ATT = A_S + TMAX * CTX, A_H = A_ATT + TMAX * D,
       A_LOGITS = A_H + TMAX * D, A_END = A_LOGITS + TMAX * V };

static const krt_tensor_desc tensors[] = {
    {"tok_embeddings", KBLOB_F32, 2, {V, D, 0, 0}, KBLOB_ROWS},
    {"output", KBLOB_F32, 2, {V, LD, 0, 0}, KBLOB_ROWS},
    {"w_q8", KBLOB_Q8_0, 2, {2, 64, 0, 0}, KBLOB_ROWS},
    {"w_q4", KBLOB_Q4_0, 2, {3, 32, 0, 0}, KBLOB_ROWS},
    {"w_f16", KBLOB_F16, 2, {4, 5, 0, 0}, KBLOB_ROWS},
    {"w_bf16", KBLOB_BF16, 1, {7, 0, 0, 0}, KBLOB_ROWS},
};
static const char *const rtparam_names[] = {"logit_scale"};
static const float rtparam_defaults[] = {1.0f};
static const char *const stat_names[] = {"attn_max[0]"};
static const krt_cache_desc caches[] = {{"kv l=0", D, CTX, 0, 1, KBLOB_F32, 0}};   /* at the start of the state */

static void forward(krt_ctx *c, const int32_t *tokens, int32_t pos0, int32_t T)
{
    float *a = (float *)(void *)c->frame, *x = a + A_X, *s = a + A_S, *att = a + A_ATT;
    float *h = a + A_H, *logits = a + A_LOGITS, *cache = (float *)(void *)c->state;
    krt_embed(x, tokens, T, (krt_wview){c->w[0], KBLOB_F32, KBLOB_ROWS, V, D, 0, 0}, V, D);
    krt_kv kv = {cache, KBLOB_F32, 0, 1, D, CTX};
    krt_cache_store(kv, x, T, pos0);
    krt_attn_scores(s, x, T, kv, 1, pos0, 0, 1);
    for (int r = 0; r < T; r++)
        for (int t = 0; t <= pos0 + r; t++)
            s[r * CTX + t] *= 0.40824829f; /* 1/sqrt(6) */
    krt_softmax_causal(s, s, T, 1, pos0, CTX, 0, 1);
    for (int r = 0; r < T; r++) {
        float mx = 0.0f;
        for (int t = 0; t <= pos0 + r; t++)
            mx = s[r * CTX + t] > mx ? s[r * CTX + t] : mx;
        c->stat_sum[0] += mx;
        c->stat_count[0] += 1;
    }
    krt_attn_apply(att, s, T, kv, 1, pos0, 0, 1);
    for (int i = 0; i < T * D; i++)
        h[i] = x[i] + att[i];
    /* the first D of LD columns of "output" (rows layout: the reference kernel) */
    krt_linear(&(krt_lin){.y = logits, .x = h, .ldy = V, .ldx = D, .rows = T, .w = c->w[1],
                          .dtype = KBLOB_F32, .layout = KBLOB_ROWS, .wrows = V, .wcols = LD,
                          .out = V, .in = D},
               0, 1, c->scratch);
    for (int i = 0; i < T * V; i++)
        logits[i] *= c->rtparams[0];
    c->logits = logits;
}

const krt_model kiln_model = {
    .name = "fake",
    .vocab = V,
    .ctx = CTX,
    .max_batch = TMAX,
    .frame_bytes = A_END * 4,
    .state_bytes = CTX * D * 4,
    .scratch_bytes = 4096,     /* krt_linear_scratch(TMAX, D) and more */
    .n_tensors = 6,
    .tensors = tensors,
    .n_rtparams = 1,
    .rtparam_names = rtparam_names,
    .rtparam_defaults = rtparam_defaults,
    .n_stats = 1,
    .stat_names = stat_names,
    .n_caches = 1,
    .caches = caches,
    .forward = forward,
};
