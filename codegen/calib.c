/* calib.c - calibration: how much a model-changing pass (share-softmax, expert pruning)
 * moves the logits.
 *
 * The unchanged and the changed module are each built into a temporary folder
 * under $TMPDIR (codegen_build_program), run teacher-forced on the calibration tokens
 * (`PROG --tokens ... --logits FILE --batch N`), and their logits compared row by row:
 * KL(reference || changed) of the rows' softmax, in nats, computed in double, and whether
 * the argmax agrees. The temporaries are removed on every path, an interruption included
 * (registered: base/outfile.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"

enum { CALIB_DEFAULT_TOKENS = 64 };

/* The default sequence: min(64, ctx) tokens, token i = (7 i^2 + 13 i + 1) mod vocab, so that
 * it covers the vocabulary unevenly and repeats (the attention sees repeated tokens). */
static int32_t *calib_default_tokens(int64_t vocab, int64_t ctx, int *n)
{
    int count = ctx < CALIB_DEFAULT_TOKENS ? (int)ctx : CALIB_DEFAULT_TOKENS;
    int32_t *t = malloc(sizeof *t * (size_t)(count ? count : 1));
    if (!t)
        DIE("out of memory");
    for (int i = 0; i < count; i++)
        t[i] = (int32_t)(((int64_t)7 * i * i + 13 * i + 1) % vocab);
    *n = count;
    return t;
}

static int calib_is_separator(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The location of text[at, at+len) in f, for a caret diagnostic. */
static src_loc calib_loc(const src_file *f, size_t at, size_t len)
{
    src_loc l = {f, 1, 1, (int)(len ? len : 1)};
    for (size_t i = 0; i < at; i++) {
        if (f->text[i] == '\n')
            l.line++, l.col = 1;
        else
            l.col++;
    }
    return l;
}

/* Parses the token ids of f; NULL after reporting (the file and the place). */
static int32_t *calib_parse_tokens(const src_file *f, int64_t vocab, int64_t ctx, int *n)
{
    int count = 0, cap = 64;
    int32_t *t = malloc(sizeof *t * (size_t)cap);
    if (!t)
        DIE("out of memory");
    for (size_t i = 0; i < f->len;) {
        if (calib_is_separator(f->text[i])) {
            i++;
            continue;
        }
        size_t len = 0;
        while (i + len < f->len && !calib_is_separator(f->text[i + len]))
            len++;
        src_loc at = calib_loc(f, i, len);
        char *end;
        errno = 0;
        long long v = strtoll(f->text + i, &end, 10);
        if (end != f->text + i + len || f->text[i] == '+' || errno) {
            diag_error(at, "'%.*s' is not a token id", (int)len, f->text + i);
            free(t);
            return NULL;
        }
        if (v < 0 || v >= vocab) {
            diag_error(at, "token %lld (calibration token %d) is outside the vocabulary "
                       "[0, %lld)", v, count + 1, (long long)vocab);
            free(t);
            return NULL;
        }
        if (count == ctx) {
            diag_error(at, "more than %lld calibration tokens: the model's context holds %lld",
                       (long long)ctx, (long long)ctx);
            free(t);
            return NULL;
        }
        if (count == cap) {
            cap *= 2;
            if (!(t = realloc(t, sizeof *t * (size_t)cap)))
                DIE("out of memory");
        }
        t[count++] = (int32_t)v;
        i += len;
    }
    if (!count) {
        diag_file_error(f->path, "no calibration tokens (token ids separated by commas or "
                        "white space)");
        free(t);
        return NULL;
    }
    *n = count;
    return t;
}

int32_t *calib_tokens(const char *path, int64_t vocab, int64_t ctx, int *n)
{
    if (!path)
        return calib_default_tokens(vocab, ctx, n);
    src_file f;
    if (!src_file_read(&f, path))
        return NULL;
    if (memchr(f.text, 0, f.len)) {
        diag_file_error(path, "not a text file of token ids (it holds a NUL byte)");
        free((char *)f.text);
        return NULL;
    }
    int32_t *t = calib_parse_tokens(&f, vocab, ctx, n);
    free((char *)f.text);
    return t;
}

/* ---------------------------------------------------------------- running a program */

/* The temporary folder of one comparison and the paths in it. */
typedef struct calib_dir {
    char dir[PATH_MAX];
    char prog[2][PATH_MAX + 32], logits[2][PATH_MAX + 32], log[2][PATH_MAX + 32];
    int slots[7];              /* registered temporaries (base/outfile.c) */
} calib_dir;

static const char *const calib_role[2] = {"reference", "changed"};

static void calib_dir_remove(const calib_dir *d)
{
    for (int k = 0; k < 2; k++) {
        unlink(d->prog[k]);
        unlink(d->logits[k]);
        unlink(d->log[k]);
    }
    rmdir(d->dir);
    for (int i = 0; i < 7; i++)
        tmp_forget(d->slots[i]);
}

/* Prints the first lines of a run's standard error (why it failed). */
static void calib_show_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    for (int k = 0; k < 8 && fgets(line, sizeof line, f); k++)
        fprintf(stderr, "  | %s%s", line, strchr(line, '\n') ? "" : "\n");
    fclose(f);
}

/* Runs d->prog[k] teacher-forced on the tokens; 0, or -1 after reporting. */
static int calib_run(const calib_dir *d, int k, const char *tokens, int batch, int verbose)
{
    char batch_text[24];
    snprintf(batch_text, sizeof batch_text, "%d", batch);
    char *argv[] = {(char *)d->prog[k], "--tokens", (char *)tokens, "--logits",
                    (char *)d->logits[k], "--batch", batch_text, NULL};
    if (verbose)
        fprintf(stderr, "kiln: calibration: %s --tokens (%zu bytes) --logits %s --batch %s\n",
                d->prog[k], strlen(tokens), d->logits[k], batch_text);
    fflush(NULL);
    pid_t pid = tmp_fork();    /* an interrupted kiln stops it first (base/outfile.c) */
    if (pid < 0) {
        fprintf(stderr, "kiln: error: calibration: cannot start a process: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(d->log[k], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    if (tmp_wait(pid, &status) < 0) {
        fprintf(stderr, "kiln: error: calibration: waiting for the %s program: %s\n",
                calib_role[k], strerror(errno));
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        fprintf(stderr, "kiln: error: calibration: the %s program exited with status %d:\n",
                calib_role[k], WEXITSTATUS(status));
    else
        fprintf(stderr, "kiln: error: calibration: the %s program died of signal %d:\n",
                calib_role[k], WTERMSIG(status));
    calib_show_log(d->log[k]);
    return -1;
}

/* Reads n rows of vocab logits from path into out (n * vocab doubles); 0, or -1. */
static int calib_read_logits(const char *path, int n, int64_t vocab, double *out)
{
    src_file f;
    if (!src_file_read(&f, path))
        return -1;
    const char *p = f.text;
    int rc = 0;
    for (int r = 0; r < n && rc == 0; r++)
        for (int64_t j = 0; j < vocab && rc == 0; j++) {
            char want = j + 1 < vocab ? ' ' : '\n', *end;
            out[r * vocab + j] = strtod(p, &end);
            if (end == p || *p == ' ' || *p == '\n' || *end != want) {
                diag_file_error(path, "row %d: logit %lld of %lld is missing or not a number",
                                r + 1, (long long)j + 1, (long long)vocab);
                rc = -1;
            }
            p = end + 1;
        }
    if (rc == 0 && *p) {
        diag_file_error(path, "more than %d rows", n);
        rc = -1;
    }
    free((char *)f.text);
    return rc;
}

/* ---------------------------------------------------------------- the comparison */

/* log softmax of x[0 .. n) into out, in double */
static void calib_log_softmax(const double *x, int64_t n, double *out)
{
    double mx = x[0];
    for (int64_t j = 1; j < n; j++)
        if (x[j] > mx)
            mx = x[j];
    double z = 0;
    for (int64_t j = 0; j < n; j++)
        z += exp(x[j] - mx);
    double lz = mx + log(z);
    for (int64_t j = 0; j < n; j++)
        out[j] = x[j] - lz;
}

static int64_t calib_argmax(const double *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] > x[best])
            best = j;
    return best;
}

static void calib_divergence(const double *ref, const double *chg, int n, int64_t vocab,
                             calib_result *out)
{
    double *lp = malloc(sizeof *lp * (size_t)vocab), *lq = malloc(sizeof *lq * (size_t)vocab);
    if (!lp || !lq)
        DIE("out of memory");
    double total = 0;
    *out = (calib_result){n, 0, 0, 0};
    for (int r = 0; r < n; r++) {
        const double *a = ref + r * vocab, *b = chg + r * vocab;
        calib_log_softmax(a, vocab, lp);
        calib_log_softmax(b, vocab, lq);
        double kl = 0;
        for (int64_t j = 0; j < vocab; j++)
            kl += exp(lp[j]) * (lp[j] - lq[j]);
        total += kl;
        if (kl > out->max_kl)
            out->max_kl = kl;
        out->agree += calib_argmax(a, vocab) == calib_argmax(b, vocab);
    }
    out->mean_kl = total / n;
    free(lp);
    free(lq);
}

/* "1,5,9": the tokens as the program's --tokens takes them (malloc'ed) */
static char *calib_token_list(const int32_t *tokens, int n)
{
    char *s = malloc((size_t)n * 12 + 1), *p = s;
    if (!s)
        DIE("out of memory");
    *p = 0;
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s%d", i ? "," : "", (int)tokens[i]);
    return s;
}

int calib_compare(const ir_module *ref, const pack_tensor *ref_w, const ir_module *changed,
                  const pack_tensor *changed_w, const int32_t *tokens, int n, int verbose,
                  calib_result *out)
{
    if (ref->vocab != changed->vocab) {
        fprintf(stderr, "kiln: error: calibration: the changed model has %lld logits per token, "
                "the reference %lld\n", (long long)changed->vocab, (long long)ref->vocab);
        return -1;
    }
    static calib_dir d;        /* large paths: not on the stack */
    if (snprintf(d.dir, sizeof d.dir, "%s/kiln-calib-XXXXXX", tmp_folder()) >= (int)sizeof d.dir ||
        !mkdtemp(d.dir)) {
        fprintf(stderr, "kiln: error: cannot make a temporary folder in %s: %s\n", tmp_folder(),
                strerror(errno));
        return -1;
    }
    static char base[sizeof d.dir];   /* a copy: gcc -Wrestrict cannot tell d.dir from them */
    memcpy(base, d.dir, sizeof base);
    d.slots[0] = tmp_register(d.dir, 1);
    for (int k = 0; k < 2; k++) {
        snprintf(d.prog[k], sizeof d.prog[k], "%s/%s", base, calib_role[k]);
        snprintf(d.logits[k], sizeof d.logits[k], "%s/%s.logits", base, calib_role[k]);
        snprintf(d.log[k], sizeof d.log[k], "%s/%s.log", base, calib_role[k]);
        d.slots[1 + 3 * k] = tmp_register(d.prog[k], 0);
        d.slots[2 + 3 * k] = tmp_register(d.logits[k], 0);
        d.slots[3 + 3 * k] = tmp_register(d.log[k], 0);
    }
    const ir_module *mod[2] = {ref, changed};
    const pack_tensor *w[2] = {ref_w, changed_w};
    int64_t vocab = ref->vocab;
    char *list = calib_token_list(tokens, n);
    double *logits[2] = {malloc(sizeof(double) * (size_t)(n * vocab)),
                         malloc(sizeof(double) * (size_t)(n * vocab))};
    if (!logits[0] || !logits[1])
        DIE("out of memory");
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        int batch = n < mod[k]->t_max ? n : (int)mod[k]->t_max;
        if (verbose)
            fprintf(stderr, "kiln: calibration: building the %s program\n", calib_role[k]);
        rc = codegen_build_program(mod[k], w[k], mod[k]->ntensors, d.prog[k], NULL, verbose);
        if (rc == 0)
            rc = calib_run(&d, k, list, batch, verbose);
        if (rc == 0)
            rc = calib_read_logits(d.logits[k], n, vocab, logits[k]);
    }
    if (rc == 0)
        calib_divergence(logits[0], logits[1], n, vocab, out);
    calib_dir_remove(&d);
    free(list);
    free(logits[0]);
    free(logits[1]);
    return rc;
}
