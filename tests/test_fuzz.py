"""The libFuzzer harnesses of csrc/fuzz/ (GGUF reader and model loader, llamafile ZIP reader,
tokenizer, detokenizer), built with ASan + UBSan by ci/fuzz.sh and run briefly each: any crash,
leak, undefined behaviour or broken API promise (FUZZ_CHECK) is a finding and fails the test.

Every run replays the committed seed corpus first (csrc/fuzz/corpus/<harness>/, which also
keeps the inputs of past findings), then mutates for PYGEMMA_FUZZ_SECONDS (default 15) seconds.
Skips when no clang with libFuzzer is installed (.ci/run installs one).  Long runs:
ci/fuzz.sh -r 1000000 gguf (see csrc/fuzz/README.md)."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "ci", "fuzz.sh")
SECONDS = int(os.environ.get("PYGEMMA_FUZZ_SECONDS", "15"))


@pytest.fixture(scope="module")
def fuzz_out(tmp_path_factory):
    """The harnesses, built once into a temporary folder."""
    check = subprocess.run([SCRIPT, "--check"], capture_output=True, text=True)
    if check.returncode == 77:
        pytest.skip("no clang with libFuzzer (apt-get install clang): " + check.stderr.strip())
    assert check.returncode == 0, check.stderr
    out = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "FUZZ_OUT": str(out)}
    build = subprocess.run([SCRIPT, "--build"], capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def run_harness(fuzz_out, harness, vocab=None):
    env = {**os.environ, "FUZZ_OUT": str(fuzz_out)}
    if vocab:
        env["PYGEMMA_FUZZ_VOCAB"] = vocab
    r = subprocess.run([SCRIPT, "-t", str(SECONDS), harness], capture_output=True, text=True, env=env,
                       timeout=SECONDS + 300)
    log = os.path.join(fuzz_out, "logs", harness + ".log")
    tail = open(log, encoding="utf-8", errors="replace").read()[-6000:] if os.path.exists(log) else ""
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n--- log tail ---\n{tail}"
    m = re.search(r"executions +(\d+) .* findings (\d+)", r.stdout)
    assert m, r.stdout
    assert int(m.group(2)) == 0
    assert int(m.group(1)) > len(os.listdir(os.path.join(ROOT, "csrc", "fuzz", "corpus", harness))), \
        "the harness ran no more than its seeds"


@pytest.mark.parametrize("harness", ["gguf", "zip"])
def test_file_readers(fuzz_out, harness):
    run_harness(fuzz_out, harness)


@pytest.mark.parametrize("harness", ["tokenize", "detokenize"])
def test_tokenizer(fuzz_out, harness, model_path):
    run_harness(fuzz_out, harness, vocab=model_path)


def test_request_validation(fuzz_out, model_path):
    """The server's request validation (csrc/fuzz/fuzz_request.py, atheris): every body is an
    APIError with a short message, or accepted with parameters the C sampler takes."""
    pytest.importorskip("atheris")
    run_harness(fuzz_out, "request", vocab=model_path)
