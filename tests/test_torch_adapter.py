"""fastloss.torch against torch.nn.functional / torch.nn: values, gradients, fallbacks,
patch(), modules, torch.compile, memory and threads.

The shared harness: ``CASES`` lists, per loss, builders of ``(tensors, options)``;
every case runs for every dtype and reduction through ``check_against_torch``.
A new loss adds its builders to ``CASES`` (and a gradcheck case to ``GRADCHECK``).
"""

from __future__ import annotations

import copy
import math
import threading
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss.functional  # noqa: E402
import fastloss.torch as ft  # noqa: E402

# kl_div's reduction="mean" warns (torch's warning, in torch and here alike)
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

# torch's own functions, whatever a test patches.
TORCH = dict(ft._ORIGINALS)
LOSS_NAMES = [loss.name for loss in ft._LOSSES]
ENTRIES = {loss.name: loss for loss in ft._LOSSES}
TWINS = [loss.name for loss in ft._LOSSES if loss.twin]


def _reduce(loss, reduction):
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


# The losses without a torch.nn.functional twin, written in torch ops as their
# sources define them (signatures included): optax/Keras hinge, Keras 3 MSLE,
# log-cosh, and torchvision.ops.sigmoid_focal_loss (its code, verbatim in torch ops).
def hinge_loss(input, target, margin=1.0, squared=False, reduction="mean"):
    h = torch.relu(margin - target * input)
    return _reduce(h * h if squared else h, reduction)


def msle_loss(input, target, reduction="mean"):
    return _reduce((torch.log1p(input.clamp(min=1e-7))
                    - torch.log1p(target.clamp(min=1e-7))) ** 2, reduction)


def log_cosh_loss(input, target, reduction="mean"):
    return _reduce(torch.log(torch.cosh(input - target)), reduction)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    p = torch.sigmoid(inputs)
    ce_loss = TORCH["binary_cross_entropy_with_logits"](inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def contrastive_loss(input1, input2, target, margin=1.0, reduction="mean"):
    """Hadsell, Chopra and LeCun's loss with torch's pairwise_distance (eps 1e-6)."""
    d = torch.pairwise_distance(input1, input2)
    return _reduce(0.5 * (target * d * d + (1 - target) * torch.clamp_min(margin - d, 0) ** 2),
                   reduction)


def center_loss(features, target, centers, reduction="mean"):
    """Wen et al.'s center loss: 0.5 ||x_i - c_{y_i}||^2 per row."""
    diff = features - centers[target]
    return _reduce(0.5 * (diff * diff).sum(-1), reduction)


# What each loss is checked against: torch's function, or the definition above.
REFERENCE = {**TORCH, "hinge_loss": hinge_loss, "msle_loss": msle_loss,
             "log_cosh_loss": log_cosh_loss, "sigmoid_focal_loss": sigmoid_focal_loss,
             "contrastive_loss": contrastive_loss, "center_loss": center_loss}


def grad_names(loss_name, tensors):
    """The differentiable arguments of a case (a float var has no gradient)."""
    return tuple(n for n in ENTRIES[loss_name].differentiable
                 if isinstance(tensors.get(n), torch.Tensor))
DTYPES = [torch.float32, torch.float64]
REDUCTIONS = ["none", "mean", "sum"]
TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14),
       # torch's half-type losses round in other places than float32-then-cast: a few ulp apart
       torch.float16: dict(rtol=1e-2, atol=2e-3), torch.bfloat16: dict(rtol=4e-2, atol=1e-2)}


@pytest.fixture(autouse=True)
def _one_thread_unpatched():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ft.reset_fallback_counts()
    yield
    ft.unpatch()
    torch.set_num_threads(threads)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ the cases

def ce_case(shape=(6, 5), probs=False, weight=False, **options):
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64).mul(3).to(dtype)
        c = shape[1] if len(shape) > 1 else shape[0]
        index_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        if probs:
            target = torch.rand(shape, generator=g, dtype=torch.float64)
            dim = 1 if len(shape) > 1 else 0
            target = (target / target.sum(dim, keepdim=True)).to(dtype)
        else:
            target = torch.randint(0, c, index_shape, generator=g)
            if "ignore_index" in options and target.dim():
                target.view(-1)[::3] = options["ignore_index"]
        tensors = {"input": x, "target": target}
        if weight:
            tensors["weight"] = torch.rand(c, generator=g, dtype=torch.float64).add(0.5).to(dtype)
        return tensors, dict(options)
    return build


def bce_case(shape=(6, 5), weight=None, pos_weight=None):
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64).mul(3).to(dtype)
        target = torch.rand(shape, generator=g, dtype=torch.float64).round().to(dtype)
        tensors = {"input": x, "target": target}
        for name, wshape in (("weight", weight), ("pos_weight", pos_weight)):
            if wshape is not None:
                tensors[name] = torch.rand(wshape, generator=g, dtype=torch.float64).add(0.5).to(dtype)
        return tensors, {}
    return build


def pointwise_case(shape=(7, 3), weight=False, **options):
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64).mul(2).to(dtype)
        target = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        tensors = {"input": x, "target": target}
        if weight:
            tensors["weight"] = torch.rand(shape, generator=g, dtype=torch.float64).add(0.2).to(dtype)
        return tensors, dict(options)
    return build


def nll_case(shape=(6, 5), weight=False, **options):
    def build(dtype, g):
        tensors, _ = ce_case(shape=shape, weight=weight, **options)(torch.float64, g)
        dim = 1 if len(shape) > 1 else 0
        tensors["input"] = torch.log_softmax(tensors["input"], dim)
        return {k: v.to(dtype) if v.is_floating_point() else v
                for k, v in tensors.items()}, dict(options)
    return build


def margin_case(shape=(6, 5), weight=False, **options):
    return ce_case(shape=shape, weight=weight, **options)


def multilabel_case(shape=(6, 5), weight=None):
    def build(dtype, g):
        tensors, _ = bce_case(shape=shape, weight=weight)(dtype, g)
        return tensors, {}
    return build


def prob_case(shape=(6, 5), weight=None, soft=False):
    """binary_cross_entropy: probabilities in (0.02, 0.98), 0/1 (or soft) targets."""
    def build(dtype, g):
        x = torch.rand(shape, generator=g, dtype=torch.float64).mul(0.96).add(0.02).to(dtype)
        target = torch.rand(shape, generator=g, dtype=torch.float64)
        target = (target if soft else target.round()).to(dtype)
        tensors = {"input": x, "target": target}
        if weight is not None:
            tensors["weight"] = torch.rand(weight, generator=g, dtype=torch.float64).add(0.5).to(dtype)
        return tensors, {}
    return build


def sign_case(shape=(7, 3), names=("input", "target"), scale=2.0, **options):
    """Scores and -1/1 targets (0/1 with names inputs/targets: focal)."""
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64).mul(scale).to(dtype)
        y = torch.rand(shape, generator=g, dtype=torch.float64).round()
        y = (y if names[0] == "inputs" else 2 * y - 1).to(dtype)
        return {names[0]: x, names[1]: y}, dict(options)
    return build


def kl_case(shape=(5, 4), log_target=False):
    def build(dtype, g):
        x = torch.log_softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1)
        p = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1)
        target = p.log() if log_target else p
        return {"input": x.to(dtype), "target": target.to(dtype)}, {"log_target": log_target}
    return build


def positive_case(shape=(7, 3)):
    """msle: predictions and targets mostly positive, a few clamped."""
    def build(dtype, g):
        x = torch.rand(shape, generator=g, dtype=torch.float64).mul(3).sub(0.2).to(dtype)
        y = torch.rand(shape, generator=g, dtype=torch.float64).mul(3).sub(0.2).to(dtype)
        return {"input": x, "target": y}, {}
    return build


def poisson_case(shape=(7, 3), log_input=True, **options):
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        x = x if log_input else x.abs().add(0.1)
        y = torch.randint(0, 6, shape, generator=g).double()
        return {"input": x.to(dtype), "target": y.to(dtype)}, dict(options, log_input=log_input)
    return build


def gaussian_case(shape=(6, 3), var="full", **options):
    def build(dtype, g):
        x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        y = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        var_shape = {"full": shape, "row": shape[:-1], "column": shape[:-1] + (1,),
                     "middle": (shape[0], 1) + shape[2:]}.get(var)
        v = 0.7 if var == "float" else \
            torch.rand(var_shape, generator=g, dtype=torch.float64).add(0.1).to(dtype)
        return {"input": x, "target": y, "var": v}, dict(options)
    return build


def rows_case(names=("input1", "input2"), shape=(6, 5), target=None, **options):
    """Rows of embeddings (the pairs family), each partner near the first row array;
    target per row: "binary" (0/1), "sign" (-1/1 and a 0), "sign_long" (int64), or None."""
    def build(dtype, g):
        first = torch.randn(shape, generator=g, dtype=torch.float64)
        tensors = {names[0]: first.to(dtype)}
        for name in names[1:]:
            partner = first + 0.8 * torch.randn(shape, generator=g, dtype=torch.float64)
            tensors[name] = partner.to(dtype)
        if target is not None:
            y = torch.rand(shape[:-1], generator=g, dtype=torch.float64).round()
            if target != "binary":
                y = 2 * y - 1
                if target == "sign" and y.dim():
                    y[0] = 0  # neither label: torch gives it loss 0
            tensors["target"] = y.long() if target == "sign_long" else y.to(dtype)
        return tensors, dict(options)
    return build


def ranking_case(names=("input1", "input2"), shapes=((7, 3), (7, 3)), target_shape=(7, 3),
                 values=(-1.0, 1.0), long=False, **options):
    """margin_ranking / hinge_embedding: operands of `shapes` (broadcast as torch), a
    target of `target_shape` drawn from `values`."""
    def build(dtype, g):
        tensors = {name: torch.randn(shape, generator=g, dtype=torch.float64).mul(1.5).to(dtype)
                   for name, shape in zip(names, shapes)}
        pick = torch.randint(0, len(values), target_shape, generator=g)
        y = torch.tensor(values, dtype=torch.float64)[pick]
        tensors["target"] = y.long() if long else y.to(dtype)
        return tensors, dict(options)
    return build


def center_case(shape=(9, 5), classes=4):
    """Features near their class centres; the last class has no rows."""
    def build(dtype, g):
        centers = torch.randn(classes, shape[-1], generator=g, dtype=torch.float64)
        target = torch.randint(0, classes - 1, shape[:-1], generator=g)
        x = centers[target] + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
        return {"features": x.to(dtype), "target": target, "centers": centers.to(dtype)}, {}
    return build


TRIPLET = ("anchor", "positive", "negative")
CASES = {
    "cross_entropy": {
        "plain": ce_case(),
        "weight": ce_case(weight=True),
        "ignore_index": ce_case(ignore_index=2),
        "ignore_index_default": ce_case(ignore_index=-100),
        "label_smoothing": ce_case(label_smoothing=0.2),
        "all_options": ce_case(weight=True, ignore_index=1, label_smoothing=0.1),
        "probabilities": ce_case(probs=True),
        "probabilities_smoothing_weight": ce_case(probs=True, weight=True, label_smoothing=0.3),
        "kdim": ce_case(shape=(3, 4, 2, 5)),
        "kdim_weight_smoothing": ce_case(shape=(3, 4, 5), weight=True, label_smoothing=0.1),
        "kdim_probabilities": ce_case(shape=(2, 4, 3), probs=True),
        "unbatched": ce_case(shape=(7,)),
        "many_classes": ce_case(shape=(4, 300)),
    },
    "binary_cross_entropy_with_logits": {
        "plain": bce_case(),
        "weight_row": bce_case(weight=(5,)),
        "weight_full": bce_case(weight=(6, 5)),
        "pos_weight": bce_case(pos_weight=(5,)),
        "both": bce_case(weight=(1, 5), pos_weight=(5,)),
        "3d": bce_case(shape=(2, 3, 4), pos_weight=(4,)),
        "1d": bce_case(shape=(9,)),
    },
    "mse_loss": {"plain": pointwise_case(), "1d": pointwise_case(shape=(11,)),
                 "weight": pointwise_case(weight=True)},
    "huber_loss": {"default": pointwise_case(), "delta_small": pointwise_case(delta=0.3),
                   "delta_large": pointwise_case(delta=2.5), "1d": pointwise_case(shape=(11,)),
                   "weight": pointwise_case(weight=True, delta=0.5)},
    "nll_loss": {"plain": nll_case(), "weight": nll_case(weight=True),
                 "ignore_index": nll_case(weight=True, ignore_index=2),
                 "kdim": nll_case(shape=(3, 4, 2, 5), weight=True), "unbatched": nll_case(shape=(7,))},
    "multi_margin_loss": {"plain": margin_case(), "p2": margin_case(p=2),
                          "margin_weight": margin_case(weight=True, margin=0.5),
                          "p2_weight": margin_case(weight=True, p=2, margin=2.0),
                          "unbatched": margin_case(shape=(7,))},
    "multilabel_soft_margin_loss": {"plain": multilabel_case(),
                                    "weight": multilabel_case(weight=(5,)),
                                    "1d": multilabel_case(shape=(7,))},
    "binary_cross_entropy": {"plain": prob_case(), "weight_row": prob_case(weight=(5,)),
                             "weight_full": prob_case(weight=(6, 5)),
                             "soft": prob_case(soft=True), "1d": prob_case(shape=(9,))},
    "soft_margin_loss": {"plain": sign_case(), "1d": sign_case(shape=(11,))},
    "hinge_loss": {"plain": sign_case(), "margin": sign_case(margin=0.5),
                   "squared": sign_case(squared=True), "both": sign_case(squared=True, margin=2.0)},
    "sigmoid_focal_loss": {"mean": sign_case(names=("inputs", "targets"), reduction="mean"),
                           "alpha_gamma": sign_case(names=("inputs", "targets"), alpha=0.6,
                                                    gamma=1.5),
                           "no_alpha": sign_case(names=("inputs", "targets"), alpha=-1.0),
                           "gamma0": sign_case(names=("inputs", "targets"), gamma=0.0)},
    "kl_div": {"plain": kl_case(), "log_target": kl_case(log_target=True),
               "3d": kl_case(shape=(2, 3, 4))},
    "l1_loss": {"plain": pointwise_case(), "weight": pointwise_case(weight=True),
                "1d": pointwise_case(shape=(11,))},
    "smooth_l1_loss": {"default": pointwise_case(), "beta_small": pointwise_case(beta=0.3),
                       "beta_zero": pointwise_case(beta=0.0), "beta_large": pointwise_case(beta=3.0)},
    "msle_loss": {"plain": positive_case(), "1d": positive_case(shape=(11,))},
    "log_cosh_loss": {"plain": pointwise_case(), "large": pointwise_case(shape=(4, 5))},
    "poisson_nll_loss": {"log_input": poisson_case(), "full": poisson_case(full=True),
                         "rate": poisson_case(log_input=False),
                         "rate_full_eps": poisson_case(log_input=False, full=True, eps=0.01)},
    "gaussian_nll_loss": {"full_var": gaussian_case(), "row_var": gaussian_case(var="row"),
                          "column_var": gaussian_case(var="column"),
                          "middle_var": gaussian_case(shape=(2, 3, 4), var="middle"),
                          "float_var": gaussian_case(var="float"),
                          "full_eps": gaussian_case(full=True, eps=0.3)},
    "contrastive_loss": {"plain": rows_case(target="binary"),
                         "margin": rows_case(target="binary", margin=2.5),
                         "one_pair": rows_case(shape=(5,), target="binary")},
    "cosine_embedding_loss": {"plain": rows_case(target="sign"),
                              "margin": rows_case(target="sign", margin=0.2),
                              "negative_margin": rows_case(target="sign", margin=-0.3),
                              "long_target": rows_case(target="sign_long", margin=0.1),
                              "one_pair": rows_case(shape=(5,), target="sign_long")},
    "triplet_margin_loss": {"plain": rows_case(TRIPLET), "p1": rows_case(TRIPLET, p=1),
                            "p3": rows_case(TRIPLET, p=3, margin=0.5),
                            "p05": rows_case(TRIPLET, p=0.5),
                            "p_inf": rows_case(TRIPLET, p=math.inf),
                            "swap": rows_case(TRIPLET, swap=True, margin=2.0),
                            "swap_p_inf": rows_case(TRIPLET, swap=True, p=math.inf),
                            "eps0_p1": rows_case(TRIPLET, eps=0.0, p=1),
                            "one_triplet": rows_case(TRIPLET, shape=(5,))},
    "margin_ranking_loss": {"plain": ranking_case(), "margin": ranking_case(margin=0.4),
                            "negative_margin": ranking_case(margin=-0.5),
                            "1d": ranking_case(shapes=((9,), (9,)), target_shape=(9,)),
                            "broadcast": ranking_case(shapes=((7, 1), (1, 3)), margin=0.2),
                            "broadcast_target": ranking_case(target_shape=(7, 1)),
                            "broadcast_input1": ranking_case(shapes=((1, 3), (7, 3)))},
    "hinge_embedding_loss": {"plain": ranking_case(("input",), ((7, 3),)),
                             "margin": ranking_case(("input",), ((7, 3),), margin=0.3),
                             "other_labels": ranking_case(("input",), ((7, 3),),
                                                          values=(-1.0, 1.0, 0.5, 0.0)),
                             "long_target": ranking_case(("input",), ((7, 3),), long=True),
                             "broadcast_input": ranking_case(("input",), ((3,),)),
                             "broadcast_target": ranking_case(("input",), ((7, 3),),
                                                              target_shape=(7, 1)),
                             "broadcast_both": ranking_case(("input",), ((7, 1, 3),),
                                                            target_shape=(2, 1))},
    "center_loss": {"plain": center_case(), "many_classes": center_case(shape=(12, 4),
                                                                        classes=20),
                    "one_row": center_case(shape=(5,))},
}
ALL_CASES = [(loss, name) for loss in CASES for name in CASES[loss]]


def run(func, tensors, options, grad_names=("input",), upstream=None):
    """func(**tensors, **options) forward + backward: (loss, {name: grad})."""
    leaves = {k: (v.detach().clone().requires_grad_(k in grad_names)
                  if isinstance(v, torch.Tensor) else v)
              for k, v in tensors.items()}
    loss = func(**leaves, **options)
    (loss if upstream is None else loss * upstream).sum().backward()
    return loss.detach(), {k: leaves[k].grad for k in grad_names}


def check_against_torch(loss_name, tensors, options, dtype, reduction, seed=1):
    options = dict(options, reduction=reduction)
    upstream = None
    if reduction == "none":  # a non-uniform upstream gradient per loss value
        shape = REFERENCE[loss_name](**tensors, **options).shape
        upstream = torch.rand(shape, generator=gen(seed), dtype=torch.float64).add(0.1).to(dtype)
    names = grad_names(loss_name, tensors)
    ours, our_grads = run(getattr(ft, loss_name), tensors, options, names, upstream)
    theirs, their_grads = run(REFERENCE[loss_name], tensors, options, names, upstream)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, **TOL[dtype])
    for name in our_grads:
        assert our_grads[name].dtype == their_grads[name].dtype
        torch.testing.assert_close(our_grads[name], their_grads[name], **TOL[dtype])
    assert ft.fallback_counts() == {}, "the call was served by fastloss"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss_name,case", ALL_CASES)
def test_function_matches_torch(loss_name, case, dtype, reduction):
    tensors, options = CASES[loss_name][case](dtype, gen())
    check_against_torch(loss_name, tensors, options, dtype, reduction)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("loss_name,case", [(loss, next(iter(CASES[loss]))) for loss in CASES
                                            if ENTRIES[loss].half])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_half_types_computed_in_float32_and_cast_back(loss_name, case, dtype, reduction):
    tensors, options = CASES[loss_name][case](dtype, gen())
    options = dict(options, reduction=reduction)
    upstream = None
    if reduction == "none":
        shape = REFERENCE[loss_name](**tensors, **options).shape
        upstream = torch.rand(shape, generator=gen(1), dtype=torch.float64).add(0.1).to(dtype)
    x_name = ENTRIES[loss_name].differentiable[0]
    ours, grads = run(getattr(ft, loss_name), tensors, options, (x_name,), upstream)
    # exactly the float32 computation, cast back (the gradient scaled in the half type,
    # as autograd multiplies the upstream gradient in it)
    wide = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    loss32, grads32 = run(getattr(ft, loss_name), wide, options, (x_name,))
    assert ours.dtype == dtype and torch.equal(ours, loss32.to(dtype))
    expected = grads32[x_name].to(dtype)
    axis = ENTRIES[loss_name].none_axis
    assert torch.equal(grads[x_name], expected if upstream is None else
                       expected * (upstream if upstream.dim() == expected.dim()
                                   else upstream.unsqueeze(axis)))
    # and close to torch's own half-precision result, which rounds in other places
    theirs, their_grads = run(REFERENCE[loss_name], tensors, options, (x_name,), upstream)
    torch.testing.assert_close(ours, theirs, **TOL[dtype])
    torch.testing.assert_close(grads[x_name], their_grads[x_name], **TOL[dtype])
    assert ft.fallback_counts() == {}


def test_every_table_entry_has_cases_and_public_names():
    assert set(CASES) == set(LOSS_NAMES) == set(GRADCHECK)
    names = LOSS_NAMES + [loss.module[0] for loss in ft._LOSSES if loss.module]
    assert set(names) <= set(ft.__all__) and set(names) <= set(ft.__annotations__)
    for name in names:
        assert getattr(ft, name).__module__ == "fastloss.torch"


LEGACY = [(loss, case) for loss, case in [
    ("cross_entropy", "weight"), ("nll_loss", "weight"), ("multi_margin_loss", "margin_weight"),
    ("multilabel_soft_margin_loss", "weight"), ("binary_cross_entropy", "weight_row"),
    ("binary_cross_entropy_with_logits", "pos_weight"), ("soft_margin_loss", "plain"),
    ("kl_div", "plain"), ("mse_loss", "weight"), ("l1_loss", "weight"),
    ("smooth_l1_loss", "beta_small"), ("poisson_nll_loss", "full"),
    ("cosine_embedding_loss", "margin"), ("triplet_margin_loss", "swap"),
    ("margin_ranking_loss", "margin"), ("hinge_embedding_loss", "margin")]]


@pytest.mark.parametrize("loss_name,case", LEGACY)
def test_legacy_size_average_reduce_as_torch(loss_name, case):
    tensors, options = CASES[loss_name][case](torch.float64, gen())
    for size_average, reduce in [(False, None), (None, False), (True, True), (False, True)]:
        legacy = dict(options, size_average=size_average, reduce=reduce)
        with warnings.catch_warnings(record=True) as ours_w:
            warnings.simplefilter("always")
            ours = getattr(ft, loss_name)(**tensors, **legacy)
        with warnings.catch_warnings(record=True) as theirs_w:
            warnings.simplefilter("always")
            theirs = TORCH[loss_name](**tensors, **legacy)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
        assert [str(w.message) for w in ours_w] == [str(w.message) for w in theirs_w]
    assert ft.fallback_counts() == {}


def test_signatures_are_torchs_plus_n_threads():
    import inspect
    for name in LOSS_NAMES:  # (the losses without a twin: their sources' signatures)
        ours = inspect.signature(getattr(ft, name))
        theirs = inspect.signature(REFERENCE[name])
        assert [(p.name, p.default) for p in theirs.parameters.values()] == \
            [(p.name, p.default) for p in ours.parameters.values()][:-1]
        assert list(ours.parameters)[-1] == "n_threads"


# ------------------------------------------------------------------ gradcheck

GRADCHECK = {
    "cross_entropy": [ce_case(weight=True, ignore_index=1, label_smoothing=0.1),
                      ce_case(shape=(2, 3, 4), probs=True, label_smoothing=0.2)],
    "binary_cross_entropy_with_logits": [bce_case(weight=(5,), pos_weight=(5,))],
    "mse_loss": [pointwise_case(weight=True)],
    "huber_loss": [pointwise_case(delta=0.7, weight=True)],
    "nll_loss": [nll_case(shape=(3, 4, 2), weight=True, ignore_index=1)],
    "multi_margin_loss": [margin_case(weight=True, p=2, margin=0.8)],
    "multilabel_soft_margin_loss": [multilabel_case(weight=(5,))],
    "binary_cross_entropy": [prob_case(weight=(5,), soft=True)],
    "soft_margin_loss": [sign_case()],
    "hinge_loss": [sign_case(squared=True, margin=1.5)],
    "sigmoid_focal_loss": [sign_case(names=("inputs", "targets"), alpha=0.3, gamma=1.5)],
    "kl_div": [kl_case(log_target=True)],
    "l1_loss": [pointwise_case(weight=True)],
    "smooth_l1_loss": [pointwise_case(beta=0.5)],
    "msle_loss": [positive_case()],
    "log_cosh_loss": [pointwise_case()],
    "poisson_nll_loss": [poisson_case(full=True), poisson_case(log_input=False)],
    "gaussian_nll_loss": [gaussian_case(full=True), gaussian_case(var="row"),
                          gaussian_case(shape=(2, 3, 4), var="middle")],
    "contrastive_loss": [rows_case(target="binary", margin=2.0)],
    "cosine_embedding_loss": [rows_case(target="sign", margin=0.1)],
    "triplet_margin_loss": [rows_case(TRIPLET, p=3, swap=True, margin=2.0),
                            rows_case(TRIPLET, p=math.inf, margin=1.5)],
    "margin_ranking_loss": [ranking_case(margin=0.3), ranking_case(shapes=((7, 1), (1, 3)))],
    "hinge_embedding_loss": [ranking_case(("input",), ((7, 3),), margin=0.8),
                             ranking_case(("input",), ((3,),), margin=0.8)],
    "center_loss": [center_case()],
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_gradcheck(loss_name, reduction):
    for build in GRADCHECK[loss_name]:
        tensors, options = build(torch.float64, gen(3))
        names = grad_names(loss_name, tensors)
        leaves = tuple(tensors.pop(n).requires_grad_() for n in names)
        func = getattr(ft, loss_name)
        assert torch.autograd.gradcheck(
            lambda *xs: func(**dict(zip(names, xs)), **tensors, **options, reduction=reduction),
            leaves)
    assert ft.fallback_counts() == {}


# -------------------------------------------- the gradient buffer, no copies

class Spy:
    """Records the arrays fastloss.functional receives and returns."""

    def __init__(self, monkeypatch, name):
        self.calls = []
        original = getattr(fastloss.functional, name)

        def spy(**kwargs):
            result = original(**kwargs)
            self.calls.append((kwargs, result))
            return result

        monkeypatch.setattr(fastloss.functional, name, spy)


def test_contiguous_tensors_reach_the_kernel_as_views_and_grad_is_the_kernels(monkeypatch):
    spy = Spy(monkeypatch, "cross_entropy_with_grad")
    x = torch.randn(8, 5, requires_grad=True)
    t = torch.randint(0, 5, (8,))
    w = torch.rand(5)
    ft.cross_entropy(x, t, weight=w).backward()
    (kwargs, (loss, grad)), = spy.calls
    assert np.shares_memory(kwargs["input"], x.detach().numpy())
    assert np.shares_memory(kwargs["target"], t.numpy())
    assert np.shares_memory(kwargs["weight"], w.numpy())
    # upstream exactly 1: the saved gradient itself becomes x.grad, no pass over it
    assert np.shares_memory(grad, x.grad.numpy())
    torch.testing.assert_close(x.grad, torch.from_numpy(grad), rtol=0, atol=0)


def test_non_contiguous_input_is_copied_once(monkeypatch):
    spy = Spy(monkeypatch, "mse_loss_with_grad")
    base = torch.randn(5, 8, dtype=torch.float64)
    x = base.t().requires_grad_()  # a transposed view
    y = torch.randn(8, 5, dtype=torch.float64)
    ft.mse_loss(x, y).backward()
    (kwargs, _), = spy.calls
    assert np.shares_memory(kwargs["input"], base.numpy())  # the view: fastloss copies it once
    assert not kwargs["input"].flags.c_contiguous
    torch.testing.assert_close(x.grad, 2 * (x - y).detach() / x.numel(), rtol=1e-14, atol=0)


def test_upstream_not_one_scales_in_place_on_the_saved_buffer(monkeypatch):
    spy = Spy(monkeypatch, "huber_loss_with_grad")
    x = torch.randn(50, dtype=torch.float64, requires_grad=True)
    y = torch.randn(50, dtype=torch.float64)
    (ft.huber_loss(x, y, reduction="sum") * 3.0).backward()
    (_, (_, grad)), = spy.calls
    assert np.shares_memory(grad, x.grad.numpy())
    ref = x.detach().clone().requires_grad_()
    (TORCH["huber_loss"](ref, y, reduction="sum") * 3.0).backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_backward_with_upstream_one_runs_no_tensor_op(loss_name):
    """loss.backward() on a mean hands back the saved gradient: no fill, copy or multiply."""
    tensors, options = CASES[loss_name][next(iter(CASES[loss_name]))](torch.float32, gen())
    x_name = ENTRIES[loss_name].differentiable[0]
    x = tensors.pop(x_name).requires_grad_()
    call = lambda: getattr(ft, loss_name)(**{x_name: x}, **tensors, **options)  # noqa: E731
    loss = call()
    views = {"aten::detach", "aten::alias", "aten::view", "aten::unsqueeze", "aten::expand",
             "aten::reshape", "aten::_reshape_alias"}

    def ops_on_gradient(backward):
        """The aten ops of `backward` that read or write a tensor of the gradient's size
        (views, which touch no data, aside; kl_div's "mean" runs on a (numel, 1) view)."""
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            backward()
        return sorted(event.key for event in prof.events()
                      if event.name.startswith("aten::") and event.name not in views
                      and any(shape and math.prod(shape) == x.numel()
                              for shape in event.input_shapes))

    # (torch's backward itself fills the 0-d ones() it starts from)
    assert ops_on_gradient(loss.backward) == []
    # another upstream gradient: one multiply, in place on the saved gradient, then the
    # accumulation into x.grad
    loss = call()
    assert ops_on_gradient((loss * 2).backward) == ["aten::add_", "aten::mul_"]


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_retain_graph_backward_three_times(scale):
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    ref = x.detach().clone().requires_grad_()
    (TORCH["cross_entropy"](ref, t) * scale).backward()
    loss = ft.cross_entropy(x, t) * scale
    for _ in range(3):
        loss.backward(retain_graph=True)
    loss.backward()  # the last one frees the graph (in place allowed again)
    torch.testing.assert_close(x.grad, 4 * ref.grad, rtol=1e-14, atol=0)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_retain_graph_reduction_none_upstream_reused():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    up = torch.rand(6, dtype=torch.float64)
    loss = ft.cross_entropy(x, t, reduction="none")
    first, = torch.autograd.grad(loss, x, up, retain_graph=True)
    second, = torch.autograd.grad(loss, x, up)
    ref = x.detach().clone().requires_grad_()
    expected, = torch.autograd.grad(TORCH["cross_entropy"](ref, t, reduction="none"), ref, up)
    torch.testing.assert_close(first, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(second, expected, rtol=1e-14, atol=0)


def test_two_losses_on_one_input_accumulate():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    y = torch.randn(6, 4, dtype=torch.float64)
    (ft.cross_entropy(x, t) + ft.mse_loss(x, y) + ft.cross_entropy(x, t)).backward()
    ref = x.detach().clone().requires_grad_()
    (TORCH["cross_entropy"](ref, t) + TORCH["mse_loss"](ref, y)
     + TORCH["cross_entropy"](ref, t)).backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_double_backward_raises_naming_fastloss_and_unpatch(loss_name):
    tensors, options = CASES[loss_name][next(iter(CASES[loss_name]))](torch.float64, gen())
    x_name = ENTRIES[loss_name].differentiable[0]
    x = tensors.pop(x_name).requires_grad_()
    loss = getattr(ft, loss_name)(**{x_name: x}, **tensors, **options)
    with pytest.raises(RuntimeError, match=r"fastloss.*double backward.*unpatch\(\)"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_forward_only_allocates_no_gradient(monkeypatch):
    calls = []
    for name in ("mse_loss", "mse_loss_with_grad"):
        original = getattr(fastloss.functional, name)
        monkeypatch.setattr(fastloss.functional, name,
                            lambda _o=original, _n=name, **kw: (calls.append(_n), _o(**kw))[1])
    x = torch.randn(10, requires_grad=True)
    y = torch.randn(10)
    with torch.no_grad():
        a = ft.mse_loss(x, y)
    b = ft.mse_loss(x.detach(), y)
    assert calls == ["mse_loss", "mse_loss"] and not a.requires_grad and not b.requires_grad
    ft.mse_loss(x, y)
    assert calls[-1] == "mse_loss_with_grad"


def test_n_threads_and_torch_threads(monkeypatch):
    seen = []
    original = fastloss.functional.mse_loss_with_grad
    monkeypatch.setattr(fastloss.functional, "mse_loss_with_grad",
                        lambda **kw: (seen.append(kw["n_threads"]), original(**kw))[1])
    x = torch.randn(10, requires_grad=True)
    y = torch.randn(10)
    torch.set_num_threads(2)
    ft.mse_loss(x, y)
    ft.mse_loss(x, y, n_threads=1)  # explicit n_threads wins
    assert seen == [2, 1]
    with pytest.raises(ValueError, match="n_threads"):
        ft.mse_loss(x, y, n_threads=0)


# ------------------------------------------------------------------ fallbacks

def outcome(func):
    """(result, grads) or the exception (type, message) of func()."""
    try:
        return func()
    except Exception as exc:  # compared below, never swallowed
        return (type(exc), str(exc))


def assert_same_outcome(ours, theirs):
    a, b = outcome(ours), outcome(theirs)
    if isinstance(b, tuple) and isinstance(b[0], type):
        assert a == b
        return
    assert not (isinstance(a, tuple) and isinstance(a[0], type)), a
    (la, ga), (lb, gb) = a, b
    assert torch.equal(la, lb) if la.device.type != "meta" else la.shape == lb.shape
    assert ga.keys() == gb.keys()
    for k in ga:
        assert (ga[k] is None) == (gb[k] is None)
        if ga[k] is not None and ga[k].device.type != "meta":
            assert torch.equal(ga[k], gb[k]), k


def fallback_case(loss_name, tensors, options=None, grads=("input",)):
    """Compare ft.<loss> with torch's on the same arguments; return the fallback reasons."""
    options = options or {}

    def call(func):
        def go():
            leaves = {k: v.detach().clone().requires_grad_(k in grads)
                      if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
                      else v
                      for k, v in tensors.items()}
            loss = func(**leaves, **options)
            if loss.requires_grad:
                loss.sum().backward()
            return loss.detach(), {k: leaves[k].grad for k in grads}
        return go

    assert_same_outcome(call(getattr(ft, loss_name)), call(TORCH[loss_name]))
    return {reason for (name, reason) in ft.fallback_counts() if name == loss_name}


def f64(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


FALLBACKS = {
    "meta device": ("cross_entropy",
                    {"input": torch.randn(4, 3, device="meta"),
                     "target": torch.zeros(4, dtype=torch.long, device="meta")},
                    {}, ("input",), "input on device meta"),
    "integer input": ("mse_loss", {"input": torch.arange(6), "target": torch.arange(6)},
                      {}, (), "input dtype torch.int64"),
    "complex input": ("mse_loss", {"input": torch.randn(5, dtype=torch.complex64),
                                   "target": torch.randn(5, dtype=torch.complex64)},
                      {}, ("input",), "input dtype torch.complex64"),
    "target requires grad": ("mse_loss", {"input": f64(5), "target": f64(5, seed=1)},
                             {}, ("input", "target"), "target requires grad"),
    "huber target requires grad": ("huber_loss", {"input": f64(5), "target": f64(5, seed=1)},
                                   {"delta": 0.5}, ("input", "target"), "target requires grad"),
    "mse weight requires grad": ("mse_loss", {"input": f64(5), "target": f64(5, seed=1),
                                              "weight": f64(5, seed=2).abs()},
                                 {}, ("input", "weight"), "weight requires grad"),
    "huber weight requires grad": ("huber_loss", {"input": f64(5), "target": f64(5, seed=1),
                                                  "weight": f64(5, seed=2).abs()},
                                   {"reduction": "sum"}, ("input", "weight"),
                                   "weight requires grad"),
    "l1 weight requires grad": ("l1_loss", {"input": f64(5), "target": f64(5, seed=1),
                                            "weight": f64(5, seed=2).abs()},
                                {}, ("input", "weight"), "weight requires grad"),
    "kl target requires grad": ("kl_div", {"input": f64(4, 3), "target": f64(4, 3).abs()},
                                {"reduction": "batchmean"}, ("input", "target"),
                                "target requires grad"),
    "bce target requires grad": ("binary_cross_entropy",
                                 {"input": torch.rand(4, 3, generator=gen(), dtype=torch.float64),
                                  "target": torch.rand(4, 3, generator=gen(1),
                                                       dtype=torch.float64)},
                                 {}, ("input", "target"), "target requires grad"),
    "gaussian target requires grad": ("gaussian_nll_loss",
                                      {"input": f64(4, 3), "target": f64(4, 3, seed=1),
                                       "var": f64(4, 3, seed=2).abs()},
                                      {}, ("input", "target", "var"), "target requires grad"),
    "gaussian int var": ("gaussian_nll_loss", {"input": f64(4, 3), "target": f64(4, 3, seed=1),
                                               "var": 1}, {}, ("input",), "var is not a tensor"),
    "nll uint8 target": ("nll_loss", {"input": f64(4, 3),
                                      "target": torch.tensor([0, 2, 1, 1], dtype=torch.uint8)},
                         {}, ("input",), "target dtype torch.uint8 with input dtype torch.float64"),
    "multi_margin half": ("multi_margin_loss", {"input": f64(4, 3).half(),
                                                "target": torch.tensor([0, 2, 1, 1])},
                          {}, ("input",), "input dtype torch.float16"),
    "multi_margin weight requires grad": ("multi_margin_loss",
                                          {"input": f64(4, 3), "target": torch.tensor([0, 2, 1, 1]),
                                           "weight": f64(3).abs()},
                                          {}, ("input", "weight"), "weight requires grad"),
    "mse weight broadcast": ("mse_loss", {"input": f64(4, 3), "target": f64(4, 3, seed=1),
                                          "weight": f64(3, seed=2).abs()},
                             {}, ("input",), "weight shape differs from input's (torch broadcasts)"),
    "kl elementwise_mean": ("kl_div", {"input": f64(4), "target": f64(4, seed=1).abs()},
                            {"reduction": "elementwise_mean"}, ("input",),
                            "reduction 'elementwise_mean'"),
    "ce weight requires grad": ("cross_entropy", {"input": f64(4, 3),
                                                  "target": torch.tensor([0, 2, 1, 1]),
                                                  "weight": f64(3).abs()},
                                {}, ("input", "weight"), "weight requires grad"),
    "bce pos_weight requires grad": ("binary_cross_entropy_with_logits",
                                     {"input": f64(4, 3), "target": f64(4, 3).gt(0).double(),
                                      "pos_weight": f64(3).abs()},
                                     {}, ("input", "pos_weight"), "pos_weight requires grad"),
    "ce int32 target": ("cross_entropy", {"input": f64(4, 3),
                                          "target": torch.tensor([0, 2, 1, 1], dtype=torch.int32)},
                        {}, ("input",), "target dtype torch.int32 with input dtype torch.float64"),
    "weight of another dtype": ("cross_entropy", {"input": f64(4, 3),
                                                  "target": torch.tensor([0, 2, 1, 1]),
                                                  "weight": torch.rand(3)},
                                {}, ("input",),
                                "weight dtype torch.float32 with input dtype torch.float64"),
    "broadcast target": ("mse_loss", {"input": f64(4, 3), "target": f64(3)},
                         {}, ("input",), "target shape differs from input's (torch broadcasts)"),
    "elementwise_mean": ("huber_loss", {"input": f64(4), "target": f64(4, seed=1)},
                         {"reduction": "elementwise_mean"}, ("input",),
                         "reduction 'elementwise_mean'"),
    "sparse input": ("mse_loss", {"input": f64(4, 3).to_sparse(), "target": f64(4, 3)},
                     {}, (), "input has layout torch.sparse_coo"),
    "float ignore_index": ("cross_entropy", {"input": f64(4, 3), "target": torch.tensor([0, 2, 1, 1])},
                           {"ignore_index": 1.0}, ("input",), "ignore_index of type float"),
    "cosine broadcast partner": ("cosine_embedding_loss",
                                 {"input1": f64(4, 3), "input2": f64(1, 3, seed=1),
                                  "target": torch.tensor([1.0, -1.0, 1.0, -1.0],
                                                         dtype=torch.float64)},
                                 {}, ("input1", "input2"),
                                 "input2 shape differs from input's (torch broadcasts)"),
    "cosine int32 target": ("cosine_embedding_loss",
                            {"input1": f64(4, 3), "input2": f64(4, 3, seed=1),
                             "target": torch.tensor([1, -1, 1, -1], dtype=torch.int32)},
                            {}, ("input1", "input2"),
                            "target dtype torch.int32 with input dtype torch.float64"),
    "triplet broadcast": ("triplet_margin_loss",
                          {"anchor": f64(4, 3), "positive": f64(1, 3, seed=1),
                           "negative": f64(4, 3, seed=2)},
                          {}, TRIPLET, "positive shape differs from input's (torch broadcasts)"),
    "triplet p <= 0": ("triplet_margin_loss",
                       {"anchor": f64(4, 3), "positive": f64(4, 3, seed=1),
                        "negative": f64(4, 3, seed=2)},
                       {"p": -1.0}, TRIPLET, "rejected by fastloss: ValueError"),
    "margin_ranking target requires grad": ("margin_ranking_loss",
                                            {"input1": f64(5), "input2": f64(5, seed=1),
                                             "target": f64(5, seed=2).sign()},
                                            {}, ("input1", "input2", "target"),
                                            "target requires grad"),
    "margin_ranking float32 target": ("margin_ranking_loss",
                                      {"input1": f64(5), "input2": f64(5, seed=1),
                                       "target": f64(5, seed=2).sign().float()},
                                      {}, ("input1", "input2"),
                                      "target dtype torch.float32 with input dtype torch.float64"),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_fallback_gives_torchs_exact_result(case):
    loss_name, tensors, options, grads, reason = FALLBACKS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own broadcast / deprecation warnings
        assert fallback_case(loss_name, tensors, options, grads) == {reason}


def test_fallback_for_torch_function_subclass():
    class Tagged(torch.Tensor):
        pass

    x = f64(4, 3).as_subclass(Tagged)
    y = f64(4, 3, seed=1)
    assert_same_outcome(lambda: (ft.mse_loss(x, y), {}), lambda: (TORCH["mse_loss"](x, y), {}))
    assert ft.fallback_counts() == {("mse_loss", "a tensor with __torch_function__ "
                                                 "(subclass or mode)"): 1}


def test_fallback_is_logged_at_debug(caplog):
    with caplog.at_level("DEBUG", logger="fastloss.torch"):
        ft.mse_loss(torch.arange(3.0), torch.arange(3.0).requires_grad_())
    assert "mse_loss falls back to torch: target requires grad" in caplog.text
    ft.reset_fallback_counts()
    assert ft.fallback_counts() == {}


ERRORS = {
    "class index out of range": ("cross_entropy", {"input": f64(4, 3),
                                                   "target": torch.tensor([0, 5, 1, 1])}, {}),
    "negative class index": ("cross_entropy", {"input": f64(4, 3),
                                               "target": torch.tensor([0, -3, 1, 1])}, {}),
    "batch size mismatch": ("cross_entropy", {"input": f64(4, 3),
                                              "target": torch.tensor([0, 1, 1])}, {}),
    "probability shape": ("cross_entropy", {"input": f64(4, 3), "target": f64(4, 2)}, {}),
    "weight length": ("cross_entropy", {"input": f64(4, 3), "target": torch.tensor([0, 1, 1, 2]),
                                        "weight": f64(4).abs()}, {}),
    "unknown reduction": ("mse_loss", {"input": f64(4), "target": f64(4)},
                          {"reduction": "avg"}),
    "label_smoothing > 1": ("cross_entropy", {"input": f64(4, 3),
                                              "target": torch.tensor([0, 1, 1, 2])},
                            {"label_smoothing": 1.5}),
    "bce shape": ("binary_cross_entropy_with_logits", {"input": f64(4, 3), "target": f64(4, 2)},
                  {}),
    "bce pos_weight shape": ("binary_cross_entropy_with_logits",
                             {"input": f64(4, 3), "target": f64(4, 3), "pos_weight": f64(2)}, {}),
    "huber negative delta": ("huber_loss", {"input": f64(4), "target": f64(4)}, {"delta": -1.0}),
    "nll index out of range": ("nll_loss", {"input": f64(4, 3),
                                            "target": torch.tensor([0, 3, 1, 1])}, {}),
    "multi_margin p=3": ("multi_margin_loss", {"input": f64(4, 3),
                                               "target": torch.tensor([0, 1, 1, 2])}, {"p": 3}),
    "multi_margin 3d": ("multi_margin_loss", {"input": f64(4, 3, 2),
                                              "target": torch.tensor([0, 1, 1, 2])}, {}),
    "bce input above 1": ("binary_cross_entropy", {"input": f64(4).abs().add(1.0),
                                                   "target": f64(4).abs()}, {}),
    "bce target shape": ("binary_cross_entropy", {"input": f64(4, 3).sigmoid(),
                                                  "target": f64(3).sigmoid()}, {}),
    "l1 weight shape": ("l1_loss", {"input": f64(4, 3), "target": f64(4, 3),
                                    "weight": f64(3).abs()}, {}),
    "smooth_l1 negative beta": ("smooth_l1_loss", {"input": f64(4), "target": f64(4)},
                                {"beta": -1.0}),
    "gaussian negative var": ("gaussian_nll_loss", {"input": f64(4), "target": f64(4),
                                                    "var": -f64(4).abs()}, {}),
    "gaussian negative float var": ("gaussian_nll_loss", {"input": f64(4), "target": f64(4),
                                                          "var": -1.0}, {}),
    "gaussian var size": ("gaussian_nll_loss", {"input": f64(4, 3), "target": f64(4, 3),
                                                "var": f64(2).abs()}, {}),
    "gaussian reduction": ("gaussian_nll_loss", {"input": f64(4), "target": f64(4),
                                                 "var": f64(4).abs()}, {"reduction": "avg"}),
    "kl_div reduction": ("kl_div", {"input": f64(4), "target": f64(4).abs()},
                         {"reduction": "avg"}),
    "triplet margin 0": ("triplet_margin_loss", {"anchor": f64(4, 3), "positive": f64(4, 3),
                                                 "negative": f64(4, 3)}, {"margin": 0.0}),
    "triplet 3d": ("triplet_margin_loss", {"anchor": f64(2, 4, 3), "positive": f64(2, 4, 3),
                                           "negative": f64(2, 4, 3)}, {}),
    "margin_ranking dimensions": ("margin_ranking_loss",
                                  {"input1": f64(4, 3), "input2": f64(3), "target": f64(4, 3)},
                                  {"reduction": "none"}),
    "margin_ranking shapes": ("margin_ranking_loss",
                              {"input1": f64(4, 3), "input2": f64(2, 3), "target": f64(4, 3)},
                              {}),
    "hinge_embedding shapes": ("hinge_embedding_loss", {"input": f64(4, 3), "target": f64(2)},
                               {"reduction": "none"}),
    "cosine target shape": ("cosine_embedding_loss", {"input1": f64(4, 3), "input2": f64(4, 3),
                                                      "target": f64(4, 1)}, {}),
    "cosine 3d": ("cosine_embedding_loss", {"input1": f64(2, 4, 3), "input2": f64(2, 4, 3),
                                            "target": f64(2, 4)}, {}),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_raises_torchs_error(case):
    loss_name, tensors, options = ERRORS[case]

    def call(func):
        return lambda: func(**tensors, **options)

    ours, theirs = outcome(call(getattr(ft, loss_name))), outcome(call(TORCH[loss_name]))
    if isinstance(theirs, tuple):
        assert ours == theirs
    else:  # torch accepts it (e.g. a negative Huber delta): its exact result
        assert torch.equal(ours, theirs)


# ------------------------------------------------------------------ patch

def test_patch_routes_functional_and_modules(monkeypatch):
    spy = Spy(monkeypatch, "cross_entropy_with_grad")
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.tensor([0, 2, 1, 1])
    ft.patch()
    ft.patch()  # idempotent
    assert ft.is_patched() and F.cross_entropy is ft.cross_entropy
    torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, t).backward()
    assert len(spy.calls) == 1
    ft.unpatch()
    ft.unpatch()
    assert not ft.is_patched()
    for name in TWINS:
        assert getattr(F, name) is TORCH[name]
    torch.nn.CrossEntropyLoss()(x, t)
    assert len(spy.calls) == 1


def test_patched_context_scopes_and_nests():
    with ft.patched():
        assert F.mse_loss is ft.mse_loss
        with ft.patched():
            pass
        assert F.mse_loss is ft.mse_loss  # the inner block leaves the outer patch on
    assert F.mse_loss is TORCH["mse_loss"]
    ft.patch()
    with ft.patched():
        pass
    assert F.mse_loss is ft.mse_loss  # a patch from before the block stays


def test_patched_fallback_calls_torchs_original_not_itself():
    with ft.patched():
        loss = F.mse_loss(torch.arange(4.0), torch.arange(4.0).flip(0).requires_grad_())
    assert loss.item() == 5.0
    assert ft.fallback_counts() == {("mse_loss", "target requires grad"): 1}


def test_patch_routes_every_twin_and_only_twins():
    with ft.patched():
        for name in TWINS:
            assert getattr(F, name) is getattr(ft, name)
        for loss in ft._LOSSES:
            if not loss.twin:
                assert not hasattr(F, loss.name)
    for name in TWINS:
        assert getattr(F, name) is TORCH[name]


@pytest.mark.parametrize("loss_name,case", [(loss, name) for loss, name in ALL_CASES
                                            if loss in TWINS and loss != "cross_entropy"])
def test_patched_modules_and_functional_serve_every_case(loss_name, case):
    """Under patch(), torch.nn.functional's own name gives torch's result, served here."""
    tensors, options = CASES[loss_name][case](torch.float64, gen())
    names = grad_names(loss_name, tensors)
    theirs, their_grads = run(TORCH[loss_name], tensors, options, names)
    with ft.patched():
        ours, our_grads = run(lambda **kw: getattr(F, loss_name)(**kw), tensors, options, names)
    torch.testing.assert_close(ours, theirs, **TOL[torch.float64])
    for name in names:
        torch.testing.assert_close(our_grads[name], their_grads[name], **TOL[torch.float64])
    assert ft.fallback_counts() == {}


# ------------------------------------------------------------------ modules

MODULES = [
    ("CrossEntropyLoss", dict(weight=torch.tensor([1.0, 2.0, 0.5]), ignore_index=1,
                              label_smoothing=0.1), "ce"),
    ("CrossEntropyLoss", dict(reduction="sum"), "ce"),
    ("CrossEntropyLoss", dict(size_average=False), "ce"),
    ("BCEWithLogitsLoss", dict(weight=torch.tensor([1.0, 2.0, 0.5]),
                               pos_weight=torch.tensor([3.0, 1.0, 0.2])), "bce"),
    ("BCEWithLogitsLoss", dict(reduction="none"), "bce"),
    ("MSELoss", dict(reduction="sum"), "pointwise"),
    ("MSELoss", dict(reduce=False), "pointwise"),
    ("HuberLoss", dict(delta=0.4, reduction="none"), "pointwise"),
    ("NLLLoss", dict(weight=torch.tensor([1.0, 2.0, 0.5]), ignore_index=2), "nll"),
    ("NLLLoss", dict(reduction="none"), "nll"),
    ("MultiMarginLoss", dict(p=2, margin=0.5, weight=torch.tensor([1.0, 2.0, 0.5])), "ce"),
    ("MultiMarginLoss", dict(reduction="sum"), "ce"),
    ("MultiLabelSoftMarginLoss", dict(weight=torch.tensor([1.0, 2.0, 0.5])), "bce"),
    ("MultiLabelSoftMarginLoss", dict(reduction="none"), "bce"),
    ("BCELoss", dict(weight=torch.tensor([1.0, 2.0, 0.5])), "prob"),
    ("BCELoss", dict(reduction="sum"), "prob"),
    ("SoftMarginLoss", dict(), "sign"),
    ("KLDivLoss", dict(reduction="batchmean"), "kl"),
    ("KLDivLoss", dict(reduction="sum", log_target=True), "kl_log"),
    ("L1Loss", dict(), "pointwise"),
    ("L1Loss", dict(size_average=False), "pointwise"),
    ("SmoothL1Loss", dict(beta=0.5, reduction="none"), "pointwise"),
    ("PoissonNLLLoss", dict(), "pointwise"),
    ("PoissonNLLLoss", dict(log_input=False, full=True, eps=1e-3), "rate"),
    ("GaussianNLLLoss", dict(full=True), "gauss"),
    ("GaussianNLLLoss", dict(eps=0.1, reduction="none"), "gauss_row"),
    ("CosineEmbeddingLoss", dict(margin=0.3), "cosine"),
    ("CosineEmbeddingLoss", dict(reduction="none"), "cosine"),
    ("TripletMarginLoss", dict(margin=0.5, p=1.0, swap=True), "triplet"),
    ("TripletMarginLoss", dict(p=math.inf, reduction="sum"), "triplet"),
    ("MarginRankingLoss", dict(margin=0.2, reduction="none"), "ranking"),
    ("MarginRankingLoss", dict(size_average=False), "ranking"),
    ("HingeEmbeddingLoss", dict(margin=2.0), "sign"),
]


def module_data(kind, dtype):
    """(input, the other forward arguments)."""
    g = gen(5)
    x = torch.randn(6, 3, generator=g, dtype=dtype)
    if kind == "ce":
        return x, (torch.randint(0, 3, (6,), generator=g),)
    if kind == "nll":
        return x.log_softmax(1), (torch.randint(0, 3, (6,), generator=g),)
    if kind == "bce":
        return x, (torch.rand(6, 3, generator=g, dtype=dtype).round(),)
    if kind == "prob":
        return x.sigmoid(), (torch.rand(6, 3, generator=g, dtype=dtype).round(),)
    if kind == "sign":
        return x, (torch.rand(6, 3, generator=g, dtype=dtype).round() * 2 - 1,)
    if kind in ("kl", "kl_log"):
        p = torch.randn(6, 3, generator=g, dtype=dtype).softmax(1)
        return x.log_softmax(1), (p.log() if kind == "kl_log" else p,)
    if kind == "rate":
        return x.abs() + 0.1, (torch.randint(0, 5, (6, 3), generator=g).to(dtype),)
    if kind == "cosine":
        return x, (x + torch.randn(6, 3, generator=g, dtype=dtype),
                   torch.rand(6, generator=g, dtype=dtype).round() * 2 - 1)
    if kind == "triplet":
        return x, (x + 0.5 * torch.randn(6, 3, generator=g, dtype=dtype),
                   torch.randn(6, 3, generator=g, dtype=dtype))
    if kind == "ranking":
        return x, (torch.randn(6, 3, generator=g, dtype=dtype),
                   torch.rand(6, 3, generator=g, dtype=dtype).round() * 2 - 1)
    if kind in ("gauss", "gauss_row"):
        var_shape = (6, 3) if kind == "gauss" else (6,)
        return x, (torch.randn(6, 3, generator=g, dtype=dtype),
                   torch.rand(var_shape, generator=g, dtype=dtype) + 0.1)
    return x, (torch.randn(6, 3, generator=g, dtype=dtype),)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("class_name,kwargs,kind", MODULES)
def test_module_matches_torch_and_state_dict_round_trip(class_name, kwargs, kind, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy size_average/reduce
        ours = getattr(ft, class_name)(**copy.deepcopy(kwargs)).to(dtype)
        theirs = getattr(torch.nn, class_name)(**copy.deepcopy(kwargs)).to(dtype)
    assert isinstance(ours, getattr(torch.nn, class_name))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert value.dtype == dtype and torch.equal(value, theirs.state_dict()[key])
    assert dict(ours.named_buffers()).keys() == dict(theirs.named_buffers()).keys()
    x, rest = module_data(kind, dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = ours(a, *rest), theirs(b, *rest)
    torch.testing.assert_close(la, lb, **TOL[dtype])
    la.sum().backward()
    lb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])
    assert ft.fallback_counts() == {}
    # state_dict round trip: torch's module -> ours, and back
    fresh = getattr(ft, class_name)(**copy.deepcopy(kwargs)).to(dtype)
    if fresh.state_dict():
        for value in fresh.state_dict().values():
            value.mul_(7)
    fresh.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(fresh(x, *rest), lb.detach(), **TOL[dtype])
    theirs.load_state_dict(ours.state_dict())


def twinless_module(class_name, kwargs):
    """(its _LOSSES entry, an instance) of a module without a torch twin, checked to be a
    torch.nn loss whose constructor takes the function's options with its defaults."""
    import inspect
    cls = getattr(ft, class_name)
    loss = next(entry for entry in ft._LOSSES if entry.module and entry.module[0] == class_name)
    assert issubclass(cls, torch.nn.modules.loss._Loss)
    params = inspect.signature(cls).parameters
    func_params = inspect.signature(loss.function).parameters
    assert list(params) == list(loss.module[1])
    assert all(params[n].default == func_params[n].default for n in params)
    module = cls(**kwargs)
    assert module.reduction == kwargs.get("reduction", "mean") and module.state_dict() == {}
    return loss, module


@pytest.mark.parametrize("class_name,kwargs", [
    ("HingeLoss", dict()), ("HingeLoss", dict(margin=0.5, squared=True, reduction="sum")),
    ("HingeLoss", dict(margin=2.0)), ("MSLELoss", dict(reduction="none")),
    ("MSLELoss", dict()), ("LogCoshLoss", dict()), ("LogCoshLoss", dict(reduction="sum"))])
def test_modules_without_torch_twin(class_name, kwargs):
    """torch-style modules for hinge, MSLE, log-cosh: a torch.nn loss base, the
    function's options as constructor arguments with its defaults."""
    loss, module = twinless_module(class_name, kwargs)
    x, (y,) = module_data("sign", torch.float64)
    if class_name == "MSLELoss":
        x, y = x.abs(), y.abs()
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la = module(a, y)
    lb = REFERENCE[loss.name](b, y, **kwargs)
    torch.testing.assert_close(la, lb, **TOL[torch.float64])
    la.sum().backward()
    lb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL[torch.float64])
    assert ft.fallback_counts() == {}


@pytest.mark.parametrize("class_name,kwargs", [
    ("ContrastiveLoss", dict()), ("ContrastiveLoss", dict(margin=2.0, reduction="none")),
    ("CenterLoss", dict()), ("CenterLoss", dict(reduction="sum"))])
def test_pair_modules_without_torch_twin(class_name, kwargs):
    """ContrastiveLoss and CenterLoss: the function's options as constructor arguments
    with its defaults; forward takes the function's tensors (both gradients reach them)."""
    loss, module = twinless_module(class_name, kwargs)
    build = rows_case(target="binary") if class_name == "ContrastiveLoss" else center_case()
    tensors, _ = build(torch.float64, gen(6))
    names = grad_names(loss.name, tensors)
    ours, our_grads = run(lambda **kw: module(*kw.values()), tensors, {}, names)
    theirs, their_grads = run(REFERENCE[loss.name], tensors, kwargs, names)
    torch.testing.assert_close(ours, theirs, **TOL[torch.float64])
    for name in names:
        torch.testing.assert_close(our_grads[name], their_grads[name], **TOL[torch.float64])
    assert ft.fallback_counts() == {}


# ------------------------------------------------------------------ training runs

def train(model, data, labels, loss_fn, steps, batch, lr=0.05):
    """SGD with momentum over fixed batches: the loss per step."""
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    n = len(data)
    for step in range(steps):
        index = torch.arange(step * batch, (step + 1) * batch) % n
        optimiser.zero_grad()
        loss = loss_fn(model(data[index]), labels[index])
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def twin_runs(make_model, data, labels, steps, batch, dtype):
    """The same training with torch's loss and then patched; (losses, losses, models)."""
    torch.manual_seed(0)
    reference = make_model().to(dtype)
    patched = copy.deepcopy(reference)
    criterion = torch.nn.CrossEntropyLoss()
    base = train(reference, data.to(dtype), labels, criterion, steps, batch)
    ft.reset_fallback_counts()
    with ft.patched():
        fast = train(patched, data.to(dtype), labels, criterion, steps, batch)
    assert ft.fallback_counts() == {}
    return np.array(base), np.array(fast), reference, patched


def accuracy(model, data, labels, dtype):
    with torch.no_grad():
        return (model(data.to(dtype)).argmax(1) == labels).float().mean().item()


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    x = torch.from_numpy(bunch.data / 16.0)
    return x, torch.from_numpy(bunch.target).long()


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def test_patch_digits_mlp_float64_curves_agree(digits):
    x, y = digits
    base, fast, _, _ = twin_runs(mlp, x, y, steps=150, batch=64, dtype=torch.float64)
    assert base[-1] < 0.5 * base[0]  # it trained
    np.testing.assert_allclose(fast, base, rtol=1e-10, atol=0)


def test_patch_digits_mlp_float32_same_accuracy(digits):
    x, y = digits
    base, fast, ref_model, fast_model = twin_runs(mlp, x, y, steps=150, batch=64,
                                                  dtype=torch.float32)
    np.testing.assert_allclose(fast, base, rtol=1e-5, atol=1e-6)
    assert accuracy(fast_model, x, y, torch.float32) == accuracy(ref_model, x, y, torch.float32)


def big_vocab():
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 32000))


@pytest.fixture(scope="module")
def vocab_data():
    g = gen(9)
    labels = torch.randint(0, 32000, (256,), generator=g)
    # features that determine the label, so that the loss falls
    x = torch.randn(256, 16, generator=g, dtype=torch.float64) + labels[:, None] % 16 * 0.1
    return x, labels


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_patch_32000_way_output_layer(vocab_data, dtype):
    x, y = vocab_data
    base, fast, ref_model, fast_model = twin_runs(big_vocab, x, y, steps=25, batch=64,
                                                  dtype=dtype)
    assert base[-1] < base[0]
    if dtype is torch.float64:
        np.testing.assert_allclose(fast, base, rtol=1e-10, atol=0)
    else:
        np.testing.assert_allclose(fast, base, rtol=1e-5, atol=0)
        assert accuracy(fast_model, x, y, dtype) == accuracy(ref_model, x, y, dtype)


# ------------------------------------------------------------------ torch.compile

GRAPH_TARGETS: list[str] = []


def recording_inductor(gm, example_inputs):
    """Inductor, recording what dynamo's graph calls (so a test sees the fastloss ops)."""
    from torch._inductor.compile_fx import compile_fx
    GRAPH_TARGETS.extend(str(node.target) for node in gm.graph.nodes)
    return compile_fx(gm, example_inputs)


def compiled_steps(model, loss_fn, batches, compiled):
    """Two SGD steps whose forward + loss is torch.compile(fullgraph=True)d (or eager)."""
    def forward(inputs, target):
        return loss_fn(model(inputs), target)

    step = torch.compile(forward, fullgraph=True, backend=recording_inductor) if compiled else forward
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for inputs, target in batches:
        optimiser.zero_grad()
        loss = step(inputs, target)
        loss.backward()
        optimiser.step()
        losses.append(loss.detach())
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()]


FAMILIES = {
    "cross_entropy": (lambda: torch.nn.Linear(5, 4),
                      lambda out, t: ft.cross_entropy(out, t, label_smoothing=0.1,
                                                      weight=torch.tensor([1.0, 2.0, 1.0, 0.5],
                                                                          dtype=out.dtype)),
                      lambda g: torch.randint(0, 4, (8,), generator=g)),
    "bce": (lambda: torch.nn.Linear(5, 4),
            lambda out, t: ft.binary_cross_entropy_with_logits(
                out, t, pos_weight=torch.full((4,), 2.0, dtype=out.dtype)),
            lambda g: torch.rand(8, 4, generator=g, dtype=torch.float64).round()),
    "pointwise": (lambda: torch.nn.Linear(5, 4),
                  lambda out, t: ft.mse_loss(out, t) + ft.huber_loss(out, t, delta=0.5,
                                                                     reduction="sum"),
                  lambda g: torch.randn(8, 4, generator=g, dtype=torch.float64)),
}


def class_rows_losses(out, t):
    w = torch.tensor([1.0, 2.0, 1.0, 0.5], dtype=out.dtype)
    return (ft.nll_loss(out.log_softmax(1), t, weight=w, ignore_index=3)
            + ft.multi_margin_loss(out, t, p=2, margin=0.5, weight=w, reduction="sum")
            + ft.multilabel_soft_margin_loss(out, (t[:, None] == torch.arange(4)).to(out.dtype),
                                             weight=w))


def elementwise_losses(out, t):
    """Every other elementwise loss on one output; t in [0, 1)."""
    sign, bit, w = t.round() * 2 - 1, t.round(), t + 0.5
    var = torch.nn.functional.softplus(out[:, 0]) + 0.1  # a differentiable var, (N,)
    return (ft.binary_cross_entropy(out.sigmoid(), bit, weight=w)
            + ft.soft_margin_loss(out, sign) + ft.hinge_loss(out, sign, squared=True)
            + ft.sigmoid_focal_loss(out, bit, reduction="mean")
            + ft.kl_div(out.log_softmax(1), t.softmax(1), reduction="batchmean")
            + ft.l1_loss(out, t, weight=w) + ft.mse_loss(out, t, weight=w)
            + ft.huber_loss(out, t, delta=0.5, weight=w)
            + ft.smooth_l1_loss(out, t, beta=0.5) + ft.msle_loss(out, t)
            + ft.log_cosh_loss(out, t) + ft.poisson_nll_loss(out, t.mul(4).round(), full=True)
            + ft.gaussian_nll_loss(out[:, 1:], t[:, 1:], var, full=True)
            + (ft.gaussian_nll_loss(out[:, 1:], t[:, 1:], var, reduction="none")
               * t[:, 1:]).sum())


def pairs_losses(out, t):
    """Every pairs loss on one (8, 4) output; t in [0, 1)."""
    sign = t.round() * 2 - 1
    a, b = out[:4], out[4:]
    classes = (t[:, 0] * 3).long()
    centers = t[:3] * 2
    return (ft.contrastive_loss(a, b, t[:4, 0].round(), margin=1.5)
            + ft.cosine_embedding_loss(a, b, sign[:4, 0], margin=0.1)
            + ft.triplet_margin_loss(a, b, out[2:6], p=1, swap=True)
            + ft.triplet_margin_loss(a, b, out[2:6], p=math.inf, reduction="sum")
            + ft.margin_ranking_loss(out, t, sign, margin=0.2, reduction="sum")
            + ft.hinge_embedding_loss(out, sign[:, :1], margin=0.5)
            + ft.center_loss(out, classes, centers)
            + (ft.margin_ranking_loss(out[:, :1], out[:1], sign, reduction="none") * t).sum())


FAMILIES["pairs"] = (lambda: torch.nn.Linear(5, 4), pairs_losses,
                     lambda g: torch.rand(8, 4, generator=g, dtype=torch.float64))
FAMILIES["class_rows"] = (lambda: torch.nn.Linear(5, 4), class_rows_losses,
                          lambda g: torch.randint(0, 4, (8,), generator=g))
FAMILIES["elementwise"] = (lambda: torch.nn.Linear(5, 4), elementwise_losses,
                           lambda g: torch.rand(8, 4, generator=g, dtype=torch.float64))
FAMILY_OPS = {"cross_entropy": ["cross_entropy"], "bce": ["binary_cross_entropy_with_logits"],
              "pointwise": ["mse_loss", "huber_loss"],
              "class_rows": ["nll_loss", "multi_margin_loss", "multilabel_soft_margin_loss"],
              "elementwise": ["binary_cross_entropy", "soft_margin_loss", "hinge_loss",
                              "sigmoid_focal_loss", "kl_div", "l1_loss", "mse_loss",
                              "huber_loss", "smooth_l1_loss", "msle_loss", "log_cosh_loss",
                              "poisson_nll_loss", "gaussian_nll_loss"],
              "pairs": ["contrastive_loss", "cosine_embedding_loss", "triplet_margin_loss",
                        "margin_ranking_loss", "hinge_embedding_loss", "center_loss"]}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_compile_fullgraph_training_step_matches_eager(family):
    make_model, loss_fn, make_target = FAMILIES[family]
    torch.manual_seed(0)
    model = make_model().double()
    g = gen(2)
    batches = [(torch.randn(8, 5, generator=g, dtype=torch.float64), make_target(g))
               for _ in range(2)]
    torch._dynamo.reset()
    GRAPH_TARGETS.clear()
    eager_losses, eager_params = compiled_steps(copy.deepcopy(model), loss_fn, batches, False)
    losses, params = compiled_steps(copy.deepcopy(model), loss_fn, batches, True)
    ops = {t for t in GRAPH_TARGETS if t.startswith("fastloss.")}
    assert ops == {f"fastloss.{name}_with_grad.default" for name in FAMILY_OPS[family]}, ops
    torch.testing.assert_close(losses, eager_losses, rtol=1e-12, atol=0)
    for p, q in zip(params, eager_params):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)
    assert ft.fallback_counts() == {}


def test_torch_compile_fullgraph_through_a_fallback():
    x = f64(6, 3).requires_grad_()
    y = f64(6, 3, seed=1).requires_grad_()  # a differentiable target: torch's loss
    torch._dynamo.reset()
    GRAPH_TARGETS.clear()
    compiled = torch.compile(lambda x, y: ft.mse_loss(x, y), fullgraph=True,
                             backend=recording_inductor)
    compiled(x, y).backward()
    assert not any(t.startswith("fastloss.") for t in GRAPH_TARGETS)  # torch's graph
    ref, ref_y = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    TORCH["mse_loss"](ref, ref_y).backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(y.grad, ref_y.grad, rtol=1e-12, atol=0)


def test_fake_implementations_give_the_kernels_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    for loss in ft._LOSSES:
        for case in CASES[loss.name].values():
            tensors, options = case(torch.float32, gen())
            defaults = {n: p.default for n, p in ft._signature(loss).parameters.items()}
            numbers = [type(tensors.get(n)) is float for n in loss.numbers]
            for reduction in REDUCTIONS:
                opts = {**defaults, **options, "reduction": reduction}
                args = [torch.tensor(t, dtype=torch.float64) if type(t) is float else t
                        for t in (tensors.get(n) for n in loss.tensors)] + \
                    [float(opts[n]) if kind is float else opts[n]
                     for n, kind in loss.options.items()] + numbers + [1]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # kl_div's "mean", called as the op
                    real = loss.ops[True](*args)
                with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                    fake = loss.ops[True](*[mode.from_tensor(a) if isinstance(a, torch.Tensor)
                                            else a for a in args])
                for r, f in zip(real, fake):
                    assert r.shape == f.shape and r.dtype == f.dtype


# ------------------------------------------------------------------ threads

def test_thread_safety_with_two_torch_threads():
    torch.set_num_threads(2)
    g = gen(4)
    jobs = []
    for i in range(4):
        x = torch.randn(1100, 1000, generator=g)  # above the kernels' parallel threshold
        t = torch.randint(0, 1000, (1100,), generator=g)
        jobs.append((x, t))

    def work(x, t):
        leaf = x.clone().requires_grad_()
        loss = ft.cross_entropy(leaf, t, label_smoothing=0.05)
        loss.backward()
        return loss.detach(), leaf.grad

    serial = [work(*job) for job in jobs]
    results = [None] * len(jobs)

    def worker(i):
        for _ in range(3):
            results[i] = work(*jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (a, ga), (b, gb) in zip(results, serial):
        assert torch.equal(a, b) and torch.equal(ga, gb)


# ------------------------------------------- several differentiable tensors

def pair_loss(input1, input2, reduction="mean", *, n_threads=None):
    """Test-only loss: per row ``sum((a - b)^2)``."""
    per_row = ((input1 - input2) ** 2).sum(axis=1)
    return {"none": per_row, "mean": per_row.mean(), "sum": per_row.sum()}[reduction]


def pair_loss_with_grad(input1, input2, reduction="mean", *, n_threads=None):
    diff = 2 * (input1 - input2) / (len(input1) if reduction == "mean" else 1)
    return pair_loss(input1, input2, reduction), diff, -diff


@pytest.fixture(scope="module")
def pair_entry():
    """A loss with two differentiable arrays, through the adapter's own machinery."""
    mp = pytest.MonkeyPatch()
    mp.setattr(fastloss.functional, "pair_loss_test", pair_loss, raising=False)
    mp.setattr(fastloss.functional, "pair_loss_test_with_grad", pair_loss_with_grad,
               raising=False)
    entry = ft._Loss("pair_loss_test", tensors=("input1", "input2"),
                     differentiable=("input1", "input2"), options={"reduction": str},
                     twin=False, none_axis=1, signature="(input1, input2, reduction='mean')")
    ft._register(entry)
    yield entry
    mp.undo()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_several_differentiable_tensors(pair_entry, reduction):
    a = f64(5, 3).requires_grad_()
    b = f64(5, 3, seed=1).requires_grad_()
    up = torch.rand(5, dtype=torch.float64) if reduction == "none" else torch.tensor(1.5)
    (pair_entry.function(a, b, reduction=reduction) * up).sum().backward()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    per_row = ((a2 - b2) ** 2).sum(1)
    ref = {"none": per_row, "mean": per_row.mean(), "sum": per_row.sum()}[reduction]
    (ref * up).sum().backward()
    torch.testing.assert_close(a.grad, a2.grad, rtol=1e-14, atol=0)
    torch.testing.assert_close(b.grad, b2.grad, rtol=1e-14, atol=0)
    assert torch.autograd.gradcheck(lambda a, b: pair_entry.function(a, b, reduction=reduction),
                                    (a.detach().requires_grad_(), b.detach().requires_grad_()))


def test_several_differentiable_tensors_only_one_requires_grad(pair_entry):
    a = f64(5, 3).requires_grad_()
    b = f64(5, 3, seed=1)
    pair_entry.function(a, b).backward()
    torch.testing.assert_close(a.grad, 2 * (a - b).detach() / 5, rtol=1e-14, atol=0)
    assert b.grad is None


def test_several_differentiable_tensors_compile(pair_entry):
    a = f64(5, 3).requires_grad_()
    b = f64(5, 3, seed=1).requires_grad_()
    torch._dynamo.reset()
    loss = torch.compile(lambda a, b: pair_entry.function(a, b, reduction="sum"),
                         fullgraph=True)(a, b)
    loss.backward()
    torch.testing.assert_close(a.grad, 2 * (a - b).detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(b.grad, -2 * (a - b).detach(), rtol=1e-14, atol=0)


def test_loss_without_torch_twin_cannot_fall_back(pair_entry):
    with pytest.raises(TypeError, match="pair_loss_test: cannot serve.*no such loss"):
        pair_entry.function(torch.ones(2, 2, device="meta"), torch.ones(2, 2, device="meta"))


def test_readme_pytorch_example_runs():
    import pathlib
    import re
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not beside the tests")
    section = readme.read_text().split("## PyTorch\n", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["per_sample"].shape == (4,) and namespace["loss"].grad_fn is not None
    assert not ft.is_patched() and ft.fallback_counts() == {}


# ------------------------------------------------------------------ per-loss details

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES["kl_div"]))
def test_kl_div_batchmean(case, dtype):
    tensors, options = CASES["kl_div"][case](dtype, gen())
    check_against_torch("kl_div", tensors, options, dtype, "batchmean")


def test_kl_div_mean_warns_as_torch_once():
    tensors, _ = CASES["kl_div"]["plain"](torch.float64, gen())
    for func in (ft.kl_div, TORCH["kl_div"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            func(**tensors)
        assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line
        message = str(caught[0].message)
    assert message.startswith("reduction: 'mean' divides the total loss")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ft.kl_div(**tensors, reduction="batchmean")  # no warning


def test_multi_margin_empty_batch_falls_back_to_torch():
    x = torch.empty(0, 3, dtype=torch.float64)
    t = torch.empty(0, dtype=torch.long)
    assert ft.multi_margin_loss(x, t, reduction="none").shape == (0,)
    assert ft.fallback_counts() == {("multi_margin_loss", "empty batch"): 1}


def test_gaussian_var_gradient_reaches_a_broadcast_var_with_upstream():
    """reduction="none" with a (N,) var: per-element upstream, var.grad summed over D."""
    x, y = f64(6, 3), f64(6, 3, seed=1)
    var = f64(6, seed=2).abs().add(0.1)
    up = torch.rand(6, 3, generator=gen(7), dtype=torch.float64)
    ours, grads = run(ft.gaussian_nll_loss, {"input": x, "target": y, "var": var}, {
        "reduction": "none"}, ("input", "var"), up)
    theirs, their_grads = run(TORCH["gaussian_nll_loss"], {"input": x, "target": y, "var": var},
                              {"reduction": "none"}, ("input", "var"), up)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    assert grads["var"].shape == (6,)
    for name in grads:
        torch.testing.assert_close(grads[name], their_grads[name], rtol=1e-12, atol=1e-14)
    assert ft.fallback_counts() == {}
