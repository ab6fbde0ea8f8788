"""Thread safety and GIL release.

* Many Python threads call every function at once -- on inputs shared by all threads
  (read-only arrays) and on each thread's own inputs, with small inputs (serial
  kernels) and inputs above the PARALLEL_THRESHOLD-element threshold (so several OpenMP teams run
  at the same time, started from different Python threads) -- and every result must
  be bit-identical to the serial call's; the shared inputs must be left untouched.
* The GIL is released while a kernel runs, shown by counting, not timing: a Python
  thread increments a counter (releasing and retaking the GIL between increments,
  so it asks for it thousands of times a second) while the main thread is inside
  one kernel call.  A Python thread can only run Python code while it holds the GIL, so if the
  kernel held the GIL for its whole call the counter could advance at most once or
  twice around the call's boundaries.  The test asserts it advances many times
  *during* a single call, and checks the method itself on a call known to hold the
  GIL (the builtin sum over a range), where it must not.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastloss as fl
from fastloss import _dispatch

N_PY_THREADS = 8
# The kernels' threshold for starting a thread team (exported by the kernel module).
THRESHOLD = _dispatch.kernels.PARALLEL_THRESHOLD


def bits(value):
    return np.ascontiguousarray(np.asarray(value)).tobytes()


def same(a, b):
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bits(a) == bits(b)


def _inputs(rng, n, C, dtype):
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = rng.uniform(0, 1, n).astype(dtype)
    logits = (rng.standard_normal((n // C, C)) * 3).astype(dtype)
    t = rng.integers(0, C, n // C)
    t[::5] = -100
    q = rng.dirichlet(np.ones(C), n // C).astype(dtype)
    w = rng.uniform(0.5, 2, C).astype(dtype)
    return dict(x=x, y=y, logits=logits, t=t, q=q, w=w)


def _tasks(inp, tag, reductions=("none", "mean", "sum"), threads=(1, 2, None)):
    """(name, thunk) pairs covering every public function and reduction."""
    x, y, L, t, q, w = (inp[k] for k in ("x", "y", "logits", "t", "q", "w"))
    xr = x.reshape(-1, w.shape[0]) if x.size % w.shape[0] == 0 else x[None]
    yr = y.reshape(xr.shape)
    tasks = []
    for red in reductions:
        for nt in threads:
            tasks += [
                (f"{tag} mse {red} {nt}", lambda red=red, nt=nt: fl.mse_loss(x, y, reduction=red, n_threads=nt)),
                (f"{tag} mse_grad {red} {nt}", lambda red=red, nt=nt: fl.mse_loss_with_grad(
                    x, y, reduction=red, n_threads=nt)),
                (f"{tag} huber {red} {nt}", lambda red=red, nt=nt: fl.huber_loss(
                    x, y, reduction=red, delta=0.7, n_threads=nt)),
                (f"{tag} huber_grad {red} {nt}", lambda red=red, nt=nt: fl.huber_loss_with_grad(
                    x, y, reduction=red, delta=0.7, n_threads=nt)),
                (f"{tag} bce {red} {nt}", lambda red=red, nt=nt: fl.binary_cross_entropy_with_logits(
                    xr, yr, weight=w, pos_weight=w[::-1], reduction=red, n_threads=nt)),
                (f"{tag} bce_grad {red} {nt}", lambda red=red, nt=nt:
                    fl.binary_cross_entropy_with_logits_with_grad(xr, yr, reduction=red, n_threads=nt)),
                (f"{tag} ce {red} {nt}", lambda red=red, nt=nt: fl.cross_entropy(
                    L, t, weight=w, label_smoothing=0.1, reduction=red, n_threads=nt)),
                (f"{tag} ce_grad {red} {nt}", lambda red=red, nt=nt: fl.cross_entropy_with_grad(
                    L, t, reduction=red, n_threads=nt)),
                (f"{tag} ce_soft {red} {nt}", lambda red=red, nt=nt: fl.cross_entropy_with_grad(
                    L, q, weight=w, reduction=red, n_threads=nt)),
            ]
    return tasks


def _freeze(inp):
    for a in inp.values():
        a.flags.writeable = False
    return {k: a.copy() for k, a in inp.items()}


@pytest.mark.parametrize("size", ["small", "big"])
def test_concurrent_calls_match_serial(size):
    """small: every function, reduction and n_threads, serial kernels, 6 rounds;
    big (above the threading threshold, so several OpenMP teams at once): every
    function, one reduction, n_threads 2 and default, 1 round."""
    rng = np.random.default_rng(42)
    if size == "small":
        n, rounds, kinds = 6000, 6, {}
    else:
        n, rounds, kinds = (THRESHOLD // 10 + 100) * 10, 1, dict(reductions=("mean",), threads=(2, None))
    shared = {dt: _inputs(rng, n, 10, dt) for dt in (np.float32, np.float64)}
    pristine = {dt: _freeze(inp) for dt, inp in shared.items()}
    tasks = []
    for dt, inp in shared.items():
        tasks += _tasks(inp, f"shared {np.dtype(dt).name}", **kinds)
    # per-thread private inputs: same values, separate buffers (and out= buffers)
    private = [{dt: {k: a.copy() for k, a in shared[dt].items()} for dt in shared}
               for _ in range(N_PY_THREADS)]
    expected = {name: thunk() for name, thunk in tasks}
    outs = [np.empty_like(shared[np.float32]["logits"]) for _ in range(N_PY_THREADS)]

    def worker(k):
        order = list(range(len(tasks)))
        random.Random(k).shuffle(order)
        mine = []
        for dt, inp in private[k].items():
            mine += _tasks(inp, f"shared {np.dtype(dt).name}", **kinds)  # same names and values
        bad = []
        for _ in range(rounds):
            for i in order:
                for name, thunk in (tasks[i], mine[i]):
                    got = thunk()
                    if not same(got, expected[name]):
                        bad.append(name)
            # out= into this thread's own buffer
            L, t = private[k][np.float32]["logits"], private[k][np.float32]["t"]
            loss, g = fl.cross_entropy_with_grad(L, t, out=outs[k], n_threads=2)
            if not same((loss, g), expected["shared float32 ce_grad mean 2"]):
                bad.append("out=")
        return bad

    with ThreadPoolExecutor(N_PY_THREADS) as pool:
        results = list(pool.map(worker, range(N_PY_THREADS)))
    failures = sorted({name for bad in results for name in bad})
    assert not failures, f"results differ from the serial call under concurrency: {failures}"
    for dt in shared:
        for key, a in shared[dt].items():
            assert bits(a) == bits(pristine[dt][key]), f"shared input {key} was modified"


# ---------------------------------------------------------------------- GIL release

class Counter:
    """A Python thread that counts while it can get the GIL."""

    def __init__(self):
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.count += 1
            time.sleep(0)  # releases the GIL, then asks for it again at once

    def __enter__(self):
        self._thread.start()
        time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def counted(counter, call, attempts=3):
    """The counter's advance during one call of `call` (best of a few attempts, so a
    moment when the machine gives the counting thread no CPU does not fail it)."""
    best = 0
    for _ in range(attempts):
        before = counter.count
        call()
        best = max(best, counter.count - before)
        if best >= 50:
            break
    return best


@pytest.fixture(scope="module")
def big_inputs():
    rng = np.random.default_rng(7)
    n = 2**23
    return dict(
        x=rng.standard_normal(n),  # float64: ~10 ms a call even for MSE
        y=rng.uniform(0, 1, n),
        logits=rng.standard_normal((n // 16, 16), dtype=np.float32),
        t=rng.integers(0, 16, n // 16),
    )


CALLS = {
    "mse_loss": lambda d, nt: fl.mse_loss(d["x"], d["y"], n_threads=nt),
    "mse_loss_with_grad": lambda d, nt: fl.mse_loss_with_grad(d["x"], d["y"], n_threads=nt),
    "huber_loss": lambda d, nt: fl.huber_loss(d["x"], d["y"], n_threads=nt),
    "huber_loss_with_grad": lambda d, nt: fl.huber_loss_with_grad(d["x"], d["y"], n_threads=nt),
    "binary_cross_entropy_with_logits":
        lambda d, nt: fl.binary_cross_entropy_with_logits(d["x"], d["y"], n_threads=nt),
    "binary_cross_entropy_with_logits_with_grad":
        lambda d, nt: fl.binary_cross_entropy_with_logits_with_grad(d["x"], d["y"], n_threads=nt),
    "cross_entropy": lambda d, nt: fl.cross_entropy(d["logits"], d["t"], n_threads=nt),
    "cross_entropy_with_grad":
        lambda d, nt: fl.cross_entropy_with_grad(d["logits"], d["t"], n_threads=nt),
}


def test_counting_method_detects_a_gil_holding_call():
    """Control: during a call that holds the GIL throughout (builtin sum over a range,
    ~30 ms) the counting thread can hardly advance."""
    with Counter() as counter:
        advance = min(counted(counter, lambda: sum(range(3_000_000)), attempts=1)
                      for _ in range(3))
    assert advance <= 5, advance


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", list(CALLS))
def test_gil_released_during_kernel(big_inputs, name, n_threads):
    """While one call of `name` runs on 2**23 elements (10-40 ms), the counting thread
    advances dozens of times -- measured here: 60-450 -- where it can advance at most
    once or twice if the call held the GIL (the control above: 1)."""
    call = CALLS[name]
    call(big_inputs, n_threads)  # warm-up (page faults of the first allocation, thread pool)
    with Counter() as counter:
        advance = counted(counter, lambda: call(big_inputs, n_threads))
    assert advance >= 20, f"{name}: the counter advanced only {advance} times during the call"


# ------------------------------------------------- the losses of the second layout

from test_losses import ONE_PER_LOSS, kl_quiet, shaped_case  # noqa: E402


def test_new_losses_concurrent_calls_match_serial():
    """Every new loss (one entry each, test_losses.ONE_PER_LOSS) and reduction, fused and
    forward, called at once from 8 Python threads on shared read-only inputs, with each
    thread's out= buffer: bit-identical to the serial calls. Two losses also run above
    the threshold with n_threads=2, so OpenMP teams overlap."""
    rng = np.random.default_rng(7)
    tasks = []
    frozen = []
    for i, name in enumerate(sorted(ONE_PER_LOSS)):
        dtype = (np.float32, np.float64)[i % 2]
        sizes = [2000] + ([THRESHOLD + 500] if name in ("gaussian_nll_loss", "nll_loss")
                          else [])
        for n in sizes:
            args, kwargs, loss_shape = shaped_case(name, n, rng, dtype)
            arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
            for a in arrays:
                a.flags.writeable = False
            frozen += [(a, a.copy()) for a in arrays]
            reductions = ("none", "mean", "sum") if n < THRESHOLD else ("sum",)
            nt = 1 if n < THRESHOLD else 2
            for red in reductions:
                go = rng.uniform(-1, 1, loss_shape).astype(dtype) if red == "none" else 0.5
                fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
                tasks.append((f"{name} {n} {red}", lambda f=forward, a=args, k=kwargs, r=red,
                              nt=nt: f(*a, reduction=r, n_threads=nt, **k), None))
                tasks.append((f"{name}_grad {n} {red}", lambda f=fused, a=args, k=kwargs, r=red,
                              g=go, nt=nt, out=None: f(*a, reduction=r, grad_output=g,
                                                       n_threads=nt, out=out, **k), args[0]))
    with kl_quiet():
        expected = {name: thunk() for name, thunk, _ in tasks}

    def worker(k):
        order = list(range(len(tasks)))
        random.Random(k).shuffle(order)
        bad = []
        with kl_quiet():
            for _ in range(1):
                for i in order:
                    name, thunk, x = tasks[i]
                    if not same(thunk(), expected[name]):
                        bad.append(name)
                    if x is not None and "gaussian" not in name:
                        out = np.empty_like(x)
                        got = thunk(out=out)
                        if got[1] is not out or not same(got, expected[name]):
                            bad.append(name + " out=")
        return bad

    with ThreadPoolExecutor(N_PY_THREADS) as pool:
        results = list(pool.map(worker, range(N_PY_THREADS)))
    failures = sorted({name for bad in results for name in bad})
    assert not failures, f"results differ from the serial call under concurrency: {failures}"
    for a, before in frozen:
        assert bits(a) == bits(before), "a shared input was modified"
