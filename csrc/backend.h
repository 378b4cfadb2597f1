/* backend.h -- the GPU library seen from the C core (internal).
 *
 * A GPU library is a shared object built from kernels/ (see kernels/pg_gpu_abi.h for the
 * contract).  pg_backend_open() dlopen()s it once per path and process -- libraries are
 * never unloaded, since GPU runtimes do not survive dlclose() reliably -- checks the ABI
 * version and keeps its function table. */
#ifndef PG_BACKEND_H
#define PG_BACKEND_H

#include "internal.h"
#include "../kernels/pg_gpu_abi.h"

typedef struct pg_backend {
    char path[4096];
    void *handle;                   /* dlopen handle */
    const pg_gpu_backend *t;        /* the library's table */
} pg_backend;

/* Load (or find already loaded) the library at `path`.  PG_ERR_GPU naming the path and the
 * reason: not loadable (dlerror), no pg_gpu_backend_v1, entry failed, ABI version mismatch. */
pg_status pg_backend_open(const char *path, const pg_backend **out);

/* Turn a library status into a pg_status with pg_fail(), the message being
 * "<what>: <library's last_error>".  PG_OK stays PG_OK. */
pg_status pg_backend_fail(const pg_backend *b, int status, const char *what);

/* "NAME (79.2 GiB)" of device 0, or PG_ERR_GPU. */
pg_status pg_backend_device(const pg_backend *b, pg_gpu_device_info *info);

#endif
