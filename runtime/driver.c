/* driver.c - main() of every program kiln emits.
 *
 * Parses the command line, maps the weight blob (blob.c), allocates the frame and the state,
 * then feeds the prompt through kiln_model.forward in blocks of up to --batch tokens: with
 * --logits it asks for and writes every row's logits (teacher forcing); otherwise only the
 * last row's are computed, and -n samples (sample.c) and feeds back new tokens one at a time.
 * Usage errors exit 2, run-time errors (blob, I/O, logits that are NaN or infinite: never
 * sampled from) exit 1. --verify recomputes the blob's checksums (blob.c) and exits.
 * The state (the KV caches) is an anonymous mapping: its pages are zero until written, so a
 * program compiled for a long context costs memory only for the positions a run reaches
 * (--ctx N caps them below the compiled context). Between runs (--bench) only the cache rows
 * the previous run wrote are zeroed again.
 * --prompt TEXT and -i run text through the tokenizer stored in the blob (tokenizer.c): the
 * prompt encoded (BOS first), each generated token's text printed as it comes, timings on
 * standard error; -i keeps the KV cache from one line of standard input to the next.
 * --bench-pp/--bench-tg hand the program, set up as for a run, to bench.c (kiln bench's
 * measurements) through rt_internal.h.
 * The logits file is written to FILE.tmp and renamed onto FILE only when FILE is a regular
 * file or new; a device or FIFO is written directly (the same rule as the compiler's
 * base/outfile.c, which this program, depending on libc only, cannot link).
 * Statistics named "route l=L e=E" (passes/route_stats.c: whether expert E of layer L ran,
 * per token) are not the spec's: --stats leaves them out, --profile-routing FILE writes
 * them as a routing profile (JSON), which kiln build --prune-experts=FILE reads.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE    /* MAP_ANONYMOUS, which POSIX.1-2008 lacks */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"
#include "rt_internal.h"
#include "tokenizer.h"

typedef struct opts {
    int32_t *tokens;
    int64_t n_tokens;
    const char *logits;        /* file, "-" or NULL */
    int64_t n_gen;             /* -1: default */
    double temp, top_p;
    double min_p, repeat_penalty; /* --min-p, --repeat-penalty (sample.c) */
    int64_t top_k, repeat_last_n; /* --top-k, --repeat-last-n */
    uint64_t seed;
    int64_t threads, bench_runs, batch;
    int64_t ctx;               /* positions a run may take: --ctx, else the compiled ctx */
    const char *blob;
    krt_huge huge;             /* --huge-pages auto|on|off */
    int stats, bench;
    const char *profile;       /* --profile-routing FILE, or NULL */
    float *rtparams;
    int64_t bench_pp, bench_tg; /* --bench-pp P, --bench-tg N (bench.c); -1: not given */
    const char *prompt;        /* --prompt TEXT, or NULL */
    int interactive;           /* -i: lines of standard input, one turn each */
    int ignore_eos;            /* --ignore-eos: end-of-generation tokens do not stop it */
    int verify;                /* --verify: recompute the blob's checksums, then exit */
} opts;

static const char *prog = "kiln-program";
static const char *partial_file; /* removed by fatal() */

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\ntry '%s --help'\n", prog);
    va_end(ap);
    exit(2);
}

static void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (partial_file)
        remove(partial_file);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        fatal("out of memory");
    return p;
}

/* ---- strict number parsing ---- */

static int64_t parse_int(const char *s, int64_t lo, int64_t hi, const char *what)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
        usage_error("%s: '%s' is not an integer", what, s);
    if (v < lo || v > hi)
        usage_error("%s: %lld is out of range [%lld, %lld]", what, v, (long long)lo, (long long)hi);
    return v;
}

static double parse_real(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(v) || s[0] == ' ' || s[0] == '\t')
        usage_error("%s: '%s' is not a finite number", what, s);
    if (v < lo || v > hi)
        usage_error("%s: %g is out of range [%g, %g]", what, v, lo, hi);
    return v;
}

static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!(s[0] >= '0' && s[0] <= '9') || *end || errno == ERANGE)
        usage_error("%s: '%s' is not an unsigned 64-bit integer", what, s);
    return v;
}

/* The most positions a program can take: the compiled ctx (0: unbounded, int32 positions). */
static int64_t ctx_max(void)
{
    return kiln_model.ctx > 0 ? kiln_model.ctx : INT32_MAX;
}

static void parse_tokens(opts *o, const char *s)
{
    const krt_model *m = &kiln_model;
    int64_t cap = o->ctx, n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (!*s)
        usage_error("--tokens: the list is empty");
    if (n > cap)
        usage_error("--tokens: %lld tokens, but %s holds %lld", (long long)n,
                    o->ctx < ctx_max() ? "the context of this run (--ctx)" : "the model's context",
                    (long long)cap);
    o->tokens = xcalloc((size_t)n, sizeof *o->tokens);
    o->n_tokens = n;
    const char *p = s;
    for (int64_t i = 0; i < n; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32], what[48];
        snprintf(what, sizeof what, "--tokens: item %lld", (long long)i + 1);
        if (len == 0 || len >= sizeof item)
            usage_error("%s: '%.*s' is not a token id", what, (int)len, p);
        memcpy(item, p, len);
        item[len] = 0;
        if (item[0] == '-')
            usage_error("%s: '%s' is not a token id", what, item);
        o->tokens[i] = (int32_t)parse_int(item, 0, m->vocab - 1, what);
        p += len + 1;
    }
}

static void parse_set(opts *o, const char *s)
{
    const krt_model *m = &kiln_model;
    const char *eq = strchr(s, '=');
    if (!eq || eq == s)
        usage_error("--set: expected name=value, got '%s'", s);
    for (int i = 0; i < m->n_rtparams; i++) {
        const char *nm = m->rtparam_names[i];
        if (strlen(nm) == (size_t)(eq - s) && !memcmp(nm, s, (size_t)(eq - s))) {
            char what[160];
            snprintf(what, sizeof what, "--set %s", nm);
            o->rtparams[i] = (float)parse_real(eq + 1, -HUGE_VAL, HUGE_VAL, what);
            return;
        }
    }
    char known[1024] = "";
    for (int i = 0; i < m->n_rtparams; i++) {
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", m->rtparam_names[i]);
    }
    usage_error("--set: unknown run-time parameter '%.*s'; %s%s", (int)(eq - s), s,
                m->n_rtparams ? "known: " : "this model has none", known);
}

/* ---- routing statistics ---- */

/* Whether statistic `name` is a routing count; its layer and expert. */
static int route_stat(const char *name, int *layer, int *expert)
{
    int l, e, n = 0;
    if (sscanf(name, "route l=%d e=%d%n", &l, &e, &n) != 2 || name[n] || l < 0 || e < 0)
        return 0;
    if (layer)
        *layer = l, *expert = e;
    return 1;
}

static int is_route_stat(const char *name) { return route_stat(name, NULL, NULL); }

static int has_route_stats(void)
{
    for (int i = 0; i < kiln_model.n_stats; i++)
        if (is_route_stat(kiln_model.stat_names[i]))
            return 1;
    return 0;
}

/* The count of expert e of layer l (0 when the program has no such expert: pruned). */
static long long route_count(const krt_ctx *c, int l, int e)
{
    int sl, se;
    for (int i = 0; i < kiln_model.n_stats; i++)
        if (route_stat(kiln_model.stat_names[i], &sl, &se) && sl == l && se == e)
            return llround(c->stat_sum[i]);
    return 0;
}

static void print_profile(FILE *f, const krt_ctx *c)
{
    const krt_model *m = &kiln_model;
    int lmax = -1, l, e;
    double tokens = 0;
    for (int i = 0; i < m->n_stats; i++)
        if (route_stat(m->stat_names[i], &l, &e)) {
            lmax = l > lmax ? l : lmax;
            /* a pruned expert's slot of a re-pruned dump counts nothing */
            tokens = c->stat_count[i] > tokens ? c->stat_count[i] : tokens;
        }
    fprintf(f, "{\"model\": \"%s\", \"tokens\": %.0f, \"layers\": [", m->name, tokens);
    int first = 1;
    for (int layer = 0; layer <= lmax; layer++) {
        int emax = -1;
        for (int i = 0; i < m->n_stats; i++)
            if (route_stat(m->stat_names[i], &l, &e) && l == layer && e > emax)
                emax = e;
        if (emax < 0)
            continue;
        fprintf(f, "%s\n  {\"layer\": %d, \"experts\": [", first ? "" : ",", layer);
        for (e = 0; e <= emax; e++)
            fprintf(f, "%s%lld", e ? ", " : "", route_count(c, layer, e));
        fprintf(f, "]}");
        first = 0;
    }
    fprintf(f, "\n]}\n");
}

/* Writes the profile to FILE.tmp and renames it onto FILE: never a partial profile. */
static void write_profile(const char *path, const krt_ctx *c)
{
    char *tmp = xcalloc(strlen(path) + 5, 1);
    sprintf(tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        fatal("cannot write %s: %s", tmp, strerror(errno));
    partial_file = tmp;
    print_profile(f, c);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        fatal("cannot write %s", tmp);
    if (rename(tmp, path) != 0)
        fatal("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    partial_file = NULL;
    free(tmp);
}

/* ---- --help ---- */

static void help(void)
{
    const krt_model *m = &kiln_model;
    printf("NAME\n    %s - run the model '%s' (compiled by kiln)\n\n", prog, m->name);
    printf("SYNOPSIS\n    %s --tokens IDS [--logits FILE] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
           "        [--min-p P] [--repeat-penalty R] [--repeat-last-n N] [--seed S]\n"
           "        [--set NAME=VALUE]... [--stats] [--threads N] [--batch N] [--ctx N]\n"
           "        [--blob FILE] [--bench] [--profile-routing FILE] [--cpu]\n"
           "    %s --verify [--blob FILE]\n"
           "    %s --prompt TEXT | -i [-n N] [--ignore-eos] [--temp T] [--top-k K] [--top-p P]\n"
           "        [--min-p P] [--repeat-penalty R] [--repeat-last-n N] [--seed S]\n"
           "        [--set NAME=VALUE]... [--threads N] [--batch N] [--ctx N] [--blob FILE]\n"
           "    %s [--bench-pp P] [--bench-tg N] [--threads N] [--batch N] [--ctx N]\n"
           "        [--set NAME=VALUE]... [--blob FILE]\n\n",
           prog, prog, prog, prog);
    printf("DESCRIPTION\n"
           "    Feeds the prompt IDS through the model at positions 0, 1, ..., in blocks of up to\n"
           "    --batch tokens, and then generates tokens, each fed back at the next position.\n"
           "    Weights come from the blob appended to this program (or --blob FILE) and are\n"
           "    checked against the model at start.\n\n"
           "    Model '%s': vocabulary %lld tokens, context ",
           m->name, (long long)m->vocab);
    if (m->ctx > 0)
        printf("%lld positions", (long long)m->ctx);
    else
        printf("unbounded");
    printf(", %d weight tensors,\n    blocks of up to %lld tokens, working memory %llu bytes (frame) and %llu\n"
           "    bytes of KV caches (state) for the full context. Cache memory is taken as\n"
           "    positions are reached, not at start.\n", m->n_tensors, (long long)m->max_batch,
           (unsigned long long)m->frame_bytes, (unsigned long long)m->state_bytes);
    printf("\nOPTIONS\n"
           "    --tokens IDS    prompt: comma-separated token ids, each in [0, %lld), at most\n"
           "                    %lld of them. Required.\n"
           "    --logits FILE   teacher forcing: after each prompt token write one line holding\n"
           "                    the full logits row (%lld values, %%.9g, space-separated).\n"
           "                    '-' is standard output. Written to FILE.tmp, then renamed\n"
           "                    (a device or FIFO is written directly).\n"
           "    -n N            generate N tokens after the prompt and print their ids on one\n"
           "                    line. Default: 0 with --logits, else 16. Stops early, with a\n"
           "                    note, when the context is full.\n"
           "    --temp T        sampling temperature, T >= 0. Default 0: greedy (the largest\n"
           "                    logit after the repeat penalty, the lowest id on ties).\n"
           "    --top-k K       keep the K most likely tokens, K >= 0. Default 0 (off).\n"
           "    --top-p P       nucleus: keep the smallest set of most likely tokens whose\n"
           "                    probability reaches P, 0 < P <= 1. Default 1 (off).\n"
           "    --min-p P       keep the tokens at least P times as likely as the most likely\n"
           "                    one, 0 <= P <= 1. Default 0 (off).\n"
           "    --repeat-penalty R\n"
           "                    divide the positive logit of each token among the last\n"
           "                    --repeat-last-n ids (prompt included) by R, multiply a negative\n"
           "                    one by R, R > 0. Default 1 (off).\n"
           "    --repeat-last-n N\n"
           "                    the ids the repeat penalty looks back on, N >= 0. Default 64.\n"
           "    --seed S        seed of the sampler's random numbers (unsigned 64-bit).\n"
           "                    Default 0. Equal seeds give equal output.\n"
           "    --set NAME=VALUE\n"
           "                    set a run-time parameter (below). Repeatable.\n"
           "    --stats         after the run, print to standard error the mean of every\n"
           "                    statistic (below) and the KV-cache and frame memory report.\n"
           "    --profile-routing FILE\n"
           "                    after the run, write how often each expert ran, per layer,\n"
           "                    as JSON: {\"model\", \"tokens\", \"layers\": [{\"layer\": L,\n"
           "                    \"experts\": [count, ...]}, ...]} (for kiln build\n"
           "                    --prune-experts=FILE). Written to FILE.tmp, then renamed.\n"
           "    --threads N     threads, N >= 1 (default: the physical cores, %d here): every\n"
           "                    step is shared between them (products by rows, attention by\n"
           "                    heads, the rest by tokens); results are the same for every N.\n"
           "    --batch N       run the prompt in blocks of at most N tokens, 1 <= N <= %lld\n"
           "                    (default %lld, set by kiln build --max-batch). Each weight is\n"
           "                    read once per block; results are the same for every N.\n"
           "    --ctx N         context length of this run, 1 <= N <= %lld (default %lld, the\n"
           "                    compiled context): the prompt may hold at most N tokens and\n"
           "                    generation stops, with a note, at N positions; the KV caches\n"
           "                    use (and --stats reports) only N positions.\n"
           "    --blob FILE     read the weights from the standalone blob FILE instead.\n"
           "    --verify        recompute the checksums kiln build stored in the weight blob\n"
           "                    (every tensor, the header and table): print OK and exit 0, or\n"
           "                    name each damaged tensor and exit 1. A start checks only the\n"
           "                    header and the table (not a pass over every weight byte).\n"
           "                    Takes only --blob FILE.\n"
           "    --huge-pages M  auto (default), on or off: copy the weights at start onto\n"
           "                    transparent huge pages (2 MiB: a matrix product walks its\n"
           "                    weights with far fewer TLB misses); auto does it for blobs of\n"
           "                    64 MiB and more, when the kernel offers huge pages and the\n"
           "                    available memory holds twice the blob. The copy takes time at\n"
           "                    start (about 0.2 s a GB). --stats says how many bytes landed\n"
           "                    on them.\n"
           "    --bench         after the run, time it again --bench-runs R times (default 5)\n"
           "                    and print tokens/s (min/median/max) to standard error.\n"
           "    --bench-runs R  number of timed runs, R >= 1.\n"
           "    --bench-pp P, --bench-tg N\n"
           "                    instead of a run, what kiln bench measures (no --tokens): one\n"
           "                    untimed call, then a prompt of P tokens ((i * 7919 + 1) %%\n"
           "                    vocab) in blocks of --batch, then, from cleared caches, N\n"
           "                    greedy decode steps from token 1; 0 or absent skips a test.\n"
           "                    Prints one line: kiln-bench pp=P pp_s=SECONDS tg=N\n"
           "                    tg_s=SECONDS threads= batch= path= decode_bytes=\n"
           "                    decode_bytes_experts= macs_all= macs_logits= (the weight\n"
           "                    bytes and multiply-adds of one token).\n"
           "    --cpu           print the kernel path taken (avx512, avx2 or portable) and the\n"
           "                    CPU features seen, then exit. The SIMD kernels run only when\n"
           "                    the CPU and OS support them, and every path gives the same\n"
           "                    results bit for bit; KILN_CPU=portable or KILN_CPU=avx2 in the\n"
           "                    environment lowers the path (never raises it).\n"
           "    -h, --help      print this help.\n"
           "    Long options also take the form --option=VALUE.\n",
           (long long)m->vocab, (long long)ctx_max(),
           (long long)m->vocab, krt_cpu_cores(), (long long)m->max_batch, (long long)m->max_batch,
           (long long)ctx_max(), (long long)ctx_max());
    printf("\nSAMPLING\n"
           "    Each generated token goes through llama.cpp's classic chain, in this order:\n"
           "    repeat penalty, top-k, top-p, min-p, temperature, draw. Top-p and min-p see\n"
           "    the probabilities (softmax at temperature 1) of the tokens the steps before\n"
           "    kept; the temperature then scales the survivors' logits and one random number\n"
           "    draws from their softmax. Ties go to the lower id. --temp 0 takes the largest\n"
           "    logit after the penalty and draws nothing.\n");
    printf("\nTEXT IN, TEXT OUT (the tokenizer kiln build stored in the program)\n"
           "    --prompt TEXT   encode TEXT (BOS first), run it, print TEXT, then print each\n"
           "                    generated token's text as soon as it is sampled, and a newline\n"
           "                    at the end. Generation stops at an end-of-generation token\n"
           "                    (EOS, end of turn; for SentencePiece vocabularies also BOS, as\n"
           "                    llama2.c's run.c does), after -n N tokens (default: until the\n"
           "                    context is full) or when the context is full. Special tokens\n"
           "                    written in TEXT (<s>) are encoded as plain text.\n"
           "    -i              interactive: read standard input line by line; each line is\n"
           "                    encoded (BOS only before the first), run and answered with up\n"
           "                    to -n tokens. The KV cache is kept from one line to the next,\n"
           "                    so the text so far is the context, until the context is full\n"
           "                    (a note says so) or the input ends. With --prompt, TEXT is the\n"
           "                    first turn. On a terminal, \"> \" on standard error asks for\n"
           "                    each line.\n"
           "    --ignore-eos    do not stop at end-of-generation tokens (they print nothing).\n"
           "    Timings go to standard error as llama.cpp prints them (prompt eval: tokens, ms,\n"
           "    tokens per second; eval: decode runs, ms, tokens per second).\n");
    printf("\nRUN-TIME PARAMETERS (--set NAME=VALUE)\n");
    if (!m->n_rtparams)
        printf("    none\n");
    for (int i = 0; i < m->n_rtparams; i++)
        printf("    %-24s default %g\n", m->rtparam_names[i], (double)m->rtparam_defaults[i]);
    printf("\nSTATISTICS (--stats)\n");
    if (!m->n_stats)
        printf("    none\n");
    for (int i = 0; i < m->n_stats; i++)
        if (!is_route_stat(m->stat_names[i]))
            printf("    %s\n", m->stat_names[i]);
    printf("\nEXIT STATUS\n    0 success, 1 run-time error (weights, output), 2 usage error.\n"
           "    Logits that hold a NaN or an infinity are a run-time error: generation (-n,\n"
           "    --prompt, -i) stops before sampling from them, printing nothing for that token;\n"
           "    --logits writes every row it computed, then fails.\n");
}

/* ---- --cpu ---- */

/* One line: the kernel path krt_cpu_init chose, then the features it saw. */
static void print_cpu(void)
{
    const krt_cpu *k = krt_cpu_get();
    const char *env = getenv("KILN_CPU");
    int want = env ? krt_path_lookup(env) : -1;
    printf("cpu: path %s", krt_path_name(krt_kernel_path));
    if (want >= 0)
        printf(" (KILN_CPU=%s)", env);
    printf("; features");
    const struct { const char *name; int on; } feat[] = {
        {"avx2", k->avx2},       {"fma", k->fma},           {"f16c", k->f16c},
        {"avx512f", k->avx512f}, {"avx512bw", k->avx512bw}, {"avx512vl", k->avx512vl},
        {"avx512vnni", k->avx512vnni}, {"avx512bf16", k->avx512bf16},
    };
    int any = 0;
    for (size_t i = 0; i < sizeof feat / sizeof feat[0]; i++)
        if (feat[i].on)
            printf(" %s", feat[i].name), any = 1;
    printf("%s; brand \"%s\"\n", any ? "" : " none", k->brand);
}

/* ---- --verify ---- */

/* The blob's checksums recomputed: OK on standard output and 0, or each damaged region on
 * standard error and 1. */
static int verify_blob(const opts *o, const krt_blob *b)
{
    char self[4096];
    const char *file = o->blob;
    if (!file) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        file = n > 0 ? self : prog;
    }
    if (krt_blob_verify(b, &(krt_say){prog, NULL, 0, NULL}, file) != 0)
        return 1;
    printf("%s: weight blob OK: %u entries, %llu bytes, every checksum matches\n", file,
           b->n_entries, (unsigned long long)b->size);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- non-finite logits ---- */

/* Where the first non-finite logit of a run was: position, token id, value (pos -1: none). */
typedef struct bad_logit {
    int64_t pos, id;
    float v;
} bad_logit;

static void logits_error(const bad_logit *b)
{
    fflush(stdout);
    fatal("the logits at position %lld are not finite (%s at token id %lld); the weights or "
          "the model produce %s", (long long)b->pos, isnan(b->v) ? "NaN" : b->v > 0 ? "+Inf"
          : "-Inf", (long long)b->id, isnan(b->v) ? "NaN" : "infinities");
}

/* Whether the logits row of position pos holds a NaN or an infinity (then *b says where):
 * sampling from it would give token 0 or garbage, silently. One pass over the bits that the
 * compiler vectorizes (krt_nonfinite_at). */
static int bad_row(const float *row, int64_t pos, bad_logit *b)
{
    int64_t id = krt_nonfinite_at(row, kiln_model.vocab);
    if (id < 0)
        return 0;
    *b = (bad_logit){pos, id, row[id]};
    return 1;
}

/* Ends the program when the row about to be sampled from is not finite. */
static void check_logits(const float *row, int64_t pos)
{
    bad_logit b;
    if (bad_row(row, pos, &b))
        logits_error(&b);
}

/* ---- the command line ---- */

static void parse_args(opts *o, int argc, char **argv)
{
    const char *tokens = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char name[64];
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            a = name;
            val = eq + 1;
        }
#define FLAG(s) (strcmp(a, s) == 0)
#define VALUE() (val ? val : (i + 1 < argc ? argv[++i] : (usage_error("%s needs a value", a), "")))
        if (FLAG("-h") || FLAG("--help")) {
            help();
            exit(0);
        } else if (FLAG("--cpu") && !val) {
            print_cpu();
            exit(0);
        } else if (FLAG("--tokens")) {
            tokens = VALUE();
        } else if (FLAG("--prompt")) {
            o->prompt = VALUE();
        } else if (FLAG("-i") || (FLAG("--interactive") && !val)) {
            o->interactive = 1;
        } else if (FLAG("--ignore-eos") && !val) {
            o->ignore_eos = 1;
        } else if (FLAG("--logits")) {
            o->logits = VALUE();
            if (!*o->logits)
                usage_error("--logits: empty file name");
        } else if (FLAG("-n")) {
            o->n_gen = parse_int(VALUE(), 0, INT32_MAX, "-n");
        } else if (FLAG("--temp")) {
            o->temp = parse_real(VALUE(), 0, 1e30, "--temp");
        } else if (FLAG("--top-p")) {
            o->top_p = parse_real(VALUE(), 0, 1, "--top-p");
            if (o->top_p <= 0)
                usage_error("--top-p: must be greater than 0");
        } else if (FLAG("--top-k")) {
            o->top_k = parse_int(VALUE(), 0, INT32_MAX, "--top-k");
        } else if (FLAG("--min-p")) {
            o->min_p = parse_real(VALUE(), 0, 1, "--min-p");
        } else if (FLAG("--repeat-penalty")) {
            o->repeat_penalty = parse_real(VALUE(), 0, 1e30, "--repeat-penalty");
            if (o->repeat_penalty <= 0)
                usage_error("--repeat-penalty: must be greater than 0");
        } else if (FLAG("--repeat-last-n")) {
            o->repeat_last_n = parse_int(VALUE(), 0, INT32_MAX, "--repeat-last-n");
        } else if (FLAG("--seed")) {
            o->seed = parse_u64(VALUE(), "--seed");
        } else if (FLAG("--set")) {
            parse_set(o, VALUE());
        } else if (FLAG("--threads")) {
            o->threads = parse_int(VALUE(), 1, 4096, "--threads");
        } else if (FLAG("--batch")) {
            o->batch = parse_int(VALUE(), 1, kiln_model.max_batch, "--batch");
        } else if (FLAG("--ctx")) {
            o->ctx = parse_int(VALUE(), 1, ctx_max(), "--ctx");
        } else if (FLAG("--huge-pages")) {
            const char *v = VALUE();
            if (!strcmp(v, "auto") || !strcmp(v, "on") || !strcmp(v, "off"))
                o->huge = !strcmp(v, "on") ? KRT_HUGE_ON : !strcmp(v, "off") ? KRT_HUGE_OFF
                                                                            : KRT_HUGE_AUTO;
            else
                usage_error("--huge-pages: 'auto', 'on' or 'off', not '%s'", v);
        } else if (FLAG("--blob")) {
            o->blob = VALUE();
        } else if (FLAG("--bench-runs")) {
            o->bench_runs = parse_int(VALUE(), 1, 1000000, "--bench-runs");
        } else if (FLAG("--bench-pp")) {
            o->bench_pp = parse_int(VALUE(), 0, ctx_max(), "--bench-pp");
        } else if (FLAG("--bench-tg")) {
            o->bench_tg = parse_int(VALUE(), 0, ctx_max(), "--bench-tg");
        } else if (FLAG("--profile-routing")) {
            o->profile = VALUE();
            if (!*o->profile)
                usage_error("--profile-routing: empty file name");
            if (!has_route_stats())
                usage_error("--profile-routing: the model '%s' has no routed experts",
                            kiln_model.name);
        } else if (FLAG("--verify") && !val) {
            o->verify = 1;
        } else if (FLAG("--stats") && !val) {
            o->stats = 1;
        } else if (FLAG("--bench") && !val) {
            o->bench = 1;
        } else {
            usage_error("unknown option '%s'", argv[i]);
        }
#undef FLAG
#undef VALUE
    }
    if (o->verify) {                                 /* the blob's checksums, nothing else */
        if (tokens || o->prompt || o->interactive || o->logits || o->n_gen >= 0 || o->bench ||
            o->stats || o->profile || o->bench_pp >= 0 || o->bench_tg >= 0)
            usage_error("--verify checks the weight blob and exits; it takes only --blob FILE");
        return;
    }
    if (o->bench_pp >= 0 || o->bench_tg >= 0) {      /* bench.c: a run of its own */
        if (tokens || o->logits || o->n_gen >= 0 || o->bench || o->stats || o->profile ||
            o->prompt || o->interactive)
            usage_error("--bench-pp and --bench-tg do not mix with --tokens, --prompt, -i, "
                        "--logits, -n, --bench, --stats or --profile-routing");
        if (o->bench_pp > o->ctx || o->bench_tg > o->ctx)
            usage_error("--bench-pp %lld / --bench-tg %lld: the context of this run holds %lld "
                        "positions", (long long)o->bench_pp, (long long)o->bench_tg,
                        (long long)o->ctx);
        return;
    }
    if (o->prompt || o->interactive) {               /* text in, text out */
        if (tokens || o->logits || o->bench)
            usage_error("--prompt and -i do not mix with --tokens, --logits or --bench");
        if (o->n_gen < 0)
            o->n_gen = INT32_MAX;                    /* until EOS or the context is full */
        return;
    }
    if (o->ignore_eos)
        usage_error("--ignore-eos applies to --prompt and -i (--tokens never stops at EOS)");
    if (!tokens)
        usage_error("--tokens (or --prompt, or -i) is required");
    parse_tokens(o, tokens);
    if (o->n_gen < 0)
        o->n_gen = o->logits ? 0 : 16;
}

/* ---- running ---- */

typedef struct run_state {
    krt_ctx c;
    int64_t written;           /* cache rows the last run wrote (0: the state is all zero) */
} run_state;

static void clear_state(run_state *s)
{
    krt_state_clear(&kiln_model, s->c.state, s->written);
    s->written = 0;
}

/* For bench.c (rt_internal.h): run()'s forward call, only the last row's logits, the cache
 * rows it writes recorded for clear_state. */
static const float *bench_forward(void *run_state_arg, const int32_t *tokens, int64_t pos0,
                                  int64_t T)
{
    run_state *s = run_state_arg;
    s->c.all_logits = 0;
    s->c.logits = NULL;
    kiln_model.forward(&s->c, tokens, (int32_t)pos0, (int32_t)T);
    if (!s->c.logits)
        fatal("internal error: forward did not set the logits");
    s->written = pos0 + T > s->written ? pos0 + T : s->written;
    return s->c.logits + (T - 1) * kiln_model.vocab;
}

static void bench_clear(void *run_state_arg) { clear_state(run_state_arg); }

static void write_row(FILE *f, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        fprintf(f, i ? " %.9g" : "%.9g", (double)x[i]);
    fputc('\n', f);
}

static double now(void);

/* One pass: prompt, then generation. Writes logits rows to logf and generated ids to out
 * when they are not NULL; *prompt_s gets the seconds the prompt took. Returns the number of
 * positions run. A row written to logf that is not finite sets *bad (the first; pos -1:
 * none) and nothing is generated: the caller writes the file whole and then fails; without
 * logf a row sampled from that is not finite ends the program. */
static int64_t run(const opts *o, run_state *s, FILE *logf, FILE *out, double *prompt_s,
                   bad_logit *bad)
{
    bad->pos = -1;
    const krt_model *m = &kiln_model;
    krt_ctx *c = &s->c;
    clear_state(s);            /* the frame needs no clearing: a call writes a value before it reads it */
    int64_t cap = o->ctx, pos = 0;
    const float *last = NULL;      /* the logits of the latest position */
    double t0 = now();
    c->all_logits = logf != NULL;
    while (pos < o->n_tokens) {
        int64_t T = o->n_tokens - pos < o->batch ? o->n_tokens - pos : o->batch;
        c->logits = NULL;
        m->forward(c, o->tokens + pos, (int32_t)pos, (int32_t)T);
        if (!c->logits)
            fatal("internal error: forward did not set the logits");
        if (logf)
            for (int64_t t = 0; t < T; t++) {
                write_row(logf, c->logits + t * m->vocab, m->vocab);
                if (bad->pos < 0)
                    bad_row(c->logits + t * m->vocab, pos + t, bad);
            }
        last = c->logits + (T - 1) * m->vocab;
        pos += T;
        s->written = pos;
    }
    *prompt_s = now() - t0;
    c->all_logits = 0;
    /* the penalty's window never holds more than the ids a run can see */
    int64_t seen = o->n_tokens + (o->n_gen < cap ? o->n_gen : cap);
    krt_sampling so = {o->temp, o->top_p, o->min_p, o->repeat_penalty, o->top_k,
                       o->repeat_last_n < seen ? o->repeat_last_n : seen};
    krt_sampler smp;
    if (krt_sampler_init(&smp, &so, m->vocab, o->seed) != 0)
        fatal("out of memory");
    for (int64_t i = 0; i < o->n_tokens; i++)   /* the prompt counts, as in llama.cpp */
        krt_sampler_accept(&smp, o->tokens[i]);
    int64_t made = 0;
    for (; made < o->n_gen && bad->pos < 0; made++) {   /* not past a row --logits wrote bad */
        check_logits(last, pos - 1);
        int32_t next = krt_sampler_next(&smp, last);
        krt_sampler_accept(&smp, next);
        if (out)
            fprintf(out, made ? " %d" : "%d", (int)next);
        if (made + 1 == o->n_gen)
            break;
        if (pos >= cap) {
            if (out)
                fprintf(stderr, "%s: note: context of %lld positions is full; stopped after %lld "
                                "generated tokens\n", prog, (long long)cap, (long long)made + 1);
            break;
        }
        m->forward(c, &next, (int32_t)pos++, 1);
        s->written = pos;
        last = c->logits;
    }
    krt_sampler_free(&smp);
    if (out && o->n_gen > 0)
        fputc('\n', out);
    return pos;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report_rates(const char *what, int64_t n, double *tps, int64_t runs)
{
    qsort(tps, (size_t)runs, sizeof *tps, cmp_double);
    fprintf(stderr, "bench: %s %lld tokens, %lld runs: tokens/s min %.2f median %.2f max %.2f\n",
            what, (long long)n, (long long)runs, tps[0], tps[runs / 2], tps[runs - 1]);
}

static void bench(const opts *o, run_state *s)
{
    double *all = xcalloc((size_t)o->bench_runs, sizeof *all);
    double *prompt = xcalloc((size_t)o->bench_runs, sizeof *prompt);
    double *gen = xcalloc((size_t)o->bench_runs, sizeof *gen);
    int64_t steps = 0;
    for (int64_t r = 0; r < o->bench_runs; r++) {
        double t0 = now(), ps;
        bad_logit bad;
        steps = run(o, s, NULL, NULL, &ps, &bad);
        double dt = now() - t0;
        all[r] = dt > 0 ? (double)steps / dt : INFINITY;
        prompt[r] = ps > 0 ? (double)o->n_tokens / ps : INFINITY;
        gen[r] = dt - ps > 0 ? (double)(steps - o->n_tokens) / (dt - ps) : INFINITY;
    }
    fprintf(stderr, "bench: batch %lld, threads %lld\n", (long long)o->batch,
            (long long)o->threads);
    report_rates("prompt", o->n_tokens, prompt, o->bench_runs);
    if (steps > o->n_tokens)
        report_rates("generation", steps - o->n_tokens, gen, o->bench_runs);
    report_rates("all", steps, all, o->bench_runs);
    free(all), free(prompt), free(gen);
}

static void report_stats(const opts *o, const krt_ctx *c, const krt_blob *b)
{
    const krt_model *m = &kiln_model;
    for (int i = 0; i < m->n_stats; i++) {
        if (is_route_stat(m->stat_names[i]))
            continue;          /* --profile-routing writes these */
        if (c->stat_count[i] > 0)
            fprintf(stderr, "stat %s %.6f (%.0f samples)\n", m->stat_names[i],
                    c->stat_sum[i] / c->stat_count[i], c->stat_count[i]);
        else
            fprintf(stderr, "stat %s n/a (0 samples)\n", m->stat_names[i]);
    }
    double total = 0;
    for (int i = 0; i < m->n_caches; i++) {
        const krt_cache_desc *k = &m->caches[i];
        /* the capacity in use: --ctx caps the positions below the compiled capacity */
        uint64_t cap = (uint64_t)o->ctx < k->capacity ? (uint64_t)o->ctx : k->capacity;
        double bytes = (double)k->width * (double)cap * (double)krt_cache_elem_bytes(k);
        total += bytes;
        fprintf(stderr, "kv-cache %s: width %llu, capacity %llu, %.0f bytes\n", k->label,
                (unsigned long long)k->width, (unsigned long long)cap, bytes);
    }
    fprintf(stderr, "kv-cache total: %d caches, %.0f bytes (%.2f MiB)", m->n_caches, total,
            total / 1048576.0);
    if (o->ctx < ctx_max())
        fprintf(stderr, " for --ctx %lld of %lld positions", (long long)o->ctx,
                (long long)ctx_max());
    fputc('\n', stderr);
    if (b->huge)
        fprintf(stderr, "weights: %.2f MiB copied onto huge pages, %.2f MiB of them in 2 MiB "
                        "pages\n", (double)b->map_len / 1048576.0, (double)b->huge_bytes / 1048576.0);
    else
        fprintf(stderr, "weights: %.2f MiB mapped from the file (4 KiB pages)\n",
                (double)b->map_len / 1048576.0);
    fprintf(stderr, "frame: %llu bytes (%.2f MiB) for blocks of up to %lld tokens\n",
            (unsigned long long)m->frame_bytes, (double)m->frame_bytes / 1048576.0,
            (long long)m->max_batch);
}

/* ---- text in, text out (--prompt, -i) ---- */

typedef struct text_run {
    const opts *o;
    run_state *s;
    const krt_tok *tok;
    krt_sampler smp;           /* the sampler chain; every id fed or generated is accepted */
    int64_t pos;               /* the next position */
    const float *last;         /* the logits after the latest position */
    int32_t prev;              /* the latest token fed or printed (-1: none) */
    int32_t pending;           /* the last sampled token, not fed yet (-1: none) */
    double prompt_s, eval_s;   /* time in prompt blocks and in decode steps */
    int64_t prompt_tokens, eval_runs;
} text_run;

static krt_tok *open_tokenizer(const krt_blob *b)
{
    if (!b->tokenizer)
        usage_error("this program has no tokenizer, so it takes no text (--prompt, -i): rebuild "
                    "it with kiln build ... --tokenizer FILE (tokenizer.bin, tokenizer.json or a "
                    "GGUF file), or give token ids with --tokens");
    char why[512];
    krt_tok *t;
    if (krt_blob_tokenizer(b, &kiln_model, &t, why, sizeof why) < 0)
        fatal("%s", why);
    return t;
}

/* Feeds ids[0 .. n-1] at the next positions in blocks of --batch (a prompt's time); the
 * sampler accepts them, but the first `known` (generated, accepted then). */
static void feed(text_run *r, const int32_t *ids, int64_t n, int64_t known)
{
    const krt_model *m = &kiln_model;
    double t0 = now();
    r->s->c.all_logits = 0;
    for (int64_t i = 0; i < n;) {
        int64_t T = n - i < r->o->batch ? n - i : r->o->batch;
        r->s->c.logits = NULL;
        m->forward(&r->s->c, ids + i, (int32_t)r->pos, (int32_t)T);
        if (!r->s->c.logits)
            fatal("internal error: forward did not set the logits");
        r->last = r->s->c.logits + (T - 1) * m->vocab;
        r->pos += T, i += T;
        r->s->written = r->pos;
    }
    for (int64_t i = known; i < n; i++)  /* the prompt counts for the penalty, as in llama.cpp */
        krt_sampler_accept(&r->smp, ids[i]);
    if (n > 0)
        r->prev = ids[n - 1];
    r->prompt_s += now() - t0;
    r->prompt_tokens += n;
}

static void put_text(const char *p, size_t n)
{
    if (n && fwrite(p, 1, n, stdout) != n)
        fatal("cannot write to standard output");
    fflush(stdout);
}

/* Samples up to -n tokens after r->last, printing each one's text, each fed back but the
 * last. Returns 1 when the context is full. */
static int generate(text_run *r)
{
    const krt_model *m = &kiln_model;
    for (int64_t made = 0; made < r->o->n_gen; made++) {
        check_logits(r->last, r->pos - 1);
        int32_t next = krt_sampler_next(&r->smp, r->last);
        if (!r->o->ignore_eos && krt_tok_is_eog(r->tok, next))
            return 0;
        krt_sampler_accept(&r->smp, next);
        const char *bytes;
        size_t n = krt_tok_decode(r->tok, r->prev, next, &bytes);
        put_text(bytes, n);
        r->prev = next;
        r->pending = next;
        if (made + 1 == r->o->n_gen)
            break;
        if (r->pos >= r->o->ctx)
            return 1;
        double t0 = now();
        m->forward(&r->s->c, &next, (int32_t)r->pos++, 1);
        r->s->written = r->pos;
        r->last = r->s->c.logits;
        r->pending = -1;
        r->eval_s += now() - t0;
        r->eval_runs++;
    }
    return 0;
}

/* One turn: text encoded (BOS before the first), the last turn's unfed token first, run,
 * then generation; `echo` is printed once the text is known to fit. Returns 0, 1 when the
 * context filled up, 2 when the text did not fit (nothing ran, nothing printed). */
static int turn(text_run *r, const char *text, size_t len, int echo)
{
    int add_bos = r->pos == 0 && r->pending < 0;
    int64_t n = krt_tok_encode(r->tok, text, len, add_bos, NULL, 0);
    if (n < 0)
        fatal("out of memory");
    int32_t *ids = xcalloc((size_t)n + 1, sizeof *ids);
    int64_t k = r->pending >= 0;
    ids[0] = r->pending;
    krt_tok_encode(r->tok, text, len, add_bos, ids + k, n);
    n += k;
    if (n > r->o->ctx - r->pos) {
        if (r->pos == 0)               /* the first text alone does not fit: a usage error */
            usage_error("the text is %lld tokens, but %s holds %lld", (long long)n,
                        r->o->ctx < ctx_max() ? "the context of this run (--ctx)"
                                              : "the model's context", (long long)r->o->ctx);
        free(ids);
        return 2;
    }
    if (echo)
        put_text(text, len);
    r->pending = -1;
    if (n > 0)
        feed(r, ids, n, k);
    free(ids);
    if (r->last == NULL)                 /* nothing at all to continue from */
        return 0;
    return generate(r);
}

static void print_timings(const text_run *r)
{
    double pms = r->prompt_s * 1e3, ems = r->eval_s * 1e3;
    fprintf(stderr, "%s: prompt eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, "
                    "%8.2f tokens per second)\n", prog, pms, (long long)r->prompt_tokens,
            r->prompt_tokens ? pms / (double)r->prompt_tokens : 0.0,
            pms > 0 ? 1e3 * (double)r->prompt_tokens / pms : 0.0);
    fprintf(stderr, "%s:        eval time = %10.2f ms / %5lld runs   (%8.2f ms per token, "
                    "%8.2f tokens per second)\n", prog, ems, (long long)r->eval_runs,
            r->eval_runs ? ems / (double)r->eval_runs : 0.0,
            ems > 0 ? 1e3 * (double)r->eval_runs / ems : 0.0);
    fprintf(stderr, "%s:       total time = %10.2f ms / %5lld tokens\n", prog, pms + ems,
            (long long)(r->prompt_tokens + r->eval_runs));
}

static void context_full(const opts *o)
{
    fprintf(stderr, "%s: note: the context of %lld positions is full; stopping\n", prog,
            (long long)o->ctx);
}

/* --prompt TEXT, -i: the whole run. */
static void run_text(const opts *o, run_state *s, const krt_blob *b)
{
    text_run r = {.o = o, .s = s, .prev = -1, .pending = -1};
    krt_tok *tok = open_tokenizer(b);
    r.tok = tok;
    krt_sampling so = {o->temp, o->top_p, o->min_p, o->repeat_penalty, o->top_k,
                       o->repeat_last_n < o->ctx ? o->repeat_last_n : o->ctx};
    if (krt_sampler_init(&r.smp, &so, kiln_model.vocab, o->seed) != 0)
        fatal("out of memory");
    int full = 0;
    if (o->prompt) {
        full = turn(&r, o->prompt, strlen(o->prompt), !o->interactive);
        put_text("\n", 1);                  /* the first text always fits, or exits */
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int tty = isatty(STDIN_FILENO);      /* a person typing: ask, as llama.cpp does */
    while (o->interactive && !full && (!tty || fputs("> ", stderr) >= 0) &&
           (got = getline(&line, &cap, stdin)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            got--;
        full = turn(&r, line, (size_t)got, 0);
        if (full != 2)
            put_text("\n", 1);
    }
    free(line);
    if (full)
        context_full(o);
    print_timings(&r);
    krt_sampler_free(&r.smp);
    krt_tok_free(tok);
}

int main(int argc, char **argv)
{
    const krt_model *m = &kiln_model;
    if (argc > 0 && argv[0] && argv[0][0]) {
        const char *slash = strrchr(argv[0], '/');
        prog = slash ? slash + 1 : argv[0];
    }
    opts o = {.n_gen = -1, .temp = 0.0, .top_p = 1.0, .repeat_penalty = 1.0, .repeat_last_n = 64,
              .threads = krt_cpu_cores(), .bench_runs = 5,
              .huge = KRT_HUGE_AUTO,
              .batch = m->max_batch, .ctx = ctx_max(), .bench_pp = -1, .bench_tg = -1};
    o.rtparams = xcalloc((size_t)(m->n_rtparams > 0 ? m->n_rtparams : 1), sizeof(float));
    for (int i = 0; i < m->n_rtparams; i++)
        o.rtparams[i] = m->rtparam_defaults[i];
    krt_cpu_init();   /* the kernel path, before any kernel runs (and for --cpu) */
    parse_args(&o, argc, argv);

    krt_blob blob;
    if (krt_blob_open(&blob, prog, o.blob, m) < 0)
        return 1;
    if (o.verify)
        return verify_blob(&o, &blob);
    if (krt_blob_huge(&blob, o.huge) != 0 && o.huge == KRT_HUGE_ON)
        fprintf(stderr, "%s: note: --huge-pages on: no memory for the copy; the weights stay "
                        "where they are mapped\n", prog);

    run_state s;
    memset(&s, 0, sizeof s);
    void *frame = MAP_FAILED, *state = MAP_FAILED;
    /* the frame and the state are mapped, not allocated and zeroed: untouched pages cost
     * nothing, so only the positions a run reaches take memory (the attention scores of a
     * long context included; page-aligned, so 64-byte aligned too) */
    size_t frame_len = (size_t)(m->frame_bytes ? m->frame_bytes : 64);
    size_t state_len = (size_t)(m->state_bytes ? m->state_bytes : 64);
    if (m->frame_bytes > SIZE_MAX / 2 || m->state_bytes > SIZE_MAX / 2 ||
        (frame = mmap(NULL, frame_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                      0)) == MAP_FAILED ||
        (state = mmap(NULL, state_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                      0)) == MAP_FAILED)
        fatal("cannot allocate the working memory (%llu bytes) and KV caches (%llu bytes)",
              (unsigned long long)m->frame_bytes, (unsigned long long)m->state_bytes);
    s.c.w = blob.w;
    s.c.frame = frame;
    s.c.state = state;
    s.c.rtparams = o.rtparams;
    s.c.pool = krt_pool_new((int)o.threads);   /* NULL for one thread */
    /* each thread's scratch (the kernels' own buffers), a whole number of cache lines apart;
     * mapped, so untouched pages cost nothing */
    int nthreads = krt_pool_size(s.c.pool);
    s.c.scratch_stride = (m->scratch_bytes + 63) / 64 * 64;
    size_t scratch_len = (size_t)(s.c.scratch_stride * (uint64_t)nthreads);
    void *scratch = mmap(NULL, scratch_len ? scratch_len : 64, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->scratch_bytes > SIZE_MAX / 4096 || scratch == MAP_FAILED)
        fatal("cannot allocate the kernels' scratch (%llu bytes a thread)",
              (unsigned long long)m->scratch_bytes);
    s.c.scratch = scratch;
    if (s.c.pool && !(s.c.sched = krt_sched_new(nthreads)))
        fatal("out of memory");
    s.c.stat_sum = xcalloc((size_t)(m->n_stats > 0 ? m->n_stats : 1), sizeof(double));
    s.c.stat_count = xcalloc((size_t)(m->n_stats > 0 ? m->n_stats : 1), sizeof(double));
    if (o.bench_pp >= 0 || o.bench_tg >= 0)
        return krt_bench(&(krt_bench_run){&s, bench_forward, bench_clear, o.threads, o.batch,
                                          prog},
                         o.bench_pp > 0 ? o.bench_pp : 0, o.bench_tg > 0 ? o.bench_tg : 0);

    if (o.prompt || o.interactive) {   /* the process ends here: its memory with it */
        run_text(&o, &s, &blob);
        if (o.stats)
            report_stats(&o, &s.c, &blob);
        if (o.profile)
            write_profile(o.profile, &s.c);
        krt_pool_free(s.c.pool);
        return 0;
    }

    FILE *logf = NULL;
    char *tmp = NULL;
    struct stat st;
    if (o.logits && strcmp(o.logits, "-") == 0) {
        logf = stdout;
    } else if (o.logits && stat(o.logits, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device or FIFO (/dev/null): write to it; renaming onto it would replace it */
        if (S_ISDIR(st.st_mode))
            fatal("cannot write %s: it is a folder", o.logits);
        if (!(logf = fopen(o.logits, "w")))
            fatal("cannot write %s: %s", o.logits, strerror(errno));
    } else if (o.logits) {
        tmp = xcalloc(strlen(o.logits) + 5, 1);
        sprintf(tmp, "%s.tmp", o.logits);
        if (!(logf = fopen(tmp, "w")))
            fatal("cannot write %s: %s", tmp, strerror(errno));
        partial_file = tmp;
    }
    double prompt_s;
    bad_logit nonfinite;
    run(&o, &s, logf, stdout, &prompt_s, &nonfinite);
    if (logf && logf != stdout && !tmp) {
        int bad = ferror(logf);
        if (fclose(logf) != 0 || bad)
            fatal("cannot write %s", o.logits);
    }
    if (tmp) {
        int bad = ferror(logf);
        if (fclose(logf) != 0 || bad)
            fatal("cannot write %s", tmp);
        if (rename(tmp, o.logits) != 0) {
            fatal("cannot rename %s to %s: %s", tmp, o.logits, strerror(errno));
        }
        partial_file = NULL;
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        fatal("cannot write to standard output");
    if (nonfinite.pos >= 0)    /* the rows are written, whole: then the error */
        logits_error(&nonfinite);
    if (o.stats)
        report_stats(&o, &s.c, &blob);
    if (o.profile)
        write_profile(o.profile, &s.c);
    if (o.bench)
        bench(&o, &s);

    free(tmp);
    free(s.c.stat_sum), free(s.c.stat_count);
    munmap(frame, frame_len);
    munmap(state, state_len);
    munmap(scratch, scratch_len ? scratch_len : 64);
    free(o.rtparams), free(o.tokens);
    krt_pool_free(s.c.pool);
    krt_sched_free(s.c.sched);
    krt_blob_close(&blob);
    return 0;
}
