/* quant_dot.cuh -- device-side dequantization of every GGUF tensor type pygemma supports,
 * 32 elements ("a group") at a time.  The mat-vec, tinyBLAS and dequantize-to-F16 kernels
 * are all written over deq32<TYPE>, so the block layouts live here once.
 *
 * A row of `cols` elements has cols/32 groups.  For the 32-element block types a group is a
 * block; for the K-quants (256-element super-blocks) group g is sub-block g%8 of super-block
 * g/8; for F32/F16/BF16 it is 32 consecutive values.  Layouts and formulas as
 * csrc/quants.h and csrc/dequant.c (the CPU reference), byte offsets spelled out below.
 * Every fp16 scale sits at an even offset of a block whose size is even, and rows start on
 * even addresses, so 16-bit loads are aligned. */
#ifndef PG_QUANT_DOT_CUH
#define PG_QUANT_DOT_CUH

#include "gpu_compat.h"

enum {   /* GGML type numbers (csrc/pygemma.h pg_type) */
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
    T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30
};

__device__ __forceinline__ float ldh(const uint8_t *p) { return pg_h2f(*(const uint16_t *)p); }

/* (float)u - bias for a small integer 0 <= u < 2^23 (quants are at most 8 bits), exactly,
 * without an int-to-float conversion: GPUs convert at a fraction of the FMA rate (16 per
 * clock per SM on sm_80/sm_90 against 128 FMAs), which would cap 4-bit mat-vec below the
 * memory bandwidth.  u OR-ed into the mantissa of 2^23 is the float 2^23 + u. */
__device__ __forceinline__ float qf(uint32_t u, float bias) {
    return __uint_as_float(0x4B000000u | u) - (8388608.0f + bias);
}

/* The 4 bytes at p (any alignment) as a little-endian word. */
__device__ __forceinline__ uint32_t ld32u(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q3_K: 6-bit scale k (of 16) from its 12-byte packing, minus 32. */
__device__ __forceinline__ int q3k_scale(const uint8_t *s, int k) {
    int lo = (s[k % 8] >> (4 * (k / 8))) & 0xF;
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (of 8). */
__device__ __forceinline__ void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* v (32) = group g of the row starting at `row` (a row of TYPE). */
template <int TYPE>
__device__ __forceinline__ void deq32(const uint8_t *__restrict__ row, int64_t g, float *v) {
    if constexpr (TYPE == T_F32) {
        const float4 *p = (const float4 *)(row + 128 * g);   /* rows of F32 are 16-byte aligned */
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float4 f = p[i];
            v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
        }
    } else if constexpr (TYPE == T_F16 || TYPE == T_BF16) {
        const uint2 *p = (const uint2 *)(row + 64 * g);      /* 8-byte aligned: 64-byte groups */
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint2 u = p[i];
            uint16_t h[4] = {(uint16_t)u.x, (uint16_t)(u.x >> 16), (uint16_t)u.y, (uint16_t)(u.y >> 16)};
#pragma unroll
            for (int k = 0; k < 4; k++) v[4 * i + k] = TYPE == T_F16 ? pg_h2f(h[k]) : pg_bf2f(h[k]);
        }
    } else if constexpr (TYPE == T_Q4_0) {           /* 18 bytes: d@0, qs[16]@2 */
        const uint8_t *b = row + 18 * g;
        const float d = ldh(b);
        const uint16_t *q2 = (const uint16_t *)(b + 2);   /* 2-byte aligned: 8 loads, not 16 */
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int w = q2[j], q0 = w & 0xFF, q1 = w >> 8;
            v[2 * j] = d * qf(q0 & 0xF, 8.0f);
            v[2 * j + 16] = d * qf(q0 >> 4, 8.0f);
            v[2 * j + 1] = d * qf(q1 & 0xF, 8.0f);
            v[2 * j + 17] = d * qf(q1 >> 4, 8.0f);
        }
    } else if constexpr (TYPE == T_Q4_1) {           /* 20 bytes: d@0, m@2, qs[16]@4 */
        const uint8_t *b = row + 20 * g;
        const float d = ldh(b), m = ldh(b + 2);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q = b[4 + j];
            v[j] = d * qf(q & 0xF, 0.0f) + m;
            v[j + 16] = d * qf(q >> 4, 0.0f) + m;
        }
    } else if constexpr (TYPE == T_Q5_0 || TYPE == T_Q5_1) {
        /* Q5_0 22 bytes: d@0, qh[4]@2, qs[16]@6;  Q5_1 24 bytes: d@0, m@2, qh[4]@4, qs[16]@8 */
        const uint8_t *b = row + (TYPE == T_Q5_0 ? 22 : 24) * g;
        const float d = ldh(b), m = TYPE == T_Q5_1 ? ldh(b + 2) : 0.0f;
        const uint32_t qh = ld32u(b + (TYPE == T_Q5_0 ? 2 : 4));
        const uint8_t *qs = b + (TYPE == T_Q5_0 ? 6 : 8);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int q0 = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            const int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            if (TYPE == T_Q5_0) {
                v[j] = d * qf(q0, 16.0f);
                v[j + 16] = d * qf(q1, 16.0f);
            } else {
                v[j] = d * qf(q0, 0.0f) + m;
                v[j + 16] = d * qf(q1, 0.0f) + m;
            }
        }
    } else if constexpr (TYPE == T_Q8_0) {           /* 34 bytes: d@0, qs[32]@2 (int8) */
        const uint8_t *b = row + 34 * g;
        const float d = ldh(b);
        const uint16_t *q2 = (const uint16_t *)(b + 2);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const uint16_t w = q2[j];
            v[2 * j] = d * qf((w & 0xFF) ^ 0x80, 128.0f);   /* int8: offset binary */
            v[2 * j + 1] = d * qf((w >> 8) ^ 0x80, 128.0f);
        }
    } else if constexpr (TYPE == T_Q2_K) {
        /* 84 bytes: scales[16]@0, qs[64]@16, d@80, dmin@82.  Group j of the super-block:
         * element l is bits 2*(j%4) of qs[32*(j/4) + l]; scale byte 2j + l/16 */
        const uint8_t *b = row + 84 * (g / 8);
        const int j = (int)(g % 8);
        const float d = ldh(b + 80), dmin = ldh(b + 82);
        const uint8_t *q = b + 16 + 32 * (j / 4);
        const int shift = 2 * (j % 4);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int sc = b[2 * j + h];
            const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
#pragma unroll
            for (int l = 0; l < 16; l++) v[16 * h + l] = dl * qf((q[16 * h + l] >> shift) & 3, 0.0f) - ml;
        }
    } else if constexpr (TYPE == T_Q3_K) {
        /* 110 bytes: hmask[32]@0, qs[64]@32, scales[12]@96, d@108.  Low bits as Q2_K; the
         * third bit of element 32j + l is bit j of hmask[l], clear meaning "minus 4" */
        const uint8_t *b = row + 110 * (g / 8);
        const int j = (int)(g % 8);
        const float d = ldh(b + 108);
        const uint8_t *q = b + 32 + 32 * (j / 4);
        const int shift = 2 * (j % 4);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float dl = d * (float)q3k_scale(b + 96, 2 * j + h);
#pragma unroll
            for (int l = 0; l < 16; l++) {
                const int e = 16 * h + l;
                const int low = (q[e] >> shift) & 3;
                const int sub = (b[e] >> j) & 1 ? 0 : 4;
                v[e] = dl * qf(low + 4 - sub, 4.0f);
            }
        }
    } else if constexpr (TYPE == T_Q4_K || TYPE == T_Q5_K) {
        /* Q4_K 144 bytes: d@0, dmin@2, scales[12]@4, qs[128]@16
         * Q5_K 176 bytes: d@0, dmin@2, scales[12]@4, qh[32]@16, qs[128]@48
         * sub-block j: nibble (j%2) of qs[32*(j/2) + l]; Q5_K's fifth bit is bit j of qh[l] */
        const uint8_t *b = row + (TYPE == T_Q4_K ? 144 : 176) * (g / 8);
        const int j = (int)(g % 8);
        int sc, mn;
        q4k_scale_min(b + 4, j, &sc, &mn);
        const float dl = ldh(b) * (float)sc, ml = ldh(b + 2) * (float)mn;
        /* blocks of 144/176 bytes keep qs (and qh) 16-byte aligned: two 16-byte loads each */
        const uint4 *q4 = (const uint4 *)(b + (TYPE == T_Q4_K ? 16 : 48) + 32 * (j / 2));
        const int shift = 4 * (j % 2);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint4 qq = q4[h];
            uint4 hh = {0, 0, 0, 0};
            if (TYPE == T_Q5_K) hh = ((const uint4 *)(b + 16))[h];
            const uint32_t qw[4] = {qq.x, qq.y, qq.z, qq.w}, hw[4] = {hh.x, hh.y, hh.z, hh.w};
#pragma unroll
            for (int l = 0; l < 16; l++) {
                int x = (int)(qw[l / 4] >> (8 * (l % 4) + shift)) & 0xF;
                if (TYPE == T_Q5_K) x |= (int)((hw[l / 4] >> (8 * (l % 4) + j)) & 1) << 4;
                v[16 * h + l] = dl * qf(x, 0.0f) - ml;
            }
        }
    } else if constexpr (TYPE == T_Q6_K) {
        /* 210 bytes: ql[128]@0, qh[64]@128, scales[16]@192 (int8), d@208.  Group j: half = j/4,
         * gg = j%4; element l: low nibble (gg/2) of ql[64*half + 32*(gg%2) + l], top bits
         * 2gg..2gg+1 of qh[32*half + l], scale 8*half + 2*gg + l/16 */
        const uint8_t *b = row + 210 * (g / 8);
        const int j = (int)(g % 8), half = j / 4, gg = j % 4;
        const float d = ldh(b + 208);
        /* 16-bit loads (blocks of 210 bytes are only 2-byte aligned) */
        const uint16_t *ql = (const uint16_t *)(b + 64 * half + 32 * (gg % 2));
        const uint16_t *qh = (const uint16_t *)(b + 128 + 32 * half);
        const int ls = 4 * (gg / 2), hs = 2 * gg;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float dl = d * (float)(int8_t)b[192 + 8 * half + 2 * gg + h];
#pragma unroll
            for (int i = 8 * h; i < 8 * h + 8; i++) {
                const int wl = ql[i], wh = qh[i];
                const int lo0 = (wl >> ls) & 0xF, lo1 = (wl >> (8 + ls)) & 0xF;
                const int hi0 = (wh >> hs) & 3, hi1 = (wh >> (8 + hs)) & 3;
                v[2 * i] = dl * qf(lo0 | hi0 << 4, 32.0f);
                v[2 * i + 1] = dl * qf(lo1 | hi1 << 4, 32.0f);
            }
        }
    }
}

/* Bytes of a row of `cols` elements of `type` (cols a multiple of the block); 0 if the type
 * has no device kernels. */
static inline int64_t pg_gpu_row_bytes(int type, int64_t cols) {
    switch (type) {
    case T_F32: return 4 * cols;
    case T_F16: case T_BF16: return 2 * cols;
    case T_Q4_0: return cols / 32 * 18;
    case T_Q4_1: return cols / 32 * 20;
    case T_Q5_0: return cols / 32 * 22;
    case T_Q5_1: return cols / 32 * 24;
    case T_Q8_0: return cols / 32 * 34;
    case T_Q2_K: return cols / 256 * 84;
    case T_Q3_K: return cols / 256 * 110;
    case T_Q4_K: return cols / 256 * 144;
    case T_Q5_K: return cols / 256 * 176;
    case T_Q6_K: return cols / 256 * 210;
    default: return 0;
    }
}

static inline int64_t pg_gpu_block_elems(int type) {
    switch (type) {
    case T_F32: case T_F16: case T_BF16: return 32;   /* as the kernels see them: 32-groups */
    case T_Q2_K: case T_Q3_K: case T_Q4_K: case T_Q5_K: case T_Q6_K: return 256;
    default: return 32;
    }
}

/* Instantiate a kernel template for every type: `X(type)` expands per case. */
#define PG_FOR_EACH_TYPE(X) \
    X(T_F32) X(T_F16) X(T_BF16) X(T_Q4_0) X(T_Q4_1) X(T_Q5_0) X(T_Q5_1) X(T_Q8_0) \
    X(T_Q2_K) X(T_Q3_K) X(T_Q4_K) X(T_Q5_K) X(T_Q6_K)

#endif /* PG_QUANT_DOT_CUH */
