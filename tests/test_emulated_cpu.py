"""Each SIMD tier on a CPU this machine may not be: the installed build under QEMU's user-mode
emulator (``qemu-x86_64 -cpu MODEL python ...``).

- ``Nehalem``: SSE4.2, no AVX, so fastloss must pick the baseline kernels;
- ``Haswell``: AVX2 and FMA, no AVX-512, so it must pick avx2 (when this build has it).

Under each: ``import fastloss``; ``python -m fastloss info`` (text and JSON) reporting that
path; every public function against fastloss.reference (tests/emulated_cpu_checks.py);
``FASTLOSS_SIMD`` naming the next wider path, which must be a clear error, not SIGILL; and
``python -m fastloss demo --quick``. QEMU emulates no AVX-512, so that tier is tested natively
on a machine that has it (the ``simd_path`` fixture runs every test on every path the CPU runs).

A process that an emulated Python starts runs natively, outside the emulation, so every
command here is launched under ``qemu-x86_64`` itself and none of them starts a subprocess.
Marked ``emulated``; skipped, with the reason, when the emulator is missing, unless
``FASTLOSS_REQUIRE_QEMU=1`` (set by .ci/run once it has installed qemu-user) makes that a
failure. ``FASTLOSS_QEMU`` may name the emulator when it is not on PATH.
"""

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fastloss
from fastloss import _dispatch

pytestmark = pytest.mark.emulated

QEMU = os.environ.get("FASTLOSS_QEMU") or shutil.which("qemu-x86_64")
PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)
CHECKS = Path(__file__).with_name("emulated_cpu_checks.py")
COMPILED = _dispatch.compiled_paths()
# CPU model -> the path fastloss must choose there, and the next wider one it must refuse.
CPUS = {
    "Nehalem": ("baseline", "avx2"),
    "Haswell": ("avx2" if "avx2" in COMPILED else "baseline", "avx512"),
}
# What a CPU with that path runs, widest first.
AVAILABLE = {"baseline": ["baseline"], "avx2": ["avx2", "baseline"]}
# Emulated Python is 10-50x slower than native; the demo is the longest command (~3 min).
TIMEOUT = 900


def _skip_reason():
    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform != "linux":
        return f"QEMU's x86-64 user-mode emulator runs Linux x86-64 programs; this is " \
               f"{sys.platform} {platform.machine()}"
    if QEMU is None:
        return "qemu-x86_64 not found (Debian/Ubuntu: apt-get install qemu-user)"
    if not os.access(QEMU, os.X_OK):
        return f"FASTLOSS_QEMU={QEMU} is not an executable"
    return None


@pytest.fixture(scope="module", autouse=True)
def qemu():
    reason = _skip_reason()
    if reason is None:
        return QEMU
    if os.environ.get("FASTLOSS_REQUIRE_QEMU") == "1":
        pytest.fail(f"FASTLOSS_REQUIRE_QEMU=1 but {reason}")
    pytest.skip(reason)


def emulate(model, *args, record_property, **env):
    """``python ARGS`` under ``qemu-x86_64 -cpu MODEL``, importing the fastloss these tests
    import; QEMU's warnings about host features TCG lacks are dropped from stderr."""
    environ = {k: v for k, v in os.environ.items() if k != "FASTLOSS_SIMD"}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    result = subprocess.run([QEMU, "-cpu", model, sys.executable, *args], capture_output=True,
                            text=True, env=environ, timeout=TIMEOUT)
    seconds = time.perf_counter() - start
    settings = "".join(f"{k}={v} " for k, v in env.items())
    record_property("qemu", f"-cpu {model}: {settings}python {' '.join(map(str, args))}: "
                            f"{seconds:.1f} s, exit {result.returncode}")
    result.stderr = "\n".join(line for line in result.stderr.splitlines()
                              if "TCG doesn't support requested feature" not in line)
    return result


@pytest.mark.parametrize("model", CPUS)
def test_import(model, record_property):
    result = emulate(model, "-c", "import fastloss; print(fastloss._dispatch.kernels.SIMD_PATH)",
                     record_property=record_property)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == CPUS[model][0]


@pytest.mark.parametrize("model", CPUS)
def test_info(model, record_property):
    path = CPUS[model][0]
    result = emulate(model, "-m", "fastloss", "info", "--json", record_property=record_property)
    assert result.returncode == 0, result.stderr
    simd = json.loads(result.stdout)["simd"]
    assert simd["in_use"] == path
    assert simd["available"] == [p for p in COMPILED if p in AVAILABLE[path]]
    assert simd["compiled"] == COMPILED  # located, not imported (avx512 cannot be, here)
    assert simd["cpu_supports"] == {"avx2": path == "avx2", "avx512": False}
    assert simd["cpu_features"]["sse4_2"] and not simd["cpu_features"]["avx512f"]
    result = emulate(model, "-m", "fastloss", "info", record_property=record_property)
    assert result.returncode == 0, result.stderr
    assert f"in_use: {path}\n" in result.stdout


@pytest.mark.parametrize("model", CPUS)
def test_every_loss_against_the_reference(model, record_property):
    path = CPUS[model][0]
    result = emulate(model, str(CHECKS), path, record_property=record_property)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"path: {path};" in result.stdout
    assert f"against fastloss.reference on the {path} kernels" in result.stdout
    for group in ("cross_entropy", "pointwise", "threaded"):
        assert f"{group}: " in result.stdout, result.stdout


@pytest.mark.parametrize("model", CPUS)
def test_forcing_a_wider_path_is_a_clear_error(model, record_property):
    """Exit status 1 and a ValueError naming the path and the CPU's features; never a signal
    (SIGILL was exit status 132 from a shell, -4 here)."""
    wider = CPUS[model][1]
    result = emulate(model, "-m", "fastloss", "info", record_property=record_property,
                     FASTLOSS_SIMD=wider)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert f"ValueError: FASTLOSS_SIMD='{wider}' in the environment: " in result.stderr
    if wider in COMPILED:
        assert f"this CPU cannot run the {wider} kernels" in result.stderr
        assert "the CPU lacks " in result.stderr and "(it has sse2, sse4_2" in result.stderr
    else:
        assert f"the {wider} kernels were not compiled into this build" in result.stderr


@pytest.mark.parametrize("model", CPUS)
def test_demo(model, record_property, tmp_path):
    for module in ("sklearn", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the demo needs {module} (pip install 'fastloss[demo]')")
    figure = tmp_path / "demo.png"
    result = emulate(model, "-m", "fastloss", "demo", "--quick", "--no-progress",
                     "--plot", str(figure), record_property=record_property)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Wrote the figure to {figure}" in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
