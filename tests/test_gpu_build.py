"""The GPU build step (pygemma/gpu): build.ninja, cache keying and reuse, atomic publish,
concurrent builders, --nocompile, progress and the CLI -- with a fake nvcc/hipcc
(tests/fake_gpu_compiler.py) -- plus real nvcc / hipcc compiles where they are installed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

from pygemma import cli
from pygemma.errors import GPUBuildError, GPUError
from pygemma.gpu import builder, choose, hip_devlibs, ninja_file, plan as plan_mod, sources, targets, toolkit
from pygemma.gpu.builder import BuildOptions, build_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_gpu_compiler.py")

KERNEL_A = '#include "common.h"\n__global__ void a(float *y) { y[0] = PG_ONE; }\n'
KERNEL_B = '__global__ void b(float *y) { y[0] = 2; }\nextern "C" int pg_gpu_backend_v1(void) { return 1; }\n'
COMMON_H = "#define PG_ONE 1.0f\n"


# ---- fixtures -------------------------------------------------------------------------
@pytest.fixture
def kernels(tmp_path):
    d = tmp_path / "kernels"
    d.mkdir()
    (d / "a.cu").write_text(KERNEL_A)
    (d / "b.cu").write_text(KERNEL_B)
    (d / "common.h").write_text(COMMON_H)
    return d


@pytest.fixture
def fake(tmp_path, kernels, monkeypatch):
    """A fake nvcc and hipcc first on PATH, an empty cache, and the test kernels."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("nvcc", "hipcc"):
        install_fake(bindir / name)
    # a toolkit root beside the fake bin/, so no process looks further (/usr/local/cuda)
    (tmp_path / "include" / "hip").mkdir(parents=True)
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    (tmp_path / "include" / "hip" / "hip_runtime.h").write_text("")
    log = tmp_path / "calls.jsonl"
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYGEMMA_KERNELS_DIR": str(kernels), "FAKE_GPU_LOG": str(log)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("CUDA_PATH", "CUDA_HOME", "HIP_PATH", "ROCM_PATH", "FAKE_GPU_SLEEP", "FAKE_GPU_FAIL"):
        monkeypatch.delenv(k, raising=False)
    # Nothing from this machine's real toolkits (/usr/local/cuda) leaks into the fake one.
    monkeypatch.setitem(toolkit.COMPILERS, "cuda", ("nvcc", ("CUDA_PATH", "CUDA_HOME"), []))
    monkeypatch.setitem(toolkit.COMPILERS, "hip", ("hipcc", ("HIP_PATH", "ROCM_PATH"), []))

    class Fake:
        pass
    f = Fake()
    f.bindir, f.log, f.kernels, f.env = bindir, log, kernels, env
    f.cache = tmp_path / "cache" / "pygemma"

    def calls(kind=None):
        if not log.exists():
            return []
        out = [json.loads(line) for line in log.read_text().splitlines()]
        if kind == "compile":
            out = [c for c in out if "-c" in c["argv"]]
        elif kind == "link":
            out = [c for c in out if "-shared" in c["argv"]]
        return out

    def compiled():
        return sorted(os.path.basename(c["argv"][c["argv"].index("-c") + 1]) for c in calls("compile"))

    f.calls, f.compiled = calls, compiled
    return f


def install_fake(path):
    """The fake compiler at `path`, run by this Python (so PATH may hold nothing else)."""
    with open(FAKE) as f:
        body = f.read().split("\n", 1)[1]
    path.write_text(f"#!{sys.executable}\n" + body)
    path.chmod(0o755)


def only_fake_on_path(fake, monkeypatch):
    """PATH with the fake tools alone: no real nvcc/hipcc of this machine is found."""
    monkeypatch.setenv("PATH", str(fake.bindir))


def quiet(**kw):
    return BuildOptions(log=False, **kw)


def fake_toolkit(backend="cuda", blas=False):
    if backend == "cuda":
        return toolkit.Toolkit("cuda", "/opt/cuda/bin/nvcc", "12.4.131", "/opt/cuda",
                               "/opt/cuda/include" if blas else "",
                               ("-L/opt/cuda/lib64", "-lcublas", "-lcublasLt") if blas else (),
                               ("/opt/cuda/lib64",))
    return toolkit.Toolkit("hip", "/opt/rocm/bin/hipcc", "6.1.40091", "", "", (), ())


# ---- build.ninja ----------------------------------------------------------------------
def test_build_ninja_cuda_per_arch_gencode_and_tinyblas(kernels):
    p = plan_mod.make_plan(fake_toolkit(), ("sm_80", "sm_90"), str(kernels))
    text = ninja_file.render(p)
    assert "-gencode arch=compute_80,code=sm_80" in text
    assert "-gencode arch=compute_90,code=sm_90" in text
    assert "-gencode arch=compute_90,code=compute_90" in text      # PTX of the newest for newer GPUs
    assert "-DPG_GPU_TINYBLAS=1" in text and "PG_GPU_CUBLAS" not in text and "-lcublas" not in text
    for flag in ("-O3", "-std=c++17", "-Xcompiler -fPIC", "-Xcompiler -fvisibility=hidden", "-shared",
                 "-cudart=shared"):
        assert flag in text
    assert "command = $cc $cflags -MD -MF $out.d -c $in -o $out" in text
    assert "depfile = $out.d" in text and "deps = gcc" in text
    # one compile edge per .cu, one link edge over all objects; headers are not compiled
    assert f"build obj/a.o: compile {kernels}/a.cu" in text
    assert f"build obj/b.o: compile {kernels}/b.cu" in text
    assert "common.h" not in text.split("rule link")[1]
    assert "build libpygemma_gpu.so: link obj/a.o obj/b.o" in text
    assert "-Xlinker -rpath=/opt/cuda/lib64" in text


def test_build_ninja_cublas_when_present_and_tinyblas_forced(kernels):
    p = plan_mod.make_plan(fake_toolkit(blas=True), ("sm_86",), str(kernels))
    assert p.blas == "cublas"
    text = ninja_file.render(p)
    assert "-DPG_GPU_CUBLAS=1" in text and "-I/opt/cuda/include" in text
    assert "libs = -L/opt/cuda/lib64 -lcublas -lcublasLt" in text
    forced = plan_mod.make_plan(fake_toolkit(blas=True), ("sm_86",), str(kernels), tinyblas=True)
    assert forced.blas == "tinyblas"
    text = ninja_file.render(forced)
    assert "-DPG_GPU_TINYBLAS=1" in text and "cublas" not in text.split("libs =")[1].split("\n")[0]


def test_build_ninja_hip_flags(kernels):
    p = plan_mod.make_plan(fake_toolkit("hip"), targets.resolve_archs("hip", "gfx1100,gfx90a"), str(kernels))
    text = ninja_file.render(p)
    cflags = text.split("cflags = ")[1].split("\n")[0]
    assert cflags.startswith("-x hip -O3 -std=c++17 -fPIC -fvisibility=hidden -DPG_GPU_HIP=1")
    assert "--offload-arch=gfx1100 --offload-arch=gfx90a" in cflags
    assert "-DPG_GPU_TINYBLAS=1" in cflags
    ldflags = text.split("ldflags = ")[1].split("\n")[0]
    assert ldflags.startswith("-shared -fPIC") and "-x hip" not in ldflags


def test_build_ninja_native_and_quoting(tmp_path):
    d = tmp_path / "dir with space$"
    d.mkdir()
    (d / "k.cu").write_text(KERNEL_B)
    p = plan_mod.make_plan(fake_toolkit(), ("native",), str(d))
    text = ninja_file.render(p)
    assert "-arch=native" in text and "gencode" not in text
    assert "build obj/k.o: compile " + str(d).replace("$", "$$").replace(" ", "$ ") + "/k.cu" in text
    assert "'-I" + str(d).replace("$", "$$") + "'" in text        # shell-quoted, ninja-escaped


def test_hip_device_library_overlay_for_targets_rocm_lacks(tmp_path, kernels):
    """Debian's ROCm 5.2 has no oclc_isa_version_1100.bc: the plan points clang at an overlay."""
    bitcode = tmp_path / "rocm" / "lib" / "x86_64-linux-gnu" / "amdgcn" / "bitcode"
    bitcode.mkdir(parents=True)
    for name in ("ocml.bc", "ockl.bc", "oclc_isa_version_90a.bc", "oclc_isa_version_1030.bc"):
        (bitcode / name).write_bytes(b"BC")
    root = str(tmp_path / "rocm")
    assert hip_devlibs.device_lib_dir(root) == str(bitcode)
    assert hip_devlibs.missing_targets(root, ("gfx1030", "gfx90a")) == []
    assert hip_devlibs.missing_targets(root, ("gfx1100", "gfx90a")) == ["gfx1100"]
    tk = toolkit.Toolkit("hip", "/usr/bin/hipcc", "5.2.21153", root)
    assert "--rocm-device-lib-path=devlibs" in plan_mod.make_plan(tk, ("gfx1100", "gfx90a"), str(kernels)).cflags
    assert not any("rocm-device-lib" in f for f in plan_mod.make_plan(tk, ("gfx90a",), str(kernels)).cflags)
    # the ISA numbers the ROCm device libraries use (oclc_isa_version_90a.bc holds 9010)
    assert [hip_devlibs.isa_version(t) for t in ("gfx90a", "gfx1100", "gfx942", "gfx1030", "gfx906")] == \
        [9010, 11000, 9402, 10300, 9006]


@pytest.mark.parametrize("text,expected", [("sm_80", "sm_80"), ("8.0", "sm_80"), ("90", "sm_90"),
                                           ("compute_90a", "sm_90a"), (" 12.0 ", "sm_120")])
def test_parse_cuda_arch(text, expected):
    assert targets.parse_cuda_arch(text) == expected


@pytest.mark.parametrize("bad", ["sm8", "ampere", "8", "gfx90a"])
def test_parse_cuda_arch_rejects(bad):
    with pytest.raises(ValueError):
        targets.parse_cuda_arch(bad)


def test_arch_detection_from_nvidia_smi_and_rocminfo(fake, monkeypatch):
    smi = fake.bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$1\" in -L) echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)';"
                   "echo 'GPU 1: NVIDIA A100 (UUID: GPU-2)';; *) echo 9.0; echo 8.0;; esac\n")
    smi.chmod(0o755)
    assert targets.resolve_archs("cuda") == ("sm_80", "sm_90")
    assert targets.nvidia_gpus() == ["NVIDIA H100 80GB HBM3", "NVIDIA A100"]
    assert targets.resolve_archs("cuda", "sm_75") == ("sm_75",)           # explicit wins
    # a driver too old for --query-gpu=compute_cap, but a GPU listed: -arch=native
    smi.write_text("#!/bin/sh\ncase \"$1\" in -L) echo 'GPU 0: Tesla V100 (UUID: GPU-3)';; *) exit 2;; esac\n")
    assert targets.resolve_archs("cuda") == ("native",)
    assert targets.arch_flags("cuda", ("native",)) == ["-arch=native"]
    info = fake.bindir / "rocminfo"
    info.write_text("#!/bin/sh\necho '  Name:                    gfx000'\necho '  Name:  gfx90a'\n"
                    "echo '  Name:  gfx1100'\necho '  Name:  gfx90a'\n")
    info.chmod(0o755)
    assert targets.resolve_archs("hip") == ("gfx1100", "gfx90a")
    smi.unlink()
    info.unlink()
    monkeypatch.setattr(targets, "amd_gpu_present", lambda: False)
    monkeypatch.setattr(targets, "nvidia_gpus", lambda: [])
    with pytest.raises(GPUError, match="--gpu-arch"):
        targets.resolve_archs("cuda")
    with pytest.raises(GPUError, match="--gpu-arch"):
        targets.resolve_archs("hip")
    with pytest.raises(GPUError, match="bad CUDA architecture"):
        targets.resolve_archs("cuda", "sm_80,turing")


# ---- toolkit discovery ----------------------------------------------------------------
def test_toolkit_found_on_path_with_version(fake):
    tk = toolkit.find_toolkit("cuda")
    assert tk.compiler == str(fake.bindir / "nvcc") and tk.version == "12.4.131" and not tk.has_blas
    assert toolkit.find_toolkit("hip").version == "6.1.40091"


def test_toolkit_from_cuda_path_with_cublas(fake, tmp_path, monkeypatch):
    (fake.bindir / "nvcc").unlink()
    root = tmp_path / "cuda-12.4"
    for sub in ("bin", "include", "lib64"):
        (root / sub).mkdir(parents=True)
    install_fake(root / "bin" / "nvcc")
    (root / "include" / "cuda_runtime.h").write_text("")
    (root / "lib64" / "libcudart.so.12").write_text("")
    only_fake_on_path(fake, monkeypatch)
    monkeypatch.setenv("CUDA_PATH", str(root))
    tk = toolkit.find_toolkit("cuda")
    assert tk.compiler == str(root / "bin" / "nvcc") and tk.root == str(root) and not tk.has_blas
    (root / "include" / "cublas_v2.h").write_text("")
    (root / "lib64" / "libcublas.so.12").write_text("")
    (root / "lib64" / "libcublasLt.so.12").write_text("")
    tk = toolkit.find_toolkit("cuda")
    assert tk.has_blas and tk.blas_include == str(root / "include")
    lib = str(root / "lib64")
    assert tk.blas_link == (f"-L{lib}", "-l:libcublas.so.12", f"-L{lib}", "-l:libcublasLt.so.12")
    assert os.path.realpath(lib) in tk.lib_dirs


def test_no_compiler_is_a_clear_error(fake, monkeypatch):
    (fake.bindir / "nvcc").unlink()
    only_fake_on_path(fake, monkeypatch)
    with pytest.raises(GPUError, match=r"`nvcc` not found \(looked in PATH, \$CUDA_PATH/bin"):
        build_library("cuda", quiet(archs="sm_80"))


# ---- cache keying -------------------------------------------------------------------
def test_cache_key_follows_sources_and_flags_only(fake, tmp_path):
    def key(**kw):
        return builder.make_plan("cuda", quiet(**dict({"archs": "sm_80"}, **kw))).key()
    k0 = key()
    assert k0.startswith("cuda-sm_80-12.4.131-") and k0 == key()
    (fake.kernels / "b.cu").write_text(KERNEL_B + "// a comment\n")
    k1 = key()
    assert k1 != k0
    (fake.kernels / "common.h").write_text(COMMON_H + "#define PG_TWO 2\n")
    k2 = key()
    assert k2 not in (k0, k1)
    assert key(tinyblas=True) == k2          # no vendor BLAS here: tinyBLAS either way
    assert key(archs="sm_80,sm_90") not in (k2,) and key(archs="sm_90,sm_80") == key(archs="sm_80,sm_90")
    # the same sources elsewhere (a reinstall in another directory): same key
    moved = tmp_path / "elsewhere"
    shutil.copytree(fake.kernels, moved)
    os.environ["PYGEMMA_KERNELS_DIR"] = str(moved)
    assert key() == k2
    # a new toolkit version: new key
    os.environ["FAKE_GPU_VERSION"] = "12.6.20"
    try:
        assert key().startswith("cuda-sm_80-12.6.20-") and key() != k2
    finally:
        del os.environ["FAKE_GPU_VERSION"]


# ---- build, reuse, rebuild ----------------------------------------------------------
def test_build_then_reuse_without_compiling(fake):
    lib = build_library("cuda", quiet(archs="sm_80,sm_90"))
    assert lib.startswith(str(fake.cache)) and lib.endswith("/libpygemma_gpu.so")
    assert os.path.basename(os.path.dirname(lib)).startswith("cuda-sm_80+sm_90-12.4.131-")
    body = open(lib).read()
    assert body.startswith("LIB\nOBJ a.cu ") and "OBJ b.cu " in body
    assert fake.compiled() == ["a.cu", "b.cu"] and len(fake.calls("link")) == 1
    info = json.load(open(os.path.join(os.path.dirname(lib), "build.json")))
    assert info["archs"] == ["sm_80", "sm_90"] and info["blas"] == "tinyblas" and info["toolkit"] == "12.4.131"
    n = len(fake.calls())
    assert build_library("cuda", quiet(archs="sm_80,sm_90")) == lib
    assert [c for c in fake.calls()[n:] if "--version" not in c["argv"]] == []     # nothing compiled


def test_source_change_rebuilds_incrementally(fake):
    lib0 = build_library("cuda", quiet(archs="sm_80"))
    (fake.kernels / "b.cu").write_text(KERNEL_B + "__global__ void c(float *y) {}\n")
    lib1 = build_library("cuda", quiet(archs="sm_80"))
    assert lib1 != lib0 and os.path.exists(lib0)           # a new key; the old build stays usable
    assert fake.compiled() == ["a.cu", "b.cu", "b.cu"]      # only the edited source again
    (fake.kernels / "common.h").write_text("#define PG_ONE 3.0f\n")
    lib2 = build_library("cuda", quiet(archs="sm_80"))
    assert lib2 not in (lib0, lib1)
    assert fake.compiled() == ["a.cu", "a.cu", "b.cu", "b.cu"]   # the header's includer only (depfile)
    assert open(lib2).read() != open(lib1).read()


def test_recompile_rebuilds_everything_in_place(fake):
    lib = build_library("cuda", quiet(archs="sm_80"))
    stamp = os.stat(os.path.join(os.path.dirname(lib), "build.json")).st_ino
    assert build_library("cuda", quiet(archs="sm_80", recompile=True)) == lib
    assert fake.compiled() == ["a.cu", "a.cu", "b.cu", "b.cu"]
    assert os.stat(os.path.join(os.path.dirname(lib), "build.json")).st_ino != stamp
    assert open(lib).read().startswith("LIB\n")
    assert [n for n in os.listdir(os.path.dirname(os.path.dirname(lib))) if n.startswith(".")] == []


def test_nocompile(fake):
    with pytest.raises(GPUError, match="--nocompile.*pygemma --recompile --gpu nvidia"):
        build_library("cuda", quiet(archs="sm_80", nocompile=True))
    assert fake.calls("compile") == []
    lib = build_library("cuda", quiet(archs="sm_80"))
    assert build_library("cuda", quiet(archs="sm_80", nocompile=True)) == lib
    assert len(fake.calls("compile")) == 2


def test_nocompile_without_the_compiler_uses_the_matching_build(fake, monkeypatch):
    lib80 = build_library("cuda", quiet(archs="sm_80"))
    build_library("cuda", quiet(archs="sm_90"))
    for name in ("nvcc", "hipcc"):
        (fake.bindir / name).unlink()
    only_fake_on_path(fake, monkeypatch)                 # the toolkit is gone; the cache stays
    assert build_library("cuda", quiet(archs="sm_80", nocompile=True)) == lib80
    with pytest.raises(GPUError, match="no cached GPU library for cuda-sm_75-"):
        build_library("cuda", quiet(archs="sm_75", nocompile=True))
    (fake.kernels / "a.cu").write_text(KERNEL_A + "// changed\n")      # other sources: not that build
    with pytest.raises(GPUError, match="built from these kernel sources.*no nvcc"):
        build_library("cuda", quiet(archs="sm_80", nocompile=True))
    with pytest.raises(GPUError, match="`nvcc` not found"):
        build_library("cuda", quiet(archs="sm_80"))


def test_compile_error_is_reported_and_publishes_nothing(fake, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_FAIL", "PG_ONE")
    with pytest.raises(GPUBuildError) as e:
        build_library("cuda", quiet(archs="sm_80"))
    msg = str(e.value)
    assert 'a.cu(3): error: identifier "PG_ONE" is undefined' in msg and "FAILED:" in msg
    assert "a.cu(3): error" in e.value.output
    root = fake.cache / os.listdir(fake.cache)[0]
    assert [n for n in os.listdir(root) if n.startswith("cuda-")] == []
    monkeypatch.delenv("FAKE_GPU_FAIL")
    lib = build_library("cuda", quiet(archs="sm_80"))
    assert open(lib).read().count("OBJ") == 2


def test_progress_output(fake, capsys):
    build_library("cuda", BuildOptions(archs="sm_80,sm_90"))
    err = capsys.readouterr().err
    # captured (not a terminal): plain lines, no carriage returns
    assert "compiling GPU library (cuda sm_80+sm_90, tinyblas):  33% [1/3]\n" in err and "\r" not in err
    assert "100% [3/3]\n" in err and err.endswith("\n")
    build_library("cuda", BuildOptions(archs="sm_80", log=False))
    assert capsys.readouterr().err == ""


# ---- interrupted and concurrent builds ----------------------------------------------
BUILD_SCRIPT = ("import sys; from pygemma.gpu import build_library, BuildOptions; "
                "print(build_library('cuda', BuildOptions(archs='sm_80', log='-q' not in sys.argv)))")


def spawn(fake, *args, sleep="0", new_session=False):
    env = dict(os.environ, FAKE_GPU_SLEEP=sleep, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=new_session)


def wait_for(cond, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def published(fake):
    root = fake.cache / os.listdir(fake.cache)[0]
    return sorted(n for n in os.listdir(root) if n.startswith("cuda-"))


def test_killed_build_leaves_no_library_and_is_cleaned(fake):
    p = spawn(fake, "-q", sleep="4", new_session=True)
    assert wait_for(lambda: len(fake.calls("compile")) >= 1)
    # the builder and ninja (ninja runs each compiler in a process group of its own: those
    # finish their 4 s holding the build lock, and the next build below waits for them)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert published(fake) == []
    root = fake.cache / os.listdir(fake.cache)[0]
    key = builder.make_plan("cuda", quiet(archs="sm_80")).key()
    stale = root / f".{key}.tmp-999999"              # a publisher killed between copy and rename
    stale.mkdir()
    (stale / "libpygemma_gpu.so").write_text("half")
    lib = build_library("cuda", quiet(archs="sm_80"))
    assert open(lib).read().count("OBJ") == 2
    assert not stale.exists() and published(fake) == [key]
    work = os.listdir(root / "work")
    assert len(work) == 1 and not os.path.exists(root / "work" / work[0] / builder.INTERRUPTED)


def test_ctrl_c_stops_the_build_and_publishes_nothing(fake):
    p = spawn(fake, "-q", sleep="60", new_session=True)
    assert wait_for(lambda: len(fake.calls("compile")) >= 1)
    os.killpg(p.pid, signal.SIGINT)                  # what the terminal sends the whole group
    _, err = p.communicate(timeout=50)               # well before the 60 s compile would end
    assert p.returncode != 0 and "KeyboardInterrupt" in err
    assert published(fake) == []
    assert open(build_library("cuda", quiet(archs="sm_80"))).read().count("OBJ") == 2


def test_killed_builder_whose_compiler_lives_on(fake):
    """Only the Python process dies: its ninja and compiler keep the lock until they end, then
    the next builder rebuilds (the work dir is marked interrupted)."""
    p = spawn(fake, "-q", sleep="4")
    assert wait_for(lambda: len(fake.calls("compile")) >= 1)
    p.kill()
    p.wait()
    q = spawn(fake, sleep="0")
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert "waiting for another pygemma" in err
    assert open(out.strip()).read().count("OBJ") == 2 and published(fake) != []


def test_concurrent_first_runs_build_once(fake):
    procs = [spawn(fake, sleep="3") for _ in range(3)]    # compiles long enough for all to start
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o.strip() for o, _ in outs}
    assert len(paths) == 1
    assert fake.compiled() == ["a.cu", "b.cu"] and len(fake.calls("link")) == 1
    assert sum("waiting for another pygemma" in e for _, e in outs) == 2
    assert open(paths.pop()).read().count("OBJ") == 2


# ---- backend choice, Model parameters, CLI ------------------------------------------
def test_auto_without_gpu_warns_once_and_uses_cpu(monkeypatch):
    monkeypatch.setattr(targets, "device_present", lambda backend: False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert choose.gpu_library("auto") is None
    assert len(w) == 1 and "no usable GPU" in str(w[0].message) and "running on the CPU" in str(w[0].message)
    assert choose.gpu_library("disable") is None
    with pytest.raises(ValueError):
        choose.gpu_library("intel")


def test_auto_with_a_gpu_but_failing_build_warns(fake, monkeypatch):
    monkeypatch.setattr(targets, "device_present", lambda backend: backend == "cuda")
    monkeypatch.setenv("FAKE_GPU_FAIL", "PG_ONE")
    with pytest.warns(RuntimeWarning, match="nvidia: building the GPU library failed"):
        assert choose.gpu_library("auto", quiet(archs="sm_80")) is None
    with pytest.raises(GPUBuildError):                        # explicit: fatal
        choose.gpu_library("nvidia", quiet(archs="sm_80"))


def test_apply_to_params(fake, monkeypatch):
    class Params:
        n_gpu_layers = 0
        gpu_library = None
    monkeypatch.setattr(choose, "c_core_has_gpu", lambda: True)
    probed = []
    monkeypatch.setattr(choose, "probe", lambda path: probed.append(path) or "fake device")
    p = Params()
    keep = choose.apply_to_params(p, 999, "nvidia", quiet(archs="sm_80"))
    from pygemma._ffi import ffi
    assert p.n_gpu_layers == 999 and ffi.string(p.gpu_library).decode().endswith("libpygemma_gpu.so")
    assert keep is p.gpu_library and probed == [ffi.string(keep).decode()]
    p = Params()
    assert choose.apply_to_params(p, 0, "nvidia") is None and p.n_gpu_layers == 0
    monkeypatch.setattr(choose, "c_core_has_gpu", lambda: False)
    with pytest.warns(RuntimeWarning, match="not available in this build"):
        assert choose.apply_to_params(p, 5, "auto") is None
    assert p.n_gpu_layers == 0


def test_cli_recompile_builds_and_prints_path(fake, capsys, monkeypatch):
    assert cli.main(["--recompile", "--gpu", "nvidia", "--gpu-arch", "sm_80,sm_90", "--log-disable"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("libpygemma_gpu.so") and os.path.exists(out.strip()) and err == ""
    assert cli.main(["--recompile", "--gpu", "amd", "--gpu-arch", "gfx90a", "--tinyblas"]) == 0
    out, err = capsys.readouterr()
    assert "/hip-gfx90a-6.1.40091-" in out and "compiling GPU library (hip gfx90a, tinyblas)" in err
    monkeypatch.setattr(choose, "probe", lambda path: "Fake GPU (1.0 GiB), compute 8.0")
    assert cli.main(["--nocompile", "--gpu", "nvidia", "--gpu-arch", "sm_80,sm_90"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("libpygemma_gpu.so") and "pygemma: GPU: Fake GPU (1.0 GiB)" in err

    def no_device(path):
        raise GPUError("GPU device: no usable cuda device")
    monkeypatch.setattr(choose, "probe", no_device)        # a build for other machines still succeeds
    assert cli.main(["--nocompile", "--gpu", "nvidia", "--gpu-arch", "sm_80,sm_90"]) == 0
    assert "note: this machine cannot run it: GPU device: no usable cuda device" in capsys.readouterr().err


def test_cli_gpu_errors_are_fatal(fake, capsys, monkeypatch):
    assert cli.main(["--nocompile", "--gpu", "nvidia", "--gpu-arch", "sm_75"]) == 1
    assert "pygemma: error: no cached GPU library" in capsys.readouterr().err
    monkeypatch.setenv("FAKE_GPU_FAIL", "PG_ONE")
    assert cli.main(["--recompile", "--gpu", "nvidia", "--gpu-arch", "sm_80"]) == 1
    err = capsys.readouterr().err
    assert "pygemma: error: building the GPU library failed" in err and "a.cu(3): error" in err
    assert "Traceback" not in err
    monkeypatch.setattr(targets, "nvidia_gpus", lambda: [])
    assert cli.main(["--recompile", "--gpu", "nvidia"]) == 1
    assert "no NVIDIA GPU found" in capsys.readouterr().err
    monkeypatch.setattr(targets, "device_present", lambda backend: False)
    assert cli.main(["--recompile"]) == 1
    assert "no NVIDIA or AMD GPU" in capsys.readouterr().err


def test_manual_documents_gpu_flags():
    from pygemma.manual import MANUAL
    for flag in ("--recompile", "--nocompile", "--tinyblas", "--gpu-arch", "-ngl", "XDG_CACHE_HOME"):
        assert flag in MANUAL


# ---- real compilers -------------------------------------------------------------------
PLACEHOLDER_CU = r'''#include "gpu_compat.h"
// Placeholder kernels (the real ones live in kernels/): enough to exercise the toolchain.
__global__ void pg_scale(float *y, const float *x, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = s * expf(x[i]);
}
extern "C" __attribute__((visibility("default"))) int pg_gpu_backend_v1(void) {
    return PG_GPU_PLACEHOLDER_BLAS;
}
'''
PLACEHOLDER_H = r'''#pragma once
#if defined(PG_GPU_HIP)
#include <hip/hip_runtime.h>
#else
#include <cuda_runtime.h>
#endif
#if defined(PG_GPU_CUBLAS)
#include <cublas_v2.h>
#define PG_GPU_PLACEHOLDER_BLAS 2
#else
#define PG_GPU_PLACEHOLDER_BLAS 1
#endif
'''


@pytest.fixture(scope="session")
def real_build(tmp_path_factory):
    """Builds of the real kernels (the repository's kernels/, or a placeholder before they
    exist), once per session and configuration."""
    base = tmp_path_factory.mktemp("realgpu")
    try:
        kdir = sources.kernels_dir()
    except GPUError:
        kdir = str(base / "placeholder")
        os.makedirs(kdir)
        with open(os.path.join(kdir, "placeholder.cu"), "w") as f:
            f.write(PLACEHOLDER_CU)
        with open(os.path.join(kdir, "gpu_compat.h"), "w") as f:
            f.write(PLACEHOLDER_H)
    done = {}

    def build(backend, archs, tinyblas):
        key = (backend, archs, tinyblas)
        if key not in done:
            old = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "PYGEMMA_KERNELS_DIR")}
            os.environ.update(XDG_CACHE_HOME=str(base / "cache"), PYGEMMA_KERNELS_DIR=kdir)
            try:
                t = time.time()
                lib = build_library(backend, BuildOptions(archs=archs, tinyblas=tinyblas, log=False))
                done[key] = (lib, time.time() - t)
            finally:
                for k, v in old.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return done[key]
    return build


def exported_functions(lib):
    """Functions the library exports (nm -D): the ABI entry alone, thanks to -fvisibility=hidden."""
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if " T " in line}


def need(backend):
    if toolkit.find_compiler(backend) is None:
        pytest.skip(f"{'nvcc' if backend == 'cuda' else 'hipcc'} is not installed")
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")


@pytest.mark.gpu_compile
@pytest.mark.parametrize("tinyblas", [False, True], ids=["cublas", "tinyblas"])
def test_nvcc_builds_sm80_sm90(real_build, tinyblas):
    need("cuda")
    if not tinyblas and not toolkit.find_toolkit("cuda").has_blas:
        pytest.skip("cuBLAS headers/libraries not found (pip install nvidia-cublas)")
    lib, seconds = real_build("cuda", "sm_80,sm_90", tinyblas)
    print(f"nvcc sm_80+sm_90 {'tinyblas' if tinyblas else 'cublas'}: {seconds:.1f} s")
    assert exported_functions(lib) == {"pg_gpu_backend_v1"}
    info = json.load(open(os.path.join(os.path.dirname(lib), "build.json")))
    assert info["archs"] == ["sm_80", "sm_90"] and info["blas"] == ("tinyblas" if tinyblas else "cublas")
    assert ("-DPG_GPU_TINYBLAS=1" if tinyblas else "-DPG_GPU_CUBLAS=1") in info["cflags"]
    blob = open(lib, "rb").read()
    assert b"sm_80" in blob and b"sm_90" in blob                 # both cubins in the fatbinary


@pytest.mark.gpu_compile
def test_hipcc_builds_gfx90a_gfx1100(real_build):
    need("hip")
    lib, seconds = real_build("hip", "gfx90a,gfx1100", True)
    print(f"hipcc gfx90a+gfx1100 tinyblas: {seconds:.1f} s")
    assert exported_functions(lib) == {"pg_gpu_backend_v1"}
    blob = open(lib, "rb").read()
    assert b"amdgcn-amd-amdhsa--gfx90a" in blob and b"amdgcn-amd-amdhsa--gfx1100" in blob


# ---- packaging ------------------------------------------------------------------------
def test_build_py_ships_kernel_sources(tmp_path, monkeypatch):
    """`pip install .` (setup.py build_py) copies kernels/*.cu and headers into pygemma/kernels,
    where sources.kernels_dir() finds them first."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "csrc"), src / "csrc", ignore=shutil.ignore_patterns("*.o", "*.so"))
    shutil.copytree(os.path.join(ROOT, "pygemma"), src / "pygemma",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "_core.c", "kernels"))
    (src / "kernels").mkdir()
    (src / "kernels" / "x.cu").write_text(KERNEL_B)
    (src / "kernels" / "x.h").write_text(COMMON_H)
    (src / "kernels" / "notes.txt").write_text("not shipped")
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path / "out")], cwd=src,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "pygemma"
    assert sorted(os.listdir(out / "kernels")) == ["x.cu", "x.h"]
    assert (out / "gpu" / "builder.py").exists()          # the subpackage is part of the install
    # the installed layout: sources.py finds pygemma/kernels beside the package's gpu/
    monkeypatch.delenv("PYGEMMA_KERNELS_DIR", raising=False)
    monkeypatch.setattr(sources, "__file__", str(out / "gpu" / "sources.py"))
    assert sources.kernels_dir() == str(out / "kernels")
    shutil.rmtree(out / "kernels")
    with pytest.raises(GPUError, match="kernel sources"):
        sources.kernels_dir()
