/* types.h -- the type-traits table that drives dispatch on tensor types. Internal. */
#ifndef PG_TYPES_H
#define PG_TYPES_H

#include "internal.h"

typedef void (*pg_dequant_row_fn)(const void *src, float *dst, int64_t n);
/* Quantize one row of n floats (n % block == 0); imatrix may be NULL. */
typedef void (*pg_quantize_row_fn)(const float *src, void *dst, int64_t n, const float *imatrix);

typedef struct {
    const char *name;        /* "Q4_K"; NULL for unused numbers */
    int64_t block_size;      /* elements per block */
    int64_t block_bytes;     /* bytes per block */
    int supported;           /* we can dequantize and multiply it */
    pg_dequant_row_fn dequant_row;    /* dequant.c (scalar, exact) */
    pg_quantize_row_fn quantize_row;  /* quantize.c (llama.cpp reference algorithms) */
} pg_type_traits;

/* NULL if `type` is out of range or unused. */
const pg_type_traits *pg_type_traits_get(int type);

/* Provided by dequant.c / quantize.c: fill the function pointers of the table. */
pg_dequant_row_fn pg_dequant_fn(int type);
pg_quantize_row_fn pg_quantize_fn(int type);

#endif
