"""Choose the compiled kernel module for the widest instruction set this CPU runs.

setup.py compiles the same kernels (``_kernels.pxi``) once per instruction set;
this module imports the best one at ``import fastloss``. ``FASTLOSS_SIMD=baseline``
(or ``avx2``, ``avx512``) in the environment forces a path, e.g. to compare them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from . import _kernels_baseline

# Widest first.
SIMD_PATHS = ("avx512", "avx2", "baseline")


def available_paths() -> list[str]:
    """The SIMD paths that are both compiled into this build and supported by this CPU."""
    cpu = _kernels_baseline.cpu_features()
    paths = []
    for path in SIMD_PATHS:
        if path != "baseline" and not cpu.get(path, False):
            continue
        try:
            importlib.import_module(f"fastloss._kernels_{path}")
        except ImportError:
            continue
        paths.append(path)
    return paths


def load(path: str) -> ModuleType:
    """The kernel module of one SIMD path; ValueError if this build or CPU lacks it."""
    if path not in available_paths():
        raise ValueError(
            f"SIMD path {path!r} is not available here; available: {available_paths()}")
    return importlib.import_module(f"fastloss._kernels_{path}")


def _select() -> ModuleType:
    forced = os.environ.get("FASTLOSS_SIMD", "").strip()
    if forced:
        return load(forced)
    return load(available_paths()[0])


#: The kernel module fastloss.functional calls (tests may swap it with `use`).
kernels: ModuleType = _select()


def use(path: str) -> ModuleType:
    """Make fastloss call the kernels of `path`; returns the previous module."""
    global kernels
    previous, kernels = kernels, load(path)
    return previous
