"""Accuracy of the vectorisable primitives in _fastmath.pxd, observed through the losses.

exp_nonpos, log1p_unit, log1p_nonneg and log_normal are `cdef inline`, so they cannot be
called from Python.  Each test below picks loss inputs at which the kernel's arithmetic
around the primitive is exact (or invertible), so that the primitive's own result can be
read off the public API and compared with mpmath:

* exp_nonpos(-a), tail: BCE at x = a, y = 1 has gradient -e/(1+e) computed as
  -(e * (1/(1 + e))); once e <= 2**-53 (float64; 2**-24 float32), 1 + e rounds to 1 and
  the gradient *is* -e.  Likewise cross-entropy of the row [0, -a] with target 0 has
  gradient[1] = e * fl(1/s), s = 1 + e, which is e itself once fl(1/s) == 1.
* exp_nonpos(-a) and log1p_unit(e) together, a in [0, tail]: BCE at x = -a, y = 0 has
  loss log1p_unit(e, u, 1/u) exactly (c = 1, no linear term) and gradient
  e * fl(1/fl(1 + e)).  That map of e is monotone and nearly injective, so the few
  floating-point e within a handful of ulps of exp(-a) that reproduce the observed
  gradient are the only values the kernel can have computed; the test asserts that
  one of them is within the stated bound of exp(-a) *and* gives a loss within the
  stated bound of log1p(e).  (If none is, the primitive provably misses its bound.)
* log1p_nonneg and log_normal: cross-entropy of [0, -a] with target 0 (or the one-hot
  probability target [1, 0]) computes the loss as log1p_nonneg(e), e read off the
  gradient as above; rows of C equal logits give log1p_nonneg(C - 1) = log(C); rows
  whose target logit is 1 below the maximum go through log_normal(s).

The bounds are the ones _fastmath.pxd documents: exp_nonpos <= 2 ulp on
[ln(smallest normal), 0] and 0 below (a flushed subnormal); log1p_unit <= 2 ulp on
[0, 1]; log1p_nonneg and log_normal are held to the same 2 ulp.  Every test runs on
each SIMD build (avx512/avx2/baseline) the CPU supports, since the FMA contraction of
the wider builds changes the rounding.

(A test-only `def` wrapper in the kernels module, e.g. ``_fastmath_probe(name, x, out)``
looping the primitive over an array, would let these tests call the primitives
directly on any argument; the loss-level isolation here needs no change to src/.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

mp = pytest.importorskip("mpmath").mp
mp.dps = 40

import fastloss as fl  # noqa: E402

BOUND_ULP = 2.0
LOWEST = {np.float64: -708.3964185322641, np.float32: -87.33654475}  # _fastmath.pxd
# e below which 1 + e rounds to 1 (so e / (1 + e) is e exactly)
TAIL_A = {np.float64: 36.8, np.float32: 16.7}
DTYPES = (np.float64, np.float32)


def dtype_id(d):
    return np.dtype(d).name


def ulp_of(exact, dtype) -> float:
    """The spacing of `dtype` at the exact value (its binade's ulp; subnormal spacing
    below the normal range)."""
    info = np.finfo(dtype)
    v = abs(float(exact))
    if v == 0 or v < float(info.tiny):
        return float(info.smallest_subnormal)
    _, e = math.frexp(v)  # v = f * 2**e, f in [0.5, 1)
    return math.ldexp(1.0, e - 1 - (info.nmant))


def ulp_err(got, exact, dtype) -> float:
    return float(abs(mp.mpf(float(got)) - exact)) / ulp_of(exact, dtype)


def grid(lo, hi, n, seed, dtype):
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.uniform(lo, hi, n), np.linspace(lo, hi, 64)])
    return np.unique(pts.astype(dtype))


def steps(e0: np.ndarray, k: int) -> np.ndarray:
    """e0 moved k floating-point steps (vectorised nextafter)."""
    out = e0.copy()
    target = np.array(np.inf if k > 0 else -np.inf, dtype=e0.dtype)
    for _ in range(abs(k)):
        out = np.nextafter(out, target)
    return out


def invert(observed: np.ndarray, a: np.ndarray, dtype, model, width=6):
    """For each point, the candidates e (floats near exp(-a)) whose model(e) equals the
    observed value: a list (per point) of (e_candidate, exp error in ulp)."""
    exact = [mp.exp(-mp.mpf(float(v))) for v in a]
    e0 = np.array([float(v) for v in exact]).astype(dtype)
    cands = [[] for _ in a]
    for k in range(-width, width + 1):
        ek = steps(e0, k)
        with np.errstate(all="ignore"):
            hit = model(ek) == observed
        for i in np.nonzero(hit)[0]:
            cands[i].append((ek[i], ulp_err(ek[i], exact[i], dtype)))
    return exact, cands


def best_log1p_candidate(candidates, loss, dtype):
    """Of invert's (e, exp error) candidates, the one that best explains `loss` as
    log1p(e): (worse of the two ulp errors, exp error, log1p error, e)."""
    best = None
    for e, exp_err in candidates:
        log_err = ulp_err(loss, mp.log1p(mp.mpf(float(e))), dtype)
        score = max(exp_err, log_err)
        if best is None or score < best[0]:
            best = (score, exp_err, log_err, e)
    return best


def sigmoid_model(dtype):
    one = dtype(1)
    return lambda e: e * (one / (one + e))


def ce_softmax_model(dtype):
    """g[1] = e * fl(1/s), s = 1 + e summed in double, 1/s in double, cast to dtype."""
    return lambda e: (e * (1.0 / (1.0 + e.astype(np.float64))).astype(dtype)).astype(dtype)


# ------------------------------------------------------------------------ exp_nonpos

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_nonpos_tail_exact_via_bce(simd_path, dtype):
    """exp(-a) read off directly: a in [tail, -ln(smallest normal)], <= 2 ulp; beyond,
    the subnormal result is flushed to 0 (documented)."""
    a = grid(TAIL_A[dtype], -LOWEST[dtype], 3000, 1, dtype)
    x = a
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(
        x, np.ones_like(x), reduction="none")
    worst, bad = 0.0, []
    for ai, g in zip(a, grad):
        exact = mp.exp(-mp.mpf(float(ai)))
        if exact < np.finfo(dtype).tiny:
            continue  # the last few points round across the edge: checked below
        err = ulp_err(-g, exact, dtype)
        worst = max(worst, err)
        if err > BOUND_ULP:
            bad.append(f"exp(-{ai!r}): got {-g!r}, exact {mp.nstr(exact, 20)}, {err:.3f} ulp")
    assert not bad, f"[{simd_path}] exp_nonpos misses {BOUND_ULP} ulp:\n" + "\n".join(bad[:10])
    # below the normal range: exactly 0, never NaN or garbage
    beyond = np.array([-LOWEST[dtype] + 1e-3, 720.0 if dtype == np.float64 else 90.0,
                       745.2 if dtype == np.float64 else 103.9, 1e4, 1e30], dtype=dtype)
    _, g = fl.binary_cross_entropy_with_logits_with_grad(beyond, np.ones_like(beyond),
                                                         reduction="none")
    np.testing.assert_array_equal(g, np.zeros_like(g))
    # and the same through the cross-entropy kernel's exp pass
    X = np.stack([np.zeros_like(beyond), -beyond], axis=1)
    _, g = fl.cross_entropy_with_grad(X, np.zeros(len(beyond), np.int64), reduction="none")
    np.testing.assert_array_equal(g[:, 1], np.zeros(len(beyond), dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_nonpos_tail_exact_via_cross_entropy(simd_path, dtype):
    """The exp pass of the cross-entropy kernel (a different vectorised loop):
    rows [0, -a], target 0, gradient[1] = exp(-a) exactly once fl(1/(1+e)) == 1."""
    start = 37.0 if dtype == np.float64 else 18.1
    a = grid(start, -LOWEST[dtype], 3000, 2, dtype)
    X = np.stack([np.zeros_like(a), -a], axis=1)
    _, grad = fl.cross_entropy_with_grad(X, np.zeros(len(a), np.int64), reduction="none")
    bad = []
    for ai, g in zip(a, grad[:, 1]):
        exact = mp.exp(-mp.mpf(float(ai)))
        if exact < np.finfo(dtype).tiny:
            continue
        err = ulp_err(g, exact, dtype)
        if err > BOUND_ULP:
            bad.append(f"exp(-{ai!r}): got {g!r}, exact {mp.nstr(exact, 20)}, {err:.3f} ulp")
    assert not bad, f"[{simd_path}] exp_nonpos (CE loop) misses {BOUND_ULP} ulp:\n" + \
        "\n".join(bad[:10])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_nonpos_and_log1p_unit_bulk(simd_path, dtype):
    """a in [0, tail]: e = exp_nonpos(-a) recovered from the BCE gradient (see module
    docstring), then log1p_unit(e) from the same call's loss; both <= 2 ulp."""
    hi = TAIL_A[dtype]
    a = np.unique(np.concatenate([
        grid(0.0, hi, 2500, 3, dtype),
        np.logspace(-12 if dtype == np.float64 else -6, 0, 200).astype(dtype),
        np.array([0.0, math.log(2), 0.5, 1.0, 0.34657359, 0.3465736], dtype=dtype)]))
    x = -a
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(
        x, np.zeros_like(x), reduction="none")
    exact_e, cands = invert(grad, a, dtype, sigmoid_model(dtype))
    bad = []
    worst_exp = worst_log = 0.0
    for i, ai in enumerate(a):
        if not cands[i]:
            bad.append(f"a={ai!r}: gradient {grad[i]!r} matches no e within 6 ulp of "
                       f"exp(-a) = {mp.nstr(exact_e[i], 20)} (exp_nonpos far off)")
            continue
        score, exp_err, log_err, e = best_log1p_candidate(cands[i], loss[i], dtype)
        worst_exp, worst_log = max(worst_exp, exp_err), max(worst_log, log_err)
        if exp_err > BOUND_ULP or log_err > BOUND_ULP:
            bad.append(f"a={ai!r}: e={e!r} ({exp_err:.3f} ulp from exp(-a)), "
                       f"loss={loss[i]!r} ({log_err:.3f} ulp from log1p(e))")
    assert not bad, f"[{simd_path}] exp_nonpos/log1p_unit miss {BOUND_ULP} ulp:\n" + \
        "\n".join(bad[:10])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exact_points(simd_path, dtype):
    """exp_nonpos(0) = 1 and log1p_unit(1) = ln 2 correctly rounded: BCE at x = 0 gives
    loss ln 2 and gradient 1/2 exactly; NaN stays NaN, -inf gives exactly 0."""
    x = np.array([0.0, -0.0, np.nan], dtype=dtype)
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x, np.zeros_like(x),
                                                               reduction="none")
    assert loss[0] == dtype(math.log(2)) and loss[1] == dtype(math.log(2))
    assert grad[0] == 0.5 and grad[1] == 0.5
    assert np.isnan(loss[2]) and np.isnan(grad[2])
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(
        np.array([-np.inf], dtype), np.zeros(1, dtype), reduction="none")
    assert loss[0] == 0 and grad[0] == 0


# ------------------------------------------------------- log1p_nonneg and log_normal
# The cross-entropy kernel takes log(s), s = sum of exp(d), either as
# d_k + log1p_nonneg(other / e_k) around a pivot class k (the target, or the argmax
# for probability targets) when d_k > -1, or as log_normal(s) otherwise.

def test_log1p_nonneg_via_cross_entropy(simd_path):
    """Rows [0, -a] (float64): target 0 and the one-hot probability target [1, 0] both
    give loss log1p_nonneg(e), e = exp_nonpos(-a) read off the gradient."""
    dtype = np.float64
    a = np.unique(np.concatenate([grid(0.0, 36.8, 1500, 4, dtype),
                                  np.logspace(-12, 0, 100)]))
    X = np.stack([np.zeros_like(a), -a], axis=1)
    loss_idx, grad_idx = fl.cross_entropy_with_grad(X, np.zeros(len(a), np.int64),
                                                    reduction="none")
    onehot = np.tile(np.array([1.0, 0.0]), (len(a), 1))
    loss_soft, grad_soft = fl.cross_entropy_with_grad(X, onehot, reduction="none")
    np.testing.assert_array_equal(grad_idx[:, 1], grad_soft[:, 1])
    np.testing.assert_array_equal(loss_idx, loss_soft)
    exact_e, cands = invert(grad_idx[:, 1], a, dtype, ce_softmax_model(dtype))
    bad = []
    for i, ai in enumerate(a):
        if not cands[i]:
            bad.append(f"a={ai!r}: gradient {grad_idx[i, 1]!r} matches no e near exp(-a)")
            continue
        score, exp_err, l1, e = best_log1p_candidate(cands[i], loss_idx[i], dtype)
        if score > BOUND_ULP:
            bad.append(f"a={ai!r}: e={e!r} ({exp_err:.3f} ulp), log1p_nonneg(e) -> "
                       f"{loss_idx[i]!r} ({l1:.3f} ulp)")
    assert not bad, f"[{simd_path}] log1p_nonneg misses {BOUND_ULP} ulp:\n" + "\n".join(bad[:10])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_log1p_nonneg_of_integers(simd_path, dtype):
    """A row of C equal logits has loss log1p_nonneg(C - 1) = log(C): exact sums, so
    the primitive alone (in double; float32 rounds that once more) is measured, for
    arguments far above the [0, 1] of log1p_unit, across binade edges."""
    Cs = list(range(1, 70)) + [127, 128, 129, 1000, 1023, 1024, 1025, 4095, 4096, 4097]
    bad = []
    for C in Cs:
        for target in ("index", "probs"):
            t = np.zeros(1, np.int64) if target == "index" else np.eye(1, C, dtype=dtype)
            loss = fl.cross_entropy(np.full((1, C), 3.5, dtype), t, reduction="none")[0]
            err = ulp_err(loss, mp.log(C), dtype)
            if err > BOUND_ULP:
                bad.append(f"C={C} {target}: got {loss!r}, exact {mp.nstr(mp.log(C), 20)}, "
                           f"{err:.3f} ulp")
    assert not bad, f"[{simd_path}] log1p_nonneg misses {BOUND_ULP} ulp:\n" + "\n".join(bad)


def test_log_normal_via_cross_entropy(simd_path):
    """log_normal(s) is taken when the target's logit is at least 1 below the row
    maximum: rows of 2**k - 1 ... logits 1 and a target logit 0 give loss
    log_normal(s) + 1, s = n + exp(-1) (summed in double), and the +1 is exact while
    log(s) stays in [8, 15) (float64, n = 2**12 .. 2**20): the loss is then within
    2 ulp (log_normal) + 1/2 ulp (the rounding of s, relative u, is < 1/8 ulp of log s)
    of the exact value; below 8 the +1 may round once more (+1/2 ulp)."""
    dtype = np.float64
    bad = []
    for k in range(1, 21):
        for n in (2**k - 1, 2**k, 2**k + 1):
            C = n + 1
            x = np.ones((1, C), dtype)
            x[0, -1] = 0.0
            loss = fl.cross_entropy(x, np.array([C - 1]), reduction="none")[0]
            exact = mp.log(n + mp.exp(-1)) + 1
            err = ulp_err(loss, exact, dtype)
            bound = BOUND_ULP + 0.5 + (0.5 if exact < 9 else 0.0)
            if err > bound:
                bad.append(f"n={n}: got {loss!r}, exact {mp.nstr(exact, 20)}, {err:.3f} ulp "
                           f"> {bound}")
    assert not bad, f"[{simd_path}] log_normal misses its bound:\n" + "\n".join(bad)
