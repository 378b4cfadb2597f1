/* context.h -- one sequence's run state: KV cache and activation buffers. Internal. */
#ifndef PG_CONTEXT_H
#define PG_CONTEXT_H

#include "model.h"

struct pg_context {
    const struct pg_model *model;
    pg_pool *pool;
    int32_t n_ctx;             /* max tokens in the sequence */
    int32_t n_batch;           /* max tokens per forward chunk (B) */
    int64_t n_past;            /* tokens in the cache */

    /* KV cache, per layer: (Hkv, cache_len[l], hd) of kv_type (F16 or F32).  Global layers keep
     * n_ctx slots; sliding layers a ring of min(n_ctx, W + B) slots, enough
     * for a whole chunk's queries to still see their window. */
    int32_t cache_len[PG_MAX_LAYERS];
    int precise;               /* float32 numerics (see pg_context_params) */
    int kv_type;               /* PG_TYPE_F32 when precise, else PG_TYPE_F16 */
    size_t kv_elem;            /* bytes per cached element */
    void *k_cache[PG_MAX_LAYERS];
    void *v_cache[PG_MAX_LAYERS];
    int32_t ring_len;          /* slots of the sliding rings (0 if no sliding layer) */
    int64_t *ring_pos;         /* (ring_len): position held by each ring slot, -1 if none */

    /* RoPE inverse frequencies (hd/2) for sliding and global layers. */
    float *inv_freq_local;
    float *inv_freq_global;

    /* Activations for one chunk of up to B tokens. */
    float *x;                  /* (B, D) residual stream */
    float *xn;                 /* (B, D) normed input of a sub-layer */
    float *q;                  /* (B, H*hd) */
    float *k;                  /* (B, Hkv*hd) */
    float *v;                  /* (B, Hkv*hd) */
    float *att;                /* (B, H*hd) attention output before wo */
    float *o;                  /* (B, D) sub-layer output */
    float *gate;               /* (B, F) */
    float *up;                 /* (B, F) */
    float *scores;             /* (n_threads, n_ctx) per-thread attention scores */
    float *logits;             /* (n_vocab) logits of the last evaluated token */
    float *batch_logits;       /* (batch_logits_rows, n_vocab) pg_eval_batch's output when this
                                  context leads the batch; grown on demand, kept for the next step */
    int32_t batch_logits_rows;
    int has_logits;

    struct pg_gpu_seq *gpu_seq;    /* the device part (model_gpu.c), NULL when CPU only */
    int32_t *argmax_out;       /* set by pg_eval_argmax for its last chunk: greedy token wanted */

    float *trace_hidden;       /* (n_layer, n, D) residual after each layer, or NULL */
    volatile int cancel;       /* set from another thread to stop an eval */
};

/* model.c: NEOX RoPE of one head's vector v (hd) to position pos (any sign: rotating a
 * vector already at position p by -d gives it at position p - d). */
void pg_rope_neox(float *v, int hd, float pos, float pos_scale, const float *inv_freq, int precise);

/* model.c: run one chunk (n <= n_batch tokens at positions n_past..) through
 * the network.  logits_out: (n, n_vocab) for every token, or NULL to compute
 * only the last token's logits into ctx->logits. */
pg_status pg_forward_chunk(struct pg_context *ctx, const int32_t *tokens, int32_t n, float *logits_out);
/* The same for rows of several sequences: row t is the next token of seqs[t] (at position
 * seqs[t]->n_past, into seqs[t]'s KV cache), computed with ctx's buffers and pool.  seqs NULL
 * is pg_forward_chunk.  Does not advance any n_past. */
pg_status pg_forward_rows(struct pg_context *ctx, struct pg_context *const *seqs, const int32_t *tokens,
                          int32_t n, float *logits_out);

/* model_gpu.c: the device side of a context, and running the offloaded layers of a chunk
 * whose residual is in ctx->x.  *head_done = 1 when the device also produced the output
 * (logits into logits_out / ctx->logits, or only ctx->argmax_out). */
pg_status pg_context_gpu_attach(struct pg_context *ctx);
void pg_context_gpu_detach(struct pg_context *ctx);
pg_status pg_forward_gpu(struct pg_context *ctx, int32_t n, float *logits_out, int *head_done);

#endif
