"""Elementwise losses: a loss of each element of ``input`` against the same element
of ``target``, reduced over all elements (their kernel: _elementwise.pxi).

Each public function validates its own options and hands the call to
``_elementwise``, which reads the arrays, weights, ``grad_output`` and ``out=``
the same way for every loss. ``target`` must have input's shape: torch
broadcasts it with a warning, which almost always signals a bug.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from . import _dispatch
from ._kernels_baseline import BLOCK_SIZES, REDUCTION_MEAN, REDUCTION_NONE, ElementwiseLoss
from ._validation import (
    XGBOOST_HESSIAN_FLOOR, as_result, check_out, copy_result, float_input, float_operand,
    grad_scale, hessian_convention, kernel_array, option_float, out_pair, real_array,
    reduction_code, sample_weights, thread_count,
)

__all__ = [
    "binary_cross_entropy", "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_with_grad",
    "gaussian_nll_loss", "gaussian_nll_loss_with_grad", "hinge_loss", "hinge_loss_with_grad",
    "huber_loss", "huber_loss_with_grad", "kl_div", "kl_div_with_grad", "l1_loss",
    "l1_loss_with_grad", "log_cosh_loss", "log_cosh_loss_with_grad", "mse_loss",
    "mse_loss_with_grad", "msle_loss", "msle_loss_with_grad", "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_with_grad", "poisson_nll_loss", "poisson_nll_loss_with_grad",
    "sigmoid_focal_loss", "sigmoid_focal_loss_with_grad", "smooth_l1_loss",
    "smooth_l1_loss_with_grad", "soft_margin_loss", "soft_margin_loss_with_grad",
]

_K = ElementwiseLoss
# A weight that repeats along the input's last dimension is passed to the
# kernel as one row when rows are at least this long; shorter rows would make
# the kernel's contiguous segments too short, so such weights are expanded.
_MIN_WEIGHT_ROW = 64
# A constant operand is passed as one kernel block of copies: its runs are then
# whole blocks.
_ELEMENT_BLOCK = BLOCK_SIZES["elementwise"]


def _repeating(value: Any, name: str, x: np.ndarray, *, exact: bool = False):
    """An operand (a weight, pos_weight, var) against input `x` as the kernel takes
    it: (flat array, period). With `exact` it must have input's shape (torch's
    mse/l1/huber weight); otherwise it broadcasts to it. A constant is one block
    of copies, one constant over all but the last axis (``(C,)``, ``(1, C)``, ...)
    one row repeated; anything else is expanded to input's shape."""
    array = real_array(value, name, x.dtype)
    if exact:
        if array.shape != x.shape:
            raise ValueError(f"{name}: expected input's shape {x.shape}, got {array.shape}")
    else:
        try:
            shape = np.broadcast_shapes(array.shape, x.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ValueError(f"{name}: shape {array.shape} does not broadcast to input's shape "
                             f"{x.shape}")
    if array.size == 1 and x.size > 1:
        period = min(x.size, _ELEMENT_BLOCK)
        return np.full(period, array.reshape(()), x.dtype), period
    row = x.shape[-1] if x.ndim else 1
    leading = array.shape[:-1] if array.ndim else ()
    if all(n == 1 for n in leading) and row >= _MIN_WEIGHT_ROW:
        return kernel_array(np.broadcast_to(array.reshape(-1), (row,))), row
    return kernel_array(np.broadcast_to(array, x.shape)).reshape(-1), x.size


def _elementwise(kind, input, target, reduction, *, grad_output=None, out=None, n_threads=None,
                 want_grad=False, weight=None, exact_weight=False, mean_by_weight=False,
                 aux=None, aux_operand=None, want_grad_aux=False, denominator=None,
                 fast_delta=None, hess=None, **options):
    """(loss, grad_input or None, per-element grad of aux or None) of one call.

    `weight` scales each element's loss; "mean" divides by the summed weights
    when `mean_by_weight`, by `denominator` when given, else by the element
    count. `aux` gives the second operand (pos_weight, var) from the converted
    input: a function returning (flat array, period); `aux_operand` is the
    caller's original, for the overlap checks. `fast_delta` (the loss's float
    option, 1.0 for none) lets a plain call try the kernels' fast path first.
    `hess`, an array of the converted input's shape and dtype, receives the
    curvature per element, scaled like the gradient. `options` go to the kernel
    as they are.
    """
    # The fast path knows only the element count as "mean"'s denominator.
    if fast_delta is not None and weight is None and aux is None and denominator is None\
            and hess is None:
        fast = _dispatch.kernels.elementwise_fast(kind, input, target, fast_delta, reduction,
                                                  grad_output, out, n_threads, want_grad)
        if fast is not NotImplemented:
            return fast[0], fast[1], None
    x, result_dtype = float_input(input)
    dtype = x.dtype
    code = reduction_code(reduction)
    y = float_operand(target, "target", dtype, x.shape)
    w = None
    w_period = 0
    if weight is not None:
        w, w_period = _repeating(weight, "weight", x, exact=exact_weight)
    aux_flat, aux_period = aux(x) if aux is not None else (None, 0)
    if denominator is None:
        denominator = (float(np.sum(w, dtype=np.float64)) if mean_by_weight and w is not None
                       else float(x.size))
    scale, scale_elems = (1.0, None) if grad_output is None else grad_scale(
        grad_output, code, x.shape, dtype)
    threads = -1 if n_threads is None else thread_count(n_threads)

    grad = None
    if want_grad:
        if out is not None:
            check_out(out, input, result_dtype, (target, weight, aux_operand, grad_output))
        # The gradient goes straight into `out` when it has input's dtype.
        direct = out is not None and result_dtype is dtype
        grad = out if direct else np.empty(x.shape, dtype)
    grad_aux = np.empty(x.size, dtype) if want_grad and want_grad_aux else None
    loss_elems = np.empty(x.size, dtype) if code == REDUCTION_NONE else None

    value = _dispatch.kernels.elementwise_loss(
        kind, x.reshape(-1), y.reshape(-1), aux_flat, aux_period, w, w_period, code,
        denominator, scale, scale_elems, loss_elems, None if grad is None else grad.reshape(-1),
        grad_aux, threads, hess=None if hess is None else hess.reshape(-1), **options)

    if code == REDUCTION_NONE:
        loss = as_result(loss_elems.reshape(x.shape), result_dtype)
    else:
        loss = value if result_dtype is dtype else as_result(value, result_dtype)
    if not want_grad:
        return loss, None, None
    if out is not None:
        if grad is not out:
            copy_result(out, grad)
        return loss, out, grad_aux
    return loss, grad if result_dtype is dtype else as_result(grad, result_dtype), grad_aux


# ------------------------------------------------------------------ regression

def mse_loss(input, target, reduction="mean", weight=None, *, n_threads=None):
    r"""Mean squared error ``l = (x - y)^2`` per element (``torch.nn.functional.mse_loss``).

    ``weight`` (input's shape, as torch 2.13 requires) scales each element:
    ``w (x - y)^2``, and ``"mean"`` is then ``sum(w l) / sum(w)`` (torch's
    weighted mean; :func:`huber_loss` divides by the element count instead).
    Without it ``"mean"`` averages over all elements.
    """
    return _elementwise(_K.MSE, input, target, reduction, weight=weight, exact_weight=True,
                        mean_by_weight=True, n_threads=n_threads, fast_delta=1.0)[0]


def mse_loss_with_grad(input, target, reduction="mean", weight=None, grad_output=None, out=None,
                       *, n_threads=None):
    r""":func:`mse_loss` and its gradient ``g * w * 2 (x - y) / D`` in one pass.

    ``g`` is ``grad_output`` (per element for ``"none"``), ``w`` the weight (1
    without), ``D`` the ``"mean"`` denominator (``sum(w)``, or the element count)
    and 1 otherwise. Returns ``(loss, grad_input)``.
    """
    return _elementwise(_K.MSE, input, target, reduction, weight=weight, exact_weight=True,
                        mean_by_weight=True, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=True, fast_delta=1.0)[:2]


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None, *, n_threads=None):
    r"""Huber loss (``torch.nn.functional.huber_loss``) with ``r = x - y``.

    ``l = 0.5 r^2`` where ``|r| <= delta``, else ``delta * (|r| - 0.5 delta)``;
    ``delta`` must be positive. ``weight`` (input's shape) scales each element,
    and ``"mean"`` stays ``mean(w l)``, the element count in the denominator as in
    torch 2.13 (:func:`mse_loss` and :func:`l1_loss` divide by ``sum(w)``).
    """
    return _elementwise(_K.HUBER, input, target, reduction, weight=weight, exact_weight=True,
                        n_threads=n_threads, fast_delta=delta,
                        delta=option_float(delta, "delta", "positive"))[0]


def huber_loss_with_grad(input, target, reduction="mean", delta=1.0, weight=None,
                         grad_output=None, out=None, *, n_threads=None):
    r""":func:`huber_loss` and its gradient ``g * w * clip(x - y, -delta, delta) / D`` in one pass.

    At ``|r| == delta`` exactly the gradient is ``delta * sign(r)``. ``g`` is
    ``grad_output``, ``D`` the element count for ``"mean"`` and 1 otherwise.
    """
    return _elementwise(_K.HUBER, input, target, reduction, weight=weight, exact_weight=True,
                        grad_output=grad_output, out=out, n_threads=n_threads, want_grad=True,
                        fast_delta=delta, delta=option_float(delta, "delta", "positive"))[:2]


def l1_loss(input, target, reduction="mean", weight=None, *, n_threads=None):
    r"""Mean absolute error ``l = |x - y|`` (``torch.nn.functional.l1_loss``).

    ``weight`` (input's shape) scales each element; ``"mean"`` is then
    ``sum(w l) / sum(w)``, as torch 2.13 and :func:`mse_loss` do.
    """
    return _elementwise(_K.L1, input, target, reduction, weight=weight, exact_weight=True,
                        mean_by_weight=True, n_threads=n_threads, fast_delta=1.0)[0]


def l1_loss_with_grad(input, target, reduction="mean", weight=None, grad_output=None, out=None,
                      *, n_threads=None):
    r""":func:`l1_loss` and its gradient ``g * w * sign(x - y) / D`` in one pass.

    ``sign(0) = 0`` (torch's subgradient). Returns ``(loss, grad_input)``.
    """
    return _elementwise(_K.L1, input, target, reduction, weight=weight, exact_weight=True,
                        mean_by_weight=True, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=True, fast_delta=1.0)[:2]


def smooth_l1_loss(input, target, reduction="mean", beta=1.0, *, n_threads=None):
    r"""Smooth L1 loss (``torch.nn.functional.smooth_l1_loss``), ``r = x - y``.

    ``l = 0.5 r^2 / beta`` where ``|r| < beta``, else ``|r| - 0.5 beta``.
    ``beta = 0`` is exactly :func:`l1_loss`; a negative ``beta`` is a ValueError.
    """
    return _elementwise(_K.SMOOTH_L1, input, target, reduction, n_threads=n_threads,
                        fast_delta=beta, delta=option_float(beta, "beta", "nonnegative"))[0]


def smooth_l1_loss_with_grad(input, target, reduction="mean", beta=1.0, grad_output=None,
                             out=None, *, n_threads=None):
    r""":func:`smooth_l1_loss` and its gradient in one pass: ``g * r / (beta D)``
    where ``|r| < beta``, else ``g * sign(r) / D``."""
    return _elementwise(_K.SMOOTH_L1, input, target, reduction, grad_output=grad_output,
                        out=out, n_threads=n_threads, want_grad=True, fast_delta=beta,
                        delta=option_float(beta, "beta", "nonnegative"))[:2]


def msle_loss(input, target, reduction="mean", *, n_threads=None):
    r"""Mean squared logarithmic error, as Keras 3's ``MeanSquaredLogarithmicError``.

    ``l = (log1p(max(x, 1e-7)) - log1p(max(y, 1e-7)))^2`` per element. Keras
    averages over the last axis first; here ``"none"`` is per element, like every
    elementwise loss, and ``"mean"`` the mean over all elements (the same number
    as Keras's for a full batch).
    """
    return _elementwise(_K.MSLE, input, target, reduction, n_threads=n_threads,
                        fast_delta=1.0)[0]


def msle_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None, *,
                        n_threads=None):
    r""":func:`msle_loss` and its gradient ``g * 2 r / ((1 + x) D)``, where
    ``r = log1p(x) - log1p(max(y, 1e-7))``, and 0 where the prediction is clamped
    (``x < 1e-7``)."""
    return _elementwise(_K.MSLE, input, target, reduction, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=True, fast_delta=1.0)[:2]


def log_cosh_loss(input, target, reduction="mean", *, n_threads=None):
    r"""Log-cosh loss (Keras ``LogCosh``, optax ``log_cosh``): ``l = log(cosh(x - y))``.

    Computed as ``|d| + log1p(exp(-2|d|)) - log 2`` for ``|d| >= 1/2``, so it
    never overflows, and as ``log1p(2 sinh(|d|/2)^2)`` below, where that sum
    would cancel.
    """
    return _elementwise(_K.LOG_COSH, input, target, reduction, n_threads=n_threads,
                        fast_delta=1.0)[0]


def log_cosh_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None, *,
                            n_threads=None):
    r""":func:`log_cosh_loss` and its gradient ``g * tanh(x - y) / D`` in one pass."""
    return _elementwise(_K.LOG_COSH, input, target, reduction, grad_output=grad_output,
                        out=out, n_threads=n_threads, want_grad=True, fast_delta=1.0)[:2]


def _poisson_options(log_input, full, eps):
    return dict(log_input=bool(log_input), full=bool(full), eps=option_float(eps, "eps"))


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean", *,
                     n_threads=None):
    r"""Poisson negative log-likelihood (``torch.nn.functional.poisson_nll_loss``).

    ``l = exp(x) - y x`` with ``log_input`` (x is the log-rate), else
    ``l = x - y log(x + eps)``. ``full`` adds Stirling's approximation
    ``y log y - y + 0.5 log(2 pi y)`` where ``y > 1`` (0 elsewhere), as torch.
    """
    return _elementwise(_K.POISSON_NLL, input, target, reduction, n_threads=n_threads,
                        **_poisson_options(log_input, full, eps))[0]


def poisson_nll_loss_with_grad(input, target, log_input=True, full=False, eps=1e-8,
                               reduction="mean", grad_output=None, out=None, *, n_threads=None):
    r""":func:`poisson_nll_loss` and its gradient in one pass: ``g * (exp(x) - y) / D``
    with ``log_input``, else ``g * (1 - y / (x + eps)) / D``."""
    return _elementwise(_K.POISSON_NLL, input, target, reduction, grad_output=grad_output,
                        out=out, n_threads=n_threads, want_grad=True,
                        **_poisson_options(log_input, full, eps))[:2]


def _gaussian_var(var: Any, x: np.ndarray):
    """(aux for the kernel, var's shape or None for a float, axis summed for grad_var)."""
    if isinstance(var, (int, float, np.integer, np.floating)) and not isinstance(var, bool):
        value = float(var)
        if value < 0:
            raise ValueError(f"var: expected a non-negative variance, got {value}")
        return _repeating(value, "var", x), None, None
    array = np.asarray(var)
    if array.dtype.kind != "f":
        raise TypeError(f"var: expected a float or a floating-point array, got dtype "
                        f"{array.dtype}")
    shape, axis = array.shape, None
    if shape != x.shape:
        # torch's two homoscedastic forms: one dimension fewer, or one dimension of
        # size 1 where the input's differs.
        if shape == x.shape[:-1]:
            array, axis = array[..., np.newaxis], x.ndim - 1
        else:
            mismatched = [d for d in range(x.ndim) if array.ndim == x.ndim
                          and shape[d] != x.shape[d]]
            if array.ndim != x.ndim or len(mismatched) != 1 or shape[mismatched[0]] != 1:
                raise ValueError(f"var: expected input's shape {x.shape}, that shape without "
                                 f"its last dimension, or one dimension of size 1 in it; got "
                                 f"{shape}")
            axis = mismatched[0]
    if np.any(array < 0):
        raise ValueError("var: expected non-negative variances, got negative entries")
    flat = kernel_array(np.broadcast_to(array.astype(x.dtype, copy=False), x.shape)).reshape(-1)
    return (flat, x.size), shape, axis


def _gaussian_nll(input, target, var, full, eps, reduction, grad_output, out, n_threads,
                  want_grad):
    layout = {}

    def aux(x):
        (flat, period), layout["shape"], layout["axis"] = _gaussian_var(var, x)
        layout["input_shape"] = x.shape
        return flat, period

    is_float = isinstance(var, (int, float, np.integer, np.floating)) and not isinstance(var, bool)
    grad_out, grad_var_out = (None, None) if out is None else out
    loss, grad, grad_aux = _elementwise(
        _K.GAUSSIAN_NLL, input, target, reduction, grad_output=grad_output, out=grad_out,
        n_threads=n_threads, want_grad=want_grad, aux=aux, aux_operand=var,
        want_grad_aux=not is_float, full=bool(full),
        eps=option_float(eps, "eps", "nonnegative"))
    if not want_grad:
        return loss, None, None
    if is_float:
        return loss, grad, None
    var_shape, axis = layout["shape"], layout["axis"]
    grad_var = grad_aux.reshape(layout["input_shape"])
    if axis is not None:
        grad_var = np.asarray(grad_var.sum(axis=axis, dtype=np.float64)).reshape(var_shape)
    # Every gradient has input's (results') dtype, as the reference specifies.
    result_dtype = grad.dtype
    if grad_var_out is not None:
        check_out(grad_var_out, np.asarray(var), result_dtype, (input, target))
        copy_result(grad_var_out, grad_var)
        return loss, grad, grad_var_out
    # (np.array, not np.ascontiguousarray: that makes a 0-d var's gradient 1-d)
    grad_var = grad_var if grad_var.flags.c_contiguous else np.array(grad_var, order="C")
    return loss, grad, as_result(grad_var, result_dtype)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean", *,
                      n_threads=None):
    r"""Gaussian negative log-likelihood (``torch.nn.functional.gaussian_nll_loss``).

    ``l = 0.5 (log v + (x - y)^2 / v)`` (``+ 0.5 log(2 pi)`` with ``full``), where
    ``v = max(var, eps)``. ``var`` is a float, an array of input's shape, one with
    input's shape without its last dimension, or one with a single dimension of
    size 1 where input's differs (homoscedastic). A negative ``var`` is a
    ValueError.
    """
    return _gaussian_nll(input, target, var, full, eps, reduction, None, None, n_threads,
                         False)[0]


def gaussian_nll_loss_with_grad(input, target, var, full=False, eps=1e-6, reduction="mean",
                                grad_output=None, out=None, *, n_threads=None):
    r""":func:`gaussian_nll_loss` and its gradients in one pass: ``(loss, grad_input, grad_var)``.

    ``grad_input = g (x - y) / (v D)`` and ``grad_var = g (1/v - (x - y)^2 / v^2) / (2 D)``
    taken at the clamped ``v`` (torch clamps ``var`` without recording it, so the
    gradient reaches ``var`` even where it was clamped), summed over the
    dimensions along which ``var`` was broadcast. ``grad_var`` has var's shape and
    input's dtype, and is None when ``var`` is a float. ``out`` is None or a pair of arrays
    ``(grad_input_out, grad_var_out)``, either of which may be None.
    """
    return _gaussian_nll(input, target, var, full, eps, reduction, grad_output, out, n_threads,
                         True)


# -------------------------------------------------------------- classification

def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None, *, n_threads=None):
    r"""Sigmoid binary cross-entropy from logits (``torch.nn.functional.binary_cross_entropy_with_logits``).

    ``l = -w * [pw * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))]`` per element,
    evaluated as ``w * (A |x| + c * log1p(exp(-|x|)))`` with ``c = pw y + 1 - y`` and
    ``A = 1 - y`` (x >= 0) or ``pw y`` (x < 0), so it never overflows. ``target``
    has input's shape (values outside [0, 1] are not rejected); ``weight`` and
    ``pos_weight`` broadcast against input (``pos_weight`` of shape ``(C,)``
    applies along the last dimension). ``"mean"`` is the plain mean over elements.

    Unlike torch, logits of +-inf give the exact finite limit (``x = +inf, y = 1``
    gives loss 0 and gradient 0) instead of NaN.
    """
    return _bce_with_logits(input, target, weight, reduction, pos_weight, None, None, n_threads,
                            False)[0]


def binary_cross_entropy_with_logits_with_grad(input, target, weight=None, reduction="mean",
                                               pos_weight=None, grad_output=None, out=None, *,
                                               n_threads=None):
    r""":func:`binary_cross_entropy_with_logits` and its gradient in one pass.

    ``grad = g * w * ((pw y + 1 - y) sigmoid(x) - pw y) / D``, computed as
    ``g * w * ((1 - y) sigmoid(x) - pw y sigmoid(-x)) / D`` to keep full relative
    accuracy when it is small; ``g`` is ``grad_output``, ``D`` the element count
    for ``"mean"`` and 1 otherwise. Returns ``(loss, grad_input)``.
    """
    return _bce_with_logits(input, target, weight, reduction, pos_weight, grad_output, out,
                            n_threads, True)


def _bce_with_logits(input, target, weight, reduction, pos_weight, grad_output, out, n_threads,
                     want_grad, denominator=None):
    aux = None if pos_weight is None else (lambda x: _repeating(pos_weight, "pos_weight", x))
    return _elementwise(_K.BCE_WITH_LOGITS, input, target, reduction, weight=weight,
                        aux=aux, aux_operand=pos_weight, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=want_grad, denominator=denominator,
                        fast_delta=1.0)[:2]


def binary_cross_entropy(input, target, weight=None, reduction="mean", *, n_threads=None):
    r"""Binary cross-entropy of probabilities (``torch.nn.functional.binary_cross_entropy``).

    ``l = -w * [y * max(log x, -100) + (1 - y) * max(log(1 - x), -100)]`` per
    element, each log clamped at -100 as torch does (``log(1 - x)`` computed as
    ``log1p(-x)``). ``input`` must lie in [0, 1] (a ValueError otherwise, NaN
    included, as in torch); ``weight`` broadcasts against it. Prefer
    :func:`binary_cross_entropy_with_logits`, which is exact where this clamps.
    """
    return _elementwise(_K.BINARY_CROSS_ENTROPY, input, target, reduction, weight=weight,
                        n_threads=n_threads, fast_delta=1.0)[0]


def binary_cross_entropy_with_grad(input, target, weight=None, reduction="mean",
                                   grad_output=None, out=None, *, n_threads=None):
    r""":func:`binary_cross_entropy` and torch's gradient for it in one pass:
    ``g * w * (x - y) / (max((1 - x) x, 1e-12) D)``."""
    return _elementwise(_K.BINARY_CROSS_ENTROPY, input, target, reduction, weight=weight,
                        grad_output=grad_output, out=out, n_threads=n_threads, want_grad=True,
                        fast_delta=1.0)[:2]


def _multilabel_soft_margin(input, target, weight, reduction, grad_output, out, n_threads,
                            want_grad):
    shape = np.shape(input)
    if not shape:
        raise ValueError("input: expected scores of shape (C,) or (N, C), got a 0-d array")
    n_classes = shape[-1]
    code = reduction_code(reduction)
    if code != REDUCTION_NONE:
        # Each sample's loss is its elements' mean, so the batch "mean" is the
        # mean over all elements and "sum" the elements' sum divided by C.
        denominator = float(np.prod(shape)) if code == REDUCTION_MEAN else float(n_classes)
        return _bce_with_logits(input, target, weight, "mean", None, grad_output, out,
                                n_threads, want_grad, denominator=denominator)
    # Per sample: the elements' losses, averaged over the class axis in double,
    # and each sample's grad_output spread over its elements.
    go = np.asarray(1.0 if grad_output is None else grad_output)
    if go.dtype.kind not in "iuf":
        raise TypeError(f"grad_output: expected a real number or array, got dtype {go.dtype}")
    if go.ndim:
        if go.shape != shape[:-1]:
            raise ValueError(f"grad_output: expected a scalar or the loss's shape {shape[:-1]}, "
                             f"got {go.shape}")
        go = np.broadcast_to(go[..., np.newaxis], shape)
    # (C = 0: each sample's mean of no elements is NaN, as in torch, without NumPy's warning)
    with np.errstate(divide="ignore", invalid="ignore"):
        go = go / n_classes
    losses, grad = _bce_with_logits(input, target, weight, "none", None, go, out, n_threads,
                                    want_grad)
    # (an array even for a (C,) input: "none" always gives one, 0-d here)
    with np.errstate(invalid="ignore"):
        per_sample = as_result(np.asarray(np.sum(losses, axis=-1, dtype=np.float64) / n_classes),
                               losses.dtype)
    return per_sample, grad


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean", *, n_threads=None):
    r"""Multi-label one-vs-all logistic loss (``torch.nn.functional.multilabel_soft_margin_loss``).

    For scores ``x`` and 0/1 targets ``y`` of shape ``(N, C)`` (or ``(C,)``), each
    sample's loss is ``-(1/C) sum_c w[c] [y log sigmoid(x) + (1 - y) log sigmoid(-x)]``,
    the mean over classes of :func:`binary_cross_entropy_with_logits` (computed
    from logits, so it never overflows). ``"none"`` gives one loss per sample.
    """
    return _multilabel_soft_margin(input, target, weight, reduction, None, None, n_threads,
                                   False)[0]


def multilabel_soft_margin_loss_with_grad(input, target, weight=None, reduction="mean",
                                          grad_output=None, out=None, *, n_threads=None):
    r""":func:`multilabel_soft_margin_loss` and its gradient in one pass:
    ``g * w * (sigmoid(x) - y) / (C D)``, ``D`` N for ``"mean"``, 1 otherwise."""
    return _multilabel_soft_margin(input, target, weight, reduction, grad_output, out,
                                   n_threads, True)


def soft_margin_loss(input, target, reduction="mean", *, n_threads=None):
    r"""Two-class logistic loss (``torch.nn.functional.soft_margin_loss``): ``l = log(1 + exp(-y x))``.

    ``y`` is -1 or 1. Computed as ``max(z, 0) + log1p(exp(-|z|))``, ``z = -y x``,
    so it is finite for every finite input, where torch's literal formula
    overflows to inf from ``|x|`` of about 89 (float32) or 710 (float64).
    """
    return _elementwise(_K.SOFT_MARGIN, input, target, reduction, n_threads=n_threads,
                        fast_delta=1.0)[0]


def soft_margin_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None, *,
                               n_threads=None):
    r""":func:`soft_margin_loss` and its gradient ``-g * y * sigmoid(-y x) / D`` in one pass."""
    return _elementwise(_K.SOFT_MARGIN, input, target, reduction, grad_output=grad_output,
                        out=out, n_threads=n_threads, want_grad=True, fast_delta=1.0)[:2]


def hinge_loss(input, target, margin=1.0, squared=False, reduction="mean", *, n_threads=None):
    r"""Binary SVM hinge loss: ``l = max(0, margin - y x)``, or its square with ``squared``.

    ``y`` is -1 or 1 (other values are used as they are). torch has no twin; it
    matches optax's ``hinge_loss``, Keras's ``Hinge``/``SquaredHinge`` and
    scikit-learn's ``hinge_loss``.
    """
    return _elementwise(_K.HINGE, input, target, reduction, n_threads=n_threads,
                        margin=option_float(margin, "margin"), squared=bool(squared))[0]


def hinge_loss_with_grad(input, target, margin=1.0, squared=False, reduction="mean",
                         grad_output=None, out=None, *, n_threads=None):
    r""":func:`hinge_loss` and its gradient in one pass: ``-g y / D`` (squared:
    ``-2 g y h / D``) where ``h = margin - y x > 0``, and 0 elsewhere, the kink
    ``h = 0`` included (the subgradient torch's relu gives)."""
    return _elementwise(_K.HINGE, input, target, reduction, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=True,
                        margin=option_float(margin, "margin"), squared=bool(squared))[:2]


def _focal_options(alpha, gamma):
    return dict(alpha=option_float(alpha, "alpha"),
                gamma=option_float(gamma, "gamma", "nonnegative"))


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="none", *,
                       n_threads=None):
    r"""Focal loss from logits (``torchvision.ops.sigmoid_focal_loss``; note its default
    reduction ``"none"``).

    With ``p = sigmoid(x)``, ``p_t = p y + (1 - p)(1 - y)`` and ``ce`` the BCE from
    logits, ``l = a_t * ce * (1 - p_t)^gamma`` where ``a_t = alpha y + (1 - alpha)(1 - y)``,
    or 1 when ``alpha < 0``. Computed from ``exp(-|x|)``, so it is finite for every
    finite logit. ``gamma`` must be >= 0.
    """
    return _elementwise(_K.SIGMOID_FOCAL, input, target, reduction, n_threads=n_threads,
                        **_focal_options(alpha, gamma))[0]


def sigmoid_focal_loss_with_grad(input, target, alpha=0.25, gamma=2.0, reduction="none",
                                 grad_output=None, out=None, *, n_threads=None):
    r""":func:`sigmoid_focal_loss` and its gradient, in closed form, in one pass.

    With ``q = 1 - p_t``, ``dq/dx = (1 - 2y) p (1 - p)``, so
    ``grad = g * a_t * q^gamma * [(p - y) + gamma (1 - 2y) ce p (1 - p) / q] / D``.
    """
    return _elementwise(_K.SIGMOID_FOCAL, input, target, reduction, grad_output=grad_output,
                        out=out, n_threads=n_threads, want_grad=True,
                        **_focal_options(alpha, gamma))[:2]


def _kl_div(input, target, reduction, log_target, grad_output, out, n_threads, want_grad):
    denominator = None
    if reduction == "batchmean":
        ndim = np.ndim(input)
        # torch divides the sum by the batch size, except for a 0-d input.
        denominator = float(np.shape(input)[0]) if ndim else 1.0
        reduction = "mean"
    elif reduction == "mean":
        warnings.warn("kl_div: reduction='mean' divides the total loss by both the batch size "
                      "and the support size; 'batchmean' divides only by the batch size, as the "
                      "KL divergence's definition does", UserWarning, stacklevel=3)
    return _elementwise(_K.KL_DIV, input, target, reduction, grad_output=grad_output, out=out,
                        n_threads=n_threads, want_grad=want_grad, denominator=denominator,
                        log_target=bool(log_target))[:2]


def kl_div(input, target, reduction="mean", log_target=False, *, n_threads=None):
    r"""Kullback-Leibler divergence (``torch.nn.functional.kl_div``).

    ``input`` holds log-probabilities ``log q``; ``target`` probabilities ``p``
    (``log p`` with ``log_target``). ``l = p (log p - x)`` per element, where a
    target of 0 contributes 0 (even at ``x = -inf``, where torch's ``0 * inf`` is
    NaN). ``"batchmean"`` divides the sum by N, the true KL divergence per sample;
    ``"mean"`` divides by the element count and warns, as torch does.
    """
    return _kl_div(input, target, reduction, log_target, None, None, n_threads, False)[0]


def kl_div_with_grad(input, target, reduction="mean", log_target=False, grad_output=None,
                     out=None, *, n_threads=None):
    r""":func:`kl_div` and its gradient ``-g p / D`` with respect to ``input``, in one pass."""
    return _kl_div(input, target, reduction, log_target, grad_output, out, n_threads, True)


# ----------------------------------------------------------- gradient boosting
#
# `<name>_grad_hess(input, target, <options>, sample_weight=None, hessian="exact",
# out=None)` -> (loss, grad, hess): `loss` = sum(sample_weight * loss) (a scalar of
# input's dtype), `grad` and `hess` its first derivative and the diagonal of its
# second derivative with respect to `input`, per element, from one pass. The
# kernels give the exact curvature, or adjust it in the same pass by a booster
# convention (for squared error, the gradient's scale halves grad and hess):
#
#   "exact"      the curvature itself, no floor (0 where the loss is linear);
#   "xgboost"    XGBoost 3.2's built-in where it has one (binary:logistic:
#                max(p(1-p), 1e-16) w, floored before the weight;
#                reg:squarederror: 0.5 r^2; count:poisson: exp(x + 0.7)), else
#                the exact curvature floored at 1e-16 before the weight;
#   "lightgbm"   LightGBM 4.7's (binary: p(1-p) w, no floor; regression:
#                0.5 r^2; huber: hessian w; poisson: exp(x + 0.7)), else as
#                "xgboost".
#
# Where the exact curvature is 0 on whole regions (L1, Huber and smooth L1
# outside their quadratic zone, the plain hinge), both booster conventions use
# the hessian w (1 per unit weight), as LightGBM's huber and regression_l1 and
# XGBoost's reg:absoluteerror do: a Newton step then is a (clipped) gradient
# step, and a booster needs hessians > 0.

#: How each booster convention adjusts the exact curvature: "floor" (at 1e-16,
#: before the weight), "unit" (the weight itself), "half" (0.5 r^2: loss, grad
#: and hess halved), "poisson" (exp(x + 0.7), both boosters' max_delta_step 0.7)
#: or "exact".
_FLOOR, _UNIT, _HALF, _POISSON, _EXACT = "floor", "unit", "half", "poisson", "exact"
# exp(0.7): XGBoost's count:poisson and LightGBM's poisson use exp(x + max_delta_step).
_POISSON_STEP = math.exp(0.7)


def _booster_weights(sample_weight, weight, x):
    """The per-element weight of a grad_hess call: sample_weight (N,) along the first
    axis times a torch-style `weight` broadcast against input; None for neither."""
    n = x.shape[0] if x.ndim else 1
    sw = sample_weights(sample_weight, n, x.dtype)
    if sw is not None and x.ndim == 0:
        sw = sw.reshape(())
    elif sw is not None:
        sw = sw.reshape((n,) + (1,) * (x.ndim - 1))
    if weight is None:
        return None if sw is None else np.broadcast_to(sw, x.shape)
    w = real_array(weight, "weight", x.dtype)
    try:
        shape = np.broadcast_shapes(w.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"weight: shape {w.shape} does not broadcast to input's shape {x.shape}")
    w = np.broadcast_to(w, x.shape)
    return w if sw is None else sw * w


def _grad_hess(kind, input, target, sample_weight, hessian, out, n_threads, policy, *,
               weight=None, aux=None, aux_operand=None, **options):
    """(loss, grad, hess) of an elementwise loss for gradient boosting (see above),
    from one kernel pass.

    `policy` maps "xgboost"/"lightgbm" to the adjustment of the exact curvature,
    which the kernel applies per element (BCE's floor carries its pw y + 1 - y,
    as its curvature does).
    """
    convention = hessian_convention(hessian)
    grad_out, hess_out = out_pair(out)
    x, result_dtype = float_input(input)
    dtype = x.dtype
    w = _booster_weights(sample_weight, weight, x)
    operands = (input, target, sample_weight, weight, aux_operand)
    direct = result_dtype is dtype
    if grad_out is not None:
        check_out(grad_out, input, result_dtype, operands)
    if hess_out is not None:
        check_out(hess_out, input, result_dtype, operands + (grad_out,))
    hess = hess_out if hess_out is not None and direct else np.empty(x.shape, dtype)
    action = _EXACT if convention == "exact" else policy[convention]
    # The boosters' squared error is 0.5 r^2 (grad r, hess 1): the gradient's
    # scale 0.5 halves grad and hess exactly, the loss is halved below.
    loss, grad, _ = _elementwise(kind, x, target, "sum", weight=w, out=grad_out if direct else None,
                                 n_threads=n_threads, want_grad=True, aux=aux,
                                 aux_operand=aux_operand, hess=hess,
                                 grad_output=0.5 if action == _HALF else None,
                                 hess_floored=action == _FLOOR, hess_floor=XGBOOST_HESSIAN_FLOOR,
                                 unit_hess=action == _UNIT,
                                 hess_factor=_POISSON_STEP if action == _POISSON else 1.0,
                                 **options)
    if action == _HALF:
        loss = loss * dtype.type(0.5)
    if not direct:
        loss = as_result(loss, result_dtype)
        grad, hess = as_result(grad, result_dtype), as_result(hess, result_dtype)
        if grad_out is not None:
            copy_result(grad_out, grad)
            grad = grad_out
        if hess_out is not None:
            copy_result(hess_out, hess)
            hess = hess_out
    return loss, grad, hess


_BOTH = {"xgboost": _FLOOR, "lightgbm": _FLOOR}
_UNIT_BOTH = {"xgboost": _UNIT, "lightgbm": _UNIT}


def mse_loss_grad_hess(input, target, sample_weight=None, hessian="exact", out=None, *,
                       n_threads=None):
    r"""Squared error for gradient boosting: ``(loss, grad, hess)`` in one pass.

    ``hessian="exact"`` gives fastloss's :func:`mse_loss` summed,
    ``loss = sum(w r^2)``, ``grad = 2 w r``, ``hess = 2 w`` (``r = x - y``,
    ``w`` the sample weight, 1 without). The boosters' squared error
    (XGBoost ``reg:squarederror``, LightGBM ``regression``, scikit-learn's
    HalfSquaredError) is half of it, and ``"xgboost"``/``"lightgbm"`` return that:
    ``sum(0.5 w r^2)``, ``w r``, ``w``. (Handing the booster ``2 w r`` and ``2 w``
    instead gives other trees wherever ``reg_lambda`` or ``min_child_weight``
    is not 0.) ``out`` is None or a pair ``(grad_out, hess_out)``.
    """
    return _grad_hess(_K.MSE, input, target, sample_weight, hessian, out, n_threads,
                      {"xgboost": _HALF, "lightgbm": _HALF})


def huber_loss_grad_hess(input, target, delta=1.0, sample_weight=None, hessian="exact",
                         out=None, *, n_threads=None):
    r""":func:`huber_loss` for gradient boosting: ``loss = sum(w l)``,
    ``grad = w clip(r, -delta, delta)`` and ``hess = w`` where ``|r| <= delta``,
    else 0 (``"exact"``; the side of the kink at ``|r| = delta`` is the quadratic
    one). The booster conventions use ``hess = w`` everywhere, as LightGBM's
    ``huber`` (``alpha`` = ``delta``) does; XGBoost has no Huber built-in."""
    return _grad_hess(_K.HUBER, input, target, sample_weight, hessian, out, n_threads,
                      _UNIT_BOTH, delta=option_float(delta, "delta", "positive"))


def l1_loss_grad_hess(input, target, sample_weight=None, hessian="exact", out=None, *,
                      n_threads=None):
    r""":func:`l1_loss` for gradient boosting: ``grad = w sign(r)``; the exact hessian
    is 0, the booster conventions' ``w``, as XGBoost's ``reg:absoluteerror`` and
    LightGBM's ``regression_l1`` use (both also refit the leaves to quantiles
    after each tree, which a custom objective cannot do)."""
    return _grad_hess(_K.L1, input, target, sample_weight, hessian, out, n_threads, _UNIT_BOTH)


def smooth_l1_loss_grad_hess(input, target, beta=1.0, sample_weight=None, hessian="exact",
                             out=None, *, n_threads=None):
    r""":func:`smooth_l1_loss` for gradient boosting: exact hessian ``w / beta`` where
    ``|r| < beta``, else 0; the booster conventions use ``w`` everywhere (as for
    :func:`huber_loss_grad_hess`)."""
    return _grad_hess(_K.SMOOTH_L1, input, target, sample_weight, hessian, out, n_threads,
                      _UNIT_BOTH, delta=option_float(beta, "beta", "nonnegative"))


def msle_loss_grad_hess(input, target, sample_weight=None, hessian="exact", out=None, *,
                        n_threads=None):
    r""":func:`msle_loss` for gradient boosting: ``grad = 2 w r / (1 + x)``,
    ``hess = 2 w (1 - r) / (1 + x)^2`` (0 where ``x < 1e-7`` is clamped; negative
    where ``r > 1``, MSLE not being convex), floored at 1e-16 before the weight
    by the booster conventions."""
    return _grad_hess(_K.MSLE, input, target, sample_weight, hessian, out, n_threads, _BOTH)


def log_cosh_loss_grad_hess(input, target, sample_weight=None, hessian="exact", out=None, *,
                            n_threads=None):
    r""":func:`log_cosh_loss` for gradient boosting: ``grad = w tanh(r)``,
    ``hess = w / cosh(r)^2`` (computed as a quotient, so it keeps its digits for
    large ``|r|``), floored at 1e-16 before the weight by the booster conventions."""
    return _grad_hess(_K.LOG_COSH, input, target, sample_weight, hessian, out, n_threads,
                      _BOTH)


def poisson_nll_loss_grad_hess(input, target, log_input=True, full=False, eps=1e-8,
                               sample_weight=None, hessian="exact", out=None, *,
                               n_threads=None):
    r""":func:`poisson_nll_loss` for gradient boosting. With ``log_input`` (the
    boosters' case: ``input`` is the log-rate margin) ``grad = w (exp(x) - y)`` and
    ``hess = w exp(x)``; the booster conventions use ``w exp(x + 0.7)``, as XGBoost's
    ``count:poisson`` and LightGBM's ``poisson`` do with their default
    ``max_delta_step`` 0.7. Without it, ``hess = w y / (x + eps)^2``, floored at
    1e-16 before the weight."""
    policy = ({"xgboost": _POISSON, "lightgbm": _POISSON} if log_input else _BOTH)
    return _grad_hess(_K.POISSON_NLL, input, target, sample_weight, hessian, out, n_threads,
                      policy, **_poisson_options(log_input, full, eps))


def gaussian_nll_loss_grad_hess(input, target, var, full=False, eps=1e-6, sample_weight=None,
                                hessian="exact", out=None, *, n_threads=None):
    r""":func:`gaussian_nll_loss` for gradient boosting of the mean, ``var`` fixed:
    ``grad = w (x - y) / v``, ``hess = w / v`` (``v = max(var, eps)``); the booster
    conventions floor it at 1e-16 before the weight."""
    def aux(x):
        return _gaussian_var(var, x)[0]

    return _grad_hess(_K.GAUSSIAN_NLL, input, target, sample_weight, hessian, out, n_threads,
                      _BOTH, aux=aux, aux_operand=var, full=bool(full),
                      eps=option_float(eps, "eps", "nonnegative"))


def binary_cross_entropy_with_logits_grad_hess(input, target, weight=None, pos_weight=None,
                                               sample_weight=None, hessian="exact", out=None,
                                               *, n_threads=None):
    r""":func:`binary_cross_entropy_with_logits` for gradient boosting.

    With ``p = sigmoid(x)``, ``c = pw y + 1 - y`` and ``w`` the sample weight times
    ``weight``: ``loss = sum(w l)``, ``grad = w ((1 - y) p - pw y (1 - p))`` and
    ``hess = w c p (1 - p)``, the product taken as ``sigmoid(x) sigmoid(-x)`` so it
    keeps full relative precision (about ``exp(-|x|)``) instead of cancelling.
    ``"xgboost"`` is ``binary:logistic``'s ``max(c p (1 - p), 1e-16) w`` (floored
    before the weight; ``pos_weight`` plays ``scale_pos_weight``); ``"lightgbm"``
    is ``binary``'s ``w c p (1 - p)``, without a floor.
    """
    aux = None if pos_weight is None else (lambda x: _repeating(pos_weight, "pos_weight", x))
    return _grad_hess(_K.BCE_WITH_LOGITS, input, target, sample_weight, hessian, out,
                      n_threads, {"xgboost": _FLOOR, "lightgbm": _EXACT}, weight=weight,
                      aux=aux, aux_operand=pos_weight)


def soft_margin_loss_grad_hess(input, target, sample_weight=None, hessian="exact", out=None,
                               *, n_threads=None):
    r""":func:`soft_margin_loss` for gradient boosting (labels -1/1):
    ``grad = -w y sigmoid(-y x)``, ``hess = w y^2 sigmoid(x) sigmoid(-x)``, floored
    at 1e-16 before the weight by the booster conventions (as ``binary:logistic``)."""
    return _grad_hess(_K.SOFT_MARGIN, input, target, sample_weight, hessian, out, n_threads,
                      _BOTH)


def hinge_loss_grad_hess(input, target, margin=1.0, squared=False, sample_weight=None,
                         hessian="exact", out=None, *, n_threads=None):
    r""":func:`hinge_loss` for gradient boosting. Exact hessian: 0 for the plain hinge
    (piecewise linear), ``2 w y^2`` where ``h > 0`` for the squared one. The booster
    conventions: ``w`` for the plain hinge (as for L1), the squared one's floored at
    1e-16 before the weight."""
    policy = _BOTH if squared else _UNIT_BOTH
    return _grad_hess(_K.HINGE, input, target, sample_weight, hessian, out, n_threads, policy,
                      margin=option_float(margin, "margin"), squared=bool(squared))


def sigmoid_focal_loss_grad_hess(input, target, alpha=0.25, gamma=2.0, sample_weight=None,
                                 hessian="exact", out=None, *, n_threads=None):
    r""":func:`sigmoid_focal_loss` for gradient boosting, the hessian in closed form.

    With ``s = p (1 - p)``, ``q = 1 - p_t``, ``r = s / q``, ``k = 1 - 2y`` and ``ce``
    the BCE: ``hess = w a_t q^gamma [s + 2 gamma k (p - y) r + gamma ce k r ((gamma - 1)
    k r + 1 - 2p)]``. Focal loss is not convex, so this is negative for some
    confident elements; the booster conventions floor it at 1e-16 before the weight.
    """
    return _grad_hess(_K.SIGMOID_FOCAL, input, target, sample_weight, hessian, out, n_threads,
                      _BOTH, **_focal_options(alpha, gamma))


def binary_cross_entropy_grad_hess(input, target, weight=None, sample_weight=None,
                                   hessian="exact", out=None, *, n_threads=None):
    r""":func:`binary_cross_entropy` (of probabilities ``x``) for gradient boosting:
    ``loss = sum(w l)``, torch's gradient ``grad = w (x - y) / max(x (1 - x), 1e-12)``
    and ``hess = w (y / x^2 + (1 - y) / (1 - x)^2)``, the curvature of the unclamped
    loss (``w`` the sample weight times ``weight``). The booster conventions floor it
    at 1e-16 before the weight. Boosters work on margins: prefer
    :func:`binary_cross_entropy_with_logits_grad_hess`, whose input is the logit."""
    return _grad_hess(_K.BINARY_CROSS_ENTROPY, input, target, sample_weight, hessian, out,
                      n_threads, _BOTH, weight=weight)


def kl_div_grad_hess(input, target, log_target=False, sample_weight=None, hessian="exact",
                     out=None, *, n_threads=None):
    r""":func:`kl_div` (``input`` log-probabilities ``x``) for gradient boosting:
    ``loss = sum(w p (log p - x))``, ``grad = -w p``. The loss is linear in ``x``, so
    the exact hessian is 0; the booster conventions use ``w``, as for
    :func:`l1_loss_grad_hess` (a Newton step is then a gradient step)."""
    return _grad_hess(_K.KL_DIV, input, target, sample_weight, hessian, out, n_threads,
                      _UNIT_BOTH, log_target=bool(log_target))


def multilabel_soft_margin_loss_grad_hess(input, target, weight=None, sample_weight=None,
                                          hessian="exact", out=None, *, n_threads=None):
    r""":func:`multilabel_soft_margin_loss` for gradient boosting: scores ``(N, C)``
    (or one sample ``(C,)``), one sample per row. A sample's loss is the mean over its
    C classes of :func:`binary_cross_entropy_with_logits`, so with ``p = sigmoid(x)``,
    ``w_c`` the class weight and ``s`` the sample weight:
    ``loss = sum_i s_i l_i``, ``grad = s w_c (p - y) / C``,
    ``hess = s w_c p (1 - p) / C`` (``"xgboost"``: ``max(p (1 - p), 1e-16) s w_c / C``;
    ``"lightgbm"``: the exact one), both of input's shape.
    """
    shape = np.shape(input)
    if len(shape) not in (1, 2):
        raise ValueError(f"input: expected scores of shape (C,) or (N, C), got shape {shape}")
    n_classes = shape[-1]
    class_weight = 1.0 if weight is None else real_array(weight, "weight", np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        class_weight = class_weight / n_classes
    if len(shape) == 2:
        return binary_cross_entropy_with_logits_grad_hess(
            input, target, weight=class_weight, sample_weight=sample_weight, hessian=hessian,
            out=out, n_threads=n_threads)
    # (C,): one sample, so sample_weight has one entry; out= is filled afterwards.
    grad_out, hess_out = out_pair(out)
    loss, grad, hess = binary_cross_entropy_with_logits_grad_hess(
        np.reshape(input, (1, n_classes)), np.reshape(target, (1, n_classes)) if
        np.shape(target) == shape else target, weight=class_weight,
        sample_weight=sample_weight, hessian=hessian, n_threads=n_threads)
    grad, hess = grad.reshape(shape), hess.reshape(shape)
    if grad_out is not None:
        check_out(grad_out, grad, grad.dtype, (input, target, weight, sample_weight))
        copy_result(grad_out, grad)
        grad = grad_out
    if hess_out is not None:
        check_out(hess_out, hess, hess.dtype, (input, target, weight, sample_weight, grad_out))
        copy_result(hess_out, hess)
        hess = hess_out
    return loss, grad, hess
