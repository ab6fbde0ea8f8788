"""The *_grad_hess functions: kernels against the reference on every SIMD path,
hessians against finite differences of the kernels' own gradients, confident rows
and floors against mpmath, conventions, sample weights, out= and bad input."""

import numpy as np
import pytest

import fastloss
from fastloss import functional as F
from fastloss import reference as R

mpmath = pytest.importorskip("mpmath")

HESSIANS = ("exact", "xgboost", "lightgbm")

RNG = np.random.default_rng(15)
N = 3000  # > ELEMENT_BLOCK and > one cross-entropy block: several blocks


def _regression_target(x):
    return x + RNG.standard_normal(x.shape) * 2


# name -> (input, target, options); inputs sized so that several blocks run.
def _cases():
    x = RNG.standard_normal(N) * 3
    y01 = (RNG.random(N) < 0.3).astype(np.float64)
    ypm = 2 * y01 - 1
    return {
        "binary_cross_entropy_with_logits": (x, y01, {}),
        "binary_cross_entropy_with_logits-pw": (x, y01, {"pos_weight": np.array(3.0)}),
        "sigmoid_focal_loss": (x, y01, {"alpha": 0.25, "gamma": 2.0}),
        "sigmoid_focal_loss-g0.5": (x, y01, {"alpha": -1, "gamma": 0.5}),
        "soft_margin_loss": (x, ypm, {}),
        "hinge_loss": (x, ypm, {}),
        "hinge_loss-squared": (x, ypm, {"squared": True}),
        "mse_loss": (x, _regression_target(x), {}),
        "l1_loss": (x, _regression_target(x), {}),
        "huber_loss": (x, _regression_target(x), {"delta": 1.5}),
        "smooth_l1_loss": (x, _regression_target(x), {"beta": 0.5}),
        "msle_loss": (np.abs(x), np.abs(_regression_target(x)), {}),
        "log_cosh_loss": (x, _regression_target(x), {}),
        "poisson_nll_loss": (x * 0.3, RNG.poisson(2.0, N).astype(np.float64), {}),
        "poisson_nll_loss-rate": (np.abs(x) + 0.1, RNG.poisson(2.0, N).astype(np.float64),
                                  {"log_input": False}),
        "gaussian_nll_loss": (x, _regression_target(x), {"var": np.abs(x) + 0.5}),
        # probabilities away from 0 and 1, where torch's 1e-12 floor of the slope is idle
        "binary_cross_entropy": (0.02 + 0.96 * RNG.random(N), y01,
                                 {"weight": 0.5 + RNG.random(N)}),
        "kl_div": (np.log(0.01 + RNG.random(N)), RNG.random(N), {}),
        "kl_div-log_target": (np.log(0.01 + RNG.random(N)), np.log(0.01 + RNG.random(N)),
                              {"log_target": True}),
    }


CASES = _cases()


def _functions(case):
    name = case.split("-")[0]
    return getattr(F, name + "_grad_hess"), getattr(R, name + "_grad_hess")


def _assert_close(actual, expected, dtype):
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    scale = np.max(np.abs(expected)) if np.size(expected) else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("hessian", HESSIANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_matches_reference(simd_path, case, dtype, hessian):
    x, y, options = CASES[case]
    fast, ref = _functions(case)
    sw = RNG.random(N) * 2
    x, y = x.astype(dtype), y.astype(dtype)
    loss, grad, hess = fast(x, y, **options, sample_weight=sw, hessian=hessian)
    r_loss, r_grad, r_hess = ref(x, y, **options, sample_weight=sw, hessian=hessian)
    assert grad.dtype == hess.dtype == dtype and np.asarray(loss).dtype == dtype
    assert grad.shape == hess.shape == x.shape and np.ndim(loss) == 0
    _assert_close(loss, r_loss, dtype)
    _assert_close(grad, r_grad, dtype)
    _assert_close(hess, r_hess, dtype)


@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_hessian_is_the_derivative_of_the_gradient(case):
    """4th-order central differences of the kernel's own gradient (float64), away
    from the kinks of the piecewise losses."""
    x, y, options = CASES[case]
    fast, _ = _functions(case)
    x, y = x[:500], y[:500]
    options = {k: (v[:500] if isinstance(v, np.ndarray) and v.ndim else v)
               for k, v in options.items()}
    h = 1e-4 * np.maximum(1.0, np.abs(x))

    def grad_at(z):
        return fast(z, y, **options)[1]

    numeric = (-grad_at(x + 2 * h) + 8 * grad_at(x + h) - 8 * grad_at(x - h)
               + grad_at(x - 2 * h)) / (12 * h)
    hess = fast(x, y, **options)[2]
    # Piecewise losses: only where no kink lies within 2h.
    r = x - y
    smooth = np.ones(x.shape, bool)
    if case.startswith("huber"):
        smooth = np.abs(np.abs(r) - options["delta"]) > 3 * h
    elif case.startswith("smooth_l1"):
        smooth = np.abs(np.abs(r) - options["beta"]) > 3 * h
    elif case.startswith("l1"):
        smooth = np.abs(r) > 3 * h
    elif case.startswith("hinge"):
        smooth = np.abs(1 - y * x) > 3 * h
    elif case.startswith("msle"):
        smooth = x > 3 * h
    assert smooth.sum() > 400
    np.testing.assert_allclose(hess[smooth], numeric[smooth], rtol=1e-6, atol=1e-9)


def test_sample_weight_scales_loss_grad_hess_exactly():
    x, y, _ = CASES["binary_cross_entropy_with_logits"]
    sw = RNG.random(N)
    loss, grad, hess = F.binary_cross_entropy_with_logits_grad_hess(x, y, sample_weight=sw)
    elems = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert loss == pytest.approx(np.dot(sw, elems), rel=1e-14)
    _, grad1, hess1 = F.binary_cross_entropy_with_logits_grad_hess(x, y)
    np.testing.assert_allclose(grad, sw * grad1, rtol=1e-15)
    np.testing.assert_allclose(hess, sw * hess1, rtol=1e-15)
    # the loss is the sum the gradient differentiates
    _, g = F.binary_cross_entropy_with_logits_with_grad(x, y, reduction="sum")
    np.testing.assert_allclose(grad1, g, rtol=1e-15)


def test_mse_booster_conventions_are_half_squared_error():
    x, y, _ = CASES["mse_loss"]
    sw = RNG.random(N)
    loss, grad, hess = F.mse_loss_grad_hess(x, y, sample_weight=sw)
    np.testing.assert_array_equal(hess, 2 * sw)
    for hessian in ("xgboost", "lightgbm"):
        b_loss, b_grad, b_hess = F.mse_loss_grad_hess(x, y, sample_weight=sw, hessian=hessian)
        assert b_loss == loss / 2
        np.testing.assert_array_equal(b_grad, grad / 2)
        np.testing.assert_array_equal(b_hess, sw)
        np.testing.assert_allclose(b_grad, sw * (x - y), rtol=1e-15)


def test_huber_lightgbm_hessian_is_the_weight():
    x, y, _ = CASES["huber_loss"]
    sw = RNG.random(N)
    _, grad, hess = F.huber_loss_grad_hess(x, y, delta=1.5, sample_weight=sw, hessian="lightgbm")
    np.testing.assert_array_equal(hess, sw)
    np.testing.assert_allclose(grad, sw * np.clip(x - y, -1.5, 1.5), rtol=1e-15)
    _, _, exact = F.huber_loss_grad_hess(x, y, delta=1.5, sample_weight=sw)
    np.testing.assert_array_equal(exact, np.where(np.abs(x - y) <= 1.5, sw, 0))



def test_kl_div_booster_hessian_is_the_weight():
    """KL divergence is linear in the log-probability input: exact hessian 0, boosters' w."""
    x, y, _ = CASES["kl_div"]
    sw = RNG.random(N)
    _, grad, hess = F.kl_div_grad_hess(x, y, sample_weight=sw)
    np.testing.assert_array_equal(hess, np.zeros(N))
    np.testing.assert_allclose(grad, -sw * y, rtol=1e-15)
    for hessian in ("xgboost", "lightgbm"):
        np.testing.assert_array_equal(F.kl_div_grad_hess(x, y, sample_weight=sw,
                                                         hessian=hessian)[2], sw)


@pytest.mark.parametrize("hessian", HESSIANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300, 7), (7,)])
def test_multilabel_soft_margin_grad_hess(simd_path, shape, dtype, hessian):
    """Per sample the mean over classes of BCE with logits: against the reference, the
    summed forward loss, and 4th-order differences of the gradient."""
    x = (RNG.standard_normal(shape) * 3).astype(dtype)
    y = (RNG.random(shape) < 0.4).astype(dtype)
    w = 0.5 + RNG.random(shape[-1])
    sw = RNG.random(shape[0] if len(shape) == 2 else 1) * 2
    loss, grad, hess = F.multilabel_soft_margin_loss_grad_hess(x, y, weight=w, sample_weight=sw,
                                                               hessian=hessian)
    r_loss, r_grad, r_hess = R.multilabel_soft_margin_loss_grad_hess(
        x, y, weight=w, sample_weight=sw, hessian=hessian)
    assert grad.shape == hess.shape == shape and grad.dtype == hess.dtype == dtype
    _assert_close(loss, r_loss, dtype)
    _assert_close(grad, r_grad, dtype)
    _assert_close(hess, r_hess, dtype)
    per_sample = F.multilabel_soft_margin_loss(x.astype(np.float64), y.astype(np.float64),
                                               weight=w, reduction="none")
    assert float(loss) == pytest.approx(float(np.sum(sw * per_sample)),
                                        rel=2e-5 if dtype == np.float32 else 1e-12)
    if dtype == np.float64 and hessian == "exact":
        h = 1e-4 * np.maximum(1.0, np.abs(x))

        def grad_at(z):
            return F.multilabel_soft_margin_loss_grad_hess(z, y, weight=w, sample_weight=sw)[1]

        numeric = (-grad_at(x + 2 * h) + 8 * grad_at(x + h) - 8 * grad_at(x - h)
                   + grad_at(x - 2 * h)) / (12 * h)
        np.testing.assert_allclose(hess, numeric, rtol=1e-6, atol=1e-9)
    out = (np.empty(shape, dtype), np.empty(shape, dtype))
    result = F.multilabel_soft_margin_loss_grad_hess(x, y, weight=w, sample_weight=sw,
                                                     hessian=hessian, out=out)
    assert result[1] is out[0] and result[2] is out[1]
    np.testing.assert_array_equal(out[0], grad)
    np.testing.assert_array_equal(out[1], hess)


# ------------------------------------------------------------------ cross-entropy

CE_CASES = {
    "plain": {},
    "weighted": {"weight": np.linspace(0.5, 2.0, 10)},
    "smoothed": {"label_smoothing": 0.1},
    "ignore": {"ignore_index": 1},  # a valid class: its rows are ignored
    "soft": {},
}


@pytest.mark.parametrize("hessian", HESSIANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [3, 10, 40])  # narrow and wide rows
@pytest.mark.parametrize("case", sorted(CE_CASES))
def test_cross_entropy_matches_reference(simd_path, case, n_classes, dtype, hessian):
    options = dict(CE_CASES[case])
    if "weight" in options:
        options["weight"] = np.linspace(0.5, 2.0, n_classes)
    x = (RNG.standard_normal((1100, n_classes)) * 3).astype(dtype)
    if case == "soft":
        target = RNG.dirichlet(np.ones(n_classes), 1100).astype(dtype)
    else:
        target = RNG.integers(0, n_classes, 1100)
    sw = RNG.random(1100) * 2
    loss, grad, hess = F.cross_entropy_grad_hess(x, target, **options, sample_weight=sw,
                                                 hessian=hessian)
    r_loss, r_grad, r_hess = R.cross_entropy_grad_hess(x, target, **options, sample_weight=sw,
                                                       hessian=hessian)
    assert grad.dtype == hess.dtype == dtype and grad.shape == hess.shape == x.shape
    _assert_close(loss, r_loss, dtype)
    _assert_close(grad, r_grad, dtype)
    _assert_close(hess, r_hess, dtype)
    if case == "ignore":
        ignored = target == 1
        assert ignored.any()
        if hessian != "xgboost":
            assert np.all(hess[ignored] == 0)


@pytest.mark.parametrize("n_classes", [3, 40])
def test_cross_entropy_hessian_is_the_derivative_of_the_gradient(n_classes):
    x = RNG.standard_normal((200, n_classes)) * 2
    target = RNG.integers(0, n_classes, 200)
    hess = F.cross_entropy_grad_hess(x, target, label_smoothing=0.2)[2]
    h = 1e-4
    numeric = np.empty_like(x)
    for c in range(n_classes):
        def grad_c(shift):
            z = x.copy()
            z[:, c] += shift
            return F.cross_entropy_grad_hess(z, target, label_smoothing=0.2)[1][:, c]
        numeric[:, c] = (-grad_c(2 * h) + 8 * grad_c(h) - 8 * grad_c(-h) + grad_c(-2 * h)) / (12 * h)
    np.testing.assert_allclose(hess, numeric, rtol=1e-7, atol=1e-10)


def _mp_softmax_hess(row):
    mpmath.mp.dps = 50
    e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
    s = mpmath.fsum(e)
    return [float(v / s * (1 - v / s)) for v in e]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [4, 30])  # narrow and wide
def test_confident_rows_keep_their_digits(simd_path, n_classes, dtype):
    """One logit ahead by 40: p (1 - p) of the leader is ~e^-40 ~ 4e-18, kept to
    full relative precision (not 0 as 1 - p would give), against mpmath."""
    rows = np.zeros((6, n_classes))
    rows[:, 0] = 40.0
    rows[1, 1] = 5.0
    rows[2] = np.linspace(0, -20, n_classes)
    rows[2, n_classes // 2] = 40.0
    rows[3, 0] = 80.0 if dtype == np.float64 else 60.0
    rows[4] *= -1                      # one logit behind by 40: the others share 1
    rows[5, 0] = 700.0 if dtype == np.float64 else 80.0
    x = rows.astype(dtype)
    target = np.array([0, 1, 2, 0, 0, 3])  # confident right and confident wrong
    _, _, hess = F.cross_entropy_grad_hess(x, target)
    tol = 8 * float(np.finfo(dtype).eps)
    for r in range(len(rows)):
        expected = _mp_softmax_hess(x[r].astype(np.float64))
        for c in range(n_classes):
            if expected[c] > np.finfo(dtype).tiny:
                assert hess[r, c] == pytest.approx(expected[c], rel=tol), (r, c)
    assert hess[0, 0] > 0 and hess[0, 0] == pytest.approx(np.exp(-40.0) * (n_classes - 1),
                                                          rel=1e-5)


def test_xgboost_floor_against_mpmath():
    """multi:softprob's max(2 p (1-p) w, 1e-16): the floor sits after the weight,
    so a row of weight 1e-3 is floored where its p (1-p) w < 5e-17 (logit 33 ahead:
    p (1-p) = 9e-15 alone is above the floor)."""
    x = np.array([[40.0, 0.0, 0.0], [33.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    sw = np.array([1.0, 1e-3, 1.0])
    _, _, hess = F.cross_entropy_grad_hess(x, np.zeros(3, np.int64), sample_weight=sw,
                                           hessian="xgboost")
    for r in range(3):
        expected = [max(2 * v * sw[r], 1e-16) for v in _mp_softmax_hess(x[r])]
        np.testing.assert_allclose(hess[r], expected, rtol=1e-14)
    assert hess[0, 0] == 1e-16 and hess[1, 0] == 1e-16 and hess[2, 0] > 1e-16
    # binary:logistic's max(p (1-p), 1e-16) w: floored before the weight
    _, _, bh = F.binary_cross_entropy_with_logits_grad_hess(
        np.array([40.0, 40.0, 30.0]), np.ones(3), sample_weight=np.array([1.0, 1e-3, 1e-3]),
        hessian="xgboost")
    mpmath.mp.dps = 50
    p30 = mpmath.mpf(1) / (1 + mpmath.exp(-30))
    np.testing.assert_allclose(bh, [1e-16, 1e-19, float(p30 * (1 - p30)) * 1e-3], rtol=1e-14)


def test_lightgbm_multiclass_factor():
    x = RNG.standard_normal((50, 5))
    t = RNG.integers(0, 5, 50)
    exact = F.cross_entropy_grad_hess(x, t)[2]
    np.testing.assert_allclose(F.cross_entropy_grad_hess(x, t, hessian="lightgbm")[2],
                               exact * 5 / 4, rtol=1e-15)


def test_out_pair_is_written_in_place():
    x = RNG.standard_normal((300, 7)).astype(np.float32)
    t = RNG.integers(0, 7, 300)
    g, h = np.empty_like(x), np.empty_like(x)
    _, grad, hess = F.cross_entropy_grad_hess(x, t, out=(g, h))
    assert grad is g and hess is h
    _, g2, h2 = F.cross_entropy_grad_hess(x, t)
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(h, h2)
    xe = x[:, 0].copy()
    ge, he = np.empty_like(xe), np.empty_like(xe)
    _, grad, hess = F.mse_loss_grad_hess(xe, xe * 0, out=(ge, he))
    assert grad is ge and hess is he and np.all(he == 2)


def test_deterministic_over_threads():
    x = RNG.standard_normal((2**17, 10)).astype(np.float32)  # 2**20 logits: threaded
    t = RNG.integers(0, 10, 2**17)
    one = F.cross_entropy_grad_hess(x, t, n_threads=1)
    two = F.cross_entropy_grad_hess(x, t, n_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    xe = x.reshape(-1)
    one = F.binary_cross_entropy_with_logits_grad_hess(xe, (xe > 0.3).astype(np.float32),
                                                       n_threads=1)
    two = F.binary_cross_entropy_with_logits_grad_hess(xe, (xe > 0.3).astype(np.float32),
                                                       n_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_exported():
    for name in F.GRAD_HESS:
        assert getattr(fastloss, name + "_grad_hess") is getattr(F, name + "_grad_hess")
        assert name + "_grad_hess" in F.__all__


@pytest.mark.parametrize("call, error", [
    (lambda: F.mse_loss_grad_hess(np.zeros(3), np.zeros(3), hessian="catboost"), ValueError),
    (lambda: F.mse_loss_grad_hess(np.zeros(3), np.zeros(3), sample_weight=np.ones(4)),
     ValueError),
    (lambda: F.mse_loss_grad_hess(np.zeros(3), np.zeros(3), sample_weight=-np.ones(3)),
     ValueError),
    (lambda: F.mse_loss_grad_hess(np.zeros(3), np.zeros(3), out=np.zeros(3)), TypeError),
    (lambda: F.mse_loss_grad_hess(np.zeros(3), np.zeros(3), out=(np.zeros(3), np.zeros(4))),
     ValueError),
    (lambda: F.cross_entropy_grad_hess(np.zeros((3, 2)), np.array([0, 1, 2])), IndexError),
    (lambda: F.cross_entropy_grad_hess(np.zeros((3, 1)), np.zeros(3, int), hessian="lightgbm"),
     ValueError),
    (lambda: F.cross_entropy_grad_hess(np.zeros((3, 2)), np.zeros(3, int),
                                       sample_weight=np.ones(2)), ValueError),
    (lambda: F.cross_entropy_grad_hess(np.zeros((3, 2), np.float32), np.zeros(3, int),
                                       out=(np.zeros((3, 2), np.float32),) * 2), ValueError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
