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
