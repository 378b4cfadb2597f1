/* matmul.c -- (placeholder: owned by the kernel work) */
#include "internal.h"

struct pg_pool { int n; };

PG_API pg_status pg_pool_create(int n_threads, pg_pool **out) {
    (void)n_threads; *out = NULL;
    return pg_fail(PG_ERR_UNSUPPORTED, "thread pool not built yet");
}
PG_API void pg_pool_free(pg_pool *pool) { (void)pool; }
PG_API int pg_pool_size(const pg_pool *pool) { return pool ? pool->n : 0; }
PG_API pg_status pg_matmul(pg_pool *pool, int wtype, const void *w, int64_t rows, int64_t cols,
                           const float *x, int64_t ntok, float *y) {
    (void)pool; (void)wtype; (void)w; (void)rows; (void)cols; (void)x; (void)ntok; (void)y;
    return pg_fail(PG_ERR_UNSUPPORTED, "matmul not built yet");
}
