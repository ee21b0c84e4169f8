/* tok_unicode.h - Unicode classes the pre-tokenizers need (runtime/tokenizer.c): letters
 * (\p{L}), numbers (\p{N}) from a generated range table (tok_unicode.c), and white space
 * (\s: the Unicode White_Space code points).
 */
#ifndef KILN_TOK_UNICODE_H
#define KILN_TOK_UNICODE_H

#include <stdint.h>

/* 'L' for a letter (categories Lu Ll Lt Lm Lo), 'N' for a number (Nd Nl No), else 0. */
int krt_unicode_class(uint32_t cp);

/* Whether cp is white space (\s): \t \n \v \f \r, space, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
static inline int krt_unicode_space(uint32_t cp)
{
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

#endif
