/* matvec.cu -- y = W x for one token (decoding), every weight type, fused forms (Q, K and V
 * in one launch; gate and up with the GeGLU), and dequantization of weight rows to F16 (for
 * the cuBLAS path).
 *
 * Mat-vec: a block of 128 threads owns MV_ROWS rows; each warp takes pairs of rows of the
 * block in turn and its lanes stride over the rows' 32-element groups (lane i: groups i,
 * i + W, ...), dequantizing a group into registers and multiplying it by the matching 32
 * floats of x (loaded once for both rows).
 * Consecutive lanes read consecutive blocks of the row, so a warp reads the weights as one
 * contiguous stream; x (at most 4 * n_ff bytes) stays in L1/L2 for all rows.  The lane sums
 * are reduced with shuffles and lane 0 writes y[r].  Decoding is memory bound: the weights
 * are read exactly once. */
#include "activations.cuh"
#include "gpu_internal.h"
#include "quant_dot.cuh"

#define MV_THREADS 128
#define MV_ROWS 8          /* rows per block: a pair per warp (4 warps of 32, or 2 of 64 twice) */
#define MV_GEGLU_ROWS 4    /* gate/up rows per block: one (two dot products) per warp */
#define MV_TOK_ROWS 4      /* rows per block of the several-token kernel: one per warp */

/* This lane's shares of a . x and b . x (b may be NULL): groups lane, lane + W, ... of the
 * two rows against the same 32 floats of x, which are loaded once for both -- x comes from
 * L1 at 4 bytes per value while the weights stream at 0.5-2 bytes per value, so sharing
 * the x loads between two rows halves the L1 traffic per weight byte. */
template <int TYPE>
__device__ __forceinline__ void lane_dot2(const uint8_t *__restrict__ a, const uint8_t *__restrict__ b,
                                          int64_t ngroups, const float *__restrict__ x, int lane, float *da,
                                          float *db) {
    float acc_a = 0.0f, acc_b = 0.0f;
    for (int64_t g = lane; g < ngroups; g += PG_WARP) {
        float xr[32], v[32];
        const float4 *xg = (const float4 *)(x + 32 * g);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float4 xx = xg[i];
            xr[4 * i] = xx.x; xr[4 * i + 1] = xx.y; xr[4 * i + 2] = xx.z; xr[4 * i + 3] = xx.w;
        }
        deq32<TYPE>(a, g, v);
#pragma unroll
        for (int i = 0; i < 32; i++) acc_a += v[i] * xr[i];
        if (b) {   /* the same for the whole warp */
            deq32<TYPE>(b, g, v);
#pragma unroll
            for (int i = 0; i < 32; i++) acc_b += v[i] * xr[i];
        }
    }
    *da = acc_a;
    *db = acc_b;
}

/* Up to 3 matrices of one type and width sharing x (Q, K and V): their rows are numbered
 * one after the other and the blocks cover them all, so one launch streams all three. */
typedef struct {
    const uint8_t *W[3];
    float *y[3];
    int64_t rows[3];           /* 0 for an unused slot */
} mv_set;

/* Row r of the set: matrix *W, output *y, row *rr of it.  Selects, not indexing, so the
 * kernel parameter stays in registers/constant memory instead of a local copy. */
__device__ __forceinline__ void mv_locate(const mv_set &m, int64_t r, const uint8_t **W, float **y, int64_t *rr) {
    if (r < m.rows[0]) { *W = m.W[0]; *y = m.y[0]; *rr = r; return; }
    r -= m.rows[0];
    if (r < m.rows[1]) { *W = m.W[1]; *y = m.y[1]; *rr = r; return; }
    *W = m.W[2]; *y = m.y[2]; *rr = r - m.rows[1];
}

/* A warp computes rows (r, r + 1) of the set -- possibly of two matrices -- per step. */
template <int TYPE>
__global__ void __launch_bounds__(MV_THREADS)
matvec_kernel(mv_set m, int64_t row_bytes, int64_t cols, const float *__restrict__ x) {
    const int lane = threadIdx.x % PG_WARP, warp = threadIdx.x / PG_WARP, nw = blockDim.x / PG_WARP;
    const int64_t total = m.rows[0] + m.rows[1] + m.rows[2];
    const int64_t r_end = min(total, ((int64_t)blockIdx.x + 1) * MV_ROWS);
    /* r is the same for every lane of a warp, so the shuffles below see the whole warp */
    for (int64_t r = (int64_t)blockIdx.x * MV_ROWS + 2 * warp; r < r_end; r += 2 * nw) {
        const uint8_t *W0, *W1 = NULL;
        float *y0, *y1 = NULL;
        int64_t r0, r1 = 0;
        mv_locate(m, r, &W0, &y0, &r0);
        const bool two = r + 1 < r_end;
        if (two) mv_locate(m, r + 1, &W1, &y1, &r1);
        float a, b;
        lane_dot2<TYPE>(W0 + r0 * row_bytes, two ? W1 + r1 * row_bytes : NULL, cols / 32, x, lane, &a, &b);
        a = pg_warp_sum(a);
        b = pg_warp_sum(b);
        if (lane == 0) {
            y0[r0] = a;
            if (two) y1[r1] = b;
        }
    }
}

/* GeGLU fused into the gate and up products: y[r] = gelu(gate_r . x) * (up_r . x). */
template <int TYPE>
__global__ void __launch_bounds__(MV_THREADS)
matvec_geglu_kernel(const uint8_t *__restrict__ G, const uint8_t *__restrict__ U, int64_t row_bytes, int64_t rows,
                    int64_t cols, const float *__restrict__ x, float *__restrict__ y, int precise) {
    const int lane = threadIdx.x % PG_WARP, warp = threadIdx.x / PG_WARP, nw = blockDim.x / PG_WARP;
    const int64_t r_end = min(rows, ((int64_t)blockIdx.x + 1) * MV_GEGLU_ROWS);
    for (int64_t r = (int64_t)blockIdx.x * MV_GEGLU_ROWS + warp; r < r_end; r += nw) {
        float g, u;
        lane_dot2<TYPE>(G + r * row_bytes, U + r * row_bytes, cols / 32, x, lane, &g, &u);
        g = pg_warp_sum(g);
        u = pg_warp_sum(u);
        if (lane == 0) y[r] = gelu(g, precise) * u;
    }
}

/* Y (nt, rows) = X (nt, cols) @ W^T for 2..8 tokens: each group of weights is dequantized
 * once and multiplied by every token's x, so the weights are read once for the chunk (x,
 * nt * cols floats, comes from L1/L2).  A warp per row, as the single-token kernel. */
template <int TYPE>
__global__ void __launch_bounds__(MV_THREADS)
matvec_tokens_kernel(const uint8_t *__restrict__ W, int64_t row_bytes, int64_t rows, int64_t cols,
                     const float *__restrict__ X, int nt, float *__restrict__ Y) {
    const int lane = threadIdx.x % PG_WARP, warp = threadIdx.x / PG_WARP, nw = blockDim.x / PG_WARP;
    const int64_t r_end = min(rows, ((int64_t)blockIdx.x + 1) * MV_TOK_ROWS), ngroups = cols / 32;
    for (int64_t r = (int64_t)blockIdx.x * MV_TOK_ROWS + warp; r < r_end; r += nw) {
        const uint8_t *row = W + r * row_bytes;
        float acc[PG_GPU_MATVEC_MAX_TOK];
#pragma unroll
        for (int t = 0; t < PG_GPU_MATVEC_MAX_TOK; t++) acc[t] = 0.0f;
        for (int64_t g = lane; g < ngroups; g += PG_WARP) {
            float v[32];
            deq32<TYPE>(row, g, v);
#pragma unroll
            for (int t = 0; t < PG_GPU_MATVEC_MAX_TOK; t++) {
                if (t < nt) {
                    const float4 *xg = (const float4 *)(X + t * cols + 32 * g);
                    float a = 0.0f;
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        const float4 xx = xg[i];
                        a += v[4 * i] * xx.x + v[4 * i + 1] * xx.y + v[4 * i + 2] * xx.z + v[4 * i + 3] * xx.w;
                    }
                    acc[t] += a;
                }
            }
        }
#pragma unroll
        for (int t = 0; t < PG_GPU_MATVEC_MAX_TOK; t++) {
            if (t < nt) {
                const float sum = pg_warp_sum(acc[t]);   /* nt is the same for every lane */
                if (lane == 0) Y[t * rows + r] = sum;
            }
        }
    }
}

int pg_launch_matvec_tokens(const pg_dev_matrix *w, const float *X, int nt, float *Y, cudaStream_t st) {
    if (nt < 1 || nt > PG_GPU_MATVEC_MAX_TOK) return pg_gpu_fail(PG_GPU_ERR_ARG, "%d tokens for the mat-vec", nt);
    const unsigned blocks = (unsigned)((w->rows + MV_TOK_ROWS - 1) / MV_TOK_ROWS);
    switch (w->type) {
#define CASE(T) \
    case T: \
        PG_LAUNCH(matvec_tokens_kernel<T>, blocks, MV_THREADS, 0, st, w->d, w->row_bytes, w->rows, w->cols, X, nt, Y); \
        break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU mat-vec kernel for tensor type %d", w->type);
    }
    return pg_gpu_check(cudaGetLastError(), "mat-vec launch");
}

static int launch_set(int type, const mv_set *m, int64_t row_bytes, int64_t cols, const float *x, cudaStream_t st) {
    const int64_t total = m->rows[0] + m->rows[1] + m->rows[2];
    const unsigned blocks = (unsigned)((total + MV_ROWS - 1) / MV_ROWS);
    switch (type) {
#define CASE(T) case T: PG_LAUNCH(matvec_kernel<T>, blocks, MV_THREADS, 0, st, *m, row_bytes, cols, x); break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU mat-vec kernel for tensor type %d", type);
    }
    return pg_gpu_check(cudaGetLastError(), "mat-vec launch");
}

int pg_launch_matvec(const pg_dev_matrix *w, const float *x, float *y, cudaStream_t st) {
    mv_set m = {{w->d, NULL, NULL}, {y, NULL, NULL}, {w->rows, 0, 0}};
    return launch_set(w->type, &m, w->row_bytes, w->cols, x, st);
}

int pg_launch_matvec3(const pg_dev_matrix *const w[3], const float *x, float *const y[3], cudaStream_t st) {
    if (w[1]->type != w[0]->type || w[2]->type != w[0]->type || w[1]->cols != w[0]->cols ||
        w[2]->cols != w[0]->cols) {
        for (int k = 0; k < 3; k++) PG_GPU_TRY(pg_launch_matvec(w[k], x, y[k], st));
        return PG_GPU_OK;
    }
    mv_set m = {{w[0]->d, w[1]->d, w[2]->d}, {y[0], y[1], y[2]}, {w[0]->rows, w[1]->rows, w[2]->rows}};
    return launch_set(w[0]->type, &m, w[0]->row_bytes, w[0]->cols, x, st);
}

int pg_launch_matvec_geglu(const pg_dev_matrix *gate, const pg_dev_matrix *up, const float *x, float *y, int precise,
                           cudaStream_t st) {
    if (gate->type != up->type || gate->cols != up->cols || gate->rows != up->rows)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "gate and up differ in type or shape: no fused GeGLU");
    const unsigned blocks = (unsigned)((gate->rows + MV_GEGLU_ROWS - 1) / MV_GEGLU_ROWS);
    switch (gate->type) {
#define CASE(T) \
    case T: \
        PG_LAUNCH(matvec_geglu_kernel<T>, blocks, MV_THREADS, 0, st, gate->d, up->d, gate->row_bytes, gate->rows, gate->cols, \
                                                              x, y, precise); \
        break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU mat-vec kernel for tensor type %d", gate->type);
    }
    return pg_gpu_check(cudaGetLastError(), "gate/up mat-vec launch");
}

/* dst (nrows, cols) = F16 of rows [r0, r0 + nrows): one thread per 32-element group. */
template <int TYPE>
__global__ void dequant_f16_kernel(const uint8_t *__restrict__ W, int64_t row_bytes, int64_t r0, int64_t nrows,
                                   int64_t cols, uint16_t *__restrict__ dst) {
    const int64_t ngroups = cols / 32;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;   /* group over the chunk */
    if (i >= nrows * ngroups) return;
    const int64_t r = i / ngroups, g = i % ngroups;
    float v[32];
    deq32<TYPE>(W + (r0 + r) * row_bytes, g, v);
    uint16_t *o = dst + r * cols + 32 * g;
#pragma unroll
    for (int j = 0; j < 32; j++) o[j] = pg_f2h(v[j]);
}

int pg_launch_dequant_f16(const pg_dev_matrix *w, int64_t r0, int64_t nrows, uint16_t *dst, cudaStream_t st) {
    const int64_t total = nrows * (w->cols / 32);
    const unsigned blocks = (unsigned)((total + 255) / 256);
    switch (w->type) {
#define CASE(T) \
    case T: PG_LAUNCH(dequant_f16_kernel<T>, blocks, 256, 0, st, w->d, w->row_bytes, r0, nrows, w->cols, dst); break;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "no GPU dequantization for tensor type %d", w->type);
    }
    return pg_gpu_check(cudaGetLastError(), "dequantize launch");
}
