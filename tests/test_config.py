"""fastloss.show_config() and ``python -m fastloss info``."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastloss
from fastloss import _config, _cpu, _dispatch
from fastloss.__main__ import main as cli_main

PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)


def run_info(*args, **env):
    """``python -m fastloss info ARGS`` in a fresh interpreter importing this fastloss."""
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "fastloss", "info", *args],
                          capture_output=True, text=True, env=environ, timeout=120)


def test_show_config_is_public():
    assert "show_config" in fastloss.__all__
    assert fastloss.show_config is _config.show_config


def test_show_config_prints_the_essentials(capsys):
    fastloss.show_config()
    text = capsys.readouterr().out
    for needle in (fastloss.__version__, np.__version__, "compiler:", "compile_flags",
                   "compiled_in:", "threads:", "in_use: " + _dispatch.kernels.SIMD_PATH,
                   "available:"):
        assert needle in text, needle


def test_show_config_writes_to_a_file():
    buffer = io.StringIO()
    fastloss.show_config(file=buffer)
    assert fastloss.__version__ in buffer.getvalue()


def test_config_reports_the_running_kernels():
    config = _config.get_config()
    assert config["fastloss"]["version"] == fastloss.__version__
    assert config["numpy"]["version"] == np.__version__
    assert config["simd"]["in_use"] == _dispatch.kernels.SIMD_PATH
    assert config["simd"]["available"] == _dispatch.available_paths()
    assert config["simd"]["in_use"] in config["simd"]["available"]
    assert set(config["simd"]["available"]) <= set(config["simd"]["compiled"])
    assert "baseline" in config["simd"]["compiled"]
    assert config["simd"]["compiled"] == _dispatch.compiled_paths()
    assert config["simd"]["cpu_supports"] == _cpu.simd_support()
    assert config["simd"]["cpu_features"] == _cpu.cpu_features()
    baseline = _dispatch.load("baseline")
    assert config["openmp"]["compiled_in"] is bool(baseline.built_with_openmp())
    assert config["openmp"]["threads"] >= 1
    if not config["openmp"]["compiled_in"]:
        assert config["openmp"]["threads"] == 1
    json.dumps(config)  # serialisable, for `info --json`


def test_build_info_matches_this_build():
    """setup.py records the compiler and flags next to the modules it builds."""
    pytest.importorskip("fastloss._build_info", reason="built without setup.py's BuildExt")
    build = _config.get_config()["build"]
    assert build["compiler"] not in ("", "unknown")
    assert set(_config.get_config()["simd"]["compiled"]) <= set(build["compile_flags"])
    # What setup.py itself passes must stay portable (a user's CFLAGS is their business).
    for variant, flags in build["compile_flags"].items():
        assert not any(flag.startswith(("-march", "-mtune=native")) for flag in flags), variant
    openmp_flags = {"-fopenmp", "/openmp"}
    compiled_with_openmp_flag = any(openmp_flags & set(flags) for flags in build["compile_flags"].values())
    assert compiled_with_openmp_flag == _config.get_config()["openmp"]["compiled_in"]


# Instruction sets each MSVC /arch: switch lets the compiler use.
MSVC_ARCH = {"/arch:AVX2": {"avx", "fma", "avx2"},
             "/arch:AVX512": {"avx", "fma", "avx2", "avx512f", "avx512cd", "avx512dq", "avx512bw",
                              "avx512vl"}}


def test_cpu_check_covers_every_instruction_set_the_flags_enable():
    """A variant is imported once _cpu says the CPU has PATH_FEATURES[variant]; a flag
    enabling anything outside it would let the compiler emit instructions nobody checked."""
    pytest.importorskip("fastloss._build_info", reason="built without setup.py's BuildExt")
    flags = _config.get_config()["build"]["compile_flags"]
    # fastloss._cpu runs before anything knows what the CPU has: no instruction-set flags.
    assert not [f for f in flags["cpu"] if f.startswith(("-m", "/arch"))], flags["cpu"]
    assert not [f for f in flags["baseline"] if f.startswith(("-m", "/arch"))], flags["baseline"]
    for variant, variant_flags in flags.items():
        if variant in ("cpu", "baseline"):
            continue
        enabled = set()
        for flag in variant_flags:
            if flag.startswith("-mprefer-vector-width"):  # a preference, not an instruction set
                continue
            if flag.startswith("-m"):
                enabled.add(flag[2:].replace(".", "_"))
            elif flag.startswith("/arch:"):
                enabled |= MSVC_ARCH[flag]
        assert enabled, (variant, variant_flags)
        assert enabled <= set(_cpu.PATH_FEATURES[variant]), (variant, enabled)


def test_cli_main_in_process(capsys):
    assert cli_main(["info"]) == 0
    assert fastloss.__version__ in capsys.readouterr().out
    assert _config.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fastloss"]["version"] == fastloss.__version__


def test_python_m_fastloss_info():
    result = run_info()
    assert result.returncode == 0, result.stderr
    assert fastloss.__version__ in result.stdout
    assert "in_use:" in result.stdout


@pytest.mark.parametrize("path", _dispatch.SIMD_PATHS)
def test_info_follows_fastloss_simd(path):
    if path not in _dispatch.available_paths():
        pytest.skip(f"no {path} kernels here")
    result = run_info("--json", FASTLOSS_SIMD=path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["simd"]["in_use"] == path
    assert config["simd"]["FASTLOSS_SIMD"] == path


def test_info_reports_omp_num_threads():
    result = run_info("--json", OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["openmp"]["threads"] == 1
    assert config["openmp"]["OMP_NUM_THREADS"] == "1"


def test_free_threaded_python_keeps_the_gil_off():
    """On 3.14t importing the kernels must not turn the GIL back on (setup.py
    builds them with Cython's freethreading_compatible directive)."""
    import sysconfig

    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("not a free-threaded Python")
    code = ("import sys, fastloss, fastloss._dispatch as d\n"
            "[d.load(p) for p in d.available_paths()]\n"
            "print(sys._is_gil_enabled())")
    environ = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    environ.pop("PYTHON_GIL", None)
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            capture_output=True, text=True, env=environ, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
