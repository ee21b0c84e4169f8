/* state.c - the KV caches in a state: their value size, and clearing the rows a run wrote
 * (the driver between --bench runs, the C library's reset).
 */
#include <string.h>

#include "rt_internal.h"

uint64_t krt_cache_elem_bytes(const krt_cache_desc *k)
{
    return k->dtype == KBLOB_F16 || k->dtype == KBLOB_BF16 ? 2 : 4;
}

void krt_state_clear(const krt_model *m, unsigned char *state, int64_t rows)
{
    for (int i = 0; i < m->n_caches && rows > 0; i++) {
        const krt_cache_desc *k = &m->caches[i];
        uint64_t n = (uint64_t)rows < k->capacity ? (uint64_t)rows : k->capacity;
        uint64_t heads = k->head_major && k->kv_heads ? k->kv_heads : 1, hw = k->width / heads;
        uint64_t elem = krt_cache_elem_bytes(k);
        for (uint64_t g = 0; g < heads; g++)   /* head-major: rows 0 .. n-1 of each head */
            memset(state + k->offset + g * k->capacity * hw * elem, 0, (size_t)(n * hw * elem));
    }
}
