"""The typing stubs of the compiled kernels match the modules actually built.

Runs ``mypy.stubtest`` against ``fastloss._cpu`` and each kernel module of this
build the CPU can run, so a change to a ``def`` in ``_kernels.pxi`` (or
``_cpu.pyx``) that is not mirrored in ``_kernels_baseline.pyi`` (``_cpu.pyi``)
fails here. Skips when mypy is not installed.
"""

import importlib.util
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import fastloss
from fastloss import _dispatch

PACKAGE_DIR = Path(fastloss.__file__).resolve().parent


def test_stub_files_ship_with_the_package():
    assert (PACKAGE_DIR / "py.typed").is_file()
    assert (PACKAGE_DIR / "_cpu.pyi").is_file()
    for path in _dispatch.SIMD_PATHS:
        assert (PACKAGE_DIR / f"_kernels_{path}.pyi").is_file(), path


def _installed_dirs():
    dirs = set(site.getsitepackages()) | {site.getusersitepackages()}
    dirs |= {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return {Path(d).resolve() for d in dirs if d}


@pytest.fixture(scope="session")
def stubtest_report(tmp_path_factory):
    """One stubtest run over _cpu and every kernel module this CPU runs (mypy
    re-reads numpy's stubs on each run, so one run, not one per module)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    modules = ["fastloss._cpu"] + [f"fastloss._kernels_{path}" for path in _dispatch.available_paths()]
    workdir = tmp_path_factory.mktemp("stubtest")
    config = workdir / "mypy.ini"  # so that no user or project mypy config applies
    config.write_text("[mypy]\n")
    parent = PACKAGE_DIR.parent
    env = dict(os.environ)
    # The runtime import must find the fastloss these tests import...
    env["PYTHONPATH"] = os.pathsep.join([str(parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # ...and so must mypy: site-packages it finds itself (PEP 561, py.typed), a
    # source tree it needs on MYPYPATH (which must not name site-packages).
    if parent not in _installed_dirs():
        env["MYPYPATH"] = str(parent)
    else:
        env.pop("MYPYPATH", None)
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *modules, "--mypy-config-file", str(config)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    return result


@pytest.mark.parametrize("path", ("cpu",) + _dispatch.SIMD_PATHS)
def test_stubtest(path, stubtest_report):
    if path == "cpu":
        module = "fastloss._cpu"
    elif path in _dispatch.available_paths():
        module = f"fastloss._kernels_{path}"
    else:
        pytest.skip(f"the {path} kernels are not built here or this CPU cannot run them")
    output = stubtest_report.stdout + stubtest_report.stderr
    errors = [line for line in output.splitlines()
              if line.startswith("error:") and (f"{module}." in line or f"{module} " in line)]
    assert not errors, f"stubtest {module}:\n{output}"
    if stubtest_report.returncode != 0:  # failed without naming a module (e.g. a stub syntax error)
        assert any(line.startswith("error: fastloss.") for line in output.splitlines()), \
            f"stubtest failed:\n{output}"


@pytest.mark.parametrize("path", [p for p in _dispatch.SIMD_PATHS if p != "baseline"])
def test_variant_matches_baseline_at_runtime(path):
    """The avx2/avx512 stubs re-export the baseline stub, and stubtest skips
    re-exported names; so check here that each variant's runtime API is the
    baseline's (names, signatures, enum members), which the stub was tested against."""
    import inspect

    if path not in _dispatch.available_paths():
        pytest.skip(f"the {path} kernels are not built here or this CPU cannot run them")
    baseline, variant = _dispatch.load("baseline"), _dispatch.load(path)

    def public(module):
        return {name for name in dir(module) if not name.startswith("_")}

    assert public(variant) == public(baseline)
    assert variant.SIMD_PATH == path
    for name in public(baseline):
        ours, theirs = getattr(variant, name), getattr(baseline, name)
        assert type(ours) is type(theirs), name
        if callable(theirs) and not isinstance(theirs, type):
            assert inspect.signature(ours) == inspect.signature(theirs), name
        elif isinstance(theirs, type):
            assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs], name
