/* detweights.c - det-weights v1: deterministic test weights, bit-identical in any language.
 *
 * key = fnv1a64(name) ^ seed; element i hashes key + (i+1)*GOLDEN with the splitmix64
 * finalizer; the top 24 bits give x in [-1, 1) exactly; value = center + scale*x in float32
 * with two roundings (no FMA contraction: the product goes through a volatile float).
 */
#include <string.h>

#include "weights.h"

#define DW_GOLDEN 0x9E3779B97F4A7C15ull
#define DW_M1 0xBF58476D1CE4E5B9ull
#define DW_M2 0x94D049BB133111EBull

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

int detweights_is_norm(const char *name) {
    static const char suffix[] = "norm.weight";
    size_t n = strlen(name), k = sizeof suffix - 1;
    return n >= k && memcmp(name + n - k, suffix, k) == 0;
}

void detweights_fill(float *out, const char *name, uint64_t start, uint64_t n, uint64_t seed) {
    int norm = detweights_is_norm(name);
    const float center = norm ? 1.0f : 0.0f, scale = norm ? 0.2f : 0.1f;
    uint64_t key = fnv1a64(name) ^ seed;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t z = key + (start + j + 1) * DW_GOLDEN;
        z = (z ^ (z >> 30)) * DW_M1;
        z = (z ^ (z >> 27)) * DW_M2;
        z = z ^ (z >> 31);
        volatile float x = (float)((int64_t)(z >> 40) - (1 << 23)) * 0x1p-23f;
        volatile float prod = scale * x;
        volatile float v = center + prod;
        out[j] = v;
    }
}
