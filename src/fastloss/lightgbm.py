"""LightGBM objectives and metrics from fastloss's losses (``pip install fastloss[lightgbm]``).

:func:`objective` turns any loss of ``fastloss.functional.GRAD_HESS`` with one label per sample
(all but multilabel_soft_margin_loss) into a custom
objective with LightGBM's own hessian convention by default, so that
``objective("cross_entropy")`` grows the same trees as ``multiclass``. The same
callable serves both APIs::

    import lightgbm as lgb
    import fastloss.lightgbm as fl

    # native: the labels (and weights) come from the Dataset
    params = {"objective": fl.objective("cross_entropy", weight=class_weights),
              "num_class": 3, "boost_from_average": False, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X, label=y, weight=w), num_boost_round=20,
                        feval=fl.metric("cross_entropy"))
    margins = booster.predict(X, raw_score=True)                 # (n, 3)

    # scikit-learn: weights are passed through (the callable has 3 parameters)
    model = lgb.LGBMRegressor(objective=fl.objective("huber_loss", delta=2.0),
                              n_estimators=20)
    model.fit(X, y, sample_weight=w)

Layouts: LightGBM 4.7 hands a native multiclass objective float64 ``(n, K)``
margins and reads back ``(n, K)`` grad/hess (it ``ravel(order="F")``s them and
casts to float32; a C-flattened 1-D array would be silently misread, so the
objective always returns the 2-D layout). The computation runs in float64, as
LightGBM's built-ins compute before they store float32. Its scikit-learn wrapper
picks the call form from the number of parameters: with 2 it would drop the
weights, so the callable takes 3, ``(labels, preds, weight)``; natively it is
called ``(preds, dataset)``.

Binary losses take 0/1 labels (-1/1 for soft margin and hinge, translated).
Intercept: the built-ins start from the label average (``boost_from_average``);
a custom objective from 0, so set ``boost_from_average=False`` to compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _boosting


def _lightgbm():
    try:
        import lightgbm
    except ImportError as error:
        raise ImportError("fastloss.lightgbm needs LightGBM: pip install fastloss[lightgbm]") from error
    return lightgbm


def _unpack(a, b, weight):
    """(predictions, labels, weights) of a native (preds, dataset) or scikit-learn
    (labels, preds, weight) call."""
    if isinstance(b, _lightgbm().Dataset):
        return a, b.get_label(), b.get_weight()
    return b, a, weight


class Objective:
    """A custom objective for ``lgb.train(params={"objective": f})`` and ``LGBM*(objective=f)``."""

    def __init__(self, name: str, hessian: str, options: dict[str, Any]):
        self.task = _boosting.task(name)
        self.name, self.hessian, self.options = name, hessian, options

    def __call__(self, a, b, weight=None):
        preds, labels, weight = _unpack(a, b, weight)
        return _boosting.grad_hess(self.name, preds, labels, weight, self.hessian, self.options,
                                   np.float64)

    def __repr__(self):
        return f"fastloss.lightgbm.objective({self.name!r}, hessian={self.hessian!r})"


def objective(name: str, *, hessian: str = "lightgbm", **loss_options) -> Objective:
    """A custom LightGBM objective from loss `name` of ``fastloss.functional.GRAD_HESS``.

    ``loss_options`` are the loss's own; the weights come from the Dataset or
    ``fit(sample_weight=)``. ``hessian="lightgbm"`` reproduces the built-ins:
    ``multiclass`` ``K/(K-1) p (1-p) w``, ``binary`` ``p (1-p) w``, ``regression``
    ``0.5 r^2`` (grad ``r``, hess 1: half of fastloss's ``mse_loss``), ``huber``
    (hessian ``w``, ``alpha`` = ``delta``), ``poisson`` ``exp(x + 0.7) w``. Bad
    labels and margins of the wrong shape raise ValueError.
    """
    _lightgbm()
    return Objective(name, hessian, loss_options)


class Metric:
    """A custom metric, the sample-weighted mean loss, as ``(name, value, False)``
    (lower is better), for ``feval=`` and the scikit-learn API's ``eval_metric=``."""

    def __init__(self, name: str, predictions: str, options: dict[str, Any]):
        _boosting.task(name)
        _boosting.check_predictions(predictions)
        self.name, self.predictions, self.options = name, predictions, options

    def __call__(self, a, b, weight=None):
        preds, labels, weight = _unpack(a, b, weight)
        margins = _boosting.margins_of(preds, self.name, self.predictions)
        return self.name, _boosting.metric_value(self.name, margins, labels, weight,
                                                 self.options), False


def metric(name: str, *, predictions: str = "margin", **loss_options) -> Metric:
    """A LightGBM evaluation metric: loss `name`'s mean over the samples (weighted).

    With a custom objective LightGBM hands a metric raw scores (the default,
    ``predictions="margin"``); with a built-in one the transformed predictions
    (probabilities for ``multiclass``/``binary``): pass ``predictions="probability"``.
    """
    _lightgbm()
    return Metric(name, predictions, loss_options)
