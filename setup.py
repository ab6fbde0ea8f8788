"""Build of fastloss's Cython kernels; the package metadata is in pyproject.toml.

The kernels (src/fastloss/_kernels.pxi) are compiled once per instruction set
for the target CPU family and fastloss._dispatch imports the widest one the
running CPU supports, so a portable wheel is as fast as a native build:
  x86_64: _kernels_baseline (SSE2), _kernels_avx2 (AVX2+FMA), _kernels_avx512
  others: _kernels_baseline only (NEON is the baseline on arm64)
fastloss._cpu, the CPU check that decides which variant may be imported, is
always compiled with the baseline flags (it runs before anything else knows
what the CPU has).

Environment switches:
  FASTLOSS_DEBUG=1         Cython bounds/wraparound/initialisation checks back on
                           (a slow build for memory-safety testing)
  FASTLOSS_OPENMP=0|1      build without OpenMP / require it (default: use it
                           when the compiler can, warn when it cannot)
  FASTLOSS_SIMD=a,b        build only these variants (baseline is always built)
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython import __version__ as cython_version
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTLOSS_DEBUG", "0") == "1"
OPENMP = os.environ.get("FASTLOSS_OPENMP", "auto")

# Flags of each instruction-set variant, per compiler family. Never
# -march=native: what ships must run on every CPU of its platform tag. Every
# instruction set a variant's flags enable must be in that path's entry of
# PATH_FEATURES in _cpu.pyx (tests/test_config.py checks it), or the variant
# could be imported on a CPU that lacks one.
SIMD_FLAGS = {
    "unix": {
        "baseline": [],
        "avx2": ["-mavx2", "-mfma"],
        "avx512": ["-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512bw", "-mavx512dq",
                   "-mavx2", "-mfma", "-mprefer-vector-width=512"],
    },
    "msvc": {"baseline": [], "avx2": ["/arch:AVX2"], "avx512": ["/arch:AVX512"]},
}
# -fno-trapping-math lets the compiler turn the kernels' ternaries into SIMD
# blends; unlike -ffast-math it keeps IEEE NaN/inf semantics, which the kernels
# rely on. -fno-math-errno: no libm call needs to set errno.
BASE_FLAGS = {
    "unix": ["-O3", "-fno-trapping-math", "-fno-math-errno"],
    "msvc": ["/O2", "/fp:precise"],
}
OPENMP_FLAGS = {
    "linux": (["-fopenmp"], ["-fopenmp"]),
    "darwin": (["-Xpreprocessor", "-fopenmp"], ["-lomp"]),
    "msvc": (["/openmp"], []),
}


def target_variants():
    """The SIMD variants that make sense for the platform being built for."""
    platform_tag = sysconfig.get_platform().lower()  # honours cross-compilation
    x86 = platform_tag.endswith(("x86_64", "amd64", "win32", "i686")) and "universal" not in platform_tag
    variants = ["baseline", "avx2", "avx512"] if x86 else ["baseline"]
    chosen = os.environ.get("FASTLOSS_SIMD")
    if chosen:
        wanted = {v.strip() for v in chosen.split(",")} | {"baseline"}
        variants = [v for v in variants if v in wanted]
    return variants


class BuildExt(build_ext):
    """Per-compiler flags (pykdtree's approach): the compiler is known only here."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        family = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        omp_compile, omp_link = self._openmp_flags(family)
        for ext in self.extensions:
            if ext.name == CPU_MODULE:
                # No SIMD flags (and no OpenMP, which it does not need): it must
                # run on every CPU of the platform, to tell what this one has.
                ext.extra_compile_args = list(BASE_FLAGS[family])
                continue
            variant = ext.name.rsplit("_", 1)[-1]
            ext.extra_compile_args = BASE_FLAGS[family] + SIMD_FLAGS[family][variant] + omp_compile
            ext.extra_link_args = omp_link
        self._write_build_info(omp_compile, omp_link)
        super().build_extensions()

    def _write_build_info(self, omp_compile, omp_link):
        """fastloss/_build_info.py beside the built modules, for fastloss.show_config()."""
        info = {
            "compiler_type": self.compiler.compiler_type,
            "compiler": _compiler_version(self.compiler),
            "compiler_command": " ".join(getattr(self.compiler, "compiler_so", None) or []),
            "env_cflags": os.environ.get("CFLAGS", ""),
            # Keyed by variant; fastloss._cpu's flags under "cpu".
            "compile_flags": {ext.name.rsplit("_", 1)[-1]: ext.extra_compile_args
                              for ext in self.extensions},
            "link_flags": omp_link,
            "openmp_flags": omp_compile,
            "debug": DEBUG,
            "cython_directives": directives,
            "cython_version": cython_version,
            "platform": sysconfig.get_platform(),
            "python": sys.version.split()[0],
        }
        path = os.path.join(os.path.dirname(self.get_ext_fullpath(self.extensions[0].name)),
                            "_build_info.py")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("# Generated by setup.py when the kernels were built; not in git.\n")
            f.write(f"BUILD_INFO = {info!r}\n")

    def _openmp_flags(self, family):
        if OPENMP == "0":
            return [], []
        key = "msvc" if family == "msvc" else ("darwin" if sys.platform == "darwin" else "linux")
        compile_flags, link_flags = OPENMP_FLAGS[key]
        if family == "msvc" or self._compiles_with(compile_flags, link_flags):
            return compile_flags, link_flags
        if OPENMP == "1":
            raise RuntimeError("FASTLOSS_OPENMP=1 but the compiler cannot build OpenMP code")
        warnings.warn("fastloss: the compiler cannot build OpenMP code; the kernels will run "
                      "on one thread (fastloss.show_config() reports it)")
        return [], []

    def _compiles_with(self, compile_flags, link_flags):
        source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "omp_check.c")
            with open(path, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([path], output_dir=tmp, extra_postargs=compile_flags)
                self.compiler.link_executable(objects, "omp_check", output_dir=tmp,
                                              extra_postargs=link_flags)
            except Exception:
                return False
        return True


def _compiler_version(compiler):
    """First line of the C compiler's version banner, or its name if it will not say."""
    try:
        if compiler.compiler_type == "msvc":
            if not getattr(compiler, "initialized", True):
                compiler.initialize()
            command = [compiler.cc]  # cl.exe prints its version banner on stderr
        else:
            command = [compiler.compiler_so[0], "--version"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        lines = (result.stdout or result.stderr).strip().splitlines()
        return lines[0] if lines else command[0]
    except Exception:
        return compiler.compiler_type


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    # Not a check: C division is the kernels' semantics (IEEE x/0 -> inf/nan,
    # where Cython's Python semantics raise ZeroDivisionError inside nogil code).
    "cdivision": True,
    "embedsignature": True,
    # The kernels keep no module state (every buffer is per call) and release the
    # GIL, so free-threaded CPython (3.14t) may run them without the GIL.
    "freethreading_compatible": True,
}

# The kernels' def entries read ndarray structs through NumPy's C API. Built
# against NumPy 2, the modules also run with NumPy 1.25 (the oldest the package
# supports) when the API is pinned to it.
NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION"),
                ("NPY_TARGET_VERSION", "NPY_1_25_API_VERSION")]

CPU_MODULE = "fastloss._cpu"
extensions = [Extension(CPU_MODULE, ["src/fastloss/_cpu.pyx"])] + [
    Extension(f"fastloss._kernels_{variant}", [f"src/fastloss/_kernels_{variant}.pyx"],
              include_dirs=[numpy.get_include()], define_macros=NUMPY_MACROS)
    for variant in target_variants()
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives,
                          include_path=["src"], build_dir="build/cython"),
    cmdclass={"build_ext": BuildExt},
)
