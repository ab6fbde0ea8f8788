"""fastloss.xgboost and fastloss.lightgbm with the real boosters: equivalence with
their built-in objectives, what the built-ins lack, sample weights through the
native and scikit-learn APIs, bad input. Small and single-threaded."""

import numpy as np
import pytest

ROUNDS = 20
N, D, K = 2000, 6, 4


def _data(seed=0, n=N, n_classes=K, minority=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    scores = X[:, :n_classes] * 1.5 + 0.5 * rng.standard_normal((n, n_classes))
    y = np.argmax(scores, axis=1).astype(np.float64)
    if minority is not None:  # binary: a rare positive class
        y = (X[:, 0] + 0.8 * X[:, 1] + 0.7 * rng.standard_normal(n) > minority).astype(float)
    return X, y, rng.random(n) * 2 + 0.1


# --------------------------------------------------------------------- XGBoost

@pytest.fixture(scope="module")
def xgb():
    return pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def fx(xgb):
    import fastloss.xgboost
    return fastloss.xgboost


XGB_PARAMS = {"tree_method": "hist", "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": 0}


def _xgb_margins(xgb, params, dtrain, obj=None):
    booster = xgb.train(params, dtrain, ROUNDS, obj=obj)
    return booster.predict(dtrain, output_margin=True)


# XGBoost >= 2.1 warns (FutureWarning) about a flat multiclass grad/hess: ours is (n, K).
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_multiclass_matches_softprob(xgb, fx, weighted):
    X, y, w = _data()
    dtrain = xgb.DMatrix(X, label=y, weight=w if weighted else None)
    params = {**XGB_PARAMS, "num_class": K, "base_score": 0.0}
    builtin = _xgb_margins(xgb, {**params, "objective": "multi:softprob"}, dtrain)
    ours = _xgb_margins(xgb, {**params, "objective": "multi:softprob"}, dtrain,
                        fx.objective("cross_entropy"))
    assert builtin.shape == ours.shape == (N, K)
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-5)


def test_xgboost_binary_matches_logistic(xgb, fx):
    X, y, w = _data(minority=0.5)
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    params = {**XGB_PARAMS, "objective": "binary:logistic", "base_score": 0.5}
    builtin = _xgb_margins(xgb, params, dtrain)
    ours = _xgb_margins(xgb, params, dtrain, fx.objective("binary_cross_entropy_with_logits"))
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-5)


def test_xgboost_regression_matches_squarederror(xgb, fx):
    X, _, w = _data()
    y = X[:, 0] * 2 + np.sin(X[:, 1]) + 0.1 * X[:, 2] ** 2
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    params = {**XGB_PARAMS, "objective": "reg:squarederror", "base_score": 0.0}
    builtin = _xgb_margins(xgb, params, dtrain)
    ours = _xgb_margins(xgb, params, dtrain, fx.objective("mse_loss"))
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-5)
    # fastloss's own r^2 convention (grad 2r, hess 2) grows other trees under reg_lambda=1
    exact = _xgb_margins(xgb, params, dtrain, fx.objective("mse_loss", hessian="exact"))
    assert np.max(np.abs(exact - builtin)) > 1e-3


def test_xgboost_poisson_matches_count_poisson(xgb, fx):
    X, _, w = _data()
    y = np.random.default_rng(2).poisson(np.exp(0.5 * X[:, 0])).astype(float)
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    # count:poisson's base_score is a rate: 1 is the margin 0 a custom objective starts from
    params = {**XGB_PARAMS, "objective": "count:poisson", "base_score": 1.0}
    builtin = _xgb_margins(xgb, params, dtrain)
    ours = _xgb_margins(xgb, params, dtrain, fx.objective("poisson_nll_loss"))
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-5)


def test_xgboost_sklearn_api_and_sample_weight(xgb, fx):
    X, y, w = _data()
    model = xgb.XGBClassifier(objective=fx.objective("cross_entropy"), n_estimators=ROUNDS,
                              base_score=0.0, **{k: v for k, v in XGB_PARAMS.items()
                                                 if k not in ("nthread", "seed", "eta")},
                              learning_rate=0.3, n_jobs=1, random_state=0)
    model.fit(X, y.astype(int), sample_weight=w)
    native = _xgb_margins(xgb, {**XGB_PARAMS, "num_class": K, "base_score": 0.0,
                                "objective": "multi:softprob"},
                          xgb.DMatrix(X, label=y, weight=w), fx.objective("cross_entropy"))
    sk = model.get_booster().predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(sk, native, rtol=0, atol=1e-5)
    unweighted = _xgb_margins(xgb, {**XGB_PARAMS, "num_class": K, "base_score": 0.0},
                              xgb.DMatrix(X, label=y), fx.objective("cross_entropy"))
    assert np.max(np.abs(unweighted - native)) > 1e-2  # the weights did reach the objective


def _recall(margins, y):
    return np.mean(margins[y == 1] > 0)


def test_xgboost_focal_and_class_weights_raise_minority_recall(xgb, fx):
    X, y, _ = _data(seed=3, minority=2.0)
    assert 0.02 < y.mean() < 0.15
    dtrain = xgb.DMatrix(X, label=y)
    params = {**XGB_PARAMS, "base_score": 0.0, "max_depth": 3}
    plain = _xgb_margins(xgb, params, dtrain, fx.objective("binary_cross_entropy_with_logits"))
    focal = _xgb_margins(xgb, params, dtrain,
                         fx.objective("sigmoid_focal_loss", alpha=0.75, gamma=2.0))
    assert _recall(focal, y) > _recall(plain, y) + 0.05
    # class-weighted and label-smoothed cross-entropy on the same data, two classes
    params2 = {**params, "num_class": 2}
    ce = _xgb_margins(xgb, params2, dtrain, fx.objective("cross_entropy"))
    weighted = _xgb_margins(xgb, params2, dtrain,
                            fx.objective("cross_entropy", weight=np.array([1.0, 8.0])))
    assert _recall(weighted[:, 1] - weighted[:, 0], y) > _recall(ce[:, 1] - ce[:, 0], y) + 0.05
    smoothed = _xgb_margins(xgb, params2, dtrain,
                            fx.objective("cross_entropy", label_smoothing=0.2))
    # smoothing caps the confidence: the margins stay near log(0.9 / 0.1)
    assert np.max(np.abs(smoothed[:, 1] - smoothed[:, 0])) < 0.5 * np.max(np.abs(ce[:, 1] - ce[:, 0]))
    assert np.max(np.abs(smoothed[:, 1] - smoothed[:, 0])) < np.log(0.9 / 0.1) + 0.5


def test_xgboost_metric(xgb, fx):
    import fastloss
    X, y, w = _data()
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    log = {}
    booster = xgb.train({**XGB_PARAMS, "num_class": K, "base_score": 0.0,
                         "disable_default_eval_metric": 1}, dtrain, 3,
                        obj=fx.objective("cross_entropy"), evals=[(dtrain, "train")],
                        custom_metric=fx.metric("cross_entropy"), evals_result=log)
    margins = booster.predict(dtrain, output_margin=True)
    expected = np.dot(w, fastloss.cross_entropy(margins, y.astype(int), reduction="none")) / w.sum()
    assert log["train"]["cross_entropy"][-1] == pytest.approx(expected, rel=1e-5)
    # with the built-in objective the metric is handed probabilities
    builtin = xgb.train({**XGB_PARAMS, "num_class": K, "base_score": 0.0,
                         "objective": "multi:softprob", "eval_metric": "mlogloss"}, dtrain, 3,
                        evals=[(dtrain, "train")], evals_result=log,
                        custom_metric=fx.metric("cross_entropy", predictions="probability"))
    assert log["train"]["cross_entropy"][-1] == pytest.approx(log["train"]["mlogloss"][-1],
                                                             rel=1e-4)
    assert builtin is not None


def test_xgboost_bad_input(xgb, fx):
    X, y, _ = _data()
    obj = fx.objective("cross_entropy")
    params = {**XGB_PARAMS, "num_class": K - 1, "base_score": 0.0}
    with pytest.raises(ValueError, match="not a class index"):
        xgb.train(params, xgb.DMatrix(X, label=y), 1, obj=obj)
    with pytest.raises(ValueError, match="no labels"):
        xgb.train({**params, "num_class": K}, xgb.DMatrix(X), 1, obj=obj)
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        xgb.train(XGB_PARAMS, xgb.DMatrix(X, label=y), 1, obj=obj)
    with pytest.raises(ValueError, match="0/1 labels"):
        xgb.train(XGB_PARAMS, xgb.DMatrix(X, label=y), 1,
                  obj=fx.objective("binary_cross_entropy_with_logits"))
    with pytest.raises(ValueError, match="name"):
        fx.objective("nll_loss")
    with pytest.raises(ValueError, match="row of labels per sample"):
        fx.objective("multilabel_soft_margin_loss")


# -------------------------------------------------------------------- LightGBM

@pytest.fixture(scope="module")
def lgb():
    return pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def fl(lgb):
    import fastloss.lightgbm
    return fastloss.lightgbm


LGB_PARAMS = {"num_leaves": 15, "learning_rate": 0.3, "num_threads": 1, "verbose": -1,
              "boost_from_average": False, "deterministic": True, "force_row_wise": True,
              "seed": 0}


def _lgb_margins(lgb, params, X, y, w=None):
    booster = lgb.train(params, lgb.Dataset(X, label=y, weight=w), ROUNDS)
    return booster.predict(X, raw_score=True)


@pytest.mark.parametrize("builtin, name, options, labels", [
    ("multiclass", "cross_entropy", {}, "multiclass"),
    ("binary", "binary_cross_entropy_with_logits", {}, "binary"),
    ("regression", "mse_loss", {}, "regression"),
    ("huber", "huber_loss", {"delta": 0.7}, "regression"),
    ("poisson", "poisson_nll_loss", {}, "counts"),
])
def test_lightgbm_matches_builtin(lgb, fl, builtin, name, options, labels):
    X, y, w = _data(minority=0.5 if labels == "binary" else None)
    if labels == "regression":
        y = X[:, 0] * 2 + np.sin(X[:, 1]) + np.random.default_rng(1).standard_t(2, N) * 0.5
    elif labels == "counts":
        y = np.random.default_rng(2).poisson(np.exp(0.5 * X[:, 0])).astype(float)
    params = dict(LGB_PARAMS)
    if labels == "multiclass":
        params["num_class"] = K
    if builtin == "huber":
        params["alpha"] = options["delta"]
    ref = _lgb_margins(lgb, {**params, "objective": builtin}, X, y, w)
    ours = _lgb_margins(lgb, {**params, "objective": fl.objective(name, **options)}, X, y, w)
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_lightgbm_sklearn_api_and_sample_weight(lgb, fl):
    X, y, w = _data()
    model = lgb.LGBMClassifier(objective=fl.objective("cross_entropy"), n_estimators=ROUNDS,
                               **{k: v for k, v in LGB_PARAMS.items()})
    model.fit(X, y.astype(int), sample_weight=w)
    native = _lgb_margins(lgb, {**LGB_PARAMS, "num_class": K,
                                "objective": fl.objective("cross_entropy")}, X, y, w)
    np.testing.assert_allclose(model.predict(X, raw_score=True), native, rtol=0, atol=1e-10)
    unweighted = _lgb_margins(lgb, {**LGB_PARAMS, "num_class": K,
                                    "objective": fl.objective("cross_entropy")}, X, y)
    assert np.max(np.abs(unweighted - native)) > 1e-2


def test_lightgbm_metric_and_bad_input(lgb, fl):
    import fastloss
    X, y, w = _data()
    log = {}
    booster = lgb.train({**LGB_PARAMS, "num_class": K, "metric": "None",
                         "objective": fl.objective("cross_entropy")},
                        lgb.Dataset(X, label=y, weight=w), 3, valid_sets=[lgb.Dataset(X, y, weight=w)],
                        valid_names=["train"], feval=fl.metric("cross_entropy"),
                        callbacks=[lgb.record_evaluation(log)])
    margins = booster.predict(X, raw_score=True)
    expected = np.dot(w, fastloss.cross_entropy(margins, y.astype(int), reduction="none")) / w.sum()
    assert log["train"]["cross_entropy"][-1] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="not a class index"):
        lgb.train({**LGB_PARAMS, "num_class": K - 1, "objective": fl.objective("cross_entropy")},
                  lgb.Dataset(X, label=y), 1)
    with pytest.raises(ValueError, match="0/1 labels"):
        lgb.train({**LGB_PARAMS, "objective": fl.objective("binary_cross_entropy_with_logits")},
                  lgb.Dataset(X, label=y), 1)
