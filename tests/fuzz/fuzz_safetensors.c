/* fuzz_safetensors.c - fuzz target: the safetensors reader (weights/safetensors.c) on the
 * input as a mapped file; every tensor it accepts must lie inside the file.
 */
#include "../../weights/weights.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt_tensor *t = NULL;
    int n = 0;
    if (safetensors_parse("fuzz.safetensors", data, size, &t, &n) == 0) {
        for (int i = 0; i < n; i++)
            if (t[i].offset > size || t[i].nbytes > size - t[i].offset)
                abort();
        free(t);
    }
    return 0;
}
