/* linear_test.c - TAP test of the matrix products (runtime/linear.c, kernels.h: krt_linear).
 *
 * For every weight type (f32, f16, bf16, q8_0, q4_0), both treatments of activations for the
 * block types, both layouts, views of rows and columns, epilogues (a residual in place, a
 * bias), token lists and thread splits, on random shapes with odd tails:
 *   - the portable reference against a double-precision sum: the normalized error
 *     max |got - ref| / max |ref|, reported per case and bounded;
 *   - every SIMD path this CPU has (AVX2, AVX-512), and the AVX-512 code with 16 lanes
 *     emulated on AVX2 (tests/unit/linear_emu.c), against the reference: the same bits;
 *   - the rows layout against the panel layout, blocks of tokens against one token at a time,
 *     and 2 or 3 shares against one: the same bits.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/rt_internal.h"   /* krt_pool_new; before kernels.h */
#include "../../runtime/cpu.h"
#include "../../runtime/kernels.h"
#include "../../runtime/kiln_blob.h"
#include "../../runtime/linear_internal.h"

#ifdef KRT_HAVE_SIMD
void lin_prepare_emu(const lin_job *j);
void lin_panels_emu(const lin_job *j, int64_t p0, int64_t p1);
void lin_quant_emu(int8_t *q, float *dq, int32_t *sq, const float *x, int64_t n);
#endif

static int n_test, n_fail;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static int64_t rnd(int64_t lo, int64_t hi) { return lo + (int64_t)(next_u64() % (uint64_t)(hi - lo + 1)); }
static float rnd_f(void) { return (float)((double)(next_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static void ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(int cond, const char *fmt, ...)
{
    n_test++;
    if (!cond)
        n_fail++;
    printf("%s %d - ", cond ? "ok" : "not ok", n_test);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* A random [rows, cols] tensor of dtype in the rows layout (block types: random scales and
 * values, as a quantizer might make them, every value in range). */
static void *make_tensor(uint32_t dt, int64_t rows, int64_t cols, uint64_t *bytes)
{
    uint64_t rb = 0;
    kblob_row_bytes(dt, (uint64_t)cols, &rb);
    *bytes = rb * (uint64_t)rows;
    unsigned char *t = xmalloc(*bytes);
    for (int64_t r = 0; r < rows; r++) {
        unsigned char *row = t + (uint64_t)r * rb;
        if (dt == KBLOB_F32 || dt == KBLOB_F16 || dt == KBLOB_BF16) {
            for (int64_t k = 0; k < cols; k++) {
                float v = rnd_f();
                if (dt == KBLOB_F32) {
                    memcpy(row + 4 * k, &v, 4);
                } else {
                    uint16_t h = dt == KBLOB_F16 ? kblob_f32_to_f16(v) : kblob_f32_to_bf16(v);
                    memcpy(row + 2 * k, &h, 2);
                }
            }
            continue;
        }
        int q8 = dt == KBLOB_Q8_0;
        for (int64_t b = 0; b < cols / 32; b++) {
            unsigned char *blk = row + b * (q8 ? 34 : 18);
            uint16_t h = kblob_f32_to_f16((float)rnd(1, 1000) / 65536.0f * (rnd(0, 1) ? 1 : -1));
            memcpy(blk, &h, 2);
            for (int k = 0; k < (q8 ? 32 : 16); k++)
                blk[2 + k] = q8 ? (unsigned char)(int8_t)rnd(-128, 127) : (unsigned char)rnd(0, 255);
        }
    }
    return t;
}

typedef struct lcase {
    uint32_t dt, layout;
    int act;
    int64_t wrows, wcols, row0, col0, out, in;
    int64_t rows;              /* tokens */
    int rowidx;                /* use a token list */
    int res;                   /* 0 none, 1 residual in place (R = Y), 2 bias */
    void *w;
    float *x, *y0, *bias;      /* inputs, Y's first contents (the residual) */
    int32_t *idx;
    int64_t ntok;              /* tokens in the block (the list picks rows of them) */
} lcase;

/* Runs the case's product on `path` (-1: the emulated AVX-512 code) split in `shares`
 * shares, into a fresh copy of y0. */
static krt_lin case_lin(const lcase *c, float *y)
{
    memcpy(y, c->y0, sizeof(float) * (size_t)(c->ntok * c->out));
    return (krt_lin){
        .y = y, .x = c->x, .ldy = c->out, .ldx = c->in, .rows = c->rows,
        .rowidx = c->rowidx ? c->idx : NULL, .w = c->w, .dtype = c->dt, .layout = c->layout,
        .wrows = c->wrows, .wcols = c->wcols, .row0 = c->row0, .col0 = c->col0,
        .out = c->out, .in = c->in, .act = c->act,
        .res = c->res == 1 ? y : c->res == 2 ? c->bias : NULL, .ldr = c->res == 1 ? c->out : 0,
    };
}

static float *run_case(const lcase *c, int path, int shares)
{
    float *y = xmalloc(sizeof(float) * (size_t)(c->ntok * c->out));
    krt_lin l = case_lin(c, y);
    void *scratch = xmalloc((size_t)krt_linear_scratch(c->rows, c->in));
    if (path >= 0) {
        krt_cpu_use((krt_path)path);
        for (int s = 0; s < shares; s++)
            krt_linear(&l, s, shares, scratch);
        krt_cpu_use(KRT_PATH_PORTABLE);
    } else {
#ifdef KRT_HAVE_SIMD
        lin_job j;
        lin_job_init(&j, &l, scratch);
        if (j.int8)
            lin_quantize_rows(&j, lin_quant_emu);
        lin_prepare_emu(&j);
        int64_t pa = l.row0 / 16, pb = (l.row0 + l.out + 15) / 16;
        lin_panels_emu(&j, pa, pb);
#endif
    }
    free(scratch);
    return y;
}

/* Three products in a row, each into its own Y, on a pool of real threads handing out
 * panels through a krt_sched (a barrier between products, as the emitted code has). */
enum { POOL_PRODUCTS = 3 };
typedef struct pool_products {
    krt_pool *pool;
    krt_lin l[POOL_PRODUCTS];
    unsigned char *scratch;
    size_t stride;
} pool_products;

static void pool_share(void *arg, int sh, int nsh)
{
    pool_products *r = arg;
    for (int k = 0; k < POOL_PRODUCTS; k++) {
        if (k)
            krt_pool_barrier(r->pool);
        krt_linear(&r->l[k], sh, nsh, r->scratch + (size_t)sh * r->stride);
    }
}

/* Whether the case on `path` with `threads` threads and a krt_sched gives `want` each time. */
static int pool_same(const lcase *c, int path, int threads, const float *want)
{
    int64_t ny = c->ntok * c->out;
    pool_products r = {.pool = krt_pool_new(threads)};
    krt_sched *sched = krt_sched_new(threads);
    if (!r.pool || !sched)
        return 0;
    r.stride = ((size_t)krt_linear_scratch(c->rows, c->in) + 63) / 64 * 64;
    r.scratch = aligned_alloc(64, r.stride * (size_t)threads);
    float *y[POOL_PRODUCTS];
    for (int k = 0; k < POOL_PRODUCTS; k++)
        y[k] = xmalloc(sizeof(float) * (size_t)ny);
    int same = 1;
    krt_cpu_use((krt_path)path);
    for (int job = 0; job < 2; job++) {     /* the second job finds the slots used */
        for (int k = 0; k < POOL_PRODUCTS; k++) {
            r.l[k] = case_lin(c, y[k]);
            r.l[k].sched = sched;
        }
        krt_pool_run(r.pool, pool_share, &r);
        for (int k = 0; k < POOL_PRODUCTS; k++)
            same &= memcmp(y[k], want, sizeof(float) * (size_t)ny) == 0;
    }
    krt_cpu_use(KRT_PATH_PORTABLE);
    for (int k = 0; k < POOL_PRODUCTS; k++)
        free(y[k]);
    free(r.scratch);
    krt_sched_free(sched);
    krt_pool_free(r.pool);
    return same;
}

/* The double-precision product of the case (exact weights; for 8-bit activations the
 * quantized activations, exactly as the kernels quantize them). */
static double *ref_case(const lcase *c, const float *ypre)
{
    double *ref = calloc((size_t)(c->ntok * c->out), sizeof(double));
    float *wr = xmalloc(sizeof(float) * (size_t)c->in);
    int8_t *q = xmalloc((size_t)c->in);
    float dq[1024];
    int32_t sq[1024];
    for (int64_t j = 0; j < c->rows; j++) {
        int64_t t = c->rowidx ? c->idx[j] : j;
        const float *x = c->x + t * c->in;
        int int8 = (c->dt == KBLOB_Q8_0 || c->dt == KBLOB_Q4_0) && c->act == KRT_ACT_Q8;
        if (int8)
            krt_quant_q8(q, dq, sq, x, c->in);
        for (int64_t i = 0; i < c->out; i++) {
            kblob_read_row(wr, c->w, c->dt, c->layout, (uint64_t)c->wrows, (uint64_t)c->wcols,
                           (uint64_t)(c->row0 + i), (uint64_t)c->col0, (uint64_t)c->in);
            double acc = 0;
            for (int64_t k = 0; k < c->in; k++)
                acc += (double)wr[k] * (int8 ? (double)dq[k / 32] * q[k] : (double)x[k]);
            double r = c->res == 1 ? ypre[t * c->out + i] : c->res == 2 ? c->bias[i] : 0.0;
            ref[t * c->out + i] = r + acc;
        }
    }
    free(wr);
    free(q);
    return ref;
}

static double norm_err(const float *got, const double *ref, const lcase *c)
{
    double e = 0, m = 1e-30;
    for (int64_t j = 0; j < c->rows; j++) {
        int64_t t = c->rowidx ? c->idx[j] : j;
        for (int64_t i = 0; i < c->out; i++) {
            double g = got[t * c->out + i], r = ref[t * c->out + i];
            e = fabs(g - r) > e ? fabs(g - r) : e;
            m = fabs(r) > m ? fabs(r) : m;
        }
    }
    return e / m;
}

static int same_bits(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static const char *dt_name(uint32_t dt) { return kblob_dtype_name(dt); }

/* Builds a random case of dtype dt (act for the block types). */
static lcase make_case(uint32_t dt, int act, int64_t rows)
{
    lcase c;
    memset(&c, 0, sizeof c);
    c.dt = dt;
    c.act = act;
    int block = dt == KBLOB_Q8_0 || dt == KBLOB_Q4_0;
    c.wrows = rnd(1, 3) == 1 ? rnd(1, 15) : 16 * rnd(1, 6) + (rnd(0, 1) ? rnd(1, 15) : 0);
    c.wcols = block ? 32 * rnd(1, 12) : rnd(1, 3) == 1 ? rnd(1, 40) : rnd(40, 400);
    /* a view: rows [row0, row0+out), columns [col0, col0+in) (on block boundaries) */
    c.row0 = rnd(0, 1) ? 0 : rnd(0, c.wrows - 1);
    c.out = rnd(0, 1) ? c.wrows - c.row0 : rnd(1, c.wrows - c.row0);
    int64_t unit = block ? 32 : 1, ncol = c.wcols / unit;
    c.col0 = (rnd(0, 1) ? 0 : rnd(0, ncol - 1)) * unit;
    c.in = (rnd(0, 1) ? ncol - c.col0 / unit : rnd(1, ncol - c.col0 / unit)) * unit;
    c.rows = rows;
    c.ntok = rows + rnd(0, 3);
    c.rowidx = rnd(0, 3) == 0;
    c.res = (int)rnd(0, 2);
    uint64_t bytes;
    void *rowsw = make_tensor(dt, c.wrows, c.wcols, &bytes);
    c.w = rowsw;
    c.layout = KBLOB_ROWS;
    c.x = xmalloc(sizeof(float) * (size_t)(c.ntok * c.in));
    for (int64_t k = 0; k < c.ntok * c.in; k++)
        c.x[k] = rnd_f() * (k % 7 == 0 ? 4.0f : 1.0f);
    c.y0 = xmalloc(sizeof(float) * (size_t)(c.ntok * c.out));
    for (int64_t k = 0; k < c.ntok * c.out; k++)
        c.y0[k] = rnd_f();
    c.bias = xmalloc(sizeof(float) * (size_t)c.out);
    for (int64_t k = 0; k < c.out; k++)
        c.bias[k] = rnd_f();
    c.idx = xmalloc(sizeof(int32_t) * (size_t)(c.ntok ? c.ntok : 1));
    for (int64_t k = 0; k < c.ntok; k++)       /* a shuffled subset of the block's tokens */
        c.idx[k] = (int32_t)k;
    for (int64_t k = c.ntok - 1; k > 0; k--) {
        int64_t m = rnd(0, k);
        int32_t tmp = c.idx[k];
        c.idx[k] = c.idx[m], c.idx[m] = tmp;
    }
    return c;
}

static void *to_panel(const lcase *c)
{
    uint64_t rb = 0;
    kblob_row_bytes(c->dt, (uint64_t)c->wcols, &rb);
    void *p = xmalloc(rb * (uint64_t)c->wrows);
    kblob_to_panel(p, c->w, c->dt, (uint64_t)c->wrows, (uint64_t)c->wcols);
    return p;
}

static void free_case(lcase *c)
{
    free(c->w), free(c->x), free(c->y0), free(c->bias), free(c->idx);
}

/* One type and treatment of activations: `cases` random cases, each checked every way. */
static void test_type(uint32_t dt, int act, int cases)
{
    const char *an = act == KRT_ACT_Q8 ? "q8 activations" : "f32 activations";
    double worst = 0, tol = 1e-4;   /* float sums of up to 400 terms with cancellation */
    int paths_ok[KRT_PATH_COUNT + 1], layouts_ok = 1, split_ok = 1, blocks_ok = 1, pool_ok = 1;
    for (int p = 0; p <= KRT_PATH_COUNT; p++)
        paths_ok[p] = 1;
    static const int64_t token_counts[] = {1, 1, 2, 3, 5, 7, 12, 13, 25};
    for (int n = 0; n < cases; n++) {
        int64_t rows = token_counts[n % (int)(sizeof token_counts / sizeof token_counts[0])];
        lcase c = make_case(dt, act, rows);
        int64_t ny = c.ntok * c.out;
        float *rows_ref = run_case(&c, KRT_PATH_PORTABLE, 1);     /* the rows layout */
        double *ref = ref_case(&c, c.y0);
        double e = norm_err(rows_ref, ref, &c);
        worst = e > worst ? e : worst;
        void *rowsw = c.w;
        c.w = to_panel(&c);
        c.layout = KBLOB_PANEL;
        float *port = run_case(&c, KRT_PATH_PORTABLE, 1);
        layouts_ok &= same_bits(port, rows_ref, ny);
        for (int p = KRT_PATH_AVX2; p < KRT_PATH_COUNT; p++) {
            if (!krt_cpu_has((krt_path)p))
                continue;
            float *y = run_case(&c, p, 1);
            paths_ok[p] &= same_bits(y, port, ny);
            free(y);
            y = run_case(&c, p, (int)rnd(2, 3));
            split_ok &= same_bits(y, port, ny);
            free(y);
            if (n % 4 == 0)
                pool_ok &= pool_same(&c, p, (int)rnd(2, 3), port);
        }
#ifdef KRT_HAVE_SIMD
        if (krt_cpu_has(KRT_PATH_AVX2)) {
            float *y = run_case(&c, -1, 1);
            paths_ok[KRT_PATH_COUNT] &= same_bits(y, port, ny);
            free(y);
        }
#endif
        /* one token at a time gives the block's rows */
        if (c.rows > 1 && !c.rowidx) {
            lcase one = c;
            one.rowidx = 1;
            int32_t t1;
            one.idx = &t1;
            one.rows = 1;
            float *y = xmalloc(sizeof(float) * (size_t)ny);
            memcpy(y, c.y0, sizeof(float) * (size_t)ny);
            for (int64_t t = 0; t < c.rows; t++) {
                t1 = (int32_t)t;
                one.y0 = y;
                float *yt = run_case(&one, krt_cpu_use(KRT_PATH_COUNT), 1);
                krt_cpu_use(KRT_PATH_PORTABLE);
                memcpy(y + t * c.out, yt + t * c.out, sizeof(float) * (size_t)c.out);
                free(yt);
            }
            blocks_ok &= same_bits(y, port, c.rows * c.out);
            free(y);
        }
        free(rowsw);
        free(rows_ref), free(port), free(ref);
        free_case(&c);
    }
    char what[96];
    snprintf(what, sizeof what, "%s, %s", dt_name(dt), an);
    ok(worst <= tol, "linear %s: reference vs double, normalized error %.3g", what, worst);
    ok(layouts_ok, "linear %s: rows layout = panel layout, bit for bit", what);
    for (int p = KRT_PATH_AVX2; p < KRT_PATH_COUNT; p++) {
        if (!krt_cpu_has((krt_path)p)) {
            printf("ok %d - # SKIP linear %s: no %s on this CPU\n", ++n_test, what,
                   krt_path_name((krt_path)p));
            continue;
        }
        ok(paths_ok[p], "linear %s: %s = portable, bit for bit", what,
           krt_path_name((krt_path)p));
    }
    if (krt_cpu_has(KRT_PATH_AVX2))
        ok(paths_ok[KRT_PATH_COUNT], "linear %s: avx512 code, 16 lanes emulated, = portable, "
           "bit for bit", what);
    ok(split_ok, "linear %s: 2 and 3 shares = 1 share, bit for bit", what);
    ok(pool_ok, "linear %s: 2 and 3 threads of a pool taking panels as they come (krt_sched), "
       "three products a job, two jobs = 1 share, bit for bit", what);
    ok(blocks_ok, "linear %s: a block of tokens = one token at a time, bit for bit", what);
}

/* The activation quantizer: llama.cpp's rules on hand-made blocks, and every path's the
 * same. */
static void test_quant(void)
{
    float x[64];
    int8_t q[64];
    float dq[2];
    int32_t sq[2];
    for (int k = 0; k < 32; k++)
        x[k] = (float)(k - 16) / 16.0f;         /* amax 1: q = round(127 x) */
    for (int k = 32; k < 64; k++)
        x[k] = 0.0f;                            /* an all-zero block: d 0, q 0 */
    krt_quant_q8(q, dq, sq, x, 64);
    int good = dq[0] == kblob_f16_to_f32(kblob_f32_to_f16(1.0f / 127.0f)) && q[0] == -127 &&
               q[31] == (int8_t)rintf(127.0f * 15.0f / 16.0f) && q[16] == 0 && dq[1] == 0.0f &&
               sq[1] == 0;
    int32_t s = 0;
    for (int k = 0; k < 32; k++)
        s += q[k];
    good &= sq[0] == s;
    for (int k = 32; k < 64; k++)
        good &= q[k] == 0;
    /* ties go to even: x * 127 / amax = 2.5 exactly */
    float t[32] = {0};
    t[0] = 127.0f, t[1] = 2.5f;
    krt_quant_q8(q, dq, sq, t, 32);
    good &= q[0] == 127 && q[1] == 2;
    ok(good, "quant q8: llama.cpp's rules (scale amax/127 in f16, round half to even, 127/amax)");
    int same = 1;
    for (int p = KRT_PATH_AVX2; p < KRT_PATH_COUNT; p++) {
        if (!krt_cpu_has((krt_path)p))
            continue;
        float y[320];
        int8_t q1[320], q2[320];
        float d1[10], d2[10];
        int32_t s1[10], s2[10];
        for (int k = 0; k < 320; k++)
            y[k] = rnd_f() * (float)(k % 5 + 1);
        /* ties (x * 127 / amax = k + 0.5), an all-zero block, -0, huge and tiny values */
        for (int k = 0; k < 32; k++)
            y[k] = (float)(k - 16) + 0.5f, y[32 + k] = 0.0f, y[64 + k] = k % 2 ? -0.0f : 1e-30f;
        y[96] = 3e38f, y[97] = -3e38f, y[128] = 1e-40f;
        krt_quant_q8(q1, d1, s1, y, 320);
        lin_quant_for((krt_path)p)(q2, d2, s2, y, 320);
        same &= !memcmp(q1, q2, 320) && !memcmp(d1, d2, sizeof d1) && !memcmp(s1, s2, sizeof s1);
    }
    ok(same, "quant q8: every path gives the portable bits");
}

int main(void)
{
    static const struct { uint32_t dt; int act; } types[] = {
        {KBLOB_F32, KRT_ACT_F32}, {KBLOB_F16, KRT_ACT_F32}, {KBLOB_BF16, KRT_ACT_F32},
        {KBLOB_Q8_0, KRT_ACT_F32}, {KBLOB_Q8_0, KRT_ACT_Q8},
        {KBLOB_Q4_0, KRT_ACT_F32}, {KBLOB_Q4_0, KRT_ACT_Q8},
    };
    const char *env = getenv("LINEAR_TEST_CASES");
    int cases = env ? atoi(env) : 40;
    test_quant();
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        test_type(types[i].dt, types[i].act, cases);
    printf("1..%d\n", n_test);
    return n_fail ? 1 : 0;
}
