# Stub of fastloss._cpu (src/fastloss/_cpu.pyx, always compiled with the baseline
# flags): CPU feature detection. tests/test_stubs.py runs mypy.stubtest on it.

# Cython's doctest table (empty: the module has no doctests).
__test__: dict[str, str]

#: The x86 features fastloss checks: "sse2", "sse4_2", "avx", "fma", "avx2",
#: "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl".
FEATURES: tuple[str, ...]

#: The features each SIMD path beyond the baseline needs ("avx2", "avx512").
PATH_FEATURES: dict[str, tuple[str, ...]]

def cpu_features() -> dict[str, bool]:
    """Which of FEATURES this CPU has and its OS enables, e.g. {"sse2": True, ...}."""

def simd_support() -> dict[str, bool]:
    """Which of the SIMD paths beyond the baseline this CPU runs: {"avx2": bool, "avx512": bool}."""
