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
    make_ce,
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


# --------------------------------------------------------------------------------------------
# nll_loss
# --------------------------------------------------------------------------------------------

NLL_SHAPES = {"2d": (7, 5), "unbatched": (5,), "kdim": (2, 5, 3, 2)}


def _log_probs(shape_kind, target_kind, dtype):
    x, y, ii = make_ce(shape_kind, target_kind, np.float64)
    axis = 0 if shape_kind == "unbatched" else 1
    logp = x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))
    return logp.astype(dtype), y, ii


@pytest.mark.parametrize(
    "dtype, reduction, use_weight, target_kind, shape_kind, go_kind",
    cases(DTYPES, REDUCTIONS, [False, True], ["ignore_default", "ignore_class"],
          list(NLL_SHAPES)),
)
def test_nll(dtype, reduction, use_weight, target_kind, shape_kind, go_kind):
    rng = np.random.default_rng(20)
    x, y, ii = _log_probs(shape_kind, target_kind, dtype)
    w = rng.uniform(0.2, 2.0, 5).astype(dtype) if use_weight else None
    loss_shape = y.shape
    go = grad_output_for(go_kind, loss_shape, dtype, rng)
    ours = ref.nll_loss_with_grad(x, y, w, ii, reduction, grad_output=go)
    theirs = torch_loss_grad(F.nll_loss, x, y, weight=w, ignore_index=ii, reduction=reduction,
                             grad_output=go)
    check(ours, theirs, x, reduction, loss_shape)
    np.testing.assert_array_equal(ref.nll_loss(x, y, w, ii, reduction), ours[0])
    # nll of log_softmax is cross-entropy (same reference family)
    ce = ref.cross_entropy_with_grad(x, y, w, ii, reduction, grad_output=go)
    np.testing.assert_allclose(ours[0], ce[0], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_3d_input(dtype, reduction):
    # (N, C, d1): torch's nll_loss_nd path for 3-d input, not nll_loss2d's
    rng = np.random.default_rng(19)
    x = np.log(rng.dirichlet(np.ones(5), size=(2, 3))).transpose(0, 2, 1).astype(dtype)
    y = rng.integers(0, 5, (2, 3))
    y[0, 1] = -100
    w = rng.uniform(0.2, 2, 5).astype(dtype)
    go = rng.uniform(-2, 2, y.shape).astype(dtype) if reduction == "none" else None
    check(ref.nll_loss_with_grad(x, y, w, reduction=reduction, grad_output=go),
          torch_loss_grad(F.nll_loss, x, y, weight=w, reduction=reduction, grad_output=go),
          x, reduction, y.shape)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint64])
def test_nll_integer_target_dtypes(tdtype):
    x, y, _ = _log_probs("2d", "ignore_class", np.float64)
    a = ref.nll_loss_with_grad(x, y.astype(np.int64), ignore_index=2)
    b = ref.nll_loss_with_grad(x, y.astype(tdtype), ignore_index=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape_kind", list(NLL_SHAPES))
def test_nll_all_ignored_and_zero_weight(reduction, shape_kind):
    x, y, _ = _log_probs(shape_kind, "ignore_default", np.float64)
    y3 = np.full_like(y, 3)
    ours = ref.nll_loss_with_grad(x, y3, ignore_index=3, reduction=reduction)
    check(ours, torch_loss_grad(F.nll_loss, x, y3, ignore_index=3, reduction=reduction), x,
          reduction, y.shape)
    assert np.all(ours[1] == 0)
    # the kept targets' weights sum to 0: torch NaN mean and NaN gradient; we NaN and zeros
    w = np.array([1.0, 1.0, 1.0, 0.0, 1.0])
    loss, grad = ref.nll_loss_with_grad(x, y3, w, reduction=reduction)
    if reduction == "mean":
        assert np.isnan(loss) and np.all(grad == 0)
        assert np.isnan(torch_loss_grad(F.nll_loss, x, y3, weight=w)[0])
    else:
        check((loss, grad), torch_loss_grad(F.nll_loss, x, y3, weight=w, reduction=reduction),
              x, reduction, y.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_empty(dtype, reduction):
    x, y = np.zeros((0, 5), dtype), np.zeros(0, np.int64)
    ours = ref.nll_loss_with_grad(x, y, reduction=reduction)
    check(ours, torch_loss_grad(F.nll_loss, x, y, reduction=reduction), x, reduction, (0,))
    assert np.isnan(ours[0]) if reduction == "mean" else np.all(ours[0] == 0)


def test_nll_neg_inf_and_ignored_nan():
    x = np.array([[-np.inf, 0.0, -1.0], [np.nan, np.nan, np.nan], [-np.inf, -1.0, -2.0]])
    y = np.array([1, -100, 0])
    w = np.array([0.0, 1.0, 1.0])
    # -inf at a non-target class: finite; ignored NaN row: 0; zero weight at a -inf target: 0
    # (torch: 0 * -inf = NaN there -- the cross-entropy convention, deliberately)
    loss, grad = ref.nll_loss_with_grad(x, y, w, reduction="none")
    np.testing.assert_array_equal(loss, [-0.0, 0.0, 0.0])
    np.testing.assert_array_equal(grad, [[0, -1, 0], [0, 0, 0], [0, 0, 0]])
    tl, tg = torch_loss_grad(F.nll_loss, x[:2], y[:2], weight=w, reduction="none")
    np.testing.assert_array_equal(loss[:2], tl)
    np.testing.assert_array_equal(grad[:2], tg)


def test_nll_fd():
    x, y, _ = _log_probs("kdim", "ignore_default", np.float64)
    w = np.linspace(0.5, 1.5, 5)
    go = np.random.default_rng(21).uniform(-2, 2, y.shape)
    check_fd(ref.nll_loss_with_grad, x, y, w, grad_output=go)


# --------------------------------------------------------------------------------------------
# binary_cross_entropy (probabilities)
# --------------------------------------------------------------------------------------------

BCE_W = {"none": None, "full": (6, 4), "per_class": (4,), "per_row": (6, 1), "scalar": ()}


@pytest.mark.parametrize(
    "dtype, reduction, w_kind, go_kind", cases(DTYPES, REDUCTIONS, list(BCE_W))
)
def test_bce_probabilities(dtype, reduction, w_kind, go_kind):
    rng = np.random.default_rng(22)
    x = rng.uniform(0.01, 0.99, (6, 4)).astype(dtype)
    x[0] = [0.0, 1.0, 0.0, 1.0]  # logs clamped at -100; gradient via the 1e-12 clamp
    x[1, :2] = [1e-30 if dtype == np.float64 else 1e-20, 1.0 - 2.0**-20]
    y = rng.uniform(0, 1, (6, 4)).astype(dtype)
    y[0] = [0.0, 1.0, 1.0, 0.0]
    y[1, :2] = [1.0, 0.0]
    w = None if BCE_W[w_kind] is None else rng.uniform(0.1, 2.0, BCE_W[w_kind]).astype(dtype)
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    ours = ref.binary_cross_entropy_with_grad(x, y, w, reduction, grad_output=go)
    theirs = torch_loss_grad(F.binary_cross_entropy, x, y, weight=w, reduction=reduction,
                             grad_output=go)
    check(ours, theirs, x, reduction, x.shape)
    np.testing.assert_array_equal(ref.binary_cross_entropy(x, y, w, reduction), ours[0])


def test_bce_probabilities_hand_values():
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.5])
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.25])
    loss, grad = ref.binary_cross_entropy_with_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 100.0, 100.0, 0.0, np.log(2.0)])
    eps = float(np.float32(1e-12))  # torch's EPSILON is a C++ float even for doubles
    np.testing.assert_array_equal(grad, [0.0, -1 / eps, 1 / eps, 0.0, 0.25 / 0.25])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_probabilities_empty(dtype, reduction):
    x = np.zeros((0, 3), dtype)
    check(ref.binary_cross_entropy_with_grad(x, x.copy(), reduction=reduction),
          torch_loss_grad(F.binary_cross_entropy, x, x.copy(), reduction=reduction),
          x, reduction, x.shape)


def test_bce_probabilities_fd():
    rng = np.random.default_rng(23)
    x = rng.uniform(0.05, 0.95, (3, 4))
    y = rng.uniform(0, 1, (3, 4))
    check_fd(ref.binary_cross_entropy_with_grad, x, y, rng.uniform(0.1, 2, 4),
             grad_output=rng.uniform(-2, 2, x.shape), h=1e-6)


# --------------------------------------------------------------------------------------------
# multi_margin_loss
# --------------------------------------------------------------------------------------------


def _mm_inputs(unbatched, dtype, margin, rng):
    """Integer-valued scores so that margin - x_y + x_j == 0 (the kink) occurs exactly."""
    x = rng.integers(-3, 4, size=(6, 5)).astype(dtype) * np.asarray(margin, dtype)
    y = rng.integers(0, 5, size=6)
    x[0, :] = np.array([1, 0, -1, 2, 3], dtype) * np.asarray(margin, dtype)
    y[0] = 0  # z_0j = margin - margin + x_0j = x_0j: exactly 0 at j = 1
    if unbatched:
        return x[0], np.array(y[0])
    return x, y


@pytest.mark.parametrize(
    "dtype, reduction, p, margin, use_weight, unbatched, go_kind",
    cases(DTYPES, REDUCTIONS, [1, 2], [1.0, 0.5, -0.5], [False, True], [False, True]),
)
def test_multi_margin(dtype, reduction, p, margin, use_weight, unbatched, go_kind):
    rng = np.random.default_rng(24)
    x, y = _mm_inputs(unbatched, dtype, margin, rng)
    z = margin - np.take_along_axis(np.atleast_2d(x), np.atleast_1d(y)[:, None], 1) + x
    assert np.any((z == 0) & (np.arange(5) != np.atleast_1d(y)[:, None]))  # kinks present
    w = rng.uniform(0.2, 2.0, 5).astype(dtype) if use_weight else None
    go = grad_output_for(go_kind, y.shape, dtype, rng)
    ours = ref.multi_margin_loss_with_grad(x, y, p, margin, w, reduction, grad_output=go)
    theirs = torch_loss_grad(F.multi_margin_loss, x, y, p=p, margin=margin, weight=w,
                             reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, y.shape)
    np.testing.assert_array_equal(ref.multi_margin_loss(x, y, p, margin, w, reduction), ours[0])


def test_multi_margin_unbatched_1d_target():
    # torch also takes (C,) input with a (1,) target: "none" then has shape (1,)
    x, y = np.array([1.0, 0.0, -1.0]), np.array([1])
    check(ref.multi_margin_loss_with_grad(x, y, reduction="none"),
          torch_loss_grad(F.multi_margin_loss, x, y, reduction="none"), x, "none", (1,))


def test_multi_margin_kink_hand_values():
    # row 0: z = 1 - 1 + (0, -1) -> exactly the kink at j = 1: loss 0, gradient 0 (torch)
    x = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    y = np.array([0, 1])
    for p in (1, 2):
        loss, grad = ref.multi_margin_loss_with_grad(x, y, p=p, reduction="none")
        np.testing.assert_array_equal(grad[0], 0.0)
        np.testing.assert_allclose(loss, [0.0, 0.5**p / 3], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_margin_empty(dtype):
    # torch returns an uninitialised number for an empty batch; the spec: NaN mean, 0 sum
    x, y = np.zeros((0, 3), dtype), np.zeros(0, np.int64)
    loss, grad = ref.multi_margin_loss_with_grad(x, y)
    assert np.isnan(loss) and isinstance(loss, dtype) and grad.shape == (0, 3)
    loss, grad = ref.multi_margin_loss_with_grad(x, y, reduction="sum")
    assert loss == 0 and isinstance(loss, dtype)
    loss, grad = ref.multi_margin_loss_with_grad(x, y, reduction="none")
    assert loss.shape == (0,) and loss.dtype == dtype


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_fd(p):
    rng = np.random.default_rng(25)
    x = rng.standard_normal((4, 5))
    y = rng.integers(0, 5, 4)
    z = 0.7 - x[np.arange(4), y][:, None] + x
    assert np.all(np.abs(z) > 1e-3)  # away from the kinks
    check_fd(ref.multi_margin_loss_with_grad, x, y, p, 0.7, np.linspace(0.5, 1.5, 5),
             grad_output=rng.uniform(-2, 2, 4))


# --------------------------------------------------------------------------------------------
# multilabel_soft_margin_loss
# --------------------------------------------------------------------------------------------

MLSM_SHAPES = [(6, 4), (4,), (2, 3, 4)]
MLSM_W = {"none": None, "per_class": (4,), "full": "full"}


@pytest.mark.parametrize(
    "dtype, reduction, shape, w_kind, go_kind", cases(DTYPES, REDUCTIONS, MLSM_SHAPES, list(MLSM_W))
)
def test_multilabel_soft_margin(dtype, reduction, shape, w_kind, go_kind):
    rng = np.random.default_rng(26)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x.reshape(-1)[:3] = [30.0, -30.0, 0.0]
    y = rng.integers(0, 2, shape).astype(dtype)
    wshape = MLSM_W[w_kind]
    w = None if wshape is None else rng.uniform(0.1, 2, shape if wshape == "full" else wshape)
    w = None if w is None else w.astype(dtype)
    loss_shape = shape[:-1]
    go = grad_output_for(go_kind, loss_shape, dtype, rng)
    ours = ref.multilabel_soft_margin_loss_with_grad(x, y, w, reduction, grad_output=go)
    theirs = torch_loss_grad(F.multilabel_soft_margin_loss, x, y, weight=w, reduction=reduction,
                             grad_output=go)
    check(ours, theirs, x, reduction, loss_shape)
    np.testing.assert_array_equal(
        ref.multilabel_soft_margin_loss(x, y, w, reduction), ours[0])


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e4), (np.float64, 1e30)])
def test_multilabel_soft_margin_extreme(dtype, big):
    x = np.array([[big, -big, big, -big]], dtype)
    y = np.array([[1.0, 0.0, 0.0, 1.0]], dtype)
    loss, grad = ref.multilabel_soft_margin_loss_with_grad(x, y, reduction="none")
    np.testing.assert_allclose(loss, [2 * np.float64(big) / 4], rtol=1e-7)
    np.testing.assert_array_equal(grad, np.array([[0, 0, 0.25, -0.25]], dtype))
    check((loss, grad), torch_loss_grad(F.multilabel_soft_margin_loss, x, y, reduction="none"),
          x, "none", (1,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_empty(reduction):
    x = np.zeros((0, 3))
    ours = ref.multilabel_soft_margin_loss_with_grad(x, x.copy(), reduction=reduction)
    check(ours, torch_loss_grad(F.multilabel_soft_margin_loss, x, x.copy(), reduction=reduction),
          x, reduction, (0,))


def test_multilabel_soft_margin_fd():
    rng = np.random.default_rng(27)
    x = rng.standard_normal((3, 4)) * 2
    y = rng.uniform(0, 1, (3, 4))
    check_fd(ref.multilabel_soft_margin_loss_with_grad, x, y, rng.uniform(0.1, 2, 4),
             grad_output=rng.uniform(-2, 2, 3))


# --------------------------------------------------------------------------------------------
# soft_margin_loss and hinge_loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, reduction, shape, go_kind", cases(DTYPES, REDUCTIONS, SHAPES))
def test_soft_margin(dtype, reduction, shape, go_kind):
    rng = np.random.default_rng(28)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x.reshape(-1)[:2] = [50.0, -50.0]  # large but where torch is still finite
    y = rng.choice([-1.0, 1.0], shape).astype(dtype)
    go = grad_output_for(go_kind, shape, dtype, rng)
    ours = ref.soft_margin_loss_with_grad(x, y, reduction, grad_output=go)
    theirs = torch_loss_grad(F.soft_margin_loss, x, y, reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    np.testing.assert_array_equal(ref.soft_margin_loss(x, y, reduction), ours[0])


@pytest.mark.parametrize("dtype, big", [(np.float32, 100.0), (np.float32, 1e4),
                                        (np.float64, 800.0), (np.float64, 1e30)])
def test_soft_margin_beyond_torch_overflow(dtype, big):
    # torch: log1p(exp(800)) = inf, gradient NaN.  We: the finite value, via mpmath.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    x = np.array([-big, big, -1.0], dtype)
    y = np.array([1.0, -1.0, 1.0], dtype)
    loss, grad = ref.soft_margin_loss_with_grad(x, y, reduction="none")
    want = [float(mpmath.log1p(mpmath.exp(-mpmath.mpf(float(a)) * float(b)))) for a, b in zip(x, y)]
    want_g = [float(-b / (1 + mpmath.exp(mpmath.mpf(float(a)) * float(b)))) for a, b in zip(x, y)]
    np.testing.assert_allclose(loss, want, rtol=1e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(grad, want_g, rtol=1e-7 if dtype == np.float32 else 1e-15)
    tl, tg = torch_loss_grad(F.soft_margin_loss, x, y, reduction="none")
    assert np.isinf(tl[0]) and np.isnan(tg[0])  # torch overflows; still agrees on the rest
    np.testing.assert_allclose(loss[2], tl[2], **TOL[dtype])


def _hinge_torch(x, y, margin=1.0, squared=False, reduction="mean"):
    h = torch.relu(margin - y * x)
    loss = h * h if squared else h
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize(
    "dtype, reduction, margin, squared, go_kind",
    cases(DTYPES, REDUCTIONS, [1.0, 0.5, 0.0], [False, True]),
)
def test_hinge(dtype, reduction, margin, squared, go_kind):
    rng = np.random.default_rng(29)
    x = (rng.integers(-8, 9, (3, 4)) / 4.0).astype(dtype)
    y = rng.choice([-1.0, 1.0], (3, 4)).astype(dtype)
    x[0, :2] = [margin, -margin]  # kinks: y x == margin
    y[0, :2] = [1.0, -1.0]
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    ours = ref.hinge_loss_with_grad(x, y, margin, squared, reduction, grad_output=go)
    theirs = torch_loss_grad(_hinge_torch, x, y, margin=margin, squared=squared,
                             reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, x.shape)
    assert np.all(ours[1][0, :2] == 0)  # subgradient 0 at the kink, as relu's
    np.testing.assert_array_equal(ref.hinge_loss(x, y, margin, squared, reduction), ours[0])


def test_hinge_hand_values():
    # sklearn/optax/Keras: mean(max(0, 1 - y x)); squared: mean(max(0, 1 - y x)^2)
    x = np.array([2.0, 0.5, -0.5, 1.0])
    y = np.array([1.0, 1.0, 1.0, -1.0])
    assert ref.hinge_loss(x, y) == (0 + 0.5 + 1.5 + 2.0) / 4
    assert ref.hinge_loss(x, y, squared=True) == (0 + 0.25 + 2.25 + 4.0) / 4
    _, g = ref.hinge_loss_with_grad(x, y, reduction="sum")
    np.testing.assert_array_equal(g, [0.0, -1.0, -1.0, 1.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["soft_margin", "hinge"])
def test_margin_empty(dtype, reduction, name):
    x = np.zeros((0, 3), dtype)
    fn, tfn = {"soft_margin": (ref.soft_margin_loss_with_grad, F.soft_margin_loss),
               "hinge": (ref.hinge_loss_with_grad, _hinge_torch)}[name]
    check(fn(x, x.copy(), reduction=reduction),
          torch_loss_grad(tfn, x, x.copy(), reduction=reduction), x, reduction, x.shape)


@pytest.mark.parametrize("name", ["soft_margin", "hinge", "squared_hinge"])
def test_margin_fd(name):
    rng = np.random.default_rng(30)
    x = rng.standard_normal((3, 4)) * 2
    y = rng.choice([-1.0, 1.0], (3, 4))
    x[np.abs(1 - y * x) < 0.05] += 0.2  # away from the hinge kink
    fn, kw = {"soft_margin": (ref.soft_margin_loss_with_grad, {}),
              "hinge": (ref.hinge_loss_with_grad, {}),
              "squared_hinge": (ref.hinge_loss_with_grad, {"squared": True})}[name]
    check_fd(fn, x, y, grad_output=rng.uniform(-2, 2, x.shape), **kw)


# --------------------------------------------------------------------------------------------
# sigmoid_focal_loss (torchvision's formula, written with torch ops)
# --------------------------------------------------------------------------------------------


def _focal_torchvision(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py), transcribed."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


@pytest.mark.parametrize(
    "dtype, reduction, alpha, gamma, soft, go_kind",
    cases(DTYPES, REDUCTIONS, [0.25, 0.5, -1.0], [0.0, 0.5, 1.0, 2.0], [False, True]),
)
def test_sigmoid_focal(dtype, reduction, alpha, gamma, soft, go_kind):
    rng = np.random.default_rng(40)
    x = (rng.standard_normal((2, 3, 4)) * 3).astype(dtype)
    x.reshape(-1)[:2] = [12.0, -12.0]
    y = (rng.uniform(0, 1, x.shape) if soft else rng.integers(0, 2, x.shape)).astype(dtype)
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    ours = ref.sigmoid_focal_loss_with_grad(x, y, alpha, gamma, reduction, grad_output=go)
    theirs = torch_loss_grad(_focal_torchvision, x, y, alpha=alpha, gamma=gamma,
                             reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, x.shape)
    np.testing.assert_array_equal(ref.sigmoid_focal_loss(x, y, alpha, gamma, reduction), ours[0])


def test_sigmoid_focal_default_reduction_is_none():
    x, y = np.array([0.5, -1.0]), np.array([1.0, 0.0])
    assert ref.sigmoid_focal_loss(x, y).shape == (2,)


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e4), (np.float64, 1e30)])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_extreme_logits(dtype, big, gamma):
    # hand values: x = +big, y = 0: ce = big, q = 1 -> l = (1 - alpha) big, grad (1 - alpha);
    # x = -big, y = 1 likewise with alpha; confident right answers: 0, 0; soft y = 0.5:
    # a_t = 1/2, q = 1/2, ce = big/2, s - y = 1/2 and (1 - 2y) = 0
    alpha = 0.25
    x = np.array([big, -big, big, -big, big], dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype)
    loss, grad = ref.sigmoid_focal_loss_with_grad(x, y, alpha, gamma)
    b = np.float64(dtype(big))
    want = [(1 - alpha) * b, alpha * b, 0.0, 0.0, 0.5 * 0.5**gamma * 0.5 * b]
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(grad, [1 - alpha, -alpha, 0, 0, 0.5 * 0.5**gamma * 0.5], rtol=1e-6)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


def test_sigmoid_focal_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    x = np.array([-40.0, -3.0, 0.0, 2.5, 40.0])
    y = np.array([1.0, 0.0, 1.0, 0.3, 0.0])
    alpha, gamma = 0.25, 1.5

    def f(xi, yi):
        s = 1 / (1 + mpmath.exp(-xi))
        ce = -(yi * mpmath.log(s) + (1 - yi) * mpmath.log(1 - s))
        q = yi * (1 - s) + (1 - yi) * s
        return (alpha * yi + (1 - alpha) * (1 - yi)) * q**gamma * ce

    loss, grad = ref.sigmoid_focal_loss_with_grad(x, y, alpha, gamma)
    for i in range(len(x)):
        xi, yi = mpmath.mpf(x[i]), mpmath.mpf(y[i])
        np.testing.assert_allclose(loss[i], float(f(xi, yi)), rtol=1e-13)
        np.testing.assert_allclose(grad[i], float(mpmath.diff(lambda t: f(t, yi), xi)), rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_fd(gamma):
    rng = np.random.default_rng(41)
    x = rng.standard_normal((3, 4)) * 2
    y = rng.uniform(0, 1, (3, 4))
    check_fd(ref.sigmoid_focal_loss_with_grad, x, y, 0.25, gamma,
             grad_output=rng.uniform(-2, 2, x.shape))


# --------------------------------------------------------------------------------------------
# kl_div
# --------------------------------------------------------------------------------------------

KL_REDUCTIONS = ["none", "batchmean", "sum", "mean"]


@pytest.mark.parametrize(
    "dtype, reduction, log_target, shape, go_kind",
    cases(DTYPES, KL_REDUCTIONS, [False, True], [(4, 5), (5,), (2, 3, 4), ()]),
)
def test_kl_div(dtype, reduction, log_target, shape, go_kind):
    rng = np.random.default_rng(42)
    x = np.asarray(np.log(rng.uniform(0.01, 1, shape))).astype(dtype)
    t = np.asarray(rng.uniform(0, 1, shape))
    if t.ndim and not log_target:
        # a zero-probability target contributes 0 (xlogy); with log_target, log 0 = -inf gives
        # NaN in torch (0 * -inf) and 0 here: test_kl_div_zero_target_neg_inf_input
        t.reshape(-1)[:1] = 0.0
    t = (np.log(t) if log_target else t).astype(dtype)
    go = grad_output_for(go_kind, shape, dtype, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "mean" warns, checked below
        ours = ref.kl_div_with_grad(x, t, reduction, log_target, grad_output=go)
        theirs = torch_loss_grad(F.kl_div, x, t, reduction=reduction, log_target=log_target,
                                 grad_output=go)
        fwd = ref.kl_div(x, t, reduction, log_target)
    check(ours, theirs, x, reduction, shape)
    np.testing.assert_array_equal(fwd, ours[0])


def test_kl_div_mean_warns_as_torch():
    x, t = np.log(np.array([[0.2, 0.8]])), np.array([[0.5, 0.5]])
    for fn in (ref.kl_div, ref.kl_div_with_grad):
        with pytest.warns(UserWarning, match="batchmean"):
            fn(x, t)
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(torch.from_numpy(x), torch.from_numpy(t))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for red in ("none", "sum", "batchmean"):
            ref.kl_div(x, t, red)
            ref.kl_div_with_grad(x, t, red)


def test_kl_div_batchmean_hand_values():
    x = np.log(np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]))
    t = np.array([[0.5, 0.5], [0.0, 1.0], [0.9, 0.1]])
    kl = [0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75), np.log(2.0), 0.0]
    np.testing.assert_allclose(ref.kl_div(x, t, "batchmean"), sum(kl) / 3, rtol=1e-14)
    # 0-d input: batchmean is the sum (torch divides only when input.dim() != 0)
    np.testing.assert_allclose(ref.kl_div(np.array(-1.0), np.array(0.5), "batchmean"),
                               0.5 * (np.log(0.5) + 1.0), rtol=1e-15)


def test_kl_div_zero_target_neg_inf_input():
    # t = 0 (or log t = -inf) with x = -inf: torch NaN (0 * -inf); we the limit 0
    x = np.array([-np.inf, -1.0, -np.inf])
    loss, grad = ref.kl_div_with_grad(x, np.array([0.0, 0.0, 0.5]), "none")
    np.testing.assert_array_equal(loss, [0.0, 0.0, np.inf])
    np.testing.assert_array_equal(grad, [0.0, 0.0, -0.5])
    loss, grad = ref.kl_div_with_grad(x, np.array([-np.inf, -np.inf, 0.0]), "none", True)
    np.testing.assert_array_equal(loss, [0.0, 0.0, np.inf])
    tl, _ = torch_loss_grad(F.kl_div, x, np.array([0.0, 0.0, 0.5]), reduction="none")
    assert np.isnan(tl[0]) and tl[1] == 0
    # a negative target gives NaN, as torch's xlogy
    assert np.isnan(ref.kl_div(np.array([-1.0]), np.array([-0.5]), "none")[0])


@pytest.mark.parametrize("reduction", ["none", "batchmean", "sum"])
def test_kl_div_empty(reduction):
    x = np.zeros((0, 3))
    ours = ref.kl_div_with_grad(x, x.copy(), reduction)
    check(ours, torch_loss_grad(F.kl_div, x, x.copy(), reduction=reduction), x, reduction,
          x.shape)
    if reduction == "batchmean":
        assert np.isnan(ours[0])


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_fd(log_target):
    rng = np.random.default_rng(43)
    x = np.log(rng.uniform(0.05, 1, (3, 4)))
    t = rng.uniform(0.05, 1, (3, 4))
    check_fd(ref.kl_div_with_grad, x, np.log(t) if log_target else t, log_target=log_target,
             grad_output=rng.uniform(-2, 2, x.shape))


# --------------------------------------------------------------------------------------------
# msle_loss and log_cosh_loss (no torch twin: the formula in torch ops + autograd, hand values)
# --------------------------------------------------------------------------------------------


def _msle_torch(x, y, reduction="mean"):
    eps = 1e-7
    xc = torch.where(x >= eps, x, torch.full_like(x, eps))  # gradient to x at the tie
    d = torch.log1p(xc) - torch.log1p(torch.clamp(y, min=eps))
    loss = d * d
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _log_cosh_torch(x, y, reduction="mean"):
    loss = torch.log(torch.cosh(x - y))
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize(
    "dtype, reduction, shape, name, go_kind",
    cases(DTYPES, REDUCTIONS, SHAPES, ["msle", "log_cosh"]),
)
def test_msle_log_cosh(dtype, reduction, shape, name, go_kind):
    rng = np.random.default_rng(44)
    fn, tfn = {"msle": (ref.msle_loss_with_grad, _msle_torch),
               "log_cosh": (ref.log_cosh_loss_with_grad, _log_cosh_torch)}[name]
    if name == "msle":
        x = rng.uniform(-2, 5, shape).astype(dtype)  # negatives: clamped, gradient 0
        y = rng.uniform(-1, 5, shape).astype(dtype)
        x.reshape(-1)[:2] = [1e-7, 0.0]
    else:
        x, y = _pair(shape, dtype, rng)
        x[np.abs(x - y) < 1e-2] += 0.5  # away from the cancellation at tiny |d|
    go = grad_output_for(go_kind, shape, dtype, rng)
    ours = fn(x, y, reduction, grad_output=go)
    theirs = torch_loss_grad(tfn, x, y, reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    fwd = {"msle": ref.msle_loss, "log_cosh": ref.log_cosh_loss}[name](x, y, reduction)
    np.testing.assert_array_equal(fwd, ours[0])
    if name == "msle":
        assert np.all(ours[1][x < 1e-7] == 0)


def test_msle_hand_values():
    # Keras: mean(square(log(max(p, eps) + 1) - log(max(t, eps) + 1)), axis=-1)
    x = np.array([[np.e - 1, -5.0], [0.0, 3.0]])
    y = np.array([[0.0, 1.0], [0.0, 3.0]])
    loss, grad = ref.msle_loss_with_grad(x, y, "none")
    l01 = (np.log1p(1e-7) - np.log(2.0)) ** 2
    np.testing.assert_allclose(loss, [[(1 - np.log1p(1e-7)) ** 2, l01], [0.0, 0.0]], rtol=1e-14)
    np.testing.assert_allclose(grad[0, 0], 2 * (1 - np.log1p(1e-7)) / np.e, rtol=1e-14)
    assert grad[0, 1] == 0 and grad[1, 0] == 0  # x = 0 < 1e-7 is clamped
    # Keras' per-sample means, averaged, equal our "mean" for rows of equal length
    np.testing.assert_allclose(ref.msle_loss(x, y), np.mean(loss.mean(axis=-1)), rtol=1e-15)


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e4), (np.float64, 1e30), (np.float64, 800.0)])
def test_log_cosh_no_overflow(dtype, big):
    # log(cosh(d)) overflows in torch for |d| > ~89 (f32) / ~710 (f64); the value is |d| - log 2
    x = np.array([big, -big, 0.0, 1.0], dtype)
    loss, grad = ref.log_cosh_loss_with_grad(x, np.zeros(4, dtype), "none")
    b = np.float64(dtype(big))
    np.testing.assert_allclose(loss, [b - np.log(2), b - np.log(2), 0.0, np.log(np.cosh(1.0))],
                               rtol=1e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_array_equal(grad, np.array([1.0, -1.0, 0.0, np.tanh(1.0)], dtype))


def test_log_cosh_small_residual_absolute_accuracy():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    d = np.array([1e-9, 1e-5, 1e-3, 0.3])
    loss = ref.log_cosh_loss(d, np.zeros(4), "none")
    want = [float(mpmath.log(mpmath.cosh(mpmath.mpf(v)))) for v in d]
    np.testing.assert_allclose(loss, want, rtol=0, atol=3e-16)  # documented: absolute accuracy


@pytest.mark.parametrize("name", ["msle", "log_cosh"])
def test_msle_log_cosh_fd(name):
    rng = np.random.default_rng(45)
    x = rng.uniform(0.1, 4, (3, 4))
    y = rng.uniform(0, 4, (3, 4))
    fn = {"msle": ref.msle_loss_with_grad, "log_cosh": ref.log_cosh_loss_with_grad}[name]
    check_fd(fn, x, y, grad_output=rng.uniform(-2, 2, x.shape))


# --------------------------------------------------------------------------------------------
# poisson_nll_loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, reduction, log_input, full, eps, go_kind",
    cases(DTYPES, REDUCTIONS, [True, False], [False, True], [1e-8, 0.5]),
)
def test_poisson_nll(dtype, reduction, log_input, full, eps, go_kind):
    rng = np.random.default_rng(46)
    x = (rng.standard_normal((3, 4)) if log_input else rng.uniform(0, 4, (3, 4))).astype(dtype)
    y = rng.integers(0, 6, (3, 4)).astype(dtype)
    y[0] = [0.0, 1.0, 1.5, 0.5]  # the Stirling term only where y > 1
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    ours = ref.poisson_nll_loss_with_grad(x, y, log_input, full, eps, reduction, grad_output=go)
    theirs = torch_loss_grad(F.poisson_nll_loss, x, y, log_input=log_input, full=full, eps=eps,
                             reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, x.shape)
    np.testing.assert_array_equal(
        ref.poisson_nll_loss(x, y, log_input, full, eps, reduction), ours[0])


def test_poisson_nll_stirling_hand_values():
    x = np.zeros(4)
    y = np.array([0.0, 1.0, 2.0, np.nan])
    loss = ref.poisson_nll_loss(x, y, full=True, reduction="none")
    st2 = 2 * np.log(2) - 2 + 0.5 * np.log(4 * np.pi)
    np.testing.assert_allclose(loss[:3], [1.0, 1.0, 1.0 + st2], rtol=1e-15)
    assert np.isnan(loss[3])  # torch's masked_fill(y <= 1, 0) keeps a NaN target's NaN
    tl, _ = torch_loss_grad(F.poisson_nll_loss, x, y, full=True, reduction="none")
    assert np.isnan(tl[3])


@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_nll_fd(log_input):
    rng = np.random.default_rng(47)
    x = rng.standard_normal((3, 4)) if log_input else rng.uniform(0.2, 3, (3, 4))
    y = rng.integers(0, 5, (3, 4)).astype(np.float64)
    check_fd(ref.poisson_nll_loss_with_grad, x, y, log_input, True,
             grad_output=rng.uniform(-2, 2, x.shape))


# --------------------------------------------------------------------------------------------
# gaussian_nll_loss
# --------------------------------------------------------------------------------------------

GNLL_VAR = {  # var shape for input (2, 3, 4)
    "float": None, "full": (2, 3, 4), "short": (2, 3), "trailing1": (2, 3, 1),
    "middle1": (2, 1, 4), "lead1": (1, 3, 4),
}


@pytest.mark.parametrize(
    "dtype, reduction, var_kind, full, go_kind",
    cases(DTYPES, REDUCTIONS, list(GNLL_VAR), [False, True]),
)
def test_gaussian_nll(dtype, reduction, var_kind, full, go_kind):
    rng = np.random.default_rng(48)
    x, y = _pair((2, 3, 4), dtype, rng)
    eps = 1e-2
    if var_kind == "float":
        var = 0.7
    else:
        var = rng.uniform(0.05, 2.0, GNLL_VAR[var_kind]).astype(dtype)
        var.reshape(-1)[:2] = [1e-3, 0.0]  # below eps: clamped, gradient still passed through
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    ours = ref.gaussian_nll_loss_with_grad(x, y, var, full, eps, reduction, grad_output=go)
    diff = (0,) if var_kind == "float" else (0, 2)
    theirs = torch_loss_grads(F.gaussian_nll_loss, x, y, var, diff=diff, full=full, eps=eps,
                              reduction=reduction, grad_output=go)
    check(ours[:2], theirs[:2], x, reduction, x.shape)
    if var_kind == "float":
        assert ours[2] is None
    else:
        gv = ours[2]
        assert gv.shape == var.shape and gv.dtype == dtype
        np.testing.assert_allclose(gv, theirs[2], **TOL[dtype])
    np.testing.assert_array_equal(
        ref.gaussian_nll_loss(x, y, var, full, eps, reduction), ours[0])


def test_gaussian_nll_clamp_gradient_hand_values():
    # var = 0 and 1e-9 are clamped to eps = 1e-6; torch's gradient w.r.t. var is still
    # 0.5 (1/v' - r^2/v'^2) at v' = eps (clamp under no_grad), not 0
    x, y = np.array([1.0, 3.0, 2.0]), np.zeros(3)
    var = np.array([1e-9, 0.0, 2.0])
    loss, gx, gv = ref.gaussian_nll_loss_with_grad(x, y, var, reduction="none")
    v = np.array([1e-6, 1e-6, 2.0])
    np.testing.assert_allclose(loss, 0.5 * (np.log(v) + x**2 / v), rtol=1e-15)
    np.testing.assert_allclose(gx, x / v, rtol=1e-15)
    np.testing.assert_allclose(gv, 0.5 * (1 / v - x**2 / v**2), rtol=1e-15)
    theirs = torch_loss_grads(F.gaussian_nll_loss, x, y, var, diff=(0, 2), reduction="none")
    np.testing.assert_allclose(gv, theirs[2], rtol=1e-15)


def test_gaussian_nll_per_row_variance_for_2d():
    # var of shape input.shape[:-1] is one variance per *row* (unsqueezed to (N, 1)), even
    # when it would also broadcast along the last axis of a square input
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))
    var = np.array([2.0, 3.0])
    loss, _, gv = ref.gaussian_nll_loss_with_grad(x, y, var, reduction="none")
    np.testing.assert_allclose(loss, 0.5 * (np.log(var[:, None]) + x**2 / var[:, None]),
                               rtol=1e-15)
    theirs = torch_loss_grads(F.gaussian_nll_loss, x, y, var, diff=(0, 2), reduction="none")
    np.testing.assert_allclose(loss, theirs[0], rtol=1e-15)
    np.testing.assert_allclose(gv, theirs[2], rtol=1e-15)
    # a 1-d input with a 0-d var is the same rule (input.shape[:-1] == ())
    x1 = np.array([1.0, 2.0])
    ours = ref.gaussian_nll_loss_with_grad(x1, np.zeros(2), np.array(2.0), reduction="sum")
    theirs = torch_loss_grads(F.gaussian_nll_loss, x1, np.zeros(2), np.array(2.0), diff=(0, 2),
                              reduction="sum")
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-15)
        assert np.shape(a) == np.shape(b)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_empty(reduction):
    x = np.zeros((0, 3))
    var = np.ones((0, 3))
    ours = ref.gaussian_nll_loss_with_grad(x, x.copy(), var, reduction=reduction)
    theirs = torch_loss_grads(F.gaussian_nll_loss, x, x.copy(), var, diff=(0, 2),
                              reduction=reduction)
    check(ours[:2], theirs[:2], x, reduction, x.shape)
    assert ours[2].shape == (0, 3)


@pytest.mark.parametrize("var_kind", ["full", "short", "middle1"])
def test_gaussian_nll_fd(var_kind):
    rng = np.random.default_rng(49)
    x, y = _pair((2, 3, 4), np.float64, rng)
    var = rng.uniform(0.5, 2.0, GNLL_VAR[var_kind])
    go = rng.uniform(-2, 2, x.shape)
    check_fd(ref.gaussian_nll_loss_with_grad, x, y, var, True, grad_output=go)
    _, _, gv = ref.gaussian_nll_loss_with_grad(x, y, var, True, reduction="none", grad_output=go)

    def f(vp):
        return np.sum(go * ref.gaussian_nll_loss(x, y, vp, True, reduction="none"))

    from _torch_oracle import fd_grad
    np.testing.assert_allclose(gv, fd_grad(f, var), rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------------------------
# every new reference rejects an unknown reduction; the forward is the fused loss
# --------------------------------------------------------------------------------------------

NEW_LOSSES = [
    "l1_loss", "smooth_l1_loss", "nll_loss", "binary_cross_entropy", "multi_margin_loss",
    "multilabel_soft_margin_loss", "soft_margin_loss", "hinge_loss", "sigmoid_focal_loss",
    "kl_div", "msle_loss", "log_cosh_loss", "poisson_nll_loss", "gaussian_nll_loss",
]


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_unknown_reduction_and_exports(name):
    assert name in ref.__all__ and name + "_with_grad" in ref.__all__
    x = np.full((2, 3), 0.5)
    t = np.zeros(2, np.int64) if name in ("nll_loss", "multi_margin_loss") else np.full((2, 3), 0.5)
    extra = (1.0,) if name == "gaussian_nll_loss" else ()
    for fn in (getattr(ref, name), getattr(ref, name + "_with_grad")):
        with pytest.raises(ValueError, match="reduction"):
            fn(x, t, *extra, reduction="avg")
