/* cpu.h - the CPU features seen at program start and the kernel path they allow
 * (runtime/cpu.c). The kernels of kernels.h read krt_kernel_path on every call; it is
 * portable until krt_cpu_init() (the driver calls it first thing) or krt_cpu_use() says
 * otherwise, so a program never runs an instruction its CPU or OS lacks.
 */
#ifndef KILN_CPU_H
#define KILN_CPU_H

typedef enum krt_path {
    KRT_PATH_PORTABLE,   /* baseline x86-64 (or any C11 target): the reference */
    KRT_PATH_AVX2,       /* AVX2 + F16C intrinsics, bit for bit the portable results */
} krt_path;

typedef struct krt_cpu {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl;   /* usable: CPU and OS state both */
    char brand[49];                                     /* "" when the CPU does not say */
} krt_cpu;

/* The features of this CPU (detected once; not thread-safe before the first call returns). */
const krt_cpu *krt_cpu_get(void);
/* The best path the CPU allows, downgraded to portable by KILN_CPU=portable in the
 * environment; sets krt_kernel_path to it and returns it. */
krt_path krt_cpu_init(void);
/* Use `want` if the CPU allows it, else portable; returns the path now in use (tests). */
krt_path krt_cpu_use(krt_path want);
const char *krt_path_name(krt_path p);

extern krt_path krt_kernel_path;

#endif
