/* fake_model.c - a hand-written `kiln_model`, shaped like the C that kiln emits, for testing
 * the runtime (linked with libkilnrt.a into fake_prog; driven by blob_test.c).
 *
 * The model: vocabulary V=11, width D=6, context CTX=8. Tensors: "tok_embeddings" [V, D] and
 * "output" [V, D+2] (only its first D columns are used: a column-slice view, ld = D+2).
 *   x = embed(token); cache[pos] = x; p = softmax(x . cache[0..pos] / sqrt(D));
 *   h = x + sum_t p[t] cache[t];  logits = logit_scale * (output[:, :D] h)
 * One run-time parameter (logit_scale, default 1) and one statistic (attn_max[0]: the
 * largest attention weight). blob_test.c recomputes all of this on its own.
 */
#include "../../runtime/kernels.h"
#include "../../runtime/kiln_rt.h"

enum { V = 11, D = 6, CTX = 8, LD = D + 2 };
/* arena layout, in floats */
enum { A_X = 0, A_S = 8, A_ATT = 16, A_H = 24, A_LOGITS = 32, A_CACHE = 48, A_END = A_CACHE + CTX * D };

static const krt_tensor_desc tensors[] = {
    {"tok_embeddings", KBLOB_F32, 2, {V, D, 0, 0}},
    {"output", KBLOB_F32, 2, {V, LD, 0, 0}},
};
static const char *const rtparam_names[] = {"logit_scale"};
static const float rtparam_defaults[] = {1.0f};
static const char *const stat_names[] = {"attn_max[0]"};
static const krt_cache_desc caches[] = {{"kv l=0", D, CTX}};

static void forward(krt_ctx *c, int32_t token, int32_t pos)
{
    float *a = c->arena, *x = a + A_X, *s = a + A_S, *att = a + A_ATT, *h = a + A_H;
    float *logits = a + A_LOGITS, *cache = a + A_CACHE;
    krt_embed(x, c->w[0], token, D, D);
    krt_cache_store(cache, x, D, pos);
    krt_attn_scores(s, x, cache, 1, 1, D, pos + 1, CTX);
    for (int t = 0; t <= pos; t++)
        s[t] *= 0.40824829f; /* 1/sqrt(6) */
    krt_softmax_rows(s, 1, pos + 1, CTX);
    float mx = 0.0f;
    for (int t = 0; t <= pos; t++)
        mx = s[t] > mx ? s[t] : mx;
    c->stat_sum[0] += mx;
    c->stat_count[0] += 1;
    krt_attn_apply(att, s, cache, 1, 1, D, pos + 1, CTX);
    for (int i = 0; i < D; i++)
        h[i] = x[i] + att[i];
    krt_linear(logits, c->w[1], LD, h, V, D);
    for (int i = 0; i < V; i++)
        logits[i] *= c->rtparams[0];
    c->logits = logits;
}

const krt_model kiln_model = {
    .name = "fake",
    .vocab = V,
    .ctx = CTX,
    .arena_floats = A_END,
    .n_tensors = 2,
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
