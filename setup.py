"""Build of fastloss's Cython kernels; the package metadata is in pyproject.toml.

The kernels (src/fastloss/_kernels.pxi) are compiled once per instruction set
for the target CPU family and fastloss._dispatch imports the widest one the
running CPU supports, so a portable wheel is as fast as a native build:
  x86_64: _kernels_baseline (SSE2), _kernels_avx2 (AVX2+FMA), _kernels_avx512
  others: _kernels_baseline only (NEON is the baseline on arm64)

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

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTLOSS_DEBUG", "0") == "1"
OPENMP = os.environ.get("FASTLOSS_OPENMP", "auto")

# Flags of each instruction-set variant, per compiler family. Never
# -march=native: what ships must run on every CPU of its platform tag.
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
            variant = ext.name.rsplit("_", 1)[-1]
            ext.extra_compile_args = BASE_FLAGS[family] + SIMD_FLAGS[family][variant] + omp_compile
            ext.extra_link_args = omp_link
        super().build_extensions()

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


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extensions = [
    Extension(f"fastloss._kernels_{variant}", [f"src/fastloss/_kernels_{variant}.pyx"])
    for variant in target_variants()
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives,
                          include_path=["src"], build_dir="build/cython"),
    cmdclass={"build_ext": BuildExt},
)
