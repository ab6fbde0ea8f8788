"""XGBoost objectives and metrics from fastloss's losses (``pip install fastloss[xgboost]``).

:func:`objective` turns any loss of ``fastloss.functional.GRAD_HESS`` with one label per sample
(all but multilabel_soft_margin_loss) into a custom
objective: gradient and hessian from one pass of its ``*_grad_hess``, with
XGBoost's own hessian convention by default, so that ``objective("cross_entropy")``
grows the same trees as ``multi:softprob``. The same callable serves both APIs::

    import xgboost as xgb
    import fastloss.xgboost as fx

    # native: the labels (and weights) come from the DMatrix
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    booster = xgb.train({"num_class": 3, "base_score": 0.0, "tree_method": "hist"}, dtrain,
                        num_boost_round=20, obj=fx.objective("cross_entropy",
                                                            label_smoothing=0.1),
                        custom_metric=fx.metric("cross_entropy"))
    margins = booster.predict(dtrain, output_margin=True)      # (n, 3)

    # scikit-learn: sample_weight is passed through
    model = xgb.XGBClassifier(objective=fx.objective("sigmoid_focal_loss", gamma=2.0),
                              n_estimators=20, base_score=0.0)
    model.fit(X, y01, sample_weight=w)

Multiclass losses (``cross_entropy``) take ``(n, K)`` margins and return ``(n, K)``
grad/hess, the layout XGBoost >= 2.1 wants (it reads them through
``__array_interface__``, so no copy is made on the Python side). Binary losses
(BCE, focal, soft margin, hinge) take 0/1 labels (translated to -1/1 for soft
margin and hinge); the others are regressions. The computation runs in the
margins' dtype (float32, as XGBoost hands them and as its built-ins compute).

Intercept: a custom objective starts from ``base_score`` as a raw margin, a
built-in from its estimate of it; set ``base_score`` (0 for multiclass; 0 here is
the margin the built-in ``binary:logistic`` reaches with ``base_score=0.5``) to
compare the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _boosting


def _xgboost():
    try:
        import xgboost
    except ImportError as error:
        raise ImportError("fastloss.xgboost needs XGBoost: pip install fastloss[xgboost]") from error
    return xgboost


class Objective:
    """A custom objective for ``xgb.train(obj=...)`` (``f(predt, dtrain)``) and for the
    scikit-learn API's ``objective=`` (``f(y_true, y_pred, sample_weight=None)``).
    Its signature names ``sample_weight``: XGBoost's scikit-learn wrapper passes
    weights only to such a callable (and raises ValueError otherwise)."""

    def __init__(self, name: str, hessian: str, options: dict[str, Any]):
        self.task = _boosting.task(name)
        self.name, self.hessian, self.options = name, hessian, options
        self.__name__ = name

    def __call__(self, a, b, sample_weight=None):
        if isinstance(b, _xgboost().DMatrix):
            predt, labels, weight = a, b.get_label(), b.get_weight()
        else:
            labels, predt, weight = a, b, sample_weight
        predt = np.asarray(predt)
        dtype = predt.dtype if predt.dtype in (np.float32, np.float64) else np.float32
        return _boosting.grad_hess(self.name, predt, labels, weight, self.hessian, self.options,
                                   dtype)

    def __repr__(self):
        return f"fastloss.xgboost.objective({self.name!r}, hessian={self.hessian!r})"


def objective(name: str, *, hessian: str = "xgboost", **loss_options) -> Objective:
    """A custom XGBoost objective from loss `name` of ``fastloss.functional.GRAD_HESS``.

    ``loss_options`` are the loss's own (``weight=``, ``label_smoothing=``, ``delta=``,
    ``alpha=``/``gamma=``, ...); the sample weights come from the DMatrix or
    ``fit(sample_weight=)``. ``hessian="xgboost"`` reproduces the built-ins:
    ``multi:softprob`` ``max(2 p (1-p) w, 1e-16)``, ``binary:logistic``
    ``max(p (1-p), 1e-16) w``, ``reg:squarederror`` ``0.5 r^2`` (grad ``r``, hess 1,
    half of fastloss's ``mse_loss``); ``"exact"`` and ``"lightgbm"`` are the
    other conventions of the ``*_grad_hess`` functions. Bad labels (outside the
    classes, outside [0, 1] for a binary loss, none at all) and margins of the
    wrong shape raise ValueError before XGBoost sees anything.
    """
    _xgboost()
    return Objective(name, hessian, loss_options)


class Metric:
    """A custom metric: the sample-weighted mean loss. ``xgb.train(custom_metric=m)``
    calls ``m(predt, dtrain)`` and gets ``(name, value)``; the scikit-learn API's
    ``eval_metric=m`` calls ``m(y_true, y_pred[, sample_weight=])`` and gets the value."""

    def __init__(self, name: str, predictions: str, options: dict[str, Any]):
        _boosting.task(name)
        _boosting.check_predictions(predictions)
        self.name, self.predictions, self.options = name, predictions, options
        self.__name__ = name

    def __call__(self, a, b, sample_weight=None):
        native = isinstance(b, _xgboost().DMatrix)
        if native:
            predt, labels, weight = a, b.get_label(), b.get_weight()
        else:
            labels, predt, weight = a, b, sample_weight
        margins = _boosting.margins_of(predt, self.name, self.predictions)
        value = _boosting.metric_value(self.name, margins, labels, weight, self.options)
        return (self.name, value) if native else value


def metric(name: str, *, predictions: str = "margin", **loss_options) -> Metric:
    """An XGBoost evaluation metric: loss `name`'s mean over the samples (weighted).

    With a custom objective XGBoost hands a metric raw margins (the default,
    ``predictions="margin"``); with a built-in objective it hands the
    transformed predictions, probabilities for ``multi:softprob`` and
    ``binary:logistic``: pass ``predictions="probability"`` and the metric takes
    ``log p`` (softmax) or ``logit(p)`` (sigmoid) as margins.
    """
    _xgboost()
    return Metric(name, predictions, loss_options)
