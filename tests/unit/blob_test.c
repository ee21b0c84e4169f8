/* blob_test.c - TAP test of codegen/pack.c and the runtime driver, end to end.
 *
 * Usage: blob_test FAKE_PROG, where FAKE_PROG is tests/unit/fake_model.c linked with
 * libkilnrt.a (no blob). The test packs random weights onto copies of it, runs them and
 * checks logits, generated tokens, --set, --stats, --blob and usage errors against a
 * reference computed here in double precision; then it corrupts the blob and the trailer in
 * many ways and expects a clean `error: weight blob` exit 1, never a signal. The fake model
 * also declares one tensor of each other storage type (q8_0, q4_0, f16, bf16), so the size
 * rule of every dtype is checked by both the packer (test_pack_sizes) and the reader
 * (test_reader_sizes). All files live in a mkdtemp directory that is removed at the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../runtime/kiln_blob.h"
#include "../../codegen/pack.h"

enum { V = 11, D = 6, CTX = 8, LD = D + 2 }; /* as in fake_model.c */
enum { N_GOOD = 6 };                         /* fake_model.c's tensors */
/* the unread tensors' byte sizes: q8_0 [2, 64], q4_0 [3, 32], f16 [4, 5], bf16 [7] */
enum { Q8_BYTES = 2 * 2 * 34, Q4_BYTES = 3 * 18, F16_BYTES = 4 * 5 * 2, BF16_BYTES = 7 * 2 };

static int n_test, n_fail;
static char dir[256];
static float emb[V * D], outw[V * LD];
static unsigned char q8[Q8_BYTES], q4[Q4_BYTES], h16[F16_BYTES], b16[BF16_BYTES];

static int ok(int cond, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '#')
            *p = ' '; /* keep TAP lines whole */
    n_test++;
    n_fail += !cond;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_test, msg);
    return cond;
}

/* ---- files ---- */

static char *path_in(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    *len = got;
    return buf;
}

static void spew(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(99);
    }
    chmod(path, 0755);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(path_in(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
}

/* ---- running a program ---- */

typedef struct result {
    int code;   /* exit status, or -1 when killed by a signal */
    int sig;
    char *out, *err;
} result;

static result run(const char *exe, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    while (*args && n < 31)
        argv[n++] = *args++;
    argv[n] = NULL;
    result r = {0, 0, NULL, NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(path_in("stdout.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(path_in("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(e, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        r.code = -1, r.sig = WTERMSIG(st);
    else
        r.code = WEXITSTATUS(st);
    size_t len;
    r.out = slurp(path_in("stdout.txt"), &len);
    r.err = slurp(path_in("stderr.txt"), &len);
    return r;
}

static void drop(result *r) { free(r->out), free(r->err); }

/* ---- the reference model, in double ---- */

static void ref_run(const int *toks, int n_prompt, int n_gen, double scale, double logits[][V],
                    int *gen, double *attn_max_mean)
{
    double cache[CTX][D], sum_max = 0;
    int pos = 0, tok = toks[0], n_gen_done = 0;
    for (;;) {
        double x[D], h[D], s[CTX], mx = -1e300, z = 0, pmax = 0;
        for (int i = 0; i < D; i++)
            x[i] = cache[pos][i] = emb[tok * D + i];
        for (int t = 0; t <= pos; t++) {
            s[t] = 0;
            for (int i = 0; i < D; i++)
                s[t] += x[i] * cache[t][i];
            s[t] /= sqrt((double)D);
            mx = fmax(mx, s[t]);
        }
        for (int t = 0; t <= pos; t++)
            z += exp(s[t] - mx);
        for (int i = 0; i < D; i++)
            h[i] = x[i];
        for (int t = 0; t <= pos; t++) {
            double p = exp(s[t] - mx) / z;
            pmax = fmax(pmax, p);
            for (int i = 0; i < D; i++)
                h[i] += p * cache[t][i];
        }
        sum_max += pmax;
        double *lg = logits[pos];
        int best = 0;
        for (int v = 0; v < V; v++) {
            lg[v] = 0;
            for (int i = 0; i < D; i++)
                lg[v] += outw[v * LD + i] * h[i];
            lg[v] *= scale;
            if (lg[v] > lg[best])
                best = v;
        }
        pos++;
        if (pos < n_prompt) {
            tok = toks[pos];
            continue;
        }
        if (n_gen_done == n_gen)
            break;
        gen[n_gen_done++] = best;
        if (n_gen_done == n_gen || pos >= CTX)
            break;
        tok = best;
    }
    *attn_max_mean = sum_max / pos;
}

/* max |a - b| / max |b| over rows of logits read from text */
static double logits_err(const char *text, double ref[][V], int rows, int *rows_read)
{
    double md = 0, mr = 1e-30;
    const char *p = text;
    *rows_read = 0;
    for (int r = 0; r < rows && *p; r++) {
        for (int v = 0; v < V; v++) {
            char *end;
            double x = strtod(p, &end);
            if (end == p)
                return INFINITY;
            p = end;
            md = fmax(md, fabs(x - ref[r][v]));
            mr = fmax(mr, fabs(ref[r][v]));
        }
        if (*p != '\n')
            return INFINITY;
        p++;
        ++*rows_read;
    }
    return *p ? INFINITY : md / mr;
}

/* ---- the tests ---- */

static const pack_tensor good_tensors[N_GOOD] = {
    {"tok_embeddings", KBLOB_F32, 2, {V, D, 0, 0}, emb, sizeof emb, KBLOB_ROWS},
    {"output", KBLOB_F32, 2, {V, LD, 0, 0}, outw, sizeof outw, KBLOB_ROWS},
    {"w_q8", KBLOB_Q8_0, 2, {2, 64, 0, 0}, q8, sizeof q8, KBLOB_ROWS},
    {"w_q4", KBLOB_Q4_0, 2, {3, 32, 0, 0}, q4, sizeof q4, KBLOB_ROWS},
    {"w_f16", KBLOB_F16, 2, {4, 5, 0, 0}, h16, sizeof h16, KBLOB_ROWS},
    {"w_bf16", KBLOB_BF16, 1, {7, 0, 0, 0}, b16, sizeof b16, KBLOB_ROWS},
};

static void test_runs(const char *prog, const char *plain)
{
    static const int toks[] = {1, 2, 3, 4, 5, 6, 7};
    double ref[CTX + 1][V], mean;
    int gen[16];
    char *F = path_in("logits.txt"), msg[256];

    result r = run(prog, (const char *[]){"--tokens", "1,2,3", "--logits", F, NULL});
    size_t len;
    char *text = slurp(F, &len);
    int rows;
    ref_run(toks, 3, 0, 1.0, ref, gen, &mean);
    double err = text ? logits_err(text, ref, 3, &rows) : INFINITY;
    ok(r.code == 0 && err < 1e-5 && rows == 3, "--logits: 3 rows, max rel err %.3g", err);
    ok(access(path_in("logits.txt.tmp"), F_OK) != 0, "--logits leaves no .tmp file");
    free(text), drop(&r);

    r = run(prog, (const char *[]){"--tokens", "1,2,3", "-n", "4", NULL});
    ref_run(toks, 3, 4, 1.0, ref, gen, &mean);
    snprintf(msg, sizeof msg, "%d %d %d %d\n", gen[0], gen[1], gen[2], gen[3]);
    ok(r.code == 0 && strcmp(r.out, msg) == 0, "-n 4 greedy: got '%.40s', want '%.40s'", r.out, msg);
    drop(&r);

    r = run(prog, (const char *[]){"--tokens", "3,1", "--set", "logit_scale=2.5", "--logits", "-", NULL});
    ref_run((const int[]){3, 1}, 2, 0, 2.5, ref, gen, &mean);
    err = logits_err(r.out, ref, 2, &rows);
    ok(r.code == 0 && err < 1e-5 && rows == 2, "--set logit_scale=2.5 --logits -: max rel err %.3g", err);
    drop(&r);

    r = run(prog, (const char *[]){"--tokens", "1,2,3", "-n", "2", "--stats", NULL});
    ref_run(toks, 3, 2, 1.0, ref, gen, &mean);
    snprintf(msg, sizeof msg, "stat attn_max[0] %.6f (4 samples)", mean);
    ok(r.code == 0 && strstr(r.err, msg), "--stats: '%s'", msg);
    ok(strstr(r.err, "kv-cache kv l=0: width 6, capacity 8, 192 bytes") && strstr(r.err, "frame: "),
       "--stats: cache and frame report");
    drop(&r);

    r = run(prog, (const char *[]){"--tokens", "1,2,3,4,5,6,7", "-n", "5", NULL});
    ref_run(toks, 7, 5, 1.0, ref, gen, &mean);
    snprintf(msg, sizeof msg, "%d %d\n", gen[0], gen[1]);
    ok(r.code == 0 && strcmp(r.out, msg) == 0 && strstr(r.err, "note:"),
       "context full: stops after 2 tokens with a note (got '%.40s')", r.out);
    drop(&r);

    const char *samp[] = {"--tokens", "4", "-n", "7", "--temp", "0.9", "--top-p", "0.8", "--seed", "42", NULL};
    result a = run(prog, samp), b = run(prog, samp);
    int in_range = a.code == 0;
    for (char *p = a.out, *end; a.out && *p && *p != '\n'; p = end) {
        long t = strtol(p, &end, 10);
        in_range &= end != p && t >= 0 && t < V;
        if (end == p)
            break;
    }
    ok(in_range && b.code == 0 && strcmp(a.out, b.out) == 0, "sampling is deterministic per seed: '%.40s'", a.out);
    drop(&a), drop(&b);

    spew(path_in("weights.blob"), "", 0);
    ok(pack_write_blob(path_in("weights.blob"), good_tensors, N_GOOD) == 0, "pack_write_blob");
    r = run(plain, (const char *[]){"--tokens", "1,2,3", "-n", "4", "--blob", path_in("weights.blob"), NULL});
    ref_run(toks, 3, 4, 1.0, ref, gen, &mean);
    snprintf(msg, sizeof msg, "%d %d %d %d\n", gen[0], gen[1], gen[2], gen[3]);
    ok(r.code == 0 && strcmp(r.out, msg) == 0, "--blob FILE on a program without a blob");
    drop(&r);

    r = run(plain, (const char *[]){"--tokens", "1", NULL});
    ok(r.code == 1 && strstr(r.err, "no weight blob"), "no blob: '%.100s'", r.err);
    drop(&r);

    r = run(prog, (const char *[]){"--help", NULL});
    ok(r.code == 0 && strstr(r.out, "'fake'") && strstr(r.out, "vocabulary 11") &&
       strstr(r.out, "logit_scale") && strstr(r.out, "attn_max[0]") && strstr(r.out, "the same for every N"),
       "--help names the model, its parameters and statistics");
    drop(&r);
}

static void test_usage_errors(const char *prog)
{
    static const char *const cases[][6] = {
        {"--tokens", "11"}, {"--tokens", ""}, {"--tokens", "1,,2"}, {"--tokens", "1x"},
        {"--tokens", "-1"}, {"--tokens", "+1"}, {"--tokens", "1,2,3,4,5,6,7,8,9"}, {"-n", "3"},
        {"--tokens", "1", "-n", "-1"}, {"--tokens", "1", "-n", "abc"}, {"--tokens", "1", "--temp", "nan"},
        {"--tokens", "1", "--top-p", "0"}, {"--tokens", "1", "--top-p", "1.5"},
        {"--tokens", "1", "--seed", "-3"}, {"--tokens", "1", "--set", "bogus=1"},
        {"--tokens", "1", "--set", "logit_scale=abc"}, {"--tokens", "1", "--set", "logit_scale"},
        {"--tokens", "1", "--threads", "0"}, {"--tokens", "1", "--frob"}, {"--tokens", "1", "--logits"},
        {"--tokens", "1", "--stats=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r = run(prog, cases[i]);
        char line[160] = "";
        for (int k = 0; cases[i][k]; k++)
            snprintf(line + strlen(line), sizeof line - strlen(line), " %s", cases[i][k]);
        int good = r.code == 2 && strstr(r.err, "error:") && strstr(r.err, "--help'") && !*r.out;
        if (strstr(line, "bogus"))
            good &= strstr(r.err, "logit_scale") != NULL;
        ok(good, "usage error exits 2:%s -> %.*s", line, (int)strcspn(r.err, "\n"), r.err);
        drop(&r);
    }
}

/* A corrupted copy of the good program: apply `patch` at `at` (n bytes), keep `len` bytes. */
static void expect_blob_error(const char *what, const char *exe, const char *want)
{
    result r = run(exe, (const char *[]){"--tokens", "1", NULL});
    int good = r.code == 1 && strstr(r.err, "error: weight blob") && !*r.out && (!want || strstr(r.err, want));
    ok(good, "%s: exit %d%s: %.*s", what, r.code, r.sig ? " (signal)" : "", (int)strcspn(r.err, "\n"), r.err);
    drop(&r);
}

static void corrupt(const char *what, const char *good, size_t len, size_t at, const void *bytes,
                    size_t n, const char *want)
{
    char *buf = malloc(len);
    memcpy(buf, good, len);
    if (bytes)
        memcpy(buf + at, bytes, n);
    spew(path_in("bad"), buf, len);
    free(buf);
    expect_blob_error(what, path_in("bad"), want);
}

static void test_corruption(const char *plain, const char *prog)
{
    size_t len, plen;
    char *good = slurp(prog, &len), *pl = slurp(plain, &plen);
    kblob_trailer tr;
    memcpy(&tr, good + len - sizeof tr, sizeof tr);
    size_t bo = (size_t)tr.blob_offset, trail = len - sizeof tr;
    kblob_header h;
    memcpy(&h, good + bo, sizeof h);
    kblob_entry e[2];
    memcpy(e, good + bo + h.table_offset, sizeof e);
    size_t ent1 = bo + h.table_offset + sizeof(kblob_entry);
    ok(bo % 4096 == 0 && bo >= plen && h.total_size == tr.blob_size && e[0].offset % KBLOB_ALIGN == 0 &&
       e[1].offset % KBLOB_ALIGN == 0 && memcmp(good + bo + e[1].offset, outw, sizeof outw) == 0,
       "appended blob: page-aligned at %zu, tensors 64-aligned, data intact", bo);

    uint64_t u;
    uint32_t u32;
    corrupt("trailer magic", good, len, trail + 16, "KILNTAIX", 8, "no weight blob");
    u = (uint64_t)len;
    corrupt("trailer offset past EOF", good, len, trail, &u, 8, "trailer");
    u = bo + 64;
    corrupt("trailer offset not page-aligned", good, len, trail, &u, 8, "trailer");
    u = UINT64_MAX;
    corrupt("trailer size huge", good, len, trail + 8, &u, 8, "trailer");
    u = 8;
    corrupt("trailer size tiny", good, len, trail + 8, &u, 8, NULL);
    corrupt("truncated file", good, len - 100, 0, NULL, 0, "no weight blob");
    {   /* truncated in the middle of the data, trailer kept */
        char *buf = malloc(len);
        size_t cut = 200;
        memcpy(buf, good, trail - cut);
        memcpy(buf + trail - cut, good + trail, sizeof tr);
        spew(path_in("bad"), buf, len - cut);
        free(buf);
        expect_blob_error("truncated data, trailer kept", path_in("bad"), "trailer");
    }
    corrupt("blob magic", good, len, bo, "KILNBLOX", 8, "magic");
    u32 = 7;
    corrupt("blob version", good, len, bo + 8, &u32, 4, "version");
    u32 = 3;
    corrupt("tensor count in header", good, len, bo + 12, &u32, 4, "expects 6");
    u32 = 0x7fffffff;
    corrupt("tensor count huge", good, len, bo + 12, &u32, 4, "table");
    u = UINT64_MAX - 7;
    corrupt("table offset overflow", good, len, bo + 16, &u, 8, "table");
    u = h.total_size + 1;
    corrupt("total_size larger than the blob", good, len, bo + 24, &u, 8, "truncated");
    u = h.total_size;
    corrupt("name offset out of range", good, len, ent1, &u, 8, "name");
    {   /* name running into the end of the blob without a NUL */
        char *buf = malloc(len);
        memcpy(buf, good, len);
        u = h.total_size - 1;
        memcpy(buf + ent1, &u, 8);
        buf[bo + h.total_size - 1] = 'x';
        spew(path_in("bad"), buf, len);
        free(buf);
        expect_blob_error("name not NUL-terminated", path_in("bad"), "NUL");
    }
    u = UINT64_MAX - 63;
    corrupt("data offset overflow", good, len, ent1 + 8, &u, 8, "'output'");
    u = e[1].offset + 4;
    corrupt("data offset misaligned", good, len, ent1 + 8, &u, 8, "misaligned");
    u = UINT64_MAX;
    corrupt("data size overflow", good, len, ent1 + 16, &u, 8, "outside");
    u = e[1].nbytes - 4;
    corrupt("data size wrong for the shape", good, len, ent1 + 16, &u, 8, "expected 352");
    u32 = 5;
    corrupt("rank 5", good, len, ent1 + 28, &u32, 4, "rank");
    u = LD + 1;
    corrupt("dims wrong (in the table)", good, len, ent1 + 40, &u, 8, "dimension 1");

    /* blobs packed from wrong tensor lists */
    pack_tensor t[N_GOOD];
    memcpy(t, good_tensors, sizeof t);
    struct { const char *what, *want; int n; } packs[] = {
        {"one tensor instead of two", "2 tensors, model 'fake' expects", 1},   /* + checksums */
        {"dims wrong", "tensor 1 'output': dimension 1 is 6, expected 8", N_GOOD},
        {"name wrong", "tensor 0 'tok_embeddings': the blob has 'tok_embedding'", N_GOOD},
        {"dtype wrong", "tensor 0 'tok_embeddings': dtype f16, the program expects f32", N_GOOD},
    };
    for (int k = 0; k < 4; k++) {
        memcpy(t, good_tensors, sizeof t);
        if (k == 1)
            t[1].dims[1] = D, t[1].nbytes = sizeof(float) * V * D;
        if (k == 2)
            t[0].name = "tok_embedding";
        if (k == 3)
            t[0].dtype = KBLOB_F16, t[0].nbytes /= 2;
        spew(path_in("bad"), pl, plen);
        ok(pack_append_blob(path_in("bad"), t, packs[k].n) == 0, "pack_append_blob (%s)", packs[k].what);
        expect_blob_error(packs[k].what, path_in("bad"), packs[k].want);
    }

    /* --blob with files that are not blobs */
    spew(path_in("empty.blob"), "", 0);
    result r = run(plain, (const char *[]){"--tokens", "1", "--blob", path_in("empty.blob"), NULL});
    ok(r.code == 1 && strstr(r.err, "weight blob"), "--blob empty file: %.*s", (int)strcspn(r.err, "\n"), r.err);
    drop(&r);
    r = run(plain, (const char *[]){"--tokens", "1", "--blob", plain, NULL});
    ok(r.code == 1 && strstr(r.err, "bad magic"), "--blob on a non-blob: %.*s", (int)strcspn(r.err, "\n"), r.err);
    drop(&r);
    r = run(plain, (const char *[]){"--tokens", "1", "--blob", path_in("missing.blob"), NULL});
    ok(r.code == 1 && strstr(r.err, "cannot open"), "--blob missing file");
    drop(&r);

    /* pack's own checks: a bad tensor list leaves the file as it was */
    spew(path_in("bad"), pl, plen);
    t[0] = good_tensors[0];
    t[0].rank = 5;
    fprintf(stderr, "# (an error message from pack is expected next)\n");
    int rc = pack_append_blob(path_in("bad"), t, 1);
    size_t after;
    free(slurp(path_in("bad"), &after));
    ok(rc == -1 && after == plen, "pack_append_blob rejects rank 5 and restores the file");
    fprintf(stderr, "# (an error message from pack is expected next)\n");
    ok(pack_append_blob(path_in("nonexistent"), good_tensors, N_GOOD) == -1, "pack_append_blob on a missing file fails");
    free(good), free(pl);
}

/* The reader's size rule for every dtype: entries of the good program whose nbytes or dtype
 * lie. The model's dims are checked first, so block-row and overflow cases use the dtype. */
static void test_reader_sizes(const char *prog)
{
    size_t len;
    char *good = slurp(prog, &len);
    kblob_trailer tr;
    memcpy(&tr, good + len - sizeof tr, sizeof tr);
    size_t bo = (size_t)tr.blob_offset;
    kblob_header h;
    memcpy(&h, good + bo, sizeof h);
    kblob_entry e[N_GOOD];
    memcpy(e, good + bo + h.table_offset, sizeof e);
#define ENT(k, field) (bo + h.table_offset + (k) * sizeof(kblob_entry) + offsetof(kblob_entry, field))
    int intact = 1;
    for (int k = 2; k < N_GOOD; k++)
        intact &= e[k].dtype == good_tensors[k].dtype && e[k].nbytes == good_tensors[k].nbytes &&
                  e[k].offset % KBLOB_ALIGN == 0 &&
                  memcmp(good + bo + e[k].offset, good_tensors[k].data, good_tensors[k].nbytes) == 0;
    ok(intact, "appended blob: q8_0, q4_0, f16, bf16 entries and data as packed");

    static const struct { int k; int64_t delta; const char *want; } sizes[] = {
        {2, -1, "tensor 2 'w_q8': 135 bytes of data, expected 136 for q8_0"},
        {2, +1, "tensor 2 'w_q8': 137 bytes of data, expected 136 for q8_0"},
        {3, -1, "tensor 3 'w_q4': 53 bytes of data, expected 54 for q4_0"},
        {3, +1, "tensor 3 'w_q4': 55 bytes of data, expected 54 for q4_0"},
        {4, -1, "tensor 4 'w_f16': 39 bytes of data, expected 40 for f16"},
        {4, +1, "tensor 4 'w_f16': 41 bytes of data, expected 40 for f16"},
        {5, -1, "tensor 5 'w_bf16': 13 bytes of data, expected 14 for bf16"},
        /* the last tensor one long: the checksums entry follows it, so the size rule */
        {5, +1, "tensor 5 'w_bf16': 15 bytes of data, expected 14 for bf16"},
    };
    char what[96];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int k = sizes[i].k;
        uint64_t u = e[k].nbytes + (uint64_t)sizes[i].delta;
        snprintf(what, sizeof what, "reader: %s nbytes one %s", good_tensors[k].name,
                 sizes[i].delta < 0 ? "short" : "long");
        corrupt(what, good, len, ENT(k, nbytes), &u, 8, sizes[i].want);
    }
    uint32_t u32 = KBLOB_Q8_0;
    corrupt("reader: output [11, 8] claimed q8_0 (rows not whole blocks)", good, len, ENT(1, dtype),
            &u32, 4, "tensor 1 'output': q8_0 rows of 8 elements are not a whole number of 32-element blocks");
    u32 = KBLOB_Q4_0;
    corrupt("reader: w_f16 [4, 5] claimed q4_0", good, len, ENT(4, dtype), &u32, 4,
            "q4_0 rows of 5 elements are not a whole number");
    u32 = 7;
    corrupt("reader: unknown dtype code", good, len, ENT(0, dtype), &u32, 4,
            "tensor 0 'tok_embeddings': unknown dtype code 7");
    u32 = 0xffffffffu;
    corrupt("reader: dtype code 2^32-1", good, len, ENT(5, dtype), &u32, 4, "unknown dtype code 4294967295");
    {   /* bf16 one long where there is room after it: w_f16's entry claims bf16 */
        char *buf = malloc(len);
        memcpy(buf, good, len);
        u32 = KBLOB_BF16;
        uint64_t u = F16_BYTES + 1;
        memcpy(buf + ENT(4, dtype), &u32, 4);
        memcpy(buf + ENT(4, nbytes), &u, 8);
        spew(path_in("bad"), buf, len);
        free(buf);
        expect_blob_error("reader: bf16 nbytes one long", path_in("bad"),
                          "tensor 4 'w_f16': 41 bytes of data, expected 40 for bf16");
    }
    u32 = KBLOB_BF16;   /* same size as f16: only the model's expectation catches it */
    corrupt("reader: w_f16 claimed bf16, size consistent", good, len, ENT(4, dtype), &u32, 4,
            "tensor 4 'w_f16': dtype bf16, the program expects f16");
    {   /* f16 where the model wants q8_0, nbytes made consistent: the dtype check names both */
        char *buf = malloc(len);
        memcpy(buf, good, len);
        u32 = KBLOB_F16;
        uint64_t u = 2 * 64 * 2;
        memcpy(buf + ENT(2, dtype), &u32, 4);
        memcpy(buf + ENT(2, nbytes), &u, 8);
        spew(path_in("bad"), buf, len);
        free(buf);
        expect_blob_error("reader: w_q8 claimed f16 with f16 nbytes", path_in("bad"),
                          "tensor 2 'w_q8': dtype f16, the program expects q8_0");
    }
    uint64_t u = (uint64_t)1 << 62;
    corrupt("reader: overflowing dims", good, len, ENT(2, dims), &u, 8,
            "tensor 2 'w_q8': dimension 0 is 4611686018427387904, expected 2");
#undef ENT
    free(good);
}

/* The packer's size rule for every dtype: each bad list is refused with a message naming the
 * tensor, and no file is left behind. */
static void test_pack_sizes(void)
{
    static unsigned char any[4096];
    static const struct { pack_tensor t; const char *want; } bad[] = {
        {{"q8", KBLOB_Q8_0, 2, {2, 64}, any, Q8_BYTES - 1, KBLOB_ROWS}, "tensor 0 'q8': 135 bytes do not match its shape (q8_0: 136)"},
        {{"q8", KBLOB_Q8_0, 2, {2, 64}, any, Q8_BYTES + 1, KBLOB_ROWS}, "137 bytes do not match its shape (q8_0: 136)"},
        {{"q4", KBLOB_Q4_0, 2, {3, 32}, any, Q4_BYTES - 1, KBLOB_ROWS}, "53 bytes do not match its shape (q4_0: 54)"},
        {{"q4", KBLOB_Q4_0, 2, {3, 32}, any, Q4_BYTES + 1, KBLOB_ROWS}, "55 bytes do not match its shape (q4_0: 54)"},
        {{"h", KBLOB_F16, 2, {4, 5}, any, F16_BYTES - 1, KBLOB_ROWS}, "39 bytes do not match its shape (f16: 40)"},
        {{"h", KBLOB_F16, 2, {4, 5}, any, F16_BYTES + 1, KBLOB_ROWS}, "41 bytes do not match its shape (f16: 40)"},
        {{"b", KBLOB_BF16, 1, {7}, any, BF16_BYTES - 1, KBLOB_ROWS}, "13 bytes do not match its shape (bf16: 14)"},
        {{"b", KBLOB_BF16, 1, {7}, any, BF16_BYTES + 1, KBLOB_ROWS}, "15 bytes do not match its shape (bf16: 14)"},
        {{"q8row", KBLOB_Q8_0, 2, {2, 48}, any, 102, KBLOB_ROWS}, "tensor 0 'q8row': q8_0 rows of 48 elements are not a whole number of 32-element blocks"},
        {{"q4row", KBLOB_Q4_0, 1, {5}, any, 18, KBLOB_ROWS}, "q4_0 rows of 5 elements are not a whole number"},
        {{"q8none", KBLOB_Q8_0, 0, {0}, any, 34, KBLOB_ROWS}, "q8_0 rows of 1 elements are not a whole number"},
        {{"odd", 7, 2, {2, 2}, any, 16, KBLOB_ROWS}, "tensor 0 'odd': unknown dtype code 7"},
        {{"odd", 3, 1, {2}, any, 8, KBLOB_ROWS}, "unknown dtype code 3"},
        {{"big", KBLOB_F32, 2, {(uint64_t)1 << 32, (uint64_t)1 << 32}, any, 0, KBLOB_ROWS}, "tensor 0 'big': the byte size of its f32 shape overflows"},
        {{"big", KBLOB_F16, 1, {(uint64_t)1 << 63}, any, 0, KBLOB_ROWS}, "f16 shape overflows"},
        {{"big", KBLOB_Q8_0, 2, {(uint64_t)1 << 40, (uint64_t)1 << 40}, any, 0, KBLOB_ROWS}, "q8_0 shape overflows"},
        {{"big", KBLOB_Q4_0, 3, {(uint64_t)1 << 32, (uint64_t)1 << 32, 32}, any, 0, KBLOB_ROWS}, "q4_0 shape overflows"},
    };
    char out[512];   /* path_in's buffers rotate: keep a copy */
    snprintf(out, sizeof out, "%s", path_in("packed.blob"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unlink(out);
        fflush(stderr);
        int save = dup(2), fd = open(path_in("pack_err.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        close(fd);
        int rc = pack_write_blob(out, &bad[i].t, 1);
        fflush(stderr);
        dup2(save, 2);
        close(save);
        size_t n;
        char *msg = slurp(path_in("pack_err.txt"), &n);
        int left = 0;   /* a temporary or the output left behind */
        DIR *d = opendir(dir);
        for (struct dirent *de; d && (de = readdir(d));)
            left |= !strncmp(de->d_name, "packed.blob", 11);
        if (d)
            closedir(d);
        if (rc != -1 || left)
            printf("# rc %d, files left %d\n", rc, left);
        ok(rc == -1 && msg && strstr(msg, out) && strstr(msg, bad[i].want) && !left,
           "pack_write_blob refuses %s %s: %.*s", kblob_dtype_name(bad[i].t.dtype) ? kblob_dtype_name(bad[i].t.dtype) : "?",
           bad[i].t.name, msg ? (int)strcspn(msg, "\n") : 0, msg ? msg : "");
        free(msg);
    }
    /* a valid blob of every dtype, read back field by field */
    ok(pack_write_blob(out, good_tensors, N_GOOD) == 0, "pack_write_blob: one tensor of each dtype");
    size_t n;
    char *b = slurp(out, &n);
    kblob_header h;
    int good = b && n >= sizeof h;
    if (good) {
        memcpy(&h, b, sizeof h);
        good = h.total_size == n && h.n_tensors == N_GOOD + 1;   /* + kiln.checksums */
    }
    for (int k = 0; good && k < N_GOOD; k++) {
        kblob_entry e;
        memcpy(&e, b + h.table_offset + (size_t)k * sizeof e, sizeof e);
        uint64_t want;
        good = e.dtype == good_tensors[k].dtype && kblob_tensor_bytes(e.dtype, e.rank, e.dims, &want) == 0 &&
               e.nbytes == want && e.offset % KBLOB_ALIGN == 0 && e.offset + e.nbytes <= n &&
               memcmp(b + e.offset, good_tensors[k].data, e.nbytes) == 0;
    }
    ok(good, "standalone blob: every entry's nbytes follows its dtype, data intact");
    if (good) {                /* the checksums: each tensor's data, the metadata, themselves */
        kblob_entry e, e0;
        memcpy(&e, b + h.table_offset + (size_t)N_GOOD * sizeof e, sizeof e);
        memcpy(&e0, b + h.table_offset, sizeof e0);
        good = !strcmp(b + e.name_offset, KBLOB_CHECKSUMS) && e.dtype == KBLOB_U8 &&
               e.nbytes == 8 * (N_GOOD + 2);
        uint64_t w[N_GOOD + 2];
        if (good)
            memcpy(w, b + e.offset, sizeof w);
        for (int k = 0; good && k < N_GOOD; k++)
            good = w[k] == kblob_hash64(good_tensors[k].data, good_tensors[k].nbytes);
        good = good && w[N_GOOD] == kblob_hash64(b, e0.offset) &&
               w[N_GOOD + 1] == kblob_hash64(w, 8 * (N_GOOD + 1));
    }
    ok(good, "standalone blob: the last entry holds the checksums of the tensors, the "
       "metadata and itself");
    free(b);
    unlink(out);
}

/* kblob_hash64: every length 0 .. 40 (the four lanes, the tail), any single flipped bit
 * changes the checksum, a trailing zero byte too (the length is mixed in), and it is a
 * function of the bytes only. */
static void test_hash(void)
{
    unsigned char buf[48], copy[48];
    for (int i = 0; i < 48; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    int changed = 1, stable = 1, lengths = 1;
    for (uint64_t n = 0; n <= 40; n++) {
        uint64_t h = kblob_hash64(buf, n);
        memcpy(copy, buf, sizeof copy);
        stable &= kblob_hash64(copy, n) == h;
        copy[n] = 0;
        lengths &= kblob_hash64(copy, n + 1) != h;
        for (uint64_t k = 0; k < 8 * n; k++) {
            memcpy(copy, buf, sizeof copy);
            copy[k / 8] ^= (unsigned char)(1u << (k % 8));
            changed &= kblob_hash64(copy, n) != h;
        }
    }
    ok(stable, "kblob_hash64: the same bytes, the same checksum");
    ok(changed, "kblob_hash64: any flipped bit of 0 .. 40 bytes changes it");
    ok(lengths, "kblob_hash64: a zero byte more changes it");
}

int main(int argc, char **argv)
{
    test_hash();
    if (argc != 2) {
        fprintf(stderr, "usage: blob_test FAKE_PROG\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kiln-blob-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    uint64_t s = 12345;
    for (int i = 0; i < V * D; i++)
        s = s * 6364136223846793005ull + 1442695040888963407ull, emb[i] = (float)((s >> 40) / 16777216.0 * 2 - 1);
    for (int i = 0; i < V * LD; i++)
        s = s * 6364136223846793005ull + 1442695040888963407ull, outw[i] = (float)((s >> 40) / 16777216.0 * 2 - 1);

    unsigned char *extra[] = {q8, q4, h16, b16};
    size_t extra_len[] = {sizeof q8, sizeof q4, sizeof h16, sizeof b16};
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < extra_len[k]; i++)
            s = s * 6364136223846793005ull + 1442695040888963407ull, extra[k][i] = (unsigned char)(s >> 56);

    size_t len;
    char *exe = slurp(argv[1], &len);
    if (!exe) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    char plain[512], prog[512];
    snprintf(plain, sizeof plain, "%s", path_in("plain"));
    snprintf(prog, sizeof prog, "%s", path_in("prog"));
    spew(plain, exe, len);
    spew(prog, exe, len);
    free(exe);
    ok(pack_append_blob(prog, good_tensors, N_GOOD) == 0, "pack_append_blob");

    test_runs(prog, plain);
    test_usage_errors(prog);
    test_corruption(plain, prog);
    test_reader_sizes(prog);
    test_pack_sizes();

    remove_dir();
    printf("1..%d\n", n_test);
    return n_fail ? 1 : 0;
}
