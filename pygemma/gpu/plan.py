"""A BuildPlan: the exact compile and link flags for one toolkit, target list and BLAS choice,
and the cache keys derived from them."""
import dataclasses
import hashlib

from . import hip_devlibs, sources, targets

LIBRARY = "libpygemma_gpu.so"
SYMBOL = "pg_gpu_backend_v1"      # the one symbol the C core looks up (extern "C")


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    toolkit: object            # toolkit.Toolkit
    archs: tuple               # ('sm_80', 'sm_90') | ('gfx90a',) | ('native',)
    blas: str                  # 'cublas' | 'hipblas' | 'tinyblas'
    kernels_dir: str
    sources: tuple             # absolute paths of the *.cu
    headers: tuple             # absolute paths of the *.h (dependencies of every source)
    cflags: tuple              # compile flags (no -c/-o/depfile flags)
    ldflags: tuple             # link flags before the objects
    libs: tuple                # link inputs after the objects

    @property
    def needs_devlib_overlay(self):
        return any(f.startswith("--rocm-device-lib-path=") for f in self.cflags)

    @property
    def backend(self):
        return self.toolkit.backend

    def flags_for_hash(self):
        """Everything that changes the library except the kernel sources, minus local paths
        that do not (where the package is installed)."""
        tk = self.toolkit
        loc = lambda f: f.replace(self.kernels_dir, "<kernels>")   # noqa: E731
        return [tk.backend, tk.compiler, tk.version, self.blas, *map(loc, self.cflags),
                "|", *map(loc, self.ldflags), "|", *self.libs]

    def sources_hash(self):
        return sources.content_hash(self.sources + self.headers)

    def key(self):
        """<backend>-<arch>-<toolkit version>-<hash of kernel sources + flags>: the cache directory."""
        h = sources.content_hash(self.sources + self.headers, self.flags_for_hash())[:16]
        return f"{self.backend}-{targets.arch_label(self.archs)}-{self.toolkit.version}-{h}"

    def work_key(self):
        """The incremental build directory: same flags, any sources (so editing one kernel
        recompiles one object)."""
        h = hashlib.sha256("\0".join(self.flags_for_hash()).encode()).hexdigest()[:16]
        return f"{self.backend}-{targets.arch_label(self.archs)}-{self.toolkit.version}-{h}"


def make_plan(toolkit, archs, kernels_dir, tinyblas=False):
    """Flags for nvcc (CUDA) or hipcc (HIP): -O3, C++17, PIC, shared; vendor BLAS when the
    toolkit has it and tinyBLAS (our own GEMM) otherwise or when forced."""
    srcs, hdrs = sources.kernel_files(kernels_dir)
    arch = targets.arch_flags(toolkit.backend, archs)
    use_blas = toolkit.has_blas and not tinyblas
    libs = list(toolkit.blas_link) if use_blas else []
    if toolkit.backend == "cuda":
        blas = "cublas" if use_blas else "tinyblas"
        # hidden visibility: the library exports pg_gpu_backend_v1 (marked default) alone
        cflags = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden", *arch]
        cflags += ["-DPG_GPU_CUBLAS=1"] if use_blas else ["-DPG_GPU_TINYBLAS=1"]
        # -cudart=shared is nvcc's spelling of -lcudart (its default is the static runtime).
        ldflags = ["-shared", "-cudart=shared", *arch]
        rpath = [a for d in toolkit.lib_dirs for a in ("-Xlinker", f"-rpath={d}")]
    else:
        blas = "hipblas" if use_blas else "tinyblas"
        cflags = ["-x", "hip", "-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-DPG_GPU_HIP=1", *arch]
        cflags += ["-DPG_GPU_HIPBLAS=1"] if use_blas else ["-DPG_GPU_TINYBLAS=1"]
        if hip_devlibs.missing_targets(toolkit.root, archs):
            cflags += [f"--rocm-device-lib-path={hip_devlibs.OVERLAY}"]
        ldflags = ["-shared", "-fPIC", *arch]        # hipcc links libamdhip64 itself
        rpath = [f"-Wl,-rpath,{d}" for d in toolkit.lib_dirs]
    cflags += [f"-I{kernels_dir}"] + ([f"-I{toolkit.blas_include}"] if use_blas else [])
    libs += rpath
    return BuildPlan(toolkit, tuple(archs), blas, kernels_dir, tuple(srcs), tuple(hdrs),
                     tuple(cflags), tuple(ldflags), tuple(libs))
