"""Shared fixtures: run a test on every SIMD build of the kernels this CPU supports."""

import pytest

from fastloss import _dispatch


@pytest.fixture(params=_dispatch.available_paths())
def simd_path(request):
    """Make fastloss call the kernels compiled for one instruction set (avx512/avx2/baseline)."""
    previous = _dispatch.kernels
    _dispatch.use(request.param)
    yield request.param
    _dispatch.kernels = previous


def pytest_terminal_summary(terminalreporter):
    """How long each command of tests/test_emulated_cpu.py took under QEMU (CI's log)."""
    lines = [value for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
             for name, value in report.user_properties if name == "qemu"]
    if lines:
        terminalreporter.section("emulated CPUs (qemu-x86_64)")
        for line in lines:
            terminalreporter.line(line)
