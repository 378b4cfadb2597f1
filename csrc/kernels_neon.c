/* kernels_neon.c -- arm64 NEON tier: the float matmuls, the vector helpers,
 * the plain instantiation of the quantized matmuls (SMULL/SMLAL, any arm64)
 * and the tier's table.  The SDOT instantiation is kernels_neon_dp.c, chosen
 * at run time where the CPU has the dotprod extension (cpu.c).
 *
 * Quantized types (kernels_neon_q.h).  A tile is 4 or 8 outputs, R weight
 * rows x C tokens (4x1 for mat-vec, 4x2 and 2x4 for batches); each output's
 * exact integer block sum is built in an int32x4, four are reduced to one
 * vector (lane = output) and the float part runs in the canonical order of
 * kernels.h with one VFMA (= fmaf per lane) per block and vector, so every
 * output equals the scalar reference bit for bit, whatever the tile, batch or
 * variant.  The activation conversion stays the scalar reference.
 *
 * Float weights (F32 F16 BF16): per output, 4 lanes over k with VFMA, one
 * ADDV, then the scalar tail -- the same sequence for every tile and batch. */
#include "kernels.h"

#if defined(__aarch64__)
#include "kernels_neon_unpack.h"

#define NQ_DP 0
#define NQ(name) name
#include "kernels_neon_q.h"

/* ---------------------------------------------------------------------- */
/* Float weights and vector helpers                                       */
/* ---------------------------------------------------------------------- */

enum { F_F32, F_F16, F_BF16 };

/* Tokens per weight-row pass of the float kernels (each output's order does
 * not depend on it). */
#define N_RN 4

INLINE float32x4_t f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
INLINE float32x4_t bf16x4(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

INLINE float32x4_t f_load(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return vld1q_f32((const float *)row + k);
    return T == F_F16 ? f16x4((const uint16_t *)row + k) : bf16x4((const uint16_t *)row + k);
}
INLINE float f_one(const int T, const uint8_t *row, int64_t k) {
    if (T == F_F32) return ((const float *)row)[k];
    uint16_t h = ((const uint16_t *)row)[k];
    return T == F_F16 ? h2f(h) : pg_bf16_to_f32(h);
}

/* weights of type T, activations f32 (F32/F16) or bf16 (BF16) */
INLINE void f_gemm_t(const int T, int64_t n, float *y, int64_t ldy, const uint8_t *w, size_t ldw, int nr,
                     const uint8_t *x, size_t ldx, int nc) {
    const int TX = T == F_BF16 ? F_BF16 : F_F32;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ldw;
        for (int c0 = 0; c0 < nc; c0 += N_RN) {
            int rn = PG_MIN(N_RN, nc - c0);
            float32x4_t acc[N_RN];
            for (int j = 0; j < N_RN; j++) acc[j] = vdupq_n_f32(0.0f);
            int64_t k = 0;
            for (; k + 4 <= n; k += 4) {
                float32x4_t a = f_load(T, row, k);
                for (int j = 0; j < rn; j++) acc[j] = vfmaq_f32(acc[j], a, f_load(TX, x + (size_t)(c0 + j) * ldx, k));
            }
            for (int j = 0; j < rn; j++) {
                float s = vaddvq_f32(acc[j]);
                for (int64_t t = k; t < n; t++) s += f_one(T, row, t) * f_one(TX, x + (size_t)(c0 + j) * ldx, t);
                y[(c0 + j) * ldy + r] = s;
            }
        }
    }
}

#define GEMM_ARGS int64_t n, float *y, int64_t ldy, const void *w, size_t ldw, int nr, \
                  const void *x, size_t ldx, int nc, void *work

static void gemm_f32(GEMM_ARGS) { (void)work; f_gemm_t(F_F32, n, y, ldy, w, ldw, nr, x, ldx, nc); }
static void gemm_f16(GEMM_ARGS) { (void)work; f_gemm_t(F_F16, n, y, ldy, w, ldw, nr, x, ldx, nc); }
static void gemm_bf16(GEMM_ARGS) { (void)work; f_gemm_t(F_BF16, n, y, ldy, w, ldw, nr, x, ldx, nc); }

static float v_dot_f32(int n, const float *x, const float *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float v_sum_sq_f32(int n, const float *x) { return v_dot_f32(n, x, x); }

static float v_dot_f32_f16(int n, const float *x, const uint16_t *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), f16x4(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), f16x4(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += x[i] * h2f(y[i]);
    return s;
}

static void v_axpy_f32(int n, float a, const float *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void v_axpy_f16(int n, float a, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), f16x4(x + i), a));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void v_f32_to_f16_row(int n, const float *x, uint16_t *y) {
    int i = 0;   /* FCVTN rounds to nearest even in the default FPCR mode */
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = pg_f32_to_half(x[i]);
}

static void v_f16_to_f32_row(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f16x4(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

int pg_kernels_fill_neon(pg_kernels *k, int dotprod) {
    k->name = dotprod ? "neon-dotprod" : "neon";
    if (dotprod) pg_neon_fill_quant_dp(k);
    else pg_neon_fill_quant(k);
    k->gemm[PG_TYPE_F32] = (pg_gemm_kernel){.fn = gemm_f32, .mr = 1, .nr = N_RN};
    k->gemm[PG_TYPE_F16] = (pg_gemm_kernel){.fn = gemm_f16, .mr = 1, .nr = N_RN};
    k->gemm[PG_TYPE_BF16] = (pg_gemm_kernel){.fn = gemm_bf16, .mr = 1, .nr = N_RN};
    k->dot_f32 = v_dot_f32;
    k->sum_sq_f32 = v_sum_sq_f32;
    k->dot_f32_f16 = v_dot_f32_f16;
    k->axpy_f32 = v_axpy_f32;
    k->axpy_f16 = v_axpy_f16;
    k->f32_to_f16_row = v_f32_to_f16_row;
    k->f16_to_f32_row = v_f16_to_f32_row;
    return 1;
}

#else /* not arm64 */
int pg_kernels_fill_neon(pg_kernels *k, int dotprod) {
    (void)k;
    (void)dotprod;
    return 0;
}
#endif
