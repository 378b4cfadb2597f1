/* kernels_neon.c -- (being written) */
#include "kernels.h"
int pg_kernels_fill_neon(pg_kernels *k, int dotprod) { (void)k; (void)dotprod; return 0; }
