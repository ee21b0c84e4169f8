/* bench.c - `kiln bench SPEC --weights FILE ...`: the project's benchmark, in the manner of
 * llama.cpp's llama-bench, with the machine's own limits beside the results.
 *
 * It builds one program per weight type by running this very kiln (/proc/self/exe) as
 * `kiln build`, so what is measured is exactly what a user gets; then, for R rounds, it
 * measures interleaved, one thing after another: the machine (runtime/probe.c: read
 * bandwidth with 4 KiB and with huge pages, multiply-add peak) at each thread count, and
 * each program at each thread count (PROG --bench-pp P --bench-tg N --threads T, which
 * prints one kiln-bench line: runtime/bench.c). Interleaving spreads the drift of a shared,
 * noisy machine over everything alike, so the ratios (% of bandwidth, % of peak) hold even
 * when the absolute figures move between rounds. Medians with min and max are reported, as
 * markdown tables or JSON records. The formulas are in the --help text below.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "../runtime/cpu.h"
#include "../runtime/probe.h"
#include "bench.h"

#define BENCH_MAX_LIST 64          /* thread counts */
#define BENCH_MAX_DEFINES 256
#define BENCH_PROBE_PASSES 3       /* per probe call: the best of them (probe.h) */

static const char bench_help_text[] =
    "NAME\n"
    "    kiln bench - build a spec into programs and measure their prompt and decode speed\n"
    "    against the machine's own limits\n"
    "\n"
    "SYNOPSIS\n"
    "    kiln bench SPEC --weights FILE [-D name=value]... [--wtype LIST] [-t LIST]\n"
    "               [-p P] [-n N] [-r R] [-o md|json] [--json FILE] [--probe-mib M]\n"
    "               [--keep DIR] [-- BUILD-FLAGS...]\n"
    "\n"
    "DESCRIPTION\n"
    "    In the manner of llama.cpp's llama-bench. kiln bench first builds one program per\n"
    "    weight type by running this kiln as\n"
    "        kiln build SPEC --weights FILE -D name=value... --wtype T -o DIR/prog-T\n"
    "            BUILD-FLAGS\n"
    "    in a temporary folder, removed at the end (progress and build times on standard\n"
    "    error). A build that fails is reported with its message and skipped; the others\n"
    "    are still measured. Then it runs R rounds. Each round measures, one after the\n"
    "    other, so that the drift of a shared machine falls on everything alike:\n"
    "      - the machine, at each thread count T: the read bandwidth of memory with 4 KiB\n"
    "        pages and with transparent huge pages, and the multiply-add peak (below);\n"
    "      - every program at every thread count: PROG --bench-pp P --bench-tg N\n"
    "        --threads T (one untimed call; a prompt of P tokens in blocks of the program's\n"
    "        --batch, only the last row's logits computed; then, from empty caches, N greedy\n"
    "        decode steps of one token).\n"
    "    The report goes to standard output; every figure is the median over the rounds,\n"
    "    with the min and max (the median of an even count is the mean of the middle two).\n"
    "\n"
    "WHAT IS MEASURED\n"
    "    ppP (prompt)  tok/s = P / pp_s, pp_s the seconds the prompt took.\n"
    "                  GFLOP/s = 2 * (macs_all * P + macs_logits * ceil(P / batch))\n"
    "                            / pp_s / 1e9, with pp_s = P / median tok/s;\n"
    "                  % FMA = GFLOP/s / (median FMA peak at T threads) * 100.\n"
    "    tgN (decode)  tok/s = N / tg_s, tg_s the seconds of the N steps.\n"
    "                  GB/s = decode_bytes * median tok/s / 1e9;\n"
    "                  % bw = GB/s / (median 4 KiB-page read bandwidth at T threads) * 100.\n"
    "    decode_bytes, macs_all and macs_logits are the compiler's count of one token,\n"
    "    printed by the program: the weight bytes a decoded token reads (the matrix products\n"
    "    and one embedding row), the multiply-adds of the products every row of a block\n"
    "    runs, and those only the rows whose logits are wanted run (the classifier: once per\n"
    "    block of a prompt). The weights of data-dependent experts (decode_bytes_experts,\n"
    "    every expert counted) are not in decode_bytes, while their multiply-adds are all in\n"
    "    macs_all: for a mixture of experts GB/s and % bw are lower bounds, GFLOP/s and\n"
    "    % FMA upper bounds.\n"
    "    read_4k, read_huge  GB/s (1e9 bytes/s) reading an M MiB array, mapped 2 MiB-aligned\n"
    "                  and advised MADV_NOHUGEPAGE or MADV_HUGEPAGE, each page written first\n"
    "                  by the thread that reads it; the T threads start together, each reads\n"
    "                  its contiguous share with the widest loads the CPU allows (AVX-512,\n"
    "                  AVX2, else portable) into independent sums, and a pass lasts until\n"
    "                  the last thread ends; the best of 3 passes. For huge pages the report\n"
    "                  gives the share of the array the kernel really backed with them\n"
    "                  (AnonHugePages in /proc/self/smaps).\n"
    "    fma_peak      GFLOP/s of 12 independent multiply-add chains per thread, in\n"
    "                  registers: 512-bit FMA with AVX-512, 256-bit FMA with AVX2 and FMA,\n"
    "                  else 128-bit SSE multiply and add; 2 flops per lane; all T threads\n"
    "                  together; the best of 3 passes.\n"
    "\n"
    "OPTIONS\n"
    "    SPEC            the spec (.kiln) or IR dump to build.\n"
    "    --weights FILE  the checkpoint to build with (safetensors or llama2.c). Required.\n"
    "    -D name=value   a parameter of the spec, given to every build. Repeatable.\n"
    "    --wtype LIST    weight types, comma-separated, one program each: f32, f16, bf16,\n"
    "                    q8_0, q4_0 (as kiln build --wtype takes them). Default f32.\n"
    "    -t, --threads LIST\n"
    "                    thread counts, comma-separated, each 1..4096. Default: the\n"
    "                    number of CPUs online.\n"
    "    -p, --n-prompt P\n"
    "                    prompt tokens, P >= 0; 0 skips the prompt test. Default 128.\n"
    "    -n, --n-gen N   decode steps, N >= 0; 0 skips the decode test. Default 64.\n"
    "                    P and N must each fit the program's context.\n"
    "    -r, --repetitions R\n"
    "                    rounds, R >= 1. Default 5.\n"
    "    -o, --output md|json\n"
    "                    the report on standard output: markdown tables (default) or JSON.\n"
    "    --json FILE     also write the JSON report to FILE (a temporary renamed into\n"
    "                    place; a device or FIFO is written directly).\n"
    "    --probe-mib M   the read probes' array in MiB, 1..65536. Default 1024, far larger\n"
    "                    than any cache.\n"
    "    --keep DIR      build in DIR (made if missing) and keep the programs (prog-T) and\n"
    "                    the build logs (build-T.log) there.\n"
    "    -- BUILD-FLAGS  the rest of the line goes to every kiln build, e.g.\n"
    "                    -- --max-batch 32 --kv-type f16.\n"
    "    -h, --help      this text.\n"
    "    Long options also take the form --option=VALUE.\n"
    "\n"
    "JSON\n"
    "    An array of records, each named by \"test\":\n"
    "    {\"test\": \"cpu\", \"brand\", \"path\" (the kernel path: avx2 or portable),\n"
    "     \"features\", \"read_isa\", \"fma_isa\", \"rounds\", \"probe_bytes\"}\n"
    "    {\"test\": \"read_4k\" or \"read_huge\", \"threads\", \"gb_s_min\", \"gb_s_median\",\n"
    "     \"gb_s_max\", \"huge_page_pct\" (the least share over the rounds; null: unknown)}\n"
    "    {\"test\": \"fma_peak\", \"threads\", \"gflop_s_min\", \"gflop_s_median\",\n"
    "     \"gflop_s_max\"}\n"
    "    {\"test\": \"build\", \"wtype\", \"ok\", \"seconds\", \"error\" (the build's message or\n"
    "     null)}\n"
    "    {\"test\": \"ppP\" or \"tgN\", \"spec\", \"defines\", \"wtype\", \"threads\",\n"
    "     \"tokens\", \"rounds\", \"batch\", \"path\", \"tok_s_min\", \"tok_s_median\",\n"
    "     \"tok_s_max\", \"gb_s\",\n"
    "     \"pct_bandwidth\" (null for pp), \"gflop_s\", \"pct_fma_peak\" (null for tg),\n"
    "     \"decode_bytes\", \"decode_bytes_experts\", \"macs_all\", \"macs_logits\"}\n"
    "    {\"test\": \"run\", \"wtype\", \"threads\", \"error\"}: a program that failed; it is\n"
    "     left out of the results.\n"
    "    A figure that could not be measured is null.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 everything built and ran; 1 a build, a run or a probe failed (the rest is\n"
    "    reported) or the report could not be written; 2 usage error.\n"
    "\n"
    "ENVIRONMENT\n"
    "    KILN_CPU=portable: the programs and the probes use portable code. TMPDIR: where\n"
    "    the temporary folder is made (default /tmp). CC, KILN_RUNTIME_DIR: as for build.\n"
    "\n"
    "EXAMPLE\n"
    "    kiln weights examples/llama.kiln -D dim=768 -D layers=12 -D heads=12 \\\n"
    "        -D kv_heads=12 -D hidden=2048 -D vocab=32000 -D ctx=1024 -D tied=0 -o w.st\n"
    "    kiln bench examples/llama.kiln -D dim=768 -D layers=12 -D heads=12 \\\n"
    "        -D kv_heads=12 -D hidden=2048 -D vocab=32000 -D ctx=1024 -D tied=0 \\\n"
    "        --weights w.st --wtype f32,f16 -t 1,2 -r 3\n";

static const char *const known_wtypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
#define N_WTYPES (sizeof known_wtypes / sizeof known_wtypes[0])

typedef struct bench_opts {
    const char *spec, *weights, *keep, *json_path;
    const char *defines[BENCH_MAX_DEFINES];
    int ndefines;
    const char *wtypes[N_WTYPES];
    int nwtypes;
    int threads[BENCH_MAX_LIST];
    int nthreads;
    int64_t prompt, gen;
    int rounds, json;
    int64_t probe_mib;
    char **extra;              /* after --: flags for every build */
    int nextra;
} bench_opts;

/* The values of one figure over the rounds. */
typedef struct series {
    double *v;
    int n;
} series;

/* One program: its build, its measurements per thread count (tok/s per round), and the
 * costs of one token its kiln-bench line reports. */
typedef struct bench_prog {
    const char *wtype;
    char *path, *log;
    int built, failed;         /* failed: a run failed; the program is left out */
    double build_s;
    char *error;               /* the build's or the failed run's message */
    int failed_threads;
    series *pp, *tg;           /* [nthreads] */
    int64_t batch;
    char kernel_path[32];
    uint64_t decode_bytes, decode_bytes_experts, macs_all, macs_logits;
} bench_prog;

typedef struct bench_machine {
    series *read_4k, *read_huge, *fma;   /* [nthreads] */
    double *huge_share_min;              /* [nthreads]: -1 unknown */
    size_t probe_bytes;
    const char *read_isa, *fma_isa;
    int failed;                          /* some probe could not run */
} bench_machine;

/* One kiln-bench line (runtime/bench.c). */
typedef struct bench_line {
    int64_t pp, tg, threads, batch;
    double pp_s, tg_s;
    char path[32];
    uint64_t decode_bytes, decode_bytes_experts, macs_all, macs_logits;
} bench_line;

/* ---------------------------------------------------------------- small helpers */

/* Set by SIGINT or SIGTERM: the bench stops after the step under way and still removes its
 * folder (which holds a program per weight type: gigabytes for a large model). */
static volatile sig_atomic_t bench_stop;

static void on_stop_signal(int sig)
{
    bench_stop = sig;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static _Noreturn void bench_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln bench: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\ntry 'kiln bench --help'\n");
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "kiln bench: error: out of memory\n");
        exit(1);
    }
    return p;
}

static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The whole file as a string ("" when it cannot be read). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *s = xmalloc(cap);
    if (!f)
        return s;
    size_t got;
    while ((got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) {
                free(s);
                fclose(f);
                return xmalloc(1);
            }
            s = t;
        }
    }
    s[len] = 0;
    fclose(f);
    return s;
}

/* Without trailing white space, in place. */
static char *trim_end(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Each line of text to stderr, indented. */
static void print_indented(const char *text)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        fprintf(stderr, "    %.*s\n", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

static void series_init(series *s, int rounds)
{
    s->v = xmalloc((size_t)rounds * sizeof *s->v);
    s->n = 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* k: 0 the min, 1 the median, 2 the max; NAN for no values. */
static double series_stat(const series *s, int k)
{
    if (s->n == 0)
        return NAN;
    double *v = xmalloc((size_t)s->n * sizeof *v);
    memcpy(v, s->v, (size_t)s->n * sizeof *v);
    qsort(v, (size_t)s->n, sizeof *v, cmp_double);
    double r = k == 0 ? v[0]
             : k == 2 ? v[s->n - 1]
             : s->n % 2 ? v[s->n / 2] : 0.5 * (v[s->n / 2 - 1] + v[s->n / 2]);
    free(v);
    return r;
}

static double series_min(const series *s) { return series_stat(s, 0); }
static double series_median(const series *s) { return series_stat(s, 1); }
static double series_max(const series *s) { return series_stat(s, 2); }

/* ---------------------------------------------------------------- the command line */

/* Whether argv[*i] is this option (short `-x V`, long `--xx V` or `--xx=V`); its value in
 * *val (then *i moves past a separate value). A missing or empty value is a usage error. */
static int opt_value(int argc, char **argv, int *i, const char *short_name,
                     const char *long_name, const char **val)
{
    const char *a = argv[*i];
    const char *name = NULL;
    if (short_name && !strcmp(a, short_name)) {
        name = short_name;
    } else if (long_name) {
        size_t n = strlen(long_name);
        if (!strncmp(a, long_name, n) && a[n] == '=') {
            *val = a + n + 1;
            if (!**val)
                bench_usage("%s needs a value", long_name);
            return 1;
        }
        if (!strcmp(a, long_name))
            name = long_name;
    }
    if (!name)
        return 0;
    if (*i + 1 >= argc || !argv[*i + 1][0])
        bench_usage("%s needs a value", name);
    *val = argv[++*i];
    return 1;
}

static int64_t parse_count(const char *name, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) ||
        x < lo || x > hi)
        bench_usage("%s needs an integer in %lld..%lld, not '%s'", name, (long long)lo,
                    (long long)hi, v);
    return x;
}

static void parse_wtypes(bench_opts *o, const char *list)
{
    o->nwtypes = 0;
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        size_t k = 0;
        while (k < N_WTYPES && (strlen(known_wtypes[k]) != n || strncmp(p, known_wtypes[k], n)))
            k++;
        if (k == N_WTYPES)
            bench_usage("--wtype: unknown weight type '%.*s' (f32, f16, bf16, q8_0, q4_0)",
                        (int)n, p);
        for (int j = 0; j < o->nwtypes; j++)
            if (o->wtypes[j] == known_wtypes[k])
                bench_usage("--wtype: '%s' is listed twice", known_wtypes[k]);
        o->wtypes[o->nwtypes++] = known_wtypes[k];
        if (!p[n])
            break;
        p += n + 1;
    }
}

static void parse_threads(bench_opts *o, const char *list)
{
    o->nthreads = 0;
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        char item[32];
        if (n == 0 || n >= sizeof item)
            bench_usage("-t: '%s' is not a list of thread counts", list);
        memcpy(item, p, n);
        item[n] = 0;
        int t = (int)parse_count("-t", item, 1, 4096);
        for (int j = 0; j < o->nthreads; j++)
            if (o->threads[j] == t)
                bench_usage("-t: %d is listed twice", t);
        if (o->nthreads == BENCH_MAX_LIST)
            bench_usage("-t: at most %d thread counts", BENCH_MAX_LIST);
        o->threads[o->nthreads++] = t;
        if (!p[n])
            break;
        p += n + 1;
    }
}

static void parse_bench_args(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->prompt = 128, o->gen = 64, o->rounds = 5, o->probe_mib = 1024;
    const char *wtypes = "f32", *threads = NULL, *format = "md", *v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_help_text, stdout);
            exit(0);
        } else if (!strcmp(a, "--")) {
            o->extra = argv + i + 1;
            o->nextra = argc - i - 1;
            break;
        } else if (opt_value(argc, argv, &i, NULL, "--weights", &v)) {
            o->weights = v;
        } else if (opt_value(argc, argv, &i, NULL, "--wtype", &v)) {
            wtypes = v;
        } else if (opt_value(argc, argv, &i, "-t", "--threads", &v)) {
            threads = v;
        } else if (opt_value(argc, argv, &i, "-p", "--n-prompt", &v)) {
            o->prompt = parse_count("-p", v, 0, INT32_MAX);
        } else if (opt_value(argc, argv, &i, "-n", "--n-gen", &v)) {
            o->gen = parse_count("-n", v, 0, INT32_MAX);
        } else if (opt_value(argc, argv, &i, "-r", "--repetitions", &v)) {
            o->rounds = (int)parse_count("-r", v, 1, 100000);
        } else if (opt_value(argc, argv, &i, "-o", "--output", &v)) {
            format = v;
        } else if (opt_value(argc, argv, &i, NULL, "--json", &v)) {
            o->json_path = v;
        } else if (opt_value(argc, argv, &i, NULL, "--probe-mib", &v)) {
            o->probe_mib = parse_count("--probe-mib", v, 1, 65536);
        } else if (opt_value(argc, argv, &i, NULL, "--keep", &v)) {
            o->keep = v;
        } else if (!strncmp(a, "-D", 2)) {
            const char *def = a[2] ? a + 2 : i + 1 < argc ? argv[++i] : NULL;
            const char *eq = def ? strchr(def, '=') : NULL;
            if (!eq || eq == def || !eq[1])
                bench_usage("-D needs name=value, not '%s'", def ? def : "");
            if (o->ndefines == BENCH_MAX_DEFINES)
                bench_usage("too many -D options (at most %d)", BENCH_MAX_DEFINES);
            o->defines[o->ndefines++] = def;
        } else if (a[0] == '-' && a[1]) {
            bench_usage("unknown option '%s'", a);
        } else if (!o->spec) {
            o->spec = a;
        } else {
            bench_usage("unexpected argument '%s' (one spec at a time)", a);
        }
    }
    if (!o->spec)
        bench_usage("bench needs a spec file");
    if (!o->weights)
        bench_usage("bench needs --weights FILE (use 'kiln weights' to make test weights)");
    if (!strcmp(format, "json"))
        o->json = 1;
    else if (strcmp(format, "md"))
        bench_usage("-o must be md or json, not '%s'", format);
    parse_wtypes(o, wtypes);
    if (threads) {
        parse_threads(o, threads);
    } else {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads[0] = cpus < 1 ? 1 : cpus > 4096 ? 4096 : (int)cpus;
        o->nthreads = 1;
    }
    if (o->prompt == 0 && o->gen == 0)
        bench_usage("-p 0 and -n 0 leave nothing to measure");
}

/* ---------------------------------------------------------------- running programs */

/* Runs argv (a path, no search) with standard output into out_path and standard error into
 * err_path (NULL: into out_path too). Returns its exit status, 128 + the signal that ended
 * it, or -1 when it could not start. */
static int run_to_files(char *const argv[], const char *out_path, const char *err_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : out;
        if (out < 0 || err < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
            _exit(127);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *how_it_ended(int rc)
{
    return rc < 0 ? xprintf("could not start: %s", strerror(errno))
         : rc > 128 ? xprintf("killed by signal %d", rc - 128)
                    : xprintf("exit %d", rc);
}

/* This kiln's own executable, for the builds. */
static char *self_exe(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return xprintf("/proc/self/exe");
    buf[n] = 0;
    return xprintf("%s", buf);
}

/* The folder to build in: --keep DIR (made if missing), else a new temporary one. NULL
 * after reporting. */
static char *work_dir(const bench_opts *o)
{
    if (o->keep) {
        struct stat st;
        if (mkdir(o->keep, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "kiln bench: error: cannot make %s: %s\n", o->keep, strerror(errno));
            return NULL;
        }
        if (stat(o->keep, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "kiln bench: error: --keep %s: not a folder\n", o->keep);
            return NULL;
        }
        return xprintf("%s", o->keep);
    }
    const char *tmp = getenv("TMPDIR");
    char *dir = xprintf("%s/kiln-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "kiln bench: error: cannot make a temporary folder %s: %s\n", dir,
                strerror(errno));
        free(dir);
        return NULL;
    }
    return dir;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "kiln bench: warning: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* kiln build SPEC --weights FILE -D ... --wtype T -o DIR/prog-T BUILD-FLAGS, its output
 * into DIR/build-T.log. */
static void build_prog(const bench_opts *o, const char *kiln, const char *dir, bench_prog *p)
{
    p->path = xprintf("%s/prog-%s", dir, p->wtype);
    p->log = xprintf("%s/build-%s.log", dir, p->wtype);
    int n = 0;
    char **argv = xmalloc((size_t)(12 + 2 * o->ndefines + o->nextra) * sizeof *argv);
    argv[n++] = (char *)kiln;
    argv[n++] = "build";
    argv[n++] = (char *)o->spec;
    argv[n++] = "--weights";
    argv[n++] = (char *)o->weights;
    for (int d = 0; d < o->ndefines; d++) {
        argv[n++] = "-D";
        argv[n++] = (char *)o->defines[d];
    }
    argv[n++] = "--wtype";
    argv[n++] = (char *)p->wtype;
    argv[n++] = "-o";
    argv[n++] = p->path;
    for (int e = 0; e < o->nextra; e++)
        argv[n++] = o->extra[e];
    argv[n] = NULL;
    fprintf(stderr, "bench: building %s ...\n", p->wtype);
    double t0 = now_s();
    int rc = run_to_files(argv, p->log, NULL);
    p->build_s = now_s() - t0;
    free(argv);
    if (bench_stop)            /* the build was interrupted too: no failure to report */
        return;
    char *out = trim_end(slurp(p->log));
    if (rc == 0) {
        p->built = 1;
        fprintf(stderr, "bench: built %s in %.2f s\n", p->wtype, p->build_s);
        if (*out)
            print_indented(out);
        free(out);
        return;
    }
    char *how = how_it_ended(rc);
    fprintf(stderr, "bench: the %s build failed (%s); %s is skipped:\n", p->wtype, how,
            p->wtype);
    print_indented(*out ? out : "(no message)");
    p->error = *out ? out : xprintf("kiln build: %s", how);
    if (p->error != out)
        free(out);
    free(how);
}

/* Parses the program's kiln-bench line; 0, or -1 when there is none, a key is missing or a
 * value is not of its key's kind. Unknown keys are skipped (a newer program may add some). */
static int parse_bench_line(const char *text, bench_line *b)
{
    const char *line = text;
    while (strncmp(line, "kiln-bench ", 11)) {
        line = strchr(line, '\n');
        if (!line)
            return -1;
        line++;
    }
    memset(b, 0, sizeof *b);
    enum { KIND_INT, KIND_REAL, KIND_U64, KIND_WORD };
    const struct { const char *key; int kind; void *dst; } keys[] = {
        {"pp", KIND_INT, &b->pp},           {"tg", KIND_INT, &b->tg},
        {"threads", KIND_INT, &b->threads}, {"batch", KIND_INT, &b->batch},
        {"pp_s", KIND_REAL, &b->pp_s},      {"tg_s", KIND_REAL, &b->tg_s},
        {"path", KIND_WORD, b->path},       {"decode_bytes", KIND_U64, &b->decode_bytes},
        {"decode_bytes_experts", KIND_U64, &b->decode_bytes_experts},
        {"macs_all", KIND_U64, &b->macs_all}, {"macs_logits", KIND_U64, &b->macs_logits},
    };
    const int nkeys = (int)(sizeof keys / sizeof keys[0]);
    int seen = 0;              /* a bit per key */
    for (const char *p = line + 11; *p && *p != '\n';) {
        size_t n = strcspn(p, " \n");
        const char *eq = memchr(p, '=', n);
        char value[64];
        size_t klen = eq ? (size_t)(eq - p) : n, vlen = eq ? n - klen - 1 : 0;
        for (int k = 0; eq && k < nkeys; k++) {
            if (strlen(keys[k].key) != klen || strncmp(p, keys[k].key, klen))
                continue;
            if (vlen == 0 || vlen >= sizeof value || (seen >> k & 1))
                return -1;
            memcpy(value, eq + 1, vlen);
            value[vlen] = 0;
            char *end;
            errno = 0;
            if (keys[k].kind == KIND_INT) {
                *(int64_t *)keys[k].dst = strtoll(value, &end, 10);
            } else if (keys[k].kind == KIND_REAL) {
                double d = strtod(value, &end);
                *(double *)keys[k].dst = d;
                errno = isfinite(d) ? errno : ERANGE;
            } else if (keys[k].kind == KIND_U64) {
                *(uint64_t *)keys[k].dst = strtoull(value, &end, 10);
                errno = value[0] >= '0' && value[0] <= '9' ? errno : EINVAL;
            } else if (vlen < sizeof b->path) {   /* the one word: the kernel path */
                memcpy(keys[k].dst, value, vlen + 1);
                end = value + vlen;
            } else {
                return -1;
            }
            if (errno || *end)
                return -1;
            seen |= 1 << k;
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    return seen == (1 << nkeys) - 1 ? 0 : -1;
}

/* One run of program p at t threads; its tok/s added to the series. 0, or -1 after
 * reporting (the program is then left out). */
static int run_prog(const bench_opts *o, const char *dir, bench_prog *p, int ti, int round)
{
    int t = o->threads[ti];
    char pp[32], tg[32], th[32];
    snprintf(pp, sizeof pp, "%lld", (long long)o->prompt);
    snprintf(tg, sizeof tg, "%lld", (long long)o->gen);
    snprintf(th, sizeof th, "%d", t);
    char *argv[] = {p->path, "--bench-pp", pp, "--bench-tg", tg, "--threads", th, NULL};
    char *out_path = xprintf("%s/run.out", dir), *err_path = xprintf("%s/run.err", dir);
    int rc = run_to_files(argv, out_path, err_path);
    char *out = slurp(out_path), *err = trim_end(slurp(err_path));
    remove(out_path), remove(err_path);
    free(out_path), free(err_path);
    if (bench_stop) {          /* interrupted with the program: no failure to report */
        free(out), free(err);
        return 0;
    }
    bench_line b;
    int bad = rc != 0 || parse_bench_line(out, &b) != 0 || b.pp != o->prompt ||
              b.tg != o->gen || b.batch < 1 || (o->prompt && !(b.pp_s > 0)) ||
              (o->gen && !(b.tg_s > 0));
    if (bad) {
        char *how = how_it_ended(rc);
        p->error = rc != 0 && *err ? xprintf("%s", err)
                 : xprintf("%s: %s; no well-formed kiln-bench line in its output: %s",
                           p->path, how, trim_end(out));
        fprintf(stderr, "bench: %s at %d thread%s failed (%s); %s is left out:\n", p->wtype,
                t, t == 1 ? "" : "s", how, p->wtype);
        print_indented(p->error);
        p->failed = 1;
        p->failed_threads = t;
        free(how), free(out), free(err);
        return -1;
    }
    if (*err)
        print_indented(err);   /* a note of the program's, worth seeing */
    free(out), free(err);
    p->batch = b.batch;
    snprintf(p->kernel_path, sizeof p->kernel_path, "%s", b.path);
    p->decode_bytes = b.decode_bytes, p->decode_bytes_experts = b.decode_bytes_experts;
    p->macs_all = b.macs_all, p->macs_logits = b.macs_logits;
    char line[256] = "";
    size_t len = 0;
    if (o->prompt) {
        double tps = (double)o->prompt / b.pp_s;
        p->pp[ti].v[p->pp[ti].n++] = tps;
        len += (size_t)snprintf(line + len, sizeof line - len, ", pp%lld %.2f tok/s",
                                (long long)o->prompt, tps);
    }
    if (o->gen) {
        double tps = (double)o->gen / b.tg_s;
        p->tg[ti].v[p->tg[ti].n++] = tps;
        snprintf(line + len, sizeof line - len, ", tg%lld %.2f tok/s", (long long)o->gen, tps);
    }
    fprintf(stderr, "bench: round %d/%d, %s, %d thread%s%s\n", round + 1, o->rounds, p->wtype,
            t, t == 1 ? "" : "s", line);
    return 0;
}

/* ---------------------------------------------------------------- the machine */

static void probe_machine(const bench_opts *o, bench_machine *m, int ti, int round)
{
    int t = o->threads[ti];
    size_t bytes = (size_t)o->probe_mib << 20;
    krt_read_probe r4, rh;
    const char *fma_isa = NULL;
    double g4 = krt_probe_read_gbs(t, bytes, 0, BENCH_PROBE_PASSES, &r4);
    int e4 = errno;
    double gh = krt_probe_read_gbs(t, bytes, 1, BENCH_PROBE_PASSES, &rh);
    int eh = errno;
    double gf = krt_probe_fma_gflops(t, 0, BENCH_PROBE_PASSES, &fma_isa);
    int ef = errno;
    if (g4 > 0)
        m->read_4k[ti].v[m->read_4k[ti].n++] = g4, m->probe_bytes = r4.bytes;
    if (gh > 0) {
        m->read_huge[ti].v[m->read_huge[ti].n++] = gh;
        if (rh.huge_share < 0 || m->huge_share_min[ti] < 0)
            m->huge_share_min[ti] = -1;
        else if (rh.huge_share < m->huge_share_min[ti])
            m->huge_share_min[ti] = rh.huge_share;
    }
    if (gf > 0)
        m->fma[ti].v[m->fma[ti].n++] = gf, m->fma_isa = fma_isa;
    const struct { double v; int err; const char *what; } probes[] = {
        {g4, e4, "read (4 KiB pages)"}, {gh, eh, "read (huge pages)"}, {gf, ef, "FMA"}};
    for (int k = 0; k < 3; k++)
        if (!(probes[k].v > 0)) {
            fprintf(stderr, "kiln bench: error: the %s probe at %d thread%s failed: %s\n",
                    probes[k].what, t, t == 1 ? "" : "s", strerror(probes[k].err));
            m->failed = 1;
        }
    char huge[64];
    if (rh.huge_share >= 0 && gh > 0)
        snprintf(huge, sizeof huge, "%.0f%% of it in huge pages", 100 * rh.huge_share);
    else
        snprintf(huge, sizeof huge, "huge pages not verified");
    fprintf(stderr, "bench: round %d/%d, machine, %d thread%s: read %.2f GB/s (4 KiB pages), "
            "%.2f GB/s (%s%s), FMA %.1f GFLOP/s\n", round + 1, o->rounds, t,
            t == 1 ? "" : "s", g4, gh, huge, gh > 0 && rh.madvise_failed ?
            ", madvise refused" : "", gf);
}

/* ---------------------------------------------------------------- the report */

static json_t *json_num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *json_u64(uint64_t x)
{
    return x <= (uint64_t)INT64_MAX ? json_integer((json_int_t)x) : json_real((double)x);
}

/* The figures of one test of one program at one thread count. */
typedef struct test_figures {
    const series *s;
    double tok_min, tok_med, tok_max;
    double gb_s, pct_bw, gflop_s, pct_fma;   /* NAN where they do not apply */
} test_figures;

static test_figures figures(const bench_opts *o, const bench_machine *m, const bench_prog *p,
                            int ti, int is_pp)
{
    test_figures f;
    f.s = is_pp ? &p->pp[ti] : &p->tg[ti];
    f.tok_min = series_min(f.s), f.tok_med = series_median(f.s), f.tok_max = series_max(f.s);
    f.gb_s = f.pct_bw = f.gflop_s = f.pct_fma = NAN;
    if (is_pp) {
        double blocks = (double)((o->prompt + p->batch - 1) / p->batch);
        double pp_s = (double)o->prompt / f.tok_med;
        f.gflop_s = 2.0 * ((double)p->macs_all * (double)o->prompt +
                           (double)p->macs_logits * blocks) / pp_s / 1e9;
        f.pct_fma = f.gflop_s / series_median(&m->fma[ti]) * 100;
    } else {
        f.gb_s = (double)p->decode_bytes * f.tok_med / 1e9;
        f.pct_bw = f.gb_s / series_median(&m->read_4k[ti]) * 100;
    }
    return f;
}

static json_t *json_report(const bench_opts *o, const bench_machine *m, const bench_prog *progs)
{
    json_t *all = json_array();
    const krt_cpu *cpu = krt_cpu_get();
    json_t *features = json_array();
    const struct { const char *name; int on; } feat[] = {
        {"avx2", cpu->avx2},       {"fma", cpu->fma},           {"f16c", cpu->f16c},
        {"avx512f", cpu->avx512f}, {"avx512bw", cpu->avx512bw}, {"avx512vl", cpu->avx512vl},
    };
    for (size_t k = 0; k < sizeof feat / sizeof feat[0]; k++)
        if (feat[k].on)
            json_array_append_new(features, json_string(feat[k].name));
    json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:I}",
        "test", "cpu", "brand", cpu->brand, "path", krt_path_name(krt_kernel_path),
        "features", features, "read_isa", m->read_isa, "fma_isa", m->fma_isa,
        "rounds", o->rounds, "probe_bytes", (json_int_t)m->probe_bytes));
    for (int ti = 0; ti < o->nthreads; ti++) {
        const char *names[] = {"read_4k", "read_huge"};
        const series *reads[] = {&m->read_4k[ti], &m->read_huge[ti]};
        for (int k = 0; k < 2; k++) {
            double share = k == 0 ? NAN : m->huge_share_min[ti];
            json_array_append_new(all, json_pack("{s:s, s:i, s:o, s:o, s:o, s:o}",
                "test", names[k], "threads", o->threads[ti],
                "gb_s_min", json_num(series_min(reads[k])),
                "gb_s_median", json_num(series_median(reads[k])),
                "gb_s_max", json_num(series_max(reads[k])),
                "huge_page_pct", json_num(k == 1 && share >= 0 && reads[k]->n ? 100 * share
                                                                              : NAN)));
        }
        json_array_append_new(all, json_pack("{s:s, s:i, s:o, s:o, s:o}",
            "test", "fma_peak", "threads", o->threads[ti],
            "gflop_s_min", json_num(series_min(&m->fma[ti])),
            "gflop_s_median", json_num(series_median(&m->fma[ti])),
            "gflop_s_max", json_num(series_max(&m->fma[ti]))));
    }
    for (int w = 0; w < o->nwtypes; w++) {
        const bench_prog *p = &progs[w];
        json_array_append_new(all, json_pack("{s:s, s:s, s:b, s:f, s:o}",
            "test", "build", "wtype", p->wtype, "ok", p->built, "seconds", p->build_s,
            "error", p->built ? json_null() : json_string(p->error)));
        if (p->built && p->failed)
            json_array_append_new(all, json_pack("{s:s, s:s, s:i, s:s}",
                "test", "run", "wtype", p->wtype, "threads", p->failed_threads,
                "error", p->error));
    }
    for (int w = 0; w < o->nwtypes; w++) {
        const bench_prog *p = &progs[w];
        if (!p->built || p->failed)
            continue;
        for (int ti = 0; ti < o->nthreads; ti++)
            for (int is_pp = 1; is_pp >= 0; is_pp--) {
                int64_t tokens = is_pp ? o->prompt : o->gen;
                if (!tokens)
                    continue;
                test_figures f = figures(o, m, p, ti, is_pp);
                char test[32];
                snprintf(test, sizeof test, "%s%lld", is_pp ? "pp" : "tg", (long long)tokens);
                json_t *defines = json_array();
                for (int d = 0; d < o->ndefines; d++)
                    json_array_append_new(defines, json_string(o->defines[d]));
                json_t *r = json_pack("{s:s, s:s, s:o, s:s, s:i, s:I, s:i, s:I, s:s}",
                    "test", test, "spec", o->spec, "defines", defines, "wtype", p->wtype,
                    "threads", o->threads[ti], "tokens", (json_int_t)tokens,
                    "rounds", f.s->n, "batch", (json_int_t)p->batch, "path", p->kernel_path);
                json_object_set_new(r, "tok_s_min", json_num(f.tok_min));
                json_object_set_new(r, "tok_s_median", json_num(f.tok_med));
                json_object_set_new(r, "tok_s_max", json_num(f.tok_max));
                json_object_set_new(r, "gb_s", json_num(f.gb_s));
                json_object_set_new(r, "pct_bandwidth", json_num(f.pct_bw));
                json_object_set_new(r, "gflop_s", json_num(f.gflop_s));
                json_object_set_new(r, "pct_fma_peak", json_num(f.pct_fma));
                json_object_set_new(r, "decode_bytes", json_u64(p->decode_bytes));
                json_object_set_new(r, "decode_bytes_experts", json_u64(p->decode_bytes_experts));
                json_object_set_new(r, "macs_all", json_u64(p->macs_all));
                json_object_set_new(r, "macs_logits", json_u64(p->macs_logits));
                json_array_append_new(all, r);
            }
    }
    return all;
}

/* "median [min-max]" with `digits` decimals, or "-" without values. */
static void fmt_spread(char *buf, size_t size, const series *s, int digits)
{
    if (s->n == 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.*f [%.*f-%.*f]", digits, series_median(s), digits,
                 series_min(s), digits, series_max(s));
}

static void fmt_num(char *buf, size_t size, double x, int digits)
{
    if (isfinite(x))
        snprintf(buf, size, "%.*f", digits, x);
    else
        snprintf(buf, size, "%s", "");
}

static void md_report(FILE *out, const bench_opts *o, const bench_machine *m,
                      const bench_prog *progs)
{
    const krt_cpu *cpu = krt_cpu_get();
    fprintf(out, "kiln bench: %s", o->spec);
    for (int d = 0; d < o->ndefines; d++)
        fprintf(out, " -D %s", o->defines[d]);
    for (int e = 0; e < o->nextra; e++)
        fprintf(out, "%s%s", e ? " " : " -- ", o->extra[e]);
    fprintf(out, "\n\ncpu: %s; kernel path %s; probes: %s loads over %.0f MiB, %s multiply-add; "
            "%d round%s, median [min-max]\n\n", *cpu->brand ? cpu->brand : "(no brand)",
            krt_path_name(krt_kernel_path), m->read_isa, (double)m->probe_bytes / 1048576.0,
            m->fma_isa, o->rounds, o->rounds == 1 ? "" : "s");
    fprintf(out, "| threads | read, 4 KiB pages GB/s | read, huge pages GB/s | huge pages used "
                 "| FMA peak GFLOP/s |\n| ---: | ---: | ---: | ---: | ---: |\n");
    for (int ti = 0; ti < o->nthreads; ti++) {
        char r4[64], rh[64], fm[64], share[32];
        fmt_spread(r4, sizeof r4, &m->read_4k[ti], 2);
        fmt_spread(rh, sizeof rh, &m->read_huge[ti], 2);
        fmt_spread(fm, sizeof fm, &m->fma[ti], 1);
        if (m->huge_share_min[ti] >= 0 && m->read_huge[ti].n)
            snprintf(share, sizeof share, "%.0f%%", 100 * m->huge_share_min[ti]);
        else
            snprintf(share, sizeof share, "unknown");
        fprintf(out, "| %d | %s | %s | %s | %s |\n", o->threads[ti], r4, rh, share, fm);
    }
    const char *model = strrchr(o->spec, '/') ? strrchr(o->spec, '/') + 1 : o->spec;
    int measured = 0;
    for (int w = 0; w < o->nwtypes; w++)
        measured |= progs[w].built && !progs[w].failed;
    if (!measured)
        fprintf(out, "\nno program was measured\n");
    else
        fprintf(out, "\n| model | weights/token | wtype | threads | test | tok/s | GB/s | "
                     "%% bw | GFLOP/s | %% FMA |\n| --- | ---: | --- | ---: | --- | ---: | ---: "
                     "| ---: | ---: | ---: |\n");
    uint64_t expert_bytes = 0;
    for (int w = 0; w < o->nwtypes; w++) {
        const bench_prog *p = &progs[w];
        if (!p->built || p->failed)
            continue;
        expert_bytes = p->decode_bytes_experts > expert_bytes ? p->decode_bytes_experts
                                                              : expert_bytes;
        double mib = (double)p->decode_bytes / 1048576.0;
        for (int ti = 0; ti < o->nthreads; ti++)
            for (int is_pp = 1; is_pp >= 0; is_pp--) {
                int64_t tokens = is_pp ? o->prompt : o->gen;
                if (!tokens)
                    continue;
                test_figures f = figures(o, m, p, ti, is_pp);
                char tps[96], gb[32], bw[32], gf[32], pf[32];
                fmt_spread(tps, sizeof tps, f.s, 2);
                fmt_num(gb, sizeof gb, f.gb_s, 2);
                fmt_num(bw, sizeof bw, f.pct_bw, 1);
                fmt_num(gf, sizeof gf, f.gflop_s, 2);
                fmt_num(pf, sizeof pf, f.pct_fma, 1);
                fprintf(out, "| %s | %.*f MiB | %s | %d | %s%lld | %s | %s | %s | %s | %s |\n",
                        model, mib < 10 ? 2 : 1, mib, p->wtype, o->threads[ti],
                        is_pp ? "pp" : "tg", (long long)tokens, tps, gb, bw, gf, pf);
            }
    }
    if (expert_bytes)
        fprintf(out, "\nGB/s and %% bw count no weights of data-dependent experts (lower "
                     "bounds); all experts would add up to %.1f MiB per token.\n",
                (double)expert_bytes / 1048576.0);
    for (int w = 0; w < o->nwtypes; w++) {
        const bench_prog *p = &progs[w];
        if (!p->built || p->failed) {
            char *first = xprintf("%s", p->error ? p->error : "");
            first[strcspn(first, "\n")] = 0;
            fprintf(out, "\n%s: %s: %s", p->wtype, p->built ? "failed to run" : "not built",
                    first);
            free(first);
        }
    }
    for (int w = 0; w < o->nwtypes; w++)
        if (!progs[w].built || progs[w].failed) {
            fputc('\n', out);
            break;
        }
}

/* The JSON into --json FILE, through base/outfile.c. 0, or -1 after reporting. */
static int write_json_file(const char *path, const char *text)
{
    outfile f;
    if (outfile_open(&f, path, 0644, 0) != 0)
        return -1;
    if (outfile_write(&f, text, strlen(text)) != 0 || outfile_write(&f, "\n", 1) != 0) {
        outfile_abort(&f);
        return -1;
    }
    return outfile_commit(&f);
}

/* ---------------------------------------------------------------- the command */

int bench_main(int argc, char **argv)
{
    bench_opts o;
    parse_bench_args(argc, argv, &o);
    krt_cpu_init();            /* the path the programs take, as they will see it */
    char *kiln = self_exe();
    char *dir = work_dir(&o);
    if (!dir)
        return 1;
    catch_stop_signals();
    fprintf(stderr, "bench: building in %s\n", dir);

    bench_prog *progs = xmalloc((size_t)o.nwtypes * sizeof *progs);
    int status = 0, any_built = 0;
    for (int w = 0; w < o.nwtypes; w++) {
        bench_prog *p = &progs[w];
        p->wtype = o.wtypes[w];
        if (!bench_stop)
            build_prog(&o, kiln, dir, p);
        status |= !p->built;
        any_built |= p->built;
        p->pp = xmalloc((size_t)o.nthreads * sizeof *p->pp);
        p->tg = xmalloc((size_t)o.nthreads * sizeof *p->tg);
        for (int ti = 0; ti < o.nthreads; ti++)
            series_init(&p->pp[ti], o.rounds), series_init(&p->tg[ti], o.rounds);
    }

    bench_machine m = {.read_isa = krt_probe_read_isa(), .fma_isa = krt_probe_fma_isa()};
    m.read_4k = xmalloc((size_t)o.nthreads * sizeof *m.read_4k);
    m.read_huge = xmalloc((size_t)o.nthreads * sizeof *m.read_huge);
    m.fma = xmalloc((size_t)o.nthreads * sizeof *m.fma);
    m.huge_share_min = xmalloc((size_t)o.nthreads * sizeof *m.huge_share_min);
    for (int ti = 0; ti < o.nthreads; ti++) {
        series_init(&m.read_4k[ti], o.rounds), series_init(&m.read_huge[ti], o.rounds);
        series_init(&m.fma[ti], o.rounds);
        m.huge_share_min[ti] = 1;
    }
    if (!any_built)
        fprintf(stderr, "bench: no program was built; measuring the machine only\n");

    for (int r = 0; r < o.rounds && !bench_stop; r++) {
        for (int ti = 0; ti < o.nthreads && !bench_stop; ti++)
            probe_machine(&o, &m, ti, r);
        for (int w = 0; w < o.nwtypes; w++)
            for (int ti = 0; ti < o.nthreads && !bench_stop; ti++)
                if (progs[w].built && !progs[w].failed && run_prog(&o, dir, &progs[w], ti, r))
                    status = 1;
    }
    status |= m.failed;
    if (bench_stop) {
        fprintf(stderr, "bench: stopped by signal %d%s\n", (int)bench_stop,
                o.keep ? "" : "; removing the build folder");
        if (!o.keep)
            nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 128 + bench_stop;
    }

    json_t *report = json_report(&o, &m, progs);
    char *text = json_dumps(report, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(report);
    if (!text) {
        fprintf(stderr, "kiln bench: error: out of memory\n");
        return 1;
    }
    if (o.json)
        printf("%s\n", text);
    else
        md_report(stdout, &o, &m, progs);
    if (o.json_path && write_json_file(o.json_path, text) != 0)
        status = 1;
    free(text);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kiln bench: error: cannot write to standard output\n");
        status = 1;
    }

    if (!o.keep && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "kiln bench: warning: cannot remove %s: %s\n", dir, strerror(errno));
    for (int w = 0; w < o.nwtypes; w++) {
        bench_prog *p = &progs[w];
        for (int ti = 0; ti < o.nthreads; ti++)
            free(p->pp[ti].v), free(p->tg[ti].v);
        free(p->pp), free(p->tg), free(p->path), free(p->log), free(p->error);
    }
    for (int ti = 0; ti < o.nthreads; ti++)
        free(m.read_4k[ti].v), free(m.read_huge[ti].v), free(m.fma[ti].v);
    free(m.read_4k), free(m.read_huge), free(m.fma), free(m.huge_share_min);
    free(progs), free(dir), free(kiln);
    return status ? 1 : 0;
}
