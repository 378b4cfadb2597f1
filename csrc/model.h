/* model.h -- Gemma 2 / Gemma 3 model: config, weights, run state. Internal.
 *
 * Split by lifetime, as in llama2.c:
 *   pg_config   the blueprint, read once from GGUF metadata
 *   pg_weights  read-only views into the mmap (no copies)
 *   pg_context  one sequence's run state: KV cache, activations, thread pool
 * One pg_model (config + weights + tokenizer) can serve several contexts. */
#ifndef PG_MODEL_H
#define PG_MODEL_H

#include "internal.h"

#define PG_MAX_LAYERS 256

typedef enum { PG_ARCH_GEMMA2 = 2, PG_ARCH_GEMMA3 = 3 } pg_arch;

typedef struct {
    pg_arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;       /* context length the model was trained for */
    int32_t n_embd;            /* D: hidden size */
    int32_t n_layer;
    int32_t n_ff;              /* F: feed-forward size */
    int32_t n_head;            /* H: query heads */
    int32_t n_head_kv;         /* Hkv: key/value heads (GQA) */
    int32_t head_dim;          /* hd: key/value length per head */
    float norm_eps;
    float attn_softcap;        /* 0: none */
    float final_softcap;       /* 0: none */
    float query_scale;         /* 1/sqrt(query_pre_attn_scalar) */
    int32_t sliding_window;    /* W: keys at distance >= W are masked on sliding layers */
    float rope_base_global;
    float rope_base_local;     /* base on sliding layers */
    float rope_scale_global;   /* position multiplier on global layers (1/linear factor) */
    uint8_t is_sliding[PG_MAX_LAYERS];
} pg_config;

typedef struct {
    int type;                  /* GGML type */
    const void *data;          /* view into the mmap */
    int64_t rows, cols;        /* (rows, cols): GGUF ne[1], ne[0] */
} pg_matrix;

typedef struct {
    const float *attn_norm;        /* (D) */
    pg_matrix wq;                  /* (H*hd, D) */
    pg_matrix wk;                  /* (Hkv*hd, D) */
    pg_matrix wv;                  /* (Hkv*hd, D) */
    const float *q_norm;           /* (hd) gemma3 only */
    const float *k_norm;           /* (hd) gemma3 only */
    pg_matrix wo;                  /* (D, H*hd) */
    const float *post_attn_norm;   /* (D) */
    const float *ffn_norm;         /* (D) */
    pg_matrix w_gate;              /* (F, D) */
    pg_matrix w_up;                /* (F, D) */
    pg_matrix w_down;              /* (D, F) */
    const float *post_ffn_norm;    /* (D) */
} pg_layer_weights;

typedef struct {
    float *vector_copies;          /* 4-byte aligned copies of norm vectors whose data in the
                                      file is not (a GGUF stored unaligned inside a llamafile) */
    size_t copies_used, copies_cap;
    pg_matrix token_embd;          /* (n_vocab, D) */
    pg_matrix output;              /* (n_vocab, D): token_embd when tied */
    const float *output_norm;      /* (D) */
    pg_layer_weights layers[PG_MAX_LAYERS];
} pg_weights;

struct pg_gguf;
struct pg_tokenizer;

struct pg_model {
    struct pg_gguf *gguf;          /* owns the mapping */
    pg_config cfg;
    pg_weights w;
    struct pg_tokenizer *tok;
    char arch_name[32];

    /* GPU offload (model_gpu.c): all zero when the model runs on the CPU only. */
    const struct pg_backend *gpu;
    struct pg_gpu_model *gpu_model;
    int32_t n_gpu_layers;          /* layers [n_layer - n_gpu_layers, n_layer) run on the device */
    int32_t gpu_output;            /* the output norm and head run on the device */
    uint64_t gpu_bytes;            /* device bytes of the weights */
    char gpu_info[384];            /* pg_model_gpu_info() */
};

/* model_load.c */
pg_status pg_config_from_gguf(const struct pg_gguf *g, float query_pre_attn_scalar, pg_config *cfg);
pg_status pg_weights_from_gguf(const struct pg_gguf *g, const pg_config *cfg, pg_weights *w);

/* model_gpu.c */
pg_status pg_model_gpu_attach(struct pg_model *m, const char *library, int32_t n_gpu_layers);
void pg_model_gpu_detach(struct pg_model *m);

#endif
