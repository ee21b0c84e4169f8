/* bench.c - PROG --bench-pp P --bench-tg N: the program's side of `kiln bench`, in the
 * manner of llama-bench's pp and tg tests.
 *
 * driver.c sets the program up exactly as for a run (weights, frame, state, thread pool,
 * --threads, --batch) and lends its forward call and its state clearing (rt_internal.h), so
 * what is timed is what a run does. One untimed call first (it faults the weight pages in
 * and touches the frame a block needs); then the prompt test: P token ids (i * 7919 + 1) %
 * vocab at positions 0 .. P-1 in blocks of --batch, only the last row's logits computed, as
 * a prompt is; then, from a cleared state, the decode test: N calls of one token at
 * positions 0 .. N-1, each fed the argmax of the logits before (the first: token 1). One
 * line on standard output, key=value, seconds with nanosecond digits:
 *   kiln-bench pp=128 pp_s=0.412345678 tg=64 tg_s=1.234567890 threads=2 batch=64 path=avx2
 *     decode_bytes=... decode_bytes_experts=... macs_all=... macs_logits=...
 * (one line; the last four are kiln_rt.h's costs of one token, from which kiln bench derives
 * GB/s and GFLOP/s).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpu.h"
#include "rt_internal.h"

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The prompt: blocks of up to r->batch tokens; the seconds it took. */
static double time_prompt(const krt_bench_run *r, const int32_t *tokens, int64_t pp)
{
    double t0 = bench_now();
    for (int64_t pos = 0; pos < pp; pos += r->batch) {
        int64_t T = pp - pos < r->batch ? pp - pos : r->batch;
        r->forward(r->run, tokens + pos, pos, T);
    }
    return bench_now() - t0;
}

/* Greedy decoding of tg tokens from token 1: the argmax is part of each step, as choosing
 * the next token is in a run. */
static double time_decode(const krt_bench_run *r, int64_t tg)
{
    int32_t next = 1;
    double t0 = bench_now();
    for (int64_t pos = 0; pos < tg; pos++)
        next = krt_argmax(r->forward(r->run, &next, pos, 1), kiln_model.vocab);
    return bench_now() - t0;
}

int krt_bench(const krt_bench_run *r, int64_t pp, int64_t tg)
{
    const krt_model *m = &kiln_model;
    int32_t *tokens = malloc((size_t)(pp > 0 ? pp : 1) * sizeof *tokens);
    if (!tokens) {
        fprintf(stderr, "%s: error: out of memory\n", r->prog);
        return 1;
    }
    tokens[0] = 1;
    for (int64_t i = 0; i < pp; i++)
        tokens[i] = (int32_t)((i * 7919 + 1) % m->vocab);

    /* the warm-up is one block as large as the prompt's first, so the frame pages the
     * prompt needs are touched too */
    int64_t warm = pp < r->batch ? pp : r->batch;
    r->forward(r->run, tokens, 0, warm > 0 ? warm : 1);
    r->clear(r->run);

    double pp_s = 0, tg_s = 0;
    if (pp > 0) {
        pp_s = time_prompt(r, tokens, pp);
        r->clear(r->run);
    }
    if (tg > 0) {
        tg_s = time_decode(r, tg);
        r->clear(r->run);
    }
    free(tokens);
    printf("kiln-bench pp=%lld pp_s=%.9f tg=%lld tg_s=%.9f threads=%lld batch=%lld path=%s "
           "decode_bytes=%llu decode_bytes_experts=%llu macs_all=%llu macs_logits=%llu\n",
           (long long)pp, pp_s, (long long)tg, tg_s, (long long)r->threads,
           (long long)r->batch, krt_path_name(krt_kernel_path),
           (unsigned long long)m->decode_bytes, (unsigned long long)m->decode_bytes_experts,
           (unsigned long long)m->macs_all_rows, (unsigned long long)m->macs_logits_rows);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error: cannot write to standard output\n", r->prog);
        return 1;
    }
    return 0;
}
