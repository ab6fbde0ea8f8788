"""Accuracy of every loss and gradient against exact values computed with mpmath.

Each per-element (per-row for cross-entropy) result of the kernels is compared with the
exact value of the same formula evaluated at the *given* floating-point inputs with
50 significant digits.  Errors are measured in units of the unit roundoff

    u = 2**-53 (float64),  u = 2**-24 (float32)      (half an ulp at 1.0)

and every test asserts a bound of the form

    |got - exact| <= u * (K * scale + cond) + underflow

where ``scale`` is |exact| unless the problem itself cancels (see below), ``K`` is a
small constant derived in the comments from the operations the kernel performs (and
stated next to each test), ``cond`` is the part of the error inherent in the inputs'
conditioning (see cross-entropy), and ``underflow = 2 * smallest normal``: relative
bounds only hold in the normal range, and the kernels' exp flushes results below the
smallest normal to 0 (documented in _fastmath.pxd).  Results whose exact value
overflows the dtype must be inf of the right sign.

Where the exact value is tiny *because the problem cancels* (BCE gradient
(1-y)*sigmoid(x) - pw*y*sigmoid(-x) with fractional y near sigmoid(x) = y; cross-entropy
gradient Q*p - T with soft or smoothed targets near p = T/Q), no algorithm working
from the rounded terms can keep a relative bound; there ``scale`` is the sum of the
magnitudes of the cancelling terms, i.e. the error is relative to the terms, not to
their difference.  Where the exact value is tiny but the problem does *not* cancel
(cross-entropy of a confidently right row: loss log1p(sum of small exps), gradient
-(1-p_t) of the target class) the bound stays relative: those are the
``test_ce_confident_*`` tests.

Set FASTLOSS_ACCURACY_REPORT=1 and run with -s to print the largest measured error
(in units of u * scale) of every check.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import pytest

mp = pytest.importorskip("mpmath").mp
mp.dps = 50

import fastloss as fl  # noqa: E402
from fastloss import reference as ref  # noqa: E402

U = {np.float64: 2.0**-53, np.float32: 2.0**-24}
TINY = {np.float64: 2.0**-1022, np.float32: 2.0**-126}
DTYPES = (np.float64, np.float32)
REPORT = os.environ.get("FASTLOSS_ACCURACY_REPORT") == "1"

# Logits/inputs of the issue: +-1e-8, +-1, +-20, +-88, +-1e4, +-1e30 (and 0).  +-1e30 is
# kept for float32 as well (it is representable; the design only promises +-1e4 there,
# but the kernels handle it and the tests prove it).
VALUES = [0.0, 1e-8, -1e-8, 1.0, -1.0, 20.0, -20.0, 88.0, -88.0, 1e4, -1e4, 1e30, -1e30]


def dtype_id(d):
    return np.dtype(d).name


@pytest.fixture
def slow_enabled(request):
    """pyproject registers the `slow` marker but does not deselect it by default; run
    slow tests only when asked for (-m slow, or FASTLOSS_SLOW=1)."""
    if "slow" not in (request.config.getoption("markexpr") or "") and \
            os.environ.get("FASTLOSS_SLOW") != "1":
        pytest.skip("slow: run with -m slow or FASTLOSS_SLOW=1")


def mpf(v):
    return mp.mpf(float(v))


# --------------------------------------------------------------------------- checking

def check(what, dtype, got, exact, scale, K, cond=None, points=None, underflow=None):
    """Assert |got - exact| <= u*(K*scale + cond) + underflow*TINY elementwise.

    got: array of results; exact/scale/cond: lists of mpf (exact may be +-inf, or NaN
    or None where NaN is expected); K: a number or a list (per element); underflow:
    per-element multipliers of the smallest normal (default 2: gradual underflow of
    the result itself; more where a flushed intermediate is scaled up by a weight).
    Returns the largest error beyond the underflow allowance in units of
    u*(scale + cond/K) -- the "K" the element needed -- for reporting.
    """
    u, tiny = U[dtype], TINY[dtype]
    big = mpf(np.finfo(dtype).max)
    got = np.asarray(got).reshape(-1)
    assert len(got) == len(exact)
    Ks = K if isinstance(K, list) else [K] * len(got)
    flush = underflow if underflow is not None else [2] * len(got)
    worst = 0.0
    failures = []
    for i, g in enumerate(got):
        ex = exact[i]
        where = points[i] if points is not None else i
        if ex is None or mp.isnan(ex):
            if not np.isnan(g):
                failures.append(f"{where}: expected NaN, got {g!r}")
            continue
        if mp.isinf(ex) or abs(ex) > big * (1 + mp.mpf(u)):
            # exact value infinite or beyond the dtype: must overflow to inf of its sign
            if not (np.isinf(g) and (g > 0) == (ex > 0)):
                failures.append(f"{where}: expected {'+' if ex > 0 else '-'}inf, got {g!r}")
            continue
        K = Ks[i]
        if not np.isfinite(g):
            if np.isinf(g) and (g > 0) == (ex > 0) and abs(ex) * (1 + K * mp.mpf(u)) >= big:
                continue  # rounded over the edge of the range: allowed by the bound
            failures.append(f"{where}: expected {mp.nstr(ex, 20)}, got {g!r}")
            continue
        err = abs(mpf(g) - ex)
        c = cond[i] if cond is not None else 0
        allowance = flush[i] * mp.mpf(tiny)
        limit = mp.mpf(u) * (K * scale[i] + c) + allowance
        if scale[i] > 0 and err > allowance:
            worst = max(worst, float((err - allowance) / (mp.mpf(u) * (scale[i] + c / K))))
        if err > limit:
            ulps = err / (mp.mpf(u) * scale[i]) / 2 if scale[i] > 0 else mp.inf
            failures.append(
                f"{where}: got {g!r}, exact {mp.nstr(ex, 25)}, error {mp.nstr(err, 5)} = "
                f"{mp.nstr(ulps, 5)} ulp of scale {mp.nstr(scale[i], 5)} > bound "
                f"{mp.nstr(limit, 5)} (K={K})")
    if REPORT:
        print(f"\n[accuracy] {what} {dtype_id(dtype)}: max error {worst:.3g} u "
              f"(bound {min(Ks)}..{max(Ks)} u)")
    assert not failures, f"{what} ({dtype_id(dtype)}): {len(failures)} of {len(got)} " \
                         f"outside the bound; first ones:\n" + "\n".join(failures[:8])
    return worst


# ------------------------------------------------------------------ exact: cross-entropy

@functools.lru_cache(maxsize=None)
def _exp_diff(xc, m):
    d = mp.mpf(xc) - mp.mpf(m)
    return d, mp.exp(d)


def ce_exact_row(x, target=None, q=None, weight=None, eps=0.0):
    """Exact loss, gradient and error scales of one row of logits.

    Returns dict(loss, grad[C], Q, T[C], p[C], d[C], cond_loss, cond_grad[C]).
    cond_*: the error a kernel cannot avoid because it rounds d_c = x_c - max(x)
    (relative error <= u, i.e. absolute u*|d_c|, which exp turns into a relative
    error u*|d_c| of exp(d_c)): the loss moves by Q * sum_c p_c |d_c| * u, the gradient
    element j by Q p_j (|d_j| + sum_c p_c |d_c|) * u.
    """
    C = len(x)
    m = max(float(v) for v in x)
    de = [_exp_diff(float(v), m) for v in x]
    d = [a for a, _ in de]
    e = [b for _, b in de]
    # S = 1 + S1 with S1 the sum of the exps of the non-maximal logits (plus 1 per
    # extra tie).  S1 can be e**-700 while S is 1: log(S) and 1 - p_max are formed
    # from S1 (log1p, S1/S), never by cancellation, which even 50 digits cannot afford.
    n_max = sum(1 for di in d if di == 0)
    S1 = mp.fsum([ei for di, ei in zip(d, e) if di != 0] + [mp.mpf(n_max - 1)])
    S = 1 + S1
    p = [ei / S for ei in e]
    logS = mp.log1p(S1)
    w = [mp.mpf(1)] * C if weight is None else [mpf(v) for v in weight]
    epsm = mpf(eps)
    if q is None:
        T = [(epsm / C) * w[c] for c in range(C)]
        T[target] += (1 - epsm) * w[target]
    else:
        T = [w[c] * ((1 - epsm) * mpf(q[c]) + epsm / C) for c in range(C)]
    Q = mp.fsum(T)
    loss = Q * logS - mp.fsum(T[c] * d[c] for c in range(C) if T[c] != 0)
    # gradient Q p_c - T_c; at a maximum (e_c = 1) as (Q - T_c) - Q (1 - p_c), with
    # Q - T_c the sum of the other T's and 1 - p_c = S1 / S
    grad = [(mp.fsum(T[:c] + T[c + 1:]) - Q * S1 / S) if d[c] == 0 else Q * p[c] - T[c]
            for c in range(C)]
    spd = mp.fsum(p[c] * abs(d[c]) for c in range(C))
    return dict(loss=loss, grad=grad, Q=Q, T=T, p=p, d=d, cond_loss=Q * spd,
                cond_grad=[Q * p[c] * (abs(d[c]) + spd) for c in range(C)])


# --------------------------------------------------------------- exact: pointwise losses

def _log_sigmoid(x):
    """log(sigmoid(x)) = -log1p(exp(-x)), exact for any finite mpf; limits at +-inf."""
    if mp.isinf(x):
        return mp.mpf(0) if x > 0 else -mp.inf
    return -mp.log1p(mp.exp(-x))


def _sigmoid(x):
    if mp.isinf(x):
        return mp.mpf(1) if x > 0 else mp.mpf(0)
    return 1 / (1 + mp.exp(-x))


def bce_exact(x, y, w=1.0, pw=1.0):
    """(loss, grad, grad_scale) of -w [pw y log s(x) + (1-y) log s(-x)].

    0 * log(0) is taken as 0 (the finite limit at x = +-inf).  grad_scale is the sum
    of the magnitudes of the two terms of the gradient (they cancel for fractional y).
    """
    x, y, w, pw = mpf(x), mpf(y), mpf(w), mpf(pw)
    a = pw * y
    b = 1 - y
    t1 = 0 if a == 0 else a * _log_sigmoid(x)
    t2 = 0 if b == 0 else b * _log_sigmoid(-x)
    loss = -w * (t1 + t2)
    g1, g2 = b * _sigmoid(x), a * _sigmoid(-x)
    return loss, w * (g1 - g2), abs(w) * (abs(g1) + abs(g2))


# ------------------------------------------------------------------------------ points

def ce_rows(dtype, seed=0):
    """Groups of (X (N, C), [targets], note) rows at the issue's adversarial points."""
    rng = np.random.default_rng(seed)
    vals = [v for v in VALUES]
    groups = []
    pairs = np.array([[a, b] for a in vals for b in vals], dtype=dtype)
    groups.append(("pairs of +-{0,1e-8,1,20,88,1e4,1e30}", pairs))
    tri = np.array([rng.choice(vals, 5) for _ in range(60)], dtype=dtype)
    groups.append(("5 logits from the same values", tri))
    dom = []
    for margin in (1.0, 3.0, 5.0, 20.0, 40.0, 100.0, 700.0, 1000.0):
        for base in (0.0, -37.5, 1e4):
            row = np.full(10, base)
            row[0] = base + margin
            dom.append(row)
    groups.append(("one logit dominating by 1..1e3 (C=10)", np.array(dom, dtype=dtype)))
    big = np.zeros((6, 1000))
    big[:, 0] = [3.0, 20.0, 1000.0, -5.0, 0.0, 1e30 if dtype == np.float64 else 1e4]
    big[3:] += rng.standard_normal((3, 1000)) * [[0.0], [5.0], [30.0]]
    groups.append(("C=1000 rows", big.astype(dtype)))
    groups.append(("random rows", (rng.standard_normal((40, 7)) * 8).astype(dtype)))
    groups.append(("ties", np.array([[5, 5, 0], [0, 0, 0], [-1e4, -1e4, -1e4], [88, 88, -88]],
                                    dtype=dtype)))
    return groups


def _confident(x, target, q, eps):
    """All target mass on the row maximum, so the loss is Q*log(S) with nothing added
    (and, for a hard target, the target's gradient -Q(1-p_t) does not cancel)."""
    m = np.max(x)
    if q is None:
        return x[target] == m and eps == 0
    return eps == 0 and all(qc == 0 or xc == m for qc, xc in zip(q, x))


def run_ce(dtype, mode, want):
    """Evaluate fastloss and the exact values on every row; split confident rows.

    mode: "hard", "hard_smooth_weight", "soft_onehot", "soft", "soft_smooth_weight".
    want: "general" or "confident".  Returns lists for `check`.
    """
    rng = np.random.default_rng(1)
    out = dict(loss=[], loss_exact=[], loss_scale=[], loss_cond=[], loss_K=[], loss_flush=[],
               grad=[], grad_exact=[], grad_scale=[], grad_cond=[], grad_K=[], grad_flush=[],
               where=[], gwhere=[])
    for name, X in ce_rows(dtype):
        N, C = X.shape
        eps = 0.1 if "smooth" in mode else 0.0
        weight = rng.uniform(0.25, 4.0, C).astype(dtype) if "weight" in mode else None
        targets_list = []
        if mode.startswith("hard"):
            # every row once with its largest logit as target and once with another one
            t_max = np.argmax(X, axis=1)
            t_other = (t_max + 1 + rng.integers(0, max(C - 1, 1), N)) % C
            targets_list = [t_max, t_other]
        else:
            if mode == "soft_onehot":
                targets_list = [np.eye(C, dtype=dtype)[rng.integers(0, C, N)],
                                np.eye(C, dtype=dtype)[np.argmax(X, axis=1)]]
            else:
                targets_list = [rng.dirichlet(np.ones(C) * 0.5, N).astype(dtype)]
        for target in targets_list:
            loss, grad = fl.cross_entropy_with_grad(X, target, weight=weight, reduction="none",
                                                    label_smoothing=eps)
            soft = target.dtype.kind == "f"
            for i in range(N):
                t_i = None if soft else int(target[i])
                q_i = target[i] if soft else None
                if _confident(X[i], t_i, q_i, eps) != (want == "confident"):
                    continue
                ex = ce_exact_row(X[i], target=t_i, q=q_i, weight=weight, eps=eps)
                where = f"{name} row {X[i][:6].tolist()}{'...' if C > 6 else ''} " \
                        f"target {t_i if not soft else np.round(q_i[:6], 3).tolist()} " \
                        f"eps {eps} weighted {weight is not None}"
                out["loss"].append(loss[i])
                out["loss_exact"].append(ex["loss"])
                out["loss_scale"].append(abs(ex["loss"]))
                out["loss_cond"].append(ex["cond_loss"])
                # exps below the smallest normal are flushed: each moves S by < TINY
                out["loss_flush"].append(2 + 2 * C * float(ex["Q"]))
                out["where"].append(where)
                K_loss, K_grad = ce_bounds(dtype, C)
                out["loss_K"].append(K_loss)
                inherent = soft or eps != 0
                for j in range(C):
                    out["grad"].append(grad[i, j])
                    out["grad_exact"].append(ex["grad"][j])
                    # hard targets without smoothing: Q p_j - T_j never cancels (T_j = 0,
                    # or T_t = Q and Q p_t - Q = -Q(1-p_t)): scale |exact|.  Soft or
                    # smoothed targets cancel where p_j = T_j/Q: scale by the terms.
                    out["grad_scale"].append(
                        ex["Q"] * ex["p"][j] + ex["T"][j] if inherent else abs(ex["grad"][j]))
                    out["grad_cond"].append(ex["cond_grad"][j])
                    out["grad_K"].append(K_grad)
                    out["grad_flush"].append(2 + 2 * float(ex["Q"]))
                    out["gwhere"].append(f"{where} grad[{j}]")
    return out


def ce_bounds(dtype, C):
    """K for the loss and the gradient of a row of C classes.

    float64 (everything in double): d_c = x_c - m rounds (in `cond`); exp_nonpos is
    within 2 ulp = 4u (measured <= 1.1 ulp); the lane sum S of <= C nonnegative terms
    adds <= (C-1)u relative; log / log1p 1u; Q, T and the products a few u:
    loss K = C + 8, gradient K = C + 8 (p_j = e_j * (Q/S): 4u + (C-1)u + 2u, minus T_j 1u).
    float32: logits, exps and gradient in float32, sums and log in double: the
    float32 roundings of d, exp (4u), Q/S and the products, cast of the loss: K = 8.
    """
    if dtype == np.float64:
        return C + 8, C + 8
    return 8, 8


# --------------------------------------------------------------------- cross-entropy tests

CE_MODES = ["hard", "hard_smooth_weight", "soft_onehot", "soft", "soft_smooth_weight"]


@pytest.mark.parametrize("mode", CE_MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ce_loss_and_grad(dtype, mode):
    """Per-row loss and per-element gradient of cross-entropy at the adversarial rows
    (rows whose target mass sits on the row maximum are in test_ce_confident_*)."""
    r = run_ce(dtype, mode, "general")
    check(f"CE {mode} loss", dtype, r["loss"], r["loss_exact"], r["loss_scale"], r["loss_K"],
          r["loss_cond"], r["where"], r["loss_flush"])
    check(f"CE {mode} grad", dtype, r["grad"], r["grad_exact"], r["grad_scale"], r["grad_K"],
          r["grad_cond"], r["gwhere"], r["grad_flush"])


@pytest.mark.parametrize("mode", ["hard", "soft_onehot"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ce_confident_rows_loss(dtype, mode):
    """Rows whose target is the largest logit: loss = log(S) = log1p(sum of the other
    exps), a small number with no cancellation in the problem.  Its relative accuracy
    needs log1p of the sum without the max's 1, not log of the rounded S (the latter
    has absolute error u, i.e. relative error u/loss: 2**-53 / 2e-9 for the row [20, 0])."""
    r = run_ce(dtype, mode, "confident")
    assert r["loss"], "no confident rows generated"
    check(f"CE confident {mode} loss", dtype, r["loss"], r["loss_exact"], r["loss_scale"],
          r["loss_K"], r["loss_cond"], r["where"], r["loss_flush"])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ce_confident_rows_grad(dtype):
    """Gradient of a confidently right row: the target's entry is -(1 - p_t) =
    -(S-1)/S, well conditioned in the logits; computing it as p_t - 1 from a rounded
    p_t leaves an absolute error u, relative u/(1-p_t)."""
    r = run_ce(dtype, "hard", "confident")
    check("CE confident hard grad", dtype, r["grad"], r["grad_exact"], r["grad_scale"],
          r["grad_K"], r["grad_cond"], r["gwhere"], r["grad_flush"])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ce_extreme_logits_finite(dtype):
    """Logits of +-1e30 (float64) / +-1e4 (float32) give finite losses and gradients."""
    big = 1e30 if dtype == np.float64 else 1e4
    X = np.array([[big, -big, 0.0], [-big, -big, -big], [big, big, big]], dtype=dtype)
    for t in range(3):
        loss, grad = fl.cross_entropy_with_grad(X, np.full(3, t), reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    loss, grad = fl.cross_entropy_with_grad(X, np.array([1, 0, 2]), reduction="none",
                                            label_smoothing=0.2)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert loss[0] == pytest.approx(0.8 * 2 * big + 0.2 / 3 * 3 * big, rel=4 * U[dtype])


# ------------------------------------------------------------------------- pointwise tests
# Inputs come from VALUES, targets 0 / 1 / fractional, so every kind of point is hit.

BCE_TARGETS = [0.0, 1.0, 0.5, 0.25, 0.9, 1e-8, 1.0 - 2.0**-20]


def bce_points(dtype):
    xs = np.array(VALUES + [0.5, -0.5, 3.0, -3.0, 36.0, -36.0, 40.0, -40.0, 700.0, -700.0,
                            709.5, -709.5, 745.0, -745.0, 17.0, -17.0, 104.0, -104.0], dtype=dtype)
    if dtype == np.float32:
        xs = xs[np.isfinite(xs)]
    X, Y = np.meshgrid(xs, np.array(BCE_TARGETS, dtype=dtype))
    return X.reshape(-1), Y.reshape(-1)


def bce_flush(w, pw, n):
    """Underflow allowance: exp(-|x|) below the smallest normal is flushed to 0 and
    then multiplied by w * c <= w * max(1, pw) (documented in _fastmath.pxd)."""
    w = np.ones(n) if w is None else np.abs(w.astype(np.float64))
    pw = np.ones(n) if pw is None else np.maximum(pw.astype(np.float64), 1.0)
    return list(2 + 2 * w * pw)


def bce_bounds(dtype):
    """BCE evaluated as w*(A|x| + c*log1p(e)), e = exp(-|x|), with A, c >= 0 for
    y in [0, 1], pw >= 0: a sum of nonnegative terms, so relative bounds hold.
    e: 4u; log1p(e): 2u of its own + e's 4u (log1p damps a relative error);
    c = pw*y + (1-y): 2u; products and the sum: 3u; weight: 1u  ->  loss K = 16.
    Gradient (1-y)*s(x) - pw*y*s(-x), s(|x|) = 1/(1+e) (2u + e's), s(-|x|) = e/(1+e)
    (4u + 3u), times the (1-y) or pw*y (2u), difference and weight (2u)  ->  K = 12,
    relative to the sum of the two terms' magnitudes (they cancel for fractional y).
    """
    return 16, 12


@pytest.mark.parametrize("pw", [None, 3.7], ids=["pw=1", "pw=3.7"])
@pytest.mark.parametrize("weighted", [False, True], ids=["w=1", "w"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bce_loss_and_grad(dtype, weighted, pw):
    x, y = bce_points(dtype)
    rng = np.random.default_rng(2)
    w = rng.uniform(0.25, 4.0, x.shape).astype(dtype) if weighted else None
    pw_arr = np.full(x.shape, pw, dtype) if pw is not None else None
    loss, grad = fl.binary_cross_entropy_with_logits_with_grad(
        x, y, weight=w, pos_weight=pw_arr, reduction="none")
    exact = [bce_exact(x[i], y[i], 1.0 if w is None else w[i], 1.0 if pw is None else pw_arr[i])
             for i in range(len(x))]
    where = [f"x={x[i]!r} y={y[i]!r} w={None if w is None else w[i]} pw={pw}" for i in range(len(x))]
    flush = bce_flush(w, pw_arr, len(x))
    K_loss, K_grad = bce_bounds(dtype)
    check("BCE loss", dtype, loss, [e[0] for e in exact], [abs(e[0]) for e in exact], K_loss,
          points=where, underflow=flush)
    check("BCE grad", dtype, grad, [e[1] for e in exact], [e[2] for e in exact], K_grad,
          points=where, underflow=flush)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bce_small_pos_weight_loss(dtype):
    """pos_weight below 1 (down-weighting positives): c = pw*y + 1 - y must be formed as
    pw*y + (1 - y); (pw*y + 1) - y cancels catastrophically for y = 1 and tiny pw."""
    x, y = bce_points(dtype)
    keep = y >= 0.5
    x, y = x[keep], y[keep]
    for pw in (0.3, 1e-3, 1e-8):
        pw_arr = np.full(x.shape, pw, dtype)
        loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x, y, pos_weight=pw_arr,
                                                                   reduction="none")
        exact = [bce_exact(x[i], y[i], 1.0, pw_arr[i]) for i in range(len(x))]
        where = [f"x={x[i]!r} y={y[i]!r} pos_weight={pw_arr[i]!r}" for i in range(len(x))]
        K_loss, K_grad = bce_bounds(dtype)
        # loss and gradient both checked before failing, so the report shows both
        failures = []
        for what, k, vals, scale in (("loss", K_loss, loss, [abs(e[0]) for e in exact]),
                                     ("grad", K_grad, grad, [e[2] for e in exact])):
            try:
                check(f"BCE {what} pw={pw}", dtype, vals, [e[0 if what == "loss" else 1]
                      for e in exact], scale, k, points=where)
            except AssertionError as exc:
                failures.append(str(exc))
        assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bce_infinite_logits_exact_limits(dtype):
    """Logits of +-inf give the exact limit, finite where it is finite (torch gives NaN
    for all of these): x=+inf,y=1 and x=-inf,y=0 -> loss 0, grad 0; the wrong side gives
    loss inf and grad (1-y) resp. -pw*y; NaN logits stay NaN."""
    inf = np.inf
    x = np.array([inf, -inf, inf, -inf, inf, -inf, inf, -inf, np.nan], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.25, 0.25, 1.0, 0.0, 0.5], dtype=dtype)
    pw = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.5, 0.5, 2.0], dtype=dtype)
    w = np.array([1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 1.0, 1.0], dtype=dtype)
    with np.errstate(all="raise"):
        loss, grad = fl.binary_cross_entropy_with_logits_with_grad(x, y, weight=w, pos_weight=pw,
                                                                   reduction="none")
    exp_loss = np.array([0, 0, inf, inf, inf, inf, 0, 0, np.nan], dtype=dtype)
    exp_grad = np.array([0, 0, 1.5, -3.0, 1.5 * 0.75, -1.5 * 0.5, 0, 0, np.nan], dtype=dtype)
    np.testing.assert_array_equal(loss, exp_loss)
    np.testing.assert_array_equal(grad, exp_grad)
    # the reductions of the finite limits are finite as well
    for reduction in ("mean", "sum"):
        value, g = fl.binary_cross_entropy_with_logits_with_grad(
            x[[0, 1, 6, 7]], y[[0, 1, 6, 7]], reduction=reduction)
        assert value == 0 and np.all(g == 0)


def check_pointwise(kind, dtype, x, y, loss, grad, delta=None):
    """MSE / Huber against exact values.

    MSE: d = x - y rounds (1u), d*d (1u more, 2u from d): loss K = 3; grad 2d: K = 1.
    Huber: quadratic 0.5*d*d K = 3; linear delta*(|d| - delta/2), |d| > delta so the
    difference keeps >= half of |d|: d's 1u doubles, difference 1u, product 1u, and
    (float32) delta rounded to float32 1u: K = 6; gradient clip(d): d or delta, K = 2.
    """
    exact_l, exact_g = [], []
    dm = mpf(delta) if delta is not None else None
    for xi, yi in zip(x, y):
        r = mpf(xi) - mpf(yi)
        if kind == "mse":
            exact_l.append(r * r)
            exact_g.append(2 * r)
        elif mp.isnan(r):
            exact_l.append(None)
            exact_g.append(None)
        else:
            exact_l.append(r * r / 2 if abs(r) <= dm else dm * (abs(r) - dm / 2))
            exact_g.append(r if abs(r) <= dm else (dm if r > 0 else -dm))
    where = [f"x={a!r} y={b!r} delta={delta!r}" for a, b in zip(x, y)]
    K_l, K_g = (3, 1) if kind == "mse" else (6, 2)
    check(f"{kind} loss", dtype, loss, exact_l, [abs(v) if v is not None else 0 for v in exact_l],
          K_l, points=where)
    check(f"{kind} grad", dtype, grad, exact_g, [abs(v) if v is not None else 0 for v in exact_g],
          K_g, points=where)


def pointwise_pairs(dtype):
    vals = VALUES + [3.0, -0.5, 1e-300, 1e300, 2.5e-310]
    x, y = np.meshgrid(np.array(vals, dtype=dtype), np.array(vals, dtype=dtype))
    x, y = x.reshape(-1), y.reshape(-1)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_mse_loss_and_grad(dtype):
    with np.errstate(over="ignore"):
        x, y = pointwise_pairs(dtype)
    loss, grad = fl.mse_loss_with_grad(x, y, reduction="none")
    check_pointwise("mse", dtype, x, y, loss, grad)


HUBER_DELTAS = {
    np.float64: [1.0, 0.5, 3.0, 0.1, 1e-300, 1e300, 5e-324],
    np.float32: [1.0, 0.5, 3.0, float(np.float32(0.1)), 1e-30, 1e30, 1e-40],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("delta_index", range(7))
def test_huber_loss_and_grad(dtype, delta_index):
    """Residuals exactly at +-delta (both branches give 0.5 delta**2 and gradient
    +-delta), just inside and outside, and the generic pairs; huge and tiny deltas."""
    delta = HUBER_DELTAS[dtype][delta_index]
    with np.errstate(over="ignore", under="ignore"):
        x, y = pointwise_pairs(dtype)
        dd = dtype(delta)
        at = np.array([dd, -dd, dd, -dd, dd + dtype(1), dtype(1) - dd], dtype=dtype)
        at_y = np.array([0, 0, -0.0, 0, 1, 1], dtype=dtype)
        near = np.array([np.nextafter(dd, dtype(np.inf)), np.nextafter(dd, dtype(0)),
                         -np.nextafter(dd, dtype(np.inf)), -np.nextafter(dd, dtype(0))], dtype=dtype)
    # residuals exactly +-delta are those whose difference is exact
    sel = (at - at_y).astype(np.float64) == np.array([1, -1, 1, -1, 1, -1]) * float(dd)
    x = np.concatenate([x, at[sel], near])
    y = np.concatenate([y, at_y[sel], np.zeros(4, dtype)])
    loss, grad = fl.huber_loss_with_grad(x, y, reduction="none", delta=delta)
    # the delta the kernel sees is delta rounded to the input dtype: that is the exact
    # problem for float32 (the deltas above are representable, 1e-40 as a subnormal)
    check_pointwise("huber", dtype, x, y, loss, grad, delta=float(dd))
    # at |r| == delta exactly: gradient delta*sign(r), loss 0.5*delta**2 (bitwise)
    n = int(sel.sum())
    at_grad = grad[len(grad) - 4 - n:len(grad) - 4]
    at_r = (x - y)[len(x) - 4 - n:len(x) - 4]
    np.testing.assert_array_equal(at_grad, np.sign(at_r) * dd)


# --------------------------------------------------------------------------- reductions

def _fsum_mean(values: np.ndarray) -> float:
    """Correctly rounded mean of float64 values (math.fsum in chunks of 1e6; each
    chunk's partial is exact to 1/2 ulp, far below the 1e-6 tolerance)."""
    parts = [math.fsum(values[i:i + 1_000_000].tolist()) for i in range(0, len(values), 1_000_000)]
    return math.fsum(parts) / len(values)


def _mean_case(loss, n, rng):
    """float32 inputs of n elements whose per-element losses are all about 1 (so a
    float32 running sum would stall at 2**24) plus a long tail."""
    if loss == "cross_entropy":
        C = 10
        x = rng.standard_normal((n // C, C), dtype=np.float32)
        t = rng.integers(0, C, n // C)
        return (x, t), {}
    x = (1.0 + rng.standard_normal(n, dtype=np.float32) * 0.5).astype(np.float32)
    if loss == "binary_cross_entropy_with_logits":
        y = (rng.random(n, dtype=np.float32) < 0.5).astype(np.float32)
        return (x, y), {}
    y = rng.standard_normal(n, dtype=np.float32) * np.float32(0.01)
    return (x, y), ({"delta": 0.5} if loss == "huber_loss" else {})


def _check_mean(loss_name, n, seed):
    rng = np.random.default_rng(seed)
    args, kw = _mean_case(loss_name, n, rng)
    got_mean = getattr(fl, loss_name)(*args, reduction="mean", **kw)
    got_sum = getattr(fl, loss_name)(*args, reduction="sum", **kw)
    assert got_mean.dtype == np.float32 and got_sum.dtype == np.float32
    # exact per-element losses from the reference, evaluated in float64
    args64 = tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in args)
    per = getattr(ref, loss_name)(*args64, reduction="none", **kw).reshape(-1)
    exact_mean = _fsum_mean(per)
    rel_mean = abs(float(got_mean) - exact_mean) / exact_mean
    rel_sum = abs(float(got_sum) - exact_mean * len(per)) / (exact_mean * len(per))
    if REPORT:
        print(f"\n[accuracy] mean of {n:.0e} float32 {loss_name}: rel err {rel_mean:.3g}, "
              f"sum {rel_sum:.3g}")
    assert rel_mean < 1e-6, (loss_name, float(got_mean), exact_mean, rel_mean)
    assert rel_sum < 1e-6, (loss_name, float(got_sum), exact_mean * len(per), rel_sum)


@pytest.mark.parametrize("loss_name", ["mse_loss", "huber_loss",
                                       "binary_cross_entropy_with_logits", "cross_entropy"])
def test_mean_of_1e7_float32(loss_name):
    """The mean (and sum) over 1e7 float32 elements keeps relative error < 1e-6 against
    math.fsum of the float64 per-element losses."""
    _check_mean(loss_name, 10_000_000, 7)


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["mse_loss", "binary_cross_entropy_with_logits",
                                       "cross_entropy"])
def test_mean_of_1e8_float32(loss_name, slow_enabled):
    _check_mean(loss_name, 100_000_000, 8)
