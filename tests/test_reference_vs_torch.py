"""The NumPy reference (fastloss.reference) against torch.nn.functional + autograd.

Loss and gradient of ``sum(grad_output * loss)`` are compared for every option, dtype and
reduction.  float64 runs torch in float64; float32 in float32.  Where we deliberately differ from
torch (BCE with infinite logits, cross-entropy "mean" whose kept-target weights sum to 0) the
reference is checked against hand-computed values instead.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from fastloss import reference as ref  # noqa: E402

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _t(a):
    """NumPy -> torch (integer arrays become int64, as torch requires for class indices)."""
    if a is None:
        return None
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return torch.from_numpy(a.astype(np.int64))
    return torch.from_numpy(a.copy())


def torch_loss_grad(fn, x, *args, grad_output=None, **kwargs):
    """Loss of ``fn`` and the autograd gradient of sum(grad_output * loss) w.r.t. x."""
    xt = torch.from_numpy(np.array(x, copy=True)).requires_grad_(True)
    args = [_t(a) for a in args]
    kwargs = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    loss = fn(xt, *args, **kwargs)
    go = 1.0 if grad_output is None else torch.as_tensor(np.asarray(grad_output, x.dtype))
    (loss * go).sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def grad_output_for(kind, loss_shape, dtype, rng):
    if kind == "default":
        return None
    if kind == "scalar":
        return dtype(0.7)
    return rng.uniform(-2.0, 2.0, size=loss_shape).astype(dtype)  # "array" (reduction none)


def check(ours, theirs, x, reduction, loss_shape):
    """Compare (loss, grad) pairs and the types/shapes/dtypes of ours."""
    (loss, grad), (tloss, tgrad) = ours, theirs
    dtype = x.dtype.type
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype
        assert loss.shape == tuple(loss_shape)
    else:
        assert isinstance(loss, dtype), type(loss)
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == x.shape
    np.testing.assert_allclose(loss, tloss, **TOL[dtype])
    np.testing.assert_allclose(grad, tgrad, **TOL[dtype])


def grad_output_kinds(reduction):
    return ["default", "scalar", "array"] if reduction == "none" else ["default", "scalar"]


def cases(*axes, reduction_axis=1):
    """itertools.product of the axes plus the grad_output kinds valid for the reduction."""
    out = []
    for combo in itertools.product(*axes):
        for go in grad_output_kinds(combo[reduction_axis]):
            out.append(combo + (go,))
    return out


# --------------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------------

C = 5
SHAPES = {"2d": (7, C), "unbatched": (C,), "kdim": (2, C, 3, 2)}


def make_ce(shape_kind, target_kind, dtype, seed=0):
    """Logits, target and ignore_index for one case."""
    rng = np.random.default_rng(seed)
    shape = SHAPES[shape_kind]
    x = (rng.standard_normal(shape) * 2.0).astype(dtype)
    tshape = () if shape_kind == "unbatched" else (shape[0],) + shape[2:]
    if target_kind == "soft":
        q = rng.uniform(0.0, 1.0, size=shape)
        q /= q.sum(axis=0 if shape_kind == "unbatched" else 1, keepdims=True)
        return x, q.astype(dtype), -100
    y = rng.integers(0, C, size=tshape)
    if target_kind == "ignore_default":  # default ignore_index with some rows ignored
        if shape_kind != "unbatched":
            y.reshape(-1)[[1, 4]] = -100
        return x, y, -100
    # "ignore_class": ignore_index is the real class 2, which occurs among the targets
    if shape_kind != "unbatched":
        y.reshape(-1)[[0, 3]] = 2
    return x, y, 2


CE_CASES = cases(
    DTYPES, REDUCTIONS, [False, True], [0.0, 0.1, 1.0],
    ["ignore_default", "ignore_class", "soft"], list(SHAPES),
)


@pytest.mark.parametrize(
    "dtype, reduction, use_weight, eps, target_kind, shape_kind, go_kind", CE_CASES
)
def test_cross_entropy(dtype, reduction, use_weight, eps, target_kind, shape_kind, go_kind):
    rng = np.random.default_rng(1)
    x, target, ignore_index = make_ce(shape_kind, target_kind, dtype)
    weight = rng.uniform(0.2, 2.0, size=C).astype(dtype) if use_weight else None
    loss_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    go = grad_output_for(go_kind, loss_shape, dtype, rng)
    x0, t0 = x.copy(), target.copy()

    ours = ref.cross_entropy_with_grad(
        x, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=eps, grad_output=go,
    )
    theirs = torch_loss_grad(
        F.cross_entropy, x, target, weight=weight, ignore_index=ignore_index,
        reduction=reduction, label_smoothing=eps, grad_output=go,
    )
    check(ours, theirs, x, reduction, loss_shape)
    # the forward is the fused function's loss, bit for bit
    fwd = ref.cross_entropy(x, target, weight, ignore_index, reduction, eps)
    np.testing.assert_array_equal(fwd, ours[0])
    # inputs untouched
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(target, t0)


@pytest.mark.parametrize("target_kind", ["ignore_default", "soft"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_kdim_is_flattened(target_kind, reduction):
    x, target, ii = make_ce("kdim", target_kind, np.float64, seed=3)
    w = np.linspace(0.5, 1.5, C)
    go = np.arange(12.0).reshape(2, 3, 2) if reduction == "none" else 0.3
    loss, grad = ref.cross_entropy_with_grad(x, target, w, ii, reduction, 0.1, go)
    xf = np.moveaxis(x, 1, -1).reshape(-1, C)
    tf = np.moveaxis(target, 1, -1).reshape(-1, C) if target_kind == "soft" else target.ravel()
    gof = go.ravel() if reduction == "none" else go
    lf, gf = ref.cross_entropy_with_grad(xf, tf, w, ii, reduction, 0.1, gof)
    np.testing.assert_array_equal(np.ravel(loss), np.ravel(lf))
    np.testing.assert_array_equal(np.moveaxis(grad, 1, -1).reshape(-1, C), gf)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint64])
def test_cross_entropy_integer_target_dtypes(tdtype):
    x, y, _ = make_ce("2d", "ignore_class", np.float64)
    a = ref.cross_entropy_with_grad(x, y.astype(np.int64), ignore_index=2, label_smoothing=0.1)
    b = ref.cross_entropy_with_grad(x, y.astype(tdtype), ignore_index=2, label_smoothing=0.1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("target_kind", ["index", "soft"])
def test_cross_entropy_empty_batch(dtype, reduction, eps, target_kind):
    x = np.zeros((0, C), dtype)
    target = np.zeros((0, C), dtype) if target_kind == "soft" else np.zeros(0, np.int64)
    ours = ref.cross_entropy_with_grad(x, target, reduction=reduction, label_smoothing=eps)
    theirs = torch_loss_grad(F.cross_entropy, x, target, reduction=reduction, label_smoothing=eps)
    check(ours, theirs, x, reduction, (0,))
    if reduction == "mean":
        assert np.isnan(ours[0])
    if reduction == "sum":
        assert ours[0] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("shape_kind", ["2d", "unbatched", "kdim"])
def test_cross_entropy_all_ignored(dtype, reduction, eps, use_weight, shape_kind):
    x, y, _ = make_ce(shape_kind, "ignore_default", dtype)
    y = np.full_like(y, 3)  # every target is the ignored class 3
    w = np.linspace(0.5, 1.5, C).astype(dtype) if use_weight else None
    ours = ref.cross_entropy_with_grad(
        x, y, w, ignore_index=3, reduction=reduction, label_smoothing=eps
    )
    theirs = torch_loss_grad(
        F.cross_entropy, x, y, weight=w, ignore_index=3, reduction=reduction, label_smoothing=eps
    )
    check(ours, theirs, x, reduction, y.shape)
    assert np.all(ours[1] == 0)
    if reduction == "mean":
        assert np.isnan(ours[0])
    else:
        assert np.all(ours[0] == 0)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_zero_weight_sum(eps):
    # Kept targets whose class weights sum to 0.  torch: mean NaN but an all-NaN gradient;
    # the spec (and the reference) give mean NaN and an all-zero gradient.
    x, _, _ = make_ce("2d", "ignore_default", np.float64)
    y = np.array([0, 0, 1, 0, -100, 1, 0])
    w = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    loss, grad = ref.cross_entropy_with_grad(x, y, w, label_smoothing=eps)
    assert np.isnan(loss) and np.all(grad == 0)
    tloss, tgrad = torch_loss_grad(F.cross_entropy, x, y, weight=w, label_smoothing=eps)
    assert np.isnan(tloss)
    # "sum" and "none" are ordinary and agree with torch
    for red in ("sum", "none"):
        ours = ref.cross_entropy_with_grad(x, y, w, reduction=red, label_smoothing=eps)
        theirs = torch_loss_grad(F.cross_entropy, x, y, weight=w, reduction=red,
                                 label_smoothing=eps)
        check(ours, theirs, x, red, y.shape)


@pytest.mark.parametrize("dtype, big", [(np.float64, 1e30), (np.float32, 1e4)])
def test_cross_entropy_extreme_logits(dtype, big):
    x = np.array([[big, -big, 0.0], [-big, -big, big], [0.0, 1.0, 2.0]], dtype)
    y = np.array([0, 1, 2])
    for eps in (0.0, 0.1):
        for red in REDUCTIONS:
            ours = ref.cross_entropy_with_grad(x, y, reduction=red, label_smoothing=eps)
            assert np.all(np.isfinite(ours[0])) and np.all(np.isfinite(ours[1]))
            theirs = torch_loss_grad(F.cross_entropy, x, y, reduction=red, label_smoothing=eps)
            check(ours, theirs, x, red, y.shape)


def test_cross_entropy_hand_values():
    # DESIGN.md section 7: logits = log(probabilities) so that cross-entropy is -log p[target]
    pa = np.array([[0.3, 0.3, 0.4], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7]])
    pb = np.array([[0.1, 0.2, 0.7], [0.1, 0.7, 0.2], [0.3, 0.4, 0.3]])
    y = np.array([2, 1, 0])
    la = ref.cross_entropy(np.log(pa), y)
    lb = ref.cross_entropy(np.log(pb), y)
    np.testing.assert_allclose(la, -(np.log(0.4) * 2 + np.log(0.1)) / 3, rtol=1e-14)
    np.testing.assert_allclose(lb, -(np.log(0.7) * 2 + np.log(0.3)) / 3, rtol=1e-14)
    _, g = ref.cross_entropy_with_grad(np.log(pa), y, reduction="sum")
    np.testing.assert_allclose(g, pa - np.eye(3)[y], rtol=1e-14, atol=1e-15)


def test_cross_entropy_neg_inf_logit():
    # A -inf logit (masked class) that is not the target: finite loss, zero probability.
    x = np.array([[0.0, -np.inf, 1.0]])
    y = np.array([0])
    ours = ref.cross_entropy_with_grad(x, y)
    check(ours, torch_loss_grad(F.cross_entropy, x, y), x, "mean", ())
    # soft target with q = 0 on the masked class: torch gives NaN (0 * -inf), we the limit
    q = np.array([[0.5, 0.0, 0.5]])
    loss, grad = ref.cross_entropy_with_grad(x, q)
    lse = np.log(1.0 + np.e)
    np.testing.assert_allclose(loss, 0.5 * lse + 0.5 * (lse - 1.0), rtol=1e-15)
    p = np.array([1.0, 0.0, np.e]) / (1.0 + np.e)
    np.testing.assert_allclose(grad[0], p - q[0], rtol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_ignored_row_with_nan_logits(eps):
    # An ignored row contributes exactly 0 to loss and gradient whatever its logits hold.
    x, y, _ = make_ce("2d", "ignore_default", np.float64)
    y = y.copy()
    y[2] = -100
    xn = x.copy()
    xn[2] = [np.nan, np.inf, -np.inf, 0.0, 1.0]
    for red in ("sum", "mean", "none"):
        l0, g0 = ref.cross_entropy_with_grad(x, y, reduction=red, label_smoothing=eps)
        l1, g1 = ref.cross_entropy_with_grad(xn, y, reduction=red, label_smoothing=eps)
        np.testing.assert_array_equal(l0, l1)
        np.testing.assert_array_equal(g0, g1)
        assert np.all(g1[2] == 0)
    # torch agrees on the loss (its gradient of that row is NaN through log_softmax backward)
    tl, _ = torch_loss_grad(F.cross_entropy, xn, y, label_smoothing=eps)
    np.testing.assert_allclose(ref.cross_entropy(xn, y, label_smoothing=eps), tl, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# binary cross-entropy with logits
# --------------------------------------------------------------------------------------------

BN, BC = 6, 4
W_SHAPES = {"none": None, "scalar_like": (1,), "per_class": (BC,), "per_row": (BN, 1),
            "full": (BN, BC)}
PW_SHAPES = {"none": None, "per_class": (BC,), "full": (BN, BC)}

BCE_CASES = cases(DTYPES, REDUCTIONS, list(W_SHAPES), list(PW_SHAPES))


@pytest.mark.parametrize("dtype, reduction, w_kind, pw_kind, go_kind", BCE_CASES)
def test_bce_with_logits(dtype, reduction, w_kind, pw_kind, go_kind):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((BN, BC)) * 3.0).astype(dtype)
    x[0, :] = [30.0, -30.0, 0.0, 700.0 if dtype == np.float64 else 80.0]
    y = rng.uniform(0.0, 1.0, size=(BN, BC)).astype(dtype)
    y[1, :] = [0.0, 1.0, 0.0, 1.0]
    y[0, :] = [0.0, 1.0, 1.0, 0.0]
    w = None if W_SHAPES[w_kind] is None else rng.uniform(0.1, 2.0, W_SHAPES[w_kind]).astype(dtype)
    pw = (None if PW_SHAPES[pw_kind] is None
          else rng.uniform(0.1, 3.0, PW_SHAPES[pw_kind]).astype(dtype))
    go = grad_output_for(go_kind, x.shape, dtype, rng)
    x0, y0 = x.copy(), y.copy()

    ours = ref.binary_cross_entropy_with_logits_with_grad(
        x, y, weight=w, reduction=reduction, pos_weight=pw, grad_output=go
    )
    theirs = torch_loss_grad(
        F.binary_cross_entropy_with_logits, x, y, weight=w, reduction=reduction,
        pos_weight=pw, grad_output=go,
    )
    check(ours, theirs, x, reduction, x.shape)
    fwd = ref.binary_cross_entropy_with_logits(x, y, w, reduction, pw)
    np.testing.assert_array_equal(fwd, ours[0])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_3d_pos_weight_last_dim(reduction):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4))
    y = rng.uniform(size=(2, 3, 4))
    pw, w = np.array([0.5, 1.0, 2.0, 3.0]), rng.uniform(size=(3, 1))
    ours = ref.binary_cross_entropy_with_logits_with_grad(x, y, w, reduction, pw)
    theirs = torch_loss_grad(F.binary_cross_entropy_with_logits, x, y, weight=w,
                             reduction=reduction, pos_weight=pw)
    check(ours, theirs, x, reduction, x.shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_infinite_logits_hand_values(dtype):
    # torch gives NaN for every one of these; we give the exact limit (documented deviation).
    inf = np.inf
    x = np.array([inf, -inf, inf, -inf, inf, -inf, np.nan], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0], dtype)
    pw = np.array(2.0, dtype)
    loss, grad = ref.binary_cross_entropy_with_logits_with_grad(
        x, y, reduction="none", pos_weight=pw
    )
    np.testing.assert_array_equal(loss, np.array([0, 0, inf, inf, inf, inf, np.nan], dtype))
    # w (c sigmoid(x) - pw y), c = pw y + 1 - y
    np.testing.assert_array_equal(grad, np.array([0, 0, 1, -2, 0.5, -1, np.nan], dtype))
    lm, gm = ref.binary_cross_entropy_with_logits_with_grad(x[:2], y[:2], pos_weight=pw)
    assert lm == 0 and isinstance(lm, dtype) and np.all(gm == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_hand_values(dtype):
    # x = 0: sigmoid = 1/2, l = (pw y + 1 - y) log 2, grad = (pw y + 1 - y)/2 - pw y
    x = np.zeros(3, dtype)
    y = np.array([0.0, 1.0, 0.25], dtype)
    loss, grad = ref.binary_cross_entropy_with_logits_with_grad(
        x, y, reduction="none", pos_weight=np.array(3.0)
    )
    c = 3.0 * y.astype(np.float64) + 1.0 - y
    np.testing.assert_allclose(loss, c * np.log(2.0), rtol=1e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(grad, c / 2 - 3.0 * y, rtol=1e-7 if dtype == np.float32 else 1e-15)


# --------------------------------------------------------------------------------------------
# MSE and Huber
# --------------------------------------------------------------------------------------------

PW_SHAPES_MSE = [(5,), (3, 4), (2, 3, 4)]


@pytest.mark.parametrize(
    "dtype, reduction, shape, go_kind", cases(DTYPES, REDUCTIONS, PW_SHAPES_MSE)
)
def test_mse(dtype, reduction, shape, go_kind):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    go = grad_output_for(go_kind, shape, dtype, rng)
    x0 = x.copy()
    ours = ref.mse_loss_with_grad(x, y, reduction, grad_output=go)
    theirs = torch_loss_grad(F.mse_loss, x, y, reduction=reduction, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    np.testing.assert_array_equal(ref.mse_loss(x, y, reduction), ours[0])
    np.testing.assert_array_equal(x, x0)


def make_huber(shape, delta, dtype, rng):
    """Inputs whose residuals include exactly +-delta (all values exact binary fractions)."""
    y = (rng.integers(-16, 16, size=shape) / 8.0).astype(dtype)
    r = (rng.standard_normal(shape) * 2.0 * delta).astype(dtype)
    flat = r.reshape(-1)
    flat[:4] = [delta, -delta, 0.0, 3 * delta]
    return (y + r).astype(dtype), y


@pytest.mark.parametrize(
    "dtype, reduction, shape, delta, go_kind",
    cases(DTYPES, REDUCTIONS, PW_SHAPES_MSE, [0.5, 1.0, 2.0]),
)
def test_huber(dtype, reduction, shape, delta, go_kind):
    rng = np.random.default_rng(4)
    x, y = make_huber(shape, delta, dtype, rng)
    r = x.astype(np.float64) - y
    assert np.any(r == delta) and np.any(r == -delta)
    go = grad_output_for(go_kind, shape, dtype, rng)
    x0 = x.copy()
    ours = ref.huber_loss_with_grad(x, y, reduction, delta=delta, grad_output=go)
    theirs = torch_loss_grad(F.huber_loss, x, y, reduction=reduction, delta=delta, grad_output=go)
    check(ours, theirs, x, reduction, shape)
    np.testing.assert_array_equal(ref.huber_loss(x, y, reduction, delta), ours[0])
    np.testing.assert_array_equal(x, x0)


def test_huber_boundary_hand_values():
    delta = 2.0
    x = np.array([2.0, -2.0, 1.0, 5.0, -5.0])
    loss, grad = ref.huber_loss_with_grad(x, np.zeros(5), "none", delta=delta)
    np.testing.assert_array_equal(loss, [2.0, 2.0, 0.5, 8.0, 8.0])
    np.testing.assert_array_equal(grad, [2.0, -2.0, 1.0, 2.0, -2.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["bce", "mse", "huber"])
def test_pointwise_empty(dtype, reduction, name):
    x = np.zeros((0, 3), dtype)
    y = np.zeros((0, 3), dtype)
    fn, tfn = {
        "bce": (ref.binary_cross_entropy_with_logits_with_grad, F.binary_cross_entropy_with_logits),
        "mse": (ref.mse_loss_with_grad, F.mse_loss),
        "huber": (ref.huber_loss_with_grad, F.huber_loss),
    }[name]
    ours = fn(x, y, reduction=reduction)
    theirs = torch_loss_grad(tfn, x, y, reduction=reduction)
    check(ours, theirs, x, reduction, x.shape)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [ref.cross_entropy, ref.cross_entropy_with_grad, ref.binary_cross_entropy_with_logits,
     ref.binary_cross_entropy_with_logits_with_grad, ref.mse_loss, ref.mse_loss_with_grad,
     ref.huber_loss, ref.huber_loss_with_grad],
)
def test_unknown_reduction(fn):
    x = np.zeros((2, 3))
    y = np.zeros(2, np.int64) if "cross_entropy" in fn.__name__ and "binary" not in fn.__name__ \
        else np.zeros((2, 3))
    with pytest.raises(ValueError, match="reduction"):
        fn(x, y, reduction="avg")
