/*
 * pygemma.h -- the one public header of the pygemma C core.
 *
 * Everything the Python binding (and any other front end) may call is here:
 * opaque handles, status codes, and plain C types only.  No function in the
 * core exits or aborts the process: every failure returns a pg_status and
 * leaves a human-readable message in pg_last_error() (per thread).
 *
 * The text between the CDEF markers is fed verbatim to cffi's cdef(), so it
 * must stay plain declarations (preprocessor lines are dropped).
 *
 * Layout of the header (one section per component, each owned by one .c file):
 *   status & library info ....... status.c, cpu.c
 *   tensor types ................ types.c, dequant.c, quantize.c
 *   thread pool & linear algebra  threadpool.c, matmul.c, kernels_*.c
 *   GGUF files .................. gguf.c, zipfile.c
 *   tokenizer, sampler, model ... tokenizer.c, sampler.c, model*.c
 */
#ifndef PYGEMMA_H
#define PYGEMMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PG_API __attribute__((visibility("default")))
#else
#define PG_API
#endif

/* CDEF BEGIN */

/* ===================================================================== */
/* Status codes and library information                                  */
/* ===================================================================== */

typedef enum {
    PG_OK = 0,
    PG_ERR_IO = 1,           /* open/read/mmap failed */
    PG_ERR_FORMAT = 2,       /* malformed GGUF / ZIP / model file */
    PG_ERR_UNSUPPORTED = 3,  /* valid input we do not handle (tensor type, architecture) */
    PG_ERR_NOMEM = 4,        /* allocation failed */
    PG_ERR_ARG = 5,          /* bad argument from the caller */
    PG_ERR_CONTEXT = 6,      /* context window full / prompt too long */
    PG_ERR_CANCELLED = 7,    /* interrupted by the caller */
    PG_ERR_GPU = 8,          /* GPU backend failure */
    PG_ERR_STATE = 9         /* object used in the wrong state (closed, ...) */
} pg_status;

/* Message describing the last failure on the calling thread ("" if none). */
PG_API const char *pg_last_error(void);
PG_API const char *pg_version(void);

/* CPU kernel tiers.  The best tier the CPU (and OS) supports is chosen when
 * the library loads; PYGEMMA_CPU=scalar|avx2|avx512|neon forces a lower one. */
typedef enum {
    PG_CPU_SCALAR = 0,
    PG_CPU_AVX2 = 1,     /* AVX2 + FMA + F16C */
    PG_CPU_AVX512 = 2,   /* AVX-512 F/BW/VL/DQ, with VNNI/BF16 paths when present */
    PG_CPU_NEON = 3      /* arm64 NEON (+ dotprod when present) */
} pg_cpu_tier;

PG_API int pg_cpu_tier_get(void);
PG_API int pg_cpu_tier_best(void);                 /* best tier this CPU supports */
PG_API int pg_cpu_tier_supported(int tier);        /* 1 if `tier` can run here */
PG_API pg_status pg_cpu_tier_set(int tier);        /* PG_ERR_ARG if unsupported */
PG_API const char *pg_cpu_tier_name(int tier);
PG_API const char *pg_cpu_features(void);          /* e.g. "avx2 fma f16c avx512f avx512vnni" */
PG_API int pg_cpu_physical_cores(void);

/* ===================================================================== */
/* Tensor types (numbered as in GGML / GGUF)                             */
/* ===================================================================== */

typedef enum {
    PG_TYPE_F32 = 0,
    PG_TYPE_F16 = 1,
    PG_TYPE_Q4_0 = 2,
    PG_TYPE_Q4_1 = 3,
    PG_TYPE_Q5_0 = 6,
    PG_TYPE_Q5_1 = 7,
    PG_TYPE_Q8_0 = 8,
    PG_TYPE_Q8_1 = 9,
    PG_TYPE_Q2_K = 10,
    PG_TYPE_Q3_K = 11,
    PG_TYPE_Q4_K = 12,
    PG_TYPE_Q5_K = 13,
    PG_TYPE_Q6_K = 14,
    PG_TYPE_Q8_K = 15,
    PG_TYPE_BF16 = 30,
    PG_TYPE_COUNT = 48       /* size of per-type tables; not a type */
} pg_type;

/* Name ("Q4_K") of a GGML type number, also for types we cannot compute
 * with; NULL for numbers no GGML version has used. */
PG_API const char *pg_type_name(int type);
/* 1 if pygemma can dequantize and multiply tensors of this type. */
PG_API int pg_type_supported(int type);
PG_API int pg_type_from_name(const char *name);    /* -1 if unknown */
PG_API int64_t pg_type_block_size(int type);       /* elements per block; 0 if unknown */
PG_API int64_t pg_type_block_bytes(int type);      /* bytes per block; 0 if unknown */
/* Bytes of a row of n elements; -1 if n is not a multiple of the block size. */
PG_API int64_t pg_type_row_bytes(int type, int64_t n);

/* dst (n floats) = dequantized src (n elements of `type`, n % block == 0). */
PG_API pg_status pg_dequantize(int type, const void *src, float *dst, int64_t n);

/* dst = src (nrows x ncols, row-major floats) quantized to `type`, row by row,
 * with the same algorithms as llama.cpp's reference quantizers.  `imatrix`
 * (ncols importance weights) may be NULL.  Rows are independent, so callers
 * may split work by rows across threads. */
PG_API pg_status pg_quantize(int type, const float *src, void *dst,
                             int64_t nrows, int64_t ncols, const float *imatrix);

/* ===================================================================== */
/* Thread pool and linear algebra                                        */
/* ===================================================================== */

typedef struct pg_pool pg_pool;

/* A persistent pool of n_threads workers (the caller counts as one).
 * n_threads <= 0 means one per physical core. */
PG_API pg_status pg_pool_create(int n_threads, pg_pool **out);
PG_API void pg_pool_free(pg_pool *pool);
PG_API int pg_pool_size(const pg_pool *pool);

/* y = x @ W^T
 *   W: (rows, cols) of `wtype`, rows contiguous, row stride pg_type_row_bytes(wtype, cols)
 *   x: (ntok, cols) float32, row-major
 *   y: (ntok, rows) float32, row-major
 * ntok == 1 takes the matrix-vector path; larger ntok the tiled matrix-matrix path.
 * Activations are quantized to 8 bits for integer dot products where the
 * weight type allows it (as llama.cpp does). */
PG_API pg_status pg_matmul(pg_pool *pool, int wtype, const void *w, int64_t rows, int64_t cols,
                           const float *x, int64_t ntok, float *y);

/* CDEF END */

/* ===================================================================== */
/* GGUF files (gguf.c, zipfile.c)                                        */
/* ===================================================================== */

/* (section owned by the GGUF reader) */

/* ===================================================================== */
/* Tokenizer (tokenizer.c)                                               */
/* ===================================================================== */

/* (section owned by the tokenizer) */

/* ===================================================================== */
/* Sampler (sampler.c)                                                   */
/* ===================================================================== */

/* CDEF BEGIN */

/* The sampler turns one row of logits into a token, as llama.cpp's common sampler chain does:
 *
 *   penalties -> top-k -> top-p -> min-p -> temperature -> draw from the softmax
 *
 *   penalties  for each token t seen c > 0 times among the last penalty_last_n accepted tokens:
 *              l = l > 0 ? l / repeat_penalty : l * repeat_penalty;
 *              l -= c * frequency_penalty + presence_penalty     (OpenAI's definitions)
 *   top-k      keep the top_k largest logits (top_k <= 0: the whole vocabulary)
 *   top-p      softmax over the kept tokens; keep the shortest best-first prefix whose
 *              probability reaches top_p, at least one token (top_p >= 1: off)
 *   min-p      keep tokens with p >= min_p * p_max, i.e. l >= l_max + log(min_p) (min_p <= 0: off)
 *   temperature  p ~ exp((l - l_max) / temperature) over what is left, then one seeded draw.
 *
 * temperature <= 0 is greedy: the argmax of the penalized logits (ties go to the lowest id);
 * top_k == 1 gives the same token at any temperature.  Ties anywhere are broken by lower id.
 * NaN logits count as -inf and +inf as FLT_MAX; when every logit is NaN or -inf, sampling
 * fails with PG_ERR_ARG rather than invent a token.
 *
 * Penalty window: pg_sampler_sample() does NOT record the token it returns.  Call
 * pg_sampler_accept() for every token appended to the context -- the prompt's tokens and
 * each generated one -- so the window is "the last N tokens of the context", as llama.cpp's
 * llama-cli and llama-server do (they accept every prompt token before the first draw).
 *
 * Random numbers: xoshiro256** seeded through splitmix64, one uniform per draw (greedy draws
 * too), so a seed gives the same stream on every platform; a token can still differ between
 * CPUs only where the last-bit rounding of a probability (the SSE2/NEON and AVX2 exp kernels
 * round differently) decides a draw.  seed == PG_SAMPLER_SEED_RANDOM picks a seed from the OS. */

#define PG_SAMPLER_SEED_RANDOM UINT64_MAX

typedef struct pg_sampler pg_sampler;

typedef struct {
    float temperature;         /* <= 0: greedy; must not be NaN/inf */
    int32_t top_k;             /* <= 0: whole vocabulary */
    float top_p;               /* in [0, 1]; 1: off */
    float min_p;               /* in [0, 1]; 0: off */
    float repeat_penalty;      /* > 0; 1: off */
    float frequency_penalty;   /* finite; 0: off */
    float presence_penalty;    /* finite; 0: off */
    int32_t penalty_last_n;    /* window size; 0: penalties off; -1: every token since reset */
    uint64_t seed;             /* PG_SAMPLER_SEED_RANDOM: pick one */
} pg_sampler_params;

/* llama.cpp's defaults (common_params_sampling): temperature 0.8, top_k 40, top_p 0.95,
 * min_p 0.05, repeat_penalty 1.0, penalties 0, penalty_last_n 64, random seed. */
PG_API void pg_sampler_params_default(pg_sampler_params *p);

/* PG_ERR_ARG naming the parameter for NaN/inf temperature, top_p or min_p outside [0, 1],
 * repeat_penalty <= 0, penalty_last_n < -1, n_vocab <= 0. */
PG_API pg_status pg_sampler_create(const pg_sampler_params *p, int32_t n_vocab, pg_sampler **out);
PG_API void pg_sampler_free(pg_sampler *s);
/* Add a token of the context to the penalty window (0 <= token < n_vocab). */
PG_API pg_status pg_sampler_accept(pg_sampler *s, int32_t token);
/* *token_out = one draw from logits (n_vocab floats), which are not modified. */
PG_API pg_status pg_sampler_sample(pg_sampler *s, const float *logits, int32_t *token_out);
/* The tokens the next draw would choose from and their probabilities (summing to 1), in the
 * order the draw walks them; draws nothing.  Writes min(cap, n) entries, *n_out = n. */
PG_API pg_status pg_sampler_candidates(pg_sampler *s, const float *logits, int32_t cap,
                                       int32_t *ids_out, float *probs_out, int32_t *n_out);
/* Empty the penalty window and restart the random stream (a fixed seed repeats its draws;
 * a random seed is drawn afresh, as llama.cpp does). */
PG_API void pg_sampler_reset(pg_sampler *s);
/* The seed in use (the one picked, for PG_SAMPLER_SEED_RANDOM). */
PG_API uint64_t pg_sampler_seed(const pg_sampler *s);

/* Log-probabilities of the model's raw distribution, log_softmax(logits) (what the OpenAI API
 * reports), independent of any sampler settings.  logits: (n_vocab) floats.
 * ids_out, logprobs_out: (k) -- the k most likely tokens, best first (ties: lower id). */
PG_API pg_status pg_sampler_top_logprobs(const float *logits, int32_t n_vocab, int32_t k,
                                         int32_t *ids_out, float *logprobs_out);
PG_API pg_status pg_sampler_token_logprob(const float *logits, int32_t n_vocab, int32_t token,
                                          float *logprob_out);

/* ---- Text stream: stop strings and UTF-8 boundaries for streamed output (textstream.c) ----
 *
 * The generation loop feeds the bytes of each detokenized piece; feed() returns the bytes that
 * are safe to show now:
 *   - always whole, valid UTF-8: an incomplete character is held until it completes; invalid
 *     bytes become U+FFFD, one per maximal invalid subpart (as Python's errors="replace");
 *   - any tail that could still become a stop string is held back;
 *   - when a stop string completes, the text before it is returned, *stopped = 1, and the stop
 *     string and everything after it are dropped (as the OpenAI API does).
 * The stop is the first point in the byte stream where some stop string is complete (the
 * longer one if two complete on the same byte), so the result does not depend on how the
 * bytes were split into pieces.  flush() ends the stream and returns what was held back
 * (a trailing incomplete character as U+FFFD). */

typedef struct pg_textstream pg_textstream;

enum { PG_TEXTSTREAM_MAX_STOPS = 32, PG_TEXTSTREAM_MAX_STOP_BYTES = 1024 };

/* stops: n_stops byte strings (stop_lens bytes each, 1..PG_TEXTSTREAM_MAX_STOP_BYTES);
 * n_stops in 0..PG_TEXTSTREAM_MAX_STOPS.  The strings are copied. */
PG_API pg_status pg_textstream_create(const char *const *stops, const size_t *stop_lens,
                                      int32_t n_stops, pg_textstream **out);
PG_API void pg_textstream_free(pg_textstream *ts);
/* *out points to *n_out bytes owned by ts, valid until the next call on ts.
 * After a stop, feeds return nothing and *stopped = 1.  PG_ERR_STATE after flush(). */
PG_API pg_status pg_textstream_feed(pg_textstream *ts, const char *bytes, size_t n,
                                    const char **out, size_t *n_out, int *stopped);
PG_API pg_status pg_textstream_flush(pg_textstream *ts, const char **out, size_t *n_out);
/* Index of the stop string that ended the stream, -1 if none. */
PG_API int32_t pg_textstream_stop_index(const pg_textstream *ts);
/* Bytes fed but not yet returned. */
PG_API size_t pg_textstream_held(const pg_textstream *ts);
/* Start a new stream with the same stop strings. */
PG_API void pg_textstream_reset(pg_textstream *ts);

/* CDEF END */

/* ===================================================================== */
/* Model: forward pass and KV cache (model*.c)                           */
/* ===================================================================== */

/* (section owned by the model) */

#ifdef __cplusplus
}
#endif
#endif /* PYGEMMA_H */
