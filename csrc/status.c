/* status.c -- per-thread error messages and small shared utilities. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PG_ERRBUF 1024

static _Thread_local char g_error[PG_ERRBUF];

PG_API const char *pg_last_error(void) { return g_error; }

PG_API const char *pg_version(void) { return "0.1.0"; }

void pg_clear_error(void) { g_error[0] = '\0'; }

pg_status pg_fail(pg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return status;
}

pg_status pg_fail_prefix(pg_status status, const char *fmt, ...) {
    char prefix[PG_ERRBUF], old[PG_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_error, sizeof old);
    snprintf(g_error, sizeof g_error, "%s: %s", prefix, old);
    return status;
}

void *pg_malloc_aligned(size_t size) {
    void *p = NULL;
    if (size == 0) size = 64;
    if (posix_memalign(&p, 64, (size + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void pg_free_aligned(void *p) { free(p); }
