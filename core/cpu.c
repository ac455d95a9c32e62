/*
 * cpu.c — what this CPU offers the own kernels, read once: the SIMD level they may use
 * (AVX-512F, AVX2 with FMA, or none: the portable im2col + BLAS paths only), lowered by
 * the environment variable CONVD_ISA=avx512|avx2|none and by the test-only
 * cvd_cpu_force_isa, never raised above what CPUID reports; and the data cache sizes
 * (sysconf) the kernels size their blocks from, so the same binary blocks for the cache
 * it runs on. Holds no memory; the level is one atomic, so changing it while another
 * thread plans a pass only decides which of two correct kernels that pass runs.
 */
#include "cvd_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static int cpu_isa_max;        /* what CPUID reports */
static atomic_int cpu_isa_now; /* what the kernels use: min(max, CONVD_ISA, forced) */
static size_t cpu_l1d, cpu_l2;

static cvd_isa isa_from_cpuid(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return CVD_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CVD_ISA_AVX2;
#endif
    return CVD_ISA_NONE;
}

/* A cache size from sysconf, or dflt where the C library does not know it (0 or -1). */
static size_t cache_bytes(int name, size_t dflt)
{
    long v = sysconf(name);
    return v > 0 ? (size_t)v : dflt;
}

static void cpu_init(void)
{
    cpu_isa_max = isa_from_cpuid();
    int isa = cpu_isa_max;
    const char *env = getenv("CONVD_ISA");
    if (env) {
        /* an unknown value changes nothing: the daemon must start whatever it says */
        const int want = !strcmp(env, "none")     ? CVD_ISA_NONE
                         : !strcmp(env, "avx2")   ? CVD_ISA_AVX2
                         : !strcmp(env, "avx512") ? CVD_ISA_AVX512
                                                  : cpu_isa_max;
        isa = want < isa ? want : isa;
    }
    atomic_store(&cpu_isa_now, isa);
    /* the defaults are the smallest of current x86 server cores (32 KiB, 1 MiB) */
    cpu_l1d = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, (size_t)32 << 10);
    cpu_l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, (size_t)1 << 20);
}

cvd_isa cvd_cpu_isa(void)
{
    pthread_once(&cpu_once, cpu_init);
    return (cvd_isa)atomic_load(&cpu_isa_now);
}

cvd_isa cvd_cpu_isa_max(void)
{
    pthread_once(&cpu_once, cpu_init);
    return (cvd_isa)cpu_isa_max;
}

cvd_isa cvd_cpu_force_isa(cvd_isa isa)
{
    pthread_once(&cpu_once, cpu_init);
    const int now = (int)isa < cpu_isa_max ? (int)isa : cpu_isa_max;
    atomic_store(&cpu_isa_now, now);
    return (cvd_isa)now;
}

const char *cvd_cpu_isa_name(cvd_isa isa)
{
    return isa == CVD_ISA_AVX512 ? "avx512" : isa == CVD_ISA_AVX2 ? "avx2" : "none";
}

size_t cvd_cpu_l1d(void)
{
    pthread_once(&cpu_once, cpu_init);
    return cpu_l1d;
}

size_t cvd_cpu_l2(void)
{
    pthread_once(&cpu_once, cpu_init);
    return cpu_l2;
}
