"""The new losses at extreme values against mpmath, and the new _fastmath.pxd
primitives (exp_any, log_nonneg incl. subnormals, log1p_any, pow_unit,
sinh_small) observed through losses whose result isolates them, as
test_fastmath.py does for the older ones.

Each check evaluates the loss (or gradient) on a grid with a closed form whose
exact value mpmath gives, and bounds the error in ulps of the exact result:

- exp_any: poisson_nll_loss(x, 0) is exp(x) (y x = 0), its gradient too;
- log_nonneg, subnormals included: gaussian_nll_loss(0, 0, v, eps=0) is
  log(v) / 2 (the halving is exact); binary_cross_entropy(x, 1) is -log x;
- log1p_any: binary_cross_entropy(x, 0) is -log1p(-x), x tiny and x near 1;
- sinh_small (and log1p_nonneg): log_cosh_loss(d, 0) for |d| < 1/2 is
  log1p(2 sinh(d/2)^2), its gradient tanh(d); the reference uses the plain
  formula, which cancels there, so these compare with mpmath, not the reference;
- pow_unit: sigmoid_focal_loss(x, 0, alpha=-1, gamma) is softplus(x) sigmoid(x)^gamma.
  For gamma other than 0 and 2 it is exp(gamma log q): the rounding of log q is
  multiplied by 2 |gamma log q| (about 300 ulp at q = 1e-100, gamma = 1.5, float64),
  which the bound states explicitly -- it is the method's conditioning, not slack;
- soft_margin at large |x|, kl_div (p log p, log_target), msle at its clamp.

Values at the extremes (+-1e4 float32, +-1e30 float64) are checked to be the exact
finite limits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

mp = pytest.importorskip("mpmath").mp
mp.dps = 60

import fastloss as fl  # noqa: E402

DTYPES = (np.float64, np.float32)
BIG = {np.float64: 1e30, np.float32: 1e4}


def ulp_of(exact, dtype) -> float:
    info = np.finfo(dtype)
    v = abs(float(exact))
    if v < float(info.tiny):
        return float(info.smallest_subnormal)
    _, e = math.frexp(v)
    return math.ldexp(1.0, e - 1 - info.nmant)


def check_ulp(what, got, exact, dtype, bound, points):
    """Every |got - exact| <= bound ulps of exact (bound: a number or an array per point)."""
    got = np.asarray(got, np.float64).reshape(-1)
    bound = np.broadcast_to(np.asarray(bound, np.float64), got.shape)
    bad = []
    for g, e, b, p in zip(got, exact, bound, np.asarray(points).reshape(-1)):
        if mp.isinf(e) or abs(e) > float(np.finfo(dtype).max):
            ok = math.isinf(g) and (g > 0) == (e > 0)
            err = 0.0 if ok else math.inf
        else:
            err = float(abs(mp.mpf(float(g)) - e)) / ulp_of(e, dtype)
        if not err <= b:
            bad.append(f"at {p!r}: got {g!r}, exact {mp.nstr(e, 17)} ({err:.3g} ulp > {b:.3g})")
    assert not bad, f"{what} ({np.dtype(dtype).name}):\n" + "\n".join(bad[:8])


def mpf(v):
    return mp.mpf(float(v))


def dtype_id(d):
    return np.dtype(d).name


# -------------------------------------------------------------------- primitives

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_any_via_poisson(simd_path, dtype):
    """exp(x) over the whole range exp is normal and finite, up to its overflow."""
    top = {np.float64: 709.782712893384, np.float32: 88.72283}[dtype]
    low = {np.float64: -708.39, np.float32: -87.33}[dtype]
    x = np.unique(np.concatenate([np.linspace(low, top, 1200), np.linspace(top - 12, top, 200),
                                  [0.0, -0.0, 1.0, -1.0, 1e-20, -1e-20]]).astype(dtype))
    x = x[(x >= low) & (x <= top)]
    loss, grad = fl.poisson_nll_loss_with_grad(x, np.zeros_like(x), reduction="none")
    exact = [mp.exp(mpf(v)) for v in x]
    # <= 3 ulp from exp(-|x|) and a reciprocal; exp(x/2)^2 above 700 (float32 86)
    bound = np.where(x > (700 if dtype == np.float64 else 86), 6.0, 3.0)
    check_ulp("exp_any: poisson loss", loss, exact, dtype, bound, x)
    check_ulp("exp_any: poisson grad", grad, exact, dtype, bound, x)
    over = np.array([top * 1.0001, 1e4], dtype)  # (x = inf: inf - 0 * inf is NaN, as torch)
    loss = fl.poisson_nll_loss(over, np.zeros_like(over), reduction="none")
    assert np.all(np.isposinf(loss))
    under = np.array([-1e4, -800.0], dtype)  # (x = -inf: 0 - 0 * inf is NaN, as torch)
    assert np.all(fl.poisson_nll_loss(under, np.zeros_like(under), reduction="none") == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_log_nonneg_via_gaussian_incl_subnormals(simd_path, dtype):
    info = np.finfo(dtype)
    v = np.logspace(math.log10(float(info.smallest_subnormal)),
                    math.log10(float(info.max)) - 1e-9, 1200).astype(dtype)
    v = np.unique(np.concatenate([v, [info.smallest_subnormal, info.tiny, 1.0,
                                      np.nextafter(dtype(1), dtype(0)), 2.0, info.max]]))
    v = v[v > 0].astype(dtype)
    z = np.zeros_like(v)
    loss = fl.gaussian_nll_loss(z, z, v, eps=0.0, reduction="none")
    check_ulp("log_nonneg: 2 * gaussian loss", 2 * loss.astype(np.float64),
              [mp.log(mpf(a)) for a in v], dtype, 2.0, v)
    # a zero variance: log 0 = -inf, plus d^2/0 (inf for d != 0: NaN, as in torch)
    loss = fl.gaussian_nll_loss(np.ones(1, dtype), np.zeros(1, dtype), np.zeros(1, dtype),
                                eps=0.0, reduction="none")
    assert np.isnan(loss[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bce_probabilities_tiny_and_near_one(simd_path, dtype):
    """-log1p(-x) (y = 0) and -log x (y = 1) for x tiny and x near 1: log1p_any and
    log_nonneg, each log clamped at -100 as torch."""
    nmant = np.finfo(dtype).nmant
    x = np.concatenate([1 - np.logspace(-(nmant + 0.5) * math.log10(2), -0.01, 700),
                        np.logspace(math.log10(float(np.finfo(dtype).smallest_subnormal)), -0.01,
                                    1500)]).astype(dtype)
    x = np.unique(np.concatenate([x, [np.nextafter(dtype(1), dtype(0)), 0.5]]).astype(dtype))
    x = x[(x > 0) & (x < 1)]
    loss, grad = fl.binary_cross_entropy_with_grad(x, np.zeros_like(x), reduction="none")
    check_ulp("log1p_any: bce(x, 0)", loss, [-mp.log1p(-mpf(a)) for a in x], dtype, 2.0, x)
    loss = fl.binary_cross_entropy(x, np.ones_like(x), reduction="none")
    check_ulp("log_nonneg: bce(x, 1)", loss, [min(-mp.log(mpf(a)), mp.mpf(100)) for a in x],
              dtype, 2.0, x)
    # the end points: the clamp at -100
    ends = np.array([0.0, 1.0], dtype)
    for y, want in ((0.0, [0.0, 100.0]), (1.0, [100.0, 0.0])):
        np.testing.assert_array_equal(
            fl.binary_cross_entropy(ends, np.full(2, y, dtype), reduction="none"), want)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_log_cosh_against_mpmath(simd_path, dtype):
    """|d| < 1/2: log1p(2 sinh(|d|/2)^2) with sinh_small, a few ulp relative down to where
    d^2/2 underflows (the reference's plain formula cancels there: not compared);
    above, |d| + log1p(exp(-2|d|)) - log 2, whose sum cancels by up to 8x at |d| = 1/2."""
    tiny = float(np.finfo(dtype).tiny)
    lo = math.log10(math.sqrt(2 * tiny)) + 0.1
    d = np.unique(np.concatenate([np.logspace(lo, math.log10(0.4999), 800),
                                  np.linspace(0.5, 30, 400), [0.25, 0.5, 1.0]]).astype(dtype))
    d = np.concatenate([d, -d[::7]])
    loss, grad = fl.log_cosh_loss_with_grad(d, np.zeros_like(d), reduction="none")
    exact = [mp.log1p(2 * mp.sinh(mpf(a) / 2) ** 2) for a in d]
    small = np.abs(d) < 0.5
    bound = np.where(small, 4.0, 6.0)
    check_ulp("log_cosh loss", loss, exact, dtype, bound, d)
    check_ulp("log_cosh grad (tanh)", grad, [mp.tanh(mpf(a)) for a in d], dtype, 3.0, d)
    # exact limits at the extremes, and 0 at d = 0
    big = BIG[dtype]
    loss, grad = fl.log_cosh_loss_with_grad(np.array([big, -big, 0.0], dtype),
                                            np.zeros(3, dtype), reduction="none")
    limit = dtype(big - math.log(2))  # |d| - log 2, correctly rounded
    np.testing.assert_array_equal(loss, np.array([limit, limit, 0.0], dtype))
    np.testing.assert_array_equal(grad, np.array([1.0, -1.0, 0.0], dtype))


@pytest.mark.parametrize("gamma", [1.5, 2.0, 0.5])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_focal_pow_unit(simd_path, dtype, gamma):
    """softplus(x) sigmoid(x)^gamma (y = 0, no alpha): pow_unit(q, gamma) with q = sigmoid(x)."""
    lo = -700.0 if dtype == np.float64 else -80.0
    x = np.unique(np.concatenate([np.linspace(lo, 40, 700), [0.0, -1.0, 1.0]]).astype(dtype))
    loss = fl.sigmoid_focal_loss(x, np.zeros_like(x), alpha=-1.0, gamma=gamma, reduction="none")
    exact = []
    for a in x:
        a = mpf(a)
        exact.append(mp.log1p(mp.exp(a)) * (1 / (1 + mp.exp(-a))) ** mp.mpf(gamma))
    q = 1 / (1 + np.exp(-x.astype(np.float64)))
    # softplus and sigmoid: a few ulp; q^gamma = exp(t), t = gamma log q, for gamma != 2:
    # exp turns t's absolute error into a relative one, and t carries log q's rounding
    # (<= 1 ulp) and its own (<= ulp(t)/2): <= 2 |t| ulps of the result
    amplification = 0.0 if gamma == 2.0 else 2 * gamma * np.abs(np.log(q))
    tiny = float(np.finfo(dtype).tiny)
    keep = np.array([float(e) > tiny for e in exact])  # results that are normal numbers
    check_ulp(f"focal gamma={gamma}", loss[keep], [e for e, k in zip(exact, keep) if k], dtype,
              (8.0 + amplification * 1.0)[keep] if np.ndim(amplification) else 8.0, x[keep])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_focal_extreme_logits(simd_path, dtype):
    """x = +-1e4 / +-1e30, targets 0 and 1: the exact finite limits (a confident right
    answer 0, a confident wrong one a_t |x|, gradient a_t sign)."""
    big = BIG[dtype]
    x = np.array([big, -big, big, -big], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype)
    for alpha, gamma in ((0.25, 2.0), (-1.0, 1.5), (0.6, 0.0)):
        loss, grad = fl.sigmoid_focal_loss_with_grad(x, y, alpha=alpha, gamma=gamma)
        a_t = np.where(y == 1, alpha, 1 - alpha) if alpha >= 0 else np.ones(4)
        # (a_t from alpha rounded to the input's precision: within 2 ulp of the float64 value)
        rtol = 4 * float(np.finfo(dtype).eps)
        np.testing.assert_allclose(loss, [0, 0, a_t[2] * big, a_t[3] * big], rtol=rtol, atol=0)
        np.testing.assert_allclose(grad, [0, 0, a_t[2], -a_t[3]], rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_soft_margin_large_x(simd_path, dtype):
    """log(1 + exp(-y x)) and -y sigmoid(-y x): finite everywhere, ~1 ulp, exact at +-big."""
    top = 700.0 if dtype == np.float64 else 87.0
    big = BIG[dtype]
    x = np.unique(np.concatenate([np.linspace(-top, top, 800), [1e4, -1e4, big, -big]])
                  .astype(dtype))
    for y in (1.0, -1.0):
        loss, grad = fl.soft_margin_loss_with_grad(x, np.full_like(x, y), reduction="none")
        check_ulp("soft_margin loss", loss, [mp.log1p(mp.exp(-y * mpf(a))) for a in x], dtype,
                  2.0, x)
        check_ulp("soft_margin grad", grad, [-y / (1 + mp.exp(y * mpf(a))) for a in x], dtype,
                  3.0, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_kl_div_against_mpmath(simd_path, dtype):
    """p log p (x = 0) for p down to the smallest normal, and exp(t) t with log_target."""
    lo = math.log10(float(np.finfo(dtype).tiny)) + 0.5
    p = np.unique(np.logspace(lo, -1e-7, 700).astype(dtype))
    loss, grad = fl.kl_div_with_grad(np.zeros_like(p), p, reduction="none")
    check_ulp("kl p log p", loss, [mpf(a) * mp.log(mpf(a)) for a in p], dtype, 3.0, p)
    np.testing.assert_array_equal(grad, -p)
    t = np.unique(np.linspace(-700 if dtype == np.float64 else -87, -1e-3, 700).astype(dtype))
    loss, grad = fl.kl_div_with_grad(np.zeros_like(t), t, reduction="none", log_target=True)
    check_ulp("kl log_target", loss, [mp.exp(mpf(a)) * mpf(a) for a in t], dtype, 4.0, t)
    check_ulp("kl log_target grad", grad, [-mp.exp(mpf(a)) for a in t], dtype, 3.0, t)
    # a zero target contributes exactly 0, even against x = -inf
    z = fl.kl_div(np.array([-np.inf, 0.0], dtype), np.zeros(2, dtype), reduction="none")
    np.testing.assert_array_equal(z, [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_msle_against_mpmath(simd_path, dtype):
    """(log1p(x) - log1p(1e-7))^2 for x from 1e-5 to 1e30 (no cancellation there), its
    gradient, and the clamp: x below 1e-7 gives the clamped loss and gradient 0."""
    x = np.unique(np.logspace(-5, 30, 700).astype(dtype))
    y = np.full_like(x, 1e-7)
    e7 = mpf(dtype(1e-7))
    loss, grad = fl.msle_loss_with_grad(x, y, reduction="none")
    r = [mp.log1p(mpf(a)) - mp.log1p(e7) for a in x]
    check_ulp("msle loss", loss, [v * v for v in r], dtype, 6.0, x)
    check_ulp("msle grad", grad, [2 * v / (1 + mpf(a)) for v, a in zip(r, x)], dtype, 5.0, x)
    low = np.array([-5.0, 0.0, 1e-9, -1e30], dtype)
    loss, grad = fl.msle_loss_with_grad(low, np.full(4, 3.0, dtype), reduction="none")
    clamped = dtype((math.log1p(float(dtype(1e-7))) - math.log1p(3.0)) ** 2)
    np.testing.assert_allclose(loss, clamped, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_kinks_exactly(simd_path, dtype):
    """At the kinks: smooth_l1 at |r| == beta takes the linear side (gradient sign r);
    hinge at y x == margin and multi_margin at h == 0 have subgradient 0; huber at
    |r| == delta gives delta sign(r)."""
    y = np.array([0.0, 0.0, 1.0, -2.0], dtype)
    r = np.array([0.5, -0.5, 0.5, -0.5], dtype)
    loss, grad = fl.smooth_l1_loss_with_grad(y + r, y, beta=0.5, reduction="none")
    np.testing.assert_array_equal(loss, np.full(4, 0.25, dtype))
    np.testing.assert_array_equal(grad, np.sign(r))
    loss, grad = fl.huber_loss_with_grad(y + r, y, delta=0.5, reduction="none",
                                         weight=np.full(4, 2.0, dtype))
    np.testing.assert_array_equal(loss, np.full(4, 0.25, dtype))
    np.testing.assert_array_equal(grad, 2 * 0.5 * np.sign(r))
    s = np.array([1.0, -1.0, 1.0, -1.0], dtype)
    for squared in (False, True):
        loss, grad = fl.hinge_loss_with_grad(0.75 * s, s, margin=0.75, squared=squared,
                                             reduction="none")
        np.testing.assert_array_equal(loss, 0)
        np.testing.assert_array_equal(grad, 0)
    x = np.array([[1.0, 0.0, 0.5, 3.0]], dtype)  # h_j = 1 - 3 + x_j: -1, -2, -1.5 (none active)
    loss, grad = fl.multi_margin_loss_with_grad(x, np.array([3]), reduction="sum")
    assert loss == 0 and np.all(grad == 0)
    x = np.array([[2.0, 0.0, 3.0]], dtype)  # target 2: h = [0, -2]: the kink at j = 0
    loss, grad = fl.multi_margin_loss_with_grad(x, np.array([2]), p=2, reduction="sum")
    assert loss == 0 and np.all(grad == 0)
    # the extremes: linear sides exactly
    big = BIG[dtype]
    loss, grad = fl.smooth_l1_loss_with_grad(np.array([big, -big], dtype), np.zeros(2, dtype),
                                             reduction="none", beta=0.5)
    np.testing.assert_array_equal(loss, np.array([big - 0.25, big - 0.25], dtype))
    np.testing.assert_array_equal(grad, [1.0, -1.0])
