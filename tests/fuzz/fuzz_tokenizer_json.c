/* fuzz_tokenizer_json.c - fuzz target: the Hugging Face tokenizer.json reader
 * (weights/tokenizer_hf.c) on the input as a file; what it reads is serialized and used by
 * the runtime.
 */
#include "../../base/base.h"
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_tmp_file(0, ".json", data, size);
    if (!path)
        return 0;
    tokenizer_spec s;
    memset(&s, 0, sizeof s);
    diag_reset();
    if (tokenizer_from_hf_json(path, &s) == 0)
        fuzz_tok_spec(&s);
    tokenizer_free(&s);
    base_free_all();
    return 0;
}
