/* internal.h -- helpers shared by the C core's translation units (not public). */
#ifndef PG_INTERNAL_H
#define PG_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include "pygemma.h"

/* Record a formatted message for pg_last_error() and return `status`.
 * Usage: return pg_fail(PG_ERR_FORMAT, "tensor '%s': offset %llu past end", ...); */
pg_status pg_fail(pg_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with more context: "ctx: old message". */
pg_status pg_fail_prefix(pg_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pg_clear_error(void);

#define PG_TRY(expr) do { pg_status _s = (expr); if (_s != PG_OK) return _s; } while (0)

#define PG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* 64-byte aligned allocation (for SIMD loads); free with pg_free_aligned. */
void *pg_malloc_aligned(size_t size);
void pg_free_aligned(void *p);

/* Checked multiplication of sizes: returns 0 and sets *out on success,
 * -1 on overflow. */
static inline int pg_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

#endif
