/* fuzz_blob.c - fuzz target: the program's weight-blob reader (runtime/blob.c) on the input
 * as a blob in memory (krt_blob_open_memory, the checks a file's blob gets too) against a
 * fixed model: tests/unit/fake_model.c's tensors, one of each storage type, and a matrix in
 * panels. A tokenizer entry it accepts is opened and used by the runtime's tokenizer.
 * The corpus's blob was written by codegen/pack.c for exactly these tensors.
 */
#include "../../runtime/rt_internal.h"
#include "fuzz_tok.h"

static const krt_tensor_desc tensors[] = {
    {"tok_embeddings", KBLOB_F32, 2, {11, 6, 0, 0}, KBLOB_ROWS},
    {"output", KBLOB_F32, 2, {11, 8, 0, 0}, KBLOB_ROWS},
    {"w_q8", KBLOB_Q8_0, 2, {2, 64, 0, 0}, KBLOB_ROWS},
    {"w_q4", KBLOB_Q4_0, 2, {3, 32, 0, 0}, KBLOB_ROWS},
    {"w_f16", KBLOB_F16, 2, {4, 5, 0, 0}, KBLOB_ROWS},
    {"w_bf16", KBLOB_BF16, 1, {7, 0, 0, 0}, KBLOB_ROWS},
    {"w_panel", KBLOB_Q8_0, 2, {20, 32, 0, 0}, KBLOB_PANEL},
};

static const krt_model model = {
    .name = "fuzz",
    .vocab = 11,
    .ctx = 8,
    .max_batch = 4,
    .n_tensors = (int)(sizeof tensors / sizeof tensors[0]),
    .tensors = tensors,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the C library's embedded blob is KBLOB_ALIGN-aligned: so is this copy */
    void *copy = aligned_alloc(KBLOB_ALIGN, (size + KBLOB_ALIGN) / KBLOB_ALIGN * KBLOB_ALIGN);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    char err[512];
    krt_say say = {"fuzz", err, sizeof err, NULL};
    krt_blob b;
    if (krt_blob_open_memory(&b, &say, copy, size, &model) == 0) {
        for (int i = 0; i < b.n; i++)
            if ((const uint8_t *)b.w[i] < (const uint8_t *)copy ||
                (const uint8_t *)b.w[i] > (const uint8_t *)copy + size)
                abort();
        if (b.tokenizer)
            fuzz_tok_open_use(b.tokenizer, b.tokenizer_bytes, 0);
        krt_blob_close(&b);
    }
    free(copy);
    return 0;
}
