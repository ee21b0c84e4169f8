/* cpu.c - CPU feature detection (cpuid leaves 1 and 7, xgetbv for the OS's vector state)
 * and the choice of kernel path, once at program start (cpu.h). Detection runs once
 * (pthread_once), so threads that open models at the same time see one result.
 */
#include "cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KRT_X86 1
#endif

krt_path krt_kernel_path = KRT_PATH_PORTABLE;

/* written once, under cpu_once: the C library's contexts may start on several threads */
static krt_cpu cpu_seen;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static pthread_once_t path_once = PTHREAD_ONCE_INIT;

#ifdef KRT_X86
/* XCR0: which register states the OS saves; AVX needs XMM+YMM (bits 1, 2), AVX-512 also
 * opmask and ZMM (bits 5..7). Only asked when cpuid says OSXSAVE. */
static unsigned long long cpu_xcr0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

static void cpu_brand(char *brand)
{
    unsigned a, b, c, d, max = __get_cpuid_max(0x80000000u, NULL);
    if (max < 0x80000004u)
        return;
    for (unsigned leaf = 0; leaf < 3; leaf++) {
        unsigned r[4];
        __cpuid(0x80000002u + leaf, a, b, c, d);
        r[0] = a, r[1] = b, r[2] = c, r[3] = d;
        memcpy(brand + 16 * leaf, r, 16);
    }
    brand[48] = 0;
    size_t lead = strspn(brand, " ");   /* some CPUs pad the brand at the front */
    memmove(brand, brand + lead, strlen(brand + lead) + 1);
}

static void cpu_detect(krt_cpu *k)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned long long xcr0 = osxsave ? cpu_xcr0() : 0;
    int os_avx = avx && (xcr0 & 0x6) == 0x6, os_avx512 = os_avx && (xcr0 & 0xe6) == 0xe6;
    k->fma = os_avx && ((c >> 12) & 1);
    k->f16c = os_avx && ((c >> 29) & 1);
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        k->avx2 = os_avx && ((b >> 5) & 1);
        k->avx512f = os_avx512 && ((b >> 16) & 1);
        k->avx512bw = os_avx512 && ((b >> 30) & 1);
        k->avx512vl = os_avx512 && ((b >> 31) & 1);
        k->avx512vnni = os_avx512 && ((c >> 11) & 1);
        unsigned a1, b1, c1, d1;
        if (a >= 1) {              /* subleaf 1: AVX512_BF16 in eax bit 5 */
            __cpuid_count(7, 1, a1, b1, c1, d1);
            k->avx512bf16 = os_avx512 && ((a1 >> 5) & 1);
            (void)b1, (void)c1, (void)d1;
        }
    }
    cpu_brand(k->brand);
}
#else
static void cpu_detect(krt_cpu *k) { (void)k; }
#endif

static void cpu_detect_seen(void) { cpu_detect(&cpu_seen); }

const krt_cpu *krt_cpu_get(void)
{
    pthread_once(&cpu_once, cpu_detect_seen);
    return &cpu_seen;
}

int krt_cpu_has(krt_path p)
{
    const krt_cpu *k = krt_cpu_get();
    int avx2 = k->avx2 && k->fma && k->f16c;
    switch (p) {
    case KRT_PATH_PORTABLE: return 1;
    case KRT_PATH_AVX2: return avx2;
    case KRT_PATH_AVX512:
        return avx2 && k->avx512f && k->avx512bw && k->avx512vl && k->avx512vnni;
    default: return 0;
    }
}

krt_path krt_cpu_use(krt_path want)
{
    int p = want < KRT_PATH_COUNT ? (int)want : KRT_PATH_COUNT - 1;
    while (p > 0 && !krt_cpu_has((krt_path)p))
        p--;
    krt_kernel_path = (krt_path)p;
    return krt_kernel_path;
}

static const char *const path_names[KRT_PATH_COUNT] = {"portable", "avx2", "avx512"};

krt_path krt_cpu_init(void)
{
    const char *env = getenv("KILN_CPU");
    int want = env ? krt_path_lookup(env) : -1;
    /* only ever a downgrade: an unknown value keeps the detected path */
    return krt_cpu_use(want >= 0 ? (krt_path)want : (krt_path)(KRT_PATH_COUNT - 1));
}

static void cpu_init_path(void) { krt_cpu_init(); }

void krt_cpu_init_once(void)
{
    pthread_once(&path_once, cpu_init_path);
}

const char *krt_path_name(krt_path p)
{
    return p < KRT_PATH_COUNT ? path_names[p] : "?";
}

int krt_path_lookup(const char *name)
{
    for (int p = 0; p < KRT_PATH_COUNT; p++)
        if (strcmp(name, path_names[p]) == 0)
            return p;
    return -1;
}

/* An integer from a sysfs file, or -1. */
static long sysfs_int(const char *fmt, int cpu)
{
    char path[128];
    snprintf(path, sizeof path, fmt, cpu);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

int krt_cpu_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
    /* (package, core) pairs of the CPUs we may use: SMT siblings share one */
    long seen[2 * CPU_SETSIZE];
    int cores = 0, cpus = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        cpus++;
        long pkg = sysfs_int("/sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
        long core = sysfs_int("/sys/devices/system/cpu/cpu%d/topology/core_id", c);
        if (pkg < 0 || core < 0)
            return cpus > 0 ? CPU_COUNT(&set) : 1;   /* no topology: count the CPUs */
        int dup = 0;
        for (int k = 0; k < cores && !dup; k++)
            dup = seen[2 * k] == pkg && seen[2 * k + 1] == core;
        if (!dup)
            seen[2 * cores] = pkg, seen[2 * cores + 1] = core, cores++;
    }
    return cores > 0 ? cores : 1;
}
