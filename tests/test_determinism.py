"""Bit-for-bit determinism of every loss, reduction and gradient.

The kernels cut the data into fixed-size blocks (the kernel module's BLOCK_SIZES),
reduce each block in a fixed order and add the block sums in block order. So the same
inputs must give *bit-identical* losses and gradients on every call and for every
``n_threads``, whether the call runs on the calling thread (inputs under
PARALLEL_THRESHOLD elements) or on an OpenMP team (PARALLEL_THRESHOLD and more).
Everything here compares bits, never with a tolerance: ``np.array_equal`` on the raw
bytes (so NaNs compare too) and ``==`` on the bit patterns of reduced scalars.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import fastloss as fl
from fastloss import _dispatch

THREADS = (1, 2, 3, 8)
REDUCTIONS = ("none", "mean", "sum")
DTYPES = (np.float32, np.float64)
# The kernels' threshold for starting a thread team (exported by the kernel module).
THRESHOLD = _dispatch.kernels.PARALLEL_THRESHOLD
BLOCKS = dict(_dispatch.kernels.BLOCK_SIZES)
# "big" inputs: above the threshold (so n_threads > 1 really starts a team), and not
# a multiple of any block size
BIG = THRESHOLD + THRESHOLD // 16 + 7


def bits(value) -> bytes:
    """The exact bytes of a result (a NumPy scalar or array)."""
    return np.ascontiguousarray(np.asarray(value)).tobytes()


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bits(a) == bits(b)


# ------------------------------------------------------------------------------- cases
# Each case builds (function name, args, kwargs, loss_shape) for a dtype.  Sizes span
# many blocks; the "big" ones exceed the parallel threshold so n_threads > 1 really
# starts a team (test_parallel_path_really_runs checks that this happens).

def _ce_index(rng, dtype, n, c, **kw):
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    t = rng.integers(0, c, n)
    return x, t, kw


def case(name, rng, dtype):
    if name == "mse_big":
        n = BIG
        return "mse_loss", (rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)), {}, (n,)
    if name == "mse_small":
        n = 20_011  # many blocks, serial path
        return "mse_loss", (rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)), {}, (n,)
    if name == "huber_big":
        shape = (BIG // 487 + 1, 487)
        x = (rng.standard_normal(shape) * 2).astype(dtype)
        y = rng.standard_normal(shape).astype(dtype)
        return "huber_loss", (x, y), {"delta": 0.7}, shape
    if name == "bce_big":
        n = BIG
        x = (rng.standard_normal(n) * 4).astype(dtype)
        y = rng.uniform(0, 1, n).astype(dtype)
        return "binary_cross_entropy_with_logits", (x, y), {}, (n,)
    if name == "bce_weights_rowperiod":
        # weight and pos_weight of shape (C,) with C >= 64: the kernel walks them as a
        # repeating row (period C), in runs that cross block boundaries.
        shape = (BIG // 100 + 1, 100)
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        y = (rng.uniform(0, 1, shape) < 0.3).astype(dtype)
        w = rng.uniform(0.1, 2.0, shape[1]).astype(dtype)
        pw = rng.uniform(0.5, 4.0, shape[1]).astype(dtype)
        return "binary_cross_entropy_with_logits", (x, y), {"weight": w, "pos_weight": pw}, shape
    if name == "bce_weights_full":
        # weights of input's shape (period = whole input) and a (N, 1) weight
        shape = (BIG // 37 + 1, 37)
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        y = rng.uniform(0, 1, shape).astype(dtype)
        w = rng.uniform(0.1, 2.0, (shape[0], 1)).astype(dtype)
        pw = rng.uniform(0.5, 4.0, shape).astype(dtype)
        return "binary_cross_entropy_with_logits", (x, y), {"weight": w, "pos_weight": pw}, shape
    if name == "ce_c10":
        n = BIG // 10 + 1  # 256 rows per block
        x, t, kw = _ce_index(rng, dtype, n, 10)
        return "cross_entropy", (x, t), kw, (n,)
    if name == "ce_c1000_smooth_weight_ignore":
        n = BIG // 1000 + 1  # 4 rows per block
        x, t, _ = _ce_index(rng, dtype, n, 1000)
        t[::7] = -100
        kw = {"weight": rng.uniform(0.2, 3.0, 1000).astype(dtype), "label_smoothing": 0.1}
        return "cross_entropy", (x, t), kw, (n,)
    if name == "ce_c5000_rows_bigger_than_block":
        n = BIG // 5000 + 1  # one row per block
        x, t, _ = _ce_index(rng, dtype, n, 5000)
        t[3] = 17
        return "cross_entropy", (x, t), {"ignore_index": 17, "label_smoothing": 0.3}, (n,)
    if name == "ce_soft":
        n, c = BIG // 33 + 1, 33
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        q = rng.dirichlet(np.ones(c), n).astype(dtype)
        return "cross_entropy", (x, q), {"weight": rng.uniform(0.5, 2, c).astype(dtype),
                                         "label_smoothing": 0.05}, (n,)
    if name == "ce_kdim":
        side = int((BIG / 35) ** 0.5) + 1
        x = (rng.standard_normal((7, 5, side, side + 6)) * 3).astype(dtype)
        t = rng.integers(0, 5, (7, side, side + 6))
        return "cross_entropy", (x, t), {}, t.shape
    if name == "ce_small_serial":
        x, t, kw = _ce_index(rng, dtype, 3000, 7)  # 21 000 logits: many blocks, serial path
        return "cross_entropy", (x, t), kw, (3000,)
    raise KeyError(name)


CASES = ["mse_big", "mse_small", "huber_big", "bce_big", "bce_weights_rowperiod",
         "bce_weights_full", "ce_c10", "ce_c1000_smooth_weight_ignore",
         "ce_c5000_rows_bigger_than_block", "ce_soft", "ce_kdim", "ce_small_serial"]


def _call(fname, args, kwargs, reduction, grad, grad_output, n_threads, out=None):
    if grad:
        extra = {"grad_output": grad_output}
        if out is not None:
            extra["out"] = out
        return getattr(fl, fname + "_with_grad")(*args, reduction=reduction, **kwargs, **extra,
                                                  n_threads=n_threads)
    return getattr(fl, fname)(*args, reduction=reduction, **kwargs, n_threads=n_threads), None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CASES)
def test_bit_identical_across_threads_and_calls(name, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{name} {np.dtype(dtype).name}".encode()))
    fname, args, kwargs, loss_shape = case(name, rng, dtype)
    for reduction in REDUCTIONS:
        if reduction == "none":
            grad_output = rng.uniform(-2, 2, loss_shape).astype(dtype)
        else:
            grad_output = 0.7
        ref_loss, ref_grad = _call(fname, args, kwargs, reduction, True, grad_output, 1)
        ref_fwd, _ = _call(fname, args, kwargs, reduction, False, None, 1)
        assert np.all(np.isfinite(ref_loss)) and np.all(np.isfinite(ref_grad))
        # every thread count, and repeated calls (of the serial and a threaded path)
        for n_threads in THREADS + (None, 1, 2):
            loss, grad = _call(fname, args, kwargs, reduction, True, grad_output, n_threads)
            assert same_bits(loss, ref_loss), (name, reduction, n_threads, loss, ref_loss)
            assert same_bits(grad, ref_grad), (name, reduction, n_threads)
        for n_threads in THREADS + (None,):
            fwd, _ = _call(fname, args, kwargs, reduction, False, None, n_threads)
            assert same_bits(fwd, ref_fwd), (name, reduction, n_threads, fwd, ref_fwd)
        # the gradient written into a caller's buffer (out=) is the same bits
        out = np.full(args[0].shape, np.nan, dtype)
        loss, grad = _call(fname, args, kwargs, reduction, True, grad_output, 3, out=out)
        assert grad is out
        assert same_bits(loss, ref_loss) and same_bits(out, ref_grad)


@pytest.mark.parametrize("fname", ["mse_loss", "huber_loss", "binary_cross_entropy_with_logits",
                                   "cross_entropy"])
def test_forward_only_equals_fused_loss(fname):
    """The loss of name(...) and of name_with_grad(...) are the same bits: one kernel,
    one block order, with or without the gradient pass."""
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        if fname == "cross_entropy":
            n = BIG // 9 + 1
            args = ((rng.standard_normal((n, 9)) * 3).astype(dtype), rng.integers(0, 9, n))
        else:
            args = (rng.standard_normal(BIG).astype(dtype), rng.uniform(0, 1, BIG).astype(dtype))
        for reduction in REDUCTIONS:
            for n_threads in (1, 3):
                a = getattr(fl, fname)(*args, reduction=reduction, n_threads=n_threads)
                b, _ = getattr(fl, fname + "_with_grad")(*args, reduction=reduction, n_threads=n_threads)
                assert same_bits(a, b), (fname, dtype, reduction, n_threads)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bit_identical_on_every_simd_path(simd_path, dtype):
    """Within one SIMD build, thread counts never change a bit (the threaded path of
    each instruction-set variant is exercised, not only the default one)."""
    rng = np.random.default_rng(11)
    for name in ("mse_big", "bce_weights_rowperiod", "ce_c10", "ce_c1000_smooth_weight_ignore"):
        fname, args, kwargs, _ = case(name, rng, dtype)
        for reduction in ("mean", "none"):
            ref = _call(fname, args, kwargs, reduction, True, None, 1)
            for n_threads in (2, 3, 8):
                got = _call(fname, args, kwargs, reduction, True, None, n_threads)
                assert same_bits(got[0], ref[0]) and same_bits(got[1], ref[1]), \
                    (simd_path, name, reduction, n_threads)


def test_threadpoolctl_and_default_threads_do_not_change_bits():
    """n_threads=None asks OpenMP; limiting it with threadpoolctl changes nothing."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((BIG // 10 + 1, 10)) * 3).astype(np.float32)
    t = rng.integers(0, 10, BIG // 10 + 1)
    ref = fl.cross_entropy_with_grad(x, t, n_threads=1)
    for limit in (1, 2, 3):
        with threadpoolctl.threadpool_limits(limits=limit, user_api="openmp"):
            got = fl.cross_entropy_with_grad(x, t)
        assert same_bits(got[0], ref[0]) and same_bits(got[1], ref[1]), limit


def test_parallel_path_really_runs():
    """The big cases above do start an OpenMP team of n_threads threads (else the
    determinism tests would prove nothing about threads).  libgomp keeps a pool of
    n_threads - 1 workers after a parallel call; a fresh interpreter counts its
    threads in /proc/self/task before and after."""
    if not _dispatch.kernels.built_with_openmp():
        pytest.skip("built without OpenMP: n_threads is ignored")
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc/self/task (Linux)")
    code = textwrap.dedent(
        f"""
        import os, numpy as np, fastloss as fl
        count = lambda: len(os.listdir("/proc/self/task"))
        x = np.ones({BIG}, np.float32)
        before = count()
        fl.mse_loss(x, x, n_threads=1)
        serial = count()
        fl.mse_loss(x, x, n_threads=8)
        parallel = count()
        fl.mse_loss(x[:{THRESHOLD} - 1], x[:{THRESHOLD} - 1], n_threads=8)
        small = count()
        print(before, serial, parallel, small)
        """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    before, serial, parallel, small = map(int, result.stdout.split())
    assert serial == before, "a serial call must not start threads"
    assert parallel >= before + 7, f"n_threads=8 above the threshold started no team: {result.stdout}"
    assert small == parallel, "under the threshold the call must stay on the calling thread"


# ------------------------------------------------- the losses of the second layout
# One entry per loss (test_losses.ONE_PER_LOSS: weights, kinks, clamps and options on),
# each just above the threshold, one dtype each (alternating) to keep big inputs few.

from test_losses import ONE_PER_LOSS, kl_quiet, shaped_case  # noqa: E402


@pytest.mark.parametrize("name", sorted(ONE_PER_LOSS))
def test_new_losses_bit_identical_across_threads(name):
    dtype = (np.float32, np.float64)[sorted(ONE_PER_LOSS).index(name) % 2]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    args, kwargs, loss_shape = shaped_case(name, BIG, rng, dtype)
    assert args[0].size >= THRESHOLD
    fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
    with kl_quiet():
        # ("mean" is "sum" over a denominator: the same block sums)
        for reduction in ("none", "sum"):
            go = rng.uniform(-2, 2, loss_shape).astype(dtype) if reduction == "none" else 0.7
            want = fused(*args, reduction=reduction, grad_output=go, n_threads=1, **kwargs)
            want_fwd = forward(*args, reduction=reduction, n_threads=1, **kwargs)
            assert same_bits(want_fwd, want[0]), (name, reduction)
            for n_threads in THREADS[1:]:
                got = fused(*args, reduction=reduction, grad_output=go, n_threads=n_threads,
                            **kwargs)
                assert all(g is None and w is None or same_bits(g, w)
                           for g, w in zip(got, want)), (name, reduction, n_threads)
            fwd = forward(*args, reduction=reduction, n_threads=3, **kwargs)
            assert same_bits(fwd, want_fwd), (name, reduction)
            out = np.full(args[0].shape, np.nan, dtype)
            if name == "gaussian_nll_loss":
                out = (out, np.full(np.shape(args[2]), np.nan, dtype))
            got = fused(*args, reduction=reduction, grad_output=go, n_threads=8, out=out,
                        **kwargs)
            for g, w, o in zip(got[1:], want[1:], out if isinstance(out, tuple) else (out,)):
                assert g is o and same_bits(g, w), (name, reduction, "out=")


# ------------------------------------------ an element's bits, wherever it falls
# A block's vector loop and its scalar tail must compute the same bits, or an element's
# result depends on its position (and fastloss.dask's chunks would differ from one call).

POSITION_CASES = {
    "mse_loss": "normal", "huber_loss": "normal", "l1_loss": "normal",
    "smooth_l1_loss": "normal", "log_cosh_loss": "normal", "poisson_nll_loss": "counts",
    "binary_cross_entropy_with_logits": "binary", "sigmoid_focal_loss": "binary",
    "soft_margin_loss": "sign", "hinge_loss": "sign", "binary_cross_entropy": "probs",
    "kl_div": "log_probs", "msle_loss": "positive", "gaussian_nll_loss": "var",
}


def _position_operands(kind, n, rng, dtype):
    x = rng.standard_normal(n) * rng.choice([0.3, 1.0, 4.0])
    y = rng.standard_normal(n)
    extra = ()
    if kind == "counts":
        y = np.abs(y) * 3
    elif kind == "binary":
        y = (rng.random(n) < 0.5) * 1.0
    elif kind == "sign":
        y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    elif kind == "probs":
        x, y = rng.random(n), (rng.random(n) < 0.5) * 1.0
    elif kind == "log_probs":
        x, y = -np.abs(x), rng.random(n)
    elif kind == "positive":
        x, y = np.abs(x), np.abs(y)
    elif kind == "var":
        extra = (rng.uniform(0.1, 3.0, n).astype(dtype),)
    return (x.astype(dtype), y.astype(dtype)) + extra


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(POSITION_CASES))
def test_element_bits_do_not_depend_on_position(name, dtype):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    fused = getattr(fl, name + "_with_grad")
    with kl_quiet():
        for _ in range(25):
            n = int(rng.integers(2, 3000))
            start = int(rng.integers(1, n))
            args = _position_operands(POSITION_CASES[name], n, rng, dtype)
            for reduction in ("none", "sum"):
                whole = fused(*args, reduction=reduction)
                tail = fused(*(a[start:].copy() for a in args), reduction=reduction)
                parts = [(whole[1], tail[1])]
                if reduction == "none":
                    parts.append((whole[0], tail[0]))
                for w, t in parts:
                    assert bits(w[start:]) == bits(t), (name, n, start, reduction)
