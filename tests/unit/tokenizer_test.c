/* tokenizer_test.c - TAP test of the tokenizers: the compiler's readers (weights/tokenizer*.c)
 * and the program's encoder and decoder (runtime/tokenizer.c).
 *
 * Usage: tokenizer_test TOK512.BIN STORIES260K.GGUF (examples/models/).
 *   - stories260K's vocabulary (score merges), read from tokenizer.bin and from the GGUF
 *     file: the ids llama2.c's run.c encodes for a dozen texts (computed once with a copy of
 *     run.c that printed them), byte fallback, UTF-8, white space; decoding gives the text
 *     back; BOS and EOS end a generation.
 *   - byte-level BPE from hand-made tokenizer.json files: the GPT-2 and LLaMA-3
 *     pre-tokenizers cut texts where the reference regular expressions cut them (the
 *     expected pieces were found with Python's `regex` module; each is a piece of the
 *     vocabulary and ignore_merges is on, so a text encodes to one id per expected piece
 *     exactly when it is cut right), merges by rank, decode(encode(x)) == x;
 *   - Hugging Face's SentencePiece BPE form: "▁", byte fallback, the leading space dropped;
 *   - a hand-built GGUF gpt2 vocabulary (tokenizer.ggml.pre llama-bpe), and an unknown
 *     pre-tokenizer refused;
 *   - hostile serialized bytes: every truncation, bad counts and ids, and thousands of random
 *     mutations: krt_tok_open returns NULL with a reason or a tokenizer that encodes and
 *     decodes without going out of bounds (run under ASan by the sanitized suite).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>

#include "../../runtime/tokenizer.h"
#include "../../weights/tokenizer.h"
#include "unit_files.h"

enum { PLANNED = 88 };

/* ---- helpers ---- */

static krt_tok *open_spec(const tokenizer_spec *t, void **data)
{
    size_t size;
    char err[256];
    if (tokenizer_serialize(t, data, &size) < 0)
        return NULL;
    krt_tok *k = krt_tok_open(*data, size, err, sizeof err);
    if (!k)
        printf("# krt_tok_open: %s\n", err);
    return k;
}

/* ids of text (BOS first when add_bos), at most 256; the count. */
static int encode(const krt_tok *t, const char *text, int add_bos, int32_t *ids)
{
    int64_t n = krt_tok_encode(t, text, strlen(text), add_bos, ids, 256);
    return n > 256 ? -1 : (int)n;
}

/* The text the ids decode to, each after the one before. */
static void decode_all(const krt_tok *t, const int32_t *ids, int n, char *out, size_t cap)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t len = krt_tok_decode(t, i ? ids[i - 1] : -1, ids[i], &p);
        if (at + len < cap)
            memcpy(out + at, p, len), at += len;
    }
    out[at] = 0;
}

/* ok() with the description's control characters shown as '.', so that a text with
 * newlines keeps its TAP line whole. */
static void check(int cond, const char *desc)
{
    char clean[256];
    size_t i = 0;
    for (; desc[i] && i + 1 < sizeof clean; i++)
        clean[i] = (unsigned char)desc[i] < 32 || desc[i] == '#' ? '.' : desc[i];
    clean[i] = 0;
    ok(cond, clean);
}

/* Whether decode(encode(x)) == x for each of the n texts (BOS added and dropped). */
static int round_trips(const krt_tok *t, const char *const *texts, int n)
{
    int same = t != NULL;
    for (int i = 0; t && i < n; i++) {
        int32_t ids[256];
        char back[512];
        int k = encode(t, texts[i], 1, ids);
        decode_all(t, ids, k, back, sizeof back);
        same &= !strcmp(back, texts[i]);
    }
    return same;
}

/* GPT-2's byte alphabet (bytes_to_unicode) for s, JSON-escaped unless raw, appended to out. */
static void put_alphabet(char *out, const unsigned char *s, size_t n, int raw)
{
    size_t at = strlen(out);
    for (size_t i = 0; i < n; i++) {
        unsigned b = s[i], cp = b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
            cp = 256;
            for (unsigned k = 0; k < b; k++)
                cp += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
        }
        if (!raw && (cp == '"' || cp == '\\'))
            out[at++] = '\\', out[at++] = (char)cp;
        else if (cp < 128)
            out[at++] = (char)cp;
        else
            out[at++] = (char)(0xC0 | cp >> 6), out[at++] = (char)(0x80 | (cp & 63));
    }
    out[at] = 0;
}

static void put_gpt2(char *out, const unsigned char *s, size_t n) { put_alphabet(out, s, n, 0); }

/* ---- stories260K (score merges) ---- */

static const struct { const char *text; int n; int32_t ids[20]; } runc[] = {
    {"Once upon a time", 5, {1, 403, 407, 261, 378}},
    {"Lily had a red", 6, {1, 317, 381, 261, 352, 266}},
    {"The dog", 4, {1, 291, 400, 428}},
    {"The caf\xc3\xa9  was big", 9, {1, 291, 280, 412, 431, 485, 410, 286, 370}},
    {"h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac", 16,           /* ✓ 日本: byte fallback */
     {1, 270, 485, 306, 414, 410, 229, 159, 150, 410, 233, 154, 168, 233, 159, 175}},
    {"", 1, {1}},
    {" a", 3, {1, 410, 261}},
    {"a\tb\nc", 6, {1, 261, 12, 430, 13, 429}},
    {"  two  spaces  ", 14, {1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 410, 410}},
    {"It's 2024!", 11, {1, 359, 413, 439, 419, 410, 479, 477, 479, 484, 443}},
    {"x", 3, {1, 410, 444}},
};
#define N_RUNC (int)(sizeof runc / sizeof runc[0])

static void test_score(const char *what, const tokenizer_spec *spec)
{
    void *data = NULL;
    krt_tok *t = open_spec(spec, &data);
    ok(t && krt_tok_vocab(t) == 512 && krt_tok_bos(t) == 1 && krt_tok_eos(t) == 2,
       t ? what : "the tokenizer opens");
    if (!t) {
        for (int i = 0; i < 2 * N_RUNC + 1; i++)
            ok(0, "skipped");
        free(data);
        return;
    }
    for (int c = 0; c < N_RUNC; c++) {
        int32_t ids[256];
        char desc[160], back[512];
        int n = encode(t, runc[c].text, 1, ids);
        snprintf(desc, sizeof desc, "%s: '%s' encodes to run.c's %d ids", what, runc[c].text, runc[c].n);
        check(n == runc[c].n && !memcmp(ids, runc[c].ids, (size_t)n * sizeof *ids), desc);
        decode_all(t, ids, n, back, sizeof back);
        snprintf(desc, sizeof desc, "%s: and decodes back to it", what);
        ok(!strcmp(back, runc[c].text), desc);
    }
    ok(krt_tok_is_eog(t, 1) && krt_tok_is_eog(t, 2) && !krt_tok_is_eog(t, 3) &&
       !krt_tok_is_eog(t, 600) && !krt_tok_is_eog(t, -1), "BOS and EOS end a generation");
    krt_tok_free(t);
    free(data);
}

/* ---- tokenizer.json files ---- */

static const char *gpt2_re = "'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}"
                             "\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+";
static const char *llama3_re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
                               "\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
                               "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* A byte-level tokenizer.json: the 256 bytes (id = byte), then `extra` pieces, `merges`
 * ("a b" of raw pieces), pre_tokenizer as given. Returns the path. */
static const char *write_bytelevel(const char *name, const char *pre, const char *const *extra,
                                   int n_extra, const char *const (*merges)[2], int n_merges,
                                   int ignore_merges)
{
    static char json[1 << 16];
    snprintf(json, sizeof json, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": %d, "
             "\"content\": \"<|endoftext|>\", \"special\": true}], \"normalizer\": null, "
             "\"pre_tokenizer\": %s, \"post_processor\": null, \"model\": {\"type\": \"BPE\", "
             "\"ignore_merges\": %s, \"vocab\": {", 256 + n_extra, pre,
             ignore_merges ? "true" : "false");
    for (int b = 0; b < 256 + n_extra; b++) {
        unsigned char c = (unsigned char)b;
        strcat(json, b ? ", \"" : "\"");
        if (b < 256)
            put_gpt2(json, &c, 1);
        else
            put_gpt2(json, (const unsigned char *)extra[b - 256], strlen(extra[b - 256]));
        snprintf(json + strlen(json), 32, "\": %d", b);
    }
    strcat(json, "}, \"merges\": [");
    for (int m = 0; m < n_merges; m++) {
        strcat(json, m ? ", \"" : "\"");
        put_gpt2(json, (const unsigned char *)merges[m][0], strlen(merges[m][0]));
        strcat(json, " ");
        put_gpt2(json, (const unsigned char *)merges[m][1], strlen(merges[m][1]));
        strcat(json, "\"");
    }
    strcat(json, "]}}\n");
    const char *path = tmp(name);
    spit(path, json, strlen(json));
    return path;
}

static const struct { int pre; const char *text; const char *pieces[16]; } splits[] = {
    {1, "I'm  can't 12345 a+b  \012 x",
     {"I", "'m", " ", " can", "'t", " 12345", " a", "+", "b", "  \012", " x", NULL}},
    {1, "h\303\251llo \342\234\223 \346\227\245\346\234\254  ",
     {"h\303\251llo", " \342\234\223", " \346\227\245\346\234\254", "  ", NULL}},
    {1, "\011Tabs\011and\012newlines\012\012",
     {"\011", "Tabs", "\011", "and", "\012", "newlines", "\012\012", NULL}},
    {1, "it's 'S 're??  ok", {"it", "'s", " '", "S", " '", "re", "??", " ", " ok", NULL}},
    {2, "I'M 1234567 ok!!\012\012  x",
     {"I", "'M", " ", "123", "456", "7", " ok", "!!\012\012", " ", " x", NULL}},
    {2, "h\303\251llo \342\234\223 \346\227\245\346\234\254  ",
     {"h\303\251llo", " \342\234\223", " \346\227\245\346\234\254", "  ", NULL}},
    {2, "\011Tabs\011and\012newlines\012\012",
     {"\011Tabs", "\011and", "\012", "newlines", "\012\012", NULL}},
    {2, " 42abc, 'Ve  \015\012\015\012 z",
     {" ", "42", "abc", ",", " '", "Ve", "  \015\012\015\012", " z", NULL}},
};
#define N_SPLITS (int)(sizeof splits / sizeof splits[0])

static void test_pretokenizers(void)
{
    for (int pre = 1; pre <= 2; pre++) {
        const char *extra[128];
        int n_extra = 0;
        for (int c = 0; c < N_SPLITS; c++)     /* every expected piece longer than a byte */
            for (int k = 0; splits[c].pre == pre && splits[c].pieces[k]; k++) {
                int seen = strlen(splits[c].pieces[k]) < 2;
                for (int e = 0; e < n_extra && !seen; e++)
                    seen = !strcmp(extra[e], splits[c].pieces[k]);
                if (!seen)
                    extra[n_extra++] = splits[c].pieces[k];
            }
        char pre_json[1024];
        snprintf(pre_json, sizeof pre_json, "{\"type\": \"Sequence\", \"pretokenizers\": "
                 "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": "
                 "\"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
                 "\"add_prefix_space\": false, \"use_regex\": false}]}",
                 pre == 1 ? gpt2_re : llama3_re);
        tokenizer_spec spec;
        const char *path = write_bytelevel(pre == 1 ? "gpt2.json" : "llama3.json", pre_json,
                                           extra, n_extra, NULL, 0, 1);
        int rc = tokenizer_from_hf_json(path, &spec);
        ok(rc == 0 && spec.pretok == (uint32_t)pre && spec.eos == 256 + n_extra,
           pre == 1 ? "tokenizer.json Split(GPT-2's regex) + ByteLevel, EOS <|endoftext|>"
                    : "tokenizer.json Split(LLaMA-3's regex) + ByteLevel");
        void *data = NULL;
        krt_tok *t = rc == 0 ? open_spec(&spec, &data) : NULL;
        for (int c = 0; c < N_SPLITS; c++) {
            if (splits[c].pre != pre)
                continue;
            int32_t ids[256], want[32], nw = 0;
            for (int k = 0; splits[c].pieces[k]; k++) {
                const char *p = splits[c].pieces[k];
                want[nw] = (unsigned char)p[0];
                for (int e = 0; e < n_extra; e++)
                    if (!strcmp(extra[e], p))
                        want[nw] = 256 + e;
                nw++;
            }
            int n = t ? encode(t, splits[c].text, 1, ids) : -1;
            char desc[200], back[512];
            snprintf(desc, sizeof desc, "%s pre-tokenizer cuts '%s' into the regex's %d pieces",
                     pre == 1 ? "GPT-2" : "LLaMA-3", splits[c].text, nw);
            check(n == nw && !memcmp(ids, want, (size_t)nw * sizeof *ids), desc);
            if (t)
                decode_all(t, ids, n, back, sizeof back);
            ok(t && !strcmp(back, splits[c].text), "and decodes back to it");
        }
        krt_tok_free(t);
        free(data);
        if (rc == 0)
            tokenizer_free(&spec);
    }
}

/* Merges by rank: b+c (rank 0) before a+b (rank 1), then a+bc (rank 2). */
static void test_ranks(void)
{
    const char *const merges[][2] = {{"b", "c"}, {"a", "b"}, {"a", "bc"}, {" ", "t"},
                                     {"h", "e"}, {" t", "he"}};
    const char *extra2[] = {"bc", "ab", "abc", " the", " t", "he"};
    const char *path = write_bytelevel("ranks.json", "{\"type\": \"ByteLevel\", \"use_regex\": true}",
                                       extra2, 6, merges, 6, 0);
    tokenizer_spec spec;
    int rc = tokenizer_from_hf_json(path, &spec);
    ok(rc == 0 && spec.n_merges == 6 && spec.bos == -1, "byte-level tokenizer.json with merges, no BOS");
    void *data = NULL;
    krt_tok *t = rc == 0 ? open_spec(&spec, &data) : NULL;
    int32_t ids[256];
    int n = t ? encode(t, "abc", 1, ids) : -1;
    ok(n == 1 && ids[0] == 258, "abc: b+c (rank 0) first, then a+bc: one token");
    n = t ? encode(t, "xabc ab the", 1, ids) : -1;
    ok(n == 5 && ids[0] == 'x' && ids[1] == 258 && ids[2] == ' ' && ids[3] == 257 && ids[4] == 259,
       "xabc ab the: x, abc, ' ', ab, ' the' (merges stay inside a pre-token)");
    /* round trips through bytes that are not UTF-8 */
    const char *texts[] = {"h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac", "\xff\xfe\x80 a\xc3",
                           "  a  b  \n\t", "", " the  abc\r\n"};
    ok(round_trips(t, texts, (int)(sizeof texts / sizeof texts[0])),
       "byte-level: decode(encode(x)) == x, invalid UTF-8 included");
    krt_tok_free(t);
    free(data);
    if (rc == 0) {
        /* the serialized form of this one is mutated below */
        tokenizer_free(&spec);
    }
}

/* Hugging Face's BPE form of SentencePiece: ▁, byte fallback, the leading space stripped. */
static void test_sentencepiece_bpe(void)
{
    char json[1 << 15] = "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
        " {\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\","
        " \"special\": true}], \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
        "{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, {\"type\": \"Replace\", "
        "\"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]}, \"pre_tokenizer\": null,"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
        "{\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]},"
        " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", "
        "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2";
    for (int b = 0; b < 256; b++)
        snprintf(json + strlen(json), 40, ", \"<0x%02X>\": %d", b, 3 + b);
    const char *pieces[] = {"\xe2\x96\x81", "h", "e", "l", "o", "\xe2\x96\x81h", "ll",
                            "\xe2\x96\x81he", "\xe2\x96\x81hell", "\xe2\x96\x81hello"};
    for (int i = 0; i < 10; i++)
        snprintf(json + strlen(json), 60, ", \"%s\": %d", pieces[i], 259 + i);
    strcat(json, "}, \"merges\": [\"\xe2\x96\x81 h\", \"l l\", [\"\xe2\x96\x81h\", \"e\"], "
                 "\"\xe2\x96\x81he ll\", \"\xe2\x96\x81hell o\"]}}");
    const char *path = tmp("sp.json");
    spit(path, json, strlen(json));
    tokenizer_spec spec;
    int rc = tokenizer_from_hf_json(path, &spec);
    ok(rc == 0 && spec.bos == 1 && spec.eos == 2 && spec.unk == 0 && spec.n_merges == 5,
       "SentencePiece-BPE tokenizer.json: BOS from the template, EOS </s>, merges as strings and pairs");
    void *data = NULL;
    krt_tok *t = rc == 0 ? open_spec(&spec, &data) : NULL;
    int32_t ids[256];
    char back[256];
    int n = t ? encode(t, "hello", 1, ids) : -1;
    ok(n == 2 && ids[0] == 1 && ids[1] == 268, "hello: BOS, \xe2\x96\x81hello");
    n = t ? encode(t, "hello \xe2\x9c\x93", 1, ids) : -1;
    ok(n == 6 && ids[2] == 259 && ids[3] == 3 + 0xE2 && ids[4] == 3 + 0x9C && ids[5] == 3 + 0x93,
       "a character not in the vocabulary: its bytes' <0xXX> tokens");
    if (t)
        decode_all(t, ids, n, back, sizeof back);
    ok(t && !strcmp(back, "hello \xe2\x9c\x93"), "decoded: the byte tokens' bytes, no leading space");
    n = t ? encode(t, "h\xc3\xa9llo", 0, ids) : -1;
    ok(n == 5 && ids[0] == 264 && ids[1] == 3 + 0xC3 && ids[2] == 3 + 0xA9 && ids[3] == 265 &&
       ids[4] == 263, "h\xc3\xa9llo without BOS: \xe2\x96\x81h, <0xC3>, <0xA9>, ll, o");
    const char *texts[] = {"  two", "hello  hello ", "\xe6\x97\xa5"};
    ok(round_trips(t, texts, 3), "SentencePiece BPE: decode(encode(x)) == x");
    krt_tok_free(t);
    free(data);
    if (rc == 0)
        tokenizer_free(&spec);
    /* forms kiln does not know */
    const char *bad[] = {
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
        "\"pattern\": {\"Regex\": \"\\\\w+\"}}, {\"type\": \"ByteLevel\"}]}, \"model\": {\"type\": "
        "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
        "{\"a\": 0}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
        "{\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
        "{\"a\": -3}, \"merges\": []}}",
        "{\"model\": ",
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spit(tmp("bad.json"), bad[i], strlen(bad[i]));
        refused += tokenizer_from_hf_json(tmp("bad.json"), &spec) == -1;
    }
    ok(refused == (int)(sizeof bad / sizeof bad[0]), "Unigram, an unknown regex, Whitespace, a "
       "merge whose result is no piece, a negative id, broken JSON: all refused");
}

/* ---- a GGUF gpt2 vocabulary, built by hand ---- */

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void put_str(FILE *f, const char *s, size_t n) { put_u64(f, n); fwrite(s, 1, n, f); }

static const char *write_gguf(const char *name, const char *pre)
{
    const char *path = tmp(name);
    FILE *f = fopen(path, "wb");
    char piece[8];
    put_u32(f, 0x46554747u);                 /* "GGUF" */
    put_u32(f, 3);
    put_u64(f, 0);                           /* tensors */
    put_u64(f, 6);                           /* keys */
    put_str(f, "general.architecture", 20), put_u32(f, 8), put_str(f, "llama", 5);
    put_str(f, "tokenizer.ggml.model", 20), put_u32(f, 8), put_str(f, "gpt2", 4);
    put_str(f, "tokenizer.ggml.pre", 18), put_u32(f, 8), put_str(f, pre, strlen(pre));
    put_str(f, "tokenizer.ggml.tokens", 21), put_u32(f, 9), put_u32(f, 8), put_u64(f, 259);
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        piece[0] = 0;
        put_alphabet(piece, &c, 1, 1);
        put_str(f, piece, strlen(piece));
    }
    put_str(f, "12", 2), put_str(f, "123", 3), put_str(f, "<|end_of_text|>", 15);
    put_str(f, "tokenizer.ggml.merges", 21), put_u32(f, 9), put_u32(f, 8), put_u64(f, 2);
    put_str(f, "1 2", 3), put_str(f, "12 3", 4);
    put_str(f, "tokenizer.ggml.eos_token_id", 27), put_u32(f, 4), put_u32(f, 258);
    fclose(f);
    return path;
}

static void test_gguf_bpe(void)
{
    ckpt *c = ckpt_open(write_gguf("llama3.gguf", "llama-bpe"));
    tokenizer_spec spec;
    int rc = c ? tokenizer_from_gguf(c, &spec) : -9;
    ok(rc == 1 && spec.pretok == KRT_TOK_PRE_LLAMA3 && spec.eos == 258 && spec.n_merges == 2,
       "GGUF gpt2 vocabulary, pre llama-bpe: LLaMA-3's pre-tokenizer, merges, EOS");
    void *data = NULL;
    krt_tok *t = rc == 1 ? open_spec(&spec, &data) : NULL;
    int32_t ids[256];
    int n = t ? encode(t, "1231231", 1, ids) : -1;
    ok(n == 3 && ids[0] == 257 && ids[1] == 257 && ids[2] == '1' && krt_tok_is_eog(t, 258),
       "1231231: digits in groups of three (123 123 1), no BOS; <|end_of_text|> ends a generation");
    krt_tok_free(t);
    free(data);
    if (rc == 1)
        tokenizer_free(&spec);
    if (c)
        ckpt_close(c);
    c = ckpt_open(write_gguf("weird.gguf", "weird-pre"));
    rc = c ? tokenizer_from_gguf(c, &spec) : -9;
    ok(rc == -1, "an unknown tokenizer.ggml.pre is refused (the message names it)");
    if (c)
        ckpt_close(c);
}

/* ---- hostile serialized bytes ---- */

static uint64_t rng_state = 42;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Encodes and decodes with whatever opened: every id in range, nothing out of bounds. */
static int exercise(const krt_tok *t)
{
    const char *texts[] = {"Once upon a time", "h\xc3\xa9llo \xe2\x9c\x93  x\n", "\xff\x80", ""};
    int good = 1;
    for (int i = 0; i < 4; i++) {
        int32_t ids[256];
        int n = encode(t, texts[i], 1, ids);
        for (int k = 0; k < n && k < 256; k++) {
            const char *p;
            good &= ids[k] >= 0 && ids[k] < krt_tok_vocab(t);
            size_t len = krt_tok_decode(t, k ? ids[k - 1] : -1, ids[k], &p);
            for (size_t j = 0; j < len; j++)
                good &= p[j] != 0 || 1;       /* reads every byte: ASan checks the bounds */
        }
    }
    const char *p;
    krt_tok_decode(t, -1, (int32_t)(rnd() % 100000) - 50000, &p);
    return good;
}

static void test_hostile(const tokenizer_spec *score)
{
    void *data;
    size_t size;
    char err[256];
    if (tokenizer_serialize(score, &data, &size) < 0) {
        for (int i = 0; i < 6; i++)
            ok(0, "serialize");
        return;
    }
    unsigned char *copy = malloc(size);
    int all_null = 1, all_said = 1;
    for (size_t cut = 0; cut < size; cut++) {
        memcpy(copy, data, cut);
        err[0] = 0;
        krt_tok *t = krt_tok_open(copy, cut, err, sizeof err);
        all_null &= t == NULL;
        all_said &= err[0] != 0;
        krt_tok_free(t);
    }
    ok(all_null && all_said, "every truncation is refused with a reason");
    struct { size_t at; uint32_t v; const char *says; } bad[] = {
        {20, 0x7fffffff, "tokens do not fit"}, {24, 512, "BOS id 512 out of range"},
        {28, 0xfffffff0u, "EOS id"}, {4, 2, "version 2"}, {8, 3, "unknown algorithm"},
        {48 + 16 * 300, 1u << 30, "outside the text"}, {48 + 16 * 300 + 12, 7, "unknown kind"},
    };
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(copy, data, size);
        memcpy(copy + bad[i].at, &bad[i].v, 4);
        err[0] = 0;
        krt_tok *t = krt_tok_open(copy, size, err, sizeof err);
        if (t || !strstr(err, bad[i].says)) {
            printf("# %s: got '%s'\n", bad[i].says, err);
            all = 0;
        }
        krt_tok_free(t);
    }
    ok(all, "counts too large, ids out of range, bad version, algorithm, offsets and kinds: refused, each with its reason");
    /* random mutations of a score tokenizer and of a byte-level one with merges */
    const char *extra[] = {"bc", "ab", "abc"};
    const char *const merges[][2] = {{"b", "c"}, {"a", "b"}, {"a", "bc"}};
    tokenizer_spec bl;
    void *bl_data = NULL;
    size_t bl_size = 0;
    const char *path = write_bytelevel("mut.json", "{\"type\": \"ByteLevel\"}", extra, 3, merges, 3, 0);
    int have_bl = tokenizer_from_hf_json(path, &bl) == 0 && tokenizer_serialize(&bl, &bl_data, &bl_size) == 0;
    ok(have_bl, "a byte-level tokenizer with merges to mutate");
    int opened = 0, refused = 0, sane = 1;
    for (int round = 0; round < 4000; round++) {
        int use_bl = have_bl && (round & 1);
        const unsigned char *src = use_bl ? bl_data : data;
        size_t n = use_bl ? bl_size : size;
        unsigned char *m = malloc(n);
        memcpy(m, src, n);
        int changes = 1 + (int)(rnd() % 4);
        for (int k = 0; k < changes; k++) {
            /* mostly the header and the tables, where a byte means most */
            size_t at = rnd() % 3 ? rnd() % (n < 48 + 16 * 300 ? n : 48 + 16 * 300) : rnd() % n;
            m[at] = rnd() % 2 ? (unsigned char)rnd() : m[at] ^ (unsigned char)(1u << (rnd() % 8));
        }
        size_t len = rnd() % 8 == 0 ? rnd() % n : n;
        err[0] = 0;
        krt_tok *t = krt_tok_open(m, len, err, sizeof err);
        if (t) {
            opened++;
            sane &= exercise(t);
        } else {
            refused++;
            sane &= err[0] != 0;
        }
        krt_tok_free(t);
        free(m);
    }
    printf("# mutations: %d opened, %d refused\n", opened, refused);
    ok(sane && refused > 0, "4000 random mutations: refused with a reason, or ids in range and "
       "no read out of bounds");
    ok(opened > 0, "some mutations stay valid and are exercised");
    free(copy);
    free(data);
    free(bl_data);
    if (have_bl)
        tokenizer_free(&bl);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tokenizer_test TOK512.BIN STORIES260K.GGUF\n");
        return 2;
    }
    if (!unit_files_begin("tokenizer", PLANNED))
        return 0;
    tokenizer_spec bin, gguf;
    int rc = tokenizer_from_llama2c(argv[1], 512, &bin);
    ok(rc == 0 && bin.n == 512 && bin.algorithm == KRT_TOK_SCORE, "tok512.bin read, 512 tokens");
    ckpt *c = ckpt_open(argv[2]);
    int rg = c ? tokenizer_from_gguf(c, &gguf) : -9;
    ok(rg == 1 && gguf.n == 512, "the GGUF file's vocabulary read, 512 tokens");
    if (rc == 0)
        test_score("tok512.bin", &bin);
    if (rg == 1)
        test_score("GGUF", &gguf);
    ok(tokenizer_from_llama2c(argv[1], 500, &gguf) == -1 || (tokenizer_free(&gguf), 0),
       "tokenizer.bin read with another vocabulary size: refused");
    test_pretokenizers();
    test_ranks();
    test_sentencepiece_bpe();
    test_gguf_bpe();
    if (rc == 0)
        test_hostile(&bin);
    if (rc == 0)
        tokenizer_free(&bin);
    if (rg == 1)
        tokenizer_free(&gguf);
    if (c)
        ckpt_close(c);
    return unit_files_end(PLANNED);
}
