/* kv_shift.c -- drop a span of positions from the KV cache and close the gap.
 *
 * The chatbot's /forget (and a server's context shift) removes old tokens without
 * re-evaluating what follows them: the keys and values of the later tokens stay as they
 * were computed, each moved d positions down.  Keys carry their position as a RoPE
 * rotation, and rotations compose, so rotating a cached key by -d places it at its new
 * position (llama.cpp's context shift does the same).  Values carry no position.
 *
 * Slots: a layer with cache_len cl keeps position p in slot p % cl.  Global layers have
 * cl = n_ctx (slot = position); sliding layers a ring holding the last cl positions
 * (ring_pos says which).  Every kept position p is moved from slot p % cl to
 * slot p' % cl (p' = p, or p - d after the span); the positions a layer holds span fewer
 * than cl values before and after, so no two land in the same slot. */
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "kernels.h"
#include "threadpool.h"

typedef struct {
    pg_context *ctx;
    int64_t p0, p1;            /* the dropped span [p0, p1) */
    const int64_t *old_ring;   /* (ring_len) positions the ring slots held before the shift */
    char *scratch;             /* (n_threads, cl_max * hd * kv_elem) one head's copy per thread */
    size_t scratch_stride;
    pg_status status;
} shift_job;

/* One (layer, kv head): copy the head's cache, then write every kept position to its new
 * slot, re-rotating keys after the span.  k, v: (cl, hd) for this head. */
static void shift_head(shift_job *j, int l, int h, char *copy) {
    pg_context *ctx = j->ctx;
    const pg_config *c = &ctx->model->cfg;
    const int hd = c->head_dim;
    const int32_t cl = ctx->cache_len[l];
    const int sliding = c->is_sliding[l];
    const int uses_ring = sliding;            /* sliding layers are the ring: cl == ring_len */
    const float *inv_freq = sliding ? ctx->inv_freq_local : ctx->inv_freq_global;
    const float pos_scale = sliding ? 1.0f : c->rope_scale_global;
    const int64_t d = j->p1 - j->p0;
    const size_t row = (size_t)hd * ctx->kv_elem, head_bytes = row * (size_t)cl;
    float tmp[hd];
    for (int kv = 0; kv < 2; kv++) {
        char *base = (char *)(kv == 0 ? ctx->k_cache[l] : ctx->v_cache[l]) + (size_t)h * head_bytes;
        memcpy(copy, base, head_bytes);
        int64_t lo = uses_ring ? (ctx->n_past > cl ? ctx->n_past - cl : 0) : 0;
        for (int64_t p = lo; p < ctx->n_past; p++) {
            if (p >= j->p0 && p < j->p1) continue;
            if (uses_ring && j->old_ring[p % cl] != p) continue;
            const int64_t np = p < j->p0 ? p : p - d;
            const char *src = copy + (size_t)(p % cl) * row;
            char *dst = base + (size_t)(np % cl) * row;
            if (kv == 1 || p < j->p0) {
                memcpy(dst, src, row);
                continue;
            }
            if (ctx->kv_type == PG_TYPE_F16) pg_f16_to_f32_row(hd, (const uint16_t *)src, tmp);
            else memcpy(tmp, src, row);
            pg_rope_neox(tmp, hd, (float)-d, pos_scale, inv_freq, ctx->precise);
            if (ctx->kv_type == PG_TYPE_F16) pg_f32_to_f16_row(hd, tmp, (uint16_t *)dst);
            else memcpy(dst, tmp, row);
        }
    }
}

static void shift_task(void *arg, int ith, int nth) {
    shift_job *j = arg;
    const pg_config *c = &j->ctx->model->cfg;
    const int total = c->n_layer * c->n_head_kv;
    char *copy = j->scratch + (size_t)ith * j->scratch_stride;
    for (int item = ith; item < total; item += nth) shift_head(j, item / c->n_head_kv, item % c->n_head_kv, copy);
}

PG_API pg_status pg_context_shift(pg_context *ctx, int64_t p0, int64_t p1) {
    if (!ctx) return pg_fail(PG_ERR_ARG, "pg_context_shift: NULL context");
    if (p0 < 0 || p1 < p0 || p1 > ctx->n_past)
        return pg_fail(PG_ERR_ARG, "cannot drop positions [%lld, %lld): the cache holds %lld tokens",
                       (long long)p0, (long long)p1, (long long)ctx->n_past);
    if (p0 == p1) return PG_OK;
    if (ctx->gpu_seq)   /* PG_ERR_STATE: the caller re-evaluates instead, as for a ring that lost keys */
        return pg_fail(PG_ERR_STATE, "cannot drop positions [%lld, %lld): the offloaded layers' KV cache is on the "
                       "GPU, which does not shift it", (long long)p0, (long long)p1);
    const pg_config *c = &ctx->model->cfg;
    const int64_t d = p1 - p0, n_new = ctx->n_past - d;

    /* After the shift the next token (at n_new) needs the W-1 positions before it on
     * sliding layers: each must be one the ring still holds. */
    if (ctx->ring_len > 0 && ctx->ring_len < ctx->n_ctx) {
        int64_t first = n_new - c->sliding_window + 1;
        for (int64_t np = first < 0 ? 0 : first; np < n_new; np++) {
            int64_t p = np < p0 ? np : np + d;
            if (ctx->ring_pos[p % ctx->ring_len] != p)
                return pg_fail(PG_ERR_STATE,
                               "cannot drop positions [%lld, %lld): the sliding-window cache no longer holds "
                               "position %lld, which the next token would see",
                               (long long)p0, (long long)p1, (long long)p);
        }
    }

    int32_t cl_max = 0;
    for (int l = 0; l < c->n_layer; l++) cl_max = PG_MAX(cl_max, ctx->cache_len[l]);
    const int nth = pg_pool_size(ctx->pool);
    shift_job j = {.ctx = ctx, .p0 = p0, .p1 = p1};
    j.scratch_stride = ((size_t)cl_max * c->head_dim * ctx->kv_elem + 63) & ~(size_t)63;
    j.scratch = pg_malloc_aligned(j.scratch_stride * (size_t)nth);
    int64_t *old_ring = NULL;
    if (ctx->ring_len > 0) {
        old_ring = malloc(sizeof(int64_t) * (size_t)ctx->ring_len);
        if (old_ring) memcpy(old_ring, ctx->ring_pos, sizeof(int64_t) * (size_t)ctx->ring_len);
    }
    if (!j.scratch || (ctx->ring_len > 0 && !old_ring)) {
        pg_free_aligned(j.scratch);
        free(old_ring);
        return pg_fail(PG_ERR_NOMEM, "out of memory shifting the KV cache");
    }
    j.old_ring = old_ring;
    pg_pool_run(ctx->pool, shift_task, &j);

    /* The ring's bookkeeping follows its slots. */
    if (ctx->ring_len > 0) {
        const int32_t rl = ctx->ring_len;
        for (int32_t s = 0; s < rl; s++) ctx->ring_pos[s] = -1;
        for (int32_t s = 0; s < rl; s++) {
            int64_t p = old_ring[s];
            if (p < 0 || p >= ctx->n_past || (p >= p0 && p < p1)) continue;
            int64_t np = p < p0 ? p : p - d;
            ctx->ring_pos[np % rl] = np;
        }
    }
    free(old_ring);
    pg_free_aligned(j.scratch);
    ctx->n_past = n_new;
    ctx->has_logits = 0;
    return PG_OK;
}
