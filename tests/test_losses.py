"""The fourteen losses of the second layout (issue 12) and weight= on mse/huber/l1:
kernels (fastloss.functional, on every SIMD build) against fastloss.reference.

The reference is checked against torch 2.13 in test_reference_losses_vs_torch.py
(with finite differences for its gradients), so here the kernels are compared
with the reference for every option, dtype, reduction, grad_output kind and out=
(including out=input), plus a few direct kernel-vs-torch spot checks and kernel
finite-difference checks where the gradient has a closed form worth a second
look (gaussian's grad_var, focal, multi_margin p=2). Extreme values against
mpmath are in test_losses_accuracy.py.

One table (CASES) drives everything: an entry per loss and option set builds
the call's arrays; the shared machinery (determinism, threads, memory, fuzz)
reads the same table through ``loss_case``.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss import _dispatch
from fastloss import reference as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
ELEMENT_BLOCK = _dispatch.kernels.BLOCK_SIZES["elementwise"]

# Elementwise shapes: 0-d, tiny, several kernel blocks (last one partial), 3-d.
SHAPES = [(), (7,), (31, 70), (2, 3, 5)]


# ------------------------------------------------------------------------ data

def _kinks(x, y, at, rng):
    """Put a few residuals x - y exactly at +-`at` (exact in both dtypes: y is a
    multiple of 1/8, `at` a small dyadic)."""
    if x.size == 0:
        return x
    flat = x.reshape(-1).copy()
    idx = rng.choice(flat.size, max(1, flat.size // 10), replace=False)
    sign = np.where(rng.uniform(size=idx.size) < 0.5, -1.0, 1.0)
    flat[idx] = y.reshape(-1)[idx] + sign * at
    return flat.reshape(x.shape)


def _eighths(rng, shape, lo=-2, hi=2):
    return rng.integers(lo * 8, hi * 8 + 1, shape) / 8.0


def _signs(rng, shape):
    return np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)


def loss_case(name, opts, shape, rng, dtype):
    """(args, kwargs, loss_shape) of one call of loss `name` with options `opts` on an
    input of `shape`. Values include each loss's special points (kinks, clamps,
    targets 0 and 1)."""
    kw = dict(opts)
    loss_shape = shape
    x = rng.standard_normal(shape) * 2
    if name in ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "log_cosh_loss"):
        y = _eighths(rng, shape)
        kink = {"huber_loss": kw.get("delta", 1.0), "smooth_l1_loss": kw.get("beta", 1.0)}
        x = _kinks(x, y, kink.get(name, 0.0), rng)
        if kw.pop("weighted", False):
            kw["weight"] = rng.uniform(0, 2, shape).astype(dtype)
        args = (x, y)
    elif name == "binary_cross_entropy":
        x = rng.uniform(0, 1, shape)
        y = rng.uniform(0, 1, shape)
        if x.size:
            x.reshape(-1)[::7] = 0.0
            x.reshape(-1)[3::7] = 1.0
            y.reshape(-1)[::3] = 1.0
            y.reshape(-1)[1::3] = 0.0
        w = kw.pop("weight_kind", None)
        if w == "full":
            kw["weight"] = rng.uniform(0, 2, shape).astype(dtype)
        elif w == "row":
            kw["weight"] = rng.uniform(0, 2, shape[-1:]).astype(dtype)
        args = (x, y)
    elif name in ("soft_margin_loss", "hinge_loss"):
        y = _signs(rng, shape)
        if name == "hinge_loss":
            # kinks: y x == margin exactly
            m = kw.get("margin", 1.0)
            if x.size:
                x.reshape(-1)[::5] = (m * y).reshape(-1)[::5]
        args = (x, y)
    elif name == "multilabel_soft_margin_loss":
        y = (rng.uniform(size=shape) < 0.4).astype(float)
        loss_shape = shape[:-1]
        if kw.pop("weighted", False):
            kw["weight"] = rng.uniform(0, 2, shape[-1:]).astype(dtype)
        args = (x, y)
    elif name == "sigmoid_focal_loss":
        x = x * 2
        y = (rng.uniform(size=shape) < 0.3).astype(float)
        if kw.pop("soft", False):
            y = rng.uniform(0, 1, shape)
        args = (x, y)
    elif name == "kl_div":
        # log-probabilities and probabilities (with zeros) along the last axis
        p = rng.uniform(0, 1, shape)
        if p.size:
            p.reshape(-1)[::4] = 0.0
        q = rng.uniform(0.05, 1, shape)
        x = np.log(q)
        y = np.log(p, where=p > 0, out=np.full(shape, -np.inf)) if kw.get("log_target") else p
        args = (x, y)
    elif name == "msle_loss":
        x = rng.uniform(-0.5, 4, shape)
        y = rng.uniform(-0.5, 4, shape)
        if x.size:
            x.reshape(-1)[::6] = 1e-7
            x.reshape(-1)[1::6] = 1e-9
        args = (x, y)
    elif name == "poisson_nll_loss":
        y = rng.poisson(2.0, shape).astype(float)
        if not kw.get("log_input", True):
            x = rng.uniform(0, 4, shape)
            if x.size:
                x.reshape(-1)[::5] = 0.0
        args = (x, y)
    elif name == "gaussian_nll_loss":
        y = rng.standard_normal(shape)
        var_kind = kw.pop("var_kind")
        if var_kind == "float":
            var = 0.7
        else:
            vshape = {"full": shape, "row": shape[:-1],
                      "ones": shape[:-1] + (1,)}[var_kind]
            var = rng.uniform(0, 2, vshape)
            if var.size:
                var.reshape(-1)[::5] = 1e-9  # below eps: clamped
            var = var.astype(dtype)
        args = (x, y, var)
    elif name == "nll_loss":
        C = kw.pop("C", 5)
        full = shape[:1] + (C,) + shape[1:] if shape else (C,)
        z = rng.standard_normal(full)
        x = z - np.log(np.sum(np.exp(z), axis=0 if not shape else 1, keepdims=True))
        loss_shape = shape
        t = rng.integers(0, C, shape)
        if t.size:
            t.reshape(-1)[::4] = kw.get("ignore_index", -100)
        if kw.pop("weighted", False):
            kw["weight"] = rng.uniform(0.2, 2, C).astype(dtype)
        args = (x, t)
    elif name == "multi_margin_loss":
        C = kw.pop("C", 5)
        full = shape + (C,)
        x = _eighths(rng, full, -3, 3)  # margins land on the kink h = 0
        loss_shape = shape
        t = rng.integers(0, C, shape)
        if kw.pop("weighted", False):
            kw["weight"] = rng.uniform(0.2, 2, C).astype(dtype)
        args = (x, t)
    else:
        raise KeyError(name)
    args = tuple(np.asarray(a, dtype) if i < 2 and np.asarray(a).dtype.kind == "f"
                 else (np.asarray(a) if i < 2 else a) for i, a in enumerate(args))
    return args, kw, loss_shape


# (name, options, shapes the loss takes): one entry per option set.
CASES = [
    ("mse_loss", dict(weighted=True), SHAPES),
    ("l1_loss", {}, SHAPES),
    ("l1_loss", dict(weighted=True), SHAPES),
    ("huber_loss", dict(weighted=True, delta=0.5), SHAPES),
    ("smooth_l1_loss", dict(beta=1.0), SHAPES),
    ("smooth_l1_loss", dict(beta=0.25), SHAPES),
    ("smooth_l1_loss", dict(beta=0.0), SHAPES),
    ("log_cosh_loss", {}, SHAPES),
    ("msle_loss", {}, SHAPES),
    ("binary_cross_entropy", {}, SHAPES),
    ("binary_cross_entropy", dict(weight_kind="full"), SHAPES),
    ("binary_cross_entropy", dict(weight_kind="row"), [(7,), (31, 70), (2, 3, 5)]),
    ("soft_margin_loss", {}, SHAPES),
    ("hinge_loss", {}, SHAPES),
    ("hinge_loss", dict(margin=0.5, squared=True), SHAPES),
    ("hinge_loss", dict(margin=2.0, squared=False), SHAPES),
    ("multilabel_soft_margin_loss", {}, [(7,), (31, 70)]),
    ("multilabel_soft_margin_loss", dict(weighted=True), [(7,), (31, 70)]),
    ("sigmoid_focal_loss", {}, SHAPES),
    ("sigmoid_focal_loss", dict(alpha=-1.0, gamma=0.0), SHAPES),
    ("sigmoid_focal_loss", dict(alpha=0.6, gamma=1.5, soft=True), SHAPES),
    ("kl_div", {}, SHAPES),
    ("kl_div", dict(log_target=True), SHAPES),
    ("poisson_nll_loss", {}, SHAPES),
    ("poisson_nll_loss", dict(log_input=False, full=True), SHAPES),
    ("poisson_nll_loss", dict(log_input=True, full=True, eps=1e-3), SHAPES),
    ("gaussian_nll_loss", dict(var_kind="full"), SHAPES),
    ("gaussian_nll_loss", dict(var_kind="float", full=True), SHAPES),
    ("gaussian_nll_loss", dict(var_kind="row", eps=1e-3), [(7,), (31, 70), (2, 3, 5)]),
    ("gaussian_nll_loss", dict(var_kind="ones"), [(31, 70), (2, 3, 5)]),
    ("nll_loss", {}, [(), (600,), (3, 4, 5)]),
    ("nll_loss", dict(weighted=True, ignore_index=2, C=40), [(), (600,), (3, 4, 5)]),
    ("multi_margin_loss", {}, [(), (600,)]),
    ("multi_margin_loss", dict(p=2, margin=0.5, weighted=True, C=70), [(), (300,)]),
]
# One option set per new loss (most options on), for the tests of the shared machinery
# (test_determinism, test_threads, test_memory, test_fuzz): name -> (options, class axis).
ONE_PER_LOSS = {
    "mse_loss": dict(weighted=True),
    "l1_loss": dict(weighted=True),
    "huber_loss": dict(weighted=True, delta=0.5),
    "smooth_l1_loss": dict(beta=0.25),
    "log_cosh_loss": {},
    "msle_loss": {},
    "binary_cross_entropy": dict(weight_kind="row"),
    "soft_margin_loss": {},
    "hinge_loss": dict(margin=0.5, squared=True),
    "multilabel_soft_margin_loss": dict(weighted=True),
    "sigmoid_focal_loss": dict(alpha=0.6, gamma=1.5, soft=True),
    "kl_div": dict(log_target=True),
    "poisson_nll_loss": dict(log_input=False, full=True),
    "gaussian_nll_loss": dict(var_kind="ones"),
    "nll_loss": dict(weighted=True, ignore_index=2, C=40),
    "multi_margin_loss": dict(p=2, margin=0.5, weighted=True, C=70),
}
ROW_LOSSES = ("nll_loss", "multi_margin_loss")


def shaped_case(name, n_elems, rng, dtype):
    """loss_case of ONE_PER_LOSS[name] with about `n_elems` input elements (at least)."""
    opts = ONE_PER_LOSS[name]
    if name == "nll_loss":
        shape = (-(-n_elems // (40 * 5)), 5)  # K-dim: (N, 40, 5)
    elif name == "multi_margin_loss":
        shape = (-(-n_elems // 70),)
    else:
        shape = (-(-n_elems // 70), 70)
    return loss_case(name, opts, shape, rng, dtype)


CASE_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
            for n, o, _ in CASES]


@contextlib.contextmanager
def kl_quiet():
    """kl_div's "mean" warns (tested on its own below)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "kl_div", UserWarning)
        warnings.filterwarnings("ignore", "reduction: 'mean'", UserWarning)
        yield


def _arrays(values):
    return [v for v in values if isinstance(v, np.ndarray)]


def check_types(loss, grads, args, reduction, loss_shape, dtype):
    dtype = np.dtype(dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype, (type(loss), loss)
        assert loss.shape == tuple(loss_shape), (loss.shape, loss_shape)
    else:
        assert type(loss) is dtype.type, type(loss)
    for grad, a in zip(grads, args):
        if grad is None:
            continue
        assert isinstance(grad, np.ndarray) and grad.shape == np.shape(a), (grad.shape,
                                                                             np.shape(a))
        assert grad.dtype == dtype, grad.dtype


def run_vs_reference(name, args, kwargs, loss_shape, reduction, *, grad_output=None,
                     out_kind=None, tol=None):
    """fastloss.<name>_with_grad and fastloss.<name> vs reference.<name>_with_grad.

    out_kind: None, "fresh" (a new buffer per gradient) or "input" (out=input, in place;
    gaussian: (input, None)). Checks types and shapes, that out= is returned, that the
    forward's loss is the fused one bit for bit, and that no argument is modified.
    """
    fused, forward = getattr(fl, name + "_with_grad"), getattr(fl, name)
    reference = getattr(ref, name + "_with_grad")
    gaussian = name == "gaussian_nll_loss"
    x = args[0]
    dtype = x.dtype
    call_args = list(args)
    ops = _arrays(list(args) + [grad_output] + list(kwargs.values()))
    saved = [a.copy() for a in ops]
    out = None
    if out_kind == "fresh":
        out = np.full(x.shape, np.nan, dtype)
        if gaussian:
            var = args[2]
            out = (out, np.full(np.shape(var), np.nan, dtype) if isinstance(var, np.ndarray)
                   else None)
    elif out_kind == "input":
        call_args[0] = x.copy()
        out = (call_args[0], None) if gaussian else call_args[0]
    with kl_quiet():
        result = fused(*call_args, reduction=reduction, grad_output=grad_output, out=out,
                       **kwargs)
        loss_fwd = forward(*args, reduction=reduction, **kwargs)
        expected = reference(*args, reduction=reduction, grad_output=grad_output, **kwargs)
    msg = f"{name} {dtype} {x.shape} go={type(grad_output).__name__} out={out_kind} {kwargs}"
    loss, grads = result[0], result[1:]
    assert len(result) == len(expected) == (3 if gaussian else 2), msg
    differentiated = (args[0], args[2]) if gaussian else args[:1]
    check_types(loss, grads, differentiated, "none" if reduction == "none" else "mean", loss_shape,
                dtype)
    check_types(loss_fwd, (), args, "none" if reduction == "none" else "mean", loss_shape,
                dtype)
    outs = out if isinstance(out, tuple) else (out,)
    for got, buffer in zip(grads, outs):
        if buffer is not None:
            assert got is buffer, msg
    if gaussian and not isinstance(args[2], np.ndarray):
        assert grads[1] is None and expected[2] is None
    np.testing.assert_array_equal(loss_fwd, loss, err_msg="forward != fused loss " + msg)
    tol = tol or TOL[dtype.type]
    np.testing.assert_allclose(loss, expected[0], **tol, err_msg="loss " + msg)
    for i, (got, want) in enumerate(zip(grads, expected[1:])):
        if want is None:
            continue
        if i == 1 and np.shape(args[2]) != x.shape:
            # grad_var summed over a broadcast axis: its terms (1/v - r^2/v^2)/2 cancel, so
            # the float32 terms' rounding is relative to the sum of their sizes
            full = np.broadcast_to(np.asarray(args[2]).reshape(
                np.shape(args[2]) + (() if np.ndim(args[2]) == x.ndim else (1,))), x.shape)
            with kl_quiet():
                terms = reference(*args[:2], np.ascontiguousarray(full), reduction=reduction,
                                  grad_output=grad_output, **kwargs)[2]
            axis = tuple(d for d in range(x.ndim) if full.strides[d] == 0)
            size = np.sum(np.abs(terms.astype(np.float64)), axis=axis).reshape(np.shape(want))
            assert np.all(np.abs(got - want.astype(np.float64)) <= tol["rtol"] * size
                          + tol["atol"]), msg
            continue
        np.testing.assert_allclose(got, want, **tol, err_msg=f"grad {i} " + msg)
    for before, after in zip(saved, ops):
        np.testing.assert_array_equal(before, after, err_msg="argument modified " + msg)
    return result


def go_for(kind, loss_shape, dtype, rng):
    if kind == "default":
        return None
    if kind == "scalar":
        return 0.7
    return rng.uniform(-2.0, 2.0, size=loss_shape).astype(dtype)


# ----------------------------------------------------------------- 1. vs reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, reduction", [
    pytest.param(i, r, id=f"{CASE_IDS[i]}-{r}") for i, (name, _, _) in enumerate(CASES)
    for r in REDUCTIONS + (["batchmean"] if name == "kl_div" else [])])
def test_vs_reference(simd_path, case, dtype, reduction):
    """Every option set x shape x grad_output kind x out= (none, fresh, in place)."""
    name, opts, shapes = CASES[case]
    rng = np.random.default_rng(case * 7 + (reduction == "none") * 3 + len(reduction))
    combos = [("default", None), ("default", "fresh"), ("scalar", "input")]
    if reduction == "none":
        combos += [("array", None), ("array", "fresh"), ("array", "input")]
    for shape in shapes:
        args, kwargs, loss_shape = loss_case(name, opts, shape, rng, dtype)
        for go_kind, out_kind in combos:
            go = go_for(go_kind, loss_shape, dtype, rng)
            run_vs_reference(name, args, kwargs, loss_shape, reduction, grad_output=go,
                             out_kind=out_kind)


# -------------------------------------------------------------- 2. semantics

def raises(exc, arg, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises `exc` with a message naming `arg`."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert arg in str(info.value), f"{arg!r} not in {info.value}"


@pytest.mark.parametrize("bad", [-1e-7, 1.0000001, np.nan, -np.inf, np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_probabilities_outside_0_1(simd_path, dtype, bad):
    """input outside [0, 1] or NaN: ValueError naming input, and nothing written to
    out= (nor to input with out=input), on the fast path and the general one."""
    x = np.linspace(0, 1, 3000).astype(dtype)
    x[2500] = bad
    if x[2500] == 1 or x[2500] == 0:  # 1 + 1e-7 rounds to 1 in float32
        x[2500] = 2 if bad > 0 else -1
    y = np.full(3000, 0.5, dtype)
    for kwargs in ({}, dict(weight=np.ones(3000, dtype))):
        raises(ValueError, "input", fl.binary_cross_entropy, x, y, **kwargs)
        out = np.full(3000, 7.0, dtype)
        raises(ValueError, "input", fl.binary_cross_entropy_with_grad, x, y, out=out, **kwargs)
        assert np.all(out == 7.0)
        buf = x.copy()
        raises(ValueError, "input", fl.binary_cross_entropy_with_grad, buf, y, out=buf,
               reduction="none", **kwargs)
        np.testing.assert_array_equal(buf, x)


def test_option_checks():
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    y = np.sign(x)
    t = np.array([0, 3, 1])
    for beta in (-0.5, -1e-300, np.nan):
        raises(ValueError, "beta", fl.smooth_l1_loss, x, y, beta=beta)
        raises(ValueError, "beta", fl.smooth_l1_loss_with_grad, x, y, beta=beta)
    raises(TypeError, "beta", fl.smooth_l1_loss, x, y, beta="1")
    # gaussian: negative var (a float or any entry of an array); eps < 0
    for var in (-1.0, np.full((3, 4), -1e-3), np.array([1.0, -2.0, 1.0])):
        raises(ValueError, "var", fl.gaussian_nll_loss, x, y, var)
        raises(ValueError, "var", fl.gaussian_nll_loss_with_grad, x, y, var)
    raises(ValueError, "var", fl.gaussian_nll_loss, x, y, np.ones((2, 4)))
    raises(TypeError, "var", fl.gaussian_nll_loss, x, y, np.ones((3, 4), np.int64))
    raises(ValueError, "eps", fl.gaussian_nll_loss, x, y, 1.0, eps=-1.0)
    # hinge: margin is a float
    for margin in ("1", None, [1.0]):
        raises(TypeError, "margin", fl.hinge_loss, x, y, margin=margin)
        raises(TypeError, "margin", fl.multi_margin_loss, x, t, margin=margin)
    # multi_margin: p is the integer 1 or 2
    for p, exc in ((3, ValueError), (0, ValueError), (1.0, TypeError), (True, TypeError),
                   ("2", TypeError), (2.5, TypeError)):
        raises(exc, "p", fl.multi_margin_loss, x, t, p=p)
        raises(exc, "p", fl.multi_margin_loss_with_grad, x, t, p=p)
    assert fl.multi_margin_loss(x, t, p=np.int64(2)) == fl.multi_margin_loss(x, t, p=2)
    # focal: gamma >= 0
    raises(ValueError, "gamma", fl.sigmoid_focal_loss, x, y, gamma=-1.0)
    raises(TypeError, "alpha", fl.sigmoid_focal_loss, x, y, alpha="a")
    # kl_div: its own reduction
    raises(ValueError, "reduction", fl.kl_div, x, y, reduction="avg")
    raises(ValueError, "reduction", fl.nll_loss, x, t, reduction="batchmean")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_weight_must_have_input_shape(name):
    """torch 2.13's weight= on mse/l1/huber does not broadcast."""
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    y = np.zeros((3, 4))
    for shape in ((4,), (3, 1), (1, 3, 4), (), (4, 3)):
        raises(ValueError, "weight", getattr(fl, name), x, y, weight=np.ones(shape))
        raises(ValueError, "weight", getattr(fl, name + "_with_grad"), x, y,
               weight=np.ones(shape))
    raises(TypeError, "weight", getattr(fl, name), x, y, weight=np.ones((3, 4), complex))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_means(simd_path, dtype):
    """mse/l1: "mean" is sum(w l) / sum(w); huber: mean(w l), as torch 2.13. A zero
    weight sum gives a NaN mean and a zero gradient."""
    x, y, w = (np.array(v, dtype) for v in ([1.0, 2.0], [0.0, 0.0], [1.0, 3.0]))
    assert fl.mse_loss(x, y, weight=w) == dtype((1 + 12) / 4)
    assert fl.l1_loss(x, y, weight=w) == dtype((1 + 6) / 4)
    assert fl.huber_loss(x, y, weight=w) == dtype((0.5 + 3 * 1.5) / 2)
    np.testing.assert_array_equal(fl.mse_loss_with_grad(x, y, weight=w)[1],
                                  np.array([2 * 1 / 4, 3 * 2 * 2 / 4], dtype))
    np.testing.assert_array_equal(fl.l1_loss_with_grad(x, y, weight=w)[1],
                                  np.array([1 / 4, 3 / 4], dtype))
    np.testing.assert_array_equal(fl.huber_loss_with_grad(x, y, weight=w)[1],
                                  np.array([1 / 2, 3 / 2], dtype))
    for name in ("mse_loss", "l1_loss"):
        loss, grad = getattr(fl, name + "_with_grad")(x, y, weight=np.zeros(2, dtype))
        assert np.isnan(loss) and np.all(grad == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_reductions(simd_path, dtype):
    """"batchmean" divides the sum by N (a 0-d input: the sum); "mean" by the element
    count, with torch's UserWarning; the others do not warn."""
    rng = np.random.default_rng(3)
    x = np.log(rng.uniform(0.1, 1, (6, 5))).astype(dtype)
    y = rng.uniform(0, 1, (6, 5)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = fl.kl_div(x, y, reduction="sum")
        batchmean, grad = fl.kl_div_with_grad(x, y, reduction="batchmean")
        for r in ("none", "sum", "batchmean"):
            fl.kl_div_with_grad(x, y, reduction=r)
    np.testing.assert_allclose(batchmean, total / 6, **TOL[dtype])
    np.testing.assert_allclose(grad, -y / 6, **TOL[dtype])
    for fn in (fl.kl_div, fl.kl_div_with_grad):
        with pytest.warns(UserWarning, match="batchmean"):
            result = fn(x, y, reduction="mean")
        mean = result[0] if isinstance(result, tuple) else result
        np.testing.assert_allclose(mean, total / 30, **TOL[dtype])
    x0, y0 = np.asarray(x[0, 0]), np.asarray(y[0, 0])
    loss, grad = fl.kl_div_with_grad(x0, y0, reduction="batchmean")
    assert loss == fl.kl_div(x0, y0, reduction="sum")
    assert grad.shape == () and grad == -y0
    # an empty batch: NaN
    assert np.isnan(fl.kl_div(np.zeros((0, 5), dtype), np.zeros((0, 5), dtype),
                              reduction="batchmean"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_rows_empty_ignored_and_out_of_range(simd_path, dtype):
    rng = np.random.default_rng(4)
    # multi_margin of an empty batch: NaN mean, 0 sum
    for name in ("multi_margin_loss", "nll_loss"):
        fn = getattr(fl, name + "_with_grad")
        x0, t0 = np.zeros((0, 4), dtype), np.zeros(0, np.int64)
        loss, grad = fn(x0, t0)
        assert np.isnan(loss) and grad.shape == (0, 4)
        assert fn(x0, t0, reduction="sum")[0] == 0
        assert fn(x0, t0, reduction="none")[0].shape == (0,)
    # nll: every target ignored -> NaN mean and a zero gradient; sum 0
    x = rng.standard_normal((300, 5)).astype(dtype)
    for t, kw in ((np.full(300, -100), {}), (np.full(300, 2), dict(ignore_index=2)),
                  (np.full(300, 1), dict(weight=np.array([1, 0, 1, 1, 1], dtype)))):
        loss, grad = fl.nll_loss_with_grad(x, t, **kw)
        assert np.isnan(loss) and np.all(grad == 0)
        if "weight" not in kw:
            loss, grad = fl.nll_loss_with_grad(x, t, reduction="sum", grad_output=2.0, **kw)
            assert loss == 0 and np.all(grad == 0)
    # class index out of range: IndexError naming target, nothing written
    for bad in (5, 7, -1, -101, 2**40):
        t = rng.integers(0, 5, 300)
        t[123] = bad
        for name in ("nll_loss", "multi_margin_loss"):
            raises(IndexError, "target", getattr(fl, name), x, t)
            buf = x.copy()
            raises(IndexError, "target", getattr(fl, name + "_with_grad"), buf, t, out=buf)
            np.testing.assert_array_equal(buf, x)
    # multi_margin has no ignore_index: -100 is out of range
    raises(IndexError, "target", fl.multi_margin_loss, x, np.full(300, -100))
    # nll's ignore_index is any integer, even a valid class
    t = rng.integers(0, 5, 300)
    np.testing.assert_allclose(fl.nll_loss(x, t, ignore_index=3),
                               ref.nll_loss(x, t, ignore_index=3), **TOL[dtype])


# ------------------------------------------------------- 3. kernels vs torch (spot checks)

def _torch_call(fn, args, diff, kwargs, grad_output):
    torch = pytest.importorskip("torch")
    tensors = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            t = torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iu" else a.copy())
            tensors.append(t.requires_grad_(True) if i in diff else t)
        else:
            tensors.append(a)
    kw = {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v
          for k, v in kwargs.items()}
    loss = fn(*tensors, **kw)
    go = torch.as_tensor(np.asarray(1.0 if grad_output is None else grad_output,
                                    np.asarray(args[0]).dtype))
    (loss * go).sum().backward()
    return (loss.detach().numpy(), *(tensors[i].grad.numpy() for i in diff))


TORCH_CASES = [  # (our name, torch name, options, shape)
    ("nll_loss", "nll_loss", dict(weighted=True, ignore_index=2, C=7), (4, 3, 5)),
    ("binary_cross_entropy", "binary_cross_entropy", dict(weight_kind="full"), (9, 6)),
    ("multi_margin_loss", "multi_margin_loss", dict(p=2, margin=0.5, weighted=True), (40,)),
    ("multilabel_soft_margin_loss", "multilabel_soft_margin_loss", dict(weighted=True), (9, 6)),
    ("soft_margin_loss", "soft_margin_loss", {}, (9, 6)),
    ("kl_div", "kl_div", {}, (9, 6)),  # (log_target: torch's 0 * -inf is NaN, ours 0)
    ("l1_loss", "l1_loss", dict(weighted=True), (9, 6)),
    ("smooth_l1_loss", "smooth_l1_loss", dict(beta=0.25), (9, 6)),
    ("poisson_nll_loss", "poisson_nll_loss", dict(log_input=False, full=True), (9, 6)),
    ("gaussian_nll_loss", "gaussian_nll_loss", dict(var_kind="ones", full=True), (9, 6)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch(simd_path, case, dtype):
    torch = pytest.importorskip("torch")
    ours, theirs, opts, shape = case
    rng = np.random.default_rng(5)
    args, kwargs, loss_shape = loss_case(ours, opts, shape, rng, dtype)
    diff = (0, 2) if ours == "gaussian_nll_loss" else (0,)
    for reduction in REDUCTIONS + (["batchmean"] if ours == "kl_div" else []):
        go = rng.uniform(-2, 2, loss_shape).astype(dtype) if reduction == "none" else 0.5
        with kl_quiet():  # (torch warns for kl_div's "mean" too)
            got = getattr(fl, ours + "_with_grad")(*args, reduction=reduction,
                                                   grad_output=go, **kwargs)
            want = _torch_call(getattr(torch.nn.functional, theirs), args, diff,
                               dict(kwargs, reduction=reduction), go)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TOL[dtype], err_msg=f"{ours} {reduction}")


# ------------------------------------------- 4. kernel gradients vs finite differences
# Every gradient equals the reference's (section 1), whose gradients are checked against
# finite differences in test_reference_losses_vs_torch.py. These check a few kernels'
# closed forms directly (float64, 4th-order central differences, as sklearn does).

def _fd(f, x, h=1e-5):
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        def at(step, i=i):
            xs = x.copy()
            xs[i] += step
            return float(f(xs))
        g[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return g


FD_CASES = [
    ("sigmoid_focal_loss", dict(alpha=0.6, gamma=1.5, soft=True)),
    ("log_cosh_loss", {}),
    ("multi_margin_loss", dict(p=2, margin=0.7, weighted=True)),
    ("poisson_nll_loss", dict(log_input=False, full=True)),
    ("gaussian_nll_loss", dict(var_kind="ones")),
]


@pytest.mark.parametrize("name, opts", FD_CASES, ids=[c[0] for c in FD_CASES])
def test_fd(name, opts):
    rng = np.random.default_rng(6)
    shape = (4,) if name == "multi_margin_loss" else (4, 5)
    args, kwargs, loss_shape = loss_case(name, opts, shape, rng, np.float64)
    if name == "multi_margin_loss":  # away from the kinks, where FD is meaningless
        args = (args[0] + rng.uniform(-0.05, 0.05, args[0].shape), args[1])
    if name == "poisson_nll_loss":  # away from x = 0, where x + eps crosses 0
        args = (args[0] + 0.5, args[1])
    if name == "gaussian_nll_loss":
        args = args[:2] + (rng.uniform(0.5, 2, (4, 1)),)
    go = rng.uniform(-2, 2, loss_shape)
    fn, fused = getattr(fl, name), getattr(fl, name + "_with_grad")
    grads = fused(*args, reduction="none", grad_output=go, **kwargs)[1:]
    for k, grad in zip((0, 2), grads):
        def f(v, k=k):
            a = list(args)
            a[k] = v
            return np.sum(go * fn(*a, reduction="none", **kwargs))
        np.testing.assert_allclose(grad, _fd(f, args[k]), rtol=1e-7, atol=1e-8,
                                   err_msg=f"{name} d/d arg {k}")
