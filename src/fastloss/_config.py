"""What this installation of fastloss is: ``fastloss.show_config()`` and ``python -m fastloss info``.

The build half (compiler, flags, OpenMP flags) is what setup.py recorded in
``fastloss/_build_info.py`` when it compiled the kernels; the runtime half
(OpenMP compiled in, thread count, CPU features, SIMD path) is asked of the
compiled modules themselves, so it is true even for a build made some other way.
Only modules this CPU runs are asked: the variants it cannot run are located,
never imported (see fastloss._dispatch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any, TextIO

import numpy as np

from . import _cpu, _dispatch
# Baseline code, safe on every CPU: the OpenMP facts are the same in every variant.
from . import _kernels_baseline
from ._version import __version__

__all__ = ["get_config", "show_config", "main"]


def _build_info() -> dict[str, Any]:
    try:
        from ._build_info import BUILD_INFO  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # built without setup.py's BuildExt (or from an older setup.py)
        return {}
    return dict(BUILD_INFO)


def get_config() -> dict[str, Any]:
    """The configuration show_config() prints, as a JSON-serialisable dict."""
    build = _build_info()
    kernels = _dispatch.kernels
    baseline = _kernels_baseline
    openmp = bool(baseline.built_with_openmp())
    return {
        "fastloss": {"version": __version__, "location": os.path.dirname(__file__)},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "free_threaded": _free_threaded(),
                   "platform": platform.platform()},
        "numpy": {"version": np.__version__},
        "build": {
            "compiler": build.get("compiler", "unknown"),
            "compiler_command": build.get("compiler_command", ""),
            "CFLAGS": build.get("env_cflags", ""),
            "compile_flags": build.get("compile_flags", {}),
            "link_flags": build.get("link_flags", []),
            "debug_checks": build.get("debug", "unknown"),  # FASTLOSS_DEBUG=1: bounds checks on
            "cython": build.get("cython_version", "unknown"),
            "platform": build.get("platform", "unknown"),
        },
        "openmp": {
            "compiled_in": openmp,
            # omp_get_max_threads(): OMP_NUM_THREADS and threadpoolctl change it;
            # n_threads= overrides it per call; small inputs run on one thread.
            "threads": int(baseline.default_threads()) if openmp else 1,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "simd": {
            "in_use": kernels.SIMD_PATH,
            "available": _dispatch.available_paths(),
            # Never imported to find out: a variant's own initialisation may use its
            # instruction set, fatal on a CPU without it.
            "compiled": _dispatch.compiled_paths(),
            "cpu_supports": _cpu.simd_support(),
            "cpu_features": _cpu.cpu_features(),
            "FASTLOSS_SIMD": os.environ.get("FASTLOSS_SIMD"),
        },
    }


def _free_threaded() -> bool:
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_gil_enabled is not None and not is_gil_enabled()


def _format(config: dict[str, Any]) -> str:
    lines = []
    for section, items in config.items():
        lines.append(f"{section}:")
        for key, value in items.items():
            if isinstance(value, dict) and key == "compile_flags":
                lines.append(f"  {key}:")
                for variant, flags in value.items():
                    lines.append(f"    {variant}: {' '.join(flags)}")
                continue
            if isinstance(value, list):
                value = " ".join(map(str, value)) if section == "build" else ", ".join(map(str, value))
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif value is None:
                value = "(not set)"
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def show_config(file: TextIO | None = None) -> None:
    """Print fastloss's version, how its kernels were built (compiler, flags, OpenMP)
    and what they do on this machine (threads, SIMD path in use and available)."""
    print(_format(get_config()), file=file if file is not None else sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """``python -m fastloss info [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m fastloss info",
                                     description="Print fastloss's build and runtime configuration.")
    parser.add_argument("--json", action="store_true", help="print it as JSON")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(get_config(), indent=2))
    else:
        show_config()
    return 0
