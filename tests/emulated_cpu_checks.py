"""Every public loss against fastloss.reference, small enough to run under CPU emulation.

``python tests/emulated_cpu_checks.py EXPECTED_PATH`` asserts that fastloss chose the
SIMD path EXPECTED_PATH, then runs each loss and its ``_with_grad`` twin on inputs that
reach every kernel path: cross-entropy rows short (the narrow kernel, rows as SIMD lanes:
under 64 bytes) and long, index and soft targets, class weights, ignore_index,
label_smoothing, unbatched and K-dim input; MSE, Huber and BCE with weight and pos_weight;
every other loss with each option set of tests/test_losses.py's table; float32 and float64;
every reduction, grad_output and out=; and inputs above the thread threshold on 2 threads. tests/test_emulated_cpu.py runs it under QEMU; it prints
one line per group and "checked N calls" at the end, and exits non-zero on any mismatch.

Tolerances are tests/test_functional.py's: float64 rtol 1e-12 / atol 1e-14, float32
rtol 2e-5 / atol 1e-6.
"""

import sys
import time

import numpy as np

import fastloss as fl
from fastloss import _dispatch
from fastloss import reference as ref

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
REDUCTIONS = ("none", "mean", "sum")
THRESHOLD = _dispatch.kernels.PARALLEL_THRESHOLD
calls = 0


def check(name, x, target, loss_shape, *, grad_output=None, use_out=False, n_threads=None,
          **kwargs):
    """fastloss.<name>_with_grad and fastloss.<name> against reference.<name>_with_grad:
    types, out= identity, forward == fused loss bit for bit, inputs unmodified."""
    global calls
    fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
    reduction = kwargs.get("reduction", "mean")
    inputs = [a for a in (x, target, grad_output, *kwargs.values()) if isinstance(a, np.ndarray)]
    saved = [a.copy() for a in inputs]
    out = np.full(x.shape, np.nan, x.dtype) if use_out else None
    loss, grad = fused(x, target, grad_output=grad_output, out=out, n_threads=n_threads, **kwargs)
    loss_fwd = forward(x, target, n_threads=n_threads, **kwargs)
    rloss, rgrad = getattr(ref, name + "_with_grad")(x, target, grad_output=grad_output, **kwargs)
    what = f"{name} {x.dtype} {x.shape} threads={n_threads} out={use_out} {sorted(kwargs)}"
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == tuple(loss_shape), what
        assert loss.dtype == x.dtype, what
    else:
        assert type(loss) is x.dtype.type, what
    assert grad.dtype == x.dtype and grad.shape == x.shape, what
    if use_out:
        assert grad is out, what
    np.testing.assert_array_equal(loss_fwd, loss, err_msg="forward != fused " + what)
    tol = TOL[x.dtype.type]
    np.testing.assert_allclose(loss, rloss, **tol, err_msg="loss " + what)
    np.testing.assert_allclose(grad, rgrad, **tol, err_msg="grad " + what)
    for before, after in zip(saved, inputs):
        np.testing.assert_array_equal(before, after, err_msg="argument modified " + what)
    calls += 1
    return loss, grad


def every_grad_output(name, x, target, loss_shape, rng, **kwargs):
    """Default, scalar and (for "none") per-loss grad_output, with and without out=."""
    variants = [(None, False), (0.7, True)]
    if kwargs.get("reduction", "mean") == "none":
        variants.append((rng.uniform(-2, 2, loss_shape).astype(x.dtype), True))
    for grad_output, use_out in variants:
        check(name, x, target, loss_shape, grad_output=grad_output, use_out=use_out, **kwargs)


def cross_entropy(rng):
    # (dtype, C): float32 C=3, 10 and float64 C=5 have rows under 64 bytes (narrow kernel).
    for dtype, C in [(np.float32, 3), (np.float32, 10), (np.float64, 5),
                     (np.float32, 100), (np.float64, 130)]:
        N = 67
        x = (rng.standard_normal((N, C)) * 3).astype(dtype)
        y = rng.integers(0, C, N)
        y[::7] = -100
        weight = rng.uniform(0.2, 2, C).astype(dtype)
        soft = rng.dirichlet(np.ones(C), N).astype(dtype)
        for reduction in REDUCTIONS:
            for w in (None, weight):
                for eps in (0.0, 0.1):
                    every_grad_output("cross_entropy", x, y, (N,), rng, weight=w,
                                      reduction=reduction, label_smoothing=eps)
                    check("cross_entropy", x, soft, (N,), weight=w, reduction=reduction,
                          label_smoothing=eps)
            # ignore_index naming a real class (its rows are ignored)
            check("cross_entropy", x, rng.integers(0, C, N), (N,), ignore_index=1,
                  reduction=reduction)
            # unbatched (C,) input
            check("cross_entropy", x[0], y[1:2].reshape(()), (), reduction=reduction)
            # K-dim (N, C, d1, d2): index and soft targets
            xk = (rng.standard_normal((3, C, 4, 5)) * 3).astype(dtype)
            yk = rng.integers(0, C, (3, 4, 5))
            yk[0, 0] = -100
            pk = rng.dirichlet(np.ones(C), (3, 4, 5)).transpose(0, 3, 1, 2).astype(dtype)
            check("cross_entropy", xk, yk, (3, 4, 5), weight=weight, reduction=reduction,
                  label_smoothing=0.05)
            check("cross_entropy", xk, np.ascontiguousarray(pk), (3, 4, 5), reduction=reduction)


def pointwise(rng):
    shape = (53, 100)  # several pointwise blocks of 1024, the last partial; above the GIL cut-off
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        y = rng.standard_normal(shape).astype(dtype)
        t = rng.uniform(0, 1, shape).astype(dtype)
        t[::3] = np.round(t[::3])
        for reduction in REDUCTIONS:
            every_grad_output("mse_loss", x, y, shape, rng, reduction=reduction)
            for delta in (0.5, 1.0):
                every_grad_output("huber_loss", x, y, shape, rng, reduction=reduction,
                                  delta=delta)
            for w, pw in [(None, None), (rng.uniform(0.1, 2, (53, 1)).astype(dtype), None),
                          (None, rng.uniform(0.2, 5, 100).astype(dtype)),
                          (rng.uniform(0.1, 2, shape).astype(dtype),
                           rng.uniform(0.2, 5, shape).astype(dtype))]:
                every_grad_output("binary_cross_entropy_with_logits", x, t, shape, rng,
                                  weight=w, pos_weight=pw, reduction=reduction)


def threaded(rng):
    """Above the thread threshold, on 2 threads, within tolerance of the reference. One case
    per threaded loop: cross-entropy rows long and narrow, and the pointwise block loop
    (shared by the three pointwise losses, whose maths pointwise() covers) with MSE and with
    BCE's weight and pos_weight. Emulated AVX2/FMA code runs these ~1e6-element calls at
    several seconds each, so one reduction per case, and no 1-thread twin: that the thread
    count never changes a bit is tests/test_determinism.py's, natively, on every path the
    CPU runs (the instructions do not depend on the CPU model that runs them)."""
    cases = []
    for dtype, C, reduction in [(np.float64, 100, "mean"), (np.float32, 10, "none")]:
        N = THRESHOLD // C + 500
        x = (rng.standard_normal((N, C)) * 3).astype(dtype)
        y = rng.integers(0, C, N)
        y[::11] = -100
        cases.append(("cross_entropy", x, y, (N,), dict(label_smoothing=0.1,
                                                       reduction=reduction)))
    rows = THRESHOLD // 100 + 10
    x = (rng.standard_normal((rows, 100)) * 3).astype(np.float32)
    t = rng.uniform(0, 1, (rows, 100)).astype(np.float32)
    cases += [("mse_loss", x, t, x.shape, dict(reduction="mean")),
              ("binary_cross_entropy_with_logits", x, t, x.shape,
               dict(weight=rng.uniform(0.1, 2, (rows, 1)).astype(np.float32),
                    pos_weight=rng.uniform(0.2, 5, 100).astype(np.float32), reduction="none"))]
    for name, x, target, shape, kwargs in cases:
        assert x.size >= THRESHOLD, (name, x.size)
        check(name, x, target, shape, n_threads=2, **kwargs)


def other_losses(rng):
    """Every loss of tests/test_losses.py's table (nll, multi-margin, focal, KL, ...) with
    each of its option sets, on its largest shape there (several kernel blocks), both
    dtypes, every reduction, with out=; then two of them above the thread threshold on 2
    threads: sigmoid_focal_loss (the longest per-element code) and multi_margin_loss (the
    class-rows family's loop)."""
    global calls
    import test_losses as table

    for name, opts, shapes in table.CASES:
        shape = max(shapes, key=lambda s: int(np.prod(s)))
        for dtype in (np.float32, np.float64):
            for reduction in REDUCTIONS:
                args, kwargs, loss_shape = table.loss_case(name, opts, shape, rng, dtype)
                table.run_vs_reference(name, args, kwargs, loss_shape, reduction,
                                       out_kind="fresh")
                calls += 1
    for name in ("sigmoid_focal_loss", "multi_margin_loss"):
        args, kwargs, _ = table.shaped_case(name, THRESHOLD + 1000, rng, np.float32)
        assert args[0].size >= THRESHOLD, (name, args[0].size)
        loss, grad = getattr(fl, name + "_with_grad")(*args, reduction="mean", n_threads=2,
                                                      **kwargs)
        rloss, rgrad = getattr(ref, name + "_with_grad")(*args, reduction="mean", **kwargs)
        np.testing.assert_allclose(loss, rloss, **TOL[np.float32], err_msg=name)
        np.testing.assert_allclose(grad, rgrad, **TOL[np.float32], err_msg=name)
        calls += 1


def main(expected):
    chosen = _dispatch.kernels.SIMD_PATH
    assert chosen == expected, f"fastloss chose {chosen!r}, expected {expected!r}"
    print(f"path: {chosen}; available: {', '.join(_dispatch.available_paths())}", flush=True)
    rng = np.random.default_rng(2026)
    for group in (cross_entropy, pointwise, other_losses, threaded):
        start, before = time.perf_counter(), calls
        group(rng)
        print(f"{group.__name__}: {calls - before} calls ok in {time.perf_counter() - start:.1f} s",
              flush=True)
    print(f"checked {calls} calls against fastloss.reference on the {chosen} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
