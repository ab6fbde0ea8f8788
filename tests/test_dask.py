"""fastloss.dask on a real distributed.LocalCluster (2 worker processes): every
function against the single-machine call of fastloss.functional on the same data,
over uneven chunks, one chunk, chunks smaller than a kernel block, empty chunks,
weights, a chunk whose targets are all ignored, float32 and float64; bit-identical
results across runs, workers, schedulers and a worker restart; the call-time
errors; xgboost.dask with a fastloss objective. Skips without dask/distributed."""

import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastloss
from fastloss import functional as F

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import fastloss.dask as fd  # noqa: E402

N, C, D = 3000, 5, 4
# Chunkings of the batch axis: one chunk; uneven chunks, one of them empty, one
# of 37 rows (185 elements, smaller than any kernel block: BLOCK_SIZES), and a
# first chunk whose targets are all ignored.
CHUNKINGS = {"one": (N,), "uneven": (1000, 0, 37, 1963)}
IGNORED = 1000
U = 2.0**-53


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(name, dtype, rng):
    """(arguments, options, reductions) of one call of loss `name` on N rows."""
    x = rng.standard_normal((N, C)).astype(dtype)
    y01 = (rng.random((N, C)) < 0.4).astype(dtype)
    pm = np.where(rng.random(N) < 0.5, -1.0, 1.0).astype(dtype)
    cls = rng.integers(0, C, N)
    cls_ignored = cls.copy()
    cls_ignored[:IGNORED] = -100
    cls_ignored[IGNORED + 5::7] = -100
    w_class = rng.uniform(0.5, 2.0, C).astype(dtype)
    w_full = rng.uniform(0.1, 2.0, (N, C)).astype(dtype)
    pos = lambda shape: rng.uniform(0.1, 3.0, shape).astype(dtype)  # noqa: E731
    sd = ("none", "mean", "sum")
    e1, e2, e3 = (rng.standard_normal((N, D)).astype(dtype) for _ in range(3))
    cases = {
        "cross_entropy": ({"input": x, "target": cls_ignored},
                          {"weight": w_class, "label_smoothing": 0.1}, sd),
        "cross_entropy/probs": ({"input": x, "target": rng.dirichlet(np.ones(C), N).astype(dtype)},
                                {"label_smoothing": 0.05}, sd),
        "cross_entropy/kdim": ({"input": rng.standard_normal((N, C, 2)).astype(dtype),
                                "target": rng.integers(0, C, (N, 2))}, {}, sd),
        "nll_loss": ({"input": np.log(rng.dirichlet(np.ones(C), N)).astype(dtype),
                      "target": cls_ignored}, {"weight": w_class}, sd),
        "multi_margin_loss": ({"input": x, "target": cls}, {"p": 2, "weight": w_class}, sd),
        "binary_cross_entropy_with_logits": ({"input": x, "target": y01, "weight": w_full},
                                             {"pos_weight": pos(C)}, sd),
        "binary_cross_entropy": ({"input": rng.uniform(0.01, 0.99, (N, C)).astype(dtype),
                                  "target": y01}, {"weight": w_class}, sd),
        "multilabel_soft_margin_loss": ({"input": x, "target": y01}, {"weight": w_class}, sd),
        "soft_margin_loss": ({"input": x, "target": 2 * y01 - 1}, {}, sd),
        "hinge_loss": ({"input": x, "target": 2 * y01 - 1}, {"squared": True}, sd),
        "sigmoid_focal_loss": ({"input": x, "target": y01}, {"gamma": 1.5}, sd),
        "kl_div": ({"input": np.log(rng.dirichlet(np.ones(C), N)).astype(dtype),
                    "target": rng.dirichlet(np.ones(C), N).astype(dtype)}, {},
                   ("none", "batchmean", "sum")),
        "mse_loss": ({"input": x, "target": x[::-1].copy(), "weight": w_full}, {}, sd),
        "l1_loss": ({"input": x, "target": x[::-1].copy(), "weight": w_full}, {}, sd),
        "huber_loss": ({"input": x, "target": x[::-1].copy(), "weight": w_full},
                       {"delta": 0.5}, sd),
        "smooth_l1_loss": ({"input": x, "target": x[::-1].copy()}, {"beta": 0.5}, sd),
        "msle_loss": ({"input": pos((N, C)), "target": pos((N, C))}, {}, sd),
        "log_cosh_loss": ({"input": x, "target": x[::-1].copy()}, {}, sd),
        "poisson_nll_loss": ({"input": x, "target": np.floor(pos((N, C)) * 3)}, {"full": True},
                             sd),
        "gaussian_nll_loss": ({"input": x, "target": x[::-1].copy(), "var": pos((N, 1))},
                              {"full": True}, sd),
        "gaussian_nll_loss/float-var": ({"input": x, "target": x[::-1].copy()}, {"var": 0.7},
                                        sd),
        "contrastive_loss": ({"input1": e1, "input2": e2,
                              "target": (rng.random(N) < 0.5).astype(dtype)}, {}, sd),
        "cosine_embedding_loss": ({"input1": e1, "input2": e2, "target": pm},
                                  {"margin": 0.2}, sd),
        "triplet_margin_loss": ({"anchor": e1, "positive": e2, "negative": e3},
                                {"swap": True}, sd),
        "margin_ranking_loss": ({"input1": e1[:, 0].copy(), "input2": e2[:, 0].copy(),
                                 "target": pm}, {"margin": 0.1}, sd),
        "hinge_embedding_loss": ({"input": np.abs(e1), "target": np.repeat(pm[:, None], D, 1)},
                                 {}, sd),
        "center_loss": ({"features": e1, "target": rng.integers(0, 3, N)},
                        {"centers": rng.standard_normal((3, D)).astype(dtype)}, sd),
    }
    return cases[name]


CASE_NAMES = ["cross_entropy", "cross_entropy/probs", "cross_entropy/kdim", "nll_loss",
              "multi_margin_loss", "binary_cross_entropy_with_logits", "binary_cross_entropy",
              "multilabel_soft_margin_loss", "soft_margin_loss", "hinge_loss",
              "sigmoid_focal_loss", "kl_div", "mse_loss", "l1_loss", "huber_loss",
              "smooth_l1_loss", "msle_loss", "log_cosh_loss", "poisson_nll_loss",
              "gaussian_nll_loss", "gaussian_nll_loss/float-var", "contrastive_loss",
              "cosine_embedding_loss", "triplet_margin_loss", "margin_ranking_loss",
              "hinge_embedding_loss", "center_loss"]


def test_every_function_has_a_case():
    covered = {c.split("/")[0] for c in CASE_NAMES}
    assert covered == {n for names in F.LOSSES.values() for n in names}
    expected = {n + suffix for names in F.LOSSES.values() for n in names
                for suffix in ("", "_with_grad")} | {n + "_grad_hess" for n in F.GRAD_HESS}
    assert set(fd.__all__) == expected
    for name in fd.__all__:
        assert getattr(fd, name).__doc__


def _chunked(arrays, rows):
    return {k: da.from_array(v, chunks=(rows,) + v.shape[1:]) for k, v in arrays.items()}


def _differs_by_rounding(name, reduction):
    """Whether a "mean" gradient's scale may differ from the single-machine one in
    the last place: mse/l1's summed weights (added in another order), multilabel's
    (g/N)/C (see fastloss.dask). Their gradients are that scale times one product,
    so they agree to a few ulps; every other gradient is bit-identical."""
    if reduction not in ("mean", "batchmean"):
        return False
    return name in ("mse_loss", "l1_loss", "multilabel_soft_margin_loss")


def _sum_bound(single, terms, dtype, denominator=1.0, per_term=1):
    """|fastloss.dask - single machine| for a reduced loss: each double total of the
    n terms is within (n - 1) u sum|l| of the exact sum, whatever the order of the
    additions, so the two differ by at most 2 (n - 1) u sum|l|, over the
    denominator; plus one last-place rounding of input's dtype (and the
    denominator's own summation error, relative, for weighted means). `terms` are
    the per-sample losses, each the sum of `per_term` kernel terms over
    `per_term` (multilabel's mean over classes)."""
    n = max(terms.size * per_term, 1)
    sum_abs = float(np.sum(np.abs(terms.astype(np.float64))))
    double = 2 * (n - 1) * U * sum_abs / abs(denominator) if denominator else 0.0
    rel = 2 * (n - 1) * U
    return double + (np.finfo(dtype).eps + rel) * abs(float(single))


def _calls(case, dtype, rows):
    """(lazy results, single-machine results, what to compare them with) of every
    form and reduction of one case."""
    name = case.split("/")[0]
    arrays, options, reductions = _data(case, dtype, np.random.default_rng(7))
    chunked = _chunked(arrays, rows)
    single_f = getattr(F, name)
    terms_of = np.asarray(single_f(**arrays, **options, reduction="none"))
    lazy, expected = [], []
    for reduction in reductions:
        lazy.append(getattr(fd, name)(**chunked, **options, reduction=reduction))
        expected.append(("loss", reduction, single_f(**arrays, **options, reduction=reduction)))
        go = 0.75
        if reduction == "none":
            go = np.random.default_rng(1).uniform(0.5, 1.5, expected[-1][2].shape).astype(dtype)
        lazy.append(getattr(fd, name + "_with_grad")(**chunked, **options, reduction=reduction,
                                                      grad_output=go))
        expected.append(("with_grad", reduction,
                         getattr(F, name + "_with_grad")(**arrays, **options, reduction=reduction,
                                                         grad_output=go)))
    if name in F.GRAD_HESS:
        # One weight per sample: the target's index shape for class rows.
        shape = terms_of.shape if name in F.LOSSES["class rows"] else (N,)
        sw = np.random.default_rng(2).uniform(0.5, 2, shape).astype(dtype)
        accepted = inspect.signature(getattr(F, name + "_grad_hess")).parameters
        gh_arrays = {k: v for k, v in arrays.items() if k in accepted}
        gh = {k: v for k, v in options.items() if k in accepted}
        lazy.append(getattr(fd, name + "_grad_hess")(
            **{k: chunked[k] for k in gh_arrays}, **gh, sample_weight=sw, hessian="xgboost"))
        expected.append(("grad_hess", "sum", getattr(F, name + "_grad_hess")(
            **gh_arrays, **gh, sample_weight=sw, hessian="xgboost")))
    return lazy, expected, (case, dtype, rows, terms_of)


def _compare(computed, expected, context, report):
    case, dtype, rows, terms_of = context
    name = case.split("/")[0]
    for got, (form, reduction, want) in zip(computed, expected):
        got = got if isinstance(got, (tuple, list)) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want)
        where = f"{case} {form} {reduction} {np.dtype(dtype).name} {len(rows)} chunks"
        for j, (g, w) in enumerate(zip(got, want)):
            if w is None:  # not differentiated (gaussian_nll_loss's float var)
                assert g is None, where
                continue
            g, w = np.asarray(g), np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape, where
            if j == 0 and w.ndim == 0:
                terms = terms_of if form != "grad_hess" else terms_of * 2  # weights <= 2
                denominator = 1.0
                if reduction in ("mean", "batchmean") and np.isfinite(w) and w != 0:
                    denominator = float(np.sum(terms, dtype=np.float64)) / float(w)
                per_term = C if name == "multilabel_soft_margin_loss" else 1
                bound = _sum_bound(w, terms, dtype, denominator, per_term)
                if np.isnan(w):
                    assert np.isnan(g), where
                    continue
                diff = abs(float(g) - float(w))
                assert diff <= bound, (where, float(g), float(w), diff, bound)
                if len(rows) == 1 and not (name == "multilabel_soft_margin_loss"
                                           and reduction == "mean"):
                    # One chunk: the kernel's own double total, rounded once, as
                    # the single-machine call rounds it (multilabel's mean is
                    # (sum/C)/N there, sum/(N C) on one machine).
                    assert g.tobytes() == w.tobytes(), (where, float(g), float(w))
                report.append(diff / abs(float(w)) if w else diff)
            elif form == "with_grad" and j == 2 and name == "center_loss":
                # The gradient of an operand handed whole: the chunks' sum, each
                # chunk's rounded to input's dtype.
                eps = np.finfo(dtype).eps
                np.testing.assert_allclose(g, w, rtol=(len(rows) + 2) * eps,
                                           atol=(len(rows) + 2) * eps * np.abs(w).max(),
                                           err_msg=where)
            elif j > 0 and _differs_by_rounding(name, reduction):
                eps = np.finfo(dtype).eps
                np.testing.assert_allclose(g, w, rtol=4 * eps, atol=0, err_msg=where)
            else:
                np.testing.assert_array_equal(g, w, err_msg=where)


@pytest.fixture(scope="module")
def report():
    diffs = []
    yield diffs
    if diffs:
        print(f"\nfastloss.dask vs single machine: max relative difference of a reduced loss "
              f"{max(diffs):.3g} over {len(diffs)} results")


@pytest.mark.parametrize("case", CASE_NAMES)
def test_matches_single_machine(client, case, report):
    calls = [_calls(case, dtype, rows) for dtype in (np.float32, np.float64)
             for rows in CHUNKINGS.values()]
    computed = dask.compute([lazy for lazy, _, _ in calls])[0]  # on the client
    for got, (_, expected, context) in zip(computed, calls):
        _compare(got, expected, context, report)


# ------------------------------------------------------------- corner cases

def test_corner_cases_as_single_machine(client):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((600, 4))
    t = np.full(600, -100)
    dx, dt = da.from_array(x, chunks=200), da.from_array(t, chunks=200)
    # Every target ignored: NaN mean, zero gradient; 0 sum.
    loss, grad = client.compute(fd.cross_entropy_with_grad(dx, dt), sync=True)
    assert np.isnan(loss) and np.isnan(F.cross_entropy(x, t))
    np.testing.assert_array_equal(grad, F.cross_entropy_with_grad(x, t)[1])
    assert client.compute(fd.cross_entropy(dx, dt, reduction="sum"), sync=True) == 0
    # An empty array: NaN mean, 0 sum, empty per-sample losses and gradients.
    e, et = da.zeros((0, 4), chunks=(1, 4)), da.zeros((0,), dtype=np.int64, chunks=1)
    mean, total, none = dask.compute(fd.cross_entropy(e, et), fd.mse_loss(e, e, "sum"),
                                     fd.cross_entropy(e, et, reduction="none"))
    assert np.isnan(mean) and total == 0 and none.shape == (0,)
    # NaN propagates from one chunk into the mean and only into its own row's gradient.
    xn = x.copy()
    xn[450, 1] = np.nan
    tn = rng.integers(0, 4, 600)
    loss, grad = client.compute(fd.cross_entropy_with_grad(
        da.from_array(xn, chunks=200), da.from_array(tn, chunks=200)), sync=True)
    want = F.cross_entropy_with_grad(xn, tn)
    assert np.isnan(loss) and np.isnan(want[0])
    np.testing.assert_array_equal(grad, want[1])


def test_float16_is_computed_in_float32_like_functional(client):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 3)).astype(np.float16)
    t = rng.integers(0, 3, 500)
    loss, grad = client.compute(fd.cross_entropy_with_grad(
        da.from_array(x, chunks=100), da.from_array(t, chunks=100)), sync=True)
    want = F.cross_entropy_with_grad(x, t)
    assert loss.dtype == np.float16 and loss == want[0]
    np.testing.assert_array_equal(grad, want[1])


def test_numpy_operands_are_wrapped_with_input_chunks(client):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((700, 3))
    t = rng.integers(0, 3, 700)
    got = fd.cross_entropy(da.from_array(x, chunks=((300, 400), (3,))), t, reduction="none")
    assert got.chunks == ((300, 400),)
    np.testing.assert_array_equal(client.compute(got, sync=True),
                                  F.cross_entropy(x, t, reduction="none"))


def test_results_are_lazy_and_chunked_like_input():
    x = da.ones((100, 3), chunks=(30, 3))
    t = da.zeros(100, dtype=np.int64, chunks=30)
    loss, grad = fd.cross_entropy_with_grad(x, t, reduction="mean")
    assert isinstance(loss, da.Array) and loss.shape == () and loss.dtype == np.float64
    assert grad.chunks == x.chunks
    assert fd.mse_loss(x, x, reduction="none").chunks == x.chunks


# ------------------------------------------------------------- determinism

def _determinism_graphs():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6000, 7)).astype(np.float32)
    t = rng.integers(0, 7, 6000)
    t[:1000] = -100
    w = rng.uniform(0.5, 2, 7).astype(np.float32)
    dx, dt = da.from_array(x, chunks=(456, 7)), da.from_array(t, chunks=456)
    y = rng.standard_normal((6000, 7)).astype(np.float32)
    return [fd.cross_entropy(dx, dt, weight=w), fd.cross_entropy_with_grad(dx, dt, weight=w),
            fd.mse_loss(dx, da.from_array(y, chunks=(456, 7)), reduction="sum"),
            fd.cross_entropy_grad_hess(dx, da.from_array(np.maximum(t, 0), chunks=456))]


def _flat(results):
    out = []
    for r in results:
        out += [np.asarray(a) for a in (r if isinstance(r, (tuple, list)) else (r,))]
    return out


def _assert_bits_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_bit_identical_across_runs_workers_and_schedulers(client):
    graphs = _determinism_graphs()
    both = _flat(dask.compute(*graphs))
    _assert_bits_equal(both, _flat(dask.compute(*graphs)))
    one_worker = list(client.scheduler_info()["workers"])[:1]
    _assert_bits_equal(both, _flat(dask.compute(*graphs, workers=one_worker)))
    for scheduler, workers in (("threads", 1), ("threads", 4), ("synchronous", None),
                               ("processes", 2)):
        got = dask.compute(*graphs, scheduler=scheduler, num_workers=workers)
        _assert_bits_equal(both, _flat(got))
    # A fresh graph of the same call is the same graph.
    _assert_bits_equal(both, _flat(dask.compute(*_determinism_graphs())))


def _slowly(block):
    time.sleep(0.25)
    return block


def test_killed_worker_result_still_exact(client):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8000, 6))
    t = rng.integers(0, 6, 8000)
    want = F.cross_entropy_with_grad(x, t, label_smoothing=0.2)
    dx = da.from_array(x, chunks=500).map_blocks(_slowly, dtype=x.dtype)
    loss, grad = fd.cross_entropy_with_grad(dx, da.from_array(t, chunks=500),
                                            label_smoothing=0.2)
    pids = client.run(os.getpid)
    futures = client.compute([loss, grad])
    time.sleep(0.6)
    victim = next(iter(pids))
    os.kill(pids[victim], signal.SIGKILL)
    got_loss, got_grad = client.gather(futures)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed one
    assert pids[victim] not in client.run(os.getpid).values()
    assert abs(got_loss - want[0]) <= _sum_bound(want[0], F.cross_entropy(
        x, t, label_smoothing=0.2, reduction="none"), np.float64, 8000)
    np.testing.assert_array_equal(got_grad, want[1])


# ------------------------------------------------------------------ errors

def test_bad_chunking_raises_at_call_time(client):
    x = da.ones((100, 6), chunks=(50, 3))
    t = da.zeros(100, dtype=np.int64, chunks=50)
    with pytest.raises(ValueError, match=r"input: cross_entropy needs each row's classes"):
        fd.cross_entropy(x, t)
    with pytest.raises(ValueError, match="rechunk=True"):
        fd.nll_loss_with_grad(x, t)
    xs = da.ones((100, 6), chunks=(50, 6))
    with pytest.raises(ValueError, match=r"target: chunks .* differ from input's"):
        fd.cross_entropy(xs, da.zeros(100, dtype=np.int64, chunks=40))
    with pytest.raises(ValueError, match=r"target: chunks .* differ from input's"):
        fd.mse_loss(xs, da.ones((100, 6), chunks=(50, 3)))
    with pytest.raises(ValueError, match=r"target: expected 100 rows"):
        fd.mse_loss(xs, da.ones((90, 6), chunks=(45, 6)))
    # rechunk=True rechunks instead, to the same result.
    xr = np.random.default_rng(9).standard_normal((100, 6))
    tr = np.arange(100) % 6
    got = fd.cross_entropy(da.from_array(xr, chunks=(50, 3)), da.from_array(tr, chunks=40),
                           rechunk=True)
    assert client.compute(got, sync=True) == F.cross_entropy(xr, tr)


def test_bad_arguments_raise_at_call_time():
    x = da.ones((100, 6), chunks=(50, 6))
    t = da.zeros(100, dtype=np.int64, chunks=50)
    with pytest.raises(ValueError, match="reduction"):
        fd.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        fd.cross_entropy(x, t, label_smoothing=2.0)
    with pytest.raises(ValueError, match="weight"):
        fd.cross_entropy(x, t, weight=np.ones(5))
    with pytest.raises(ValueError, match="delta"):
        fd.huber_loss(x, x, delta=-1.0)
    with pytest.raises(TypeError, match="input"):
        fd.mse_loss(da.ones((10, 2), dtype=np.int64, chunks=5), da.ones((10, 2), chunks=5))
    with pytest.raises(ValueError, match="input: fastloss.dask needs a batch axis"):
        fd.cross_entropy(da.ones(6, chunks=3), da.zeros((), dtype=np.int64))
    with pytest.raises(TypeError, match="out"):
        fd.mse_loss_with_grad(x, x, out=np.empty((100, 6)))
    with pytest.raises(ValueError, match="grad_output"):
        fd.mse_loss_with_grad(x, x, reduction="mean", grad_output=x)
    with pytest.raises(TypeError, match="weight: expected a NumPy array"):
        fd.cross_entropy(x, t, weight=da.ones(6, chunks=6))
    with pytest.raises(ValueError, match="hessian"):
        fd.cross_entropy_grad_hess(x, t, hessian="catboost")


def test_class_index_out_of_range_raises_at_compute(client):
    x = da.ones((100, 3), chunks=50)
    bad = da.from_array(np.arange(100) % 4, chunks=50)
    loss = fd.cross_entropy(x, bad)
    with pytest.raises(IndexError, match="target"):
        client.compute(loss, sync=True)


# --------------------------------------------------------------- xgboost

def test_xgboost_dask_with_fastloss_objective(client):
    xgb = pytest.importorskip("xgboost")
    xgb_dask = pytest.importorskip("xgboost.dask")
    import fastloss.xgboost as fx
    rng = np.random.default_rng(10)
    n, k = 2000, 3
    X = rng.integers(0, 16, (n, 4)).astype(np.float32)  # 16 values: exact quantiles
    y = np.argmax(X[:, :k] + 4 * rng.standard_normal((n, k)), axis=1).astype(np.float32)
    params = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "num_class": k,
              "base_score": 0.0, "nthread": 1, "seed": 0}
    objective = fx.objective("cross_entropy")
    single = xgb.train(params, xgb.DMatrix(X, label=y), 5, obj=objective)
    want = single.predict(xgb.DMatrix(X), output_margin=True)
    dX, dy = da.from_array(X, chunks=(1000, 4)), da.from_array(y, chunks=1000)
    try:
        dtrain = xgb_dask.DaskDMatrix(client, dX, dy)
        trained = xgb_dask.train(client, params, dtrain, 5, obj=objective)
    except (TypeError, AttributeError, ImportError) as error:  # an incompatible dask
        pytest.skip(f"xgboost.dask does not work with this dask: {error}")
    got = xgb_dask.predict(client, trained, dX, output_margin=True).compute()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------- optional import

def test_import_without_dask_names_the_extra():
    parent = str(Path(fastloss.__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {parent!r})\n"
            "sys.modules['dask'] = None\n"
            "import fastloss.dask as fd, numpy as np\n"
            "try:\n    fd.mse_loss(np.ones(3), np.ones(3))\n"
            "except ImportError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install fastloss[dask]" in proc.stdout
