"""The public API: torch.nn.functional's losses on NumPy arrays, each fused with its gradient.

Every loss comes in two forms with the same arguments:

- ``name(input, target, ...) -> loss``
- ``name_with_grad(input, target, ..., grad_output=None, out=None) -> (loss, grad_input)``
  where ``grad_input`` (input's shape and dtype) is the gradient of
  ``sum(grad_output * loss)`` with respect to ``input``, computed in the same
  pass over the data as the loss. ``grad_output`` defaults to 1; for
  ``reduction="none"`` it may be an array of the loss's shape. ``out=`` (an array
  of input's shape and dtype, C-contiguous; ``input`` itself is allowed) receives
  the gradient without allocating.

Conventions shared by all of them:

- ``input`` is float32 or float64 and results keep its dtype (float16 is
  computed in float32 and cast back); integer, bool and complex inputs raise
  TypeError. Inputs are never modified; non-contiguous inputs are copied first.
- ``reduction`` is ``"none"`` (per-element, or per-sample for cross-entropy,
  losses as an array), ``"mean"`` or ``"sum"`` (a NumPy scalar of input's dtype).
- ``n_threads``: the most OpenMP threads to use (default: OpenMP's own setting,
  so ``OMP_NUM_THREADS`` and threadpoolctl apply). Inputs under 2**20 (about
  1e6) elements always run on the calling thread. Results are bit-identical for
  every thread count.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from . import _dispatch
from ._kernels_baseline import REDUCTION_MEAN, REDUCTION_NONE, REDUCTION_SUM, PointwiseLoss

__all__ = [
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "cross_entropy",
    "cross_entropy_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
]

# The kernels' codes (the same in every SIMD build of them).
_REDUCTIONS = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM}
# Identity checks against these are the cheap first test on every call.
_F16, _F32, _F64, _I64 = (np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int64))
_MSE, _HUBER, _BCE = PointwiseLoss.MSE, PointwiseLoss.HUBER, PointwiseLoss.BCE_WITH_LOGITS
# A weight that repeats along the input's last dimension is passed to the
# kernel as one row when rows are at least this long; shorter rows would make
# the kernel's contiguous segments too short, so such weights are expanded.
_MIN_WEIGHT_ROW = 64


# ------------------------------------------------------------------ validation

# Each loss first offers its call, as given, to the kernels' fast path
# (_fastpath.pxi): when the arrays already have the kernels' layout and the
# options are plain, it runs the kernel at once; otherwise it returns
# NotImplemented and the code below validates, converts and dispatches.


def _reduction_code(reduction: Any) -> int:
    code = _REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if code is None:
        raise ValueError(f"reduction: expected 'none', 'mean' or 'sum', got {reduction!r}")
    return code


def _float_input(value: Any) -> tuple[np.ndarray, np.dtype]:
    """(`input` as an aligned C-contiguous float32/float64 array, the results'
    dtype): float16 is computed in float32 and its results cast back."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    dtype = array.dtype
    if dtype is _F32 or dtype is _F64 or dtype == _F32 or dtype == _F64:
        flags = array.flags
        if flags.c_contiguous and flags.aligned:
            return array, dtype
        return array.astype(dtype, order="C"), dtype
    if dtype == _F16:
        return array.astype(_F32, order="C"), _F16
    if dtype.kind == "f" and dtype.itemsize in (4, 8):  # float32/64 of the other byte order
        native = dtype.newbyteorder("=")
        return array.astype(native, order="C"), native
    raise TypeError(f"input: expected a float32 or float64 array, got dtype {dtype}")


def _float_operand(value: Any, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """A float operand of exactly `shape`, aligned C-contiguous in the compute `dtype`."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype is dtype and array.shape == shape:
        flags = array.flags
        if flags.c_contiguous and flags.aligned:
            return array
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (input's shape), got {array.shape}")
    return array.astype(dtype, order="C")


def _kernel_array(array: np.ndarray) -> np.ndarray:
    """`array` itself when the kernels take it as it is (aligned, C-contiguous), else such a copy."""
    flags = array.flags
    return array if flags.c_contiguous and flags.aligned else np.array(array, order="C")


def _real_array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """A weight: any real (integer or float) array, as `dtype`."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def _threads(n_threads: Any) -> int:
    """A positive thread count (None is passed to the kernels as -1: ask OpenMP)."""
    try:
        count = operator.index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads: expected a positive integer or None, got {n_threads!r}") from None
    if count < 1:
        raise ValueError(f"n_threads: expected a positive integer or None, got {count}")
    # The kernels take a C int; OpenMP never starts more threads than blocks anyway.
    return min(count, 2**31 - 1)


def _grad_scale(grad_output: Any, code: int, loss_shape: tuple, dtype: np.dtype):
    """(scalar, per-element array or None) of the gradient's outer factor."""
    array = grad_output if type(grad_output) is np.ndarray else np.asarray(grad_output)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"grad_output: expected a real number or array, got dtype {array.dtype}")
    if array.ndim == 0:
        return float(array), None
    if code != REDUCTION_NONE:
        raise ValueError(f"grad_output: a reduced loss takes a scalar grad_output, "
                         f"got shape {array.shape}")
    if array.shape != loss_shape:
        raise ValueError(f"grad_output: expected a scalar or the loss's shape {loss_shape}, "
                         f"got {array.shape}")
    return 1.0, _kernel_array(array.astype(dtype, copy=False)).reshape(-1)


def _as_result(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast computed values (an array or a NumPy scalar) to the results' dtype: float16
    results that overflow are inf, as when torch computes in float16, without NumPy's
    cast warning."""
    if array.dtype is dtype:
        return array
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _copy_result(out: np.ndarray, values: np.ndarray) -> None:
    """Write computed values into `out` of the results' dtype, overflowing to inf
    without a warning as _as_result does (float16)."""
    with np.errstate(over="ignore"):
        np.copyto(out, values, casting="unsafe")


def _check_out(out: Any, input: Any, dtype: np.dtype, operands: tuple) -> None:
    """`out` must be a writeable, aligned C-contiguous array of input's shape and dtype
    that overlaps no operand (it may be `input` itself: the kernels allow that)."""
    if type(out) is not np.ndarray:
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype is not dtype and out.dtype != dtype:
        raise TypeError(f"out: expected dtype {dtype} (input's dtype), got {out.dtype}")
    shape = input.shape if type(input) is np.ndarray else np.shape(input)
    if out.shape != shape:
        raise ValueError(f"out: expected shape {shape} (input's shape), got {out.shape}")
    flags = out.flags
    if not (flags.c_contiguous and flags.aligned and flags.writeable):
        raise ValueError("out: expected a writeable, aligned C-contiguous array")
    for operand in operands:
        if operand is not None and np.may_share_memory(out, operand):
            raise ValueError("out: must not overlap target, weights or grad_output")
    if out is not input and np.may_share_memory(out, input) and not _same_memory(out, input):
        raise ValueError("out: may be input itself (in place), but must not partially overlap it")


def _same_memory(a: np.ndarray, b: Any) -> bool:
    """True when b is an array viewing exactly a's memory in a's layout (e.g. b[...])."""
    return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
            and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


# --------------------------------------------------------------- cross-entropy

def _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                   grad_output, out, n_threads, want_grad):
    fast = _dispatch.kernels.cross_entropy_fast(input, target, weight, ignore_index, reduction,
                                                label_smoothing, grad_output, out, n_threads,
                                                want_grad)
    if fast is not NotImplemented:
        return fast
    logits, result_dtype = _float_input(input)
    code = _reduction_code(reduction)
    shape = logits.shape
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("input: expected logits of shape (C,), (N, C) or (N, C, d1, ..., dk), "
                         "got a 0-d array")
    n_classes = shape[0] if ndim == 1 else shape[1]
    if n_classes == 0:
        raise ValueError(f"input: expected at least one class, got shape {shape}")
    dtype = logits.dtype
    try:
        smoothing = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing: expected a float, got {label_smoothing!r}") from None
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {smoothing}")
    try:
        ignore = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index: expected an integer, got {ignore_index!r}") from None
    if not -(2**63) <= ignore < 2**63:
        raise ValueError(f"ignore_index: expected a 64-bit integer, got {ignore}")

    index_shape = shape[:1] + shape[2:] if ndim > 1 else ()
    tgt = target if type(target) is np.ndarray else np.asarray(target)
    indices = probs = None
    if tgt.dtype.kind in "iu":
        if tgt.shape != index_shape:
            raise ValueError(f"target: expected class indices of shape {index_shape} for input "
                             f"of shape {shape}, got shape {tgt.shape}")
        if tgt.dtype == np.uint64 and tgt.size and tgt.max() > np.iinfo(np.int64).max:
            raise IndexError(f"target: class index {tgt.max()} is out of range for "
                             f"{n_classes} classes")
        indices = _kernel_array(tgt.reshape(-1).astype(_I64, copy=False))
    elif tgt.dtype.kind == "f":
        if tgt.shape != shape:
            if tgt.shape == index_shape:
                raise TypeError(f"target: class indices must be integers, got dtype {tgt.dtype} "
                                f"(probability targets must have input's shape {shape})")
            raise ValueError(f"target: probability targets must have input's shape "
                             f"{shape}, got {tgt.shape}")
        probs = tgt
    else:
        raise TypeError(f"target: expected integer class indices or floating-point class "
                        f"probabilities, got dtype {tgt.dtype}")

    class_weight = None
    if weight is not None:
        class_weight = _real_array(weight, "weight", dtype)
        if class_weight.shape != (n_classes,):
            raise ValueError(f"weight: expected shape ({n_classes},) (one weight per class), "
                             f"got {class_weight.shape}")
        class_weight = _kernel_array(class_weight)
    scale, scale_rows = (1.0, None) if grad_output is None else _grad_scale(
        grad_output, code, index_shape, dtype)
    threads = -1 if n_threads is None else _threads(n_threads)

    # Rows of C logits: (C,) -> (1, C); (N, C, d1..dk) -> (N*d1*..*dk, C).
    kdim = ndim > 2
    if kdim:
        rows = np.ascontiguousarray(np.moveaxis(logits, 1, -1)).reshape(-1, n_classes)
        if probs is not None:
            probs = np.moveaxis(probs, 1, -1)
    else:
        rows = logits if ndim == 2 else logits.reshape(1, n_classes)
    if probs is not None:
        if probs.ndim != 2 or probs.dtype is not dtype:
            probs = probs.reshape(-1, n_classes).astype(dtype, copy=False)
        probs = _kernel_array(probs)

    grad = None
    if want_grad:
        if out is not None:
            _check_out(out, input, result_dtype, (target, weight, grad_output))
        # The gradient goes straight into `out` when it has the rows' layout and dtype.
        direct = out is not None and not kdim and result_dtype is dtype
        grad = out.reshape(rows.shape) if direct else np.empty(rows.shape, dtype)
    loss_rows = np.empty(rows.shape[0], dtype) if code == REDUCTION_NONE else None

    value = _dispatch.kernels.cross_entropy(
        rows, indices, probs, class_weight, ignore, smoothing, code, scale, scale_rows,
        loss_rows, grad, threads)

    if code == REDUCTION_NONE:
        loss = _as_result(loss_rows.reshape(index_shape), result_dtype)
    else:
        loss = value if result_dtype is dtype else _as_result(value, result_dtype)
    if not want_grad:
        return loss, None
    if kdim:
        grad = np.moveaxis(grad.reshape(shape[:1] + shape[2:] + (n_classes,)), -1, 1)
    elif ndim == 1:
        grad = grad.reshape(shape)
    if out is not None:
        if not direct:
            _copy_result(out, grad)
        return loss, out
    if kdim or result_dtype is not dtype:
        grad = np.ascontiguousarray(_as_result(grad, result_dtype))
    return loss, grad


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


# ------------------------------------------------------------ pointwise losses

def _elementwise_weight(value: Any, name: str, logits: np.ndarray):
    """A weight broadcast against `logits` as the kernel takes it: (flat array, period).

    A weight constant over all but the last axis (a scalar, ``(C,)``, ``(1, C)``, ...)
    is one row of that axis repeated; anything else is expanded to input's shape.
    """
    array = _real_array(value, name, logits.dtype)
    try:
        shape = np.broadcast_shapes(array.shape, logits.shape)
    except ValueError:
        shape = None
    if shape != logits.shape:
        raise ValueError(f"{name}: shape {array.shape} does not broadcast to input's shape "
                         f"{logits.shape}")
    row = logits.shape[-1] if logits.ndim else 1
    leading = array.shape[:-1] if array.ndim else ()
    if all(n == 1 for n in leading) and row >= _MIN_WEIGHT_ROW:
        return _kernel_array(np.broadcast_to(array.reshape(-1), (row,))), row
    return _kernel_array(np.broadcast_to(array, logits.shape)).reshape(-1), logits.size


def _pointwise(kind, input, target, weight, pos_weight, delta, reduction, grad_output, out,
               n_threads, want_grad):
    fast = _dispatch.kernels.pointwise_fast(kind, input, target, weight, pos_weight, delta,
                                            reduction, grad_output, out, n_threads, want_grad)
    if fast is not NotImplemented:
        return fast
    if kind is _HUBER:
        delta = _huber_delta(delta)
    x, result_dtype = _float_input(input)
    dtype = x.dtype
    code = _reduction_code(reduction)
    y = _float_operand(target, "target", dtype, x.shape)
    w = pw = None
    w_period = pw_period = 0
    if weight is not None:
        w, w_period = _elementwise_weight(weight, "weight", x)
    if pos_weight is not None:
        pw, pw_period = _elementwise_weight(pos_weight, "pos_weight", x)
    scale, scale_elems = (1.0, None) if grad_output is None else _grad_scale(
        grad_output, code, x.shape, dtype)
    threads = -1 if n_threads is None else _threads(n_threads)

    flat = x.ndim == 1
    grad = None
    if want_grad:
        if out is not None:
            _check_out(out, input, result_dtype, (target, weight, pos_weight, grad_output))
        # The gradient goes straight into `out` when it has input's dtype.
        direct = out is not None and result_dtype is dtype
        grad = out if direct else np.empty(x.shape, dtype)
    loss_elems = np.empty(x.size, dtype) if code == REDUCTION_NONE else None

    value = _dispatch.kernels.pointwise_loss(
        kind, x if flat else x.reshape(-1), y if flat else y.reshape(-1), w, w_period,
        pw, pw_period, delta, code, scale, scale_elems, loss_elems,
        None if grad is None else grad if flat else grad.reshape(-1), threads)

    if code == REDUCTION_NONE:
        loss = _as_result(loss_elems.reshape(x.shape), result_dtype)
    else:
        loss = value if result_dtype is dtype else _as_result(value, result_dtype)
    if not want_grad:
        return loss, None
    if out is not None:
        if grad is not out:
            _copy_result(out, grad)
        return loss, out
    return loss, grad if result_dtype is dtype else _as_result(grad, result_dtype)


def _huber_delta(delta: Any) -> float:
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"delta: expected a positive float, got {delta!r}") from None
    if not value > 0:
        raise ValueError(f"delta: expected a positive value, got {value}")
    return value


def mse_loss(input, target, reduction="mean", *, n_threads=None):
    r"""Mean squared error ``l = (x - y)^2`` per element (``torch.nn.functional.mse_loss``).

    ``target`` must have input's shape (broadcasting is refused: it is almost
    always a bug). ``"mean"`` averages over all elements.
    """
    return _pointwise(_MSE, input, target, None, None, 1.0, reduction, None, None,
                      n_threads, False)[0]


def mse_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None, *,
                       n_threads=None):
    r""":func:`mse_loss` and its gradient ``g * 2 (x - y) / D`` in one pass.

    ``g`` is ``grad_output`` (per element for ``"none"``), ``D`` the element count
    for ``"mean"`` and 1 otherwise. Returns ``(loss, grad_input)``.
    """
    return _pointwise(_MSE, input, target, None, None, 1.0, reduction, grad_output, out,
                      n_threads, True)


def huber_loss(input, target, reduction="mean", delta=1.0, *, n_threads=None):
    r"""Huber loss (``torch.nn.functional.huber_loss``) with ``r = x - y``.

    ``l = 0.5 r^2`` where ``|r| <= delta``, else ``delta * (|r| - 0.5 delta)``;
    ``delta`` must be positive. ``target`` must have input's shape.
    """
    return _pointwise(_HUBER, input, target, None, None, delta, reduction,
                      None, None, n_threads, False)[0]


def huber_loss_with_grad(input, target, reduction="mean", delta=1.0, grad_output=None,
                         out=None, *, n_threads=None):
    r""":func:`huber_loss` and its gradient ``g * clip(x - y, -delta, delta) / D`` in one pass.

    At ``|r| == delta`` exactly the gradient is ``delta * sign(r)``. ``g`` is
    ``grad_output``, ``D`` the element count for ``"mean"`` and 1 otherwise.
    """
    return _pointwise(_HUBER, input, target, None, None, delta, reduction,
                      grad_output, out, n_threads, True)


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
    return _pointwise(_BCE, input, target, weight, pos_weight, 1.0, reduction, None, None,
                      n_threads, False)[0]


def binary_cross_entropy_with_logits_with_grad(input, target, weight=None, reduction="mean",
                                               pos_weight=None, grad_output=None, out=None, *,
                                               n_threads=None):
    r""":func:`binary_cross_entropy_with_logits` and its gradient in one pass.

    ``grad = g * w * ((pw y + 1 - y) sigmoid(x) - pw y) / D``, computed as
    ``g * w * ((1 - y) sigmoid(x) - pw y sigmoid(-x)) / D`` to keep full relative
    accuracy when it is small; ``g`` is ``grad_output``, ``D`` the element count
    for ``"mean"`` and 1 otherwise. Returns ``(loss, grad_input)``.
    """
    return _pointwise(_BCE, input, target, weight, pos_weight, 1.0, reduction, grad_output,
                      out, n_threads, True)
