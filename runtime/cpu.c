/* cpu.c - CPU feature detection (cpuid leaves 1 and 7, xgetbv for the OS's vector state)
 * and the choice of kernel path, once at program start (cpu.h).
 */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KRT_X86 1
#endif

krt_path krt_kernel_path = KRT_PATH_PORTABLE;

static krt_cpu cpu_seen;
static int cpu_detected;

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
    }
    cpu_brand(k->brand);
}
#else
static void cpu_detect(krt_cpu *k) { (void)k; }
#endif

const krt_cpu *krt_cpu_get(void)
{
    if (!cpu_detected) {
        cpu_detect(&cpu_seen);
        cpu_detected = 1;
    }
    return &cpu_seen;
}

krt_path krt_cpu_use(krt_path want)
{
    const krt_cpu *k = krt_cpu_get();
    krt_path p = want == KRT_PATH_AVX2 && k->avx2 && k->f16c ? KRT_PATH_AVX2 : KRT_PATH_PORTABLE;
    krt_kernel_path = p;
    return p;
}

krt_path krt_cpu_init(void)
{
    const char *env = getenv("KILN_CPU");
    /* only ever a downgrade: any other value keeps the detected path */
    return krt_cpu_use(env && strcmp(env, "portable") == 0 ? KRT_PATH_PORTABLE : KRT_PATH_AVX2);
}

const char *krt_path_name(krt_path p)
{
    return p == KRT_PATH_AVX2 ? "avx2" : "portable";
}
