"""Build (or find in the cache) libpygemma_gpu.so for one backend."""
import dataclasses
import os
import shutil
import sys

from ..errors import GPUError
from . import cache, hip_devlibs, ninja_file, ninja_run, plan as plan_mod, sources, targets, toolkit

INTERRUPTED = "BUILDING"        # present in a work dir while ninja runs there


@dataclasses.dataclass
class BuildOptions:
    recompile: bool = False     # rebuild even if a cached library exists
    nocompile: bool = False     # never compile: use the cache or fail
    tinyblas: bool = False      # our own GEMM even where cuBLAS/hipBLAS exist
    archs: object = None        # --gpu-arch: "sm_80,sm_90" / ["gfx90a"]; None: detect
    jobs: int = None            # ninja -j (default: the CPU count)
    log: bool = True            # progress and messages on stderr


def _say(options, msg):
    if options.log:
        print(msg, file=sys.stderr, flush=True)


def make_plan(backend, options):
    tk = toolkit.find_toolkit(backend)
    archs = targets.resolve_archs(backend, options.archs)
    return plan_mod.make_plan(tk, archs, sources.kernels_dir(), tinyblas=options.tinyblas)


def _build(plan, work, options, lock_fd):
    """ninja in the work dir; a dir still marked INTERRUPTED from a killed build is wiped."""
    if options.recompile or os.path.exists(os.path.join(work, INTERRUPTED)):
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "obj"), exist_ok=True)
    open(os.path.join(work, INTERRUPTED), "w").close()
    if plan.needs_devlib_overlay:
        hip_devlibs.make_overlay(work, plan.toolkit, plan.archs)
    text = ninja_file.render(plan)
    with open(os.path.join(work, "build.ninja.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(work, "build.ninja.tmp"), os.path.join(work, "build.ninja"))
    progress = None
    if options.log:
        progress = ninja_run.Progress(f"{plan.backend} {targets.arch_label(plan.archs)}, {plan.blas}")
    try:
        ninja_run.run_ninja(work, jobs=options.jobs, progress=progress, keep_fds=(lock_fd,))
    finally:
        if progress:
            progress.end()
    os.remove(os.path.join(work, INTERRUPTED))
    return os.path.join(work, plan_mod.LIBRARY)


def _stamp(root, key):
    """Identity of the published build (a new publish is a new directory and build.json)."""
    try:
        st = os.stat(os.path.join(root, key, "build.json"))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _cached_without_toolkit(backend, options, root):
    """--nocompile on a machine without the compiler: the newest published build for these
    targets made from the same kernel sources (the flags cannot be recomputed here)."""
    archs = targets.resolve_archs(backend, options.archs)
    srcs, hdrs = sources.kernel_files(sources.kernels_dir())
    want = sources.content_hash(srcs + hdrs)
    prefix = f"{backend}-{targets.arch_label(archs)}-"
    best = None
    for name in os.listdir(root) if os.path.isdir(root) else []:
        info = cache.read_info(root, name) if name.startswith(prefix) else None
        if not info or info.get("sources_hash") != want or not cache.is_published(root, name):
            continue
        if options.tinyblas and info.get("blas") != "tinyblas":
            continue
        if best is None or info.get("built_at", "") > best[0]:
            best = (info.get("built_at", ""), name)
    if best is None:
        raise GPUError(f"no cached GPU library for {prefix}* built from these kernel sources in {root}, "
                       f"and no {toolkit.COMPILERS[backend][0]} to build one (--nocompile)")
    return cache.library_path(root, best[1])


def build_library(backend, options=None, root=None):
    """Path of the cached library for backend "cuda" or "hip", compiling it if needed.

    Raises GPUError (no compiler, no GPU and no --gpu-arch, --nocompile
    without a cached build) or GPUBuildError (the compiler failed)."""
    options = options or BuildOptions()
    root = root or cache.cache_root()
    if options.nocompile and toolkit.find_compiler(backend) is None:
        return _cached_without_toolkit(backend, options, root)
    plan = make_plan(backend, options)
    key = plan.key()
    lib = cache.library_path(root, key)
    if cache.is_published(root, key) and not options.recompile:
        return lib
    if options.nocompile:
        raise GPUError(f"no cached GPU library for {key} in {root} and --nocompile was given; "
                       f"build it once with: pygemma --recompile --gpu "
                       f"{'nvidia' if backend == 'cuda' else 'amd'}")
    os.makedirs(root, exist_ok=True)
    before = _stamp(root, key)
    waited = []
    on_wait = (lambda pid: (waited.append(pid), _say(
        options, f"pygemma: waiting for another pygemma (pid {pid or '?'}) building the GPU library")))
    with cache.BuildLock(root, plan.work_key(), on_wait) as lk:
        if cache.is_published(root, key):
            # Someone else built it while we waited (for --recompile: built it anew).
            if not options.recompile or (waited and _stamp(root, key) != before):
                return lib
        cache.clean_stale(root, key)
        built = _build(plan, os.path.join(root, "work", plan.work_key()), options, lk.fd)
        info = {"backend": plan.backend, "archs": list(plan.archs), "blas": plan.blas,
                "toolkit": plan.toolkit.version, "compiler": plan.toolkit.compiler,
                "cflags": list(plan.cflags), "ldflags": list(plan.ldflags), "libs": list(plan.libs),
                "sources_hash": plan.sources_hash()}
        return cache.publish(root, key, built, info)
