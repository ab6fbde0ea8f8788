"""SIMD dispatch never imports a kernel module built for an instruction set the CPU lacks.

A variant module (``_kernels_avx2``, ``_kernels_avx512``) may use its instruction set in its
own initialisation, so importing it on a CPU without that set dies with SIGILL. These tests
run fastloss in a subprocess whose ``fastloss._cpu`` is a fake reporting an SSE4.2-only CPU
and whose import system refuses (and records) any attempt to load a variant module; ``info``,
the demo, the bench and every loss must then run on the baseline kernels without touching a
variant. The real CPUs are exercised in tests/test_emulated_cpu.py (QEMU).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastloss
from fastloss import _cpu, _dispatch

PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)
VARIANTS = ("fastloss._kernels_avx2", "fastloss._kernels_avx512")

# Runs before fastloss is imported. The fake _cpu describes a Nehalem (SSE4.2, no AVX);
# the finder still lets importlib.util.find_spec locate the variants (that is how
# _dispatch learns they were compiled) but makes loading one raise and leaves a record.
PRELUDE = textwrap.dedent('''
    import importlib.abc, importlib.machinery, sys, types

    FEATURES = {features!r}
    PATH_FEATURES = {path_features!r}
    HAS = {{"sse2", "sse4_2"}}
    fake = types.ModuleType("fastloss._cpu")
    fake.FEATURES = FEATURES
    fake.PATH_FEATURES = PATH_FEATURES
    fake.cpu_features = lambda: {{f: f in HAS for f in FEATURES}}
    fake.simd_support = lambda: {{p: set(n) <= HAS for p, n in PATH_FEATURES.items()}}
    sys.modules["fastloss._cpu"] = fake

    VARIANTS = {variants!r}
    ATTEMPTS = []

    class Refuse(importlib.abc.Loader):
        def create_module(self, spec):
            ATTEMPTS.append(spec.name)
            raise RuntimeError(f"{{spec.name}} loaded on a CPU the CPU check says cannot run it")

        def exec_module(self, module):
            raise AssertionError("unreachable")

    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in VARIANTS:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None:
                spec.loader = Refuse()
            return spec

    sys.meta_path.insert(0, Guard())

    def assert_no_variant_loaded():
        assert not ATTEMPTS, f"tried to load {{ATTEMPTS}}"
        loaded = [m for m in VARIANTS if m in sys.modules]
        assert not loaded, f"imported {{loaded}}"
        # Whatever the mechanism (importlib, ctypes, ...), a loaded shared object is mapped.
        try:
            maps = open("/proc/self/maps").read()
        except OSError:
            return
        mapped = [m for m in VARIANTS if m.split(".")[1] + "." in maps]
        assert not mapped, f"mapped {{mapped}}"
''').format(features=_cpu.FEATURES, path_features=_cpu.PATH_FEATURES, variants=VARIANTS)

EVERY_LOSS = textwrap.dedent('''
    import numpy as np
    import fastloss as fl

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((64, 10)).astype(dtype)
        y = rng.integers(0, 10, 64)
        soft = rng.dirichlet(np.ones(10), 64).astype(dtype)
        t = rng.uniform(0, 1, x.shape).astype(dtype)
        for reduction in ("none", "mean", "sum"):
            fl.cross_entropy(x, y, reduction=reduction, label_smoothing=0.1)
            fl.cross_entropy_with_grad(x, soft, reduction=reduction)
            fl.binary_cross_entropy_with_logits(x, t, reduction=reduction)
            fl.binary_cross_entropy_with_logits_with_grad(x, t, reduction=reduction,
                                                          pos_weight=np.ones(10, dtype))
            fl.mse_loss(x, t, reduction=reduction)
            fl.mse_loss_with_grad(x, t, reduction=reduction)
            fl.huber_loss(x, t, reduction=reduction, delta=0.5)
            fl.huber_loss_with_grad(x, t, reduction=reduction)
    # ... and every other loss, with the data the bench builds for it.
    from fastloss import _bench
    for key, spec in _bench.LOSSES.items():
        for dtype in ("float32", "float64"):
            shape = (64, 16) if spec.pairs else (64, 10) if spec.rows else (640,)
            data = _bench.make_data(_bench.Case(key, shape, dtype))
            args = data["args"] if spec.pairs else (data["x"], data["target"], *data["args"])
            getattr(fl, spec.function)(*args, **spec.kwargs)
            getattr(fl, spec.function + "_with_grad")(*args, **spec.kwargs)
''')


def run_fake_cpu(code, **env):
    """`code` after PRELUDE in a fresh interpreter importing this fastloss."""
    environ = {k: v for k, v in os.environ.items() if k != "FASTLOSS_SIMD"}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, env=environ, timeout=300)


def test_no_variant_is_imported_on_a_cpu_without_it():
    """info (text and JSON), show_config, the bench and every loss, on a CPU with neither
    AVX2 nor AVX-512: baseline kernels, variants reported as compiled, none loaded."""
    result = run_fake_cpu(textwrap.dedent('''
        import contextlib, io, json
        import fastloss
        from fastloss import _config, _dispatch
        from fastloss.__main__ import main

        assert _dispatch.kernels.SIMD_PATH == "baseline", _dispatch.kernels.SIMD_PATH
        assert _dispatch.available_paths() == ["baseline"]
        assert main(["info"]) == 0
        fastloss.show_config(file=io.StringIO())
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert _config.main(["--json"]) == 0
        config = json.loads(buffer.getvalue())
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["bench", "--quick", "--case", "tiny-mse", "--no-progress"]) == 0
    ''') + EVERY_LOSS + textwrap.dedent('''
        assert_no_variant_loaded()
        print("CONFIG", json.dumps(config["simd"]))
    '''))
    assert result.returncode == 0, result.stdout + result.stderr
    simd = json.loads(result.stdout.split("CONFIG ", 1)[1])
    assert simd["in_use"] == "baseline"
    assert simd["available"] == ["baseline"]
    assert simd["compiled"] == _dispatch.compiled_paths()  # found without being loaded
    assert simd["cpu_supports"] == {"avx2": False, "avx512": False}
    assert simd["cpu_features"]["sse4_2"] and not simd["cpu_features"]["avx"]


def test_demo_imports_no_variant_on_a_cpu_without_it(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = run_fake_cpu(f'''
        import contextlib, io
        from fastloss.__main__ import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["demo", "--quick", "--no-progress", "--plot", {str(tmp_path / "d.png")!r}]) == 0
        assert_no_variant_loaded()
        print("OK")
    ''')
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")


def test_the_guard_catches_a_variant_import():
    """The regression tests above can fail: importing a compiled variant directly is caught."""
    compiled = [p for p in _dispatch.compiled_paths() if p != "baseline"]
    if not compiled:
        pytest.skip("this build has no SIMD variants")
    result = run_fake_cpu(f'''
        import importlib
        import fastloss
        try:
            importlib.import_module("fastloss._kernels_{compiled[0]}")
        except RuntimeError:
            pass
        assert_no_variant_loaded()
    ''')
    assert result.returncode != 0
    assert f"tried to load ['fastloss._kernels_{compiled[0]}']" in result.stderr


@pytest.mark.parametrize("path", ["avx2", "avx512"])
def test_forcing_a_path_the_cpu_lacks_is_a_clear_error(path):
    """FASTLOSS_SIMD naming a path the (fake) CPU cannot run: ValueError at import naming
    the path and the features, the variant never loaded, no signal."""
    if path not in _dispatch.compiled_paths():
        pytest.skip(f"the {path} kernels are not compiled into this build")
    result = run_fake_cpu('''
        try:
            import fastloss
        except ValueError as error:
            print(error)
        else:
            raise AssertionError("import fastloss succeeded")
        assert_no_variant_loaded()
    ''', FASTLOSS_SIMD=path)
    assert result.returncode == 0, result.stdout + result.stderr
    message = result.stdout
    assert f"FASTLOSS_SIMD='{path}'" in message
    assert f"this CPU cannot run the {path} kernels" in message
    assert "lacks avx, fma, avx2" in message and "has sse2, sse4_2" in message
    assert "Paths this machine runs: baseline" in message


def test_python_m_fastloss_info_with_a_path_this_cpu_lacks():
    """On the real CPU: every compiled path it cannot run gives exit status 1 and the message
    (before the fix, `info` died of SIGILL, status 132, on a CPU without AVX-512)."""
    lacking = [p for p in _dispatch.compiled_paths() if p not in _dispatch.available_paths()]
    if not lacking:
        pytest.skip("this CPU runs every compiled path")
    for path in lacking:
        environ = dict(os.environ, FASTLOSS_SIMD=path)
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, environ.get("PYTHONPATH")]))
        result = subprocess.run([sys.executable, "-m", "fastloss", "info"],
                                capture_output=True, text=True, env=environ, timeout=120)
        assert result.returncode == 1, (path, result.returncode, result.stderr)
        assert f"ValueError: FASTLOSS_SIMD='{path}' in the environment: this CPU cannot run" \
               in result.stderr
        missing = [f for f in _cpu.PATH_FEATURES[path] if not _cpu.cpu_features()[f]]
        assert f"the CPU lacks {', '.join(missing)}" in result.stderr


def test_unknown_or_uncompiled_paths_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown SIMD path 'sse9'; the paths are avx512, avx2, baseline"):
        _dispatch.load("sse9")
    monkeypatch.setattr(_dispatch, "compiled_paths", lambda: ["baseline"])
    with pytest.raises(ValueError, match=r"the avx2 kernels were not compiled into this build "
                                         r"of fastloss \(compiled: baseline\)"):
        _dispatch.load("avx2")


def test_unknown_fastloss_simd_fails_import_with_the_valid_names():
    result = run_fake_cpu('''
        try:
            import fastloss
        except ValueError as error:
            print(error)
    ''', FASTLOSS_SIMD="avx3")
    assert result.returncode == 0, result.stderr
    assert ("FASTLOSS_SIMD='avx3' in the environment: unknown SIMD path 'avx3'; "
            "the paths are avx512, avx2, baseline") in result.stdout


def test_cpu_reports_consistent_features():
    features = _cpu.cpu_features()
    assert list(features) == list(_cpu.FEATURES)
    assert all(isinstance(v, bool) for v in features.values())
    support = _cpu.simd_support()
    assert set(support) == set(_cpu.PATH_FEATURES) == set(_dispatch.SIMD_PATHS) - {"baseline"}
    for path, needs in _cpu.PATH_FEATURES.items():
        assert support[path] == all(features[f] for f in needs)
    # AVX-512 kernels are built with AVX2 and FMA enabled too.
    assert set(_cpu.PATH_FEATURES["avx2"]) <= set(_cpu.PATH_FEATURES["avx512"])
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        assert features["sse2"]  # part of x86-64 itself
