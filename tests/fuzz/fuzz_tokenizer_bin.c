/* fuzz_tokenizer_bin.c - fuzz target: the llama2.c tokenizer.bin reader
 * (weights/tokenizer.c) on the input as a file, for a vocabulary of 512 tokens (the
 * corpus's tok512.bin) and of 5; what it reads is serialized and used by the runtime.
 */
#include "../../base/base.h"
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_tmp_file(0, ".bin", data, size);
    if (!path)
        return 0;
    static const int32_t vocabs[] = {512, 5};
    for (int i = 0; i < 2; i++) {
        tokenizer_spec s;
        memset(&s, 0, sizeof s);
        diag_reset();
        if (tokenizer_from_llama2c(path, vocabs[i], &s) == 0)
            fuzz_tok_spec(&s);
        tokenizer_free(&s);
    }
    base_free_all();
    return 0;
}
