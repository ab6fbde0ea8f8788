"""The public API (fastloss.functional, compiled kernels) against fastloss.reference.

Sections:
1. every loss vs the reference for every option, dtype, reduction, grad_output and out=,
   on every SIMD kernel build (fixture ``simd_path``);
2. gradients vs 4th-order central finite differences (float64);
3. the worked example of DESIGN.md section 7, exact values;
4. extreme values, inf and NaN;
5. inputs unmodified, non-contiguous / read-only / float16 inputs, empty and all-ignored batches,
   threads;
6. a few cases against torch (skipped without torch).

Tolerances: float64 rtol 1e-12 / atol 1e-14; float32 rtol 2e-5 / atol 1e-6 (the kernels work in
float32 there, the reference in float64).
"""

import math
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss import _dispatch
from fastloss import reference as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# The kernels' fixed blocks, so that inputs below span several of them.
CE_BLOCK_ELEMS = _dispatch.kernels.BLOCK_SIZES["cross_entropy_elems"]
CE_MAX_BLOCK_ROWS = _dispatch.kernels.BLOCK_SIZES["cross_entropy_max_rows"]
ELEMENT_BLOCK = _dispatch.kernels.BLOCK_SIZES["elementwise"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def go_kinds(reduction):
    """grad_output variants valid for a reduction."""
    return ["default", "scalar", "array"] if reduction == "none" else ["default", "scalar"]


def make_go(kind, loss_shape, dtype, rng):
    if kind == "default":
        return None
    if kind == "scalar":
        return 0.7
    return rng.uniform(-2.0, 2.0, size=loss_shape).astype(dtype)


def _arrays(values):
    return [v for v in values if isinstance(v, np.ndarray)]


def check_types(loss, grad, x, reduction, loss_shape, dtype=None):
    """loss: NumPy scalar of input's dtype (mean/sum) or array of loss_shape; grad: input's
    shape and dtype."""
    dtype = np.dtype(dtype or x.dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype and loss.shape == tuple(loss_shape), (loss.dtype, loss.shape)
    else:
        assert type(loss) is dtype.type, type(loss)
    if grad is not None:
        assert isinstance(grad, np.ndarray)
        assert grad.dtype == dtype and grad.shape == x.shape, (grad.dtype, grad.shape)


def run_vs_reference(name, x, target, loss_shape, *, grad_output=None, use_out=False, tol=None,
                     **kwargs):
    """fastloss.<name>_with_grad and fastloss.<name> against reference.<name>_with_grad.

    Checks result types, out= identity, that the forward's loss is the fused one bit for bit and
    that no argument is modified. Returns (loss, grad)."""
    fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
    reference = getattr(ref, name + "_with_grad")
    reduction = kwargs.get("reduction", "mean")
    args = [x, target, grad_output, *kwargs.values()]
    saved = [a.copy() for a in _arrays(args)]
    out = np.full(x.shape, np.nan, x.dtype) if use_out else None

    loss, grad = fused(x, target, grad_output=grad_output, out=out, **kwargs)
    loss_fwd = forward(x, target, **kwargs)
    rloss, rgrad = reference(x, target, grad_output=grad_output, **kwargs)

    msg = f"{name} {x.dtype} {x.shape} go={type(grad_output).__name__} out={use_out} {kwargs}"
    check_types(loss, grad, x, reduction, loss_shape)
    check_types(loss_fwd, None, x, reduction, loss_shape)
    if use_out:
        assert grad is out
        assert grad.size == 0 or np.shares_memory(grad, out)
    np.testing.assert_array_equal(loss_fwd, loss, err_msg="forward != fused loss " + msg)
    tol = tol or TOL[x.dtype.type]
    np.testing.assert_allclose(loss, rloss, **tol, err_msg="loss " + msg)
    np.testing.assert_allclose(grad, rgrad, **tol, err_msg="grad " + msg)
    for before, after in zip(saved, _arrays(args)):
        np.testing.assert_array_equal(before, after, err_msg="argument modified " + msg)
    return loss, grad


def all_variants(name, x, target, loss_shape, rng, **kwargs):
    """run_vs_reference for every grad_output kind valid for the reduction, with and without out=."""
    reduction = kwargs.get("reduction", "mean")
    combos = [("default", False), ("default", True), ("scalar", True)]
    if reduction == "none":
        combos += [("array", False), ("array", True)]
    for kind, use_out in combos:
        go = make_go(kind, loss_shape, x.dtype, rng)
        run_vs_reference(name, x, target, loss_shape, grad_output=go, use_out=use_out, **kwargs)


def ce_rows(C):
    """Rows of C classes spanning 2.5 kernel blocks (last one partial)."""
    per_block = max(1, min(CE_MAX_BLOCK_ROWS, CE_BLOCK_ELEMS // C))
    return 2 * per_block + per_block // 2 + 1


def soft_targets(shape, axis, rng, dtype):
    q = rng.uniform(0.0, 1.0, size=shape)
    return (q / q.sum(axis=axis, keepdims=True)).astype(dtype)


# --------------------------------------------------------------------------------------------
# 1. kernels vs reference: cross-entropy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
# C < 16 (float32) and C < 8 (float64) take the narrow kernel (rows as SIMD lanes).
@pytest.mark.parametrize("C", [1, 3, 7, 8, 10, 15, 16, 37, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_index_targets(simd_path, dtype, C, reduction, weighted):
    rng = np.random.default_rng(C)
    N = ce_rows(C)
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    y = rng.integers(0, C, N)
    y[::5] = -100  # default ignore_index, some rows ignored
    w = rng.uniform(0.1, 2.0, C).astype(dtype) if weighted else None
    for eps in (0.0, 0.1, 1.0):
        all_variants("cross_entropy", x, y, (N,), rng, weight=w, reduction=reduction,
                     label_smoothing=eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_smoothing_without_weight_is_unit_weight(simd_path, dtype):
    """weight=None means every class weight is 1, with label smoothing too."""
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype)
    y = np.array([0, 2])
    for reduction in REDUCTIONS:
        expected = fl.cross_entropy_with_grad(x, y, weight=np.ones(3, dtype),
                                              label_smoothing=0.1, reduction=reduction)
        loss, grad = fl.cross_entropy_with_grad(x, y, label_smoothing=0.1, reduction=reduction)
        np.testing.assert_allclose(loss, expected[0], **TOL[dtype])
        np.testing.assert_allclose(grad, expected[1], **TOL[dtype])
    # by hand: l = 0.9 * (-log p[y]) + 0.1/3 * sum_c (-log p[c])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    by_hand = 0.9 * (lse - 1) + 0.1 / 3 * (3 * lse - 6)
    loss = fl.cross_entropy(x[:1], y[:1], label_smoothing=0.1)
    np.testing.assert_allclose(loss, by_hand, rtol=TOL[dtype]["rtol"])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_ignore_index_is_a_real_class(simd_path, dtype, reduction):
    rng = np.random.default_rng(1)
    N, C = 300, 7
    x = rng.standard_normal((N, C)).astype(dtype)
    y = rng.integers(0, C, N)
    assert (y == 2).sum() > 10
    w = rng.uniform(0.1, 2.0, C)
    for eps in (0.0, 0.1):
        for weight in (None, w):
            loss, grad = run_vs_reference("cross_entropy", x, y, (N,), weight=weight,
                                          ignore_index=2, reduction=reduction,
                                          label_smoothing=eps)
            assert np.all(grad[y == 2] == 0)
            if reduction == "none":
                assert np.all(loss[y == 2] == 0)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                    np.uint32, np.int64, np.uint64])
def test_ce_integer_target_dtypes(simd_path, tdtype):
    rng = np.random.default_rng(2)
    N, C = 600, 10
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    signed = np.issubdtype(tdtype, np.signedinteger)
    ignore = -100 if signed else 4
    if signed:
        y[::7] = -100
    for reduction in REDUCTIONS:
        kwargs = dict(ignore_index=ignore, reduction=reduction, label_smoothing=0.1)
        loss, grad = run_vs_reference("cross_entropy", x, y.astype(tdtype), (N,), **kwargs)
        loss64, grad64 = fl.cross_entropy_with_grad(x, y.astype(np.int64), **kwargs)
        np.testing.assert_array_equal(loss, loss64)
        np.testing.assert_array_equal(grad, grad64)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("C", [3, 7, 15, 37, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_soft_targets(simd_path, dtype, C, reduction, weighted):
    rng = np.random.default_rng(3)
    N = ce_rows(C)
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    q = soft_targets((N, C), 1, rng, dtype)
    w = rng.uniform(0.1, 2.0, C).astype(dtype) if weighted else None
    for eps in (0.0, 0.1, 1.0):
        all_variants("cross_entropy", x, q, (N,), rng, weight=w, reduction=reduction,
                     label_smoothing=eps)
    # not renormalised, not range-checked
    q_raw = rng.uniform(-0.5, 2.0, size=(N, C)).astype(dtype)
    run_vs_reference("cross_entropy", x, q_raw, (N,), weight=w, reduction=reduction,
                     label_smoothing=0.1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("C", [1, 5, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_unbatched(simd_path, dtype, C, reduction):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(C) * 3).astype(dtype)
    w = rng.uniform(0.1, 2.0, C).astype(dtype)
    for target in (np.array(C - 1), np.array(0, np.uint8), np.int16(C // 2)):
        for eps in (0.0, 0.1):
            for weight in (None, w):
                all_variants("cross_entropy", x, np.asarray(target), (), rng, weight=weight,
                             reduction=reduction, label_smoothing=eps)
    # ignored unbatched target
    loss, grad = run_vs_reference("cross_entropy", x, np.array(-100), (), reduction=reduction)
    assert np.all(grad == 0)
    # a plain Python int target
    loss_int = fl.cross_entropy(x, C - 1, reduction=reduction)
    np.testing.assert_array_equal(loss_int, fl.cross_entropy(x, np.array(C - 1),
                                                             reduction=reduction))
    # probabilities
    q = soft_targets((C,), 0, rng, dtype)
    all_variants("cross_entropy", x, q, (), rng, weight=w, reduction=reduction,
                 label_smoothing=0.1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_kdim(simd_path, dtype, reduction):
    rng = np.random.default_rng(5)
    N, C, d1, d2 = 3, 5, 40, 30  # 3600 rows: several blocks
    x = (rng.standard_normal((N, C, d1, d2)) * 2).astype(dtype)
    y = rng.integers(0, C, (N, d1, d2))
    y[:, ::3, 1] = -100
    q = soft_targets(x.shape, 1, rng, dtype)
    w = rng.uniform(0.1, 2.0, C).astype(dtype)
    for eps in (0.0, 0.1):
        for target in (y, q):
            all_variants("cross_entropy", x, target, (N, d1, d2), rng, weight=w,
                         reduction=reduction, label_smoothing=eps)
    # one extra dimension, no weights
    x3 = x[:, :, :, 0].copy()
    run_vs_reference("cross_entropy", x3, y[:, :, 0].copy(), (N, d1), reduction=reduction)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_kdim_is_exactly_flattened(simd_path, reduction, soft):
    rng = np.random.default_rng(6)
    N, C, d1, d2 = 2, 4, 3, 5
    x = rng.standard_normal((N, C, d1, d2))
    if soft:
        t = soft_targets(x.shape, 1, rng, np.float64)
        t_flat = np.moveaxis(t, 1, -1).reshape(-1, C)
    else:
        t = rng.integers(0, C, (N, d1, d2))
        t[0, 1] = -100
        t_flat = t.reshape(-1)
    go = rng.uniform(-1, 1, (N, d1, d2)) if reduction == "none" else 0.3
    go_flat = go.reshape(-1) if reduction == "none" else go
    w = np.linspace(0.5, 1.5, C)
    loss, grad = fl.cross_entropy_with_grad(x, t, w, reduction=reduction, label_smoothing=0.1,
                                            grad_output=go)
    x_flat = np.moveaxis(x, 1, -1).reshape(-1, C)
    loss_f, grad_f = fl.cross_entropy_with_grad(x_flat, t_flat, w, reduction=reduction,
                                                label_smoothing=0.1, grad_output=go_flat)
    np.testing.assert_array_equal(np.ravel(loss), np.ravel(loss_f))
    np.testing.assert_array_equal(np.moveaxis(grad, 1, -1).reshape(-1, C), grad_f)


@pytest.mark.parametrize("shape", [(600, 10), (9, 1000), (7,), (3, 5, 4, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_out_is_input_in_place(simd_path, dtype, shape):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    y = np.asarray(rng.integers(0, C, () if len(shape) == 1 else (shape[0],) + shape[2:]))
    for kwargs in (dict(), dict(label_smoothing=0.1, weight=np.linspace(0.5, 2, C)),
                   dict(reduction="sum"), dict(reduction="none")):
        loss_ref, grad_ref = fl.cross_entropy_with_grad(x, y, **kwargs)
        buf = x.copy()
        loss, grad = fl.cross_entropy_with_grad(buf, y, out=buf, **kwargs)
        assert grad is buf
        np.testing.assert_array_equal(loss, loss_ref)
        np.testing.assert_array_equal(buf, grad_ref)  # logits overwritten by the gradient
    # soft targets in place
    q = soft_targets(shape, 0 if len(shape) == 1 else 1, rng, dtype)
    loss_ref, grad_ref = fl.cross_entropy_with_grad(x, q, label_smoothing=0.2)
    buf = x.copy()
    loss, grad = fl.cross_entropy_with_grad(buf, q, label_smoothing=0.2, out=buf)
    assert grad is buf
    np.testing.assert_array_equal(loss, loss_ref)
    np.testing.assert_array_equal(buf, grad_ref)


# --------------------------------------------------------------------------------------------
# 1. kernels vs reference: binary cross-entropy with logits
# --------------------------------------------------------------------------------------------

BCE_SHAPES = {37: (300, 37), 100: (97, 100)}  # several pointwise blocks, the last partial
assert all(math.prod(shape) > 2 * ELEMENT_BLOCK for shape in BCE_SHAPES.values())


def bce_operand(kind, shape, rng, dtype, low=0.1, high=2.0):
    N, C = shape
    shapes = {"none": None, "0d": (), "(1,)": (1,), "(C,)": (C,), "(1,C)": (1, C),
              "(N,1)": (N, 1), "full": (N, C)}
    s = shapes[kind]
    return None if s is None else rng.uniform(low, high, s).astype(dtype)


def bce_data(shape, rng, dtype):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.uniform(0, 1, shape)
    y[::3] = np.round(y[::3])  # exact 0/1 targets too
    return x, y.astype(dtype)


BCE_WEIGHTINGS = (
    [(w, "none") for w in ["none", "0d", "(1,)", "(C,)", "(1,C)", "(N,1)", "full"]]
    + [("none", "(C,)"), ("none", "full"), ("(C,)", "(C,)"), ("(N,1)", "(C,)"),
       ("(1,)", "full"), ("full", "full")]
)


@pytest.mark.parametrize("weight_kind, pos_kind", BCE_WEIGHTINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("C", [37, 100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce(simd_path, dtype, C, reduction, weight_kind, pos_kind):
    rng = np.random.default_rng(C)
    shape = BCE_SHAPES[C]
    x, y = bce_data(shape, rng, dtype)
    w = bce_operand(weight_kind, shape, rng, dtype)
    pw = bce_operand(pos_kind, shape, rng, dtype, 0.2, 5.0)
    all_variants("binary_cross_entropy_with_logits", x, y, shape, rng, weight=w,
                 reduction=reduction, pos_weight=pw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_3d_broadcasting(simd_path, dtype, reduction):
    rng = np.random.default_rng(8)
    shape = (4, 30, 70)
    x, y = bce_data((4 * 30, 70), rng, dtype)
    x, y = x.reshape(shape), y.reshape(shape)
    for wshape in [(70,), (30, 1), (4, 1, 1), (4, 30, 1), (1, 30, 70), (1, 1, 70)]:
        for pshape in [None, (70,), (30, 70)]:
            w = rng.uniform(0.1, 2, wshape).astype(dtype)
            pw = None if pshape is None else rng.uniform(0.2, 5, pshape).astype(dtype)
            run_vs_reference("binary_cross_entropy_with_logits", x, y, shape, weight=w,
                             pos_weight=pw, reduction=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_relative_accuracy_of_small_values(simd_path, dtype):
    """Loss and gradient keep full relative accuracy when tiny (large |x|, confident).

    Compared with exact closed forms, not with the reference: the reference's gradient
    c*sigmoid(x) - pw*y cancels catastrophically there (x = 38, y = 1 gives 0, not -3.1e-17)."""
    big = 700.0 if dtype == np.float64 else 80.0  # exp(-|x|) stays a normal number
    xs = np.concatenate([np.linspace(-big, big, 2001), [-1e-8, 1e-8, 0.0]]).astype(dtype)
    x64 = xs.astype(np.float64)
    exact = {  # y: (loss, grad)
        0.0: (np.logaddexp(0.0, x64), 1.0 / (1.0 + np.exp(-x64))),   # sigmoid(x)
        1.0: (np.logaddexp(0.0, -x64), -1.0 / (1.0 + np.exp(x64))),  # -sigmoid(-x)
    }
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    for yv, (eloss, egrad) in exact.items():
        y = np.full_like(xs, yv)
        loss, grad = fl.binary_cross_entropy_with_logits_with_grad(xs, y, reduction="none")
        np.testing.assert_allclose(loss, eloss, rtol=rtol, atol=0)
        np.testing.assert_allclose(grad, egrad, rtol=rtol, atol=0)


# --------------------------------------------------------------------------------------------
# 1. kernels vs reference: MSE and Huber
# --------------------------------------------------------------------------------------------

POINTWISE_SHAPES = [(), (7,), (300, 37), (97, 100), (3, 4, 5)]


@pytest.mark.parametrize("shape", POINTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mse(simd_path, dtype, reduction, shape):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    all_variants("mse_loss", x, y, shape, rng, reduction=reduction)


def huber_data(shape, delta, rng, dtype):
    """Random residuals plus residuals of exactly +delta and -delta (dyadic values, exact)."""
    y = (rng.integers(-64, 64, shape) / 8).astype(dtype)
    r = rng.standard_normal(shape) * 2 * delta
    flat = r.reshape(-1)
    flat[0::4] = delta
    flat[1::4] = -delta
    x = (y + r).astype(dtype)
    return x, y


@pytest.mark.parametrize("shape", POINTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_huber(simd_path, dtype, delta, reduction, shape):
    rng = np.random.default_rng(10)
    x, y = huber_data(shape, delta, rng, dtype)
    all_variants("huber_loss", x, y, shape, rng, reduction=reduction, delta=delta)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_huber_at_exactly_delta(simd_path, dtype, delta):
    y = (np.arange(-40, 40) / 8).astype(dtype)
    for sign in (1, -1):
        x = (y + sign * delta).astype(dtype)
        assert np.all(x.astype(np.float64) - y == sign * delta)
        loss, grad = fl.huber_loss_with_grad(x, y, reduction="none", delta=delta)
        assert np.all(loss == dtype(0.5 * delta * delta))
        assert np.all(grad == dtype(sign * delta))
        loss, grad = fl.huber_loss_with_grad(x, y, reduction="sum", delta=delta, grad_output=2.0)
        assert loss == dtype(0.5 * delta * delta * y.size)
        assert np.all(grad == dtype(2 * sign * delta))


@pytest.mark.parametrize("name, kwargs", [
    ("mse_loss", {}), ("huber_loss", dict(delta=0.7)),
    ("binary_cross_entropy_with_logits", dict(pos_weight=np.linspace(0.5, 3, 100))),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_out_is_input_in_place(simd_path, dtype, name, kwargs):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((97, 100)).astype(dtype)
    y = rng.uniform(0, 1, (97, 100)).astype(dtype)
    for reduction in REDUCTIONS:
        loss_ref, grad_ref = getattr(fl, name + "_with_grad")(x, y, reduction=reduction, **kwargs)
        buf = x.copy()
        loss, grad = getattr(fl, name + "_with_grad")(buf, y, reduction=reduction, out=buf,
                                                      **kwargs)
        assert grad is buf
        np.testing.assert_array_equal(loss, loss_ref)
        np.testing.assert_array_equal(buf, grad_ref)


# --------------------------------------------------------------------------------------------
# 2. gradients vs central finite differences (float64)
# --------------------------------------------------------------------------------------------


def numeric_grad(f, x, h=1e-3):
    """4th-order central differences of the scalar f at x."""
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        def at(step):
            xs = flat.copy()
            xs[i] += step
            return float(f(xs.reshape(x.shape)))
        gflat[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return g


def check_fd(name, x, target, go=None, **kwargs):
    """Gradient of sum(go * loss) vs finite differences of the same scalar from the forward."""
    forward = getattr(fl, name)
    reduction = kwargs.get("reduction", "mean")

    def f(xv):
        loss = forward(xv, target, **kwargs)
        return np.sum(loss * (1.0 if go is None else go)) if reduction == "none" else loss * (
            1.0 if go is None else go)

    _, grad = getattr(fl, name + "_with_grad")(x, target, grad_output=go, **kwargs)
    np.testing.assert_allclose(grad, numeric_grad(f, x), rtol=1e-7, atol=1e-9,
                               err_msg=f"{name} {kwargs}")


FD_REDUCTIONS = [("mean", None), ("sum", 1.3), ("none", "array")]


@pytest.mark.parametrize("reduction, go", FD_REDUCTIONS)
def test_fd_cross_entropy(reduction, go):
    rng = np.random.default_rng(20)
    N, C = 6, 4
    x = rng.standard_normal((N, C))
    y = np.array([0, 3, -100, 1, 2, 2])
    q = soft_targets((N, C), 1, rng, np.float64)
    w = rng.uniform(0.2, 2.0, C)
    g = rng.uniform(-2, 2, N) if go == "array" else go
    for target in (y, q):
        for weight in (None, w):
            for eps in (0.0, 0.3, 1.0):
                check_fd("cross_entropy", x, target, g, weight=weight, reduction=reduction,
                         label_smoothing=eps)
    check_fd("cross_entropy", x, np.array([0, 3, 2, 1, 2, 0]), g, ignore_index=2,
             reduction=reduction)
    # unbatched and K-dim
    check_fd("cross_entropy", x[0], np.array(2), None if go == "array" else go,
             reduction=reduction, label_smoothing=0.1)
    xk = rng.standard_normal((2, C, 3))
    yk = rng.integers(0, C, (2, 3))
    gk = rng.uniform(-2, 2, (2, 3)) if go == "array" else go
    check_fd("cross_entropy", xk, yk, gk, weight=w, reduction=reduction, label_smoothing=0.2)


@pytest.mark.parametrize("reduction, go", FD_REDUCTIONS)
def test_fd_bce(reduction, go):
    rng = np.random.default_rng(21)
    shape = (5, 4)
    x = rng.standard_normal(shape) * 3
    y = rng.uniform(0, 1, shape)
    y[0] = [0, 1, 0, 1]
    g = rng.uniform(-2, 2, shape) if go == "array" else go
    for weight in (None, rng.uniform(0.2, 2, (4,)), rng.uniform(0.2, 2, (5, 1))):
        for pos_weight in (None, rng.uniform(0.2, 5, (4,)), rng.uniform(0.2, 5, shape)):
            check_fd("binary_cross_entropy_with_logits", x, y, g, weight=weight,
                     pos_weight=pos_weight, reduction=reduction)


@pytest.mark.parametrize("reduction, go", FD_REDUCTIONS)
def test_fd_mse_huber(reduction, go):
    rng = np.random.default_rng(22)
    shape = (5, 4)
    x = rng.standard_normal(shape) * 3
    y = rng.standard_normal(shape)
    g = rng.uniform(-2, 2, shape) if go == "array" else go
    check_fd("mse_loss", x, y, g, reduction=reduction)
    for delta in (0.5, 1.0, 2.0):
        # keep residuals away from the kink |r| = delta (the stencil spans +-2h)
        r = x - y
        xs = np.where(np.abs(np.abs(r) - delta) < 0.01, x + 0.05, x)
        check_fd("huber_loss", xs, y, g, reduction=reduction, delta=delta)


# --------------------------------------------------------------------------------------------
# 3. the worked example of DESIGN.md section 7
# --------------------------------------------------------------------------------------------

P_A = np.array([[.3, .3, .4], [.3, .4, .3], [.1, .2, .7]])
P_B = np.array([[.1, .2, .7], [.1, .7, .2], [.3, .4, .3]])
TARGETS = np.array([2, 1, 0])


def test_worked_example(simd_path):
    ln = math.log
    # cross-entropy on log-probabilities: softmax(log p) = p, so the loss is -log p[target]
    ce_a = (-ln(.4) - ln(.4) - ln(.1)) / 3
    ce_b = (-ln(.7) - ln(.7) - ln(.3)) / 3
    assert abs(ce_a - 1.38) < 0.005 and abs(ce_b - 0.64) < 0.005
    np.testing.assert_allclose(fl.cross_entropy(np.log(P_A), TARGETS), ce_a, rtol=1e-12)
    np.testing.assert_allclose(fl.cross_entropy(np.log(P_B), TARGETS), ce_b, rtol=1e-12)
    np.testing.assert_allclose(fl.cross_entropy(np.log(P_A), TARGETS, reduction="none"),
                               [-ln(.4), -ln(.4), -ln(.1)], rtol=1e-12)
    # its gradient w.r.t. the logits: (p - onehot) / 3
    _, grad = fl.cross_entropy_with_grad(np.log(P_A), TARGETS)
    onehot = np.eye(3)[TARGETS]
    np.testing.assert_allclose(grad, (P_A - onehot) / 3, rtol=1e-12, atol=1e-14)
    # squared error vs one-hot, by hand:
    # A: (.09+.09+.36) + (.09+.36+.09) + (.81+.04+.49) = 2.42
    # B: (.01+.04+.09) + (.01+.09+.04) + (.49+.16+.09) = 1.02
    se_a, se_b = 2.42, 1.02
    # summed over classes, averaged over samples: A ~ 0.81, B ~ 0.34
    assert round(se_a / 3, 2) == 0.81 and round(se_b / 3, 2) == 0.34
    np.testing.assert_allclose(fl.mse_loss(P_A, onehot, reduction="sum") / 3, se_a / 3,
                               rtol=1e-12)
    np.testing.assert_allclose(fl.mse_loss(P_B, onehot, reduction="sum") / 3, se_b / 3,
                               rtol=1e-12)
    # mse_loss averages over all 9 elements: A ~ 0.27, B ~ 0.11
    assert round(se_a / 9, 2) == 0.27 and round(se_b / 9, 2) == 0.11
    np.testing.assert_allclose(fl.mse_loss(P_A, onehot), se_a / 9, rtol=1e-12)
    np.testing.assert_allclose(fl.mse_loss(P_B, onehot), se_b / 9, rtol=1e-12)
    _, grad = fl.mse_loss_with_grad(P_A, onehot)
    np.testing.assert_allclose(grad, 2 * (P_A - onehot) / 9, rtol=1e-12, atol=1e-15)
    # probability targets of the one-hot give the same cross-entropy
    np.testing.assert_allclose(fl.cross_entropy(np.log(P_B), onehot), ce_b, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# 4. extreme values, inf, NaN
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e4), (np.float64, 1e30)])
def test_extreme_logits_are_finite(simd_path, dtype, big):
    rng = np.random.default_rng(30)
    N, C = 300, 7
    x = (rng.choice([-1.0, 1.0, 0.5, 0.0], size=(N, C)) * big).astype(dtype)
    y = rng.integers(0, C, N)
    q = soft_targets((N, C), 1, rng, dtype)
    for target in (y, q):
        for eps in (0.0, 0.1):
            for reduction in REDUCTIONS:
                loss, grad = run_vs_reference("cross_entropy", x, target, (N,),
                                              reduction=reduction, label_smoothing=eps)
                assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    yb = rng.uniform(0, 1, (N, C)).astype(dtype)
    for pos_weight in (None, np.linspace(0.5, 3, C).astype(dtype)):
        for reduction in REDUCTIONS:
            loss, grad = run_vs_reference("binary_cross_entropy_with_logits", x, yb, (N, C),
                                          reduction=reduction, pos_weight=pos_weight)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_masked_class(simd_path, dtype):
    """A -inf logit is a class with probability 0."""
    x = np.array([[1.0, -np.inf, 2.0], [0.5, -np.inf, -np.inf], [-np.inf, 3.0, 1.0]], dtype)
    y = np.array([0, 0, 2])
    loss, grad = fl.cross_entropy_with_grad(x, y, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert grad[0, 1] == 0 and grad[1, 1] == 0 and grad[1, 2] == 0 and grad[2, 0] == 0
    assert loss[1] == 0 and grad[1, 0] == 0  # only one possible class
    for reduction in REDUCTIONS:
        for eps in (0.0, 0.1):
            for w in (None, np.array([0.5, 1.0, 2.0])):
                run_vs_reference("cross_entropy", x, y, (3,), reduction=reduction,
                                 label_smoothing=eps, weight=w)
        # soft targets with no mass on the masked class: finite
        q = np.array([[0.3, 0.0, 0.7], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype)
        l, g = run_vs_reference("cross_entropy", x, q, (3,), reduction=reduction)
        assert np.all(np.isfinite(l)) and np.all(np.isfinite(g))
    # smoothing with a zero weight on the masked class: that term is 0, not 0 * inf
    w0 = np.array([1.0, 0.0, 1.0])
    loss, grad = run_vs_reference("cross_entropy", x[:1], y[:1], (1,), reduction="none",
                                  label_smoothing=0.1, weight=w0)
    assert np.isfinite(loss[0])
    # the target is the masked class: infinite loss, finite gradient
    loss, grad = fl.cross_entropy_with_grad(x, np.array([1, 0, 2]), reduction="none")
    assert loss[0] == np.inf and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_ce(simd_path, dtype):
    rng = np.random.default_rng(31)
    N, C = 600, 10
    x = rng.standard_normal((N, C)).astype(dtype)
    x[3, 4] = np.nan   # a non-target class
    x[10, 0] = np.nan  # the target class
    x[20, :] = np.nan  # a whole row
    x[30, 2] = np.nan  # an ignored row
    y = rng.integers(1, C, N)
    y[10] = 0
    y[30] = -100
    bad = [3, 10, 20]
    for eps in (0.0, 0.1):
        loss, grad = fl.cross_entropy_with_grad(x, y, reduction="none", label_smoothing=eps)
        rloss, rgrad = ref.cross_entropy_with_grad(x, y, reduction="none", label_smoothing=eps)
        assert np.all(np.isnan(loss[bad])), loss[bad]
        assert np.all(np.isnan(grad[bad])), grad[bad]
        assert loss[30] == 0 and np.all(grad[30] == 0)
        good = np.setdiff1d(np.arange(N), bad)
        np.testing.assert_allclose(loss[good], rloss[good], **TOL[dtype])
        np.testing.assert_allclose(grad[good], rgrad[good], **TOL[dtype])
        for reduction in ("mean", "sum"):
            assert np.isnan(fl.cross_entropy(x, y, reduction=reduction, label_smoothing=eps))
        # soft targets
        q = soft_targets((N, C), 1, rng, dtype)
        loss, grad = fl.cross_entropy_with_grad(x, q, reduction="none", label_smoothing=eps)
        assert np.all(np.isnan(loss[bad + [30]])) and np.all(np.isnan(grad[bad + [30]]))
        assert np.all(np.isfinite(loss[good[good != 30]]))


@pytest.mark.parametrize("name", ["mse_loss", "huber_loss", "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_pointwise(simd_path, dtype, name):
    rng = np.random.default_rng(32)
    x = rng.standard_normal(5000).astype(dtype)
    y = rng.uniform(0, 1, 5000).astype(dtype)
    y[:10] = [0, 1, 0, 1, 0.5, 0, 1, 0, 1, 0.5]
    x[[0, 1, 4, 4100]] = np.nan
    y[[2, 3, 4200]] = np.nan
    bad = [0, 1, 2, 3, 4, 4100, 4200]
    loss, grad = getattr(fl, name + "_with_grad")(x, y, reduction="none")
    assert np.all(np.isnan(loss[bad])) and np.all(np.isnan(grad[bad]))
    good = np.setdiff1d(np.arange(x.size), bad)
    assert np.all(np.isfinite(loss[good])) and np.all(np.isfinite(grad[good]))
    for reduction in ("mean", "sum"):
        assert np.isnan(getattr(fl, name)(x, y, reduction=reduction))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_infinite_logits_exact_limits(simd_path, dtype):
    inf = np.inf
    x = np.array([inf, -inf, inf, -inf, inf, -inf], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], dtype)
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss, np.array([0, 0, inf, inf, inf, inf], dtype))
    np.testing.assert_array_equal(grad, np.array([0, 0, 1, -1, 0.5, -0.5], dtype))
    # with pos_weight: the positive part scaled by pw
    pw = np.full(6, 3.0, dtype)
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x, y, reduction="none",
                                                               pos_weight=pw)
    np.testing.assert_array_equal(loss, np.array([0, 0, inf, inf, inf, inf], dtype))
    np.testing.assert_array_equal(grad, np.array([0, 0, 1, -3, 0.5, -1.5], dtype))
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x[:2], y[:2])
    assert loss == 0 and np.all(grad == 0)


# --------------------------------------------------------------------------------------------
# 5. inputs unmodified, non-contiguous, read-only, float16, empty, all ignored, threads
# --------------------------------------------------------------------------------------------


def _call_cases(rng, dtype):
    """(name, input, target, kwargs, loss_shape for "none") for every loss with options."""
    N, C = 120, 70
    x = rng.standard_normal((N, C)).astype(dtype)
    y = rng.integers(0, C, N)
    y[::9] = -100
    yb = rng.uniform(0, 1, (N, C)).astype(dtype)
    q = soft_targets((N, C), 1, rng, dtype)
    w = rng.uniform(0.2, 2, C).astype(dtype)
    return [
        ("cross_entropy", x, y, dict(weight=w, label_smoothing=0.1), (N,)),
        ("cross_entropy", x, q, dict(weight=w, label_smoothing=0.1), (N,)),
        ("binary_cross_entropy_with_logits", x, yb, dict(weight=w, pos_weight=w[::-1].copy()),
         (N, C)),
        ("binary_cross_entropy_with_logits", x, yb,
         dict(weight=rng.uniform(0, 1, (N, 1)).astype(dtype)), (N, C)),
        ("mse_loss", x, yb, {}, (N, C)),
        ("huber_loss", x, yb, dict(delta=0.3), (N, C)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(simd_path, dtype):
    rng = np.random.default_rng(40)
    for name, x, t, kwargs, loss_shape in _call_cases(rng, dtype):
        for reduction in REDUCTIONS:
            go = rng.uniform(-1, 1, loss_shape).astype(dtype) if reduction == "none" else 0.5
            expected = getattr(fl, name + "_with_grad")(x, t, reduction=reduction,
                                                        grad_output=go, **kwargs)

            def strided(a):
                """The same values in a non-contiguous array (every other element)."""
                if not isinstance(a, np.ndarray) or a.ndim == 0:
                    return a
                big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
                big[..., ::2] = a
                view = big[..., ::2]
                assert not view.flags.c_contiguous
                return view

            def transposed(a):
                """The same values, Fortran order."""
                if not isinstance(a, np.ndarray) or a.ndim < 2 or 1 in a.shape:
                    return strided(a)
                view = np.asfortranarray(a)
                assert not view.flags.c_contiguous
                return view

            def misaligned(a):
                """The same values, C-contiguous but not aligned to the itemsize."""
                if not isinstance(a, np.ndarray):
                    return a
                view = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
                view[...] = a
                assert not view.flags.aligned or a.dtype.itemsize == 1
                return view

            def byteswapped(a):
                """The same values in the other byte order."""
                if not isinstance(a, np.ndarray):
                    return a
                return a.astype(a.dtype.newbyteorder())

            for make in (strided, transposed, misaligned, byteswapped):
                kw = {k: make(v) for k, v in kwargs.items()}
                args = [make(x), make(t), make(go)]
                saved = [a.copy() for a in _arrays(args + list(kw.values()))]
                loss, grad = getattr(fl, name + "_with_grad")(
                    args[0], args[1], reduction=reduction, grad_output=args[2], **kw)
                np.testing.assert_array_equal(loss, expected[0])
                np.testing.assert_array_equal(grad, expected[1])
                assert grad.flags.c_contiguous and grad.dtype == dtype
                for before, after in zip(saved, _arrays(args + list(kw.values()))):
                    np.testing.assert_array_equal(before, after)
    # a transposed CE input: (C, N).T
    x = rng.standard_normal((10, 50)).astype(dtype)
    y = rng.integers(0, 10, 50)
    loss, grad = fl.cross_entropy_with_grad(x.T, y, reduction="none")
    loss_c, grad_c = fl.cross_entropy_with_grad(np.ascontiguousarray(x.T), y, reduction="none")
    np.testing.assert_array_equal(loss, loss_c)
    np.testing.assert_array_equal(grad, grad_c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs(simd_path, dtype):
    rng = np.random.default_rng(41)
    for name, x, t, kwargs, loss_shape in _call_cases(rng, dtype):
        for reduction in REDUCTIONS:
            go = rng.uniform(-1, 1, loss_shape).astype(dtype) if reduction == "none" else 0.5
            expected = getattr(fl, name + "_with_grad")(x, t, reduction=reduction,
                                                        grad_output=go, **kwargs)
            arrays = [x.copy(), t.copy(), np.array(go)] + [np.array(v) for v in kwargs.values()]
            for a in arrays:
                a.flags.writeable = False
            kw = dict(zip(kwargs, arrays[3:]))
            loss, grad = getattr(fl, name + "_with_grad")(
                arrays[0], arrays[1], reduction=reduction, grad_output=arrays[2], **kw)
            assert grad.flags.writeable
            np.testing.assert_array_equal(loss, expected[0])
            np.testing.assert_array_equal(grad, expected[1])
            loss = getattr(fl, name)(arrays[0], arrays[1], reduction=reduction, **kw)
            np.testing.assert_array_equal(loss, expected[0])


def test_float16_input(simd_path):
    rng = np.random.default_rng(42)
    for name, x, t, kwargs, loss_shape in _call_cases(rng, np.float16):
        for reduction in REDUCTIONS:
            check_types(*getattr(fl, name + "_with_grad")(x, t, reduction=reduction, **kwargs),
                        x, reduction, loss_shape)
            # computed in float32 and cast back
            t32 = t.astype(np.float32) if t.dtype == np.float16 else t
            kw32 = {k: v.astype(np.float32) for k, v in kwargs.items()
                    if isinstance(v, np.ndarray)}
            kw32.update({k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)})
            l32, g32 = getattr(fl, name + "_with_grad")(x.astype(np.float32), t32,
                                                        reduction=reduction, **kw32)
            out = np.empty(x.shape, np.float16)
            loss, grad = getattr(fl, name + "_with_grad")(x, t, reduction=reduction, out=out,
                                                          **kwargs)
            assert grad is out
            np.testing.assert_array_equal(loss, np.asarray(l32).astype(np.float16))
            np.testing.assert_array_equal(grad, g32.astype(np.float16))
            loss = getattr(fl, name)(x, t, reduction=reduction, **kwargs)
            np.testing.assert_array_equal(loss, np.asarray(l32).astype(np.float16))
            # and close to the exact value
            rloss = getattr(ref, name)(x.astype(np.float64), t, reduction=reduction, **kwargs)
            np.testing.assert_allclose(np.asarray(loss, np.float64), rloss, rtol=2e-3, atol=1e-4)
    # a float16 gradient that overflows is inf, without a warning, with or without out=
    big, small = np.full(3, 6e4, np.float16), np.full(3, -6e4, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for out in (None, np.empty(3, np.float16)):
            loss, grad = fl.mse_loss_with_grad(big, small, reduction="sum", out=out)
            assert np.isposinf(loss) and np.all(np.isposinf(grad))
    # in place
    x = rng.standard_normal((5, 3)).astype(np.float16)
    y = np.array([0, 1, 2, 0, 1])
    expected = fl.cross_entropy_with_grad(x, y)
    loss, grad = fl.cross_entropy_with_grad(x, y, out=x)
    assert grad is x
    np.testing.assert_array_equal(x, expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(simd_path, dtype):
    cases = [
        ("cross_entropy", np.zeros((0, 4), dtype), np.zeros(0, np.int64), {}, (0,)),
        ("cross_entropy", np.zeros((0, 4), dtype), np.zeros((0, 4), dtype),
         dict(label_smoothing=0.1), (0,)),
        ("cross_entropy", np.zeros((2, 4, 0), dtype), np.zeros((2, 0), np.int64), {}, (2, 0)),
        ("binary_cross_entropy_with_logits", np.zeros((0, 4), dtype), np.zeros((0, 4), dtype),
         dict(pos_weight=np.ones(4, dtype)), (0, 4)),
        ("mse_loss", np.zeros(0, dtype), np.zeros(0, dtype), {}, (0,)),
        ("huber_loss", np.zeros((3, 0), dtype), np.zeros((3, 0), dtype), {}, (3, 0)),
    ]
    for name, x, t, kwargs, loss_shape in cases:
        for reduction in REDUCTIONS:
            for use_out in (False, True):
                loss, grad = run_vs_reference(name, x, t, loss_shape, reduction=reduction,
                                              use_out=use_out, **kwargs)
                if reduction == "mean":
                    assert np.isnan(loss)
                elif reduction == "sum":
                    assert loss == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_targets_ignored(simd_path, dtype):
    rng = np.random.default_rng(43)
    x = rng.standard_normal((300, 5)).astype(dtype)
    for y, kwargs in [(np.full(300, -100), {}), (np.full(300, 3), dict(ignore_index=3)),
                      # kept targets whose class weights sum to 0
                      (np.full(300, 1), dict(weight=np.array([1.0, 0.0, 1.0, 1.0, 1.0])))]:
        for eps in (0.0, 0.1):
            loss, grad = run_vs_reference("cross_entropy", x, y, (300,), label_smoothing=eps,
                                          **kwargs)
            assert np.isnan(loss) and np.all(grad == 0)
            if "weight" not in kwargs:
                loss, grad = run_vs_reference("cross_entropy", x, y, (300,), reduction="sum",
                                              label_smoothing=eps, grad_output=2.0, **kwargs)
                assert loss == 0 and np.all(grad == 0)
                loss, grad = run_vs_reference("cross_entropy", x, y, (300,), reduction="none",
                                              label_smoothing=eps, **kwargs)
                assert np.all(loss == 0) and np.all(grad == 0)


def test_threads_match_reference_and_are_deterministic(simd_path):
    """Inputs above the parallel threshold (~1.3e5 elements) on 1 and 2 threads."""
    rng = np.random.default_rng(44)
    x = rng.standard_normal((1500, 100))
    y = rng.integers(0, 100, 1500)
    y[::11] = -100
    yb = rng.uniform(0, 1, x.shape)
    for name, t, kwargs in [("cross_entropy", y, dict(label_smoothing=0.1)),
                            ("binary_cross_entropy_with_logits", yb,
                             dict(pos_weight=np.linspace(1, 2, 100))),
                            ("mse_loss", yb, {})]:
        for reduction in ("mean", "sum"):
            results = [getattr(fl, name + "_with_grad")(x, t, reduction=reduction, n_threads=n,
                                                        **kwargs) for n in (1, 2, None)]
            for loss, grad in results[1:]:
                assert loss == results[0][0]
                np.testing.assert_array_equal(grad, results[0][1])
            rloss, rgrad = getattr(ref, name + "_with_grad")(x, t, reduction=reduction, **kwargs)
            np.testing.assert_allclose(results[1][0], rloss, **TOL[np.float64])
            np.testing.assert_allclose(results[1][1], rgrad, **TOL[np.float64])
            assert getattr(fl, name)(x, t, reduction=reduction, n_threads=2, **kwargs) == \
                results[0][0]


# --------------------------------------------------------------------------------------------
# 6. against torch (optional)
# --------------------------------------------------------------------------------------------


def torch_loss_grad(fn, x, *args, grad_output=None, **kwargs):
    torch = pytest.importorskip("torch")

    def t(a):
        if not isinstance(a, np.ndarray):
            return a
        return torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iu" else a.copy())

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    loss = fn(xt, *[t(a) for a in args], **{k: t(v) for k, v in kwargs.items()})
    go = 1.0 if grad_output is None else torch.as_tensor(np.asarray(grad_output, x.dtype))
    (loss * go).sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(50)
    N, C = 40, 6
    x = rng.standard_normal((N, C)).astype(dtype)
    y = rng.integers(0, C, N)
    y[::4] = 2
    q = soft_targets((N, C), 1, rng, dtype)
    w = rng.uniform(0.2, 2, C).astype(dtype)
    yb = rng.uniform(0, 1, (N, C)).astype(dtype)
    xk = rng.standard_normal((3, C, 4, 5)).astype(dtype)
    yk = rng.integers(0, C, (3, 4, 5))
    cases = [
        (fl.cross_entropy_with_grad, F.cross_entropy, x, (y,),
         dict(weight=w, ignore_index=2, label_smoothing=0.1)),
        (fl.cross_entropy_with_grad, F.cross_entropy, x, (q,), dict(weight=w, label_smoothing=0.2)),
        (fl.cross_entropy_with_grad, F.cross_entropy, xk, (yk,), dict(label_smoothing=0.1)),
        (fl.binary_cross_entropy_with_logits_with_grad, F.binary_cross_entropy_with_logits, x,
         (yb,), dict(weight=w, pos_weight=w[::-1].copy())),
        (fl.mse_loss_with_grad, F.mse_loss, x, (yb,), {}),
        (fl.huber_loss_with_grad, F.huber_loss, x, (yb,), dict(delta=0.5)),
    ]
    tol = TOL[dtype]
    for ours, theirs, xx, args, kwargs in cases:
        for reduction in REDUCTIONS:
            loss, grad = ours(xx, *args, reduction=reduction, grad_output=0.5, **kwargs)
            tloss, tgrad = torch_loss_grad(theirs, xx, *args, reduction=reduction,
                                           grad_output=0.5, **kwargs)
            np.testing.assert_allclose(loss, tloss, **tol)
            np.testing.assert_allclose(grad, tgrad, **tol)


# --------------------------------------------------------------------------------------------
# the fast path: canonical calls skip functional's general path and give the same bits
# --------------------------------------------------------------------------------------------


class _Subclass(np.ndarray):
    pass


def _fast_calls(dtype):
    """(name, args, kwargs) of calls the fast path takes: kernel-layout arrays, plain options."""
    rng = np.random.default_rng(90)
    x = rng.standard_normal((37, 10)).astype(dtype)
    t = rng.integers(0, 10, 37)
    t[::7] = 3
    y = rng.uniform(0, 1, (4, 5, 6)).astype(dtype)
    x3 = rng.standard_normal((4, 5, 6)).astype(dtype)
    calls = []
    for reduction in REDUCTIONS:
        calls += [
            ("cross_entropy", (x, t), dict(reduction=reduction)),
            ("cross_entropy", (x, t), dict(reduction=reduction, ignore_index=3,
                                           label_smoothing=0.25)),
            ("cross_entropy", (rng.standard_normal((9, 1000)).astype(dtype),
                               rng.integers(0, 1000, 9)), dict(reduction=reduction)),
            ("mse_loss", (x3, y), dict(reduction=reduction)),
            ("huber_loss", (x3, y), dict(reduction=reduction, delta=0.5)),
            ("binary_cross_entropy_with_logits", (x3, y), dict(reduction=reduction)),
            ("l1_loss", (x3, y), dict(reduction=reduction)),
            ("smooth_l1_loss", (x3, y), dict(reduction=reduction, beta=0.5)),
            ("soft_margin_loss", (x3, np.sign(y - 0.5)), dict(reduction=reduction)),
            ("msle_loss", (np.abs(x3), y), dict(reduction=reduction)),
            ("log_cosh_loss", (x3, y), dict(reduction=reduction)),
            ("binary_cross_entropy", (y, (x3 > 0).astype(dtype)), dict(reduction=reduction)),
            ("mse_loss", (np.asarray(x3[0, 0, 0]), np.asarray(y[0, 0, 0])),
             dict(reduction=reduction)),  # 0-d
        ]
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_takes_canonical_calls(simd_path, dtype, monkeypatch):
    from fastloss import _class_rows, _elementwise

    def general_path(*args, **kwargs):
        raise AssertionError("a canonical call reached the general path")

    monkeypatch.setattr(_class_rows, "float_input", general_path)
    monkeypatch.setattr(_elementwise, "float_input", general_path)
    for name, args, kwargs in _fast_calls(dtype):
        getattr(fl, name)(*args, **kwargs)
        getattr(fl, name + "_with_grad")(*args, **kwargs)
        getattr(fl, name + "_with_grad")(*args, n_threads=1, **kwargs)
        out = np.empty_like(args[0])
        assert getattr(fl, name + "_with_grad")(*args, out=out, **kwargs)[1] is out
        in_place = args[0].copy()
        getattr(fl, name + "_with_grad")(in_place, *args[1:], out=in_place, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_matches_general_path(simd_path, dtype):
    """An input of an ndarray subclass takes the general path (which then views it as
    a plain ndarray): the same kernels on the same memory must give the same bits."""
    for name, args, kwargs in _fast_calls(dtype):
        for suffix in ("", "_with_grad"):
            fn = getattr(fl, name + suffix)
            fast = fn(*args, **kwargs)
            general = fn(args[0].view(_Subclass), *args[1:], **kwargs)
            if suffix:
                (fast, fast_grad), (general, general_grad) = fast, general
                assert fast_grad.dtype == dtype and fast_grad.shape == args[0].shape
                np.testing.assert_array_equal(fast_grad, general_grad)
                assert fast_grad.tobytes() == general_grad.tobytes()
            assert type(fast) is type(general) and fast.dtype == general.dtype == dtype
            assert np.shape(fast) == np.shape(general)
            assert np.asarray(fast).tobytes() == np.asarray(general).tobytes(), (name, kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_declines_what_needs_converting(simd_path, dtype, monkeypatch):
    """Every way an argument can need the general path is sent there (and still works)."""
    from fastloss import _class_rows, _elementwise

    general_calls = []
    real_float_input = _elementwise.float_input

    def counting(value):
        general_calls.append(1)
        return real_float_input(value)

    # Each family's general path converts its input once, with float_input.
    monkeypatch.setattr(_class_rows, "float_input", counting)
    monkeypatch.setattr(_elementwise, "float_input", counting)
    rng = np.random.default_rng(91)
    x = rng.standard_normal((6, 4)).astype(dtype)
    t = rng.integers(0, 4, 6)
    y = rng.uniform(0, 1, (6, 4)).astype(dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    ce = fl.cross_entropy_with_grad
    declined = [
        lambda: ce(x.tolist(), t),                                  # not an ndarray
        lambda: ce(np.asfortranarray(x), t),                        # not C-contiguous
        lambda: ce(x.astype(x.dtype.newbyteorder()), t),            # other byte order
        lambda: ce(x, t.astype(np.int32)),                          # other index dtype
        lambda: ce(x, t[::-1]),                                     # strided target
        lambda: ce(x, t, weight=np.ones(4, dtype)),                 # class weights
        lambda: ce(x, y),                                           # probability targets
        lambda: ce(x[0], t[0]),                                     # unbatched
        lambda: ce(x.reshape(6, 4, 1), t.reshape(6, 1)),            # K-dim
        lambda: ce(x, t, label_smoothing=1),                        # an int option
        lambda: ce(x, t, ignore_index=np.int64(2)),                 # a NumPy integer
        lambda: ce(x, t, grad_output=2.0),                          # grad_output
        lambda: ce(x, t, reduction=b"mean"),                        # not a str
        lambda: ce(x, t, out=np.empty((6, 4), other)),              # out of another dtype
        lambda: ce(x, t, n_threads=np.int64(2)),                    # a NumPy integer
        lambda: fl.mse_loss_with_grad(x, y.astype(other)),          # target dtype
        lambda: fl.mse_loss_with_grad(x, y.reshape(4, 6)),          # target shape
        lambda: fl.huber_loss_with_grad(x, y, delta=1),             # an int delta
        lambda: fl.binary_cross_entropy_with_logits_with_grad(x, y, pos_weight=np.ones(4)),
        lambda: fl.mse_loss_with_grad(x.astype(np.float16), y),     # float16
        lambda: fl.mse_loss_with_grad(x.view(_Subclass), y),        # a subclass
    ]
    for call in declined:
        before = len(general_calls)
        try:
            call()
        except (TypeError, ValueError):
            pass  # an error is the general path's to raise
        assert len(general_calls) == before + 1


def test_empty_sums_are_zero_where_the_denominator_is_not():
    """No elements sum to 0, also through "mean"'s machinery when its denominator is
    not 0: multilabel's "sum" (divided by C) and kl_div's "batchmean" of a (3, 0)
    batch are 0, as in torch; a mean over no elements stays NaN."""
    empty_rows = np.zeros((0, 3), np.float32)
    assert fl.multilabel_soft_margin_loss(empty_rows, empty_rows, reduction="sum") == 0
    loss, grad = fl.multilabel_soft_margin_loss_with_grad(empty_rows, empty_rows,
                                                                reduction="sum")
    assert loss == 0 and grad.shape == (0, 3)
    assert np.isnan(fl.multilabel_soft_margin_loss(empty_rows, empty_rows))
    no_support = np.zeros((3, 0))
    assert fl.kl_div(no_support, no_support, reduction="batchmean") == 0
    assert np.isnan(fl.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean"))


def _unaligned(array):
    """A C-contiguous copy of `array` at an address off its alignment (as a distributed
    worker may hand a buffer over)."""
    raw = np.empty(array.nbytes + 1, np.uint8)
    view = raw[1:].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


_RNG = np.random.default_rng(0)
_X, _Y = _RNG.standard_normal((7, 5)), _RNG.integers(0, 5, 7)
_Q, _W = _RNG.random((7, 5)), _RNG.random(5) + 0.5


@pytest.mark.parametrize("name,args,kwargs", [
    ("cross_entropy_with_grad", (_X, _Y), {"weight": _W}),
    ("cross_entropy_with_grad", (_X, _Q / _Q.sum(1, keepdims=True)), {}),
    ("cross_entropy_grad_hess", (_X, _Y), {"sample_weight": np.ones(7)}),
    ("nll_loss_with_grad", (_X, _Y), {"weight": _W}),
    ("multi_margin_loss_with_grad", (_X, _Y), {"weight": _W}),
    ("multilabel_soft_margin_loss_with_grad", (_X, (_Q > 0.5) * 1.0), {}),
    ("binary_cross_entropy_with_logits_with_grad", (_X, _Q), {"weight": _X * 0 + 2,
                                                              "pos_weight": _W}),
    ("mse_loss_with_grad", (_X, _Q), {}),
    ("huber_loss_grad_hess", (_X.ravel(), _Q.ravel()), {"sample_weight": np.ones(35)}),
    ("gaussian_nll_loss_with_grad", (_X, _Q, _Q + 1), {}),
])
def test_unaligned_operands(name, args, kwargs):
    """Every family copies unaligned operands (targets, weights included) before its
    kernel: the same bits as the aligned call."""
    function = getattr(fl, name)
    want = function(*args, **kwargs)
    got = function(*map(_unaligned, args), **{k: _unaligned(v) for k, v in kwargs.items()})
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
