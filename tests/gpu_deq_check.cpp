// gpu_deq_check.cpp -- kernels/quant_dot.cuh's device dequantization compiled as plain C++
// (PG_GPU_HOST_TEST), so the CPU tests can compare every type's block layout with the C
// core's reference dequantizer.  deq_row(type, row, out, cols): out (cols) = row dequantized
// group by group, exactly as the mat-vec, tinyBLAS and cuBLAS-dequant kernels see it.
#define PG_GPU_HOST_TEST 1
#include "quant_dot.cuh"

extern "C" int deq_row(int type, const void *row, float *out, long cols) {
    const uint8_t *r = (const uint8_t *)row;
    switch (type) {
#define CASE(T) \
    case T: for (long g = 0; g < cols / 32; g++) deq32<T>(r, g, out + 32 * g); return 0;
        PG_FOR_EACH_TYPE(CASE)
#undef CASE
    default: return -1;
    }
}

extern "C" long row_bytes(int type, long cols) { return (long)pg_gpu_row_bytes(type, cols); }
