/* library_test.c - two models' C libraries linked into one program, run by tests/library.t:
 * examples/llama.kiln's (its own name, llama) and examples/llama2c.kiln's built with
 * --name beta.
 *
 *   library_test run A_BLOB B_BLOB A_TOKENS B_TOKENS N_GEN A_OUT B_OUT
 *       opens llama from A_BLOB and beta from B_BLOB ("-": the blob embedded in the
 *       library), then runs at once on their own threads: two contexts of llama (one of one
 *       thread, one with a pool of 2) and one of beta, each feeding its comma-separated
 *       tokens in two evals (the first half, then the rest at the position after it) with
 *       every row's logits, then N_GEN greedy steps. The two llama contexts must agree bit
 *       for bit; each model's rows go to its OUT file as PROG --logits writes them (%.9g),
 *       and the generated ids to standard output as "llama: ID ..." and "beta: ID ...".
 *   library_test errors A_BLOB B_BLOB
 *       the failures a caller can cause, one line each: "CASE rc=CODE MESSAGE".
 * Exit 0 when every call returned what it should; 1 with a message otherwise.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "beta.h"

#define MAX_TOKENS 256

static int parse_tokens(const char *s, int32_t *ids)
{
    int n = 0;
    for (char *end; *s && n < MAX_TOKENS; s = *end ? end + 1 : end)
        ids[n++] = (int32_t)strtol(s, &end, 10);
    return n;
}

static void die(const char *what, int rc, const char *msg)
{
    fprintf(stderr, "library_test: %s: rc %d: %s\n", what, rc, msg);
    exit(1);
}

/* One conversation: the prompt's logits and the greedy continuation. */
typedef struct job {
    llama_model *a;            /* one of the two is set */
    beta_model *b;
    int threads, n, n_gen;
    int32_t tokens[MAX_TOKENS], gen[MAX_TOKENS];
    float *logits;             /* n * vocab */
    int64_t vocab;
} job;

/* The same steps through either model's functions. */
#define RUN_CONVERSATION(P, model, j)                                                      \
    do {                                                                                   \
        P##_context *c;                                                                    \
        int rc = P##_context_new(model, (j)->threads, &c);                                 \
        if (rc != P##_OK)                                                                  \
            die(#P "_context_new", rc, P##_strerror(rc));                                  \
        int half = (j)->n / 2;                                                             \
        if (half > 0 && (rc = P##_eval(c, (j)->tokens, half, 0, (j)->logits)) != P##_OK)   \
            die(#P "_eval", rc, P##_last_error(c));                                        \
        if ((rc = P##_eval(c, (j)->tokens + half, (j)->n - half, P##_pos(c),               \
                           (j)->logits + half * (j)->vocab)) != P##_OK)                    \
            die(#P "_eval", rc, P##_last_error(c));                                        \
        for (int g = 0; g < (j)->n_gen; g++) {                                             \
            if ((rc = P##_sample(c, 0.0f, 1.0f, NULL, &(j)->gen[g])) != P##_OK)            \
                die(#P "_sample", rc, P##_last_error(c));                                  \
            if (g + 1 < (j)->n_gen &&                                                      \
                (rc = P##_eval(c, &(j)->gen[g], 1, P##_pos(c), NULL)) != P##_OK)           \
                die(#P "_eval", rc, P##_last_error(c));                                    \
        }                                                                                  \
        P##_context_free(c);                                                               \
    } while (0)

static void *run_job(void *arg)
{
    job *j = arg;
    if (j->a)
        RUN_CONVERSATION(llama, j->a, j);
    else
        RUN_CONVERSATION(beta, j->b, j);
    return NULL;
}

static void write_rows(const char *path, const float *x, int n, int64_t vocab)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("fopen", 0, path);
    for (int t = 0; t < n; t++) {
        for (int64_t i = 0; i < vocab; i++)
            fprintf(f, i ? " %.9g" : "%.9g", (double)x[t * vocab + i]);
        fputc('\n', f);
    }
    if (ferror(f) || fclose(f) != 0)
        die("write", 0, path);
}

static void print_ids(const char *who, const job *j)
{
    printf("%s:", who);
    for (int g = 0; g < j->n_gen; g++)
        printf(" %d", (int)j->gen[g]);
    printf("\n");
}

static const char *blob_arg(const char *s) { return strcmp(s, "-") ? s : NULL; }

static int run(char **argv)
{
    llama_model *a;
    beta_model *b;
    int rc;
    if ((rc = llama_open(&a, blob_arg(argv[0]))) != llama_OK)
        die("llama_open", rc, llama_last_error(a));
    if ((rc = beta_open(&b, blob_arg(argv[1]))) != beta_OK)
        die("beta_open", rc, beta_last_error(b));
    static job jobs[3];
    for (int k = 0; k < 3; k++) {
        job *j = &jobs[k];
        j->a = k < 2 ? a : NULL;
        j->b = k < 2 ? NULL : b;
        j->threads = k == 1 ? 2 : 1;
        j->n = parse_tokens(argv[k < 2 ? 2 : 3], j->tokens);
        j->n_gen = atoi(argv[4]);
        j->vocab = k < 2 ? llama_vocab(a) : beta_vocab(b);
        if (!(j->logits = calloc((size_t)(j->n * j->vocab), sizeof *j->logits)))
            die("calloc", 0, "out of memory");
    }
    pthread_t th[3];
    for (int k = 0; k < 3; k++)
        if (pthread_create(&th[k], NULL, run_job, &jobs[k]) != 0)
            die("pthread_create", 0, "failed");
    for (int k = 0; k < 3; k++)
        pthread_join(th[k], NULL);
    if (memcmp(jobs[0].logits, jobs[1].logits, (size_t)(jobs[0].n * jobs[0].vocab) * sizeof(float)) ||
        memcmp(jobs[0].gen, jobs[1].gen, sizeof jobs[0].gen))
        die("llama", 0, "two contexts (1 and 2 threads) disagree");
    write_rows(argv[5], jobs[0].logits, jobs[0].n, jobs[0].vocab);
    write_rows(argv[6], jobs[2].logits, jobs[2].n, jobs[2].vocab);
    print_ids("llama", &jobs[0]);
    print_ids("beta", &jobs[2]);
    for (int k = 0; k < 3; k++)
        free(jobs[k].logits);
    llama_close(a);
    beta_close(b);
    return 0;
}

static int errors(char **argv)
{
    llama_model *a, *wrong;
    int rc = llama_open(&wrong, blob_arg(argv[1]));   /* beta's blob */
    printf("wrong-blob rc=%d %s\n", rc, llama_last_error(wrong));
    llama_close(wrong);
    rc = llama_open(&wrong, "/nonexistent/llama.kblob");
    printf("missing-blob rc=%d %s\n", rc, llama_last_error(wrong));
    llama_close(wrong);
    if ((rc = llama_open(&a, blob_arg(argv[0]))) != llama_OK)
        die("llama_open", rc, llama_last_error(a));
    llama_context *c;
    if ((rc = llama_context_new(a, 1, &c)) != llama_OK)
        die("llama_context_new", rc, llama_strerror(rc));
    int32_t t = 1, tokens[2] = {1, 2};
    rc = llama_sample(c, 0.0f, 1.0f, NULL, &t);
    printf("sample-first rc=%d %s\n", rc, llama_last_error(c));
    rc = llama_eval(c, tokens, 2, 5, NULL);
    printf("gap rc=%d %s\n", rc, llama_last_error(c));
    int32_t bad = (int32_t)llama_vocab(a);
    rc = llama_eval(c, &bad, 1, 0, NULL);
    printf("bad-token rc=%d %s\n", rc, llama_last_error(c));
    /* fill the context, then one more */
    int64_t n = llama_n_ctx(a);
    int32_t *fill = calloc((size_t)n + 1, sizeof *fill);
    rc = llama_eval(c, fill, n + 1, 0, NULL);
    printf("beyond-ctx rc=%d %s\n", rc, llama_last_error(c));
    if (!fill || (rc = llama_eval(c, fill, n, 0, NULL)) != llama_OK)
        die("llama_eval (the whole context)", rc, llama_last_error(c));
    rc = llama_eval(c, tokens, 1, llama_pos(c), NULL);
    printf("context-full rc=%d %s\n", rc, llama_last_error(c));
    llama_reset(c);
    rc = llama_eval(c, tokens, 2, 0, NULL);
    printf("after-reset rc=%d pos=%lld\n", rc, (long long)llama_pos(c));
    int64_t n_ids;
    rc = llama_encode(a, "hello", 5, 1, NULL, 0, &n_ids);
    printf("encode rc=%d %s\n", rc, llama_strerror(rc));
    rc = llama_set_param(c, "no_such_param", 1.0f);
    printf("set-param rc=%d %s\n", rc, llama_last_error(c));
    free(fill);
    llama_context_free(c);
    llama_close(a);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 9 && !strcmp(argv[1], "run"))
        return run(argv + 2);
    if (argc == 4 && !strcmp(argv[1], "errors"))
        return errors(argv + 2);
    fprintf(stderr, "usage: library_test run A_BLOB B_BLOB A_TOKENS B_TOKENS N_GEN A_OUT B_OUT\n"
                    "       library_test errors A_BLOB B_BLOB\n");
    return 2;
}
