"""The metric-learning losses (fastloss._pairs, kernels in _pairs.pxi): against the
reference, against torch (its functions, or the torch-ops formula with autograd for
the losses torch lacks), against finite differences, at the margins and other corner
cases, bit-identical across thread counts, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss import _dispatch, reference

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (np.float32, np.float64)
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
THRESHOLD = _dispatch.kernels.PARALLEL_THRESHOLD


# ------------------------------------------------------------------------- the cases
# Each builds (name, args, kwargs, n_grads) of one loss for a dtype: inputs placed
# so that the losses are active on some rows and inactive on others.

def _rows(rng, n, d, dtype, k=2, spread=1.0):
    return [(rng.standard_normal((n, d)) * spread).astype(dtype) for _ in range(k)]


def build(name, rng, dtype, n=37, d=19):
    if name == "contrastive":
        x1, x2 = _rows(rng, n, d, dtype, spread=0.3)
        y = (rng.random(n) < 0.5).astype(dtype)
        return "contrastive_loss", (x1, x2, y), {"margin": 2.0}, 2
    if name == "cosine":
        x1, x2 = _rows(rng, n, d, dtype)
        y = rng.choice([-1.0, 1.0, 0.0], n, p=[0.45, 0.45, 0.1]).astype(dtype)
        return "cosine_embedding_loss", (x1, x2, y), {"margin": 0.1}, 2
    if name.startswith("triplet"):
        a, p, q = _rows(rng, n, d, dtype, 3)
        p = (a + 0.5 * p).astype(dtype)
        p_norm = {"triplet": 2, "triplet_p1": 1, "triplet_p3": 3, "triplet_p05": 0.5,
                  "triplet_pinf": np.inf, "triplet_swap_pinf": np.inf}
        swap = name.startswith("triplet_swap")
        return "triplet_margin_loss", (a, p, q), {"margin": 1.5, "swap": swap,
                                                  "p": p_norm.get(name, 2)}, 3
    if name == "margin_ranking":
        x1, x2 = _rows(rng, n, d, dtype)
        y = rng.choice([-1.0, 1.0], (n, d)).astype(dtype)
        return "margin_ranking_loss", (x1, x2, y), {"margin": 0.3}, 2
    if name == "margin_ranking_broadcast":  # torch's broadcasting: (n, 1), (1, d), (n, d)
        x1 = rng.standard_normal((n, 1)).astype(dtype)
        x2 = rng.standard_normal((1, d)).astype(dtype)
        y = rng.choice([-1.0, 1.0], (n, d)).astype(dtype)
        return "margin_ranking_loss", (x1, x2, y), {"margin": 0.3}, 2
    if name == "hinge_embedding":
        x = (rng.standard_normal((n, d)) * 1.5).astype(dtype)
        y = rng.choice([-1.0, 1.0, 0.5], (n, d)).astype(dtype)
        return "hinge_embedding_loss", (x, y), {"margin": 0.8}, 1
    if name == "hinge_embedding_broadcast":  # an input (d,) against targets (n, d)
        x = (rng.standard_normal(d) * 1.5).astype(dtype)
        y = rng.choice([-1.0, 1.0, 0.5], (n, d)).astype(dtype)
        return "hinge_embedding_loss", (x, y), {"margin": 0.8}, 1
    if name == "center":
        c = rng.standard_normal((7, d)).astype(dtype)
        t = rng.integers(0, 6, n)  # class 6 has no rows
        x = (c[t] + 0.5 * rng.standard_normal((n, d))).astype(dtype)
        return "center_loss", (x, t, c), {}, 2
    raise KeyError(name)


CASES = ("contrastive", "cosine", "triplet", "triplet_swap", "triplet_p1", "triplet_p3",
         "triplet_p05", "triplet_pinf", "triplet_swap_pinf", "margin_ranking",
         "margin_ranking_broadcast", "hinge_embedding", "hinge_embedding_broadcast", "center")


def is_element_loss(name):
    return name.startswith(("margin_ranking", "hinge_embedding"))


def loss_shape(name, args):
    if is_element_loss(name):  # the operands' broadcast shape
        return np.broadcast_shapes(*(a.shape for a in args))
    return args[0].shape[:-1]


def call(fname, args, kwargs, **more):
    return getattr(fl, fname + "_with_grad")(*args, **kwargs, **more)


# -------------------------------------------------------------- against the reference

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_reference(simd_path, name, dtype, reduction):
    rng = np.random.default_rng(hash((name, reduction)) % 2**32)
    fname, args, kwargs, n_grads = build(name, rng, dtype)
    grad_output = (rng.standard_normal(loss_shape(name, args)).astype(dtype)
                   if reduction == "none" else 0.75)
    copies = [np.copy(a) for a in args]
    got = call(fname, args, kwargs, reduction=reduction, grad_output=grad_output)
    want = getattr(reference, fname + "_with_grad")(*args, **kwargs, reduction=reduction,
                                                    grad_output=grad_output)
    assert len(got) == n_grads + 1
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == dtype and np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, **TOL[dtype])
    loss_only = getattr(fl, fname)(*args, **kwargs, reduction=reduction)
    np.testing.assert_array_equal(loss_only, got[0])
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)  # inputs never modified


@pytest.mark.parametrize("name", CASES)
def test_one_row_and_float16(name):
    """Rows of (D,) (one pair) give 0-d losses; float16 is computed in float32 and cast back."""
    rng = np.random.default_rng(3)
    fname, args, kwargs, _ = build(name, rng, np.float64, n=1)
    if not is_element_loss(name):
        one = tuple(a[0] if i != 2 or name != "center" else a for i, a in enumerate(args))
        got = call(fname, one, kwargs, reduction="none")
        want = call(fname, args, kwargs, reduction="none")
        assert got[0].shape == ()
        np.testing.assert_allclose(got[0], want[0][0], rtol=1e-14)
        np.testing.assert_allclose(got[1], want[1][0], rtol=1e-14)
    half = tuple(a.astype(np.float16) if a.dtype.kind == "f" else a for a in args)
    got = call(fname, half, kwargs)
    want = call(fname, tuple(a.astype(np.float32) if a.dtype.kind == "f" else a for a in half),
                kwargs)
    assert all(np.asarray(g).dtype == np.float16 for g in got)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, np.asarray(w).astype(np.float16))


# ------------------------------------------------------------------- against torch

def _torch():
    return pytest.importorskip("torch")


def torch_result(name, args, kwargs, reduction, grad_output):
    """The loss and gradients torch gives (its function, or the torch-ops formula)."""
    t = _torch()
    name = name.removesuffix("_broadcast")
    F = t.nn.functional
    tensors = [t.tensor(a, requires_grad=a.dtype.kind == "f" and not (
        name in ("contrastive", "cosine", "margin_ranking", "hinge_embedding")
        and i == len(args) - 1)) for i, a in enumerate(args)]
    if name == "contrastive":
        x1, x2, y = tensors
        d = F.pairwise_distance(x1, x2)
        per = 0.5 * (y * d**2 + (1 - y) * t.clamp(kwargs["margin"] - d, min=0) ** 2)
        loss = {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
        diffable = [x1, x2]
    elif name == "center":
        x, target, c = tensors
        diff = x - c[target]
        per = 0.5 * (diff * diff).sum(-1)
        loss = {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
        diffable = [x, c]
    else:
        fn = {"cosine": F.cosine_embedding_loss, "margin_ranking": F.margin_ranking_loss,
              "hinge_embedding": F.hinge_embedding_loss}.get(name, F.triplet_margin_loss)
        loss = fn(*tensors, **kwargs, reduction=reduction)
        diffable = tensors if fn is F.triplet_margin_loss else tensors[:-1]
    loss.backward(t.as_tensor(np.asarray(grad_output, dtype=args[0].dtype)))
    return [loss.detach().numpy()] + [v.grad.numpy() for v in diffable]


TORCH_TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name, dtype, reduction):
    rng = np.random.default_rng(hash((name, reduction, "torch")) % 2**32)
    fname, args, kwargs, _ = build(name, rng, dtype)
    grad_output = (rng.standard_normal(loss_shape(name, args)).astype(dtype)
                   if reduction == "none" else 1.25)
    got = call(fname, args, kwargs, reduction=reduction, grad_output=grad_output)
    want = torch_result(name, args, kwargs, reduction, grad_output)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **TORCH_TOL[dtype])


# -------------------------------------------------------------- finite differences

@pytest.mark.parametrize("name", CASES)
def test_gradients_match_finite_differences(name):
    """4th-order central differences of sum(w * loss) in float64, every gradient."""
    rng = np.random.default_rng(11)
    fname, args, kwargs, n_grads = build(name, rng, np.float64, n=6, d=5)
    w = rng.standard_normal(loss_shape(name, args))
    got = call(fname, args, kwargs, reduction="none", grad_output=w)
    diffable = [0, 2] if name == "center" else list(range(n_grads))
    h = 1e-5
    for k, index in enumerate(diffable):
        fd = np.empty_like(args[index])
        for pos in np.ndindex(args[index].shape):
            def f(step):
                moved = [np.copy(a) for a in args]
                moved[index][pos] += step
                return float(np.sum(w * getattr(fl, fname)(*moved, **kwargs, reduction="none")))
            fd[pos] = (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)
        np.testing.assert_allclose(got[k + 1], fd, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ corner cases

def test_at_the_margin_the_gradient_passes_as_in_torch():
    """torch's clamp_min(0) passes the gradient where its argument is exactly 0."""
    f64 = np.float64
    # margin ranking: x1 - x2 = margin, y = 1: loss 0, gradients (-1, +1) (the example)
    loss, g1, g2 = fl.margin_ranking_loss_with_grad(np.array([2.0]), np.array([1.0]),
                                                    np.array([1.0]), margin=1.0)
    assert loss == 0 and g1[0] == -1 and g2[0] == 1
    # hinge embedding: y = -1, x = margin: loss 0, gradient -1
    loss, g = fl.hinge_embedding_loss_with_grad(np.array([0.5]), np.array([-1.0]), margin=0.5)
    assert loss == 0 and g[0] == -1
    # triplet with eps = 0: d_pos = 5, d_neg = 10, margin 5: loss 0, gradient passes
    a, p, n = np.zeros((1, 2)), np.array([[3.0, 4.0]]), np.array([[6.0, 8.0]])
    loss, ga, gp, gn = fl.triplet_margin_loss_with_grad(a, p, n, margin=5.0, eps=0.0)
    assert loss == 0
    np.testing.assert_allclose(ga, [[-0.6 + 0.6, -0.8 + 0.8]], atol=1e-15)
    np.testing.assert_allclose(gp, [[0.6, 0.8]], rtol=1e-15)
    np.testing.assert_allclose(gn, [[-0.6, -0.8]], rtol=1e-15)
    for dtype in DTYPES:
        want = torch_result("triplet", (a.astype(dtype), p.astype(dtype), n.astype(dtype)),
                            {"margin": 5.0, "eps": 0.0}, "sum", 1.0)
        got = fl.triplet_margin_loss_with_grad(a.astype(dtype), p.astype(dtype),
                                               n.astype(dtype), margin=5.0, eps=0.0,
                                               reduction="sum")
        assert got[0] == 0 and np.all(got[2] != 0)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TORCH_TOL[dtype])
    # cosine: y = -1 with the margin at exactly cos (as torch computes it in each dtype)
    t = _torch()
    for dtype in DTYPES:
        x1 = np.array([[3.0, 4.0]], dtype)
        x2 = np.array([[4.0, 3.0]], dtype)
        tx1, tx2 = t.tensor(x1), t.tensor(x2)
        den = ((tx1 * tx1).sum(1) + 1e-12) * ((tx2 * tx2).sum(1) + 1e-12)
        cos = float(((tx1 * tx2).sum(1) / den.sqrt())[0])
        y = np.array([-1.0], dtype)
        got = fl.cosine_embedding_loss_with_grad(x1, x2, y, margin=cos)
        want = torch_result("cosine", (x1, x2, y), {"margin": cos}, "mean", 1.0)
        assert got[0] == 0 and np.any(got[1] != 0)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TORCH_TOL[dtype])
    # contrastive at d = margin: continuous, gradient 0 for a dissimilar pair
    x1, x2 = np.array([[0.0, 0.0]]), np.array([[3.0 + 1e-6, 4.0 + 1e-6]])
    loss, g1, g2 = fl.contrastive_loss_with_grad(x1, x2, np.array([0.0], f64), margin=5.0)
    assert loss == 0 and np.all(g1 == 0) and np.all(g2 == 0)


def test_distance_zero_gives_finite_zero_gradients():
    """d = 0 exactly (x1 - x2 = -eps): the gradient is 0, as torch's norm backward gives."""
    x1 = np.zeros((2, 3))
    x2 = np.full((2, 3), 1e-6)
    y = np.array([1.0, 0.0])
    loss, g1, g2 = fl.contrastive_loss_with_grad(x1, x2, y, margin=1.0, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.5])
    assert np.all(g1 == 0) and np.all(g2 == 0)
    want = torch_result("contrastive", (x1, x2, y), {"margin": 1.0}, "none", np.ones(2))
    for g, w in zip((loss, g1, g2), want):
        np.testing.assert_array_equal(g, w)
    for p in (1, 2, 3, 0.5):
        a = np.zeros((1, 3))
        pos = np.full((1, 3), 1e-6)  # d(a, pos) = 0
        neg = np.ones((1, 3))
        got = fl.triplet_margin_loss_with_grad(a, pos, neg, p=p, margin=2.0)
        want = torch_result("triplet", (a, pos, neg), {"p": p, "margin": 2.0}, "mean", 1.0)
        assert all(np.all(np.isfinite(g)) for g in got)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_triplet_p_inf_as_torch_at_ties():
    """p = inf: the largest |u_j| (torch's pairwise_distance); its gradient sign(u_j)
    shared evenly by the terms that attain it, as torch's backward of the inf-norm."""
    a = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    pos = np.array([[1.0, -1.0, 0.5], [1.0, 2.0, 3.0]])   # a tie; d = 0 (zero gradient)
    neg = np.array([[2.0, -2.0, 2.0], [0.0, 0.0, 0.0]])   # a three-way tie
    got = fl.triplet_margin_loss_with_grad(a, pos, neg, p=np.inf, eps=0.0, margin=3.0,
                                           reduction="sum")
    want = torch_result("triplet", (a, pos, neg), {"p": np.inf, "eps": 0.0, "margin": 3.0},
                        "sum", 1.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-15, atol=0)
    # u = a - pos = (-1, 1, -0.5): grad_positive = -sign(u) / 2 on the tie
    np.testing.assert_array_equal(got[2][0], [0.5, -0.5, 0.0])
    # u = a - neg = (-2, 2, -2): grad_negative = sign(u) / 3
    np.testing.assert_allclose(got[3][0], [-1 / 3, 1 / 3, -1 / 3], rtol=1e-15)
    # d(a, pos) = 0: a zero gradient; the loss at exactly 0 passes the negative's
    np.testing.assert_array_equal(got[1][1], [0.0, 0.0, -1.0])


@pytest.mark.parametrize("side", ["negative", "swap", "tie"])
def test_swap_chooses_each_side_as_torch(side):
    a = np.array([[0.0, 0.0]])
    p = np.array([[1.0, 0.0]])
    n = {"negative": [[-2.0, 0.0]],   # d(a, n) = 2 < d(p, n) = 3
         "swap": [[2.0, 0.0]],        # d(p, n) = 1 < d(a, n) = 2
         "tie": [[0.5, 3.0]]}[side]   # d(a, n) = d(p, n)
    n = np.array(n)
    got = fl.triplet_margin_loss_with_grad(a, p, n, margin=3.0, swap=True, eps=0.0,
                                           reduction="sum")
    want = torch_result("triplet", (a, p, n), {"margin": 3.0, "swap": True, "eps": 0.0},
                        "sum", 1.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-15)
    if side == "tie":
        # torch's min gives half the gradient to each distance: the negative gets
        # 0.5 ((a - n) + (p - n)) / d = (0, -3 / sqrt(9.25))
        np.testing.assert_allclose(got[3], [[0.0, -3 / np.sqrt(9.25)]], rtol=1e-15,
                                   atol=1e-16)


@pytest.mark.parametrize("name", CASES)
def test_empty_batch(name):
    rng = np.random.default_rng(0)
    fname, args, kwargs, n_grads = build(name, rng, np.float64, n=0)
    loss, *grads = call(fname, args, kwargs, reduction="mean")
    assert np.isnan(loss)
    for g, a in zip(grads, [args[0], args[2]] if name == "center" else args):
        assert g.shape == a.shape and np.all(g == 0)
    assert call(fname, args, kwargs, reduction="sum")[0] == 0
    assert call(fname, args, kwargs, reduction="none")[0].shape == loss_shape(name, args)


def test_center_gradient_hand_values():
    x = np.array([[1.0, 2.0], [3.0, 2.0], [0.0, 0.0]])
    c = np.array([[1.0, 1.0], [5.0, 5.0], [0.0, 0.0]])
    t = np.array([0, 0, 1])
    loss, gx, gc = fl.center_loss_with_grad(x, t, c, reduction="sum")
    # rows: 0.5*(0+1), 0.5*(4+1), 0.5*(25+25)
    assert loss == 0.5 + 2.5 + 25.0
    np.testing.assert_array_equal(gx, [[0, 1], [2, 1], [-5, -5]])
    np.testing.assert_array_equal(gc, [[-2, -2], [5, 5], [0, 0]])
    assert not np.signbit(gc[2]).any()  # +0 for a class without rows, as torch's index_add


def test_center_loss_update_in_place():
    rng = np.random.default_rng(5)
    c = rng.standard_normal((5, 8))
    x = rng.standard_normal((40, 8)).astype(np.float32)  # computed in centers' dtype
    t = rng.integers(0, 4, 40)  # class 4 untouched
    want = reference.center_loss_update(c, x, t, alpha=0.3)
    before4 = c[4].copy()
    out = fl.center_loss_update(c, x, t, alpha=0.3)
    assert out is c
    np.testing.assert_allclose(c, want, rtol=1e-14)
    np.testing.assert_array_equal(c[4], before4)
    # hand value: one class, rows 1 and 3, centre 0, alpha 1: c -= (-4) / 3
    c1 = np.zeros((1, 1))
    fl.center_loss_update(c1, np.array([[1.0], [3.0]]), np.array([0, 0]), alpha=1.0)
    np.testing.assert_allclose(c1, [[4.0 / 3.0]], rtol=1e-15)


def test_label_targets_may_be_integers():
    """cosine and hinge embedding only compare the target with 1 and -1, and take
    integer targets as torch does; the losses that compute with it take floats only."""
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((2, 9, 4))
    y = rng.choice([-1, 1], 9)
    for got, want in ((fl.cosine_embedding_loss_with_grad(x1, x2, y),
                       fl.cosine_embedding_loss_with_grad(x1, x2, y.astype(float))),
                      (fl.hinge_embedding_loss_with_grad(x1, np.sign(x2).astype(np.int8)),
                       fl.hinge_embedding_loss_with_grad(x1, np.sign(x2)))):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------ out= and threads

@pytest.mark.parametrize("name", CASES)
def test_out_receives_the_gradients(name):
    rng = np.random.default_rng(2)
    fname, args, kwargs, n_grads = build(name, rng, np.float32)
    want = call(fname, args, kwargs)
    shapes = [g.shape for g in want[1:]]
    outs = tuple(np.empty(s, np.float32) for s in shapes)
    got = call(fname, args, kwargs, out=outs[0] if n_grads == 1 else outs)
    for g, o, w in zip(got[1:], outs, want[1:]):
        assert g is o
        np.testing.assert_array_equal(o, w)
    if n_grads > 1:
        partial = (None,) + outs[1:]
        got = call(fname, args, kwargs, out=partial)
        assert got[2] is outs[1]
        np.testing.assert_array_equal(got[1], want[1])


BIG_CASES = {"contrastive": (8200, 128), "cosine": (8200, 128), "triplet": (4100, 256),
             "triplet_p3": (4100, 256), "margin_ranking": (THRESHOLD // 64 + 3, 64),
             "hinge_embedding": (THRESHOLD // 64 + 3, 64), "center": (8200, 128)}


@pytest.mark.parametrize("name", list(BIG_CASES))
def test_bit_identical_across_threads(name):
    """Above the parallel threshold (so a team really starts): the same bits for every
    n_threads, the centre gradient's scatter-add included."""
    n, d = BIG_CASES[name]
    rng = np.random.default_rng(9)
    fname, args, kwargs, _ = build(name, rng, np.float32, n=n, d=d)
    assert args[0].size >= THRESHOLD
    for reduction in ("mean", "none"):
        first = None
        for n_threads in (1, 2, 3):
            got = call(fname, args, kwargs, reduction=reduction, n_threads=n_threads)
            raw = [np.asarray(g).tobytes() for g in got]
            if first is None:
                first = raw
            assert raw == first, (reduction, n_threads)


# ------------------------------------------------------------------------- errors

def test_errors_name_the_argument():
    x = np.zeros((4, 3))
    y = np.ones(4)
    with pytest.raises(ValueError, match="input2"):
        fl.contrastive_loss(x, np.zeros((4, 2)), y)
    with pytest.raises(ValueError, match="input1"):
        fl.cosine_embedding_loss(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="anchor"):
        fl.triplet_margin_loss(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="target"):
        fl.contrastive_loss(x, x, np.ones(3))
    with pytest.raises(TypeError, match="target"):
        fl.contrastive_loss(x, x, np.ones(4, np.int64))
    with pytest.raises(TypeError, match="target"):
        fl.margin_ranking_loss(y, y, np.ones(4, np.int64))
    with pytest.raises(TypeError, match="target"):
        fl.center_loss(x, np.zeros(4), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="input"):
        fl.contrastive_loss(np.zeros((4, 3), np.int64), x, y)
    with pytest.raises(ValueError, match="margin"):
        fl.contrastive_loss(x, x, y, margin=-0.1)
    with pytest.raises(ValueError, match="margin"):
        fl.triplet_margin_loss(x, x, x, margin=0.0)
    for p in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="p"):
            fl.triplet_margin_loss(x, x, x, p=p)
    with pytest.raises(ValueError, match="negative"):
        fl.triplet_margin_loss(x, x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="input2"):
        fl.margin_ranking_loss(y, np.ones(3), y)
    with pytest.raises(ValueError, match="one number of dimensions"):  # as torch asks
        fl.margin_ranking_loss(x, np.ones(3), x)
    with pytest.raises(ValueError, match="target"):
        fl.hinge_embedding_loss(y, np.ones(3))
    with pytest.raises(ValueError, match="centers"):
        fl.center_loss(x, np.zeros(4, np.int64), np.zeros((2, 4)))
    with pytest.raises(IndexError, match="target"):
        fl.center_loss(x, np.array([0, 1, 2, 0]), np.zeros((2, 3)))
    with pytest.raises(IndexError, match="target"):
        fl.center_loss_update(np.zeros((2, 3)), x, np.array([0, -1, 0, 0]))
    with pytest.raises(ValueError, match="reduction"):
        fl.cosine_embedding_loss(x, x, y, reduction="avg")
    with pytest.raises(TypeError, match="out"):
        fl.contrastive_loss_with_grad(x, x, y, out=np.zeros_like(x))
    with pytest.raises(ValueError, match="out"):
        fl.contrastive_loss_with_grad(x, np.ones_like(x), y, out=(x, None))
    with pytest.raises(ValueError, match="centers"):
        fl.center_loss_update(np.zeros((2, 3))[:, :2], np.zeros((4, 2)), np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="centers"):
        fl.center_loss_update([[0.0, 0.0]], np.zeros((4, 2)), np.zeros(4, np.int64))


# --------------------------------------------------------------------------- bench

def test_bench_pairs_quick(tmp_path):
    """`python -m fastloss bench --pairs --quick`: every metric-learning case runs, agrees
    with the reference, and is compared with torch and the memory copy."""
    import json

    from fastloss import _bench
    from test_bench import run_bench

    path = tmp_path / "pairs.json"
    proc = run_bench(["--pairs", "--quick", "--no-progress", "--json", str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(path.read_text())
    cases = _bench.pairs_cases(quick=True)
    assert [c["key"] for c in report["cases"]] == [c.key for c in cases]
    for res in report["cases"]:
        assert res["candidates"]["fastloss"]["status"] == "ok"
        assert res["loss_rel_diff_vs_reference"] < 1e-5
        assert res["candidates"]["memcpy"]["status"] == "ok"
        assert res["candidates"]["torch"]["status"] in ("ok", "absent")
        assert res["candidates"]["sklearn"]["status"] == "n/a"
    assert {t["target"] for t in report["targets"]} == {
        ">= 5\u00d7 faster than PyTorch", "<= 2\u00d7 memcpy's time"}
