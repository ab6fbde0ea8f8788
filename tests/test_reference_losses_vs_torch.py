"""The NumPy references of the wave-2 losses (fastloss.reference) against torch 2.13 + autograd.

Loss and the gradient of ``sum(grad_output * loss)`` are compared for every option, dtype and
reduction (float32 runs torch in float32, float64 in float64); the analytic gradients are also
checked against 4th-order central finite differences in float64, away from kinks.  Kinks are
checked against torch's subgradient.  Where fastloss deliberately differs from torch, or there is
no torch twin (hinge, msle, log-cosh, focal), the reference is checked against the formula
written with torch ops + autograd and against hand-computed / mpmath values.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from _torch_oracle import (  # noqa: E402
    DTYPES,
    REDUCTIONS,
    TOL,
    cases,
    check,
    check_fd,
    grad_output_for,
    torch_loss_grad,
    torch_loss_grads,
)

from fastloss import reference as ref  # noqa: E402

SHAPES = [(5,), (3, 4), (2, 3, 4)]


def _pair(shape, dtype, rng, scale=2.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    y = (rng.standard_normal(shape) * scale).astype(dtype)
    return x, y


def _kinked(shape, kink, dtype, rng):
    """Input/target pairs whose residuals include exactly 0, +-kink (exact binary fractions)."""
    y = (rng.integers(-16, 16, size=shape) / 8.0).astype(dtype)
    r = (rng.standard_normal(shape) * 2.0 * max(kink, 0.5)).astype(dtype)
    r.reshape(-1)[:4] = [kink, -kink, 0.0, 3 * kink]
    return (y + r).astype(dtype), y


# --------------------------------------------------------------------------------------------
# L1, smooth L1, and weight= on MSE / L1 / Huber
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, reduction, shape, weighted, go_kind", cases(DTYPES, REDUCTIONS, SHAPES, [False, True])
)
def test_l1(dtype, reduction, shape, weighted, go_kind):
    rng = np.random.default_rng(10)
    x, y = _kinked(shape, 1.0, dtype, rng)  # r == 0 occurs: torch's subgradient sign(0) = 0
    w = rng.uniform(0.1, 2.0, shape).astype(dtype) if weighted else None
    go = grad_output_for(go_kind, shape, dtype, rng)
    x0 = x.copy()
    ours = ref.l1_loss_with_grad(x, y, reduction, weight=w, grad_output=go)
    theirs = torch_loss_grad(F.l1_loss, x, y, reduction=reduction, weight=w, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    assert ours[1].reshape(-1)[2] == 0  # r == 0
    np.testing.assert_array_equal(ref.l1_loss(x, y, reduction, w), ours[0])
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize(
    "dtype, reduction, shape, beta, go_kind",
    cases(DTYPES, REDUCTIONS, SHAPES, [0.0, 0.5, 1.0, 2.0]),
)
def test_smooth_l1(dtype, reduction, shape, beta, go_kind):
    rng = np.random.default_rng(11)
    x, y = _kinked(shape, beta, dtype, rng)  # residuals exactly 0 and +-beta
    go = grad_output_for(go_kind, shape, dtype, rng)
    ours = ref.smooth_l1_loss_with_grad(x, y, reduction, beta=beta, grad_output=go)
    theirs = torch_loss_grad(F.smooth_l1_loss, x, y, reduction=reduction, beta=beta,
                             grad_output=go)
    check(ours, theirs, x, reduction, shape)
    np.testing.assert_array_equal(ref.smooth_l1_loss(x, y, reduction, beta), ours[0])


def test_smooth_l1_kinks_hand_values():
    x = np.array([0.5, -0.5, 0.0, 0.25, 2.0])
    loss, grad = ref.smooth_l1_loss_with_grad(x, np.zeros(5), "none", beta=0.5)
    np.testing.assert_array_equal(loss, [0.25, 0.25, 0.0, 0.0625, 1.75])
    np.testing.assert_array_equal(grad, [1.0, -1.0, 0.0, 0.5, 1.0])
    loss, grad = ref.smooth_l1_loss_with_grad(x, np.zeros(5), "none", beta=0.0)
    np.testing.assert_array_equal(loss, np.abs(x))
    np.testing.assert_array_equal(grad, np.sign(x))


@pytest.mark.parametrize(
    "dtype, reduction, shape, name, go_kind",
    cases(DTYPES, REDUCTIONS, SHAPES, ["mse", "huber"]),
)
def test_weighted_mse_huber(dtype, reduction, shape, name, go_kind):
    rng = np.random.default_rng(12)
    x, y = _kinked(shape, 1.0, dtype, rng)
    w = rng.uniform(0.0, 2.0, shape).astype(dtype)
    go = grad_output_for(go_kind, shape, dtype, rng)
    fn, tfn = {"mse": (ref.mse_loss_with_grad, F.mse_loss),
               "huber": (ref.huber_loss_with_grad, F.huber_loss)}[name]
    ours = fn(x, y, reduction, weight=w, grad_output=go)
    theirs = torch_loss_grad(tfn, x, y, reduction=reduction, weight=w, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    fwd = {"mse": ref.mse_loss, "huber": ref.huber_loss}[name](x, y, reduction, weight=w)
    np.testing.assert_array_equal(fwd, ours[0])


def test_weighted_means_hand_values():
    # mse / l1: sum(w l) / sum(w);  huber: mean(w l) (torch 2.13)
    x, y, w = np.array([1.0, 2.0]), np.zeros(2), np.array([1.0, 3.0])
    assert ref.mse_loss(x, y, weight=w) == (1 + 12) / 4
    assert ref.l1_loss(x, y, weight=w) == (1 + 6) / 4
    assert ref.huber_loss(x, y, weight=w) == (0.5 + 3 * 1.5) / 2
    # weight=None keeps the unweighted behaviour exactly
    for fn in (ref.mse_loss_with_grad, ref.huber_loss_with_grad, ref.l1_loss_with_grad):
        for red in REDUCTIONS:
            a, b = fn(x, y, red), fn(x, y, red, weight=np.ones(2))
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name", ["mse", "l1"])
def test_weighted_zero_weight_sum(name):
    # sum(w) == 0: torch gives a NaN mean and a NaN gradient; the spec a NaN mean, zero gradient
    fn, tfn = {"mse": (ref.mse_loss_with_grad, F.mse_loss),
               "l1": (ref.l1_loss_with_grad, F.l1_loss)}[name]
    x, y, w = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2)
    loss, grad = fn(x, y, "mean", weight=w)
    assert np.isnan(loss) and np.all(grad == 0)
    assert np.isnan(torch_loss_grad(tfn, x, y, weight=w)[0])
    for red in ("sum", "none"):
        check(fn(x, y, red, weight=w), torch_loss_grad(tfn, x, y, reduction=red, weight=w),
              x, red, x.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["l1", "smooth_l1", "mse_w", "l1_w", "huber_w"])
def test_elementwise_empty(dtype, reduction, name):
    x = np.zeros((0, 3), dtype)
    fn, tfn, kw = {
        "l1": (ref.l1_loss_with_grad, F.l1_loss, {}),
        "smooth_l1": (ref.smooth_l1_loss_with_grad, F.smooth_l1_loss, {}),
        "mse_w": (ref.mse_loss_with_grad, F.mse_loss, {"weight": x.copy()}),
        "l1_w": (ref.l1_loss_with_grad, F.l1_loss, {"weight": x.copy()}),
        "huber_w": (ref.huber_loss_with_grad, F.huber_loss, {"weight": x.copy()}),
    }[name]
    ours = fn(x, x.copy(), reduction=reduction, **kw)
    check(ours, torch_loss_grad(tfn, x, x.copy(), reduction=reduction, **kw), x, reduction,
          x.shape)
    if reduction == "mean":
        assert np.isnan(ours[0])


@pytest.mark.parametrize("name", ["l1", "smooth_l1", "mse_w", "huber_w", "l1_w"])
def test_elementwise_fd(name):
    rng = np.random.default_rng(13)
    x, y = _pair((3, 4), np.float64, rng)
    x[np.abs(x - y) < 0.1] += 0.3  # away from r == 0
    w = rng.uniform(0.1, 2.0, x.shape)
    go = rng.uniform(-2, 2, x.shape)
    fn, kw = {"l1": (ref.l1_loss_with_grad, {}),
              "smooth_l1": (ref.smooth_l1_loss_with_grad, {"beta": 0.7}),
              "mse_w": (ref.mse_loss_with_grad, {"weight": w}),
              "huber_w": (ref.huber_loss_with_grad, {"weight": w, "delta": 0.7}),
              "l1_w": (ref.l1_loss_with_grad, {"weight": w})}[name]
    r = np.abs(x - y)
    assert np.all(np.abs(r - 0.7) > 1e-3)  # away from the beta / delta kink
    check_fd(fn, x, y, grad_output=go, **kw)
