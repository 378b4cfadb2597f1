/* cpu.h -- CPU feature probe and the active kernel tier. Internal. */
#ifndef PG_CPU_H
#define PG_CPU_H

#include "internal.h"

typedef struct {
    int avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16, avxvnni;
    int neon, dotprod;
} pg_cpu_flags;

/* Probed once (compiled without -m flags, checks OS support through XGETBV). */
const pg_cpu_flags *pg_cpu_flags_get(void);

/* The tier whose kernels run now; cheap to call from hot loops. */
int pg_cpu_tier_active(void);

#endif
