/* quantize.c -- llama.cpp-compatible reference quantizers.
 * (placeholder: owned by the quantization work; returns no functions yet) */
#include "types.h"

pg_quantize_row_fn pg_quantize_fn(int type) { (void)type; return NULL; }
