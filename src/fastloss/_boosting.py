"""What fastloss.xgboost and fastloss.lightgbm share: a loss's task, and the
translation of a booster's labels, margins and weights into a ``*_grad_hess`` or
forward call of fastloss.functional (no kernel code here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional

#: Losses whose margins are (n, K) class scores, one per class.
MULTICLASS = ("cross_entropy",)
#: Losses of one logit per sample and 0/1 labels; soft_margin and hinge take
#: labels of -1/1, translated from the boosters' 0/1.
BINARY = ("binary_cross_entropy_with_logits", "sigmoid_focal_loss", "soft_margin_loss",
          "hinge_loss", "binary_cross_entropy")
_SIGNED = ("soft_margin_loss", "hinge_loss")
#: Losses of functional.GRAD_HESS whose target is a row of labels per sample, which
#: the boosters' one label per sample cannot carry.
_ROW_TARGETS = ("multilabel_soft_margin_loss",)
#: The losses an objective can be made of.
OBJECTIVES = tuple(name for name in functional.GRAD_HESS if name not in _ROW_TARGETS)


def task(name: str) -> str:
    """"multiclass", "binary" or "regression" for a loss of OBJECTIVES."""
    if name in _ROW_TARGETS:
        raise ValueError(f"name: {name} takes a row of labels per sample, and a booster "
                         f"gives one label per sample; call functional.{name}_grad_hess "
                         f"directly")
    if name not in OBJECTIVES:
        raise ValueError(f"name: expected a loss with a _grad_hess, one of "
                         f"{', '.join(OBJECTIVES)}; got {name!r}")
    return "multiclass" if name in MULTICLASS else "binary" if name in BINARY else "regression"


def labels_for(name: str, labels: Any, margins: np.ndarray) -> np.ndarray:
    """The booster's labels as the loss's target, checked against the margins."""
    y = np.asarray(labels)
    n = margins.shape[0]
    if y.size == 0:
        raise ValueError("labels: the training data has no labels (set label= on the "
                         "DMatrix/Dataset)")
    if y.shape != (n,):
        raise ValueError(f"labels: expected one label per sample ({n},), got shape {y.shape}")
    kind = task(name)
    if kind == "multiclass":
        if margins.ndim != 2:
            raise ValueError(f"predictions: expected (n, K) class margins for {name}, got shape "
                             f"{margins.shape} (set num_class / the objective to multiclass)")
        n_classes = margins.shape[1]
        classes = y.astype(np.int64)
        bad = (classes != y) | (classes < 0) | (classes >= n_classes)
        if np.any(bad):
            raise ValueError(f"labels: {y[np.argmax(bad)]} is not a class index of the "
                             f"{n_classes} classes (num_class) the booster predicts")
        return classes
    if margins.ndim != 1:
        raise ValueError(f"predictions: expected one margin per sample for {name}, got shape "
                         f"{margins.shape} (a multiclass booster for a {kind} loss?)")
    if kind == "binary":
        # Two reductions, not a mask of each comparison: a third of the objective's
        # time at 1e7 labels went to the masks.
        low, high = y.min(), y.max()
        if low < 0 or high > 1:
            raise ValueError(f"labels: expected 0/1 labels (or probabilities in [0, 1]) for "
                             f"{name}, got values in [{low}, {high}]")
        if name in _SIGNED:
            return 2 * y.astype(margins.dtype) - 1
    return y.astype(margins.dtype, copy=False)


def check_predictions(kind: str) -> None:
    if kind not in ("margin", "probability"):
        raise ValueError(f"predictions: expected 'margin' or 'probability', got {kind!r}")


def margins_of(predictions: Any, name: str, kind: str) -> np.ndarray:
    """Raw margins from what a metric is handed: margins as they are, or the
    built-in objective's probabilities turned back into margins (log p is a
    softmax margin; logit(p) a sigmoid one)."""
    p = np.asarray(predictions)
    check_predictions(kind)
    if kind == "margin":
        return p
    t = task(name)
    if t == "regression":
        return p
    with np.errstate(divide="ignore"):
        return np.log(p) if t == "multiclass" else np.log(p) - np.log1p(-p)


def grad_hess(name: str, margins: np.ndarray, labels: Any, weight: Any, hessian: str,
              options: dict, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(grad, hess) of loss `name` at the booster's margins, computed in `dtype`."""
    x = np.asarray(margins, dtype=dtype, order="C")
    y = labels_for(name, labels, x)
    w = None if weight is None or np.size(weight) == 0 else np.asarray(weight)
    function = getattr(functional, name + "_grad_hess")
    _, grad, hess = function(x, y, **options, sample_weight=w, hessian=hessian)
    return grad, hess


def metric_value(name: str, margins: np.ndarray, labels: Any, weight: Any,
                 options: dict) -> float:
    """The (sample-weighted) mean loss at the margins, from the forward kernels."""
    x = np.asarray(margins)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    y = labels_for(name, labels, x)
    losses = getattr(functional, name)(x, y, **options, reduction="none")
    if losses.ndim > 1:
        losses = losses.reshape(losses.shape[0], -1).sum(axis=1, dtype=np.float64)
    if weight is None or np.size(weight) == 0:
        return float(np.mean(losses, dtype=np.float64))
    w = np.asarray(weight, dtype=np.float64)
    return float(np.dot(w, losses.astype(np.float64)) / np.sum(w))
