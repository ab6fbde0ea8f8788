"""Choose the compiled kernel module for the widest instruction set this CPU runs.

setup.py compiles the same kernels (``_kernels.pxi``) once per instruction set;
this module imports the best one at ``import fastloss``. ``FASTLOSS_SIMD=baseline``
(or ``avx2``, ``avx512``) in the environment forces a path, e.g. to compare them.

A variant module may use its instruction set anywhere, its initialisation
included, so importing ``_kernels_avx512`` on a CPU without AVX-512 can kill the
process with SIGILL. Hence: only ``_cpu`` and ``_kernels_baseline``, both compiled
with the baseline flags, are imported unconditionally; ``compiled_paths`` finds the
variants with ``importlib.util.find_spec``, which locates a module without loading
it; and a variant is imported only once ``_cpu`` says this CPU runs it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType

from . import _cpu

# Widest first.
SIMD_PATHS = ("avx512", "avx2", "baseline")


def compiled_paths() -> list[str]:
    """The SIMD paths compiled into this build, widest first; imports none of them."""
    return [path for path in SIMD_PATHS
            if importlib.util.find_spec(f"fastloss._kernels_{path}") is not None]


def available_paths() -> list[str]:
    """The SIMD paths compiled into this build that this CPU runs, widest first; imports none."""
    runs = _cpu.simd_support()
    return [path for path in compiled_paths() if path == "baseline" or runs[path]]


def _cannot_run(path: str) -> str:
    features = _cpu.cpu_features()
    needs = _cpu.PATH_FEATURES[path]
    has = [f for f in _cpu.FEATURES if features[f]]
    lacks = [f for f in needs if not features[f]]
    return (f"this CPU cannot run the {path} kernels: they need {', '.join(needs)}; "
            f"the CPU lacks {', '.join(lacks)} (it has {', '.join(has) or 'none of these'}). "
            f"Paths this machine runs: {', '.join(available_paths())}")


def load(path: str) -> ModuleType:
    """The kernel module of one SIMD path. ValueError, before anything is imported, if
    the name is unknown, the path was not compiled or this CPU cannot run it."""
    if path not in SIMD_PATHS:
        raise ValueError(f"unknown SIMD path {path!r}; the paths are {', '.join(SIMD_PATHS)}")
    if path not in compiled_paths():
        raise ValueError(f"the {path} kernels were not compiled into this build of fastloss "
                         f"(compiled: {', '.join(compiled_paths())})")
    if path not in available_paths():
        raise ValueError(_cannot_run(path))
    return importlib.import_module(f"fastloss._kernels_{path}")


def _select() -> ModuleType:
    forced = os.environ.get("FASTLOSS_SIMD", "").strip()
    if not forced:
        return load(available_paths()[0])
    try:
        return load(forced)
    except ValueError as error:
        # Raised by `import fastloss` itself, so say where the request came from.
        raise ValueError(f"FASTLOSS_SIMD={forced!r} in the environment: {error}. "
                         "Unset FASTLOSS_SIMD to use the widest path this CPU runs.") from None


#: The kernel module fastloss.functional calls (tests may swap it with `use`).
kernels: ModuleType = _select()


def use(path: str) -> ModuleType:
    """Make fastloss call the kernels of `path`; returns the previous module."""
    global kernels
    previous, kernels = kernels, load(path)
    return previous


@contextlib.contextmanager
def double_totals() -> Iterator[None]:
    """Within it, this thread's reduced losses come back as float64 scalars of the
    kernels' double totals, unrounded for float32 inputs too: fastloss.dask sums
    many chunks' totals and rounds once. The one private hook for that."""
    module = kernels
    module.set_double_totals(True)
    try:
        yield
    finally:
        module.set_double_totals(False)
