/* dequant.c -- exact scalar dequantization of every supported type.
 * (placeholder: owned by the quantization work; returns no functions yet) */
#include "types.h"

pg_dequant_row_fn pg_dequant_fn(int type) { (void)type; return NULL; }
