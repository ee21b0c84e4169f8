/* fuzz_gguf.c - fuzz target: the GGUF reader (weights/gguf.c) on the input as a mapped file,
 * then what kiln does with a GGUF checkpoint's metadata: every value printed as `kiln
 * inspect` prints it, the hyperparameter mapping and its check against a llama-shaped spec
 * (weights/gguf_hparams.c), and the embedded vocabulary (weights/tokenizer_gguf.c),
 * serialized and used by the runtime.
 */
#include "../../base/base.h"
#include "fuzz_tok.h"

static const char *const spec_params[] = {"dim", "hidden", "layers", "heads", "kv_heads",
                                          "vocab", "ctx", "eps", "rope_base"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt c;
    memset(&c, 0, sizeof c);
    c.path = "fuzz.gguf";
    c.format = CKPT_GGUF;
    c.map = data;
    c.size = size;
    diag_reset();
    if (gguf_parse(c.path, data, size, &c.gguf, &c.tensors, &c.n) != 0)
        return 0;
    for (int i = 0; i < c.n; i++)
        if (c.tensors[i].offset > size || c.tensors[i].nbytes > size - c.tensors[i].offset)
            abort();
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem) {
        for (int i = 0; i < c.gguf.nkv; i++)
            gguf_print_value(mem, &c.gguf.kv[i], 8, 64);
        fclose(mem);
        free(text);
    }
    hf_param *p = NULL;
    int np = 0;
    if (gguf_hparams_read(&c, &p, &np) == 0) {
        hf_spec s = {spec_params, (int)(sizeof spec_params / sizeof spec_params[0]), 1, 0};
        gguf_hparams_check(&c, &s);
    }
    free(p);
    tokenizer_spec t;
    memset(&t, 0, sizeof t);
    if (tokenizer_from_gguf(&c, &t) == 1)
        fuzz_tok_spec(&t);
    tokenizer_free(&t);
    free(c.tensors);
    free(c.gguf.kv);
    base_free_all();
    return 0;
}
