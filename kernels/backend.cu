/* backend.cu -- the library's entry point and function table (kernels/pg_gpu_abi.h):
 * errors, device description, options, uploading the model, creating sequences.
 * The per-chunk work is in forward.cu. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.h"
#include "quant_dot.cuh"

/* ---- errors ---- */

static thread_local char g_err[1024];

int pg_gpu_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return status;
}

int pg_gpu_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return PG_GPU_OK;
    (void)cudaGetLastError();   /* clear a sticky launch error so the next call starts clean */
    return pg_gpu_fail(e == cudaErrorMemoryAllocation ? PG_GPU_ERR_NOMEM : PG_GPU_ERR_GPU, "%s: %s", what,
                       cudaGetErrorString(e));
}

static const char *last_error(void) { return g_err; }

int pg_gpu_opt_tinyblas = 0, pg_gpu_opt_graphs = 1;

static int set_option(const char *name, int64_t value) {
    if (!name) return pg_gpu_fail(PG_GPU_ERR_ARG, "no option name");
    if (!strcmp(name, PG_GPU_OPT_TINYBLAS)) { pg_gpu_opt_tinyblas = value != 0; return PG_GPU_OK; }
    if (!strcmp(name, PG_GPU_OPT_GRAPHS)) { pg_gpu_opt_graphs = value != 0; return PG_GPU_OK; }
    return pg_gpu_fail(PG_GPU_ERR_ARG, "unknown GPU option '%s'", name);
}

/* ---- the device ---- */

static int use_device(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return pg_gpu_fail(PG_GPU_ERR_GPU, "no usable %s device: %s", PG_RUNTIME_NAME,
                           e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return pg_gpu_check(cudaSetDevice(0), "selecting GPU 0");
}

static int device_info(int32_t device, pg_gpu_device_info *out) {
    memset(out, 0, sizeof *out);
    if (device != 0) return pg_gpu_fail(PG_GPU_ERR_ARG, "only device 0 is supported");
    PG_GPU_TRY(use_device());
    cudaDeviceProp p;
    PG_CUDA_TRY(cudaGetDeviceProperties(&p, 0), "reading the device properties");
    size_t free_b = 0, total_b = 0;
    PG_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), "reading the device memory");
    int rt = 0;
    (void)cudaRuntimeGetVersion(&rt);
    snprintf(out->name, sizeof out->name, "%s", p.name);
    snprintf(out->runtime, sizeof out->runtime, "%s %d.%d", PG_RUNTIME_NAME, rt / 1000, (rt % 1000) / 10);
    snprintf(out->blas, sizeof out->blas, "%s", pg_blas_available() ? "cublas" : "tinyblas");
    out->total_bytes = total_b;
    out->free_bytes = free_b;
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->n_sm = p.multiProcessorCount;
    out->warp_size = p.warpSize;
    return PG_GPU_OK;
}

/* ---- the model ---- */

static int model_free(pg_gpu_model *m) {
    if (!m) return PG_GPU_OK;
    for (int i = 0; i < m->n_allocs; i++) (void)cudaFree(m->allocs[i]);
    free(m);
    return PG_GPU_OK;
}

static uint64_t model_bytes(const pg_gpu_model *m) { return m ? m->bytes : 0; }

/* Device copy of `bytes` at host `src`. */
static int upload(pg_gpu_model *m, const void *src, size_t bytes, void **dst, const char *what) {
    *dst = NULL;
    if (m->n_allocs == (int)(sizeof m->allocs / sizeof m->allocs[0]))
        return pg_gpu_fail(PG_GPU_ERR_ARG, "too many device tensors");
    char msg[160];
    snprintf(msg, sizeof msg, "allocating %.1f MiB of GPU memory for %s (%.1f MiB uploaded so far)",
             bytes / 1048576.0, what, m->bytes / 1048576.0);
    PG_CUDA_TRY(cudaMalloc(dst, bytes), msg);
    m->allocs[m->n_allocs++] = *dst;
    m->bytes += bytes;
    return pg_gpu_check(cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice), what);
}

static int matrix_bytes(const pg_gpu_matrix *w, int64_t *row_bytes, const char *name, int layer) {
    *row_bytes = pg_gpu_row_bytes(w->type, w->cols);
    if (*row_bytes <= 0 || w->cols % pg_gpu_block_elems(w->type) != 0)
        return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "layer %d %s: tensor type %d has no GPU kernels", layer, name,
                           w->type);
    return PG_GPU_OK;
}

static int upload_matrix(pg_gpu_model *m, const pg_gpu_matrix *w, pg_dev_matrix *out, const char *name, int layer) {
    int64_t rb;
    PG_GPU_TRY(matrix_bytes(w, &rb, name, layer));
    void *d;
    PG_GPU_TRY(upload(m, w->data, (size_t)(rb * w->rows), &d, name));
    *out = (pg_dev_matrix){w->type, (const uint8_t *)d, w->rows, w->cols, rb};
    return PG_GPU_OK;
}

static int upload_vec(pg_gpu_model *m, const float *v, int64_t n, const float **out, const char *name) {
    if (!v) { *out = NULL; return PG_GPU_OK; }
    void *d;
    PG_GPU_TRY(upload(m, v, sizeof(float) * (size_t)n, &d, name));
    *out = (const float *)d;
    return PG_GPU_OK;
}

/* Device bytes the offloaded weights need, to fail early with a clear message. */
static uint64_t weights_needed(const pg_gpu_model_desc *d) {
    uint64_t n = 0;
    for (int l = d->first_layer; l < d->n_layer; l++) {
        const pg_gpu_layer *L = &d->layers[l];
        const pg_gpu_matrix *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) n += (uint64_t)(pg_gpu_row_bytes(ms[i]->type, ms[i]->cols) * ms[i]->rows);
        n += 4ull * (4 * d->n_embd + 2 * d->head_dim);
    }
    if (d->output_on_gpu)
        n += (uint64_t)(pg_gpu_row_bytes(d->output.type, d->output.cols) * d->output.rows) + 4ull * d->n_embd;
    return n;
}

static int model_create(const pg_gpu_model_desc *d, pg_gpu_model **out) {
    *out = NULL;
    PG_GPU_TRY(use_device());
    if (d->n_layer > PG_GPU_MAX_LAYERS || d->first_layer < 0 || d->first_layer > d->n_layer)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "bad layer split: layers %d..%d of %d", d->first_layer, d->n_layer,
                           d->n_layer);
    if (d->head_dim > PG_GPU_MAX_HD || d->head_dim % 2 || d->n_head % d->n_head_kv)
        return pg_gpu_fail(PG_GPU_ERR_UNSUPPORTED, "head_dim %d / %d heads / %d KV heads: not supported on the GPU",
                           d->head_dim, d->n_head, d->n_head_kv);
    size_t free_b = 0, total_b = 0;
    PG_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), "reading the device memory");
    const uint64_t need = weights_needed(d);
    if (need > free_b)
        return pg_gpu_fail(PG_GPU_ERR_NOMEM, "the weights need %.2f GiB, the GPU has %.2f GiB free",
                           need / 1073741824.0, free_b / 1073741824.0);
    pg_gpu_model *m = (pg_gpu_model *)calloc(1, sizeof *m);
    if (!m) return pg_gpu_fail(PG_GPU_ERR_NOMEM, "host out of memory");
    m->d = *d;
    memcpy(m->sliding, d->is_sliding, (size_t)d->n_layer);
    m->d.is_sliding = m->sliding;
    m->d.layers = NULL;
    m->d.output_norm = NULL;
    m->d.output.data = NULL;
    int rc = PG_GPU_OK;
    const int64_t D = d->n_embd, hd = d->head_dim;
    for (int l = d->first_layer; l < d->n_layer && !rc; l++) {
        const pg_gpu_layer *s = &d->layers[l];
        pg_dev_layer *L = &m->L[l];
        rc = upload_matrix(m, &s->wq, &L->wq, "attn_q", l);
        if (!rc) rc = upload_matrix(m, &s->wk, &L->wk, "attn_k", l);
        if (!rc) rc = upload_matrix(m, &s->wv, &L->wv, "attn_v", l);
        if (!rc) rc = upload_matrix(m, &s->wo, &L->wo, "attn_output", l);
        if (!rc) rc = upload_matrix(m, &s->w_gate, &L->gate, "ffn_gate", l);
        if (!rc) rc = upload_matrix(m, &s->w_up, &L->up, "ffn_up", l);
        if (!rc) rc = upload_matrix(m, &s->w_down, &L->down, "ffn_down", l);
        if (!rc) rc = upload_vec(m, s->attn_norm, D, &L->attn_norm, "attn_norm");
        if (!rc) rc = upload_vec(m, s->q_norm, hd, &L->q_norm, "attn_q_norm");
        if (!rc) rc = upload_vec(m, s->k_norm, hd, &L->k_norm, "attn_k_norm");
        if (!rc) rc = upload_vec(m, s->post_attn_norm, D, &L->post_attn_norm, "post_attention_norm");
        if (!rc) rc = upload_vec(m, s->ffn_norm, D, &L->ffn_norm, "ffn_norm");
        if (!rc) rc = upload_vec(m, s->post_ffn_norm, D, &L->post_ffn_norm, "post_ffw_norm");
    }
    if (!rc && d->output_on_gpu) {
        rc = upload_matrix(m, &d->output, &m->output, "output", d->n_layer);
        if (!rc) rc = upload_vec(m, d->output_norm, D, &m->output_norm, "output_norm");
    }
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return PG_GPU_OK;
}

/* ---- sequences ---- */

static int seq_free(pg_gpu_seq *s) {
    if (!s) return PG_GPU_OK;
    for (int i = 0; i < PG_GPU_N_GRAPHS; i++)
        if (s->graph[i]) (void)cudaGraphExecDestroy(s->graph[i]);
    pg_blas_free(s->blas);
    if (s->stream) (void)cudaStreamDestroy(s->stream);
    for (int i = 0; i < s->n_allocs; i++) (void)cudaFree(s->allocs[i]);
    void *pinned[] = {s->h_pos, s->h_tok, s->h_x, s->h_xout, s->h_logits};
    for (void *p : pinned) if (p) (void)cudaFreeHost(p);
    free(s);
    return PG_GPU_OK;
}

static uint64_t seq_bytes(const pg_gpu_seq *s) { return s ? s->bytes + pg_blas_bytes(s->blas) : 0; }

static int dalloc(pg_gpu_seq *s, size_t bytes, void **out, const char *what) {
    *out = NULL;
    if (bytes == 0) return PG_GPU_OK;
    if (s->n_allocs == (int)(sizeof s->allocs / sizeof s->allocs[0]))
        return pg_gpu_fail(PG_GPU_ERR_ARG, "too many device buffers");
    char msg[160];
    snprintf(msg, sizeof msg, "allocating %.1f MiB of GPU memory for the %s (%.1f MiB taken so far)",
             bytes / 1048576.0, what, s->bytes / 1048576.0);
    PG_CUDA_TRY(cudaMalloc(out, bytes), msg);
    s->allocs[s->n_allocs++] = *out;
    s->bytes += bytes;
    return PG_GPU_OK;
}

#define DALLOC(ptr, bytes, what) PG_GPU_TRY(dalloc(s, (bytes), (void **)&(ptr), (what)))

static int seq_init(pg_gpu_seq *s, const pg_gpu_seq_desc *d) {
    const pg_gpu_model_desc *c = &s->m->d;
    const size_t B = (size_t)d->n_batch, D = c->n_embd, F = c->n_ff, hd = c->head_dim, V = c->n_vocab;
    const size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_head_kv * hd, elem = d->precise ? 4 : 2;
    /* decode splits: about 256 keys per split at a full context, at most 64 */
    s->splits = (d->n_ctx + 255) / 256;
    s->splits = s->splits < 1 ? 1 : s->splits > 64 ? 64 : s->splits;
    /* KV cache first: it is what a long context asks for */
    for (int l = c->first_layer; l < c->n_layer; l++) {
        s->cache_len[l] = d->cache_len[l];
        DALLOC(s->kc[l], elem * kvd * (size_t)d->cache_len[l], "KV cache");
        DALLOC(s->vc[l], elem * kvd * (size_t)d->cache_len[l], "KV cache");
    }
    float *inv;
    DALLOC(inv, sizeof(float) * hd, "RoPE table");
    PG_CUDA_TRY(cudaMemcpy(inv, d->inv_freq_local, sizeof(float) * (hd / 2), cudaMemcpyHostToDevice), "RoPE table");
    PG_CUDA_TRY(cudaMemcpy(inv + hd / 2, d->inv_freq_global, sizeof(float) * (hd / 2), cudaMemcpyHostToDevice),
                "RoPE table");
    s->inv_local = inv;
    s->inv_global = inv + hd / 2;
    DALLOC(s->d_pos, sizeof(int64_t), "buffers");
    DALLOC(s->d_tok, sizeof(int32_t), "buffers");
    DALLOC(s->x, 4 * B * D, "activations");
    DALLOC(s->xn, 4 * B * D, "activations");
    DALLOC(s->o, 4 * B * D, "activations");
    DALLOC(s->q, 4 * B * qd, "activations");
    DALLOC(s->att, 4 * B * qd, "activations");
    DALLOC(s->k, 4 * B * kvd, "activations");
    DALLOC(s->v, 4 * B * kvd, "activations");
    DALLOC(s->gate, 4 * B * F, "activations");
    DALLOC(s->up, 4 * B * F, "activations");
    const size_t prow = (size_t)c->n_head * (hd + 2);
    DALLOC(s->partials, 4 * prow * (B > (size_t)s->splits ? B : (size_t)s->splits), "attention scratch");
    if (c->output_on_gpu) DALLOC(s->logits, 4 * PG_GPU_LOGIT_ROWS * V, "logits");
    PG_CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "creating a stream");
    const size_t widest = D > F ? (D > qd ? D : qd) : (F > qd ? F : qd);
    PG_GPU_TRY(pg_blas_create(&s->blas, s->stream, (int64_t)(B * widest)));
    PG_CUDA_TRY(cudaMallocHost((void **)&s->h_pos, sizeof(int64_t)), "pinned host memory");
    PG_CUDA_TRY(cudaMallocHost((void **)&s->h_tok, sizeof(int32_t)), "pinned host memory");
    PG_CUDA_TRY(cudaMallocHost((void **)&s->h_x, 4 * B * D), "pinned host memory");
    PG_CUDA_TRY(cudaMallocHost((void **)&s->h_xout, 4 * B * D), "pinned host memory");
    if (c->output_on_gpu)
        PG_CUDA_TRY(cudaMallocHost((void **)&s->h_logits, 4 * PG_GPU_LOGIT_ROWS * V), "pinned host memory");
    return PG_GPU_OK;
}

static int seq_create(pg_gpu_model *m, const pg_gpu_seq_desc *d, pg_gpu_seq **out) {
    *out = NULL;
    PG_GPU_TRY(use_device());
    if (d->n_batch < 1 || d->n_batch > 65535 || d->n_ctx < 1)
        return pg_gpu_fail(PG_GPU_ERR_ARG, "n_batch %d / n_ctx %d out of range", d->n_batch, d->n_ctx);
    pg_gpu_seq *s = (pg_gpu_seq *)calloc(1, sizeof *s);
    if (!s) return pg_gpu_fail(PG_GPU_ERR_NOMEM, "host out of memory");
    s->m = m;
    s->n_ctx = d->n_ctx;
    s->n_batch = d->n_batch;
    s->precise = d->precise;
    int rc = seq_init(s, d);
    if (rc) {
        seq_free(s);
        return rc;
    }
    *out = s;
    return PG_GPU_OK;
}

static int forward(pg_gpu_seq *s, const pg_gpu_batch *b) {
    PG_GPU_TRY(use_device());
    return pg_gpu_forward(s, b);
}

static const pg_gpu_backend g_table = {
    PG_GPU_ABI_VERSION, (uint32_t)sizeof(pg_gpu_backend), PG_RUNTIME_NAME,
    last_error, device_info, set_option,
    model_create, model_free, model_bytes,
    seq_create, seq_free, seq_bytes,
    forward,
};

extern "C" __attribute__((visibility("default"))) int pg_gpu_backend_v1(const pg_gpu_host *host,
                                                                        const pg_gpu_backend **out) {
    (void)host;
    if (!out) return PG_GPU_ERR_ARG;
    *out = &g_table;
    return PG_GPU_OK;
}
