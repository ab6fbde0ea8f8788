"""Memory safety: no leaks on any path, and 64-bit indexing above 2**31 elements.

* Leaks: every public function is called many thousands of times -- all reductions,
  with and without the gradient and out=, on inputs small enough for pymalloc and
  large enough for malloc, and on every error path (bad index, dtype, shape,
  reduction, smoothing, delta, out, grad_output, n_threads).  After a warm-up the
  process's resident memory (/proc/self/statm), the glibc heap in use (mallinfo2:
  catches a leaked malloc of a few bytes per call, e.g. a block-sum buffer not freed
  on an error path) and the number of live Python allocator blocks
  (sys.getallocatedblocks: catches leaked references) must stay flat.
* Above 2**31 elements (slow): a loss over 2**31 + 100 float32 elements indexes every
  element with 64-bit indices.  The arrays are views of one np.zeros buffer, which
  the OS maps lazily: reading untouched pages maps the shared zero page, so only the
  few pages written are ever resident (cost: one pass over ~8.6 GB of address
  space, no RAM).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
import sys

import numpy as np
import pytest

import fastloss as fl

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def _mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    return fn


MALLINFO2 = _mallinfo2()


def heap_in_use() -> int:
    """Bytes malloc'ed and not freed (main arena + mmapped chunks); 0 if unknown."""
    if MALLINFO2 is None:
        return 0
    info = MALLINFO2()
    return info.uordblks + info.hblkhd


@pytest.fixture
def slow_enabled(request):
    """pyproject registers `slow` but does not deselect it: run only when asked."""
    if "slow" not in (request.config.getoption("markexpr") or "") and \
            os.environ.get("FASTLOSS_SLOW") != "1":
        pytest.skip("slow: run with -m slow or FASTLOSS_SLOW=1")


# ------------------------------------------------------------------------------ leaks

def _calls():
    """(name, thunk, expected exception or None): one of every path."""
    rng = np.random.default_rng(0)
    out = []
    for n, dtype in ((50, np.float32), (5000, np.float64)):
        x = rng.standard_normal(n).astype(dtype)
        y = rng.uniform(0, 1, n).astype(dtype)
        buf = np.empty_like(x)
        go = rng.standard_normal(n).astype(dtype)
        C = 10
        logits = rng.standard_normal((n // C, C)).astype(dtype)
        t = rng.integers(0, C, n // C)
        t_bad = t.copy()
        t_bad[-1] = C
        q = rng.dirichlet(np.ones(C), n // C).astype(dtype)
        w = rng.uniform(0.5, 2, C).astype(dtype)
        gbuf = np.empty_like(logits)
        kdim = rng.standard_normal((3, C, 4, 5)).astype(dtype)
        tk = rng.integers(0, C, (3, 4, 5))
        for red in ("none", "mean", "sum"):
            out += [
                (f"mse {red}", lambda red=red, x=x, y=y: fl.mse_loss(x, y, reduction=red), None),
                (f"mse_grad {red}", lambda red=red, x=x, y=y, b=buf:
                    fl.mse_loss_with_grad(x, y, reduction=red, out=b), None),
                (f"huber {red}", lambda red=red, x=x, y=y: fl.huber_loss(x, y, reduction=red, delta=0.5), None),
                (f"huber_grad {red}", lambda red=red, x=x, y=y, go=go:
                    fl.huber_loss_with_grad(x, y, reduction=red,
                                            grad_output=go if red == "none" else 2.0), None),
                (f"bce {red}", lambda red=red, x=x, y=y: fl.binary_cross_entropy_with_logits(
                    x, y, reduction=red, pos_weight=np.float64(2.0)), None),
                (f"bce_grad {red}", lambda red=red, x=x, y=y:
                    fl.binary_cross_entropy_with_logits_with_grad(
                        x.reshape(-1, 10), y.reshape(-1, 10), weight=np.arange(10.0),
                        reduction=red), None),
                (f"ce {red}", lambda red=red, a=logits, t=t, w=w: fl.cross_entropy(
                    a, t, weight=w, reduction=red, label_smoothing=0.1), None),
                (f"ce_grad {red}", lambda red=red, a=logits, t=t, g=gbuf: fl.cross_entropy_with_grad(
                    a, t, reduction=red, out=g), None),
                (f"ce_soft {red}", lambda red=red, a=logits, q=q: fl.cross_entropy_with_grad(
                    a, q, reduction=red), None),
                (f"ce_kdim {red}", lambda red=red, a=kdim, t=tk: fl.cross_entropy_with_grad(
                    a, t, reduction=red, n_threads=2), None),
            ]
        out += [
            ("ce bad index", lambda a=logits, t=t_bad: fl.cross_entropy(a, t), IndexError),
            ("ce_grad bad index", lambda a=logits, t=t_bad: fl.cross_entropy_with_grad(a, t), IndexError),
            ("ce bad smoothing", lambda a=logits, t=t: fl.cross_entropy(a, t, label_smoothing=float("nan")), ValueError),
            ("ce bad weight", lambda a=logits, t=t: fl.cross_entropy(a, t, weight=np.ones(C + 1)), ValueError),
            ("ce int input", lambda t=t: fl.cross_entropy(t.reshape(-1, 1), t), TypeError),
            ("ce bad target dtype", lambda a=logits: fl.cross_entropy(a, np.zeros(len(a), bool)), TypeError),
            ("mse shape", lambda x=x: fl.mse_loss(x, x[:-1]), ValueError),
            ("mse reduction", lambda x=x, y=y: fl.mse_loss(x, y, reduction="avg"), ValueError),
            ("mse complex", lambda x=x: fl.mse_loss(x.astype(np.complex64), x), TypeError),
            ("huber delta", lambda x=x, y=y: fl.huber_loss(x, y, delta=-1.0), ValueError),
            ("bce weight shape", lambda x=x, y=y: fl.binary_cross_entropy_with_logits(
                x, y, weight=np.ones(len(x) + 1)), ValueError),
            ("grad out dtype", lambda x=x, y=y: fl.mse_loss_with_grad(
                x, y, out=np.empty(len(x), np.float16)), TypeError),
            ("grad out overlap", lambda x=x, y=y: fl.mse_loss_with_grad(x, y, out=y), ValueError),
            ("grad_output shape", lambda x=x, y=y: fl.huber_loss_with_grad(
                x, y, reduction="none", grad_output=np.ones(3)), ValueError),
            ("n_threads zero", lambda x=x, y=y: fl.mse_loss(x, y, n_threads=0), ValueError),
            ("n_threads float", lambda x=x, y=y: fl.mse_loss(x, y, n_threads=1.5), TypeError),
        ]
    return out


# One bad argument per new loss: (keyword or positional index, value, exception).
_BAD = {
    "mse_loss": ("weight", np.ones(3), ValueError),
    "l1_loss": ("weight", np.ones(3), ValueError),
    "huber_loss": ("delta", 0.0, ValueError),
    "smooth_l1_loss": ("beta", -1.0, ValueError),
    "log_cosh_loss": ("reduction", "avg", ValueError),
    "msle_loss": (1, np.zeros(3, np.int64), TypeError),
    "binary_cross_entropy": (0, "domain", ValueError),
    "soft_margin_loss": ("n_threads", 0, ValueError),
    "hinge_loss": ("margin", "x", TypeError),
    "multilabel_soft_margin_loss": ("weight", np.ones(3), ValueError),
    "sigmoid_focal_loss": ("gamma", -1.0, ValueError),
    "kl_div": ("reduction", "avg", ValueError),
    "poisson_nll_loss": ("eps", "x", TypeError),
    "gaussian_nll_loss": (2, -1.0, ValueError),
    "nll_loss": (1, "range", IndexError),
    "multi_margin_loss": ("p", 3, ValueError),
}


def _new_loss_calls():
    """The new losses (test_losses.ONE_PER_LOSS): fused for each reduction, forward, out=,
    and one error path each (forward and fused)."""
    from test_losses import ONE_PER_LOSS, kl_quiet, shaped_case

    rng = np.random.default_rng(1)
    out = []
    for i, name in enumerate(sorted(ONE_PER_LOSS)):
        dtype = (np.float32, np.float64)[i % 2]
        args, kwargs, loss_shape = shaped_case(name, (50, 5000)[i % 2], rng, dtype)
        fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
        buf = np.empty_like(args[0])
        if name == "gaussian_nll_loss":
            buf = (buf, np.empty_like(args[2]))
        for red in ("none", "mean", "sum"):
            def quiet(f, *a, **k):
                with kl_quiet():
                    return f(*a, **k)
            go = rng.uniform(-1, 1, loss_shape).astype(dtype) if red == "none" else 2.0
            out.append((f"{name}_grad {red}", lambda f=fused, a=args, k=kwargs, r=red, g=go:
                        quiet(f, *a, reduction=r, grad_output=g, **k), None))
            if red == "none":
                out.append((f"{name} {red}", lambda f=forward, a=args, k=kwargs, r=red:
                            quiet(f, *a, reduction=r, **k), None))
            if red == "sum":
                out.append((f"{name}_grad out {red}", lambda f=fused, a=args, k=kwargs, r=red,
                            b=buf: quiet(f, *a, reduction=r, out=b, **k), None))
        where, value, exc = _BAD[name]
        bad_args, bad_kwargs = list(args), dict(kwargs)
        if isinstance(value, str) and value == "domain":
            bad_args[0] = args[0].copy()
            bad_args[0].reshape(-1)[-1] = 1.5
        elif isinstance(value, str) and value == "range":
            bad_args[1] = args[1].copy()
            bad_args[1].reshape(-1)[-1] = 40
        elif isinstance(where, int):
            bad_args[where] = value
        else:
            bad_kwargs[where] = value
        for f in (forward, fused):
            out.append((f"{name} error", lambda f=f, a=tuple(bad_args), k=bad_kwargs:
                        f(*a, **k), exc))
    return out


def _run_all(calls, times):
    for _ in range(times):
        for name, thunk, exc in calls:
            if exc is None:
                thunk()
            else:
                try:
                    thunk()
                except exc:
                    pass
                else:
                    raise AssertionError(f"{name}: expected {exc.__name__}")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_leaks_on_any_path():
    calls = _calls()
    assert len(calls) > 60
    # 1500 calls of each of ~90 paths (~8 per function)
    _check_flat(calls, warm_up=200, rounds=5, per_round=300, heap_limit=32 * 2**10,
                blocks_limit=1000)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_leaks_new_losses():
    """The losses of the second layout, one table entry each (~110 paths): 400 calls of
    each, so a 32-byte malloc leaked per call by one path is 12.8 kB of heap and one Python
    object 400 blocks (measured noise: heap +0.1 kB, ~+150 blocks)."""
    calls = _new_loss_calls()
    assert len(calls) > 100
    _check_flat(calls, warm_up=60, rounds=4, per_round=100, heap_limit=10 * 2**10,
                blocks_limit=330)


def _check_flat(calls, *, warm_up, rounds, per_round, heap_limit, blocks_limit):
    """RSS, malloc'ed heap and Python blocks stay flat over many calls of every path."""
    _run_all(calls, warm_up)  # warm-up: allocator pools, OpenMP thread pool, caches
    gc.collect()
    rss, heap, blocks = [rss_bytes()], [heap_in_use()], [sys.getallocatedblocks()]
    for _ in range(rounds):
        _run_all(calls, per_round)
        gc.collect()
        rss.append(rss_bytes())
        heap.append(heap_in_use())
        blocks.append(sys.getallocatedblocks())
    n_calls = rounds * per_round
    grow_rss, grow_heap, grow_blocks = rss[-1] - rss[0], heap[-1] - heap[0], blocks[-1] - blocks[0]
    detail = (f"after {n_calls} calls of each of {len(calls)} paths: RSS {rss}, "
              f"heap {heap}, Python blocks {blocks}")
    # Measured noise (test_no_leaks_on_any_path): RSS +0, heap +0.4 kB, +150 blocks.  A
    # 16-byte malloc leaked by a single path there is 1500 * 32 B = 48 kB of heap; one
    # Python object leaked by a single path, 1500 blocks; one 5000-element array per
    # call, 60 MB of RSS.
    assert grow_rss < 8 * 2**20, detail
    if MALLINFO2 is not None:
        assert grow_heap < heap_limit, detail
    assert grow_blocks < blocks_limit, detail


# ------------------------------------------------------------- beyond 2**31 elements

N_BIG = 2**31 + 100


@pytest.mark.slow
def test_mse_above_2_31_elements(slow_enabled):
    """mse_loss 'sum'/'mean' over 2**31 + 100 float32 elements.  input = buf[:n] and
    target = buf[k:k + n] (one lazily-mapped zero buffer), with a few values planted
    around and beyond index 2**31; a planted value at position p takes part
    as an input element (p < n) and as a target element (k <= p < n + k).
    A 32-bit index would wrap and miss (or double) the planted values beyond 2**31."""
    k = 4096
    buf = np.zeros(N_BIG + k, np.float32)
    planted = {7: 1.0, 2**31 - 9000: 2.0, 2**31 - 1: 3.0, 2**31 + 50: 5.0,
               N_BIG - 1: 7.0, N_BIG + k - 1: 11.0}
    for p, v in planted.items():
        buf[p] = v
    x, y = buf[:N_BIG], buf[k:k + N_BIG]
    # the only nonzero terms are at i = p (x_i planted) and i = p - k (y_i planted)
    rows = sorted({i for p in planted for i in (p, p - k) if 0 <= i < N_BIG})
    want = float(sum((float(buf[i]) - float(buf[i + k])) ** 2 for i in rows))
    assert want > 0 and rows[-1] > 2**31
    got = fl.mse_loss(x, y, reduction="sum")
    assert got == want, (got, want)
    mean = fl.mse_loss(x, y, reduction="mean")
    assert mean == np.float32(want / N_BIG), (mean, want / N_BIG)
    # a single thread walks the same 64-bit range
    assert fl.mse_loss(x, y, reduction="sum", n_threads=1) == want


@pytest.mark.slow
def test_cross_entropy_above_2_31_logits(slow_enabled):
    """cross_entropy 'sum' over (2**19 + 1, 4096) float32 logits = 2**31 + 4096
    elements, all 0 except in the last row, whose loss differs: row offsets above
    2**31 must be 64-bit."""
    C = 4096
    N = 2**31 // C + 1
    logits = np.zeros((N, C), np.float32)
    logits[-1, 7] = 10.0
    target = np.zeros(N, np.int64)
    want = (N - 1) * math.log(C) + math.log(C - 1 + math.exp(10.0))
    got = fl.cross_entropy(logits, target, reduction="sum")
    assert abs(float(got) - want) <= 1e-6 * want, (float(got), want)
    got = fl.cross_entropy(logits, target, reduction="mean")
    assert abs(float(got) - want / N) <= 1e-6 * want / N
    # ignore every row but the last: the mean is the last row's loss alone
    target[:-1] = -100
    got = fl.cross_entropy(logits, target, reduction="mean")
    assert abs(float(got) - math.log(C - 1 + math.exp(10.0))) < 1e-5, float(got)
