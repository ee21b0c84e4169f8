/* embed.c - a model inside a C program, through the library kiln builds.
 *
 *   kiln weights examples/llama.kiln --seed 1 -o llama.safetensors
 *   kiln build examples/llama.kiln --weights llama.safetensors --lib -o llama-lib
 *   cc -std=c11 examples/embed.c -Illama-lib llama-lib/libllama.a -lm -lpthread -o embed
 *   ./embed llama-lib/llama.kblob "Once upon a time"     (text: when the blob has a tokenizer)
 *   ./embed llama-lib/llama.kblob 1,5,9                  (token ids)
 *
 * Feeds the prompt, then prints 16 greedy tokens: as text when the model has a tokenizer,
 * else as ids. With --embed-blob at build time, pass "-" for the blob: llama_open(&m, NULL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define MAX_PROMPT 512

/* The prompt as token ids: the tokenizer's when there is one, else "ID,ID,...". */
static int64_t prompt_ids(const llama_model *m, const char *text, int32_t *ids, int *as_text)
{
    int64_t n = 0;
    *as_text = llama_encode(m, text, strlen(text), 1, ids, MAX_PROMPT, &n) == llama_OK;
    if (*as_text)
        return n <= MAX_PROMPT ? n : -1;
    for (char *end; *text && n < MAX_PROMPT; text = *end ? end + 1 : end) {
        long id = strtol(text, &end, 10);
        if (end == text || (*end && *end != ','))
            return -1;
        ids[n++] = (int32_t)id;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s BLOB|- PROMPT\n", argv[0]);
        return 2;
    }
    llama_model *m;
    if (llama_open(&m, strcmp(argv[1], "-") ? argv[1] : NULL) != llama_OK) {
        fprintf(stderr, "embed: %s\n", llama_last_error(m));
        llama_close(m);
        return 1;
    }
    llama_context *c;
    int32_t ids[MAX_PROMPT];
    int as_text;
    int64_t n = prompt_ids(m, argv[2], ids, &as_text);
    int rc = n > 0 ? llama_context_new(m, 1, &c) : llama_ERR_ARGUMENT;
    if (rc != llama_OK) {
        fprintf(stderr, "embed: %s\n", n > 0 ? llama_strerror(rc) : "a bad prompt");
        llama_close(m);
        return 1;
    }
    rc = llama_eval(c, ids, n, 0, NULL);          /* the prompt at positions 0 .. n-1 */
    int32_t prev = ids[n - 1], next;
    for (int i = 0; i < 16 && rc == llama_OK; i++, prev = next) {
        llama_sample(c, 0.0f, 1.0f, NULL, &next);  /* temperature 0: the most likely */
        const char *bytes;
        size_t len;
        if (as_text && llama_is_eog(m, next))
            break;
        if (as_text && llama_decode(m, prev, next, &bytes, &len) == llama_OK)
            fwrite(bytes, 1, len, stdout);
        else
            printf(i ? " %d" : "%d", (int)next);
        rc = llama_eval(c, &next, 1, llama_pos(c), NULL);   /* llama_ERR_RANGE: full */
    }
    printf("\n");
    if (rc != llama_OK && rc != llama_ERR_RANGE)
        fprintf(stderr, "embed: %s\n", llama_last_error(c));
    llama_context_free(c);
    llama_close(m);
    return rc == llama_OK || rc == llama_ERR_RANGE ? 0 : 1;
}
