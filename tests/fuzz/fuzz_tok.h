/* fuzz_tok.h - the tokenizer targets' common tail: a tokenizer read at build time is
 * serialized, opened by the runtime (krt_tok_open) and made to encode and decode fuzz_text,
 * as a program's --prompt would.
 */
#ifndef KILN_FUZZ_TOK_H
#define KILN_FUZZ_TOK_H

#include "../../runtime/tokenizer.h"
#include "../../weights/tokenizer.h"
#include "fuzz.h"

/* Encodes fuzz_text (with and without BOS) and decodes every id it gave, each after the
 * one before it, plus ids at and past the ends of the vocabulary. */
static inline void fuzz_tok_use(const krt_tok *t)
{
    int32_t ids[256];
    for (int bos = 0; bos < 2; bos++) {
        int64_t n = krt_tok_encode(t, fuzz_text, FUZZ_TEXT_LEN, bos, ids, 256);
        if (n > 256)
            n = 256;
        for (int64_t i = 0; i < n; i++) {
            const char *bytes;
            size_t len = krt_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &bytes);
            if (len && bytes[len - 1] == '\x7f' && bytes[0] == '\x7f')
                ids[i] = 0;    /* touches every decoded byte's ends (ASan checks them) */
        }
    }
    int32_t v = krt_tok_vocab(t), odd[] = {0, v - 1, v, -1, krt_tok_bos(t), krt_tok_eos(t)};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *bytes;
        size_t len = krt_tok_decode(t, -1, odd[i], &bytes);
        if (len && bytes[len - 1] == '\x7f' && bytes[0] == '\x7f')
            len = 0;
        krt_tok_is_eog(t, odd[i]);
    }
}

/* Opens a serialized tokenizer and uses it; a serialized form the compiler wrote (`ours`)
 * must open. */
static inline void fuzz_tok_open_use(const void *data, size_t size, int ours)
{
    char err[256];
    krt_tok *t = krt_tok_open(data, size, err, sizeof err);
    if (!t) {
        if (ours) {
            fprintf(stderr, "krt_tok_open refuses what the compiler wrote: %s\n", err);
            abort();
        }
        return;
    }
    fuzz_tok_use(t);
    krt_tok_free(t);
}

/* Serializes a tokenizer the compiler read, and runs it through the runtime. */
static inline void fuzz_tok_spec(const tokenizer_spec *s)
{
    void *data = NULL;
    size_t size = 0;
    if (tokenizer_serialize(s, &data, &size) == 0)
        fuzz_tok_open_use(data, size, 1);
    free(data);
}

#endif
