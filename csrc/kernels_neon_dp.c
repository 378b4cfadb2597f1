/* kernels_neon_dp.c -- the SDOT instantiation of the NEON quantized matmuls
 * (kernels_neon_q.h), for arm64 CPUs with the dotprod extension; cpu.c
 * detects it at run time, so a generic armv8-a build still uses SDOT.
 *
 * The whole unit is compiled for armv8.2-a+dotprod (a target pragma before
 * any include, so every inline helper and every kernels.h function here has
 * the same target and inlines), unless the command line already enables
 * dotprod.  The assembler accepts SDOT only from armv8.2-a on, hence the
 * arch rather than a bare +dotprod.  Nothing here runs unless the CPU has it. */
#if defined(__aarch64__) && !defined(__ARM_FEATURE_DOTPROD)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#endif

#include "kernels.h"

#if defined(__aarch64__)
#include "kernels_neon_unpack.h"

#define NQ_DP 1
#define NQ(name) name##_dp
#include "kernels_neon_q.h"

#if !defined(__ARM_FEATURE_DOTPROD) && defined(__clang__)
#pragma clang attribute pop
#endif
#endif
