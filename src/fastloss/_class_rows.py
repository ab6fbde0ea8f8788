"""Losses over rows of class scores with a class target: cross_entropy, nll_loss,
multi_margin_loss (their kernels: _cross_entropy.pxi and _class_rows.pxi).

They share one way of reading their arguments (_ClassRows): scores ``(N, C)``,
unbatched ``(C,)`` or, where torch allows it, ``(N, C, d1, ..., dk)`` whose class
axis is moved last; class-index targets of any integer dtype; class weights;
``grad_output``; and ``out=``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from . import _dispatch
from ._kernels_baseline import REDUCTION_NONE, ClassRowsLoss
from ._validation import (
    I64, XGBOOST_HESSIAN_FLOOR, as_result, check_out, copy_result, float_input, grad_scale,
    hessian_convention, kernel_array, option_float, out_pair, real_array, reduction_code,
    sample_weights, thread_count,
)

__all__ = [
    "cross_entropy", "cross_entropy_grad_hess", "cross_entropy_with_grad", "multi_margin_loss",
    "multi_margin_loss_with_grad", "nll_loss", "nll_loss_with_grad",
]


class _ClassRows:
    """One call's arguments as the row kernels take them.

    rows: (R, C) scores of the compute dtype (R = N, 1 or N*d1*..*dk);
    indices / probs: (R,) int64 class indices or (R, C) probabilities (one is None);
    weight: (C,) or None; scale / scale_rows: grad_output as a float or (R,) array;
    index_shape: the shape of the per-row losses ("none").
    """

    def __init__(self, input, target, weight, reduction, grad_output, n_threads, *,
                 probabilities=False, kdim=True):
        logits, self.result_dtype = float_input(input)
        self.code = reduction_code(reduction)
        shape = self.shape = logits.shape
        ndim = len(shape)
        if ndim == 0 or (ndim > 2 and not kdim):
            expected = "(C,), (N, C) or (N, C, d1, ..., dk)" if kdim else "(C,) or (N, C)"
            raise ValueError(f"input: expected scores of shape {expected}, got shape {shape}")
        n_classes = self.n_classes = shape[0] if ndim == 1 else shape[1]
        if n_classes == 0:
            raise ValueError(f"input: expected at least one class, got shape {shape}")
        dtype = self.dtype = logits.dtype
        index_shape = self.index_shape = shape[:1] + shape[2:] if ndim > 1 else ()

        tgt = target if type(target) is np.ndarray else np.asarray(target)
        self.indices = self.probs = None
        if tgt.dtype.kind in "iu":
            if tgt.shape != index_shape:
                raise ValueError(f"target: expected class indices of shape {index_shape} for "
                                 f"input of shape {shape}, got shape {tgt.shape}")
            if tgt.dtype == np.uint64 and tgt.size and tgt.max() > np.iinfo(np.int64).max:
                raise IndexError(f"target: class index {tgt.max()} is out of range for "
                                 f"{n_classes} classes")
            self.indices = kernel_array(tgt.reshape(-1).astype(I64, copy=False))
        elif tgt.dtype.kind == "f" and probabilities:
            if tgt.shape != shape:
                if tgt.shape == index_shape:
                    raise TypeError(f"target: class indices must be integers, got dtype "
                                    f"{tgt.dtype} (probability targets must have input's "
                                    f"shape {shape})")
                raise ValueError(f"target: probability targets must have input's shape "
                                 f"{shape}, got {tgt.shape}")
            self.probs = tgt
        else:
            expected = ("integer class indices or floating-point class probabilities"
                        if probabilities else "integer class indices")
            raise TypeError(f"target: expected {expected}, got dtype {tgt.dtype}")

        self.weight = None
        if weight is not None:
            class_weight = real_array(weight, "weight", dtype)
            if class_weight.shape != (n_classes,):
                raise ValueError(f"weight: expected shape ({n_classes},) (one weight per "
                                 f"class), got {class_weight.shape}")
            self.weight = kernel_array(class_weight)
        self.scale, self.scale_rows = (1.0, None) if grad_output is None else grad_scale(
            grad_output, self.code, index_shape, dtype)
        self.threads = -1 if n_threads is None else thread_count(n_threads)

        # Rows of C scores: (C,) -> (1, C); (N, C, d1..dk) -> (N*d1*..*dk, C).
        self.kdim = ndim > 2
        if self.kdim:
            self.rows = np.ascontiguousarray(np.moveaxis(logits, 1, -1)).reshape(-1, n_classes)
            if self.probs is not None:
                self.probs = np.moveaxis(self.probs, 1, -1)
        else:
            self.rows = logits if ndim == 2 else logits.reshape(1, n_classes)
        if self.probs is not None:
            if self.probs.ndim != 2 or self.probs.dtype is not dtype:
                self.probs = self.probs.reshape(-1, n_classes).astype(dtype, copy=False)
            self.probs = kernel_array(self.probs)

    def outputs(self, input, out, operands, want_grad):
        """(gradient buffer or None, per-row loss buffer or None) for the kernel."""
        self.out = out
        self.grad = None
        if want_grad:
            if out is not None:
                check_out(out, input, self.result_dtype, operands)
            # The gradient goes straight into `out` when it has the rows' layout and dtype.
            self.direct = out is not None and not self.kdim and self.result_dtype is self.dtype
            self.grad = (out.reshape(self.rows.shape) if self.direct
                         else np.empty(self.rows.shape, self.dtype))
        self.loss_rows = (np.empty(self.rows.shape[0], self.dtype)
                          if self.code == REDUCTION_NONE else None)
        return self.grad, self.loss_rows

    def results(self, value, want_grad):
        """(loss, gradient or None) in the caller's shapes and dtype."""
        if self.code == REDUCTION_NONE:
            loss = as_result(self.loss_rows.reshape(self.index_shape), self.result_dtype)
        else:
            loss = value if self.result_dtype is self.dtype else as_result(value,
                                                                           self.result_dtype)
        if not want_grad:
            return loss, None
        return loss, self.in_caller_layout(self.grad, self.out, self.direct)

    def in_caller_layout(self, values, out, direct):
        """Per-class values computed in the rows' layout, in input's shape and the
        results' dtype (in `out`, when given; `direct`: already written there)."""
        shape, n_classes = self.shape, self.n_classes
        if self.kdim:
            values = np.moveaxis(values.reshape(shape[:1] + shape[2:] + (n_classes,)), -1, 1)
        elif len(shape) == 1:
            values = values.reshape(shape)
        if out is not None:
            if not direct:
                copy_result(out, values)
            return out
        if self.kdim or self.result_dtype is not self.dtype:
            values = np.ascontiguousarray(as_result(values, self.result_dtype))
        return values


def _ignore_index(ignore_index: Any) -> int:
    try:
        ignore = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index: expected an integer, got {ignore_index!r}") from None
    if not -(2**63) <= ignore < 2**63:
        raise ValueError(f"ignore_index: expected a 64-bit integer, got {ignore}")
    return ignore


# --------------------------------------------------------------- cross-entropy

def _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                   grad_output, out, n_threads, want_grad):
    fast = _dispatch.kernels.cross_entropy_fast(input, target, weight, ignore_index, reduction,
                                                label_smoothing, grad_output, out, n_threads,
                                                want_grad)
    if fast is not NotImplemented:
        return fast
    call = _ClassRows(input, target, weight, reduction, grad_output, n_threads,
                      probabilities=True)
    smoothing = option_float(label_smoothing, "label_smoothing")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {smoothing}")
    ignore = _ignore_index(ignore_index)
    grad, loss_rows = call.outputs(input, out, (target, weight, grad_output), want_grad)
    value = _dispatch.kernels.cross_entropy(
        call.rows, call.indices, call.probs, call.weight, ignore, smoothing, call.code,
        call.scale, call.scale_rows, loss_rows, grad, call.threads)
    return call.results(value, want_grad)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, n_threads=None):
    r"""Softmax cross-entropy between logits and class targets (``torch.nn.functional.cross_entropy``).

    Shapes: ``input`` logits ``(N, C)``, unbatched ``(C,)`` or ``(N, C, d1, ..., dk)``;
    ``target`` class indices of shape ``(N,)``, ``()`` or ``(N, d1, ..., dk)`` (any
    integer dtype), or class probabilities of input's shape (any float dtype).
    A K-dimensional input gives exactly the result of its ``(N*d1*..*dk, C)`` rows.

    With ``p = softmax(x)`` over the class axis, class weights ``w`` (default 1)
    and smoothing ``eps``, each row's loss is

    - class index ``y``: ``l = (1-eps) * w[y] * (-log p[y]) + (eps/C) * sum_c w[c] * (-log p[c])``,
      and 0 where ``y == ignore_index`` (any integer, even a valid class);
      ``"mean"`` divides the sum by ``sum of w[y]`` over the rows not ignored
      (NaN, with a zero gradient, when that is 0);
    - probabilities ``q``: ``l = -sum_c w[c] * q'[c] * log p[c]`` with
      ``q' = (1-eps) q + eps/C`` (not renormalised, not range-checked, no
      ignore_index); ``"mean"`` divides by the number of rows.

    ``reduction="none"`` returns the per-row losses with the target's (index) shape.
    Raises IndexError for a class index outside ``[0, C)`` that is not ``ignore_index``.
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          None, None, n_threads, False)[0]


def cross_entropy_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, grad_output=None, out=None, *, n_threads=None):
    r""":func:`cross_entropy` and its gradient with respect to the logits, in one pass.

    Returns ``(loss, grad_input)``, ``grad_input`` being the gradient of
    ``sum(grad_output * loss)``: for a row with index target ``y``,
    ``g * ([(1-eps) w[y] + (eps/C) sum(w)] * p - (1-eps) w[y] onehot(y) - (eps/C) w) / D``,
    for probabilities ``g * (sum(w q') * p - w q') / D``, where ``g`` is
    ``grad_output`` (per row for ``"none"``) and ``D`` the ``"mean"`` denominator
    (1 otherwise). Ignored rows get a zero gradient. ``out`` receives the
    gradient (``out=input`` overwrites the logits with it).
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          grad_output, out, n_threads, True)


def cross_entropy_grad_hess(input, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                            sample_weight=None, hessian="exact", out=None, *, n_threads=None):
    r"""Softmax cross-entropy for gradient boosting: ``(loss, grad, hess)`` in one pass.

    Every option of :func:`cross_entropy` applies. With ``p = softmax(x)`` per row,
    ``Q`` the row's target mass (``(1-eps) w[y] + (eps/C) sum(w)`` for an index
    target, ``sum(w q')`` for probabilities) and ``s`` the row's sample weight
    (1 without; ``sample_weight`` has the target's index shape, ``(N,)``):
    ``loss = sum(s l)`` (a scalar), ``grad = s (Q p - target weights)``, as
    :func:`cross_entropy_with_grad` with ``reduction="sum"``, and the diagonal
    hessian ``hess = s Q p (1 - p)``. ``1 - p`` of a row's most likely class is
    taken as the sum of the other classes' ``p``, so a confident row (one logit
    ahead by 40) keeps full relative precision, about ``1e-17``, instead of 0.
    Ignored rows get 0 in all three.

    ``hessian``: ``"exact"`` is that; ``"xgboost"`` is ``multi:softprob``'s
    ``max(2 s Q p (1 - p), 1e-16)`` (floored after the weight); ``"lightgbm"`` is
    ``multiclass``'s ``K/(K-1) s Q p (1 - p)`` (``K`` classes, no floor). ``out``
    is None or a pair ``(grad_out, hess_out)`` of input's shape and dtype.
    """
    convention = hessian_convention(hessian)
    grad_out, hess_out = out_pair(out)
    call = _ClassRows(input, target, weight, "none", None, n_threads, probabilities=True)
    smoothing = option_float(label_smoothing, "label_smoothing")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {smoothing}")
    ignore = _ignore_index(ignore_index)
    if convention == "lightgbm" and call.n_classes < 2:
        raise ValueError(f"hessian: 'lightgbm' needs at least 2 classes (its factor is "
                         f"K/(K-1)), got {call.n_classes}")
    n_rows = call.rows.shape[0]
    if sample_weight is not None and np.shape(sample_weight) != call.index_shape:
        raise ValueError(f"sample_weight: expected the target's shape {call.index_shape} (one "
                         f"weight per sample), got {np.shape(sample_weight)}")
    sw = sample_weights(None if sample_weight is None else np.reshape(sample_weight, -1),
                        n_rows, call.dtype)
    operands = (target, weight, sample_weight)
    grad, loss_rows = call.outputs(input, grad_out, operands, True)
    hess_direct = hess_out is not None and not call.kdim and call.result_dtype is call.dtype
    if hess_out is not None:
        check_out(hess_out, input, call.result_dtype, operands + (grad_out,))
    hess = (hess_out.reshape(call.rows.shape) if hess_direct
            else np.empty(call.rows.shape, call.dtype))
    # The sample weights are the per-row gradient factors of reduction "none"; the
    # convention's factor and floor are applied as the kernel writes the hessian.
    factor, floor = {"exact": (1.0, 0.0), "xgboost": (2.0, XGBOOST_HESSIAN_FLOOR),
                     "lightgbm": (call.n_classes / max(call.n_classes - 1, 1), 0.0)}[convention]
    _dispatch.kernels.cross_entropy(
        call.rows, call.indices, call.probs, call.weight, ignore, smoothing, call.code, 1.0,
        sw, loss_rows, grad, call.threads, hess=hess, hess_factor=factor, hess_floor=floor)
    # sum(s l) accumulated in double, as the kernels' reductions are.
    total = (np.dot(sw.astype(np.float64, copy=False), loss_rows.astype(np.float64, copy=False))
             if sw is not None else np.sum(loss_rows, dtype=np.float64))
    loss = _dispatch.kernels.reduced_sum(total, call.rows)
    if call.result_dtype is not call.dtype:
        loss = as_result(loss, call.result_dtype)
    return (loss, call.in_caller_layout(grad, grad_out, call.direct),
            call.in_caller_layout(hess, hess_out, hess_direct))


# -------------------------------------------------- other losses of class rows

def _class_rows(kind, input, target, weight, ignore_index, reduction, grad_output, out,
                n_threads, want_grad, *, kdim, p=1, margin=1.0):
    call = _ClassRows(input, target, weight, reduction, grad_output, n_threads, kdim=kdim)
    has_ignore = ignore_index is not None
    ignore = _ignore_index(ignore_index) if has_ignore else 0
    grad, loss_rows = call.outputs(input, out, (target, weight, grad_output), want_grad)
    value = _dispatch.kernels.class_rows_loss(
        kind, call.rows, call.indices, call.weight, ignore, has_ignore, call.code, call.scale,
        call.scale_rows, loss_rows, grad, call.threads, p=p, margin=margin)
    return call.results(value, want_grad)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", *,
             n_threads=None):
    r"""Negative log-likelihood of log-probabilities (``torch.nn.functional.nll_loss``).

    ``input`` holds log-probabilities (e.g. a log-softmax) of shape ``(N, C)``,
    ``(C,)`` or ``(N, C, d1, ..., dk)``; ``target`` class indices of shape
    ``(N,)``, ``()`` or ``(N, d1, ..., dk)``, of any integer dtype (torch takes
    only int64 and uint8). Each row's loss is ``l = -w[y] * x[y]``, 0 where
    ``y == ignore_index`` (any integer, even a valid class). ``"mean"`` divides
    the sum by ``sum of w[y]`` over the rows not ignored (NaN, with a zero
    gradient, when that is 0, where torch gives NaN gradients too). Raises
    IndexError for a class index outside ``[0, C)`` that is not ``ignore_index``.
    """
    return _class_rows(ClassRowsLoss.NLL, input, target, weight, ignore_index, reduction,
                       None, None, n_threads, False, kdim=True)[0]


def nll_loss_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                       grad_output=None, out=None, *, n_threads=None):
    r""":func:`nll_loss` and its gradient ``-g * w[y] * onehot(y) / D`` in one pass.

    ``g`` is ``grad_output`` (per row for ``"none"``), ``D`` the ``"mean"``
    denominator (1 otherwise); ignored rows get a zero gradient. Returns
    ``(loss, grad_input)``.
    """
    return _class_rows(ClassRowsLoss.NLL, input, target, weight, ignore_index, reduction,
                       grad_output, out, n_threads, True, kdim=True)


def _margin_options(p: Any, margin: Any) -> tuple[int, float]:
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
        raise TypeError(f"p: expected 1 or 2, got {p!r}")
    if p not in (1, 2):
        raise ValueError(f"p: expected 1 or 2, got {p}")
    return int(p), option_float(margin, "margin")


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean", *,
                      n_threads=None):
    r"""Multi-class hinge loss (``torch.nn.functional.multi_margin_loss``).

    ``input`` scores ``(N, C)`` or ``(C,)``, ``target`` class indices ``(N,)`` or
    ``()`` of any integer dtype. Each row's loss is
    ``l = w[y] * sum_{j != y} max(0, margin - x[y] + x[j])^p / C`` with ``p`` 1 or
    2; ``"mean"`` divides by N (not by the weights, unlike cross-entropy). An
    empty batch gives a NaN mean and a zero sum (torch returns uninitialised
    memory there). Raises IndexError for a class index outside ``[0, C)``.
    """
    p, margin = _margin_options(p, margin)
    return _class_rows(ClassRowsLoss.MULTI_MARGIN, input, target, weight, None, reduction,
                       None, None, n_threads, False, kdim=False, p=p, margin=margin)[0]


def multi_margin_loss_with_grad(input, target, p=1, margin=1.0, weight=None, reduction="mean",
                                grad_output=None, out=None, *, n_threads=None):
    r""":func:`multi_margin_loss` and its gradient in one pass.

    With ``h_j = margin - x[y] + x[j]``, the gradient at ``j != y`` is
    ``g * w[y] * p * h_j^(p-1) / (C D)`` where ``h_j > 0`` and 0 elsewhere (also
    at the kink ``h_j = 0``, as in torch); at ``y`` it is minus the sum of the
    others. ``g`` is ``grad_output``, ``D`` N for ``"mean"`` and 1 otherwise.
    Returns ``(loss, grad_input)``.
    """
    p, margin = _margin_options(p, margin)
    return _class_rows(ClassRowsLoss.MULTI_MARGIN, input, target, weight, None, reduction,
                       grad_output, out, n_threads, True, kdim=False, p=p, margin=margin)
