/* kernels.h -- the per-CPU-tier kernel table behind pg_matmul, and the
 * dispatched vector helpers used by the forward pass (attention, norms).
 * Internal.
 *
 * Each tier (kernels_ref.c = scalar reference; kernels_avx2*.c;
 * kernels_avx512*.c with the panel tiles for batches; kernels_neon*.c) fills a
 * pg_kernels table; entries a tier does not accelerate keep the scalar
 * reference.  pg_kernels_get() returns
 * the table of the tier active now (pg_cpu_tier_active()), so tests can switch
 * tiers in-process.
 *
 * Activations.  As in llama.cpp, float activations are first converted to the
 * "activation format" of the weight type, so that the inner products are
 * integer (or bf16) dot products.  The formats are internal and laid out for
 * SIMD loads (values first, then the per-block scales), one row per token,
 * each row 64-byte aligned (pg_act_row_bytes):
 *   PG_ACT_F32    float x[n]                          (F32, F16 weights: x used as is)
 *   PG_ACT_BF16   bf16 x[n], round to nearest even    (BF16 weights)
 *   PG_ACT_Q8_32  int8 qs[n] | float d[n/32] | float s[n/32] | int16 qsum[n/32]
 *                 x ~ d[b] * qs, qs = rne(x * 127/amax), d = amax/127 rounded to F16
 *                 (as ggml's block_q8_0), qsum[b] = sum(qs of b), s[b] = d[b] * qsum[b]
 *                 (exact); Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights; s folds in the Q4_1/Q5_1
 *                 minimum, qsum the Q4_0/Q5_0 offset
 *   PG_ACT_Q8_256 int8 qs[n] | float d[n/256] | int16 bsums[n/16] | float dbs[n/16]
 *                 qs = rne(x * id), id = 127/amax, d = 1/id per block of 256 (as
 *                 ggml's Q8_K), bsums = sums of each 16 qs, dbs = d * bsums (the
 *                 SIMD tiers fold the K-quant minimums in float)
 * The 8-bit conversion rounds to nearest even and gives the same values in
 * every tier (the scalar Q8_256 takes the sign of the largest element as ggml's
 * reference does, which negates both qs and d: the products are unchanged), so
 * integer dot products agree exactly between tiers; results differ only by the
 * order of float additions. */
#ifndef PG_KERNELS_H
#define PG_KERNELS_H

#include "quants.h"

typedef enum {
    PG_ACT_F32 = 0,
    PG_ACT_BF16 = 1,
    PG_ACT_Q8_32 = 2,
    PG_ACT_Q8_256 = 3,
    PG_ACT_COUNT = 4
} pg_act_format;

/* Activation format for weights of `wtype`; -1 if no matmul kernel. */
int pg_act_format_of(int wtype);
/* Bytes of one activation row of n elements (a multiple of 64). */
size_t pg_act_row_bytes(int fmt, int64_t n);

/* Scales d of the 32-blocks are rounded to F16, as ggml stores them in
 * block_q8_0/q8_1; keeping that rounding keeps our sums equal to llama.cpp's.
 * s stays d * sum(q) in F32: the offset tricks of the SIMD tiles need it exact
 * (ggml rounds s to F16 too, which only Q4_1/Q5_1 read). */
static inline float pg_act_round_scale(float d) { return pg_half_to_f32(pg_f32_to_half(d)); }

/* Pointers into an activation row of n elements (see the layouts above). */
static inline const float *pg_act_q8_d(const void *row, int64_t n) {
    return (const float *)((const char *)row + n);
}
static inline const float *pg_act_q8_s(const void *row, int64_t n) {      /* Q8_32 only */
    return pg_act_q8_d(row, n) + n / 32;
}
static inline const int16_t *pg_act_q8_qsum(const void *row, int64_t n) {  /* Q8_32 only */
    return (const int16_t *)(pg_act_q8_s(row, n) + n / 32);
}
static inline const int16_t *pg_act_q8_bsums(const void *row, int64_t n) { /* Q8_256 only */
    return (const int16_t *)((const char *)row + n + 4 * (n / 256));
}
static inline const float *pg_act_q8_dbs(const void *row, int64_t n) {     /* Q8_256 only */
    return (const float *)(pg_act_q8_bsums(row, n) + n / 16);
}

/* Convert one row of n floats (n a multiple of the format's block) into an
 * activation row. */
typedef void (*pg_act_fn)(int64_t n, const float *x, void *row);

/* Canonical order (batch invariance).  For the quantized types every tier
 * computes each output y = dot(weight row, activation row) with the same float
 * operations, whatever the kernel path (mat-vec, small-batch tiles, panels),
 * tile position, thread split or batch, so a token's logits never depend on
 * the tokens evaluated with it.  Integer sums are exact in any order; the float
 * part is one chain over the blocks b = 0, 1, ... in order, starting from +0:
 *   32-blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0), isum = sum w*q with w the signed
 *   integer weight (u - 8 for Q4_0, u - 16 for Q5_0, u for Q4_1/Q5_1):
 *     acc = fmaf((float)isum, d * dx, acc)
 *     acc = fmaf(m, s, acc)                       (Q4_1, Q5_1 only)
 *   K-quants, I = sum_g sc[g] * sum u*q and M = sum_g mn[g] * bsums[g] (see
 *   pg_kscales below):
 *     acc = fmaf((float)I, d * dx, acc)
 *     acc = fmaf((float)M, (-dmin) * dx, acc)
 * where d * dx and (-dmin) * dx are single float products.  The scalar
 * reference writes this literally, so every SIMD tier equals it bit for bit.
 * Float weights (F32 F16 BF16) are summed in each tier's own fixed order (lanes
 * over k, then a fixed reduction), the same for every tile of that tier.
 *
 * The matmul kernel of one weight type, a tile of dot products:
 *   y[c * ldy + r] = dot(weight row r, activation row c)   for r < nr, c < nc
 *   w: (nr, n) weights, row stride ldw bytes
 *   x: (nc, n) activation rows in the type's format, row stride ldx bytes
 *   y: (nc, ldy) floats
 *   work: the calling thread's scratch, work(n) bytes, 64-byte aligned (SIMD
 *         tiers unpack a few weight rows there once and reuse them for every
 *         column of the chunk)
 * Any nr, nc >= 1.  Each output is computed by the same sequence of float
 * operations whatever nr/nc/tile position, so results do not depend on how
 * pg_matmul splits the work between threads. */
typedef void (*pg_gemm_fn)(int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr,
                           const void *x, size_t ldx, int nc, void *work);

/* Regroup up to `cols` activation rows (x: (cols, ldx bytes), cols <= the
 * kernel's panel_cols) into one panel (panel_bytes(n) bytes, missing columns
 * zero), the layout the panel tiles read. */
typedef void (*pg_panel_fn)(int64_t n, const void *x, size_t ldx, int cols, void *panel);

typedef struct {
    pg_gemm_fn fn;
    int mr, nr;                    /* register tile (rows, columns): chunks are multiples */
    size_t (*work)(int64_t n);     /* scratch bytes per thread; NULL: none */
    /* Optional panel path for batches of >= panel_cols tokens: the activation
     * rows are regrouped once per call into panels of panel_cols columns, and
     * pfn is called with x = the chunk's first panel, ldx = panel_bytes(n)
     * (the stride between panels) and nc = the chunk's column count. */
    pg_gemm_fn pfn;
    int pmr;                       /* rows per panel tile: chunks are multiples */
    int panel_cols;
    pg_panel_fn to_panel;
    size_t (*panel_bytes)(int64_t n);
} pg_gemm_kernel;

typedef struct {
    const char *name;                       /* "avx512-vnni", ... */
    pg_gemm_kernel gemm[PG_TYPE_COUNT];     /* NULL fn: type has no matmul kernel */
    pg_act_fn act[PG_ACT_COUNT];            /* act[PG_ACT_F32] is unused (NULL) */
    float (*dot_f32)(int n, const float *x, const float *y);
    float (*sum_sq_f32)(int n, const float *x);
    float (*dot_f32_f16)(int n, const float *x, const uint16_t *y);
    void (*axpy_f32)(int n, float a, const float *x, float *y);
    void (*axpy_f16)(int n, float a, const uint16_t *x, float *y);
    void (*f32_to_f16_row)(int n, const float *x, uint16_t *y);
    void (*f16_to_f32_row)(int n, const uint16_t *x, float *y);
    /* Attention (model.c).  s[i] = q_i . k for nq <= 8 queries and one key, each
     * computed exactly as dot_f32_f16 (dot_f32) computes one:
     *   q: (nq, hd) f32, k: (hd) f16 (f32), s: (nq) */
    void (*qk_f16)(int hd, int nq, const float *q, const uint16_t *k, float *s);
    void (*qk_f32)(int hd, int nq, const float *q, const float *k, float *s);
    /* out[i] = sum over the keys j = 0..nk-1, in order, of p[i][j] * v_j, one fused
     * multiply-add per element and key starting from 0 (what zeroing out and calling
     * axpy_f16 per key computes); v_j is slot (first + j) % nslots of a ring:
     *   p: (nq, ldp) f32, v: (nslots, hd) f16 (f32), out: (nq, hd) f32 */
    void (*av_f16)(int hd, int nq, int nk, const float *p, int ldp, const uint16_t *v, int first, int nslots,
                   float *out);
    void (*av_f32)(int hd, int nq, int nk, const float *p, int ldp, const float *v, int first, int nslots,
                   float *out);
    /* Benchmark probe: read `bytes` (a multiple of 64) at p as fast as the tier
     * can stream, return a checksum (so the reads cannot be elided). */
    uint64_t (*mem_read)(const void *p, size_t bytes);
} pg_kernels;

/* The table of the active tier (built on first use; cheap afterwards). */
const pg_kernels *pg_kernels_get(void);

/* Filled by each tier's file over a copy of the scalar table; each returns 0
 * (and leaves k untouched) where the tier is not compiled in.  Only called
 * when the CPU supports the tier. */
void pg_kernels_fill_ref(pg_kernels *k);
int pg_kernels_fill_avx2(pg_kernels *k);
int pg_kernels_fill_avx512(pg_kernels *k, int vnni, int bf16);
int pg_kernels_fill_neon(pg_kernels *k, int dotprod);
/* The quantized-type halves of the x86 tiers (kernels_*_quant.c). */
void pg_avx512_fill_quant(pg_kernels *k, int vnni);
void pg_avx2_fill_quant(pg_kernels *k);
/* The quantized-type half of the NEON tier (kernels_neon_q.h): plain
 * (kernels_neon.c) and SDOT (kernels_neon_dp.c, only for CPUs with dotprod). */
void pg_neon_fill_quant(pg_kernels *k);
void pg_neon_fill_quant_dp(pg_kernels *k);
/* The panel paths for batches (kernels_*_panel.c). */
void pg_avx2_fill_panel(pg_kernels *k);

/* ---- dispatched vector helpers (the forward pass codes against these) ----
 * All lengths are element counts (any n >= 0); the results of the SIMD tiers
 * differ from the scalar reference only by float summation order.  F16 is
 * IEEE binary16 bits (e.g. the KV cache). */
/* x . y                                   x: (n) f32, y: (n) f32 */
float pg_dot_f32(int n, const float *x, const float *y);
/* sum of x[i]^2 (RMSNorm)                 x: (n) f32 */
float pg_sum_sq_f32(int n, const float *x);
/* x . y, y in F16 (q . k over the cache)  x: (n) f32, y: (n) f16 */
float pg_dot_f32_f16(int n, const float *x, const uint16_t *y);
/* y += a * x                              x, y: (n) f32 */
void pg_axpy_f32(int n, float a, const float *x, float *y);
/* y += a * x, x in F16 (attn . v)          x: (n) f16, y: (n) f32 */
void pg_axpy_f16(int n, float a, const uint16_t *x, float *y);
/* y = x rounded to F16, nearest even      x: (n) f32, y: (n) f16 */
void pg_f32_to_f16_row(int n, const float *x, uint16_t *y);
/* y = x widened to f32 (exact)            x: (n) f16, y: (n) f32 */
void pg_f16_to_f32_row(int n, const uint16_t *x, float *y);

/* ---- K-quant block scales, decoded for the integer dot product ----
 * Every K-quant block of 256 weights is, for 16-element groups g = 0..15,
 *   w[e] = d * sc[g] * u[e] - dmin * mn[g]      (g = e / 16, u[e] >= 0 an integer)
 * so that dot(w, x) over a block with Q8_256 activations (scale dx, bsums) is
 *   dx * (d * sum_e sc[e/16] * u[e] * q[e]  -  dmin * sum_g mn[g] * bsums[g]).
 * Offsets become minimums: Q6_K (u - 32) has mn = 32 * sc and dmin = d,
 * Q3_K (u - 4) has mn = 4 * sc and dmin = d.  Both sums are exact in int32. */
typedef struct {
    float d, dmin;
    int16_t sc[16];   /* scale of each group of 16 */
    int16_t mn[16];   /* minimum multiplier of each group of 16 */
} pg_kscales;

static inline void pg_kscales_q4k(const uint8_t *s12, pg_half d, pg_half dmin, pg_kscales *o) {
    for (int j = 0; j < 8; j++) {
        int sc, m;
        if (j < 4) {
            sc = s12[j] & 63;
            m = s12[j + 4] & 63;
        } else {
            sc = (s12[j + 4] & 0xF) | ((s12[j - 4] >> 6) << 4);
            m = (s12[j + 4] >> 4) | ((s12[j] >> 6) << 4);
        }
        o->sc[2 * j] = o->sc[2 * j + 1] = (int16_t)sc;
        o->mn[2 * j] = o->mn[2 * j + 1] = (int16_t)m;
    }
    o->d = pg_half_to_f32(d);
    o->dmin = pg_half_to_f32(dmin);
}

static inline void pg_kscales_q6k(const block_q6_K *b, pg_kscales *o) {
    for (int g = 0; g < 16; g++) {
        o->sc[g] = b->scales[g];
        o->mn[g] = (int16_t)(32 * b->scales[g]);
    }
    o->d = o->dmin = pg_half_to_f32(b->d);
}

static inline void pg_kscales_q3k(const block_q3_K *b, pg_kscales *o) {
    const uint8_t *s = b->scales;
    for (int g = 0; g < 16; g++) {
        int v = ((s[g % 8] >> (4 * (g / 8))) & 0xF) | (((s[8 + g % 4] >> (2 * (g / 4))) & 3) << 4);
        o->sc[g] = (int16_t)(v - 32);
        o->mn[g] = (int16_t)(4 * (v - 32));
    }
    o->d = o->dmin = pg_half_to_f32(b->d);
}

static inline void pg_kscales_q2k(const block_q2_K *b, pg_kscales *o) {
    for (int g = 0; g < 16; g++) {
        o->sc[g] = b->scales[g] & 0xF;
        o->mn[g] = b->scales[g] >> 4;
    }
    o->d = pg_half_to_f32(b->d);
    o->dmin = pg_half_to_f32(b->dmin);
}

#endif
