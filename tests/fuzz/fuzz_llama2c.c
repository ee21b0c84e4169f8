/* fuzz_llama2c.c - fuzz target: the llama2.c v0 reader (weights/llama2c.c) on the input as a
 * mapped .bin; every tensor it accepts must lie inside the file.
 */
#include "../../weights/weights.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt_tensor *t = NULL;
    int n = 0;
    llama2c_header h;
    if (llama2c_parse("fuzz.bin", data, size, &h, &t, &n) == 0) {
        for (int i = 0; i < n; i++)
            if (t[i].offset > size || t[i].nbytes > size - t[i].offset)
                abort();
        free(t);
    }
    return 0;
}
