/* quants.h -- block layouts of the GGML quantized types (bit-compatible with
 * ggml-common.h) and fp16/bf16 conversion helpers.  Internal. */
#ifndef PG_QUANTS_H
#define PG_QUANTS_H

#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef uint16_t pg_half;   /* IEEE binary16 bits */
typedef uint16_t pg_bf16;   /* bfloat16 bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { pg_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;               /* 32 x 4 bit, scale */
typedef struct { pg_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;            /* 32 x 4 bit, scale+min */
typedef struct { pg_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;  /* 5th bits in qh */
typedef struct { pg_half d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { pg_half d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { pg_half d, s; int8_t qs[QK8_1]; } block_q8_1;                /* s = d * sum(qs) */

typedef struct {            /* 16 sub-blocks of 16; 2-bit quants, 4-bit scale+min per sub-block */
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    pg_half d, dmin;
} block_q2_K;
typedef struct {            /* 16 sub-blocks of 16; 3-bit quants (high bit in hmask), 6-bit scales */
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    pg_half d;
} block_q3_K;
typedef struct {            /* 8 sub-blocks of 32; 4-bit quants, 6-bit scale+min packed in 12 bytes */
    pg_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
typedef struct {            /* like q4_K plus a 5th bit in qh */
    pg_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
typedef struct {            /* 16 sub-blocks of 16; 6-bit quants (4 low in ql, 2 high in qh), int8 scales */
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    pg_half d;
} block_q6_K;
typedef struct {            /* activations for K-quant dot products */
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];   /* sums of each group of 16 qs */
} block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 size");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K size");

/* ---- scalar half / bfloat16 conversions (exact, no FPU mode dependence) ---- */

static inline float pg_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t pg_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float pg_half_to_f32(pg_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return pg_bits_to_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (exp == 31) return pg_bits_to_f32(sign | 0x7f800000u | (man << 13));
    return pg_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Round to nearest even, with overflow to inf and NaN preserved. */
static inline pg_half pg_f32_to_half(float f) {
    uint32_t x = pg_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (pg_half)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (pg_half)(sign | 0x7c00);           /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                           /* subnormal or zero in half */
        float v = pg_bits_to_f32(ax) * 16777216.0f;                   /* scale by 2^24 */
        uint32_t m = (uint32_t)__builtin_rintf(v);                    /* ties to even in default mode */
        return (pg_half)(sign | m);
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xfffu + mant_odd;
    return (pg_half)(sign | ((ax - 0x38000000u) >> 13));
}

static inline float pg_bf16_to_f32(pg_bf16 h) { return pg_bits_to_f32((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN (quiet), as ggml does. */
static inline pg_bf16 pg_f32_to_bf16(float f) {
    uint32_t u = pg_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (pg_bf16)((u >> 16) | 64);
    return (pg_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#endif
