/* tokenizer.h - text to token ids and back, inside a compiled program (and its C library).
 *
 * `kiln build` turns the checkpoint's tokenizer (llama2.c tokenizer.bin, the vocabulary
 * embedded in GGUF, or a Hugging Face tokenizer.json) into one serialized form and stores it
 * in the weight blob, so a program needs no other file. Two algorithms cover them:
 *   - score merges (SentencePiece as llama2.c's run.c and llama.cpp's SPM do it): a leading
 *     space, then code points merged pairwise by the best score of the merged piece; bytes
 *     with no piece of their own become byte tokens <0xXX>;
 *   - rank merges (byte-level BPE, GPT-2 and LLaMA-3 style, and Hugging Face's BPE form of
 *     SentencePiece with byte fallback): pieces split by the pre-tokenizer, then merged by
 *     the lowest merge rank.
 * The serialized form is untrusted input (it travels in the blob): krt_tok_open checks every
 * count, length and id. Its layout is documented in tokenizer.c.
 * A krt_tok is read-only once open: any number of threads may encode and decode at once.
 * Special tokens written in the text (`<s>`, `<|eot_id|>`) are not recognized as such: the
 * text is encoded as the characters it holds.
 */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct krt_tok krt_tok;

/* The serialized form's codes (its layout: tokenizer.c), shared with the compiler's writer
 * (weights/tokenizer.c). */
#define KRT_TOK_MAGIC "KTOK"          /* 4 bytes, no NUL */
#define KRT_TOK_VERSION 1u
enum krt_tok_algorithm { KRT_TOK_SCORE = 1, KRT_TOK_RANK = 2 };
enum krt_tok_flag {
    KRT_TOK_PREFIX_SPACE = 1,   /* a space before non-empty text (SentencePiece's dummy prefix) */
    KRT_TOK_STRIP_SPACE = 2,    /* decoding drops a leading space at the start and after BOS */
    KRT_TOK_BYTE_UNITS = 4,     /* rank merges start from single bytes (byte-level BPE); else
                                   from code points, unknown ones as <0xXX> byte tokens */
    KRT_TOK_WHOLE_WORDS = 8,    /* a pre-token that is a piece as it stands is that token
                                   (Hugging Face's ignore_merges) */
};
enum krt_tok_pretokenizer { KRT_TOK_PRE_NONE = 0, KRT_TOK_PRE_GPT2 = 1, KRT_TOK_PRE_LLAMA3 = 2 };
enum krt_tok_kind {
    KRT_TOK_NORMAL = 0,         /* its piece is text (raw bytes) */
    KRT_TOK_CONTROL = 1,        /* BOS, EOS, ...: decodes to nothing, never made from text */
    KRT_TOK_BYTE = 2,           /* piece "<0xXX>": decodes to that byte */
};
#define KRT_TOK_EOG 0x100u      /* or'ed into a kind: the token ends a generation */

/* Parses a serialized tokenizer (data stays owned by the caller and must outlive the
 * tokenizer). NULL on failure, with a one-line reason in err (errlen bytes, NUL-terminated). */
krt_tok *krt_tok_open(const void *data, size_t size, char *err, size_t errlen);
void krt_tok_free(krt_tok *t);

int32_t krt_tok_vocab(const krt_tok *t);
int32_t krt_tok_bos(const krt_tok *t);              /* -1: none */
int32_t krt_tok_eos(const krt_tok *t);              /* -1: none */
/* Whether id ends a generation (EOS, and end-of-turn tokens the tokenizer names). */
int krt_tok_is_eog(const krt_tok *t, int32_t id);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 goes byte by byte) into ids, BOS first
 * when add_bos and the tokenizer has one. Writes at most cap ids; returns how many the text
 * takes (more than cap: call again with room), or -1 when out of memory. */
int64_t krt_tok_encode(const krt_tok *t, const char *text, size_t len, int add_bos,
                       int32_t *ids, int64_t cap);

/* The bytes token id stands for when it follows token prev (-1: at the start): byte tokens
 * give their byte, control tokens (BOS, EOS) nothing, and the SentencePiece leading space
 * right after BOS is dropped, as llama2.c's run.c prints it. *bytes points into the
 * tokenizer; returns their count (0 for an id out of range). */
size_t krt_tok_decode(const krt_tok *t, int32_t prev, int32_t id, const char **bytes);

#endif
