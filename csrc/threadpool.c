/* threadpool.c -- persistent pthread pool with spin-then-sleep dispatch.
 *
 * Dispatch protocol (one job at a time, under run_lock), job generation g:
 *   caller: write fn/ctx, remaining = n-1, bump `gen` to g (seq_cst), wake
 *           sleepers if any, run share 0, then take over every share that no
 *           worker has claimed yet, and finally wait until remaining == 0.
 *   worker: wait until `gen` changes (spin for spin_ns, then sleep on `wake`),
 *           claim its share by CAS of claim[ith] to g, run it, decrement
 *           remaining.  A failed claim means the caller ran the share: the
 *           worker touches nothing of that job.
 * So the caller never waits for a worker that has not started (preempted or
 * asleep on a busy machine), only for shares in progress.  A successful claim
 * implies the job is not finished (its share is missing), so fn/ctx are still
 * that job's.  The sleep path cannot lose a wake-up: a worker announces itself
 * in `sleepers` (seq_cst) and re-checks `gen` under sleep_lock before waiting,
 * while the caller bumps `gen` before reading `sleepers` and broadcasts under
 * the same lock. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threadpool.h"

#define PG_POOL_MAX_THREADS 256
#define PG_SPIN_NS_DEFAULT 200000      /* workers spin 200 us before sleeping */
#define PG_JOIN_SPIN_NS 30000          /* the caller spins 30 us for stragglers, then yields */

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct {
    pg_pool *pool;
    int ith;
    _Alignas(64) atomic_uint claim;  /* generation whose share `ith` was taken (by anyone) */
} worker_arg;

struct pg_pool {
    int n;                          /* threads, the caller included */
    int n_started;                  /* workers actually created */
    pthread_t *threads;             /* (n - 1) workers */
    worker_arg *args;               /* (n - 1), 64-byte aligned; args[i] is thread i + 1 */
    long spin_ns;
    pthread_mutex_t run_lock;       /* serializes jobs and scratch use */

    pg_pool_fn fn;                  /* current job, published by `gen` */
    void *ctx;

    /* Each hot atomic on its own cache line: workers poll `gen` while the
     * caller polls `remaining`. */
    _Alignas(64) atomic_uint gen;
    _Alignas(64) atomic_int remaining;
    _Alignas(64) atomic_int sleepers;
    atomic_int stop;
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;

    void *scratch;                  /* (scratch_bytes) 64-byte aligned */
    size_t scratch_bytes;
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Wait until pool->gen != seen; returns the new generation. */
static unsigned wait_job(pg_pool *pool, unsigned seen) {
    unsigned g = atomic_load_explicit(&pool->gen, memory_order_acquire);
    if (g != seen) return g;
    long deadline = now_ns() + pool->spin_ns;
    for (int i = 1;; i++) {
        cpu_relax();
        g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (g != seen) return g;
        if ((i & 63) == 0 && now_ns() > deadline) break;
    }
    pthread_mutex_lock(&pool->sleep_lock);
    atomic_fetch_add(&pool->sleepers, 1);
    while ((g = atomic_load(&pool->gen)) == seen)
        pthread_cond_wait(&pool->wake, &pool->sleep_lock);
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->sleep_lock);
    return g;
}

/* Take share `a->ith` of job g; 0 if someone already has.  Claims only move
 * forward: a worker that saw g late must not take a share of a newer job
 * (claim > g), which the caller may already have run. */
static int claim_share(worker_arg *a, unsigned g) {
    unsigned c = atomic_load_explicit(&a->claim, memory_order_relaxed);
    return (int)(c - g) < 0 && atomic_compare_exchange_strong(&a->claim, &c, g);
}

static void *worker_main(void *p) {
    worker_arg *a = p;
    pg_pool *pool = a->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(pool, seen);
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        if (!claim_share(a, seen)) continue;
        pool->fn(pool->ctx, a->ith, pool->n);
        atomic_fetch_sub_explicit(&pool->remaining, 1, memory_order_release);
    }
    return NULL;
}

static void publish(pg_pool *pool) {
    atomic_fetch_add(&pool->gen, 1);                 /* seq_cst: see the header comment */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->sleep_lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->sleep_lock);
    }
}

void pg_pool_run_locked(pg_pool *pool, pg_pool_fn fn, void *ctx) {
    if (pool->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->remaining, pool->n - 1, memory_order_relaxed);
    unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    publish(pool);
    fn(ctx, 0, pool->n);
    /* Shares no worker has started yet: run them here rather than wait. */
    for (int i = 1; i < pool->n; i++) {
        if (!claim_share(&pool->args[i - 1], g)) continue;
        fn(ctx, i, pool->n);
        atomic_fetch_sub_explicit(&pool->remaining, 1, memory_order_relaxed);
    }
    /* Shares in progress normally finish within microseconds; if a worker was
     * preempted (shared machine), yield the core to it instead of burning it. */
    long deadline = 0;
    for (int i = 1; atomic_load_explicit(&pool->remaining, memory_order_acquire) > 0; i++) {
        if (deadline == 0) deadline = now_ns() + PG_JOIN_SPIN_NS;
        if (deadline > 0 && ((i & 63) != 0 || now_ns() < deadline)) {
            cpu_relax();
        } else {
            deadline = -1;
            sched_yield();
        }
    }
}

void pg_pool_lock(pg_pool *pool) { pthread_mutex_lock(&pool->run_lock); }
void pg_pool_unlock(pg_pool *pool) { pthread_mutex_unlock(&pool->run_lock); }

void pg_pool_run(pg_pool *pool, pg_pool_fn fn, void *ctx) {
    pg_pool_lock(pool);
    pg_pool_run_locked(pool, fn, ctx);
    pg_pool_unlock(pool);
}

void *pg_pool_scratch(pg_pool *pool, size_t bytes) {
    if (bytes <= pool->scratch_bytes) return pool->scratch;
    size_t grow = pool->scratch_bytes + pool->scratch_bytes / 2;
    size_t want = bytes > grow ? bytes : grow;
    void *p = pg_malloc_aligned(want);
    if (!p) {
        p = pg_malloc_aligned(bytes);
        want = bytes;
        if (!p) return NULL;
    }
    pg_free_aligned(pool->scratch);
    pool->scratch = p;
    pool->scratch_bytes = want;
    return p;
}

static void stop_workers(pg_pool *pool) {
    if (pool->n_started > 0) {
        atomic_store(&pool->stop, 1);
        publish(pool);
        for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
    }
    pool->n_started = 0;
}

PG_API pg_status pg_pool_create(int n_threads, pg_pool **out) {
    if (!out) return pg_fail(PG_ERR_ARG, "pg_pool_create: out is NULL");
    *out = NULL;
    if (n_threads <= 0) n_threads = pg_cpu_physical_cores();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > PG_POOL_MAX_THREADS)
        return pg_fail(PG_ERR_ARG, "pg_pool_create: %d threads requested, at most %d allowed",
                       n_threads, PG_POOL_MAX_THREADS);
    pg_pool *pool = pg_malloc_aligned(sizeof *pool);
    if (!pool) return pg_fail(PG_ERR_NOMEM, "pg_pool_create: out of memory");
    memset(pool, 0, sizeof *pool);
    pool->n = n_threads;
    pool->spin_ns = PG_SPIN_NS_DEFAULT;
    const char *env = getenv("PYGEMMA_SPIN_US");
    if (env && *env) pool->spin_ns = atol(env) * 1000L;
    if (pool->spin_ns < 0) pool->spin_ns = 0;
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->sleep_lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->remaining, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, 0);
    int nw = n_threads - 1;
    if (nw > 0) {
        pool->threads = calloc((size_t)nw, sizeof *pool->threads);
        pool->args = pg_malloc_aligned((size_t)nw * sizeof *pool->args);
        if (!pool->threads || !pool->args) {
            pg_pool_free(pool);
            return pg_fail(PG_ERR_NOMEM, "pg_pool_create: out of memory for %d threads", n_threads);
        }
    }
    for (int i = 0; i < nw; i++) {
        pool->args[i].pool = pool;
        pool->args[i].ith = i + 1;
        atomic_init(&pool->args[i].claim, 0);
    }
    for (int i = 0; i < nw; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]);
        if (rc != 0) {
            pg_pool_free(pool);
            return pg_fail(PG_ERR_NOMEM, "pg_pool_create: could not start thread %d of %d (%s)",
                           i + 1, n_threads, strerror(rc));
        }
        pool->n_started = i + 1;
    }
    *out = pool;
    return PG_OK;
}

PG_API void pg_pool_free(pg_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->run_lock);      /* wait for a running job */
    stop_workers(pool);
    pthread_mutex_unlock(&pool->run_lock);
    free(pool->threads);
    pg_free_aligned(pool->args);
    pg_free_aligned(pool->scratch);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->sleep_lock);
    pthread_mutex_destroy(&pool->run_lock);
    pg_free_aligned(pool);
}

PG_API int pg_pool_size(const pg_pool *pool) { return pool ? pool->n : 0; }

/* ---- self-test hook: many tiny jobs, each share must run exactly once ---- */

typedef struct {
    atomic_int runs[PG_POOL_MAX_THREADS];   /* (n) times each share ran in this job */
    int spin;                               /* busy work per share */
} selftest_job;

static void selftest_fn(void *p, int ith, int nth) {
    selftest_job *j = p;
    (void)nth;
    atomic_fetch_add_explicit(&j->runs[ith], 1, memory_order_relaxed);
    for (volatile int i = 0; i < j->spin; i++) {
    }
}

PG_API int64_t pg_pool_selftest(pg_pool *pool, int iterations) {
    if (!pool || iterations < 0) return -1;
    int64_t bad = 0;
    selftest_job *j = pg_malloc_aligned(sizeof *j);
    if (!j) return -1;
    for (int it = 0; it < iterations; it++) {
        for (int i = 0; i < pool->n; i++) atomic_init(&j->runs[i], 0);
        j->spin = it % 7 == 0 ? 2000 : it % 3;   /* mostly tiny jobs, a few longer ones */
        pg_pool_run(pool, selftest_fn, j);
        for (int i = 0; i < pool->n; i++)
            if (atomic_load(&j->runs[i]) != 1) bad++;
    }
    pg_free_aligned(j);
    return bad;
}

