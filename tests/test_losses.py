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
