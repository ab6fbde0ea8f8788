"""Pure-NumPy reference implementations of the fastloss losses.

This module is the *executable specification* of fastloss: every loss is written out in the most
direct, readable way, with ``torch.nn.functional`` semantics, and the compiled kernels are tested
against it.  It is slow and that is fine; obviously-correct is what matters.

Conventions shared by every function here:

* Inputs are float32 or float64 NumPy arrays (other float dtypes are computed the same way and
  cast back).  Everything is computed internally in float64 and cast to ``input.dtype`` at the
  end.  Inputs are never modified.
* The reference assumes validated inputs (dtypes, shapes, class indices in range); the public API
  layer (``fastloss.functional``) does the validation.  Only an unknown ``reduction`` raises
  (``ValueError``) here.
* ``reduction`` is ``"none"`` (per-element / per-sample losses, an array of input's dtype),
  ``"sum"`` or ``"mean"`` (a NumPy scalar of input's dtype, e.g. ``np.float32(1.5)``).
* ``<name>_with_grad(..., grad_output=None)`` returns ``(loss, grad_input)`` where ``grad_input``
  has input's shape and dtype and is the gradient of ``sum(grad_output * loss)`` with respect to
  ``input``.  ``grad_output=None`` means 1; for ``"none"`` it may be a scalar or an array of the
  loss's shape, for ``"sum"``/``"mean"`` it is a scalar.  Gradients are computed analytically, in
  closed form, next to the loss formula they differentiate.  A loss with several differentiable
  arrays returns one gradient per array, in argument order (``gaussian_nll_loss_with_grad``:
  ``(loss, grad_input, grad_var)``); a gradient always has its array's shape and input's dtype.
* Where a loss deliberately differs from torch (a finite limit where torch gives NaN or inf, a
  NaN mean where torch returns garbage) its docstring says so.
* ``"mean"`` with a zero denominator (empty input, all targets ignored, class weights of the kept
  targets summing to 0) gives NaN and an all-zero gradient; ``"sum"`` of nothing is 0.

This module is standalone: it imports only NumPy and the standard library.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "cross_entropy",
    "cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "l1_loss",
    "l1_loss_with_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "multi_margin_loss",
    "multi_margin_loss_with_grad",
    "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_with_grad",
    "soft_margin_loss",
    "soft_margin_loss_with_grad",
    "hinge_loss",
    "hinge_loss_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "msle_loss",
    "msle_loss_with_grad",
    "log_cosh_loss",
    "log_cosh_loss_with_grad",
    "poisson_nll_loss",
    "poisson_nll_loss_with_grad",
    "gaussian_nll_loss",
    "gaussian_nll_loss_with_grad",
    "cross_entropy_grad_hess",
    "binary_cross_entropy_with_logits_grad_hess",
    "mse_loss_grad_hess",
    "huber_loss_grad_hess",
    "l1_loss_grad_hess",
    "smooth_l1_loss_grad_hess",
    "soft_margin_loss_grad_hess",
    "hinge_loss_grad_hess",
    "sigmoid_focal_loss_grad_hess",
    "msle_loss_grad_hess",
    "log_cosh_loss_grad_hess",
    "poisson_nll_loss_grad_hess",
    "gaussian_nll_loss_grad_hess",
    "contrastive_loss",
    "contrastive_loss_with_grad",
    "cosine_embedding_loss",
    "cosine_embedding_loss_with_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_with_grad",
    "margin_ranking_loss",
    "margin_ranking_loss_with_grad",
    "hinge_embedding_loss",
    "hinge_embedding_loss_with_grad",
    "center_loss",
    "center_loss_with_grad",
    "center_loss_update",
]

_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")


def _reduce(per_item, reduction, denominator, grad_output):
    """Reduce float64 per-item losses and return ``(loss, g)``.

    ``g`` has ``per_item``'s shape and holds d(sum(grad_output * loss)) / d(per_item), i.e. the
    factor each per-item gradient must be multiplied by (chain rule through the reduction):

    * none: loss = per_item,            g = grad_output (broadcast to per_item's shape)
    * sum:  loss = sum(per_item),       g = grad_output
    * mean: loss = sum(per_item) / D,   g = grad_output / D   (D = ``denominator``)
      with D == 0: loss = NaN, g = 0.
    """
    go = np.float64(1.0) if grad_output is None else np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        return per_item, np.broadcast_to(go, per_item.shape).astype(np.float64)
    if go.ndim != 0:
        raise ValueError(
            f"grad_output must be a scalar for reduction={reduction!r}; got shape {go.shape}"
        )
    total = per_item.sum()
    if reduction == "sum":
        return total, np.full(per_item.shape, go)
    # mean
    if denominator == 0:
        return np.float64(np.nan), np.zeros(per_item.shape)
    return total / denominator, np.full(per_item.shape, go / denominator)


def _cast_grad(grad, dtype):
    """A gradient in the caller's dtype, always an array (also for a 0-d input, where NumPy
    arithmetic on 0-d arrays would hand back a scalar)."""
    return np.asarray(grad).astype(dtype)


def _cast_loss(loss, dtype, reduction):
    """The loss in the caller's dtype: an array for "none", a NumPy scalar otherwise."""
    if reduction == "none":
        return np.asarray(loss).astype(dtype)
    return dtype.type(loss)


# --------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------


def _to_rows(a):
    """(C,) -> (1, C);  (N, C, d1..dk) -> (N*d1*..*dk, C) with the class axis moved last."""
    if a.ndim == 1:
        return a[np.newaxis, :]
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _from_rows(rows, shape):
    """Inverse of ``_to_rows`` for an array of the given (input) shape."""
    if len(shape) == 1:
        return rows.reshape(shape)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(rows.reshape(moved), -1, 1)


def _log_softmax(x):
    """log p_ic = x_ic - m_i - log(sum_c exp(x_ic - m_i)),  m_i = max_c x_ic."""
    m = np.max(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # rows with +-inf / NaN give NaN, as in torch
        shifted = x - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def cross_entropy_with_grad(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    grad_output=None,
):
    """Cross-entropy from logits and its gradient with respect to the logits.

    Shapes: input ``(N, C)`` with target ``(N,)``; unbatched input ``(C,)`` with a 0-d target;
    K-dim input ``(N, C, d1..dk)`` with target ``(N, d1..dk)``, which is exactly the flattened
    ``(N*d1*..*dk, C)`` computation (class axis moved last).  A float target with input's exact
    shape is a probability (soft) target.  ``"none"`` returns the per-sample losses in the
    target's shape without the class axis (unbatched: a 0-d array).

    With ``p_ic = softmax(x_i)_c`` (log-sum-exp with the row max subtracted), class weights ``w``
    (default all ones), smoothing ``eps`` and ``C`` classes, every row's loss is written as

        l_i = -sum_c T_ic log p_ic

    with the *effective target* ``T``:

    * class-index targets ``y_i``:
      ``T_ic = (1-eps) w[y_i] [c == y_i] + (eps/C) w_c``, i.e.
      ``l_i = (1-eps) w[y_i] (-log p_iy) + (eps/C) sum_c w_c (-log p_ic)``;
      rows with ``y_i == ignore_index`` have ``T_i = 0``: loss 0, gradient 0.
      ``"mean"`` = ``sum_i l_i / sum_{i not ignored} w[y_i]``.
    * probability targets ``q``: ``T_ic = w_c q'_ic`` with ``q' = (1-eps) q + eps/C``;
      ``ignore_index`` is not applied, ``q`` is neither renormalised nor range-checked.
      ``"mean"`` = ``sum_i l_i / (number of rows/positions)``.

    Gradient (``d(-log p_ic)/dx_ij = p_ij - [j == c]``):

        dl_i/dx_ij = sum_c T_ic (p_ij - [j == c]) = (sum_c T_ic) p_ij - T_ij

    scaled by ``grad_output`` and, for ``"mean"``, divided by the denominator.  A zero
    denominator gives a NaN mean and an all-zero gradient.

    Convention: a term with ``T_ic == 0`` contributes exactly 0, even where ``log p_ic = -inf``
    (logit ``-inf``), as ``nll_loss`` does for non-target classes.  (torch evaluates
    ``0 * -inf = NaN`` there in its smoothing / soft-target paths; we keep the finite limit.)
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    t_in = np.asarray(target)
    dtype = x_in.dtype

    x = _to_rows(x_in.astype(np.float64))  # (M, C)
    M, C = x.shape
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = float(label_smoothing)

    if np.issubdtype(t_in.dtype, np.floating):  # probability (soft) targets
        q = _to_rows(t_in.astype(np.float64))
        q_smooth = (1.0 - eps) * q + eps / C
        T = w[np.newaxis, :] * q_smooth
        valid = np.ones(M, dtype=bool)
        denominator = M
        loss_shape = x_in.shape[:1] + x_in.shape[2:] if x_in.ndim > 1 else ()
    else:  # class-index targets
        y = t_in.reshape(-1).astype(np.int64)
        valid = y != ignore_index
        y_safe = np.where(valid, y, 0)  # any in-range index; ignored rows are zeroed below
        onehot = np.arange(C)[np.newaxis, :] == y_safe[:, np.newaxis]
        w_y = w[y_safe]
        T = (1.0 - eps) * w_y[:, np.newaxis] * onehot + (eps / C) * w[np.newaxis, :]
        T = np.where(valid[:, np.newaxis], T, 0.0)
        denominator = np.sum(w_y[valid])
        loss_shape = t_in.shape

    logp = _log_softmax(x)
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        T_logp = np.where(T == 0.0, 0.0, T * logp)  # 0 * log 0 := 0
    per_row = -np.sum(T_logp, axis=1)  # ignored rows: T_i = 0, so exactly 0
    dper_row = np.sum(T, axis=1, keepdims=True) * p - T
    # ignored rows: exactly 0 even when their logits hold NaN/inf (0 * NaN would leak in)
    dper_row = np.where(valid[:, np.newaxis], dper_row, 0.0)

    loss, g = _reduce(per_row.reshape(loss_shape), reduction, denominator, grad_output)
    grad_rows = g.reshape(-1)[:, np.newaxis] * dper_row
    # ignored rows stay exactly 0 whatever grad_output is (NaN/inf * 0 would leak in), as torch
    grad_rows = np.where(valid[:, np.newaxis], grad_rows, 0.0)
    grad = _from_rows(grad_rows, x_in.shape)
    return _cast_loss(loss, dtype, reduction), grad.astype(dtype)


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """Cross-entropy from logits (``torch.nn.functional.cross_entropy`` semantics).

        l_i = (1-eps) w[y_i] (-log p_iy) + (eps/C) sum_c w_c (-log p_ic)     (class indices)
        l_i = -sum_c w_c q'_ic log p_ic,  q' = (1-eps) q + eps/C               (probabilities)

    with ``p_i = softmax(x_i)``; ignored rows give 0; ``"mean"`` divides by the summed weights
    ``w[y_i]`` of the kept rows (class indices) or by the number of rows (probabilities).
    See :func:`cross_entropy_with_grad` for the full description.
    """
    return cross_entropy_with_grad(
        input, target, weight, ignore_index, reduction, label_smoothing, grad_output=None
    )[0]


# --------------------------------------------------------------------------------------------
# Binary cross-entropy with logits
# --------------------------------------------------------------------------------------------


def _sigmoid(x):
    """sigmoid(x) = 1/(1+exp(-x)), evaluated through e = exp(-|x|) <= 1 so it never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits_with_grad(
    input, target, weight=None, reduction="mean", pos_weight=None, grad_output=None
):
    """Binary cross-entropy with logits and its gradient with respect to the logits.

        l = -w [pw y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))]

    ``target`` has input's shape; ``weight`` (w) and ``pos_weight`` (pw) broadcast against input
    (NumPy broadcasting, so a ``(C,)`` pos_weight applies along the last dimension).  ``"mean"``
    is the plain mean over all elements.  Evaluated stably as

        l / w = A |x| + c log1p(exp(-|x|)),   c = pw y + 1 - y,
        A = (1 - y) if x >= 0 else pw y,

    (``log sigmoid(x) = -log1p(exp(-|x|)) - max(-x, 0)``), where ``A |x|`` is taken as 0 when
    ``A == 0``.  Hence logits of +-inf give the exact limit where it is finite, e.g. ``x = +inf,
    y = 1`` -> 0 and ``x = -inf, y = 0`` -> 0.  **Deliberate deviation from torch**, which gives
    NaN for infinite logits.  NaN in ``x`` propagates.

    Gradient:  dl/dx = w [-pw y (1 - sigmoid(x)) + (1 - y) sigmoid(x)] = w (c sigmoid(x) - pw y),
    evaluated as w [(1 - y) sigmoid(x) - pw y sigmoid(-x)] with a sigmoid that never overflows.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)
    pw = np.broadcast_to(
        1.0 if pos_weight is None else np.asarray(pos_weight, np.float64), x.shape
    )

    c = pw * y + (1.0 - y)
    A = np.where(x >= 0, 1.0 - y, pw * y)
    abs_x = np.abs(x)
    with np.errstate(invalid="ignore"):
        A_abs_x = np.where(A == 0.0, 0.0, A * abs_x)  # 0 * inf := 0
        per_elem = w * (A_abs_x + c * np.log1p(np.exp(-abs_x)))
    # c sigmoid(x) - pw y, written as below so that it keeps its relative accuracy
    # when it is tiny (x = 38, y = 1 gives -3.1e-17, not a rounded 1 - 1 = 0).
    dper_elem = w * ((1.0 - y) * _sigmoid(x) - pw * y * _sigmoid(-x))

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def binary_cross_entropy_with_logits(
    input, target, weight=None, reduction="mean", pos_weight=None
):
    """Binary cross-entropy with logits (``torch.nn.functional`` semantics).

        l = -w [pw y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))]

    reduced by ``reduction`` (``"mean"`` = plain mean over all elements).  Infinite logits give
    the finite limit where it exists (torch gives NaN).  See
    :func:`binary_cross_entropy_with_logits_with_grad`.
    """
    return binary_cross_entropy_with_logits_with_grad(
        input, target, weight, reduction, pos_weight, grad_output=None
    )[0]


# --------------------------------------------------------------------------------------------
# Mean squared error
# --------------------------------------------------------------------------------------------


def _elementwise_weight(weight, shape):
    """float64 element weights of ``shape`` (all ones for None).

    torch 2.13's weighted ``mse_loss`` / ``l1_loss`` / ``huber_loss`` require ``weight.size() ==
    input.size()`` (a ValueError otherwise, the API's job); broadcasting here is only a convenience.
    """
    if weight is None:
        return np.ones(shape)
    return np.broadcast_to(np.asarray(weight, dtype=np.float64), shape)


def mse_loss_with_grad(input, target, reduction="mean", weight=None, grad_output=None):
    """Squared error and its gradient:  l = w (x - y)^2,  dl/dx = 2 w (x - y).

    ``target`` has input's shape; so has ``weight`` (w, default 1).  ``"mean"`` is
    ``sum(w l) / sum(w)`` as torch 2.13 computes it with a weight (the plain mean over all elements
    without one); ``sum(w) == 0`` is a zero denominator: NaN mean and an all-zero gradient (torch:
    NaN gradient).
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    r = x_in.astype(np.float64) - np.asarray(target, dtype=np.float64)
    w = _elementwise_weight(weight, r.shape)
    per_elem = w * r**2
    dper_elem = w * 2.0 * r

    denominator = per_elem.size if weight is None else np.sum(w)
    loss, g = _reduce(per_elem, reduction, denominator, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def mse_loss(input, target, reduction="mean", weight=None):
    """Mean squared error:  l = w (x - y)^2, reduced by ``reduction`` ("mean": sum(w l)/sum(w))."""
    return mse_loss_with_grad(input, target, reduction, weight, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Huber
# --------------------------------------------------------------------------------------------


def huber_loss_with_grad(
    input, target, reduction="mean", delta=1.0, weight=None, grad_output=None
):
    """Huber loss and its gradient, with r = x - y and element weights w (default 1):

        l = w 0.5 r^2                    if |r| <= delta
            w delta (|r| - 0.5 delta)    otherwise        (both are 0.5 delta^2 at |r| == delta)

        dl/dx = w r                      if |r| <= delta
                w delta sign(r)          otherwise        = w clip(r, -delta, delta)

    ``target`` and ``weight`` have input's shape.  ``"mean"`` averages over all elements, with a
    weight too: torch 2.13's weighted Huber is ``mean(w l)``, *not* ``sum(w l) / sum(w)`` as its
    weighted MSE and L1 are.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    delta = float(delta)
    r = x_in.astype(np.float64) - np.asarray(target, dtype=np.float64)
    w = _elementwise_weight(weight, r.shape)
    quadratic = np.abs(r) <= delta
    with np.errstate(over="ignore"):  # r**2 of a huge r in the unused branch
        per_elem = w * np.where(quadratic, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    dper_elem = w * np.where(quadratic, r, delta * np.sign(r))  # == w * np.clip(r, -delta, delta)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss:  w (0.5 r^2 if |r| <= delta else delta (|r| - 0.5 delta)),  r = x - y."""
    return huber_loss_with_grad(input, target, reduction, delta, weight, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# L1 and smooth L1
# --------------------------------------------------------------------------------------------


def l1_loss_with_grad(input, target, reduction="mean", weight=None, grad_output=None):
    """Absolute error and its gradient, with r = x - y and element weights w (default 1):

        l = w |r|,    dl/dx = w sign(r)

    ``sign(0) = 0``: at r == 0 the gradient is 0, torch's subgradient (``abs`` backward is
    ``sgn``); a NaN residual gets 0 too (torch's ``sgn(NaN)`` is 0), its loss is NaN.  ``target`` and ``weight`` have input's shape; ``"mean"`` is ``sum(w l) / sum(w)``
    with a weight (torch 2.13), the plain mean without; ``sum(w) == 0`` is a zero denominator:
    NaN mean, all-zero gradient (torch: NaN gradient).
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    r = x_in.astype(np.float64) - np.asarray(target, dtype=np.float64)
    w = _elementwise_weight(weight, r.shape)
    per_elem = w * np.abs(r)
    # torch.sign(NaN) is 0 (numpy's is NaN): a NaN residual gets gradient 0, as in torch
    dper_elem = w * np.where(np.isnan(r), 0.0, np.sign(r))

    denominator = per_elem.size if weight is None else np.sum(w)
    loss, g = _reduce(per_elem, reduction, denominator, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def l1_loss(input, target, reduction="mean", weight=None):
    """L1 loss:  l = w |x - y|, reduced by ``reduction`` ("mean": sum(w l)/sum(w))."""
    return l1_loss_with_grad(input, target, reduction, weight, grad_output=None)[0]


def smooth_l1_loss_with_grad(input, target, reduction="mean", beta=1.0, grad_output=None):
    """Smooth L1 loss and its gradient, with r = x - y:

        l = 0.5 r^2 / beta         if |r| < beta
            |r| - 0.5 beta         otherwise         (both are 0.5 beta at |r| == beta)

        dl/dx = r / beta           if |r| < beta
                sign(r)            otherwise         (both are sign(r) at |r| == beta)

    The strict ``<`` is torch's; the two branches agree at ``|r| == beta`` in value and slope, so
    the kink is harmless.  ``beta == 0`` is exactly :func:`l1_loss` (torch dispatches to it; the
    quadratic branch would divide by 0 and is empty anyway), with ``sign(0) = 0``.  ``beta < 0``
    is rejected by the API.  ``"mean"`` averages over all elements.
    """
    _check_reduction(reduction)
    beta = float(beta)
    if beta == 0.0:  # torch calls l1_loss: no division by beta
        return l1_loss_with_grad(input, target, reduction, grad_output=grad_output)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    r = x_in.astype(np.float64) - np.asarray(target, dtype=np.float64)
    quadratic = np.abs(r) < beta
    with np.errstate(over="ignore"):  # r**2 of a huge r in the unused branch
        per_elem = np.where(quadratic, 0.5 * r**2 / beta, np.abs(r) - 0.5 * beta)
    dper_elem = np.where(quadratic, r / beta, np.sign(r))

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1:  0.5 r^2 / beta if |r| < beta else |r| - 0.5 beta,  r = x - y (beta=0: L1)."""
    return smooth_l1_loss_with_grad(input, target, reduction, beta, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Negative log-likelihood
# --------------------------------------------------------------------------------------------


def nll_loss_with_grad(
    input, target, weight=None, ignore_index=-100, reduction="mean", grad_output=None
):
    """Negative log-likelihood of log-probabilities and its gradient with respect to them.

    Shapes as :func:`cross_entropy_with_grad` with class-index targets: input ``(N, C)`` with
    target ``(N,)``; unbatched ``(C,)`` with a 0-d target; ``(N, C, d1..dk)`` with target
    ``(N, d1..dk)``, exactly the flattened ``(N*d1*..*dk, C)`` computation.  Any integer target
    dtype.  With class weights ``w`` (default all ones):

        l_i = -w[y_i] x_{i, y_i}                      (0 for rows with y_i == ignore_index)
        dl_i/dx_ij = -w[y_i] [j == y_i]               (0 for ignored rows)

    ``ignore_index`` may be any integer, also a valid class (whose rows are then ignored).
    ``"mean"`` divides by ``sum_{i kept} w[y_i]``; when that is 0 (all ignored, or zero weights)
    the mean is NaN and the gradient all zeros (torch: NaN at the target entries for zero
    weights).  ``"none"`` has the target's shape.  Convention (as in cross-entropy): a kept row
    with ``w[y_i] == 0`` contributes exactly 0 even where ``x_{i, y_i} = -inf`` (torch: 0 * -inf
    = NaN).  An ignored row contributes exactly 0 whatever its inputs hold.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    t_in = np.asarray(target)
    dtype = x_in.dtype

    x = _to_rows(x_in.astype(np.float64))  # (M, C)
    M, C = x.shape
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    y = t_in.reshape(-1).astype(np.int64)
    valid = y != ignore_index
    y_safe = np.where(valid, y, 0)  # any in-range index; ignored rows are zeroed below
    w_y = np.where(valid, w[y_safe], 0.0)
    x_y = x[np.arange(M), y_safe]
    with np.errstate(invalid="ignore"):
        per_row = np.where(w_y == 0.0, 0.0, -w_y * x_y)  # 0 * -inf := 0; ignored rows: 0
    denominator = np.sum(w_y)

    loss, g = _reduce(per_row.reshape(t_in.shape), reduction, denominator, grad_output)
    grad_rows = np.zeros((M, C))
    # ignored rows stay exactly 0 whatever grad_output holds (NaN * 0 would leak in)
    grad_rows[np.arange(M), y_safe] = np.where(valid, -w_y * g.reshape(-1), 0.0)
    grad = _from_rows(grad_rows, x_in.shape)
    return _cast_loss(loss, dtype, reduction), grad.astype(dtype)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood:  l_i = -w[y_i] x_{i, y_i}  (``torch.nn.functional.nll_loss``).

    Ignored rows give 0; ``"mean"`` divides by the summed weights of the kept rows.  See
    :func:`nll_loss_with_grad`.
    """
    return nll_loss_with_grad(input, target, weight, ignore_index, reduction, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Binary cross-entropy on probabilities
# --------------------------------------------------------------------------------------------

_BCE_LOG_MIN = -100.0  # torch clamps each log at -100 so that p = 0 or 1 gives a finite loss
# torch's binary_cross_entropy_backward clamps x (1 - x) from below at EPSILON = 1e-12, a C++
# float constant even for double inputs: float32(1e-12) = 9.99999996e-13, so x = 0, y = 1 gives
# -1.000000004e12 in float64.  We use the same number.
_BCE_GRAD_EPS = float(np.float32(1e-12))


def binary_cross_entropy_with_grad(
    input, target, weight=None, reduction="mean", grad_output=None
):
    """Binary cross-entropy of probabilities and its gradient (torch 2.13 semantics):

        l = -w [y max(log x, -100) + (1 - y) max(log1p(-x), -100)]
        dl/dx = w (x - y) / max(x (1 - x), eps),   eps = float32(1e-12) = 9.99999996e-13

    Both are torch's exact formulas (its backward's 1e-12 is a C++ float, even for doubles).
    The clamp of the logs at -100 makes ``x = 0`` or ``1`` finite (loss 100 for a wrong certain
    answer).  The gradient is *not* the derivative of the clamped loss: torch's backward ignores
    the -100 clamp and clamps the denominator instead (so ``x = 0, y = 1`` gives -1/eps ~ -1e12,
    not 0); we match it.  ``target`` has input's shape; ``weight`` broadcasts against it (torch
    expands it to the target's shape).  ``"mean"`` is the plain mean over all elements.  Inputs
    outside [0, 1] are the API's job (torch raises).
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)

    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped just below
        log_x = np.maximum(np.log(x), _BCE_LOG_MIN)
        log_1mx = np.maximum(np.log1p(-x), _BCE_LOG_MIN)
    per_elem = -w * (y * log_x + (1.0 - y) * log_1mx)
    dper_elem = w * (x - y) / np.maximum(x * (1.0 - x), _BCE_GRAD_EPS)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy of probabilities, each log clamped at -100 as in torch:

        l = -w [y max(log x, -100) + (1 - y) max(log1p(-x), -100)]

    See :func:`binary_cross_entropy_with_grad`.
    """
    return binary_cross_entropy_with_grad(input, target, weight, reduction, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Multi-class margin (multi_margin_loss)
# --------------------------------------------------------------------------------------------


def multi_margin_loss_with_grad(
    input, target, p=1, margin=1.0, weight=None, reduction="mean", grad_output=None
):
    """Multi-class hinge loss (``torch.nn.functional.multi_margin_loss``) and its gradient.

    Input ``(N, C)`` with target ``(N,)``, or unbatched ``(C,)`` with a 0-d target (torch also
    takes a ``(1,)`` target there; ``"none"`` has the target's shape).  torch accepts no other
    shapes (no K-dim form).  With ``z_ij = margin - x_{i, y_i} + x_ij`` and class weights ``w``:

        l_i = w[y_i] / C  sum_{j != y_i} max(0, z_ij)^p           p in {1, 2}

        dl_i/dx_ij     =  w[y_i] / C  h_ij          (j != y_i)
        dl_i/dx_{i,y_i} = -sum_{j != y_i} dl_i/dx_ij
        h_ij = [z_ij > 0] (p = 1),  2 max(0, z_ij) (p = 2)

    At the kink ``z_ij == 0`` the (sub)gradient is 0, as torch (its kernel tests ``z > 0``).
    ``"mean"`` divides by N; an empty batch gives NaN ("sum" 0) -- torch returns an
    uninitialised value there.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    t_in = np.asarray(target)
    dtype = x_in.dtype
    x = np.atleast_2d(x_in.astype(np.float64))  # (N, C)
    N, C = x.shape
    y = t_in.reshape(-1).astype(np.int64)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)

    rows = np.arange(N)
    other = np.arange(C)[np.newaxis, :] != y[:, np.newaxis]  # j != y_i
    z = margin - x[rows, y][:, np.newaxis] + x
    # torch's kernel adds a term only where z > 0, so a NaN margin adds nothing.
    hinge = np.where(other & (z > 0.0), z, 0.0)
    scale = (w[y] / C)[:, np.newaxis]
    per_row = np.sum(scale * (hinge if p == 1 else hinge**2), axis=1)
    d_other = scale * (np.where(hinge > 0.0, 1.0, 0.0) if p == 1 else 2.0 * hinge)
    d_rows = d_other.copy()
    d_rows[rows, y] = -np.sum(d_other, axis=1)  # d_other is 0 at j == y_i

    loss, g = _reduce(per_row.reshape(t_in.shape), reduction, N, grad_output)
    grad = (g.reshape(-1)[:, np.newaxis] * d_rows).reshape(x_in.shape)
    return _cast_loss(loss, dtype, reduction), grad.astype(dtype)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Multi-class hinge loss:  l_i = w[y_i]/C sum_{j != y_i} max(0, margin - x_iy + x_ij)^p.

    See :func:`multi_margin_loss_with_grad`.
    """
    return multi_margin_loss_with_grad(
        input, target, p, margin, weight, reduction, grad_output=None
    )[0]


# --------------------------------------------------------------------------------------------
# Multi-label soft margin
# --------------------------------------------------------------------------------------------


def _bce_logits_terms(x, y):
    """Per-element -[y log sigmoid(x) + (1 - y) log sigmoid(-x)] and its slope sigmoid(x) - y.

    Evaluated as in :func:`binary_cross_entropy_with_logits_with_grad` (pos_weight 1):
    ``A |x| + log1p(exp(-|x|))`` with ``A = (1 - y) if x >= 0 else y``, ``A |x|`` := 0 when
    ``A == 0`` (so infinite logits give the finite limit where there is one); the slope as
    ``(1 - y) sigmoid(x) - y sigmoid(-x)`` which keeps its relative accuracy when tiny.
    """
    A = np.where(x >= 0, 1.0 - y, y)
    abs_x = np.abs(x)
    with np.errstate(invalid="ignore"):
        A_abs_x = np.where(A == 0.0, 0.0, A * abs_x)  # 0 * inf := 0
        value = A_abs_x + np.log1p(np.exp(-abs_x))
    slope = (1.0 - y) * _sigmoid(x) - y * _sigmoid(-x)
    return value, slope


def multilabel_soft_margin_loss_with_grad(
    input, target, weight=None, reduction="mean", grad_output=None
):
    """Multi-label soft margin loss (torch semantics) and its gradient.

    The class axis is the *last* one (torch: ``class_dim = input.dim() - 1``), so ``(N, C)``,
    ``(C,)`` and any ``(..., C)`` work; ``"none"`` gives ``input.shape[:-1]`` (a 0-d array for
    ``(C,)``).  With per-class weights ``w`` broadcasting against input:

        l_i = 1/C sum_c w_c [-(y_ic log sigmoid(x_ic) + (1 - y_ic) log sigmoid(-x_ic))]
        dl_i/dx_ic = w_c (sigmoid(x_ic) - y_ic) / C

    computed from the logits without overflow (log-sigmoid via ``log1p(exp(-|x|))``).
    ``"mean"`` averages over the samples ``input.shape[:-1]``; none of them: NaN.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)
    C = x.shape[-1]

    value, slope = _bce_logits_terms(x, y)
    per_sample = np.sum(w * value, axis=-1) / C
    loss, g = _reduce(per_sample, reduction, per_sample.size, grad_output)
    grad = g[..., np.newaxis] * w * slope / C
    return _cast_loss(loss, dtype, reduction), _cast_grad(grad, dtype)


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean"):
    """l_i = mean_c w_c BCEWithLogits(x_ic, y_ic) over the last axis; see the ``_with_grad``."""
    return multilabel_soft_margin_loss_with_grad(
        input, target, weight, reduction, grad_output=None
    )[0]


# --------------------------------------------------------------------------------------------
# Soft margin and hinge
# --------------------------------------------------------------------------------------------


def soft_margin_loss_with_grad(input, target, reduction="mean", grad_output=None):
    """Soft margin (logistic) loss and its gradient, with z = y x:

        l = log(1 + exp(-z)) = max(-z, 0) + log1p(exp(-|z|))
        dl/dx = -y sigmoid(-z)          (torch: y (sigmoid(z) - 1))

    The stable form is finite for every finite z: **deliberate deviation from torch**, which
    evaluates ``log1p(exp(-z))`` literally and overflows to inf (gradient NaN) once
    ``-z > ~88.7`` (float32) / ``~709.8`` (float64).  Targets are usually +-1 but are not
    checked (torch does not either).  ``"mean"`` averages over all elements.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    z = y * x
    per_elem = np.maximum(-z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    dper_elem = -y * _sigmoid(-z)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def soft_margin_loss(input, target, reduction="mean"):
    """Soft margin loss:  l = log(1 + exp(-y x)), finite for any finite y x."""
    return soft_margin_loss_with_grad(input, target, reduction, grad_output=None)[0]


def hinge_loss_with_grad(
    input, target, margin=1.0, squared=False, reduction="mean", grad_output=None
):
    """Binary hinge loss (optax ``hinge_loss``, Keras ``Hinge`` / ``SquaredHinge``, sklearn
    ``hinge_loss``; no torch twin) and its gradient, with z = margin - y x, y in {-1, +1}:

        l = max(0, z)               dl/dx = -y [z > 0]
        l = max(0, z)^2 (squared)   dl/dx = -2 y max(0, z)

    At the kink ``z == 0`` the subgradient is 0 (as ``relu``'s in torch/JAX).  Keras converts
    {0, 1} targets to +-1 and averages over the last axis; we take +-1 targets as given and
    ``"none"`` is per element.  ``"mean"`` averages over all elements.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    h = np.maximum(margin - y * x, 0.0)
    if squared:
        per_elem, dper_elem = h**2, -2.0 * y * h
    else:
        per_elem, dper_elem = h, np.where(h > 0.0, -y, 0.0)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def hinge_loss(input, target, margin=1.0, squared=False, reduction="mean"):
    """Hinge loss:  max(0, margin - y x)  (its square if ``squared``), y in {-1, +1}."""
    return hinge_loss_with_grad(input, target, margin, squared, reduction, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Sigmoid focal loss
# --------------------------------------------------------------------------------------------


def sigmoid_focal_loss_with_grad(
    input, target, alpha=0.25, gamma=2.0, reduction="none", grad_output=None
):
    """Sigmoid focal loss (``torchvision.ops.sigmoid_focal_loss``) and its gradient.

    With s = sigmoid(x), the BCE-with-logits term ``ce = -[y log s + (1 - y) log(1 - s)]``,
    ``q = 1 - p_t = y (1 - s) + (1 - y) s`` and ``a_t = alpha y + (1 - alpha)(1 - y)``
    (``a_t = 1`` when ``alpha < 0``, torchvision's "no weighting"):

        l = a_t q^gamma ce

    Gradient, from ``dce/dx = s - y`` and ``dq/dx = (1 - 2y) s (1 - s)``:

        dl/dx = a_t [ q^gamma (s - y) + gamma q^(gamma - 1) (1 - 2y) s (1 - s) ce ]

    Computed from the logits so that it is finite for logits of +-1e4 (float32) / +-1e30
    (float64): ``ce`` as ``A |x| + log1p(exp(-|x|))`` (see :func:`_bce_logits_terms`), s and
    1 - s = sigmoid(-x) each through a sigmoid that never overflows, and ``s - y`` as
    ``(1 - y) s - y (1 - s)``.  The second term is taken as 0 where ``q == 0`` (only when s
    saturates to exactly y in {0, 1}; then ``s (1 - s) = 0`` and ``ce -> 0`` too, and the limit is
    0 for every gamma >= 0, whereas ``q^(gamma - 1)`` alone would be inf for gamma < 1).
    ``q^0 = 1`` (gamma = 0 is BCE with logits times a_t).  Default reduction ``"none"`` as in
    torchvision; ``"mean"`` averages over all elements.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    alpha, gamma = float(alpha), float(gamma)

    s, s_neg = _sigmoid(x), _sigmoid(-x)  # s and 1 - s, both without cancellation
    ce, dce = _bce_logits_terms(x, y)
    q = y * s_neg + (1.0 - y) * s
    a_t = alpha * y + (1.0 - alpha) * (1.0 - y) if alpha >= 0 else np.ones_like(x)
    q_gamma = q**gamma
    per_elem = a_t * q_gamma * ce
    with np.errstate(divide="ignore", invalid="ignore"):  # q = 0 is replaced by its limit 0
        focal_term = np.where(
            q > 0.0, gamma * q ** (gamma - 1.0) * (1.0 - 2.0 * y) * s * s_neg * ce, 0.0
        )
    dper_elem = a_t * (q_gamma * dce + focal_term)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="none"):
    """Sigmoid focal loss:  a_t (1 - p_t)^gamma BCEWithLogits(x, y)  (torchvision semantics)."""
    return sigmoid_focal_loss_with_grad(input, target, alpha, gamma, reduction, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Kullback-Leibler divergence
# --------------------------------------------------------------------------------------------

_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size. "
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition. "
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def kl_div_with_grad(input, target, reduction="mean", log_target=False, grad_output=None):
    """KL divergence ``torch.nn.functional.kl_div`` (input: log-probabilities) and its gradient
    with respect to ``input`` only:

        l = t (log t - x)           dl/dx = -t              (log_target=False)
        l = exp(t) (t - x)          dl/dx = -exp(t)         (log_target=True)

    A target probability of 0 (``t == 0``, or ``t == -inf`` with log_target) contributes exactly 0,
    the limit of ``t log t`` (torch's ``xlogy``); that holds even where ``x = -inf``, where torch
    computes ``0 * -inf = NaN`` (the cross-entropy convention, deliberately).  Negative ``t``
    gives NaN, as ``xlogy`` does.  Reductions: ``"none"``, ``"sum"``, ``"batchmean"`` = sum /
    ``input.shape[0]`` (a 0-d input: the sum, as torch; an empty batch: NaN), ``"mean"`` = sum /
    number of elements, which warns (``UserWarning``, as torch) because it is not the KL
    divergence.
    """
    if reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
    return _kl_div(input, target, reduction, log_target, grad_output)


def _kl_div(input, target, reduction, log_target, grad_output):
    if reduction not in ("none", "batchmean", "sum", "mean"):
        raise ValueError(
            f"reduction must be one of 'none', 'batchmean', 'sum', 'mean'; got {reduction!r}"
        )
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    t = np.asarray(target, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if log_target:
            p = np.exp(t)
            per_elem = np.where(p == 0.0, 0.0, p * (t - x))  # exp(-inf) * (-inf - x) := 0
        else:
            p = t
            per_elem = np.where(t == 0.0, 0.0, t * np.log(t) - t * x)  # xlogy(0, 0) = 0
    dper_elem = -p

    if reduction == "batchmean":
        denominator = x.shape[0] if x.ndim > 0 else 1  # torch: a 0-d input is just summed
        reduction = "mean"
    else:
        denominator = per_elem.size
    loss, g = _reduce(per_elem, reduction, denominator, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def kl_div(input, target, reduction="mean", log_target=False):
    """KL divergence:  t (log t - x)  (``exp(t) (t - x)`` with log_target), input log-probs.

    ``"batchmean"`` divides the sum by ``input.shape[0]``; ``"mean"`` by the element count (and
    warns).  See :func:`kl_div_with_grad`.
    """
    if reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
    return _kl_div(input, target, reduction, log_target, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Regression losses without a torch twin: MSLE (Keras), log-cosh (Keras / optax)
# --------------------------------------------------------------------------------------------

_MSLE_EPS = 1e-7  # Keras' backend.epsilon(): both sides are clamped below at it


def msle_loss_with_grad(input, target, reduction="mean", grad_output=None):
    """Mean squared logarithmic error (Keras 3 ``MeanSquaredLogarithmicError``) and its gradient:

        x' = max(x, 1e-7),  y' = max(y, 1e-7),  d = log1p(x') - log1p(y')
        l = d^2,            dl/dx = 2 d / (1 + x')  where x >= 1e-7,  0 where x < 1e-7

    The clamp keeps ``log1p`` away from ``x <= -1``; where the prediction is clamped the loss
    does not depend on it, so the gradient is 0 (at ``x == 1e-7`` exactly, the unclamped side,
    as TensorFlow's ``maximum`` gradient).  Keras writes ``log(x' + 1)``; ``log1p`` is the same
    value, more accurately.  **Differences from Keras:** ``"none"`` is per element (Keras averages
    over the last axis first) and ``"mean"`` averages over all elements (the same number as
    Keras' mean of per-sample means when every sample has the same length).
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    xc = np.maximum(x, _MSLE_EPS)
    d = np.log1p(xc) - np.log1p(np.maximum(y, _MSLE_EPS))
    per_elem = d**2
    dper_elem = np.where(x >= _MSLE_EPS, 2.0 * d / (1.0 + xc), 0.0)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def msle_loss(input, target, reduction="mean"):
    """MSLE:  (log1p(max(x, 1e-7)) - log1p(max(y, 1e-7)))^2, reduced per element (not per row)."""
    return msle_loss_with_grad(input, target, reduction, grad_output=None)[0]


_LOG2 = np.log(2.0)


def log_cosh_loss_with_grad(input, target, reduction="mean", grad_output=None):
    """Log-cosh loss (Keras ``LogCosh``, optax ``log_cosh``) and its gradient, with d = x - y:

        l = log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log 2,     dl/dx = tanh(d)

    The form never overflows (``cosh`` does for ``|d| > ~710``; exp(-2|d|) <= 1).  It is exact to
    an absolute error of ~1 ulp of log 2 (~1e-16), so for ``|d| < ~1e-4`` (loss ~ d^2/2 < 5e-9)
    its *relative* error grows; compare such values with an absolute tolerance.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    d = x_in.astype(np.float64) - np.asarray(target, dtype=np.float64)
    abs_d = np.abs(d)
    per_elem = abs_d + np.log1p(np.exp(-2.0 * abs_d)) - _LOG2
    dper_elem = np.tanh(d)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def log_cosh_loss(input, target, reduction="mean"):
    """Log-cosh:  log(cosh(x - y)), evaluated as |d| + log1p(exp(-2|d|)) - log 2."""
    return log_cosh_loss_with_grad(input, target, reduction, grad_output=None)[0]


# --------------------------------------------------------------------------------------------
# Poisson and Gaussian negative log-likelihood
# --------------------------------------------------------------------------------------------


def poisson_nll_loss_with_grad(
    input, target, log_input=True, full=False, eps=1e-8, reduction="mean", grad_output=None
):
    """Poisson negative log-likelihood (torch semantics) and its gradient:

        log_input=True:   l = exp(x) - y x,             dl/dx = exp(x) - y
        log_input=False:  l = x - y log(x + eps),       dl/dx = 1 - y / (x + eps)

    ``full`` adds the Stirling term ``y log y - y + 0.5 log(2 pi y)`` (constant in x), only where
    ``y > 1``: torch masks it with ``masked_fill(y <= 1, 0)``, so a NaN target keeps its NaN (we
    write it the same way).  ``eps`` keeps ``log`` finite at ``x = 0``.  ``"mean"`` averages over
    all elements.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    y = np.asarray(target, dtype=np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if log_input:
            per_elem = np.exp(x) - y * x
            dper_elem = np.exp(x) - y
        else:
            per_elem = x - y * np.log(x + eps)
            dper_elem = 1.0 - y / (x + eps)
        if full:
            stirling = y * np.log(y) - y + 0.5 * np.log(2.0 * np.pi * y)
            per_elem = per_elem + np.where(y <= 1.0, 0.0, stirling)  # torch's masked_fill

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(g * dper_elem, dtype)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """Poisson NLL:  exp(x) - y x (log_input) or x - y log(x + eps), + Stirling where y > 1."""
    return poisson_nll_loss_with_grad(
        input, target, log_input, full, eps, reduction, grad_output=None
    )[0]


def _sum_to_shape(a, shape):
    """Sum ``a`` over the axes that broadcasting ``shape`` up to ``a.shape`` created."""
    lead = a.ndim - len(shape)
    a = a.sum(axis=tuple(range(lead))) if lead else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    return a.sum(axis=axes, keepdims=True) if axes else a


def gaussian_nll_loss_with_grad(
    input, target, var, full=False, eps=1e-6, reduction="mean", grad_output=None
):
    """Gaussian negative log-likelihood (torch semantics); returns
    ``(loss, grad_input, grad_var)``.  With r = x - y and v' = max(var, eps):

        l = 0.5 (log v' + r^2 / v')  (+ 0.5 log(2 pi) if ``full``)
        dl/dx = r / v'
        dl/dvar = 0.5 (1 / v' - r^2 / v'^2)      evaluated at v', *also where var < eps*

    torch clamps a clone of ``var`` in place under ``no_grad``, so autograd differentiates
    ``l(v')`` and passes that gradient straight through the clamp to ``var`` (no zeroing where
    it was clamped); we match it.  ``eps`` is documented by torch as "added to var" but is a clamp.

    ``var``: a Python float (one variance for all; ``grad_var`` is then None), an array of
    input's shape, one of ``input.shape[:-1]`` (torch unsqueezes it to ``(..., 1)``: one variance
    per row), or one of input's ndim with exactly one mismatching dimension, of size 1 (e.g.
    ``(N, 1)``, ``(4, 1, 32, 32)`` for ``(4, 3, 32, 32)``); other shapes are the API's ValueError
    (e.g. a 0-d var with a 2-d input).  ``grad_var`` has var's own shape, summed over the
    broadcast dimensions.  Negative var is the API's error.  ``"mean"`` averages over all
    elements.
    """
    _check_reduction(reduction)
    x_in = np.asarray(input)
    dtype = x_in.dtype
    x = x_in.astype(np.float64)
    r = x - np.asarray(target, dtype=np.float64)
    var_is_float = isinstance(var, (float, int)) and not isinstance(var, (bool, np.ndarray))
    v_in = np.asarray(var, dtype=np.float64)
    v = v_in
    if v.shape != x.shape and v.shape == x.shape[:-1]:
        v = v[..., np.newaxis]  # torch: homoscedastic per row, var.unsqueeze(-1)
    vc = np.maximum(np.broadcast_to(v, x.shape), eps)  # NaN stays NaN, as torch's clamp_
    per_elem = 0.5 * (np.log(vc) + r**2 / vc)
    if full:
        per_elem = per_elem + 0.5 * np.log(2.0 * np.pi)
    dper_dx = r / vc
    dper_dvar = 0.5 * (1.0 / vc - r**2 / vc**2)

    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    grad_input = _cast_grad(g * dper_dx, dtype)
    if var_is_float:
        grad_var = None
    else:
        grad_var = _cast_grad(_sum_to_shape(g * dper_dvar, v.shape).reshape(v_in.shape), dtype)
    return _cast_loss(loss, dtype, reduction), grad_input, grad_var


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian NLL:  0.5 (log max(var, eps) + (x - y)^2 / max(var, eps)) (+ 0.5 log 2 pi)."""
    return gaussian_nll_loss_with_grad(
        input, target, var, full, eps, reduction, grad_output=None
    )[0]


# --------------------------------------------------------------------------------------------
# Gradient boosting: loss, gradient and diagonal hessian
# --------------------------------------------------------------------------------------------
#
# ``<name>_grad_hess(input, target, <options>, sample_weight=None, hessian="exact")`` returns
# ``(loss, grad, hess)``: ``loss = sum(s l)`` with ``s`` the sample weight (one per sample, along
# the first axis; 1 without), ``grad`` its gradient and ``hess`` the diagonal of its hessian with
# respect to ``input``, both of input's shape and dtype.  ``hessian`` picks the convention:
#
# * ``"exact"``: ``s d^2 l / dx^2``, where a loss is piecewise linear 0.
# * ``"xgboost"`` / ``"lightgbm"``: the library's built-in objective where it has one (written
#   out in each function), else ``max(d^2 l / dx^2, 1e-16) s``; ``hess = s`` where the curvature
#   is 0 on whole regions (L1, Huber, smooth L1, the plain hinge).
#
# Squared error is the exception in the loss too: the boosters' is ``0.5 r^2`` (grad ``r``, hess
# 1), half of fastloss's ``r^2``, so their conventions return half of all three.

XGBOOST_FLOOR = 1e-16


def _check_hessian(hessian):
    if hessian not in ("exact", "xgboost", "lightgbm"):
        raise ValueError(f"hessian must be 'exact', 'xgboost' or 'lightgbm', got {hessian!r}")


def _sample_weight(sample_weight, shape):
    """float64 sample weights broadcast along input's first axis (ones for None)."""
    if sample_weight is None:
        return np.ones(shape)
    s = np.asarray(sample_weight, np.float64)
    return np.broadcast_to(s.reshape(s.shape + (1,) * (len(shape) - s.ndim)), shape)


def _boosted(per_elem, dper_elem, curvature, s, hessian, policy, dtype, floor_factor=1.0):
    """(loss, grad, hess) from per-element loss, slope and exact curvature (float64).

    ``policy`` is the booster conventions' treatment: "floor" (``max(curvature / f, 1e-16) f s``
    with ``f = floor_factor``, a factor the curvature carries like a weight), "unit" (``s``),
    "half" (0.5 r^2: all three halved), "poisson" (``s exp(x + 0.7)`` = ``s curvature e^0.7``) or
    "exact"."""
    _check_hessian(hessian)
    loss = np.sum(s * per_elem)
    grad = s * dper_elem
    hess = s * curvature
    action = "exact" if hessian == "exact" else policy[hessian]
    if action == "half":
        loss, grad, hess = 0.5 * loss, 0.5 * grad, 0.5 * hess
    elif action == "unit":
        hess = np.array(s, dtype=np.float64)
    elif action == "poisson":
        hess = hess * np.exp(0.7)
    elif action == "floor":
        f = np.broadcast_to(floor_factor, curvature.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_unit = np.where(f == 0, 0.0, curvature / np.where(f == 0, 1.0, f))
        hess = np.maximum(per_unit, XGBOOST_FLOOR) * f * s
    return dtype.type(loss), grad.astype(dtype), hess.astype(dtype)


_FLOORED = {"xgboost": "floor", "lightgbm": "floor"}
_UNIT = {"xgboost": "unit", "lightgbm": "unit"}


def _elementwise_parts(with_grad, input, target, *args, **kwargs):
    """(x, y, per-element loss, per-element slope) in float64 from a ``*_with_grad``."""
    x = np.asarray(input, np.float64)
    y = np.asarray(target, np.float64)
    loss, grad = with_grad(x, y, *args, reduction="none", **kwargs)[:2]
    return x, y, np.asarray(loss, np.float64), np.asarray(grad, np.float64)


def cross_entropy_grad_hess(input, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                            sample_weight=None, hessian="exact"):
    """Softmax cross-entropy of (N, C) logits for boosting: ``loss = sum(s l)``,
    ``grad = s (Q p - target weights)`` and ``hess = s Q p (1 - p)``, with ``Q`` the row's target
    mass: ``(1-eps) w[y] + (eps/C) sum(w)`` (index target; 0 if ignored) or ``sum(w q')``.
    ``1 - p`` of the row's largest ``p`` is the sum of the other ``p`` (no cancellation).

    ``"xgboost"``: ``multi:softprob``'s ``max(2 s Q p (1 - p), 1e-16)``;
    ``"lightgbm"``: ``multiclass``'s ``K/(K-1) s Q p (1 - p)``.
    """
    _check_hessian(hessian)
    x = np.asarray(input)
    dtype = x.dtype
    x64 = x.astype(np.float64)
    n, C = x64.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    losses, grad = cross_entropy_with_grad(x64, target, weight, ignore_index, "none",
                                           label_smoothing, grad_output=s)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    eps = float(label_smoothing)
    t = np.asarray(target)
    if t.dtype.kind == "f":
        Q = np.sum(w * ((1 - eps) * t.astype(np.float64) + eps / C), axis=1)
    else:
        kept = t != ignore_index
        Q = np.where(kept, (1 - eps) * w[np.where(kept, t, 0)] + eps / C * np.sum(w), 0.0)
    p = np.exp(_log_softmax(x64))
    one_minus_p = 1.0 - p  # >= 1/2 everywhere but at each row's largest p
    top = np.argmax(p, axis=1)
    rows = np.arange(n)
    others = p.copy()
    others[rows, top] = 0.0
    one_minus_p[rows, top] = np.sum(others, axis=1)
    hess = (s * Q)[:, None] * p * one_minus_p
    if hessian == "xgboost":
        hess = np.maximum(2.0 * hess, XGBOOST_FLOOR)
    elif hessian == "lightgbm":
        hess = C / (C - 1) * hess
    loss = np.sum(s * np.asarray(losses, np.float64))
    return dtype.type(loss), grad.astype(dtype), hess.astype(dtype)


def binary_cross_entropy_with_logits_grad_hess(input, target, weight=None, pos_weight=None,
                                               sample_weight=None, hessian="exact"):
    """BCE with logits for boosting: curvature ``c sigmoid(x) sigmoid(-x)``, ``c = pw y + 1 - y``.
    ``"xgboost"``: ``binary:logistic``'s ``max(p (1 - p), 1e-16) c w s`` (floor before the
    weights); ``"lightgbm"``: ``binary``'s ``p (1 - p) c w s`` (no floor)."""
    x, y, per, dper = _elementwise_parts(binary_cross_entropy_with_logits_with_grad, input,
                                         target, pos_weight=pos_weight)
    pw = np.broadcast_to(1.0 if pos_weight is None else np.asarray(pos_weight, np.float64),
                         x.shape)
    c = pw * y + (1.0 - y)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)
    s = _sample_weight(sample_weight, x.shape) * w
    return _boosted(per, dper, c * _sigmoid(x) * _sigmoid(-x), s, hessian,
                    {"xgboost": "floor", "lightgbm": "exact"}, np.asarray(input).dtype,
                    floor_factor=c)


def mse_loss_grad_hess(input, target, sample_weight=None, hessian="exact"):
    """Squared error: exact ``(sum s r^2, 2 s r, 2 s)``; the boosters' (``reg:squarederror``,
    ``regression``) ``0.5 r^2``: ``(sum 0.5 s r^2, s r, s)``."""
    x, y, per, dper = _elementwise_parts(mse_loss_with_grad, input, target)
    return _boosted(per, dper, np.full(x.shape, 2.0), _sample_weight(sample_weight, x.shape),
                    hessian, {"xgboost": "half", "lightgbm": "half"}, np.asarray(input).dtype)


def huber_loss_grad_hess(input, target, delta=1.0, sample_weight=None, hessian="exact"):
    """Huber: curvature 1 where ``|r| <= delta``, else 0; boosters (LightGBM ``huber``): ``s``."""
    x, y, per, dper = _elementwise_parts(huber_loss_with_grad, input, target, delta=delta)
    curvature = np.where(np.abs(x - y) <= delta, 1.0, 0.0)
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian, _UNIT,
                    np.asarray(input).dtype)


def l1_loss_grad_hess(input, target, sample_weight=None, hessian="exact"):
    """L1: curvature 0; boosters (``reg:absoluteerror``, ``regression_l1``): ``s``."""
    x, y, per, dper = _elementwise_parts(l1_loss_with_grad, input, target)
    return _boosted(per, dper, np.zeros(x.shape), _sample_weight(sample_weight, x.shape),
                    hessian, _UNIT, np.asarray(input).dtype)


def smooth_l1_loss_grad_hess(input, target, beta=1.0, sample_weight=None, hessian="exact"):
    """Smooth L1: curvature ``1/beta`` where ``|r| < beta``, else 0; boosters: ``s``."""
    x, y, per, dper = _elementwise_parts(smooth_l1_loss_with_grad, input, target, beta=beta)
    with np.errstate(divide="ignore"):
        curvature = np.where(np.abs(x - y) < beta, 1.0 / beta if beta else 0.0, 0.0)
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian, _UNIT,
                    np.asarray(input).dtype)


def soft_margin_loss_grad_hess(input, target, sample_weight=None, hessian="exact"):
    """Soft margin: curvature ``y^2 sigmoid(y x) sigmoid(-y x)``."""
    x, y, per, dper = _elementwise_parts(soft_margin_loss_with_grad, input, target)
    curvature = y * y * _sigmoid(y * x) * _sigmoid(-y * x)
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian,
                    _FLOORED, np.asarray(input).dtype)


def hinge_loss_grad_hess(input, target, margin=1.0, squared=False, sample_weight=None,
                         hessian="exact"):
    """Hinge: curvature 0 (squared: ``2 y^2`` where ``margin - y x > 0``); boosters: ``s`` for the
    plain hinge, the squared one's floored."""
    x, y, per, dper = _elementwise_parts(hinge_loss_with_grad, input, target, margin=margin,
                                         squared=squared)
    curvature = np.where(margin - y * x > 0, 2.0 * y * y, 0.0) if squared else np.zeros(x.shape)
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian,
                    _FLOORED if squared else _UNIT, np.asarray(input).dtype)


def sigmoid_focal_loss_grad_hess(input, target, alpha=0.25, gamma=2.0, sample_weight=None,
                                 hessian="exact"):
    """Sigmoid focal loss: with ``p = sigmoid(x)``, ``s = p (1-p)``, ``q = 1 - p_t``,
    ``r = s / q``, ``k = 1 - 2y``, ``ce`` the BCE and ``a_t`` the class weight, the curvature
    of ``a_t ce q^gamma`` (``dq/dx = k s``, ``ds/dx = s (1 - 2p)``, ``d ce/dx = p - y``) is

        a_t q^gamma [s + 2 gamma k (p - y) r + gamma ce k r ((gamma - 1) k r + 1 - 2p)]."""
    x, y, per, dper = _elementwise_parts(sigmoid_focal_loss_with_grad, input, target,
                                         alpha=alpha, gamma=gamma)
    p, p_neg = _sigmoid(x), _sigmoid(-x)
    s = p * p_neg
    q = y * p_neg + (1 - y) * p
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(q == 0, 0.0, s / q)
    k = 1 - 2 * y
    ce = binary_cross_entropy_with_logits(x, y, reduction="none").astype(np.float64)
    a_t = alpha * y + (1 - alpha) * (1 - y) if alpha >= 0 else 1.0
    curvature = a_t * q**gamma * (s + 2 * gamma * k * (p - y) * r
                                  + gamma * ce * k * r * ((gamma - 1) * k * r + (p_neg - p)))
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian,
                    _FLOORED, np.asarray(input).dtype)


def msle_loss_grad_hess(input, target, sample_weight=None, hessian="exact"):
    """MSLE: curvature ``2 (1 - r) / (1 + x)^2`` where ``x >= 1e-7`` (0 where clamped)."""
    x, y, per, dper = _elementwise_parts(msle_loss_with_grad, input, target)
    r = np.log1p(np.maximum(x, 1e-7)) - np.log1p(np.maximum(y, 1e-7))
    curvature = np.where(x < 1e-7, 0.0, 2 * (1 - r) / (1 + np.maximum(x, 1e-7)) ** 2)
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian,
                    _FLOORED, np.asarray(input).dtype)


def log_cosh_loss_grad_hess(input, target, sample_weight=None, hessian="exact"):
    """Log-cosh: curvature ``1 / cosh(d)^2 = 4 e / (1 + e)^2`` with ``e = exp(-2|d|)``."""
    x, y, per, dper = _elementwise_parts(log_cosh_loss_with_grad, input, target)
    e = np.exp(-2 * np.abs(x - y))
    return _boosted(per, dper, 4 * e / (1 + e) ** 2, _sample_weight(sample_weight, x.shape),
                    hessian, _FLOORED, np.asarray(input).dtype)


def poisson_nll_loss_grad_hess(input, target, log_input=True, full=False, eps=1e-8,
                               sample_weight=None, hessian="exact"):
    """Poisson NLL: curvature ``exp(x)`` (log_input; boosters: ``exp(x + 0.7)``, XGBoost's
    ``count:poisson`` and LightGBM's ``poisson`` with ``max_delta_step`` 0.7), else
    ``y / (x + eps)^2``."""
    x, y, per, dper = _elementwise_parts(poisson_nll_loss_with_grad, input, target,
                                         log_input=log_input, full=full, eps=eps)
    curvature = np.exp(x) if log_input else y / (x + eps) ** 2
    policy = {"xgboost": "poisson", "lightgbm": "poisson"} if log_input else _FLOORED
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape), hessian,
                    policy, np.asarray(input).dtype)


def gaussian_nll_loss_grad_hess(input, target, var, full=False, eps=1e-6, sample_weight=None,
                                hessian="exact"):
    """Gaussian NLL of the mean (``var`` fixed): curvature ``1 / max(var, eps)``."""
    x, y, per, dper = _elementwise_parts(gaussian_nll_loss_with_grad, input, target, var,
                                         full=full, eps=eps)
    v = np.maximum(np.broadcast_to(np.asarray(var, np.float64), x.shape), eps)
    return _boosted(per, dper, 1.0 / v, _sample_weight(sample_weight, x.shape), hessian,
                    _FLOORED, np.asarray(input).dtype)



def binary_cross_entropy_grad_hess(input, target, weight=None, sample_weight=None,
                                   hessian="exact"):
    """BCE of probabilities: torch's slope ``(x - y) / max(x (1 - x), 1e-12)`` and the curvature
    of the unclamped loss, ``y / x^2 + (1 - y) / (1 - x)^2``, times ``w s``; boosters: floored."""
    x, y, per, dper = _elementwise_parts(binary_cross_entropy_with_grad, input, target)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)
    curvature = y / x**2 + (1.0 - y) / (1.0 - x) ** 2
    return _boosted(per, dper, curvature, _sample_weight(sample_weight, x.shape) * w, hessian,
                    _FLOORED, np.asarray(input).dtype)


def kl_div_grad_hess(input, target, log_target=False, sample_weight=None, hessian="exact"):
    """KL divergence of log-probabilities ``x``: linear in ``x`` (slope ``-p``), so curvature 0;
    boosters: ``s`` (as for L1)."""
    x, y, per, dper = _elementwise_parts(kl_div_with_grad, input, target, log_target=log_target)
    return _boosted(per, dper, np.zeros(x.shape), _sample_weight(sample_weight, x.shape),
                    hessian, _UNIT, np.asarray(input).dtype)


def multilabel_soft_margin_loss_grad_hess(input, target, weight=None, sample_weight=None,
                                          hessian="exact"):
    """Multi-label soft margin, one sample per row of ``(N, C)`` (``(C,)``: one sample): each
    sample's loss is the mean over its classes of BCE with logits, so this is
    :func:`binary_cross_entropy_with_logits_grad_hess` with the class weights divided by C."""
    x = np.asarray(input)
    y = np.asarray(target)
    w = (1.0 if weight is None else np.asarray(weight, np.float64)) / x.shape[-1]
    if x.ndim == 1:
        loss, grad, hess = binary_cross_entropy_with_logits_grad_hess(
            x[np.newaxis], y[np.newaxis], weight=w, sample_weight=sample_weight, hessian=hessian)
        return loss, grad[0], hess[0]
    return binary_cross_entropy_with_logits_grad_hess(x, y, weight=w, sample_weight=sample_weight,
                                                      hessian=hessian)

# Metric learning: pairs and triplets of embedding rows, rows against class centres
# --------------------------------------------------------------------------------------------
# Rows are (N, D) or one row (D,) (then the target is 0-d and "none" gives a 0-d loss). torch's
# clamp_min(0) passes the gradient where its argument is >= 0, so exactly at a margin too; every
# mask below is written ">= 0" for that reason.


def _rows_reduce(per_row, reduction, grad_output):
    """_reduce over per-row losses, "mean" dividing by the number of rows; g gets a trailing
    axis so that it scales a row's gradient."""
    loss, g = _reduce(per_row, reduction, per_row.size, grad_output)
    return loss, np.asarray(g)[..., np.newaxis]


def _pairwise_distance(x1, x2, p, eps):
    """torch.pairwise_distance: (||u||_p, d||u||_p / du) with u = x1 - x2 + eps along the last
    axis; the derivative is sign(u) |u|^(p-1) / ||u||^(p-1), 0 where u = 0 or ||u|| = 0 (torch's
    norm backward). For p = inf the norm is max |u| and the derivative sign(u) on the terms that
    attain it, shared evenly among them (torch's backward of the inf-norm)."""
    u = x1 - x2 + eps
    a = np.abs(u)
    if p == np.inf:
        norm = np.max(a, axis=-1)
        hit = (a == norm[..., np.newaxis]) | np.isnan(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(norm == 0, 0.0, 1.0 / np.sum(hit, axis=-1))[..., np.newaxis]
        return norm, np.where(hit, np.sign(u), 0.0) * share
    norm = np.sum(a**p, axis=-1) ** (1.0 / p)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norm == 0, 0.0, norm ** (1.0 - p))[..., np.newaxis]
        slope = np.where(u == 0, 0.0, np.sign(u) * a ** (p - 1.0)) * scale
    return norm, slope


def contrastive_loss_with_grad(input1, input2, target, margin=1.0, reduction="mean",
                               grad_output=None):
    """Contrastive loss (Hadsell, Chopra, LeCun 2006); returns ``(loss, grad_input1,
    grad_input2)``.  With d = ||x1 - x2 + 1e-6||_2 (torch.pairwise_distance) and h = max(0, m - d):

        l = 0.5 (y d^2 + (1 - y) h^2)
        dl/dx1 = (y d - (1 - y) h) u / d = -dl/dx2        (0 at d = 0, as torch's norm)

    At d = m both sides of the kink give gradient 0 (h = 0), so there is no choice to make there.
    """
    _check_reduction(reduction)
    dtype = np.asarray(input1).dtype
    x1, x2 = (np.asarray(a, dtype=np.float64) for a in (input1, input2))
    y = np.asarray(target, dtype=np.float64)
    d, slope = _pairwise_distance(x1, x2, 2.0, 1e-6)
    h = np.maximum(margin - d, 0.0)
    per_row = 0.5 * (y * d**2 + (1 - y) * h**2)
    loss, g = _rows_reduce(per_row, reduction, grad_output)
    grad1 = g * (y * d - (1 - y) * h)[..., np.newaxis] * slope
    return _cast_loss(loss, dtype, reduction), _cast_grad(grad1, dtype), _cast_grad(-grad1, dtype)


def contrastive_loss(input1, input2, target, margin=1.0, reduction="mean"):
    return contrastive_loss_with_grad(input1, input2, target, margin, reduction)[0]


def cosine_embedding_loss_with_grad(input1, input2, target, margin=0.0, reduction="mean",
                                    grad_output=None):
    """torch's cosine_embedding_loss; returns ``(loss, grad_input1, grad_input2)``.

        cos = x1.x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))
        l = 1 - cos (y == 1),  max(0, cos - m) (y == -1),  0 (any other y)
        dcos/dx1 = x2 / den - cos x1 / (|x1|^2 + 1e-12)
    """
    _check_reduction(reduction)
    dtype = np.asarray(input1).dtype
    x1, x2 = (np.asarray(a, dtype=np.float64) for a in (input1, input2))
    y = np.asarray(target, dtype=np.float64)
    s1 = np.sum(x1 * x1, axis=-1) + 1e-12
    s2 = np.sum(x2 * x2, axis=-1) + 1e-12
    den = np.sqrt(s1 * s2)
    cos = np.sum(x1 * x2, axis=-1) / den
    per_row = np.where(y == 1, 1 - cos, np.where(y == -1, np.maximum(cos - margin, 0.0), 0.0))
    dl_dcos = np.where(y == 1, -1.0, np.where((y == -1) & (cos - margin >= 0), 1.0, 0.0))
    loss, g = _rows_reduce(per_row, reduction, grad_output)
    c = g * dl_dcos[..., np.newaxis]
    cos_, den_ = cos[..., np.newaxis], den[..., np.newaxis]
    grad1 = c * (x2 / den_ - cos_ * x1 / s1[..., np.newaxis])
    grad2 = c * (x1 / den_ - cos_ * x2 / s2[..., np.newaxis])
    return _cast_loss(loss, dtype, reduction), _cast_grad(grad1, dtype), _cast_grad(grad2, dtype)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    return cosine_embedding_loss_with_grad(input1, input2, target, margin, reduction)[0]


def triplet_margin_loss_with_grad(anchor, positive, negative, margin=1.0, p=2, eps=1e-6,
                                  swap=False, reduction="mean", grad_output=None):
    """torch's triplet_margin_loss; returns ``(loss, grad_anchor, grad_positive, grad_negative)``.

        l = max(0, m + d(a, pos) - d_n),  d_n = d(a, neg), or with swap min(d(a, neg), d(pos, neg))

    with d the pairwise p-distance ||x - y + eps||_p. torch's min gives the gradient to the
    smaller distance and half to each at a tie.
    """
    _check_reduction(reduction)
    dtype = np.asarray(anchor).dtype
    a, pos, neg = (np.asarray(x, dtype=np.float64) for x in (anchor, positive, negative))
    p = float(p)
    d_pos, n_pos = _pairwise_distance(a, pos, p, eps)
    d_neg, n_neg = _pairwise_distance(a, neg, p, eps)
    w_neg, w_swap = np.ones_like(d_neg), np.zeros_like(d_neg)
    nearest, n_swap = d_neg, np.zeros_like(n_neg)
    if swap:
        d_swap, n_swap = _pairwise_distance(pos, neg, p, eps)
        w_neg = np.where(d_swap < d_neg, 0.0, np.where(d_swap == d_neg, 0.5, 1.0))
        w_swap = 1.0 - w_neg
        nearest = np.minimum(d_neg, d_swap)
    z = margin + d_pos - nearest
    per_row = np.maximum(z, 0.0)
    loss, g = _rows_reduce(per_row, reduction, grad_output)
    c = g * (z >= 0)[..., np.newaxis]
    s_neg = w_neg[..., np.newaxis] * n_neg
    s_swap = w_swap[..., np.newaxis] * n_swap
    grads = (c * (n_pos - s_neg), c * (-n_pos - s_swap), c * (s_neg + s_swap))
    return (_cast_loss(loss, dtype, reduction), *(_cast_grad(x, dtype) for x in grads))


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        reduction="mean"):
    return triplet_margin_loss_with_grad(anchor, positive, negative, margin, p, eps, swap,
                                         reduction)[0]


def _sum_to(grad, shape):
    """The gradient of an operand of `shape` that was broadcast to grad's shape: summed over
    the axes it was broadcast along (torch's sum_to)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


def margin_ranking_loss_with_grad(input1, input2, target, margin=0.0, reduction="mean",
                                  grad_output=None):
    """torch's margin_ranking_loss, elementwise over the broadcast operands (of one number of
    dimensions, as torch asks); returns ``(loss, grad_input1, grad_input2)``.

        z = -y (x1 - x2) + m,  l = max(0, z),  dl/dx1 = -y [z >= 0] = -dl/dx2

    each gradient summed back to its input's shape.
    """
    _check_reduction(reduction)
    dtype = np.asarray(input1).dtype
    x1, x2, y = (np.asarray(a, dtype=np.float64) for a in (input1, input2, target))
    if not x1.ndim == x2.ndim == y.ndim:
        raise ValueError("input1, input2, target: expected one number of dimensions")
    z = -y * (x1 - x2) + margin
    loss, g = _reduce(np.maximum(z, 0.0), reduction, z.size, grad_output)
    grad1 = g * np.where(z >= 0, -y, 0.0)
    return (_cast_loss(loss, dtype, reduction), _cast_grad(_sum_to(grad1, x1.shape), dtype),
            _cast_grad(_sum_to(-grad1, x2.shape), dtype))


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    return margin_ranking_loss_with_grad(input1, input2, target, margin, reduction)[0]


def hinge_embedding_loss_with_grad(input, target, margin=1.0, reduction="mean",
                                   grad_output=None):
    """torch's hinge_embedding_loss, elementwise over the broadcast input and target; returns
    ``(loss, grad_input)``, the gradient summed back to input's shape.

        l = [y != 1] max(0, m - x) + [y != -1] x
        dl/dx = [y != -1] - [y != 1] [m - x >= 0]

    (a target outside {-1, 1} gets both terms, as torch's two ``where``s give.)
    """
    _check_reduction(reduction)
    dtype = np.asarray(input).dtype
    x, y = (np.asarray(a, dtype=np.float64) for a in (input, target))
    z = margin - x
    per_elem = np.where(y != 1, np.maximum(z, 0.0), 0.0) + np.where(y != -1, x, 0.0)
    slope = (y != -1) - ((y != 1) & (z >= 0)).astype(np.float64)
    loss, g = _reduce(per_elem, reduction, per_elem.size, grad_output)
    return _cast_loss(loss, dtype, reduction), _cast_grad(_sum_to(g * slope, x.shape), dtype)


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    return hinge_embedding_loss_with_grad(input, target, margin, reduction)[0]


def center_loss_with_grad(features, target, centers, reduction="mean", grad_output=None):
    """Center loss (Wen et al., ECCV 2016); returns ``(loss, grad_features, grad_centers)``.

        l_i = 0.5 ||x_i - c_{y_i}||^2
        dl/dx_i = x_i - c_{y_i},    dl/dc_j = -sum_{i: y_i = j} (x_i - c_j)

    each scaled by the reduction ("mean" divides by N). The gradients have features' dtype.
    """
    _check_reduction(reduction)
    dtype = np.asarray(features).dtype
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    t = np.asarray(target)
    diff = x - c[t]
    per_row = 0.5 * np.sum(diff * diff, axis=-1)
    loss, g = _rows_reduce(per_row, reduction, grad_output)
    grad_x = g * diff
    grad_c = np.zeros_like(c)
    np.add.at(grad_c, t.reshape(-1), -grad_x.reshape(t.size, c.shape[1]))
    return _cast_loss(loss, dtype, reduction), _cast_grad(grad_x, dtype), _cast_grad(grad_c, dtype)


def center_loss(features, target, centers, reduction="mean"):
    return center_loss_with_grad(features, target, centers, reduction)[0]


def center_loss_update(centers, features, target, alpha=0.5):
    """The paper's centre update, returned as a new array (the API updates in place):

        c_j <- c_j - alpha sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)

    Classes without rows are unchanged.
    """
    c = np.asarray(centers, dtype=np.float64)
    t = np.asarray(target).reshape(-1)
    x = np.asarray(features, dtype=np.float64).reshape(t.size, c.shape[1])
    delta = np.zeros_like(c)
    np.add.at(delta, t, c[t] - x)
    count = np.bincount(t, minlength=c.shape[0])[:, np.newaxis]
    return (c - alpha * delta / (1 + count)).astype(np.asarray(centers).dtype)
