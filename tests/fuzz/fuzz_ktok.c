/* fuzz_ktok.c - fuzz target: the program's tokenizer (runtime/tokenizer.c) on the input as a
 * serialized tokenizer (the blob's "kiln.tokenizer" entry): krt_tok_open, then encode and
 * decode a fixed text.
 */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_open_use(data, size, 0);
    return 0;
}
