/* forward.cu -- one chunk through the offloaded layers, on the sequence's stream.
 *
 * The residual (n, D) comes in through pinned staging, every layer runs as in csrc/model.c
 * (norm -> Q/K/V -> q/k norms + RoPE + cache store -> attention -> output projection ->
 * post-norm + residual; the same for the GeGLU FFN), then either the residual goes back
 * (output head on the CPU) or the final norm, head and soft-cap run here and the logits
 * and/or the greedy token go back.
 *
 * Decoding (n == 1) is captured once per output combination into a graph and replayed:
 * every kernel reads the position from device memory, which a memcpy node of the graph
 * fills from pinned host memory, so nothing in the graph depends on the step. */
#include <string.h>

#include "gpu_internal.h"

enum { WANT_ARGMAX = 1, WANT_LOGITS = 2, WANT_XOUT = 4 };

/* y (n, rows) = x (n, cols) @ W^T: mat-vec for up to PG_GPU_MATVEC_MAX_TOK tokens (the
 * weights read once, cheaper than dequantizing a copy for cuBLAS), else cuBLAS or tinyBLAS. */
static int mm(pg_gpu_seq *s, const pg_dev_matrix *w, const float *x, int n, float *y) {
    if (n == 1) return pg_launch_matvec(w, x, y, s->stream);
    if (n <= PG_GPU_MATVEC_MAX_TOK) return pg_launch_matvec_tokens(w, x, n, y, s->stream);
    if (s->blas && !pg_gpu_opt_tinyblas) return pg_blas_gemm(s->blas, w, x, n, y, s->stream);
    return pg_launch_gemm_tiny(w, x, n, y, s->stream);
}

static int layer(pg_gpu_seq *s, int l, int n) {
    const pg_gpu_model_desc *c = &s->m->d;
    const pg_dev_layer *L = &s->m->L[l];
    const int D = c->n_embd, sliding = c->is_sliding[l];
    const float eps = c->norm_eps;
    cudaStream_t st = s->stream;
    pg_attn_args a = {};
    a.n = n; a.H = c->n_head; a.Hkv = c->n_head_kv; a.hd = c->head_dim; a.cl = s->cache_len[l];
    a.sliding = sliding; a.window = c->sliding_window;
    a.eps = eps; a.scale = c->query_scale; a.softcap = c->attn_softcap;
    a.pos_scale = sliding ? 1.0f : c->rope_scale_global;
    a.precise = s->precise; a.kv_f32 = s->precise;
    a.pos = s->d_pos; a.inv_freq = sliding ? s->inv_local : s->inv_global;
    a.q_norm = L->q_norm; a.k_norm = L->k_norm;

    /* attention block */
    PG_GPU_TRY(pg_launch_rmsnorm(s->xn, s->x, L->attn_norm, n, D, eps, 0, s->precise, st));
    if (n == 1) {   /* Q, K and V in one mat-vec launch */
        const pg_dev_matrix *w3[3] = {&L->wq, &L->wk, &L->wv};
        float *y3[3] = {s->q, s->k, s->v};
        PG_GPU_TRY(pg_launch_matvec3(w3, s->xn, y3, st));
    } else {
        PG_GPU_TRY(mm(s, &L->wq, s->xn, n, s->q));
        PG_GPU_TRY(mm(s, &L->wk, s->xn, n, s->k));
        PG_GPU_TRY(mm(s, &L->wv, s->xn, n, s->v));
    }
    PG_GPU_TRY(pg_launch_qk_prepare(&a, s->q, s->k, s->v, s->kc[l], s->vc[l], st));
    PG_GPU_TRY(pg_launch_attention(&a, s->q, s->kc[l], s->vc[l], s->att, s->partials, n == 1 ? s->splits : 1, st));
    PG_GPU_TRY(mm(s, &L->wo, s->att, n, s->o));
    PG_GPU_TRY(pg_launch_rmsnorm(s->x, s->o, L->post_attn_norm, n, D, eps, 1, s->precise, st));
    /* feed-forward block: GeGLU */
    PG_GPU_TRY(pg_launch_rmsnorm(s->xn, s->x, L->ffn_norm, n, D, eps, 0, s->precise, st));
    const int fused = n == 1 && L->gate.type == L->up.type && L->gate.rows == L->up.rows && L->gate.cols == L->up.cols;
    if (fused) {   /* gate, up and GeGLU in one pass */
        PG_GPU_TRY(pg_launch_matvec_geglu(&L->gate, &L->up, s->xn, s->gate, s->precise, st));
    } else {
        PG_GPU_TRY(mm(s, &L->gate, s->xn, n, s->gate));
        PG_GPU_TRY(mm(s, &L->up, s->xn, n, s->up));
        PG_GPU_TRY(pg_launch_geglu(s->gate, s->up, (int64_t)n * c->n_ff, s->precise, st));
    }
    PG_GPU_TRY(mm(s, &L->down, s->gate, n, s->o));
    return pg_launch_rmsnorm(s->x, s->o, L->post_ffn_norm, n, D, eps, 1, s->precise, st);
}

/* logits rows [0, m) = soft-capped head of residual rows [row0, row0 + m). */
static int head(pg_gpu_seq *s, int row0, int m) {
    const pg_gpu_model_desc *c = &s->m->d;
    PG_GPU_TRY(pg_launch_rmsnorm(s->xn, s->x + (int64_t)row0 * c->n_embd, s->m->output_norm, m, c->n_embd,
                                 c->norm_eps, 0, s->precise, s->stream));
    PG_GPU_TRY(mm(s, &s->m->output, s->xn, m, s->logits));
    if (c->final_softcap > 0)
        PG_GPU_TRY(pg_launch_softcap(s->logits, (int64_t)m * c->n_vocab, c->final_softcap, s->precise, s->stream));
    return PG_GPU_OK;
}

/* Everything of one step that can live in a graph: inputs from pinned staging, the layers,
 * and (want) the residual, the last row's logits and/or its greedy token to pinned staging.
 * trace: host (n_dev_layers, n, D) or NULL (never inside a graph). */
static int enqueue_step(pg_gpu_seq *s, int n, int want, float *trace) {
    const pg_gpu_model_desc *c = &s->m->d;
    const size_t xbytes = sizeof(float) * (size_t)n * c->n_embd;
    cudaStream_t st = s->stream;
    PG_CUDA_TRY(cudaMemcpyAsync(s->d_pos, s->h_pos, sizeof(int64_t), cudaMemcpyHostToDevice, st), "upload");
    PG_CUDA_TRY(cudaMemcpyAsync(s->x, s->h_x, xbytes, cudaMemcpyHostToDevice, st), "upload");
    for (int l = c->first_layer; l < c->n_layer; l++) {
        PG_GPU_TRY(layer(s, l, n));
        if (trace)
            PG_CUDA_TRY(cudaMemcpyAsync(trace + (int64_t)(l - c->first_layer) * n * c->n_embd, s->x, xbytes,
                                        cudaMemcpyDeviceToHost, st), "trace download");
    }
    if (want & WANT_XOUT) PG_CUDA_TRY(cudaMemcpyAsync(s->h_xout, s->x, xbytes, cudaMemcpyDeviceToHost, st), "download");
    if (want & (WANT_ARGMAX | WANT_LOGITS)) {
        PG_GPU_TRY(head(s, n - 1, 1));
        if (want & WANT_ARGMAX) {
            PG_GPU_TRY(pg_launch_argmax(s->logits, c->n_vocab, s->d_tok, st));
            PG_CUDA_TRY(cudaMemcpyAsync(s->h_tok, s->d_tok, sizeof(int32_t), cudaMemcpyDeviceToHost, st), "download");
        }
        if (want & WANT_LOGITS)
            PG_CUDA_TRY(cudaMemcpyAsync(s->h_logits, s->logits, sizeof(float) * (size_t)c->n_vocab,
                                        cudaMemcpyDeviceToHost, st), "download");
    }
    return PG_GPU_OK;
}

static int capture(pg_gpu_seq *s, int want) {
    cudaGraph_t g = NULL;
    PG_CUDA_TRY(cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
    int rc = enqueue_step(s, 1, want, NULL);
    cudaError_t e = cudaStreamEndCapture(s->stream, &g);   /* always end the capture */
    if (!rc) rc = pg_gpu_check(e, "graph capture");
    if (!rc) rc = pg_gpu_check(cudaGraphInstantiateWithFlags(&s->graph[want], g, 0), "graph instantiate");
    if (g) (void)cudaGraphDestroy(g);
    if (rc) s->graph[want] = NULL;
    return rc;
}

int pg_gpu_forward(pg_gpu_seq *s, const pg_gpu_batch *b) {
    const pg_gpu_model_desc *c = &s->m->d;
    const int n = b->n, D = c->n_embd, V = c->n_vocab;
    if (n < 1 || n > s->n_batch || b->pos < 0 || b->pos + n > s->n_ctx || !b->x)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "bad batch: %d tokens at position %lld (n_batch %d, n_ctx %d)", n,
                           (long long)b->pos, s->n_batch, s->n_ctx);
    if ((b->logits_rows || b->argmax) && !c->output_on_gpu)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "logits asked for, but the output head is not on the GPU");
    if (b->logits_rows != 0 && b->logits_rows != 1 && b->logits_rows != n)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "logits_rows %d must be 0, 1 or n (%d)", b->logits_rows, n);
    if (b->logits_rows && !b->logits) return pg_gpu_fail(PG_GPU_ERR_ARG, "no logits buffer");
    const int all_rows = b->logits_rows == n && n > 1;
    int want = (b->x_out ? WANT_XOUT : 0) | (b->argmax && !all_rows ? WANT_ARGMAX : 0) |
               (b->logits_rows == 1 ? WANT_LOGITS : 0);
    memcpy(s->h_x, b->x, sizeof(float) * (size_t)n * D);
    *s->h_pos = b->pos;

    int done = 0;
    if (n == 1 && !b->trace && pg_gpu_opt_graphs && !s->graphs_broken) {
        if (!s->graph[want] && capture(s, want) != PG_GPU_OK) s->graphs_broken = 1;   /* run uncaptured */
        if (s->graph[want]) {
            PG_CUDA_TRY(cudaGraphLaunch(s->graph[want], s->stream), "graph launch");
            done = 1;
        }
    }
    if (!done) PG_GPU_TRY(enqueue_step(s, n, want, b->trace));
    PG_CUDA_TRY(cudaStreamSynchronize(s->stream), "GPU forward pass");
    if (b->x_out) memcpy(b->x_out, s->h_xout, sizeof(float) * (size_t)n * D);
    if (want & WANT_LOGITS) memcpy(b->logits, s->h_logits, sizeof(float) * (size_t)V);
    if (want & WANT_ARGMAX) *b->argmax = *s->h_tok;

    /* every token's logits: the head in passes of PG_GPU_LOGIT_ROWS rows */
    for (int r0 = 0; all_rows && r0 < n; r0 += PG_GPU_LOGIT_ROWS) {
        const int m = n - r0 < PG_GPU_LOGIT_ROWS ? n - r0 : PG_GPU_LOGIT_ROWS;
        PG_GPU_TRY(head(s, r0, m));
        if (b->argmax && r0 + m == n) {
            PG_GPU_TRY(pg_launch_argmax(s->logits + (int64_t)(m - 1) * V, V, s->d_tok, s->stream));
            PG_CUDA_TRY(cudaMemcpyAsync(s->h_tok, s->d_tok, sizeof(int32_t), cudaMemcpyDeviceToHost, s->stream),
                        "download");
        }
        PG_CUDA_TRY(cudaMemcpyAsync(s->h_logits, s->logits, sizeof(float) * (size_t)m * V, cudaMemcpyDeviceToHost,
                                    s->stream), "download");
        PG_CUDA_TRY(cudaStreamSynchronize(s->stream), "GPU output head");
        memcpy(b->logits + (int64_t)r0 * V, s->h_logits, sizeof(float) * (size_t)m * V);
        if (b->argmax && r0 + m == n) *b->argmax = *s->h_tok;
    }
    return PG_GPU_OK;
}
