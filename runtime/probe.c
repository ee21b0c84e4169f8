/* probe.c - the machine probes of probe.h: DRAM read bandwidth and register-resident
 * multiply-add peak, on any number of threads.
 *
 * The vector loops are compiled for AVX-512 or AVX2 through target attributes only, so the
 * rest of the file (and whatever links it) stays baseline x86-64, and a loop runs only when
 * cpu.h saw the CPU and the OS support it. The threads of a probe meet at a barrier before
 * each pass and each notes its own start and end; a pass lasts from the earliest start to
 * the latest end, so a straggler counts, as it does for a program split across threads.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE    /* MAP_ANONYMOUS, MADV_HUGEPAGE */

#include "probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PROBE_X86 1
#include <immintrin.h>
#define PROBE_AVX512 __attribute__((target("avx512f")))
#define PROBE_AVX2 __attribute__((target("avx2")))
#define PROBE_FMA256 __attribute__((target("avx2,fma")))
#endif

#define PROBE_ALIGN ((size_t)2 << 20)   /* a huge page: the array starts on one */
#define PROBE_PAGE ((size_t)4096)       /* each thread's share is whole pages */
#define PROBE_MAX_PASSES 64
#define PROBE_FMA_CHAINS 12             /* > latency x pipes (4 x 2) on every core seen */

/* Written with every result so that no loop's loads or arithmetic can be dropped. */
static volatile uint64_t probe_sink;
static volatile float probe_sink_f;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* KILN_CPU=portable keeps the probes on portable code, as it does the kernels. */
static int forced_portable(void)
{
    const char *env = getenv("KILN_CPU");
    return env && strcmp(env, "portable") == 0;
}

/* ---- the read loops: n bytes (a multiple of 512) from p (64-byte aligned) ---- */

typedef uint64_t (*read_fn)(const unsigned char *p, size_t n);

/* Eight independent sums, so no add waits for the one before it. */
static uint64_t read_portable(const unsigned char *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n / 8; i += 8) {
        a0 += w[i], a1 += w[i + 1], a2 += w[i + 2], a3 += w[i + 3];
        a4 += w[i + 4], a5 += w[i + 5], a6 += w[i + 6], a7 += w[i + 7];
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

#ifdef PROBE_X86
PROBE_AVX2 static uint64_t read_avx2(const unsigned char *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
            a6 = a0, a7 = a0;
    for (size_t i = 0; i < n; i += 256) {
        const __m256i *v = (const __m256i *)(const void *)(p + i);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
        a4 = _mm256_add_epi64(a4, _mm256_load_si256(v + 4));
        a5 = _mm256_add_epi64(a5, _mm256_load_si256(v + 5));
        a6 = _mm256_add_epi64(a6, _mm256_load_si256(v + 6));
        a7 = _mm256_add_epi64(a7, _mm256_load_si256(v + 7));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)),
                          _mm256_add_epi64(_mm256_add_epi64(a4, a5), _mm256_add_epi64(a6, a7)));
    uint64_t lane[4];
    _mm256_storeu_si256((__m256i *)(void *)lane, a0);
    return lane[0] + lane[1] + lane[2] + lane[3];
}

PROBE_AVX512 static uint64_t read_avx512(const unsigned char *p, size_t n)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
            a6 = a0, a7 = a0;
    for (size_t i = 0; i < n; i += 512) {
        const unsigned char *q = p + i;
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)q));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(q + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(q + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(q + 192)));
        a4 = _mm512_add_epi64(a4, _mm512_load_si512((const void *)(q + 256)));
        a5 = _mm512_add_epi64(a5, _mm512_load_si512((const void *)(q + 320)));
        a6 = _mm512_add_epi64(a6, _mm512_load_si512((const void *)(q + 384)));
        a7 = _mm512_add_epi64(a7, _mm512_load_si512((const void *)(q + 448)));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)),
                          _mm512_add_epi64(_mm512_add_epi64(a4, a5), _mm512_add_epi64(a6, a7)));
    uint64_t lane[8];
    _mm512_storeu_si512((void *)lane, a0);
    uint64_t s = 0;
    for (int k = 0; k < 8; k++)
        s += lane[k];
    return s;
}
#endif

static read_fn pick_read(const char **isa)
{
#ifdef PROBE_X86
    const krt_cpu *k = krt_cpu_get();
    if (!forced_portable() && k->avx512f) {
        *isa = "avx512";
        return read_avx512;
    }
    if (!forced_portable() && k->avx2) {
        *isa = "avx2";
        return read_avx2;
    }
#endif
    *isa = "portable";
    return read_portable;
}

const char *krt_probe_read_isa(void)
{
    const char *isa;
    pick_read(&isa);
    return isa;
}

/* ---- the multiply-add loops: `iters` steps of 12 chains x = x * a + b; returns a value
 * that depends on every chain. With a just below 1 the chains settle near b / (1 - a) = 1:
 * no overflow, no subnormals. ---- */

typedef float (*fma_fn)(int64_t iters);

#define FMA_A 0.9999f
#define FMA_B 1e-4f

/* Portable: 12 chains of 4 lanes, a separate multiply and add (SSE on x86, whatever the
 * compiler makes of the arrays elsewhere). */
#ifdef PROBE_X86
static float fma_sse(int64_t iters)
{
    const __m128 a = _mm_set1_ps(FMA_A), b = _mm_set1_ps(FMA_B);
    __m128 x0 = _mm_set1_ps(0.10f), x1 = _mm_set1_ps(0.11f), x2 = _mm_set1_ps(0.12f);
    __m128 x3 = _mm_set1_ps(0.13f), x4 = _mm_set1_ps(0.14f), x5 = _mm_set1_ps(0.15f);
    __m128 x6 = _mm_set1_ps(0.16f), x7 = _mm_set1_ps(0.17f), x8 = _mm_set1_ps(0.18f);
    __m128 x9 = _mm_set1_ps(0.19f), x10 = _mm_set1_ps(0.20f), x11 = _mm_set1_ps(0.21f);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm_add_ps(_mm_mul_ps(x0, a), b), x1 = _mm_add_ps(_mm_mul_ps(x1, a), b);
        x2 = _mm_add_ps(_mm_mul_ps(x2, a), b), x3 = _mm_add_ps(_mm_mul_ps(x3, a), b);
        x4 = _mm_add_ps(_mm_mul_ps(x4, a), b), x5 = _mm_add_ps(_mm_mul_ps(x5, a), b);
        x6 = _mm_add_ps(_mm_mul_ps(x6, a), b), x7 = _mm_add_ps(_mm_mul_ps(x7, a), b);
        x8 = _mm_add_ps(_mm_mul_ps(x8, a), b), x9 = _mm_add_ps(_mm_mul_ps(x9, a), b);
        x10 = _mm_add_ps(_mm_mul_ps(x10, a), b), x11 = _mm_add_ps(_mm_mul_ps(x11, a), b);
    }
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(x0, x1), _mm_add_ps(x2, x3)),
                          _mm_add_ps(_mm_add_ps(x4, x5), _mm_add_ps(x6, x7)));
    s = _mm_add_ps(s, _mm_add_ps(_mm_add_ps(x8, x9), _mm_add_ps(x10, x11)));
    float lane[4];
    _mm_storeu_ps(lane, s);
    return lane[0] + lane[1] + lane[2] + lane[3];
}

PROBE_FMA256 static float fma_avx2(int64_t iters)
{
    const __m256 a = _mm256_set1_ps(FMA_A), b = _mm256_set1_ps(FMA_B);
    __m256 x0 = _mm256_set1_ps(0.10f), x1 = _mm256_set1_ps(0.11f), x2 = _mm256_set1_ps(0.12f);
    __m256 x3 = _mm256_set1_ps(0.13f), x4 = _mm256_set1_ps(0.14f), x5 = _mm256_set1_ps(0.15f);
    __m256 x6 = _mm256_set1_ps(0.16f), x7 = _mm256_set1_ps(0.17f), x8 = _mm256_set1_ps(0.18f);
    __m256 x9 = _mm256_set1_ps(0.19f), x10 = _mm256_set1_ps(0.20f), x11 = _mm256_set1_ps(0.21f);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm256_fmadd_ps(x0, a, b), x1 = _mm256_fmadd_ps(x1, a, b);
        x2 = _mm256_fmadd_ps(x2, a, b), x3 = _mm256_fmadd_ps(x3, a, b);
        x4 = _mm256_fmadd_ps(x4, a, b), x5 = _mm256_fmadd_ps(x5, a, b);
        x6 = _mm256_fmadd_ps(x6, a, b), x7 = _mm256_fmadd_ps(x7, a, b);
        x8 = _mm256_fmadd_ps(x8, a, b), x9 = _mm256_fmadd_ps(x9, a, b);
        x10 = _mm256_fmadd_ps(x10, a, b), x11 = _mm256_fmadd_ps(x11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float lane[8], sum = 0;
    _mm256_storeu_ps(lane, s);
    for (int k = 0; k < 8; k++)
        sum += lane[k];
    return sum;
}

PROBE_AVX512 static float fma_avx512(int64_t iters)
{
    const __m512 a = _mm512_set1_ps(FMA_A), b = _mm512_set1_ps(FMA_B);
    __m512 x0 = _mm512_set1_ps(0.10f), x1 = _mm512_set1_ps(0.11f), x2 = _mm512_set1_ps(0.12f);
    __m512 x3 = _mm512_set1_ps(0.13f), x4 = _mm512_set1_ps(0.14f), x5 = _mm512_set1_ps(0.15f);
    __m512 x6 = _mm512_set1_ps(0.16f), x7 = _mm512_set1_ps(0.17f), x8 = _mm512_set1_ps(0.18f);
    __m512 x9 = _mm512_set1_ps(0.19f), x10 = _mm512_set1_ps(0.20f), x11 = _mm512_set1_ps(0.21f);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm512_fmadd_ps(x0, a, b), x1 = _mm512_fmadd_ps(x1, a, b);
        x2 = _mm512_fmadd_ps(x2, a, b), x3 = _mm512_fmadd_ps(x3, a, b);
        x4 = _mm512_fmadd_ps(x4, a, b), x5 = _mm512_fmadd_ps(x5, a, b);
        x6 = _mm512_fmadd_ps(x6, a, b), x7 = _mm512_fmadd_ps(x7, a, b);
        x8 = _mm512_fmadd_ps(x8, a, b), x9 = _mm512_fmadd_ps(x9, a, b);
        x10 = _mm512_fmadd_ps(x10, a, b), x11 = _mm512_fmadd_ps(x11, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                             _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    float lane[16], sum = 0;
    _mm512_storeu_ps(lane, s);
    for (int k = 0; k < 16; k++)
        sum += lane[k];
    return sum;
}
#else
static float fma_portable(int64_t iters)
{
    float x[PROBE_FMA_CHAINS][4];
    for (int c = 0; c < PROBE_FMA_CHAINS; c++)
        for (int l = 0; l < 4; l++)
            x[c][l] = 0.10f + 0.01f * (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < PROBE_FMA_CHAINS; c++)
            for (int l = 0; l < 4; l++)
                x[c][l] = x[c][l] * FMA_A + FMA_B;
    float sum = 0;
    for (int c = 0; c < PROBE_FMA_CHAINS; c++)
        for (int l = 0; l < 4; l++)
            sum += x[c][l];
    return sum;
}
#endif

/* The loop for this CPU and the lanes of one chain (flops per step = 2 x chains x lanes). */
static fma_fn pick_fma(const char **isa, int *lanes)
{
#ifdef PROBE_X86
    const krt_cpu *k = krt_cpu_get();
    if (!forced_portable() && k->avx512f) {
        *isa = "avx512", *lanes = 16;
        return fma_avx512;
    }
    if (!forced_portable() && k->avx2 && k->fma) {
        *isa = "avx2+fma", *lanes = 8;
        return fma_avx2;
    }
    *isa = "sse", *lanes = 4;
    return fma_sse;
#else
    *isa = "portable", *lanes = 4;
    return fma_portable;
#endif
}

const char *krt_probe_fma_isa(void)
{
    const char *isa;
    int lanes;
    pick_fma(&isa, &lanes);
    return isa;
}

/* ---- the team of threads ---- */

/* One thread's part of a probe: its share of the array (read probes), and the start and
 * end of each of its passes. */
typedef struct probe_share {
    struct probe_team *team;
    unsigned char *p;
    size_t n;
    double start[PROBE_MAX_PASSES], end[PROBE_MAX_PASSES];
    uint64_t sum;
    float fsum;
} probe_share;

typedef struct probe_team {
    int threads, passes;
    /* the gate opens (1) once every thread has started, or aborts (-1) when one could not:
     * the barrier below counts on all of them */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate;
    pthread_barrier_t barrier;
    read_fn read;              /* a read probe, or */
    fma_fn fma;                /* a multiply-add probe */
    int64_t iters;
    probe_share *share;
} probe_team;

static void *share_main(void *arg)
{
    probe_share *s = arg;
    probe_team *t = s->team;
    pthread_mutex_lock(&t->gate_mu);
    while (t->gate == 0)
        pthread_cond_wait(&t->gate_cv, &t->gate_mu);
    int go = t->gate > 0;
    pthread_mutex_unlock(&t->gate_mu);
    if (!go)
        return NULL;
    if (t->read) {
        /* first touch by the reader: the pages come from its memory node, as a program's
         * weights would after its first pass */
        memset(s->p, 0x5a, s->n);
        pthread_barrier_wait(&t->barrier);
    }
    for (int pass = 0; pass < t->passes; pass++) {
        pthread_barrier_wait(&t->barrier);
        s->start[pass] = now_s();
        if (t->read)
            s->sum += t->read(s->p, s->n);
        else
            s->fsum += t->fma(t->iters);
        s->end[pass] = now_s();
    }
    return NULL;
}

/* Runs the team's passes on t->threads threads (the caller is thread 0); returns the
 * shortest pass in seconds, or -1 (errno set) when a thread could not start. */
static double team_run(probe_team *t)
{
    pthread_t *tid = calloc((size_t)t->threads, sizeof *tid);
    if (!tid || pthread_barrier_init(&t->barrier, NULL, (unsigned)t->threads) != 0) {
        free(tid);
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_init(&t->gate_mu, NULL);
    pthread_cond_init(&t->gate_cv, NULL);
    t->gate = 0;
    int started = 1, err = 0;
    for (int k = 1; k < t->threads; k++) {
        if ((err = pthread_create(&tid[k], NULL, share_main, &t->share[k])) != 0)
            break;
        started++;
    }
    pthread_mutex_lock(&t->gate_mu);
    t->gate = started == t->threads ? 1 : -1;
    pthread_cond_broadcast(&t->gate_cv);
    pthread_mutex_unlock(&t->gate_mu);
    if (t->gate > 0)
        share_main(&t->share[0]);
    for (int k = 1; k < started; k++)
        pthread_join(tid[k], NULL);
    pthread_barrier_destroy(&t->barrier);
    pthread_mutex_destroy(&t->gate_mu);
    pthread_cond_destroy(&t->gate_cv);
    free(tid);
    if (started < t->threads) {
        errno = err;
        return -1;
    }
    double best = -1;
    uint64_t sum = 0;
    float fsum = 0;
    for (int pass = 0; pass < t->passes; pass++) {
        double first = t->share[0].start[pass], last = t->share[0].end[pass];
        for (int k = 1; k < t->threads; k++) {
            first = t->share[k].start[pass] < first ? t->share[k].start[pass] : first;
            last = t->share[k].end[pass] > last ? t->share[k].end[pass] : last;
        }
        if (best < 0 || last - first < best)
            best = last - first;
    }
    for (int k = 0; k < t->threads; k++)
        sum += t->share[k].sum, fsum += t->share[k].fsum;
    probe_sink = sum;
    probe_sink_f = fsum;
    return best > 0 ? best : 1e-9;   /* a clock too coarse to see the pass */
}

static int check_args(int threads, int *passes)
{
    if (*passes == 0)
        *passes = 5;
    if (threads < 1 || threads > 4096 || *passes < 1 || *passes > PROBE_MAX_PASSES) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* ---- transparent huge pages ---- */

/* The AnonHugePages of the mapping that holds addr, in bytes; -1 when not found. */
static double smaps_huge_bytes(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int inside = 0;
    double found = -1;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        long long kb;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            if (inside)
                break;         /* the next mapping: ours had no such line */
            inside = a >= lo && a < hi;
        } else if (inside && sscanf(line, "AnonHugePages: %lld kB", &kb) == 1) {
            found = (double)kb * 1024.0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* ---- the probes ---- */

double krt_probe_read_gbs(int threads, size_t bytes, int huge, int passes, krt_read_probe *out)
{
    if (check_args(threads, &passes) < 0)
        return -1;
    size_t per = bytes / (size_t)threads / PROBE_PAGE * PROBE_PAGE;
    if (per == 0) {
        errno = EINVAL;
        return -1;
    }
    size_t total = per * (size_t)threads, map_len = total + PROBE_ALIGN;
    unsigned char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -1;
    unsigned char *array =
        (unsigned char *)(((uintptr_t)map + PROBE_ALIGN - 1) & ~(uintptr_t)(PROBE_ALIGN - 1));
    int madvise_failed = 0;
#if defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
    madvise_failed = madvise(array, total, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0;
#else
    madvise_failed = 1;
#endif
    probe_team t = {.threads = threads, .passes = passes};
    const char *isa;
    t.read = pick_read(&isa);
    t.share = calloc((size_t)threads, sizeof *t.share);
    if (!t.share) {
        munmap(map, map_len);
        errno = ENOMEM;
        return -1;
    }
    for (int k = 0; k < threads; k++)
        t.share[k] = (probe_share){.team = &t, .p = array + (size_t)k * per, .n = per};
    double s = team_run(&t);
    int saved = errno;
    double huge_bytes = s > 0 ? smaps_huge_bytes(array) : -1;
    free(t.share);
    munmap(map, map_len);
    if (s < 0) {
        errno = saved;
        return -1;
    }
    double gbs = (double)total / s / 1e9;
    if (out)
        *out = (krt_read_probe){.gbs = gbs,
                                .huge_share = huge_bytes < 0 ? -1
                                              : huge_bytes > (double)total ? 1
                                              : huge_bytes / (double)total,
                                .madvise_failed = madvise_failed, .bytes = total, .isa = isa};
    return gbs;
}

double krt_probe_fma_gflops(int threads, int64_t iterations, int passes, const char **isa)
{
    if (check_args(threads, &passes) < 0)
        return -1;
    if (iterations == 0)
        iterations = (int64_t)1 << 24;
    if (iterations < 0) {
        errno = EINVAL;
        return -1;
    }
    const char *name;
    int lanes;
    probe_team t = {.threads = threads, .passes = passes, .iters = iterations};
    t.fma = pick_fma(&name, &lanes);
    t.share = calloc((size_t)threads, sizeof *t.share);
    if (!t.share) {
        errno = ENOMEM;
        return -1;
    }
    for (int k = 0; k < threads; k++)
        t.share[k] = (probe_share){.team = &t};
    double s = team_run(&t);
    free(t.share);
    if (s < 0)
        return -1;
    if (isa)
        *isa = name;
    double flops = 2.0 * PROBE_FMA_CHAINS * lanes * (double)iterations * threads;
    return flops / s / 1e9;
}
