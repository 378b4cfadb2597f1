/* threadpool.h -- the persistent worker pool behind pg_pool (internal API).
 *
 * A pool of n threads: the caller of pg_pool_run is thread 0 and n - 1
 * persistent pthreads are threads 1..n-1.  Workers spin briefly after each job
 * (so the ~150 small matmuls of a decode step dispatch in well under a
 * microsecond each) and then sleep on a condition variable.
 *
 * Thread safety: a pool runs one job at a time.  pg_pool_run and pg_matmul
 * take the pool's lock, so concurrent callers are serialized, never mixed.
 * The scratch buffer belongs to whoever holds the pool: pg_matmul uses it
 * (and may grow, i.e. move it) for the quantized activations, so a pointer
 * from pg_pool_scratch is valid only until the next pg_matmul or
 * pg_pool_scratch on that pool.  One pg_matmul at a time per pool; use one
 * pool per thread that runs models concurrently.  Never call pg_pool_run /
 * pg_matmul on a pool from inside one of its jobs (it would deadlock). */
#ifndef PG_THREADPOOL_H
#define PG_THREADPOOL_H

#include "internal.h"

typedef void (*pg_pool_fn)(void *ctx, int ith, int nth);

/* Run fn(ctx, ith, nth) once for every ith = 0 .. nth-1 and return when all
 * have finished; memory written inside fn is visible to the caller afterwards.
 * Share 0 runs on the caller, share i normally on worker i, but the caller
 * also runs the shares of workers that have not started by the time it is
 * done with its own (preempted or sleeping threads), so fn must not wait for
 * other shares (no barriers inside fn).  Splitting work dynamically (an atomic
 * counter of chunks) balances best. */
void pg_pool_run(pg_pool *pool, pg_pool_fn fn, void *ctx);

/* A 64-byte aligned buffer of at least `bytes`, owned by the pool and reused
 * (grown, contents not kept) across calls; NULL if the allocation fails. */
void *pg_pool_scratch(pg_pool *pool, size_t bytes);

/* For pg_matmul: hold the pool across several runs that share the scratch
 * buffer.  pg_pool_run_locked must be called between lock and unlock. */
void pg_pool_lock(pg_pool *pool);
void pg_pool_unlock(pg_pool *pool);
void pg_pool_run_locked(pg_pool *pool, pg_pool_fn fn, void *ctx);

#endif
