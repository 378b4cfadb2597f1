/* types.c -- names and block geometry of every GGML type number. */
#include <string.h>

#include "quants.h"
#include "types.h"

/* Geometry of every GGML type, also those we cannot compute with, so that the
 * GGUF reader can validate and list any file.  `supported` marks the types
 * with dequantization and matmul kernels. */
static pg_type_traits g_traits[PG_TYPE_COUNT] = {
    [PG_TYPE_F32]  = {"F32", 1, 4, 1, NULL, NULL},
    [PG_TYPE_F16]  = {"F16", 1, 2, 1, NULL, NULL},
    [PG_TYPE_Q4_0] = {"Q4_0", QK4_0, sizeof(block_q4_0), 1, NULL, NULL},
    [PG_TYPE_Q4_1] = {"Q4_1", QK4_1, sizeof(block_q4_1), 1, NULL, NULL},
    [PG_TYPE_Q5_0] = {"Q5_0", QK5_0, sizeof(block_q5_0), 1, NULL, NULL},
    [PG_TYPE_Q5_1] = {"Q5_1", QK5_1, sizeof(block_q5_1), 1, NULL, NULL},
    [PG_TYPE_Q8_0] = {"Q8_0", QK8_0, sizeof(block_q8_0), 1, NULL, NULL},
    [PG_TYPE_Q8_1] = {"Q8_1", QK8_1, sizeof(block_q8_1), 0, NULL, NULL},
    [PG_TYPE_Q2_K] = {"Q2_K", QK_K, sizeof(block_q2_K), 1, NULL, NULL},
    [PG_TYPE_Q3_K] = {"Q3_K", QK_K, sizeof(block_q3_K), 1, NULL, NULL},
    [PG_TYPE_Q4_K] = {"Q4_K", QK_K, sizeof(block_q4_K), 1, NULL, NULL},
    [PG_TYPE_Q5_K] = {"Q5_K", QK_K, sizeof(block_q5_K), 1, NULL, NULL},
    [PG_TYPE_Q6_K] = {"Q6_K", QK_K, sizeof(block_q6_K), 1, NULL, NULL},
    [PG_TYPE_Q8_K] = {"Q8_K", QK_K, sizeof(block_q8_K), 0, NULL, NULL},
    [16] = {"IQ2_XXS", 256, 66, 0, NULL, NULL},
    [17] = {"IQ2_XS", 256, 74, 0, NULL, NULL},
    [18] = {"IQ3_XXS", 256, 98, 0, NULL, NULL},
    [19] = {"IQ1_S", 256, 50, 0, NULL, NULL},
    [20] = {"IQ4_NL", 32, 18, 0, NULL, NULL},
    [21] = {"IQ3_S", 256, 110, 0, NULL, NULL},
    [22] = {"IQ2_S", 256, 82, 0, NULL, NULL},
    [23] = {"IQ4_XS", 256, 136, 0, NULL, NULL},
    [24] = {"I8", 1, 1, 0, NULL, NULL},
    [25] = {"I16", 1, 2, 0, NULL, NULL},
    [26] = {"I32", 1, 4, 0, NULL, NULL},
    [27] = {"I64", 1, 8, 0, NULL, NULL},
    [28] = {"F64", 1, 8, 0, NULL, NULL},
    [29] = {"IQ1_M", 256, 56, 0, NULL, NULL},
    [PG_TYPE_BF16] = {"BF16", 1, 2, 1, NULL, NULL},
    [34] = {"TQ1_0", 256, 54, 0, NULL, NULL},
    [35] = {"TQ2_0", 256, 66, 0, NULL, NULL},
    [39] = {"MXFP4", 32, 17, 0, NULL, NULL},
    [40] = {"NVFP4", 64, 36, 0, NULL, NULL},
    [41] = {"Q1_0", 128, 18, 0, NULL, NULL},
};

static int g_traits_ready;

static void traits_init(void) {
    /* Benign race: every thread writes the same pointers. */
    if (__atomic_load_n(&g_traits_ready, __ATOMIC_ACQUIRE)) return;
    for (int t = 0; t < PG_TYPE_COUNT; t++) {
        if (!g_traits[t].name || !g_traits[t].supported) continue;
        g_traits[t].dequant_row = pg_dequant_fn(t);
        g_traits[t].quantize_row = pg_quantize_fn(t);
    }
    __atomic_store_n(&g_traits_ready, 1, __ATOMIC_RELEASE);
}

const pg_type_traits *pg_type_traits_get(int type) {
    if (type < 0 || type >= PG_TYPE_COUNT || !g_traits[type].name) return NULL;
    traits_init();
    return &g_traits[type];
}

PG_API const char *pg_type_name(int type) {
    const pg_type_traits *t = pg_type_traits_get(type);
    return t ? t->name : NULL;
}

PG_API int pg_type_supported(int type) {
    const pg_type_traits *t = pg_type_traits_get(type);
    return t && t->supported;
}

PG_API int pg_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < PG_TYPE_COUNT; t++)
        if (g_traits[t].name && strcmp(g_traits[t].name, name) == 0) return t;
    return -1;
}

PG_API int64_t pg_type_block_size(int type) {
    const pg_type_traits *t = pg_type_traits_get(type);
    return t ? t->block_size : 0;
}

PG_API int64_t pg_type_block_bytes(int type) {
    const pg_type_traits *t = pg_type_traits_get(type);
    return t ? t->block_bytes : 0;
}

PG_API int64_t pg_type_row_bytes(int type, int64_t n) {
    const pg_type_traits *t = pg_type_traits_get(type);
    if (!t || n < 0 || n % t->block_size != 0) return -1;
    return n / t->block_size * t->block_bytes;
}

PG_API pg_status pg_dequantize(int type, const void *src, float *dst, int64_t n) {
    const pg_type_traits *t = pg_type_traits_get(type);
    if (!t) return pg_fail(PG_ERR_ARG, "unknown tensor type %d", type);
    if (!t->supported || !t->dequant_row)
        return pg_fail(PG_ERR_UNSUPPORTED, "tensor type %s is not supported", t->name);
    if (n < 0 || n % t->block_size != 0)
        return pg_fail(PG_ERR_ARG, "%lld elements is not a multiple of the %s block size %lld",
                       (long long)n, t->name, (long long)t->block_size);
    t->dequant_row(src, dst, n);
    return PG_OK;
}

PG_API pg_status pg_quantize(int type, const float *src, void *dst, int64_t nrows, int64_t ncols,
                             const float *imatrix) {
    const pg_type_traits *t = pg_type_traits_get(type);
    if (!t) return pg_fail(PG_ERR_ARG, "unknown tensor type %d", type);
    if (!t->supported || !t->quantize_row)
        return pg_fail(PG_ERR_UNSUPPORTED, "cannot quantize to %s", t->name);
    if (nrows < 0 || ncols <= 0 || ncols % t->block_size != 0)
        return pg_fail(PG_ERR_ARG, "row length %lld is not a multiple of the %s block size %lld",
                       (long long)ncols, t->name, (long long)t->block_size);
    int64_t row_bytes = ncols / t->block_size * t->block_bytes;
    for (int64_t r = 0; r < nrows; r++)
        t->quantize_row(src + r * ncols, (char *)dst + r * row_bytes, ncols, imatrix);
    return PG_OK;
}
