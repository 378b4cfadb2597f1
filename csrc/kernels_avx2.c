/* kernels_avx2.c -- (being written) */
#include "kernels.h"
int pg_kernels_fill_avx2(pg_kernels *k) { (void)k; return 0; }
