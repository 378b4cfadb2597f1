/* matmul.c -- y = x @ W^T on the thread pool: argument checks, activation
 * conversion, and the split of the output into chunks for the tier's kernel.
 *
 * Work split.  The output (ntok, rows) is cut into chunks of mc weight rows x
 * nc tokens, numbered token-chunk-major, and threads claim chunks from an
 * atomic counter (thread i starts with chunk i), which balances the load even
 * when another process steals a core.  Within a chunk the kernel keeps a
 * register tile of weight rows x tokens, so each weight block is unpacked once
 * per several tokens and each activation block loaded once per several rows.
 *   ntok == 1 (mat-vec): nc = 1, about 8 chunks per thread, each a
 *     contiguous band of rows (a few streams for the hardware prefetcher).
 *   ntok > 1 (mat-mat): nc ~ 64 tokens (their activations stay in L2 while
 *     all row chunks sweep over them), mc ~ 32 KB of weights (L1/L2); both
 *     shrink when there are too few chunks to keep the threads busy.
 *   ntok >= panel_cols with a panel kernel (AVX-512 quantized types): the
 *     activation rows are first regrouped into panels of 16 tokens (one pass,
 *     all threads) and chunks are ~128 tokens wide (8 panels, ~600 KB of
 *     K-quant activations in L2), so each chunk unpacks its weight rows once
 *     for 128 tokens. */
#include <stdatomic.h>
#include <string.h>

#include "kernels.h"
#include "threadpool.h"
#include "types.h"

typedef struct {
    pg_act_fn act;
    const float *x;          /* (ntok, n) */
    uint8_t *xq;             /* (ntok, ldx bytes) activation rows */
    size_t ldx;
    int64_t n, ntok;
} act_job;

static void act_worker(void *p, int ith, int nth) {
    act_job *j = p;
    int64_t t0 = j->ntok * ith / nth, t1 = j->ntok * (ith + 1) / nth;
    for (int64_t t = t0; t < t1; t++) j->act(j->n, j->x + t * j->n, j->xq + (size_t)t * j->ldx);
}

typedef struct {
    pg_panel_fn to_panel;
    const uint8_t *xq;       /* (ntok, ldx bytes) activation rows */
    size_t ldx;
    uint8_t *panels;         /* (ceil(ntok / cols), pbytes) */
    size_t pbytes;
    int64_t n, ntok;
    int cols;
} panel_job;

static void panel_worker(void *p, int ith, int nth) {
    panel_job *j = p;
    int64_t np = (j->ntok + j->cols - 1) / j->cols;
    for (int64_t i = ith; i < np; i += nth)
        j->to_panel(j->n, j->xq + (size_t)i * j->cols * j->ldx, j->ldx, (int)PG_MIN(j->cols, j->ntok - i * j->cols),
                    j->panels + (size_t)i * j->pbytes);
}

/* One product of a group: its kernel and chunk plan. */
typedef struct {
    pg_gemm_fn gemm;
    int panel_cols;          /* > 0: x holds panels of this many tokens, ldx = panel stride */
    const uint8_t *w;        /* (rows, ldw bytes) */
    size_t ldw;
    const uint8_t *x;        /* (ntok, ldx bytes) activation rows, or the panels */
    size_t ldx;
    float *y;                /* (ntok, rows) */
    int64_t rows;
    int64_t mc, nc;          /* chunk: mc rows x nc tokens */
    int64_t n_rchunks, n_chunks;
    int64_t first;           /* index of its first chunk in the group */
} mm_part;

typedef struct {
    mm_part part[PG_MM_GROUP_MAX];
    int n_parts;
    int64_t n;               /* inner dimension (cols of every W) */
    int64_t ntok;
    uint8_t *work;           /* (nth, work_bytes) per-thread kernel scratch */
    size_t work_bytes;
    int64_t n_chunks;        /* all parts */
    _Alignas(64) atomic_llong next;
} mm_job;

static void run_chunk(const mm_job *j, int64_t c, void *work) {
    int p = 0;
    while (c >= j->part[p].first + j->part[p].n_chunks) p++;
    const mm_part *q = &j->part[p];
    c -= q->first;
    int64_t r0 = (c % q->n_rchunks) * q->mc, t0 = (c / q->n_rchunks) * q->nc;
    int nr = (int)PG_MIN(q->mc, q->rows - r0), nt = (int)PG_MIN(q->nc, j->ntok - t0);
    size_t xoff = q->panel_cols ? (size_t)(t0 / q->panel_cols) * q->ldx : (size_t)t0 * q->ldx;
    q->gemm(j->n, q->y + t0 * q->rows + r0, q->rows, q->w + (size_t)r0 * q->ldw, q->ldw, nr, q->x + xoff, q->ldx,
            nt, work);
}

static void mm_worker(void *p, int ith, int nth) {
    mm_job *j = p;
    void *work = j->work ? j->work + (size_t)ith * j->work_bytes : NULL;
    if (ith < j->n_chunks) run_chunk(j, ith, work);
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) + nth;
        if (c >= j->n_chunks) break;
        run_chunk(j, c, work);
    }
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Below this many weight bytes x tokens the job runs on the caller alone: the
 * dispatch (~1-2 us of cache-line transfers) would cost more than it saves. */
#define PG_MM_SERIAL_BYTES 65536
/* Smallest mat-vec chunk worth an atomic claim. */
#define PG_MM_MIN_CHUNK 16384

/* Chunk sizes of one part for a kernel with register tile mr x nr, about
 * nc_pref tokens per chunk (see the file comment). */
static void plan_chunks(mm_part *j, int64_t ntok, int nth, int mr, int nr, int64_t nc_pref) {
    int64_t want = (int64_t)nth * 8;
    if (ntok == 1) {
        /* Up to 8 chunks per thread, but chunks of >= PG_MM_MIN_CHUNK bytes
         * (each claim is a cache-line transfer between cores), in rows that
         * are whole 64-byte lines of y (no false sharing). */
        int64_t nchunks = (int64_t)(j->rows * j->ldw / PG_MM_MIN_CHUNK);
        nchunks = PG_MAX(PG_MIN(nchunks, want), nth);
        int64_t align = mr;                     /* lcm(mr, 16) */
        while (align % 16) align += mr;
        j->nc = 1;
        j->mc = round_up(PG_MAX((j->rows + nchunks - 1) / nchunks, 1), align);
    } else {
        j->nc = PG_MIN(round_up(nc_pref, nr), round_up(ntok, nr));
        j->mc = round_up(PG_MAX((int64_t)(32768 / j->ldw), 1), mr);
        /* Too few chunks for the threads: shrink rows first, then tokens. */
        while (j->mc > mr && ((j->rows + j->mc - 1) / j->mc) * ((ntok + j->nc - 1) / j->nc) < want)
            j->mc = round_up(j->mc / 2, mr);
        while (j->nc > nr && ((j->rows + j->mc - 1) / j->mc) * ((ntok + j->nc - 1) / j->nc) < want)
            j->nc = round_up(j->nc / 2, nr);
    }
    j->n_rchunks = (j->rows + j->mc - 1) / j->mc;
    j->n_chunks = j->n_rchunks * ((ntok + j->nc - 1) / j->nc);
}

/* Tokens per chunk on the panel path: the chunk's panels (re-read by every row tile)
 * should stay in L2, about PG_MM_PANEL_L2 bytes, and each weight row (repacked once per
 * chunk) should serve as many tokens as possible: 32..512 tokens. */
#ifndef PG_MM_PANEL_L2
#define PG_MM_PANEL_L2 (640 << 10)
#endif
static int64_t panel_tokens(size_t panel_bytes, int panel_cols) {
    int64_t panels = (int64_t)(PG_MM_PANEL_L2 / PG_MAX(panel_bytes, (size_t)1));
    return PG_MIN(PG_MAX(panels * panel_cols, 32), 512);
}

static pg_status check_product(const pg_kernels *k, const pg_mm_out *m, int64_t cols, int64_t ntok) {
    const pg_type_traits *tr = pg_type_traits_get(m->type);
    const char *tname = tr ? tr->name : "unknown";
    if (!m->w || !m->y)
        return pg_fail(PG_ERR_ARG, "matmul: NULL %s", !m->w ? "weights" : "y");
    if (m->rows <= 0 || cols <= 0 || ntok <= 0)
        return pg_fail(PG_ERR_ARG, "matmul: %s weights (%lld x %lld) with ntok=%lld: sizes must be >= 1",
                       tname, (long long)m->rows, (long long)cols, (long long)ntok);
    if (!tr || pg_act_format_of(m->type) < 0 || !k->gemm[m->type].fn)
        return pg_fail(PG_ERR_UNSUPPORTED, "matmul: weight type %s (%d) is not supported", tname, m->type);
    if (cols % tr->block_size != 0)
        return pg_fail(PG_ERR_ARG, "matmul: %s weights (%lld x %lld): cols must be a multiple of %lld",
                       tname, (long long)m->rows, (long long)cols, (long long)tr->block_size);
    size_t ldw = (size_t)pg_type_row_bytes(m->type, cols), ldx = pg_act_row_bytes(pg_act_format_of(m->type), cols);
    uint64_t tmp;
    if (pg_mul_overflow((uint64_t)m->rows, ldw, &tmp) || pg_mul_overflow((uint64_t)ntok, ldx, &tmp) ||
        pg_mul_overflow((uint64_t)ntok, (uint64_t)m->rows * 4, &tmp))
        return pg_fail(PG_ERR_ARG, "matmul: %s weights (%lld x %lld) with ntok=%lld: sizes overflow",
                       tname, (long long)m->rows, (long long)cols, (long long)ntok);
    return PG_OK;
}

/* Several products of one input, y_i = x @ W_i^T, in one dispatch: the
 * activations are converted once per format, and the threads take chunks of
 * all the products from one counter (fewer dispatches, and the tail of one
 * product overlaps the others).  Results equal separate pg_matmul calls. */
PG_API pg_status pg_matmul_group(pg_pool *pool, const pg_mm_out *mats, int n_mats, int64_t cols, const float *x,
                                 int64_t ntok) {
    if (!pool || !x || !mats)
        return pg_fail(PG_ERR_ARG, "matmul: NULL %s", !pool ? "pool" : !x ? "x" : "products");
    if (n_mats < 1 || n_mats > PG_MM_GROUP_MAX)
        return pg_fail(PG_ERR_ARG, "matmul: %d products in a group (1..%d)", n_mats, PG_MM_GROUP_MAX);
    const pg_kernels *k = pg_kernels_get();
    for (int i = 0; i < n_mats; i++) PG_TRY(check_product(k, &mats[i], cols, ntok));

    pg_pool_lock(pool);
    const int nth = pg_pool_size(pool);
    uint64_t bytes = 0;
    for (int i = 0; i < n_mats; i++) bytes += (uint64_t)mats[i].rows * (uint64_t)pg_type_row_bytes(mats[i].type, cols);
    const int serial = bytes * (uint64_t)ntok < PG_MM_SERIAL_BYTES;

    /* Scratch: per activation format its (ntok, ldx) rows; per panel layout its panels;
     * then (nth, work_bytes) kernel work. */
    size_t act_off[PG_ACT_COUNT], pan_off[PG_MM_GROUP_MAX], total = 0, work_bytes = 0;
    int act_used[PG_ACT_COUNT] = {0};
    for (int i = 0; i < n_mats; i++) {
        const pg_gemm_kernel *kern = &k->gemm[mats[i].type];
        int fmt = pg_act_format_of(mats[i].type);
        if (fmt != PG_ACT_F32 && !act_used[fmt]) {
            act_used[fmt] = 1;
            act_off[fmt] = total;
            total += (size_t)ntok * pg_act_row_bytes(fmt, cols);
        }
        if (kern->work) work_bytes = PG_MAX(work_bytes, (kern->work(cols) + 63) & ~(size_t)63);
    }
    for (int i = 0; i < n_mats; i++) {          /* panel layouts: shared by products with the same regrouping */
        const pg_gemm_kernel *kern = &k->gemm[mats[i].type];
        pan_off[i] = (size_t)-1;
        if (!(kern->pfn && ntok >= kern->panel_cols)) continue;
        for (int e = 0; e < i; e++)
            if (pan_off[e] != (size_t)-1 && k->gemm[mats[e].type].to_panel == kern->to_panel &&
                pg_act_format_of(mats[e].type) == pg_act_format_of(mats[i].type))
                pan_off[i] = pan_off[e];
        if (pan_off[i] == (size_t)-1) {
            pan_off[i] = total;
            total += (size_t)((ntok + kern->panel_cols - 1) / kern->panel_cols) * kern->panel_bytes(cols);
        }
    }
    uint8_t *buf = NULL;
    if (total + work_bytes > 0) {
        buf = pg_pool_scratch(pool, total + (size_t)nth * work_bytes);
        if (!buf) {
            pg_pool_unlock(pool);
            return pg_fail(PG_ERR_NOMEM, "matmul: no memory for %lld activation rows of %lld", (long long)ntok,
                           (long long)cols);
        }
    }
    for (int fmt = 0; fmt < PG_ACT_COUNT; fmt++) {
        if (!act_used[fmt]) continue;
        act_job aj = {k->act[fmt], x, buf + act_off[fmt], pg_act_row_bytes(fmt, cols), cols, ntok};
        if (ntok >= 4 && nth > 1 && !serial) pg_pool_run_locked(pool, act_worker, &aj);
        else act_worker(&aj, 0, 1);
    }
    for (int i = 0; i < n_mats; i++) {
        if (pan_off[i] == (size_t)-1) continue;
        int e = 0;
        while (pan_off[e] != pan_off[i]) e++;
        if (e < i) continue;                    /* made for an earlier product */
        const pg_gemm_kernel *kern = &k->gemm[mats[i].type];
        int fmt = pg_act_format_of(mats[i].type);
        panel_job pj = {kern->to_panel, buf + act_off[fmt], pg_act_row_bytes(fmt, cols), buf + pan_off[i],
                        kern->panel_bytes(cols), cols, ntok, kern->panel_cols};
        if (nth > 1 && !serial) pg_pool_run_locked(pool, panel_worker, &pj);
        else panel_worker(&pj, 0, 1);
    }

    mm_job j;
    memset(&j, 0, sizeof j);
    j.n_parts = n_mats;
    j.n = cols;
    j.ntok = ntok;
    j.work = work_bytes ? buf + total : NULL;
    j.work_bytes = work_bytes;
    for (int i = 0; i < n_mats; i++) {
        const pg_gemm_kernel *kern = &k->gemm[mats[i].type];
        int fmt = pg_act_format_of(mats[i].type);
        mm_part *q = &j.part[i];
        int panels = pan_off[i] != (size_t)-1;
        q->gemm = panels ? kern->pfn : kern->fn;
        q->panel_cols = panels ? kern->panel_cols : 0;
        q->w = mats[i].w;
        q->ldw = (size_t)pg_type_row_bytes(mats[i].type, cols);
        q->x = panels ? buf + pan_off[i] : fmt == PG_ACT_F32 ? (const uint8_t *)x : buf + act_off[fmt];
        q->ldx = panels ? kern->panel_bytes(cols) : fmt == PG_ACT_F32 ? (size_t)cols * 4 : pg_act_row_bytes(fmt, cols);
        q->y = mats[i].y;
        q->rows = mats[i].rows;
        if (panels) plan_chunks(q, ntok, serial ? 1 : nth, kern->pmr, 2 * kern->panel_cols,
                                panel_tokens(kern->panel_bytes(cols), kern->panel_cols));
        else plan_chunks(q, ntok, serial ? 1 : nth, kern->mr, kern->nr, 64);
        q->first = j.n_chunks;
        j.n_chunks += q->n_chunks;
    }
    atomic_init(&j.next, 0);
    if (serial || nth == 1 || j.n_chunks == 1) mm_worker(&j, 0, 1);
    else pg_pool_run_locked(pool, mm_worker, &j);
    pg_pool_unlock(pool);
    return PG_OK;
}

PG_API pg_status pg_matmul(pg_pool *pool, int wtype, const void *w, int64_t rows, int64_t cols,
                           const float *x, int64_t ntok, float *y) {
    pg_mm_out m = {wtype, w, rows, y};
    return pg_matmul_group(pool, &m, 1, cols, x, ntok);
}

/* ---- read-bandwidth probe for the benchmark ---- */

typedef struct {
    uint64_t (*read)(const void *p, size_t bytes);
    const uint8_t *buf;      /* (bytes) 64-byte aligned */
    size_t bytes;
    uint64_t sums[256];
} read_job;

static void read_worker(void *p, int ith, int nth) {
    read_job *j = p;
    size_t lines = j->bytes / 64;
    size_t l0 = lines * ith / nth, l1 = lines * (ith + 1) / nth;
    j->sums[ith] = j->read(j->buf + 64 * l0, 64 * (l1 - l0));
}

PG_API uint64_t pg_mem_read(pg_pool *pool, const void *buf, size_t bytes) {
    if (!pool || !buf || ((uintptr_t)buf & 63)) return 0;
    read_job j;
    j.read = pg_kernels_get()->mem_read;
    j.buf = buf;
    j.bytes = bytes;
    memset(j.sums, 0, sizeof j.sums);
    pg_pool_run(pool, read_worker, &j);
    uint64_t s = 0;
    for (int i = 0; i < 256; i++) s += j.sums[i];
    return s;
}
