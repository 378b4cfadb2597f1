/* cpu.c -- probe CPU features once and choose the kernel tier.
 *
 * This file is compiled without any -m flags so it runs on every x86-64/arm64
 * CPU.  AVX state must be enabled by the OS as well as by the CPU: CPUID says
 * what the silicon has, XGETBV says which register files the kernel saves.
 * On arm64 the dotprod extension (SDOT) is read from the kernel's HWCAP bits,
 * so a generic armv8-a build still uses SDOT on CPUs that have it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#include <asm/hwcap.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)   /* SDOT/UDOT (older kernel headers lack the name) */
#endif
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

static pg_cpu_flags g_flags;
static int g_best = PG_CPU_SCALAR;
static int g_active = PG_CPU_SCALAR;
static char g_feature_str[256];

static void probe(void) {
    memset(&g_flags, 0, sizeof g_flags);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    g_flags.fma = (c >> 12) & 1;
    g_flags.f16c = (c >> 29) & 1;
    uint64_t xcr0 = (osxsave && avx) ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;                 /* XMM + YMM state */
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  /* opmask + ZMM state */
    if (!os_avx) { g_flags.fma = g_flags.f16c = 0; return; }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        g_flags.avx2 = (b >> 5) & 1;
        if (os_avx512) {
            g_flags.avx512f = (b >> 16) & 1;
            g_flags.avx512dq = (b >> 17) & 1;
            g_flags.avx512bw = (b >> 30) & 1;
            g_flags.avx512vl = (b >> 31) & 1;
            g_flags.avx512vnni = (c >> 11) & 1;
        }
        __cpuid_count(7, 1, a, b, c, d);
        g_flags.avxvnni = (a >> 4) & 1;
        if (os_avx512) g_flags.avx512bf16 = (a >> 5) & 1;
    }
#elif defined(__aarch64__)
    /* The dotprod kernels are compiled in whatever -march says (a target
     * pragma), so ask the running CPU, not the compiler. */
    g_flags.neon = 1;
#if defined(__linux__)
    g_flags.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int has = 0;
    size_t len = sizeof has;
    g_flags.dotprod = sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &len, NULL, 0) == 0 && has;
#elif defined(__ARM_FEATURE_DOTPROD)
    g_flags.dotprod = 1;
#endif
#endif
}

static void append(const char *name, int on) {
    if (!on) return;
    size_t len = strlen(g_feature_str);
    snprintf(g_feature_str + len, sizeof g_feature_str - len, "%s%s", len ? " " : "", name);
}

PG_API int pg_cpu_tier_supported(int tier) {
    switch (tier) {
    case PG_CPU_SCALAR: return 1;
#if defined(__x86_64__)
    case PG_CPU_AVX2: return g_flags.avx2 && g_flags.fma && g_flags.f16c;
    case PG_CPU_AVX512:
        return pg_cpu_tier_supported(PG_CPU_AVX2) && g_flags.avx512f && g_flags.avx512bw &&
               g_flags.avx512vl && g_flags.avx512dq;
#endif
#if defined(__aarch64__)
    case PG_CPU_NEON: return g_flags.neon;
#endif
    default: return 0;
    }
}

__attribute__((constructor)) static void pg_cpu_init(void) {
    probe();
    append("avx2", g_flags.avx2);
    append("fma", g_flags.fma);
    append("f16c", g_flags.f16c);
    append("avx512f", g_flags.avx512f);
    append("avx512bw", g_flags.avx512bw);
    append("avx512vl", g_flags.avx512vl);
    append("avx512dq", g_flags.avx512dq);
    append("avx512vnni", g_flags.avx512vnni);
    append("avx512bf16", g_flags.avx512bf16);
    append("avxvnni", g_flags.avxvnni);
    append("neon", g_flags.neon);
    append("dotprod", g_flags.dotprod);
    for (int t = PG_CPU_NEON; t >= PG_CPU_SCALAR; t--)
        if (pg_cpu_tier_supported(t)) { g_best = t; break; }
    g_active = g_best;
    const char *env = getenv("PYGEMMA_CPU");
    if (env && *env) {
        for (int t = PG_CPU_SCALAR; t <= PG_CPU_NEON; t++)
            if (strcmp(env, pg_cpu_tier_name(t)) == 0 && pg_cpu_tier_supported(t)) g_active = t;
        /* An unknown or unsupported name keeps the best tier; Python warns about it. */
    }
}

const pg_cpu_flags *pg_cpu_flags_get(void) { return &g_flags; }
int pg_cpu_tier_active(void) { return g_active; }

PG_API int pg_cpu_tier_get(void) { return g_active; }
PG_API int pg_cpu_tier_best(void) { return g_best; }

PG_API pg_status pg_cpu_tier_set(int tier) {
    if (!pg_cpu_tier_supported(tier))
        return pg_fail(PG_ERR_ARG, "CPU tier %d (%s) is not supported on this CPU", tier,
                       pg_cpu_tier_name(tier));
    g_active = tier;
    return PG_OK;
}

PG_API const char *pg_cpu_tier_name(int tier) {
    switch (tier) {
    case PG_CPU_SCALAR: return "scalar";
    case PG_CPU_AVX2: return "avx2";
    case PG_CPU_AVX512: return "avx512";
    case PG_CPU_NEON: return "neon";
    default: return "unknown";
    }
}

PG_API const char *pg_cpu_features(void) { return g_feature_str; }

/* Physical cores: distinct (package, core id) pairs from sysfs; falls back to
 * the online CPU count.  SMT siblings share a core's FMA units, so more
 * threads than cores rarely help matmuls. */
PG_API int pg_cpu_physical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    int seen = 0;
    char keys[256][32];
    for (long i = 0; i < n && i < 256; i++) {
        char path[128], buf[64] = {0}, key[32];
        int pkg = -1, core = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", i);
        FILE *f = fopen(path, "r");
        if (!f) return (int)n;
        if (fgets(buf, sizeof buf, f)) pkg = atoi(buf);
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", i);
        f = fopen(path, "r");
        if (!f) return (int)n;
        if (fgets(buf, sizeof buf, f)) core = atoi(buf);
        fclose(f);
        snprintf(key, sizeof key, "%d:%d", pkg, core);
        int dup = 0;
        for (int j = 0; j < seen; j++) if (strcmp(keys[j], key) == 0) { dup = 1; break; }
        if (!dup) memcpy(keys[seen++], key, sizeof key);
    }
    return seen > 0 ? seen : (int)n;
}
