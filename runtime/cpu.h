/* cpu.h - the CPU features seen at program start and the kernel path they allow
 * (runtime/cpu.c). The kernels of kernels.h read krt_kernel_path on every call; it is
 * portable until krt_cpu_init() (the driver calls it first thing) or krt_cpu_use() says
 * otherwise, so a program never runs an instruction its CPU or OS lacks. Every path gives
 * the same results bit for bit (kernels.h); the path only changes the speed.
 */
#ifndef KILN_CPU_H
#define KILN_CPU_H

typedef enum krt_path {
    KRT_PATH_PORTABLE,   /* baseline x86-64 (or any C11 target): the reference */
    KRT_PATH_AVX2,       /* AVX2 + FMA + F16C: 8 lanes */
    KRT_PATH_AVX512,     /* AVX-512 F, BW, VL and VNNI (and the AVX2 set): 16 lanes */
    KRT_PATH_COUNT
} krt_path;

typedef struct krt_cpu {
    int avx2, fma, f16c;                          /* usable: CPU and OS state both */
    int avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
    char brand[49];                               /* "" when the CPU does not say */
} krt_cpu;

/* The features of this CPU (detected once, thread-safe). */
const krt_cpu *krt_cpu_get(void);
/* The best path the CPU allows, lowered by KILN_CPU=portable|avx2 in the environment (a
 * value never raises it); sets krt_kernel_path to it and returns it. */
krt_path krt_cpu_init(void);
/* krt_cpu_init() the first time any thread calls it, never again: the C library's first
 * open chooses the path before any of its kernels runs, and later opens, on any thread,
 * leave krt_kernel_path alone while other threads' kernels read it. */
void krt_cpu_init_once(void);
/* The best path the CPU allows at or below `want`; sets krt_kernel_path to it and returns
 * it (tests). */
krt_path krt_cpu_use(krt_path want);
/* Whether this CPU can run path p. */
int krt_cpu_has(krt_path p);
/* "portable", "avx2", "avx512"; krt_path_lookup gives the path of a name, or -1. */
const char *krt_path_name(krt_path p);
int krt_path_lookup(const char *name);

/* The physical cores this process may run on (SMT siblings counted once), at least 1: the
 * default thread count. */
int krt_cpu_cores(void);

extern krt_path krt_kernel_path;

#endif
