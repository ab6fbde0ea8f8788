"""Metric-learning losses (their kernels: _pairs.pxi): rows of two or three
embedding arrays (contrastive_loss, cosine_embedding_loss, triplet_margin_loss),
two inputs element by element (margin_ranking_loss, hinge_embedding_loss), and
rows against a table of class centres (center_loss, center_loss_update).

A loss with several differentiable arrays returns one gradient per array after
the loss, in argument order, and takes ``out=`` as None or a tuple of one array
(or None) per gradient. The row losses' partner arrays must have the first one's
shape. The element losses broadcast their operands as torch does (the loss has
the broadcast shape, each gradient is summed back to its array's shape);
margin_ranking_loss, as torch's, wants operands of one number of dimensions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _dispatch
from ._kernels_baseline import REDUCTION_NONE, PairsLoss
from ._validation import (
    I64, as_result, check_out, copy_result, float_input, float_operand, grad_scale,
    kernel_array, option_float, reduction_code, thread_count,
)

__all__ = [
    "center_loss", "center_loss_update", "center_loss_with_grad", "contrastive_loss",
    "contrastive_loss_with_grad", "cosine_embedding_loss", "cosine_embedding_loss_with_grad",
    "hinge_embedding_loss", "hinge_embedding_loss_with_grad", "margin_ranking_loss",
    "margin_ranking_loss_with_grad", "triplet_margin_loss", "triplet_margin_loss_with_grad",
]

_K = PairsLoss
_NAMES = ("input1", "input2", "input3")


def _out_tuple(out: Any, n: int) -> tuple:
    """`out` as n arrays or Nones: None, or a tuple/list of n entries."""
    if out is None:
        return (None,) * n
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise TypeError(f"out: expected None or a tuple of {n} arrays (or None), got {out!r}")
    return tuple(out)


def _threads(n_threads: Any) -> int:
    return -1 if n_threads is None else thread_count(n_threads)


def _broadcast(arrays: tuple, names: tuple, target: Any, same_ndim: bool):
    """torch's broadcasting of an element loss's operands: (each array's own
    shape, the arrays and target broadcast to their common shape). Operands of one
    shape are returned as they are (no copy); `same_ndim`: margin_ranking_loss's
    rule that they have one number of dimensions."""
    operands = [a if type(a) is np.ndarray else np.asarray(a) for a in (*arrays, target)]
    shapes = [a.shape for a in operands]
    if all(shape == shapes[0] for shape in shapes):
        return shapes[:-1], arrays, target
    names = (*names[:len(arrays)], "target")
    listing = ", ".join(f"{name} {shape}" for name, shape in zip(names, shapes))
    if same_ndim and len({len(shape) for shape in shapes}) > 1:
        raise ValueError(f"{', '.join(names)}: expected one number of dimensions (as torch), "
                         f"got {listing}")
    try:
        common = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{', '.join(names)}: shapes that broadcast together (as torch), "
                         f"got {listing}") from None
    broadcast = [np.broadcast_to(a, common) for a in operands]
    return shapes[:-1], tuple(broadcast[:-1]), broadcast[-1]


def _sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of an operand of `shape` broadcast to grad's shape: grad
    summed (in double) over the axes it was broadcast along, as torch's sum_to."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, dtype=np.float64).reshape(shape).astype(grad.dtype)


def _loss_result(value, loss_rows, loss_shape, dtype, result_dtype):
    """The call's loss: the rows' losses for "none" (`loss_rows` not None), else the
    kernel's reduced `value`, in the results' dtype."""
    if loss_rows is not None:
        return as_result(loss_rows.reshape(loss_shape), result_dtype)
    return value if result_dtype is dtype else as_result(value, result_dtype)


def _pairs(kind, arrays, names, target, reduction, grad_output, out, n_threads, want_grad, *,
           rows, labels=False, **options):
    """(loss, gradient per array...) of one call of a pairs kernel.

    `arrays` are the differentiable arrays (the first sets shape and dtype),
    `target` the float target or None (triplet); integer targets are taken
    too where they are only labels compared with 1 and -1 (`labels`: cosine and
    hinge embedding, as torch takes them). Row losses (`rows`) take
    ``(N, D)`` or one pair ``(D,)`` with a target of shape ``(N,)`` or ``()``;
    element losses any shapes that broadcast together (see _broadcast).
    """
    own_shapes, originals = None, arrays
    if not rows:
        own_shapes, arrays, target = _broadcast(arrays, names, target,
                                                kind == _K.MARGIN_RANKING)
    first, result_dtype = float_input(arrays[0])
    dtype, shape = first.dtype, first.shape
    code = reduction_code(reduction)
    if rows:
        if first.ndim not in (1, 2):
            raise ValueError(f"{names[0]}: expected rows (N, D) or one row (D,), got shape "
                             f"{shape}")
        loss_shape = shape[:-1]
    else:
        loss_shape = shape
    if own_shapes is None:
        own_shapes = [shape] * len(arrays)
    operands = [first] + [float_operand(a, name, dtype, shape)
                          for a, name in zip(arrays[1:], names[1:])]
    y = None
    if target is not None:
        tgt = target if type(target) is np.ndarray else np.asarray(target)
        if not (tgt.dtype.kind == "f" or (labels and tgt.dtype.kind in "iu")):
            expected = "a floating-point or integer" if labels else "a floating-point"
            raise TypeError(f"target: expected {expected} array, got dtype {tgt.dtype}")
        if tgt.shape != loss_shape:
            raise ValueError(f"target: expected shape {loss_shape} for {names[0]} of "
                             f"shape {shape}, got {tgt.shape}")
        y = kernel_array(tgt.astype(dtype, order="C", copy=False))
    scale, scale_rows = (1.0, None) if grad_output is None else grad_scale(
        grad_output, code, loss_shape, dtype)
    threads = _threads(n_threads)

    outs = _out_tuple(out, len(arrays)) if want_grad else (None,) * len(arrays)
    grads = []
    for i, (array, buffer) in enumerate(zip(originals, outs)):
        if not want_grad:
            grads.append(None)
            continue
        if buffer is not None:
            others = tuple(a for j, a in enumerate(originals) if j != i) + (target, grad_output)
            # (a broadcast operand's out has its own shape, the gradient's)
            check_out(buffer, array, result_dtype, others + tuple(
                b for j, b in enumerate(outs) if j != i))
            # out may not be its own array either: the kernels read every array while writing.
            if np.may_share_memory(buffer, array):
                raise ValueError(f"out: gradient {i} must not overlap {names[i]}")
        grads.append(buffer if buffer is not None and result_dtype is dtype
                     and own_shapes[i] == shape else np.empty(shape, dtype))
    loss_rows = np.empty(math.prod(loss_shape), dtype) if code == REDUCTION_NONE else None

    # The kernels' layout: (N, D) rows, or (n,) elements (explicit N: D may be 0).
    kernel_shape = (math.prod(loss_shape), shape[-1]) if rows else (math.prod(shape),)

    def flat(a):
        return None if a is None else a.reshape(kernel_shape)

    padded = operands + [None] * (3 - len(operands))
    padded_grads = grads + [None] * (3 - len(grads))
    value = _dispatch.kernels.pairs_loss(
        kind, flat(padded[0]), flat(padded[1]), flat(padded[2]),
        None if y is None else y.reshape(-1), code, scale, scale_rows, loss_rows,
        *(flat(g) for g in padded_grads), threads, **options)

    loss = _loss_result(value, loss_rows, loss_shape, dtype, result_dtype)
    if not want_grad:
        return (loss,)
    results = []
    for grad, buffer, own in zip(grads, outs, own_shapes):
        if own != shape:
            grad = _sum_to(grad, own)
        if buffer is not None:
            if grad is not buffer:
                copy_result(buffer, grad)
            results.append(buffer)
        else:
            results.append(grad if result_dtype is dtype else as_result(grad, result_dtype))
    return (loss, *results)


# ------------------------------------------------------------------ contrastive

def _contrastive_margin(margin: Any) -> float:
    return option_float(margin, "margin", "nonnegative")


def contrastive_loss(input1, input2, target, margin=1.0, reduction="mean", *, n_threads=None):
    r"""Contrastive loss of pairs of embeddings (Hadsell, Chopra and LeCun, 2006).

    ``l = 0.5 * [y d^2 + (1 - y) max(0, margin - d)^2]`` per row, where
    ``d = ||x1 - x2 + eps||_2`` with ``eps = 1e-6`` (torch's ``pairwise_distance``,
    so the gradient is finite at ``d = 0``) and ``target`` ``y`` is 1 for a similar
    pair, 0 for a dissimilar one (floats; other values are used as they are).
    ``input1``, ``input2``: rows ``(N, D)`` or one pair ``(D,)``; ``target``:
    ``(N,)`` or ``()``. ``"mean"`` divides by N. A negative ``margin`` is a ValueError.
    """
    return _pairs(_K.CONTRASTIVE, (input1, input2), _NAMES, target, reduction, None, None,
                  n_threads, False, rows=True, margin=_contrastive_margin(margin), eps=1e-6)[0]


def contrastive_loss_with_grad(input1, input2, target, margin=1.0, reduction="mean",
                               grad_output=None, out=None, *, n_threads=None):
    r""":func:`contrastive_loss` and its gradients in one pass:
    ``(loss, grad_input1, grad_input2)``.

    With ``u = x1 - x2 + eps`` and ``h = max(0, margin - d)``,
    ``grad_input1 = g (y d - (1 - y) h) u / d / D_mean`` and ``grad_input2 = -grad_input1``
    (0 at ``d = 0``). The loss is continuous at ``d = margin`` and its gradient
    there is 0 from both sides. ``out`` is None or a pair of arrays (or None).
    """
    return _pairs(_K.CONTRASTIVE, (input1, input2), _NAMES, target, reduction, grad_output, out,
                  n_threads, True, rows=True, margin=_contrastive_margin(margin), eps=1e-6)


# -------------------------------------------------------------- cosine embedding

def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean", *,
                          n_threads=None):
    r"""Cosine embedding loss (``torch.nn.functional.cosine_embedding_loss``).

    ``cos = x1.x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))`` per row;
    ``l = 1 - cos`` where ``y == 1``, ``max(0, cos - margin)`` where ``y == -1``,
    and 0 for any other target value (as torch). ``input1``, ``input2``: ``(N, D)``
    or ``(D,)``; ``target`` ``(N,)`` or ``()``, floats or integers. ``"mean"`` divides by N.
    """
    return _pairs(_K.COSINE_EMBEDDING, (input1, input2), _NAMES, target, reduction, None, None,
                  n_threads, False, rows=True, labels=True,
                  margin=option_float(margin, "margin"))[0]


def cosine_embedding_loss_with_grad(input1, input2, target, margin=0.0, reduction="mean",
                                    grad_output=None, out=None, *, n_threads=None):
    r""":func:`cosine_embedding_loss` and its gradients: ``(loss, grad_input1, grad_input2)``.

    ``d cos / d x1 = x2 / den - cos x1 / (|x1|^2 + 1e-12)`` (and symmetrically for
    ``x2``), times ``-1`` where ``y == 1`` and ``[cos - margin >= 0]`` where
    ``y == -1`` (torch's ``clamp_min`` passes the gradient exactly at the margin).
    """
    return _pairs(_K.COSINE_EMBEDDING, (input1, input2), _NAMES, target, reduction, grad_output,
                  out, n_threads, True, rows=True, labels=True,
                  margin=option_float(margin, "margin"))


# ------------------------------------------------------------------ triplet margin

_TRIPLET_NAMES = ("anchor", "positive", "negative")


def _triplet_options(margin: Any, p: Any, eps: Any, swap: Any) -> dict:
    margin = option_float(margin, "margin")
    if not margin > 0:
        raise ValueError(f"margin: expected a positive value, got {margin}")
    p = option_float(p, "p")
    if not p > 0:
        raise ValueError(f"p: expected a positive value (inf included), got {p}")
    return {"margin": margin, "p": p, "eps": option_float(eps, "eps"), "swap": bool(swap)}


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        reduction="mean", *, n_threads=None):
    r"""Triplet margin loss (``torch.nn.functional.triplet_margin_loss``).

    ``l = max(0, margin + d(a, pos) - d(a, neg))`` per row, with the pairwise
    distance ``d(x, y) = ||x - y + eps||_p`` (``p = inf``: ``max_j |x_j - y_j + eps|``,
    as torch's ``pairwise_distance``); with ``swap``, ``d(a, neg)`` becomes
    ``min(d(a, neg), d(pos, neg))``. Rows ``(N, D)`` or one triplet ``(D,)``.
    ``margin <= 0`` is a ValueError (as torch); so are ``p <= 0`` (unlike torch),
    and inputs of more than 2 dimensions.
    """
    return _pairs(_K.TRIPLET_MARGIN, (anchor, positive, negative), _TRIPLET_NAMES, None,
                  reduction, None, None, n_threads, False, rows=True,
                  **_triplet_options(margin, p, eps, swap))[0]


def triplet_margin_loss_with_grad(anchor, positive, negative, margin=1.0, p=2, eps=1e-6,
                                  swap=False, reduction="mean", grad_output=None, out=None, *,
                                  n_threads=None):
    r""":func:`triplet_margin_loss` and its three gradients:
    ``(loss, grad_anchor, grad_positive, grad_negative)``.

    Where ``margin + d_pos - d_neg >= 0`` (at 0 too, as torch's ``clamp_min``),
    ``grad_anchor = g (n_ap - n_an)``, ``grad_positive = -g n_ap``,
    ``grad_negative = g n_an``, where ``n_xy = d ||u||_p / d u`` at ``u = x - y + eps``
    (``sign(u) |u|^(p-1) / ||u||^(p-1)``, 0 at ``||u|| = 0``; for ``p = inf``,
    ``sign(u_j)`` shared evenly by the ``j`` where ``|u_j| = ||u||``, as torch's
    backward of the inf-norm); with ``swap`` the
    gradient of the smaller distance is taken, half of each at a tie (torch's ``min``).
    ``out`` is None or a triple of arrays (or None).
    """
    return _pairs(_K.TRIPLET_MARGIN, (anchor, positive, negative), _TRIPLET_NAMES, None,
                  reduction, grad_output, out, n_threads, True, rows=True,
                  **_triplet_options(margin, p, eps, swap))


# --------------------------------------------------------------- element losses

def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean", *,
                        n_threads=None):
    r"""Margin ranking loss (``torch.nn.functional.margin_ranking_loss``).

    ``l = max(0, -y (x1 - x2) + margin)`` element by element; ``input1``,
    ``input2`` and ``target`` (floats, usually in {-1, 1}) broadcast together as
    in torch, with one number of dimensions (as torch asks), and the loss has
    their broadcast shape. ``"mean"`` divides by its number of elements.
    """
    return _pairs(_K.MARGIN_RANKING, (input1, input2), _NAMES, target, reduction, None, None,
                  n_threads, False, rows=False, margin=option_float(margin, "margin"))[0]


def margin_ranking_loss_with_grad(input1, input2, target, margin=0.0, reduction="mean",
                                  grad_output=None, out=None, *, n_threads=None):
    r""":func:`margin_ranking_loss` and its gradients: ``(loss, grad_input1, grad_input2)``.

    ``grad_input1 = -g y [z >= 0]``, ``grad_input2 = -grad_input1`` with
    ``z = -y (x1 - x2) + margin``: exactly at the margin (z = 0) the loss is 0
    and the gradient passes, as torch's ``clamp_min`` gives. A broadcast input's
    gradient is summed back to its own shape (as autograd does).
    """
    return _pairs(_K.MARGIN_RANKING, (input1, input2), _NAMES, target, reduction, grad_output,
                  out, n_threads, True, rows=False, margin=option_float(margin, "margin"))


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean", *, n_threads=None):
    r"""Hinge embedding loss (``torch.nn.functional.hinge_embedding_loss``).

    ``l = [y != 1] max(0, margin - x) + [y != -1] x`` element by element, so
    ``x`` for ``y = 1`` and ``max(0, margin - x)`` for ``y = -1`` (a target outside
    {-1, 1} gets both terms, as in torch). ``input`` and ``target`` (floats or
    integers) broadcast together as in torch; the loss has their broadcast shape.
    """
    return _pairs(_K.HINGE_EMBEDDING, (input,), ("input",), target, reduction, None, None,
                  n_threads, False, rows=False, labels=True,
                  margin=option_float(margin, "margin"))[0]


def hinge_embedding_loss_with_grad(input, target, margin=1.0, reduction="mean",
                                   grad_output=None, out=None, *, n_threads=None):
    r""":func:`hinge_embedding_loss` and its gradient ``g ([y != -1] - [y != 1][margin - x >= 0])``:
    ``(loss, grad_input)``. At ``x = margin`` with ``y = -1`` the gradient is ``-g``
    (torch's ``clamp_min``), summed back to input's shape where input was broadcast.
    ``out`` is an array (one gradient, as for the other single-gradient losses) or None.
    """
    return _pairs(_K.HINGE_EMBEDDING, (input,), ("input",), target, reduction, grad_output,
                  None if out is None else (out,), n_threads, True, rows=False, labels=True,
                  margin=option_float(margin, "margin"))


# --------------------------------------------------------------------- centres

def _class_target(target: Any, shape: tuple) -> np.ndarray:
    tgt = target if type(target) is np.ndarray else np.asarray(target)
    if tgt.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {tgt.dtype}")
    if tgt.shape != shape:
        raise ValueError(f"target: expected shape {shape}, got {tgt.shape}")
    if tgt.dtype == np.uint64 and tgt.size and tgt.max() > np.iinfo(np.int64).max:
        raise IndexError(f"target: class index {tgt.max()} is out of range")
    return kernel_array(tgt.reshape(-1).astype(I64, copy=False))


def _center_operands(features, target, centers, dtype):
    """(features (N, D), int64 target (N,), centers (C, D)) as the kernels take them."""
    rows_shape = features.shape
    if features.ndim not in (1, 2):
        raise ValueError(f"features: expected rows (N, D) or one row (D,), got shape "
                         f"{rows_shape}")
    table = centers if type(centers) is np.ndarray else np.asarray(centers)
    if table.dtype.kind != "f":
        raise TypeError(f"centers: expected a floating-point array, got dtype {table.dtype}")
    if table.ndim != 2 or table.shape[1] != rows_shape[-1]:
        raise ValueError(f"centers: expected shape (C, {rows_shape[-1]}) (features' D), got "
                         f"{table.shape}")
    indices = _class_target(target, rows_shape[:-1])
    table = table.astype(dtype, order="C", copy=False)
    rows = features.reshape(math.prod(rows_shape[:-1]), rows_shape[-1])  # D may be 0
    return rows, indices, kernel_array(table)


def _center(features, target, centers, reduction, grad_output, out, n_threads, want_grad):
    x, result_dtype = float_input(features)
    dtype = x.dtype
    code = reduction_code(reduction)
    rows, indices, table = _center_operands(x, target, centers, dtype)
    loss_shape = x.shape[:-1]
    scale, scale_rows = (1.0, None) if grad_output is None else grad_scale(
        grad_output, code, loss_shape, dtype)
    threads = _threads(n_threads)
    out_features, out_centers = _out_tuple(out, 2) if want_grad else (None, None)
    grad = grad_centers = None
    if want_grad:
        for buffer, like, other in ((out_features, features, out_centers),
                                    (out_centers, centers, out_features)):
            if buffer is not None:
                check_out(buffer, like, result_dtype, (features, target, centers, grad_output,
                                                       other))
        grad = (out_features if out_features is not None and result_dtype is dtype
                else np.empty(x.shape, dtype))
        grad_centers = (out_centers if out_centers is not None and result_dtype is dtype
                        else np.empty(table.shape, dtype))
    loss_rows = np.empty(rows.shape[0], dtype) if code == REDUCTION_NONE else None
    value = _dispatch.kernels.center_loss(
        rows, indices, table, code, scale, scale_rows, loss_rows,
        None if grad is None else grad.reshape(rows.shape), grad_centers, threads)
    loss = _loss_result(value, loss_rows, loss_shape, dtype, result_dtype)
    if not want_grad:
        return (loss,)
    results = []
    for computed, buffer in ((grad, out_features), (grad_centers, out_centers)):
        if buffer is not None:
            if computed is not buffer:
                copy_result(buffer, computed)
            results.append(buffer)
        else:
            results.append(computed if result_dtype is dtype
                           else as_result(computed, result_dtype))
    return (loss, *results)


def center_loss(features, target, centers, reduction="mean", *, n_threads=None):
    r"""Center loss (Wen et al., ECCV 2016): ``l_i = 0.5 ||x_i - c_{y_i}||^2``.

    ``features`` rows ``(N, D)`` (or one row ``(D,)`` with a 0-d target),
    ``target`` integer class indices ``(N,)`` into ``centers`` ``(C, D)``.
    ``"mean"`` divides by N. A class index outside ``[0, C)`` is an IndexError.
    """
    return _center(features, target, centers, reduction, None, None, n_threads, False)[0]


def center_loss_with_grad(features, target, centers, reduction="mean", grad_output=None,
                          out=None, *, n_threads=None):
    r""":func:`center_loss` and its gradients: ``(loss, grad_features, grad_centers)``.

    ``grad_features[i] = g_i (x_i - c_{y_i})`` and
    ``grad_centers[j] = -sum_{i: y_i = j} g_i (x_i - c_j)`` (0 for a class without
    rows), ``g_i`` being ``grad_output`` (per row for ``"none"``) over the
    ``"mean"`` denominator N. The centre gradient is summed class by class in row
    order, so it has the same bits for every ``n_threads``. ``out`` is None or a
    pair of arrays (or None) of features' and centers' shapes.
    """
    return _center(features, target, centers, reduction, grad_output, out, n_threads, True)


def center_loss_update(centers, features, target, alpha=0.5, *, n_threads=None):
    r"""The paper's centre update, in place:
    ``c_j -= alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``.

    ``n_j`` is the number of rows of class ``j``; classes without rows are left
    as they are. ``centers`` ``(C, D)`` must be a writeable, C-contiguous float32
    or float64 array (it is updated, so it is never copied); ``features`` ``(N, D)``
    is computed in its dtype. Returns ``centers``.
    """
    if type(centers) is not np.ndarray:
        raise TypeError(f"centers: expected a numpy.ndarray, got {type(centers).__name__}")
    if centers.dtype not in (np.float32, np.float64):
        raise TypeError(f"centers: expected a float32 or float64 array, got dtype "
                        f"{centers.dtype}")
    flags = centers.flags
    if not (flags.c_contiguous and flags.aligned and flags.writeable):
        raise ValueError("centers: expected a writeable, aligned C-contiguous array (it is "
                         "updated in place)")
    x = features if type(features) is np.ndarray else np.asarray(features)
    if x.dtype.kind != "f":
        raise TypeError(f"features: expected a floating-point array, got dtype {x.dtype}")
    x = kernel_array(x.astype(centers.dtype, order="C", copy=False))
    rows, indices, _ = _center_operands(x, target, centers, centers.dtype)
    alpha = option_float(alpha, "alpha")
    if np.may_share_memory(centers, features):
        raise ValueError("centers: must not overlap features")
    _dispatch.kernels.center_update(centers, rows, indices, alpha, _threads(n_threads))
    return centers
