/* backend.c -- loading GPU libraries (dlopen), their ABI check, and the GPU probe.
 * The model side (uploading weights, running layers) is in model_gpu.c. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

#define PG_MAX_BACKENDS 8

static pg_backend g_backends[PG_MAX_BACKENDS];
static int g_n_backends;
static pthread_mutex_t g_backend_lock = PTHREAD_MUTEX_INITIALIZER;

static int host_dequantize(int type, const void *src, float *dst, int64_t n) {
    return (int)pg_dequantize(type, src, dst, n);
}

static const pg_gpu_host g_host = {PG_GPU_ABI_VERSION, host_dequantize};

static pg_status open_locked(const char *path, const pg_backend **out) {
    for (int i = 0; i < g_n_backends; i++)
        if (strcmp(g_backends[i].path, path) == 0) { *out = &g_backends[i]; return PG_OK; }
    if (g_n_backends == PG_MAX_BACKENDS)
        return pg_fail(PG_ERR_GPU, "too many GPU libraries loaded (%d)", PG_MAX_BACKENDS);
    if (strlen(path) >= sizeof g_backends[0].path)
        return pg_fail(PG_ERR_ARG, "GPU library path is too long");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return pg_fail(PG_ERR_GPU, "cannot load GPU library '%s': %s", path, e ? e : "unknown error");
    }
    pg_gpu_entry_fn entry;
    void *sym = dlsym(h, PG_GPU_ENTRY);
    memcpy(&entry, &sym, sizeof entry);   /* object pointer -> function pointer without a warning */
    const pg_gpu_backend *t = NULL;
    pg_status st = PG_OK;
    if (!sym) {
        st = pg_fail(PG_ERR_GPU, "'%s' is not a pygemma GPU library (no symbol %s)", path, PG_GPU_ENTRY);
    } else {
        int rc = entry(&g_host, &t);
        if (rc != 0 || !t)
            st = pg_fail(PG_ERR_GPU, "GPU library '%s' failed to start (status %d)", path, rc);
        else if (t->abi_version != PG_GPU_ABI_VERSION)
            st = pg_fail(PG_ERR_GPU,
                         "GPU library '%s' was built for GPU ABI version %u, this pygemma needs %u: "
                         "rebuild it (pygemma --recompile)",
                         path, t->abi_version, PG_GPU_ABI_VERSION);
        else if (t->struct_size < sizeof(pg_gpu_backend))
            st = pg_fail(PG_ERR_GPU, "GPU library '%s' has a short function table (%u < %zu bytes)", path,
                         t->struct_size, sizeof(pg_gpu_backend));
    }
    if (st != PG_OK) {
        dlclose(h);   /* nothing of it ran on a device yet */
        return st;
    }
    pg_backend *b = &g_backends[g_n_backends++];
    strcpy(b->path, path);
    b->handle = h;
    b->t = t;
    *out = b;
    return PG_OK;
}

pg_status pg_backend_open(const char *path, const pg_backend **out) {
    if (!path || !*path || !out) return pg_fail(PG_ERR_ARG, "pg_backend_open: no library path");
    pthread_mutex_lock(&g_backend_lock);
    pg_status st = open_locked(path, out);
    pthread_mutex_unlock(&g_backend_lock);
    return st;
}

pg_status pg_backend_fail(const pg_backend *b, int status, const char *what) {
    if (status == 0) return PG_OK;
    const char *msg = b->t->last_error ? b->t->last_error() : NULL;
    if (!msg || !*msg) msg = "unknown error";
    pg_status st;
    switch (status) {
    case PG_ERR_UNSUPPORTED: case PG_ERR_NOMEM: case PG_ERR_ARG: case PG_ERR_GPU: st = (pg_status)status; break;
    default: st = PG_ERR_GPU; break;
    }
    return pg_fail(st, "%s: %s", what, msg);
}

pg_status pg_backend_device(const pg_backend *b, pg_gpu_device_info *info) {
    memset(info, 0, sizeof *info);
    return pg_backend_fail(b, b->t->device_info(0, info), "GPU device");
}

/* CDEF: pg_gpu_probe */
PG_API pg_status pg_gpu_probe(const char *library, char *info, size_t cap) {
    if (info && cap) info[0] = 0;
    const pg_backend *b;
    PG_TRY(pg_backend_open(library, &b));
    pg_gpu_device_info d;
    PG_TRY(pg_backend_device(b, &d));
    if (info && cap)
        snprintf(info, cap, "%s (%.1f GiB, %.1f GiB free), compute %d.%d, %d SMs, %s, %s", d.name,
                 (double)d.total_bytes / (1u << 30), (double)d.free_bytes / (1u << 30), d.cc_major, d.cc_minor,
                 d.n_sm, d.runtime, d.blas);
    return PG_OK;
}
