/* tokenizer_hf.c - a Hugging Face tokenizer.json as a tokenizer_spec (tokenizer.h).
 *
 * model.type "BPE" only, in one of two forms:
 *   - byte-level: pre_tokenizer ByteLevel (its use_regex: GPT-2's expression), or
 *     Sequence[Split(Regex), ByteLevel] with the GPT-2 or the LLaMA-3 expression (any other
 *     is refused, quoted); pieces in GPT-2's byte alphabet;
 *   - SentencePiece's BPE form: no pre-tokenizer, the normalizer Prepend("▁") +
 *     Replace(" ", "▁") (or a Metaspace pre-tokenizer that does not split); "▁" is a space,
 *     byte_fallback's <0xXX> pieces are bytes, and decoding strips one leading space.
 * vocab (piece -> id), merges ("a b" strings or [a, b] pairs, best first), ignore_merges,
 * added_tokens (special ones are control tokens; their text is never split out of a
 * prompt). BOS is the special token the post-processor's template puts before the text;
 * EOS the first of </s>, <|end_of_text|>, <|endoftext|>, <|im_end|>, <|eot_id|> present,
 * and each of them ends a generation.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../runtime/tokenizer.h"
#include "tokenizer_internal.h"

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?" \
                     "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const end_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>",
                                        "<|eot_id|>", "<|eom_id|>", "<end_of_turn>"};

static const char *type_of(const json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "";
}

static int is_type(const json_t *o, const char *type) { return !strcmp(type_of(o), type); }

/* The regex of a Split pre-tokenizer: pattern {"Regex": "..."}. */
static const char *split_regex(const json_t *o)
{
    return json_string_value(json_object_get(json_object_get(o, "pattern"), "Regex"));
}

/* A normalizer that is SentencePiece's: Prepend("▁") then Replace(" ", "▁"). */
static int sentencepiece_normalizer(const json_t *n)
{
    const json_t *list = is_type(n, "Sequence") ? json_object_get(n, "normalizers") : NULL;
    if (json_array_size(list) != 2)
        return 0;
    const json_t *a = json_array_get(list, 0), *b = json_array_get(list, 1);
    const char *pre = json_string_value(json_object_get(a, "prepend"));
    const char *from = json_string_value(json_object_get(json_object_get(b, "pattern"), "String"));
    const char *to = json_string_value(json_object_get(b, "content"));
    return is_type(a, "Prepend") && pre && !strcmp(pre, "\xE2\x96\x81") && is_type(b, "Replace") &&
           from && !strcmp(from, " ") && to && !strcmp(to, "\xE2\x96\x81");
}

/* The form of the file: algorithm flags and pre-tokenizer into t, how pieces are spelled. */
static int read_form(const char *path, const json_t *root, tokenizer_spec *t, tok_unmap *how)
{
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *norm = json_object_get(root, "normalizer");
    t->algorithm = KRT_TOK_RANK;
    if (json_is_null(pre) || !pre) {
        if (!sentencepiece_normalizer(norm)) {
            diag_file_error(path, "no pre_tokenizer and a normalizer that is not SentencePiece's "
                            "Prepend(\"\xE2\x96\x81\") + Replace(\" \", \"\xE2\x96\x81\"): a form "
                            "kiln does not know");
            return -1;
        }
        goto sentencepiece;
    }
    if (is_type(pre, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(pre, "prepend_scheme"));
        if (json_is_true(json_object_get(pre, "split")) || (scheme && !strcmp(scheme, "never"))) {
            diag_file_error(path, "pre_tokenizer Metaspace that splits or never prepends: a "
                            "form kiln does not know");
            return -1;
        }
        goto sentencepiece;
    }
    const json_t *split = NULL, *bytelevel = pre;
    if (is_type(pre, "Sequence")) {
        const json_t *list = json_object_get(pre, "pretokenizers");
        split = json_array_get(list, 0), bytelevel = json_array_get(list, 1);
        if (json_array_size(list) != 2 || !is_type(split, "Split")) {
            diag_file_error(path, "pre_tokenizer: a Sequence other than [Split, ByteLevel]");
            return -1;
        }
    }
    if (!is_type(bytelevel, "ByteLevel")) {
        diag_file_error(path, "pre_tokenizer type \"%.40s\": kiln knows ByteLevel, "
                        "Sequence[Split, ByteLevel] and Metaspace", type_of(bytelevel));
        return -1;
    }
    const char *re = split ? split_regex(split) : NULL;
    if (split && (!re || (strcmp(re, GPT2_REGEX) && strcmp(re, LLAMA3_REGEX)))) {
        diag_file_error(path, "pre_tokenizer Split regex \"%.200s\": kiln knows GPT-2's and "
                        "LLaMA-3's", re ? re : "(none)");
        return -1;
    }
    if (json_is_true(json_object_get(bytelevel, "add_prefix_space"))) {
        diag_file_error(path, "pre_tokenizer ByteLevel with add_prefix_space: not supported");
        return -1;
    }
    int use_regex = !json_is_false(json_object_get(bytelevel, "use_regex"));
    t->pretok = re ? (!strcmp(re, GPT2_REGEX) ? KRT_TOK_PRE_GPT2 : KRT_TOK_PRE_LLAMA3)
              : use_regex ? KRT_TOK_PRE_GPT2 : KRT_TOK_PRE_NONE;
    t->flags = KRT_TOK_BYTE_UNITS;
    *how = UNMAP_BYTES;
    return 0;
sentencepiece:
    t->flags = KRT_TOK_PREFIX_SPACE | KRT_TOK_STRIP_SPACE;
    *how = UNMAP_SPACE;
    return 0;
}

/* The highest id of vocab and added_tokens, plus one: the vocabulary's size. */
static int32_t vocab_size(const json_t *vocab, const json_t *added)
{
    int64_t top = -1;
    const char *key;
    const json_t *v;
    size_t i;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= KILN_MAX_VOCAB)
            return -1;
        top = json_integer_value(v) > top ? json_integer_value(v) : top;
    }
    json_array_foreach(added, i, v) {
        const json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= KILN_MAX_VOCAB || !json_is_string(json_object_get(v, "content")))
            return -1;
        top = json_integer_value(id) > top ? json_integer_value(id) : top;
    }
    return (int32_t)(top + 1);
}

static int read_merges(const char *path, const json_t *merges, tokenizer_spec *t,
                       const str_index *x)
{
    size_t i;
    const json_t *m;
    uint32_t cap = 0;
    json_array_foreach(merges, i, m) {
        const char *a, *b, *s = json_string_value(m);
        size_t alen, blen;
        if (s && strchr(s, ' ')) {
            a = s, alen = (size_t)(strchr(s, ' ') - s), b = s + alen + 1, blen = strlen(b);
        } else if (json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)), alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), blen = json_string_length(json_array_get(m, 1));
        } else {
            diag_file_error(path, "model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]", i);
            return -1;
        }
        int rc = tokspec_merge(t, x, a, alen, b, blen, &cap);
        if (rc) {
            diag_file_error(path, rc == -1 ? "out of memory"
                            : rc == -3 ? "model.merges[%zu] (\"%.*s\" + \"%.*s\"): the merged "
                              "token is not the two tokens joined (an added token redefines one?)"
                            : "model.merges[%zu] (\"%.*s\" + \"%.*s\"): a piece or the merged "
                              "piece is not in the vocabulary", i, (int)(alen < 40 ? alen : 40), a,
                            (int)(blen < 40 ? blen : 40), b);
            return -1;
        }
    }
    return 0;
}

/* BOS: the special token the post-processor's template puts before the text ($A). */
static int32_t template_bos(const json_t *post, const str_index *x)
{
    if (is_type(post, "Sequence")) {
        size_t i;
        const json_t *p;
        json_array_foreach(json_object_get(post, "processors"), i, p) {
            int32_t id = template_bos(p, x);
            if (id >= 0)
                return id;
        }
        return -1;
    }
    if (!is_type(post, "TemplateProcessing"))
        return -1;
    const json_t *first = json_array_get(json_object_get(post, "single"), 0);
    const char *name = json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
    return name ? str_index_find(x, name, strlen(name)) : -1;
}

static int read_tokens(const char *path, const json_t *root, tokenizer_spec *t, tok_unmap how,
                       str_index *x)
{
    const json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    int32_t n = json_is_object(vocab) ? vocab_size(vocab, added) : -1;
    if (n <= 0) {
        diag_file_error(path, "model.vocab: %s", json_is_object(vocab) ? "empty, or an id that is "
                        "not an integer in 0.." KILN_STR(KILN_MAX_VOCAB) " (vocab or added_tokens)" : "missing");
        return -1;
    }
    uint32_t flags = t->flags, algorithm = t->algorithm, pretok = t->pretok;
    if (tokspec_alloc(t, n, how == UNMAP_BYTES ? "tokenizer.json byte-level BPE"
                                               : "tokenizer.json SentencePiece BPE") < 0 ||
        str_index_init(x, n) < 0) {
        diag_file_error(path, "out of memory");
        return -1;
    }
    t->flags = flags, t->algorithm = algorithm, t->pretok = pretok;
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);
        uint32_t kind = how == UNMAP_SPACE && byte_fallback && tokspec_is_byte_piece(key, len)
                        ? KRT_TOK_BYTE : KRT_TOK_NORMAL;
        int rc = tokspec_set(t, id, key, len, how, kind, 0);
        if (rc) {
            diag_file_error(path, rc == -1 ? "out of memory" : "model.vocab \"%.40s\": a "
                            "character outside GPT-2's byte alphabet", key);
            return -1;
        }
        str_index_add(x, key, len, id);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        const char *s = json_string_value(json_object_get(v, "content"));
        size_t len = json_string_length(json_object_get(v, "content"));
        uint32_t kind = json_is_true(json_object_get(v, "special")) ? KRT_TOK_CONTROL
                                                                     : KRT_TOK_NORMAL;
        if (tokspec_set(t, id, s, len, UNMAP_NONE, kind, 0) < 0) {
            diag_file_error(path, "out of memory");
            return -1;
        }
        str_index_add(x, s, len, id);
    }
    for (int32_t id = 0; id < n; id++)
        if (!t->tokens[id].piece)                  /* an id neither lists: never produced */
            t->tokens[id].kind = KRT_TOK_CONTROL;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk = unk ? str_index_find(x, unk, strlen(unk)) : -1;
    if (json_is_true(json_object_get(model, "ignore_merges")))
        t->flags |= KRT_TOK_WHOLE_WORDS;
    return 0;
}

int tokenizer_from_hf_json(const char *path, tokenizer_spec *out)
{
    json_error_t err;
    memset(out, 0, sizeof *out);
    if (!ckpt_json_size_ok(path))
        return -1;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        diag_file_error(path, "line %d, column %d: %s", err.line, err.column, err.text);
        return -1;
    }
    const json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    str_index x = {0};
    tok_unmap how = UNMAP_NONE;
    int rc = -1;
    if (!json_is_object(model) || (type && strcmp(type, "BPE")) ||
        (!type && !json_object_get(model, "merges"))) {
        diag_file_error(path, "model.type \"%.40s\": kiln reads BPE tokenizers",
                        type ? type : "(none)");
        goto out;
    }
    if (read_form(path, root, out, &how) < 0 || read_tokens(path, root, out, how, &x) < 0 ||
        read_merges(path, json_object_get(model, "merges"), out, &x) < 0 ||
        tokspec_check_bytes(path, out) < 0)
        goto out;
    out->bos = template_bos(json_object_get(root, "post_processor"), &x);
    for (size_t k = 0; k < sizeof end_names / sizeof end_names[0]; k++) {
        int32_t id = str_index_find(&x, end_names[k], strlen(end_names[k]));
        if (id >= 0 && out->eos < 0)
            out->eos = id;
        tokspec_mark_eog(out, id);
    }
    rc = 0;
out:
    str_index_free(&x);
    json_decref(root);
    if (rc)
        tokenizer_free(out);
    return rc;
}
