/* tokenizer_internal.h - what the tokenizer readers (tokenizer.c, tokenizer_gguf.c,
 * tokenizer_hf.c) share; not for the rest of the compiler (that is tokenizer.h).
 */
#ifndef KILN_WEIGHTS_TOKENIZER_INTERNAL_H
#define KILN_WEIGHTS_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* How a file spells a piece: as its bytes, with SentencePiece's "▁" for a space, or in
 * GPT-2's byte alphabet (bytes_to_unicode). */
typedef enum tok_unmap { UNMAP_NONE, UNMAP_SPACE, UNMAP_BYTES } tok_unmap;

/* n tokens, all empty NORMAL pieces; bos, eos, unk -1. -1 when out of memory. */
int tokspec_alloc(tokenizer_spec *t, int32_t n, const char *what);
/* Token id's piece from the file's spelling s[0 .. len-1]. 0; -1 out of memory; -2 when a
 * character is outside GPT-2's byte alphabet (UNMAP_BYTES). */
int tokspec_set(tokenizer_spec *t, int32_t id, const char *s, size_t len, tok_unmap how,
                uint32_t kind, float score);
/* Appends a merge (left, right, result); *cap is the table's room. -1 when out of memory. */
int tokspec_add_merge(tokenizer_spec *t, int32_t a, int32_t b, int32_t c, uint32_t *cap);
void tokspec_mark_eog(tokenizer_spec *t, int32_t id);
int tokspec_is_byte_piece(const char *s, size_t len);
/* A byte-level vocabulary (KRT_TOK_BYTE_UNITS) must give each of the 256 bytes a token
 * that is not a control token, as the program's tokenizer requires (krt_tok_open refuses
 * it otherwise). 0, or -1 after reporting against path. */
int tokspec_check_bytes(const char *path, const tokenizer_spec *t);

/* Strings to ids (the file's spellings, which the index points to, not copies). */
typedef struct str_slot {
    const char *s;
    size_t len;
    int32_t id;
} str_slot;
typedef struct str_index {
    str_slot *slots;
    uint32_t mask;
} str_index;
int str_index_init(str_index *x, int32_t n);                        /* -1: out of memory */
void str_index_add(str_index *x, const char *s, size_t len, int32_t id);  /* first id wins */
int32_t str_index_find(const str_index *x, const char *s, size_t len);   /* -1: absent */
void str_index_free(str_index *x);
/* The merge of the pieces the file spells a and b (their join must be a piece too): 0; -1
 * out of memory; -2 when a, b or their join is not in the index; -3 when the join's token
 * is not the two tokens' bytes joined. */
int tokspec_merge(tokenizer_spec *t, const str_index *x, const char *a, size_t alen,
                  const char *b, size_t blen, uint32_t *cap);

#endif
