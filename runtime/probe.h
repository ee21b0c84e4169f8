/* probe.h - the machine's own limits, measured: how fast the cores read memory and how many
 * floating-point operations they do per second (runtime/probe.c). What a benchmark divides
 * by to say how close a program comes to the machine. In libkilnrt.a and linked into the
 * kiln compiler (kiln bench); depends on libc and pthreads only.
 *
 * Both probes pick the widest instructions the CPU and OS allow at run time (cpu.h:
 * AVX-512, AVX2, else portable code), and, like the kernels, use the portable code when
 * KILN_CPU=portable is set. Both return the best of their passes (as STREAM does: the least
 * disturbed pass); a caller that wants the spread over time repeats the call and takes
 * medians. On failure they return -1 with errno set.
 */
#ifndef KILN_PROBE_H
#define KILN_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* What a read probe saw besides its speed. */
typedef struct krt_read_probe {
    double gbs;                /* best pass, GB/s (1e9 bytes per second); also returned */
    double huge_share;         /* share of the array backed by huge pages (AnonHugePages of
                                  its mapping in /proc/self/smaps) after it was touched;
                                  -1 when that cannot be read */
    int madvise_failed;        /* the kernel refused MADV_HUGEPAGE / MADV_NOHUGEPAGE */
    size_t bytes;              /* the bytes read per pass (bytes rounded down to whole
                                  pages per thread) */
    const char *isa;           /* the loads used: "avx512", "avx2" or "portable" */
} krt_read_probe;

/* Read bandwidth: an anonymous mapping of `bytes`, 2 MiB-aligned, advised MADV_HUGEPAGE
 * when `huge` (else MADV_NOHUGEPAGE), each page written by the thread that later reads it;
 * then `passes` times (0: 5) all `threads` threads start together and each reads its
 * contiguous share with the widest loads into independent accumulators. A pass lasts from
 * the first thread's start to the last thread's end. Returns the best pass in GB/s and
 * fills *out when it is not NULL. */
double krt_probe_read_gbs(int threads, size_t bytes, int huge, int passes, krt_read_probe *out);

/* Register-resident multiply-add peak: every thread runs `iterations` (0: 2^24) steps of
 * 12 independent multiply-add chains on the widest vectors (512-bit FMA with avx512f,
 * 256-bit FMA with avx2 and fma, else 128-bit SSE multiply and add; each multiply-add is 2
 * flops per lane), starting together; `passes` (0: 5) times. Returns the best pass in
 * GFLOP/s over all threads; *isa (when not NULL) gets "avx512", "avx2+fma", "sse" or
 * "portable". */
double krt_probe_fma_gflops(int threads, int64_t iterations, int passes, const char **isa);

/* The instructions the probes would use on this CPU now (for reports). */
const char *krt_probe_read_isa(void);
const char *krt_probe_fma_isa(void);

#endif
