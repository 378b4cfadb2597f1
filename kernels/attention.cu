/* attention.cu -- q/k preparation (Gemma 3 norms, NEOX RoPE, KV-cache store) and attention
 * with soft-cap, GQA and the sliding window over the device KV cache.
 *
 * Cache layout as the CPU's (csrc/context.h): per layer (Hkv, cache_len, hd), position p in
 * slot p % cache_len (sliding layers keep a ring of window + n_batch slots).  Every kernel
 * reads the chunk's first position from device memory, so a captured decode graph replays
 * at each new position unchanged.
 *
 * Attention is flash-attention style: a block of AT_THREADS threads serves one (token, key
 * split) and up to 4 query heads of one KV head (GQA: each key and value row is read once
 * for all of them); each warp walks tiles of PG_WARP keys -- lane j scores key j of the tile --
 * keeping a running max m, normalizer l and output accumulator (online softmax), and the
 * warps' states are merged through shared memory into one partial (o, m, l) per split.  A
 * second kernel merges the splits.  Prompt chunks use one split (many tokens fill the GPU);
 * decoding splits the keys so that long contexts still spread over every multiprocessor. */
#include <math.h>

#include "gpu_internal.h"

#define QK_THREADS 64
#define AT_THREADS 128
#define AT_MAX_WARPS (AT_THREADS / 32)
#define AT_DIMS (PG_GPU_MAX_HD / PG_WARP)   /* accumulator registers per lane */

__device__ __forceinline__ void kv_store(uint16_t *p, float v) { *p = pg_f2h(v); }
__device__ __forceinline__ void kv_store(float *p, float v) { *p = v; }
__device__ __forceinline__ float kv_load(const uint16_t *p) { return pg_h2f(*p); }
__device__ __forceinline__ float kv_load(const float *p) { return *p; }

/* d[g] = q_g (hd, shared memory, G rows of stride PG_GPU_MAX_HD) . k row (hd): the key is
 * loaded once for the G query heads that share it (GQA). */
template <int G>
__device__ __forceinline__ void dot_rows(float *d, const float (*qs)[PG_GPU_MAX_HD], const uint16_t *k, int hd) {
#pragma unroll
    for (int g = 0; g < G; g++) d[g] = 0.0f;
    if (hd % 8 == 0) {   /* rows are 16-byte aligned then: 8 halves per load */
        const uint4 *k4 = (const uint4 *)k;
        for (int i = 0; i < hd / 8; i++) {
            const uint4 u = k4[i];
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const float k0 = pg_h2f((uint16_t)(w[c] & 0xFFFF)), k1 = pg_h2f((uint16_t)(w[c] >> 16));
#pragma unroll
                for (int g = 0; g < G; g++) d[g] += qs[g][8 * i + 2 * c] * k0 + qs[g][8 * i + 2 * c + 1] * k1;
            }
        }
    } else {
        for (int i = 0; i < hd; i++) {
            const float kv = pg_h2f(k[i]);
#pragma unroll
            for (int g = 0; g < G; g++) d[g] += qs[g][i] * kv;
        }
    }
}

template <int G>
__device__ __forceinline__ void dot_rows(float *d, const float (*qs)[PG_GPU_MAX_HD], const float *k, int hd) {
#pragma unroll
    for (int g = 0; g < G; g++) d[g] = 0.0f;
    for (int i = 0; i < hd; i++) {
#pragma unroll
        for (int g = 0; g < G; g++) d[g] += qs[g][i] * k[i];
    }
}

/* grid (H + Hkv, n): block x < H prepares query head x of token y, the others key head
 * x - H (and store that head's key and value in the cache). */
template <typename KV>
__global__ void __launch_bounds__(QK_THREADS)
qk_prepare_kernel(pg_attn_args a, float *__restrict__ q, float *__restrict__ k, const float *__restrict__ v,
                  KV *__restrict__ kc, KV *__restrict__ vc) {
    __shared__ float vec[PG_GPU_MAX_HD];
    __shared__ float red[PG_MAX_WARPS];
    const int t = blockIdx.y, hd = a.hd, half = hd / 2, tid = threadIdx.x, bd = blockDim.x;
    const bool is_q = (int)blockIdx.x < a.H;
    const int h = is_q ? blockIdx.x : blockIdx.x - a.H;
    const int64_t pos = *a.pos + t;
    float *p = is_q ? q + ((int64_t)t * a.H + h) * hd : k + ((int64_t)t * a.Hkv + h) * hd;
    for (int i = tid; i < hd; i += bd) vec[i] = p[i];
    const float *nw = is_q ? a.q_norm : a.k_norm;
    if (nw) {   /* the same branch for the whole block: the barriers inside are safe */
        float ss = 0.0f;
        for (int i = tid; i < hd; i += bd) ss += vec[i] * vec[i];
        ss = pg_block_sum(ss, red);
        const float scale = 1.0f / sqrtf(ss / (float)hd + a.eps);
        for (int i = tid; i < hd; i += bd) vec[i] = (vec[i] * scale) * nw[i];
    }
    __syncthreads();
    /* RoPE on pairs (i, i + hd/2), pair i owned by thread i % bd.  precise: theta =
     * (pos * pos_scale) * inv_freq[i] (transformers); otherwise ggml's recurrence
     * ext_{i+1} = ext_i * inv_freq[1] from ext_0 = pos, theta = pos_scale * ext_i, which
     * every thread walks itself to get the same rounded values as the CPU. */
    const float r = half > 1 ? a.inv_freq[1] : 1.0f;
    float ext = (float)pos;
    for (int i = 0, next = tid; i < half && next < half; i++) {
        if (i == next) {
            const float theta = a.precise ? ((float)pos * a.pos_scale) * a.inv_freq[i] : a.pos_scale * ext;
            float s, c;
            sincosf(theta, &s, &c);
            const float x0 = vec[i], x1 = vec[i + half];
            vec[i] = x0 * c - x1 * s;
            vec[i + half] = x0 * s + x1 * c;
            next += bd;
        }
        if (!a.precise) ext *= r;
    }
    __syncthreads();
    for (int i = tid; i < hd; i += bd) p[i] = vec[i];
    if (!is_q) {
        const size_t off = ((size_t)h * a.cl + (size_t)(pos % a.cl)) * hd;
        const float *vh = v + ((int64_t)t * a.Hkv + h) * hd;
        for (int i = tid; i < hd; i += bd) {
            kv_store(kc + off + i, vec[i]);
            kv_store(vc + off + i, vh[i]);
        }
    }
}

int pg_launch_qk_prepare(const pg_attn_args *a, float *q, float *k, const float *v, void *kc, void *vc,
                         cudaStream_t st) {
    const dim3 grid((unsigned)(a->H + a->Hkv), (unsigned)a->n);
    if (a->kv_f32)
        PG_LAUNCH(qk_prepare_kernel<float>, grid, QK_THREADS, 0, st, *a, q, k, v, (float *)kc, (float *)vc);
    else
        PG_LAUNCH(qk_prepare_kernel<uint16_t>, grid, QK_THREADS, 0, st, *a, q, k, v, (uint16_t *)kc, (uint16_t *)vc);
    return pg_gpu_check(cudaGetLastError(), "q/k prepare launch");
}

/* grid (H / G, n, splits): block x serves the G query heads x*G .. x*G + G - 1, which share
 * one KV head (G divides the GQA group), so every key and value row is read once for all G.
 * part: (n, H, splits, hd + 2) -- per head and split the unnormalized output, then its max
 * score m and normalizer l (m = -inf, l = 0 for a split without keys). */
template <typename KV, int G>
__global__ void __launch_bounds__(AT_THREADS)
attn_kernel(pg_attn_args a, const float *__restrict__ q, const KV *__restrict__ kc, const KV *__restrict__ vc,
            float *__restrict__ part, int splits) {
    __shared__ float qs[G][PG_GPU_MAX_HD];
    __shared__ float m_w[AT_MAX_WARPS][G], l_w[AT_MAX_WARPS][G];
    __shared__ float o_w[AT_MAX_WARPS][G][PG_GPU_MAX_HD];
    const int h0 = blockIdx.x * G, t = blockIdx.y, sp = blockIdx.z, hd = a.hd, tid = threadIdx.x, bd = blockDim.x;
    const int lane = tid % PG_WARP, warp = tid / PG_WARP, nw = bd / PG_WARP;
    const int kvh = h0 / (a.H / a.Hkv);
    const int64_t pos = *a.pos + t;
    const int64_t first = a.sliding && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0;
    const int64_t chunk = (pos - first + 1 + splits - 1) / splits;
    const int64_t kbeg = first + (int64_t)sp * chunk, kend = min(pos + 1, kbeg + chunk);

    /* the scaled queries; llama.cpp rounds them to F16 before the product with the F16 cache */
    for (int g = 0; g < G; g++) {
        const float *qh = q + ((int64_t)t * a.H + h0 + g) * hd;
        for (int i = tid; i < hd; i += bd) qs[g][i] = a.precise ? qh[i] * a.scale : pg_h2f(pg_f2h(qh[i] * a.scale));
    }
    __syncthreads();

    const KV *K = kc + (size_t)kvh * a.cl * hd, *V = vc + (size_t)kvh * a.cl * hd;
    float m[G], l[G], acc[G][AT_DIMS];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int c = 0; c < AT_DIMS; c++) acc[g][c] = 0.0f;
    }
    /* kb is the same for the whole warp: the shuffles see every lane */
    for (int64_t kb = kbeg + (int64_t)warp * PG_WARP; kb < kend; kb += (int64_t)nw * PG_WARP) {
        const int64_t j = kb + lane;
        float s[G], p[G];
        if (j < kend) {
            dot_rows<G>(s, qs, K + (size_t)(j % a.cl) * hd, hd);
#pragma unroll
            for (int g = 0; g < G; g++)
                if (a.softcap > 0)
                    s[g] = a.precise ? a.softcap * tanhf(s[g] / a.softcap) : tanhf(s[g] * (1.0f / a.softcap)) * a.softcap;
        } else {
#pragma unroll
            for (int g = 0; g < G; g++) s[g] = -INFINITY;
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float m_new = fmaxf(m[g], pg_warp_max(s[g]));
            const float corr = m_new == -INFINITY ? 1.0f : expf(m[g] - m_new);
            p[g] = (j < kend && m_new != -INFINITY) ? expf(s[g] - m_new) : 0.0f;
            l[g] = l[g] * corr + pg_warp_sum(p[g]);
#pragma unroll
            for (int c = 0; c < AT_DIMS; c++) acc[g][c] *= corr;
            m[g] = m_new;
        }
        const int nvalid = (int)min((int64_t)PG_WARP, kend - kb);
        for (int jj = 0; jj < nvalid; jj++) {
            float pj[G];
#pragma unroll
            for (int g = 0; g < G; g++) pj[g] = PG_SHFL(p[g], jj);
            const KV *vr = V + (size_t)((kb + jj) % a.cl) * hd;
#pragma unroll
            for (int c = 0; c < AT_DIMS; c++) {
                const int d = lane + c * PG_WARP;
                if (d < hd) {
                    const float vv = kv_load(vr + d);
#pragma unroll
                    for (int g = 0; g < G; g++) acc[g][c] += pj[g] * vv;
                }
            }
        }
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (lane == 0) { m_w[warp][g] = m[g]; l_w[warp][g] = l[g]; }
#pragma unroll
        for (int c = 0; c < AT_DIMS; c++) {
            const int d = lane + c * PG_WARP;
            if (d < hd) o_w[warp][g][d] = acc[g][c];
        }
    }
    __syncthreads();
    for (int g = 0; g < G; g++) {
        float M = -INFINITY, L = 0.0f;
        for (int w = 0; w < nw; w++) M = fmaxf(M, m_w[w][g]);
        for (int w = 0; w < nw; w++) if (m_w[w][g] != -INFINITY) L += l_w[w][g] * expf(m_w[w][g] - M);
        float *dst = part + (((int64_t)t * a.H + h0 + g) * splits + sp) * (hd + 2);
        for (int d = tid; d < hd; d += bd) {
            float o = 0.0f;
            for (int w = 0; w < nw; w++) if (m_w[w][g] != -INFINITY) o += o_w[w][g][d] * expf(m_w[w][g] - M);
            dst[d] = o;
        }
        if (tid == 0) { dst[hd] = M; dst[hd + 1] = L; }
    }
}

/* grid (H, n): out (n, H, hd) = the splits' outputs rescaled to a common max, / sum of l. */
__global__ void __launch_bounds__(AT_THREADS)
attn_combine_kernel(const float *__restrict__ part, int H, int hd, int splits, float *__restrict__ out) {
    const int h = blockIdx.x, t = blockIdx.y;
    const float *src = part + ((int64_t)t * H + h) * splits * (hd + 2);
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < splits; s++) M = fmaxf(M, src[s * (hd + 2) + hd]);
    for (int s = 0; s < splits; s++) {
        const float ms = src[s * (hd + 2) + hd];
        if (ms != -INFINITY) L += src[s * (hd + 2) + hd + 1] * expf(ms - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float ms = src[s * (hd + 2) + hd];
            if (ms != -INFINITY) o += src[s * (hd + 2) + d] * expf(ms - M);
        }
        out[((int64_t)t * H + h) * hd + d] = o * inv;
    }
}

template <typename KV, int G>
static void launch_attn(const pg_attn_args *a, const float *q, const void *kc, const void *vc, float *partials,
                        int splits, cudaStream_t st) {
    const dim3 grid((unsigned)(a->H / G), (unsigned)a->n, (unsigned)splits);
    PG_LAUNCH((attn_kernel<KV, G>), grid, AT_THREADS, 0, st, *a, q, (const KV *)kc, (const KV *)vc, partials, splits);
}

template <typename KV>
static void launch_attn_group(const pg_attn_args *a, const float *q, const void *kc, const void *vc, float *partials,
                              int splits, cudaStream_t st) {
    const int group = a->H / a->Hkv;   /* query heads per KV head; blocks take 4, 2 or 1 of them */
    if (group % 4 == 0) launch_attn<KV, 4>(a, q, kc, vc, partials, splits, st);
    else if (group % 2 == 0) launch_attn<KV, 2>(a, q, kc, vc, partials, splits, st);
    else launch_attn<KV, 1>(a, q, kc, vc, partials, splits, st);
}

int pg_launch_attention(const pg_attn_args *a, const float *q, const void *kc, const void *vc, float *out,
                        float *partials, int splits, cudaStream_t st) {
    if (a->kv_f32) launch_attn_group<float>(a, q, kc, vc, partials, splits, st);
    else launch_attn_group<uint16_t>(a, q, kc, vc, partials, splits, st);
    PG_GPU_TRY(pg_gpu_check(cudaGetLastError(), "attention launch"));
    PG_LAUNCH(attn_combine_kernel, dim3((unsigned)a->H, (unsigned)a->n), AT_THREADS, 0, st, partials, a->H, a->hd,
              splits, out);
    return pg_gpu_check(cudaGetLastError(), "attention combine launch");
}
