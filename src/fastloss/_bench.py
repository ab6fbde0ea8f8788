"""``python -m fastloss bench``: fastloss's fused losses against the NumPy reference and peers.

Per case it times one fused forward + backward of a mean-reduced loss:

- ``fastloss``: ``<loss>_with_grad(..., out=g, n_threads=T)`` with a preallocated
  gradient buffer ``g`` (the headline number); ``no out=`` is the same call
  allocating a fresh gradient every time;
- ``NumPy ref``: ``fastloss.reference.<loss>_with_grad`` (float64 textbook NumPy);
- ``PyTorch``: ``torch.nn.functional.<loss>`` forward + ``.backward()`` (autograd,
  a fresh ``.grad`` per call), ``torch.set_num_threads(T)``;
- ``sklearn``: ``sklearn._loss`` ``loss_gradient`` into preallocated ``loss_out`` /
  ``gradient_out`` plus ``np.add.reduce(loss_out)`` for the mean (its gradient is
  per sample, unscaled: slightly less work than fastloss's);
- ``C loop``: the obvious C kernel of the same loss (``_yardstick.c``: per row max,
  exp and sum, then scale; mean-reduced, single thread, into the same ``out`` buffer),
  compiled at bench time with ``$CC -O3 -march=native -ffast-math -fopenmp-simd
  -lmvec`` (glibc's vector ``expf``) and loaded with ctypes; "absent" when no
  compiler is found (cross-entropy, BCE, MSE, Huber; issue #11);
- ``np.exp``: ``np.exp(x, out=buf)`` over the same elements (cross-entropy, BCE);
- ``memcpy``: ``np.copyto`` of half the bytes a fused pass must move (reads
  logits, targets/labels; writes the gradient), so that the copy reads and
  writes those bytes in total.

Each time is the median of repeats; candidates are interleaved round by round
(in rotating order) so that load on a shared machine hits them all alike, and the
repeat count adapts to each candidate's cost (``--budget``). Tiny cases time
loops of calls (timeit style) and report microseconds per call. Every other
column is that candidate's time divided by fastloss's (``>1``: fastloss is faster).
A peer that is not installed is reported as absent.

``--torch`` instead times the PyTorch adapter (``fastloss.torch``) through autograd:
forward + ``.backward()`` against ``torch.nn.functional`` on the large cases, the
per-call overhead of a tiny call above the raw NumPy call, and a real training step
(a 32000-way output layer, batch 1024, one thread: forward, loss, backward, SGD) with
torch's loss and then ``fastloss.torch.patched()``, with the share of the step the
loss takes in each.

``--threads-scan`` instead times fastloss with 1 and with 2 (``--threads``)
threads over a range of sizes: the parallel speedup of large inputs and the
no-slowdown check of small ones. ``--json PATH`` writes all results as data,
``--markdown PATH`` the README's Performance table.

The header names the SIMD path measured (the kernels chosen at import: the widest
the CPU runs, or ``FASTLOSS_SIMD``). ``--all-paths`` runs the whole bench once per
path the CPU runs, each in a process of its own with ``FASTLOSS_SIMD`` set, and
shows the paths side by side; ``--check`` then holds the targets on the paths of
``CHECKED_PATHS``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# A call at least this slow gets 1-3 samples, not `min_samples`.
SLOW_CALL_S = 0.5
# A first (warm-up) call at least this slow counts as the only sample: such a
# candidate (the NumPy reference at 1e7+ elements) allocates everything on every
# call anyway, so its first call is not colder than the others.
VERY_SLOW_CALL_S = 5.0
MAX_SAMPLES = 25
@dataclass(frozen=True)
class Loss:
    """How the bench calls one loss: its fastloss/reference function, options, data."""
    label: str
    function: str                   # fastloss's (and reference's) name, without _with_grad
    rows: bool = False              # (N, C) scores with class-index labels; else elementwise
    input: str = "normal"           # normal / probs / log_probs / positive (see _operand)
    target: str = "normal"          # labels / binary / sign / normal / positive / probs
    options: tuple[tuple[str, Any], ...] = ()
    extra: str | None = None        # a third operand: "var" (gaussian_nll_loss)
    torch: str | None = None        # torch.nn.functional's twin, else a torch-ops formula
    pairs: int = 0                  # metric learning: rows (N, D) of this many arrays with
                                    # gradients (see _pairs_data)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


LOSSES = {
    "ce": Loss("cross-entropy", "cross_entropy", rows=True, target="labels",
               torch="cross_entropy"),
    "bce": Loss("BCE with logits", "binary_cross_entropy_with_logits", target="binary",
                torch="binary_cross_entropy_with_logits"),
    "mse": Loss("MSE", "mse_loss", torch="mse_loss"),
    "huber": Loss("Huber", "huber_loss", torch="huber_loss"),
    "nll": Loss("NLL", "nll_loss", rows=True, input="log_probs", target="labels",
                torch="nll_loss"),
    "bce-prob": Loss("BCE of probabilities", "binary_cross_entropy", input="probs",
                     target="binary", torch="binary_cross_entropy"),
    "multi-margin": Loss("multi-margin", "multi_margin_loss", rows=True, target="labels",
                         torch="multi_margin_loss"),
    "multilabel": Loss("multilabel soft margin", "multilabel_soft_margin_loss", rows=True,
                       target="binary", torch="multilabel_soft_margin_loss"),
    "soft-margin": Loss("soft margin", "soft_margin_loss", target="sign",
                        torch="soft_margin_loss"),
    "hinge": Loss("hinge", "hinge_loss", target="sign"),
    "focal": Loss("sigmoid focal", "sigmoid_focal_loss", target="binary",
                  options=(("reduction", "mean"),)),
    "kl": Loss("KL divergence", "kl_div", input="log_probs", target="probs",
               options=(("reduction", "batchmean"),), torch="kl_div"),
    "l1": Loss("L1", "l1_loss", torch="l1_loss"),
    "smooth-l1": Loss("smooth L1", "smooth_l1_loss", torch="smooth_l1_loss"),
    "msle": Loss("MSLE", "msle_loss", input="positive", target="positive"),
    "log-cosh": Loss("log-cosh", "log_cosh_loss"),
    "poisson": Loss("Poisson NLL", "poisson_nll_loss", target="positive",
                    torch="poisson_nll_loss"),
    "gaussian": Loss("Gaussian NLL", "gaussian_nll_loss", extra="var",
                     torch="gaussian_nll_loss"),
    "contrastive": Loss("contrastive", "contrastive_loss", pairs=2),
    "cosine": Loss("cosine embedding", "cosine_embedding_loss", pairs=2,
                   torch="cosine_embedding_loss"),
    "triplet": Loss("triplet margin", "triplet_margin_loss", pairs=3,
                    torch="triplet_margin_loss"),
    "center": Loss("center loss", "center_loss", pairs=1),
    "margin-ranking": Loss("margin ranking", "margin_ranking_loss", pairs=2, target="sign",
                           torch="margin_ranking_loss"),
    "hinge-embedding": Loss("hinge embedding", "hinge_embedding_loss", pairs=1, target="sign",
                            torch="hinge_embedding_loss"),
}
# Center loss's table of class centres in the metric-learning cases.
PAIRS_CENTERS = 1000

# (column key, header) in table order; "fastloss" is the baseline of the ratios.
COLUMNS = [
    ("fastloss", "fastloss (out=)"),
    ("fastloss_alloc", "no out="),
    ("reference", "NumPy ref"),
    ("torch", "PyTorch"),
    ("sklearn", "sklearn"),
    ("c_loop", "C loop"),
    ("np.exp", "np.exp"),
    ("memcpy", "memcpy"),
]
# The losses scikit-learn's sklearn._loss has a twin of.
SKLEARN_LOSSES = ("ce", "bce", "mse", "huber")
PEER_NAMES = {"torch": "PyTorch", "sklearn": "scikit-learn", "c_loop": "the C loop",
              "np.exp": "np.exp",
              "memcpy": "memcpy", "reference": "the NumPy reference"}


# ------------------------------------------------------------------------ cases

@dataclass(frozen=True)
class Case:
    loss: str                       # a key of LOSSES
    shape: tuple[int, ...]          # rows: (N, C); elementwise: (n,)
    dtype: str                      # "float32" / "float64"
    tiny: bool = False              # per-call overhead case (µs, timeit loops)
    # Targets (CE_TARGETS etc. below): ("faster", peer, k): peer's time >= k * fastloss's;
    # ("within", peer, k): fastloss's time <= k * peer's; ("max_us", k);
    # ("f64_ahead",): ratios to the peers at least those of the float32 twin.
    targets: tuple[tuple, ...] = ()

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def key(self) -> str:
        dims = "x".join(map(str, self.shape)) if len(self.shape) > 1 else _short_count(self.size)
        return f"{'tiny-' if self.tiny else ''}{self.loss}-{dims}-{_short_dtype(self.dtype)}"

    @property
    def label(self) -> str:
        dims = ("\u00d7".join(map(str, self.shape)) if len(self.shape) > 1
                else _short_count(self.size))
        prefix = "tiny: " if self.tiny else ""
        return f"{prefix}{LOSSES[self.loss].label} {dims} {_short_dtype(self.dtype)}"

    @property
    def bytes_moved(self) -> int:
        """Bytes a fused pass must read and write: inputs once, the gradient once."""
        item = np.dtype(self.dtype).itemsize
        spec = LOSSES[self.loss]
        if self.loss == "center":
            # features + their gradient, int64 labels, the centre table read and its gradient
            return 2 * self.size * item + self.shape[0] * 8 + 2 * PAIRS_CENTERS * self.shape[1] * item
        if spec.pairs:
            # each row array read and its gradient written, plus the float targets
            # (element losses, target "sign": one per element)
            return 2 * spec.pairs * self.size * item + (
                self.size * item if spec.target == "sign" else
                self.shape[0] * item if self.loss != "triplet" else 0)
        if spec.target == "labels":
            return 2 * self.size * item + self.shape[0] * 8  # logits + gradient + int64 labels
        operands = 4 if spec.extra else 3  # input, target (, var) and the gradient
        return operands * self.size * item


def _short_dtype(dtype: str) -> str:
    return {"float32": "f32", "float64": "f64"}[dtype]


def _short_count(n: int) -> str:
    exponent = round(math.log10(n)) if n > 0 else 0
    if n >= 1000 and 10**exponent == n:
        return f"1e{exponent}"
    return str(n)


# Targets of issues #3 and #11 (where both name one, the stricter is kept):
# cross-entropy and BCE beat the C loop and run >= 8x PyTorch, >= 3x scikit-learn;
# the large-vocabulary rows within 1.2x of np.exp over the same elements; MSE and
# Huber within 1.1x of the C loop and, at 1e6 and 1e7 elements, 1.2x of the copy;
# tiny calls <= 3 us and <= 0.15x scikit-learn's time.
CE_TARGETS = (("faster", "torch", 8.0), ("faster", "sklearn", 3.0), ("faster", "c_loop", 1.0))
VOCAB_TARGETS = CE_TARGETS + (("within", "np.exp", 1.2),)
BCE_TARGETS = (("faster", "torch", 8.0), ("faster", "sklearn", 3.0), ("faster", "c_loop", 1.0),
               ("within", "np.exp", 3.0))
COPY_TARGETS = (("within", "c_loop", 1.1), ("within", "memcpy", 1.2))
F64 = (("f64_ahead",),)
TINY_TARGETS = (("max_us", 3.0), ("within", "sklearn", 0.15))
TINY_CE_TARGETS = TINY_TARGETS + (("faster", "torch", 8.0), ("faster", "sklearn", 3.0))
# Issue #12: each new loss's fused pass at least 5x torch's forward + backward.
NEW_LOSS_TARGETS = (("faster", "torch", 5.0),)
# Issue #13: the metric-learning losses at least 5x torch, within 2x of the copy.
PAIRS_TARGETS = (("faster", "torch", 5.0), ("within", "memcpy", 2.0))
NEW_ROW_LOSSES = ("nll", "multi-margin", "multilabel")
NEW_ELEMENTWISE_LOSSES = ("bce-prob", "soft-margin", "hinge", "focal", "kl", "l1", "smooth-l1",
                          "msle", "log-cosh", "poisson", "gaussian")


def full_cases() -> list[Case]:
    """The cases of issue #3, plus float64 / float32 twins where they are cheap."""
    return [
        Case("ce", (2048, 32000), "float32", targets=VOCAB_TARGETS),
        Case("ce", (256, 128000), "float32", targets=VOCAB_TARGETS),
        Case("ce", (8192, 1000), "float32", targets=CE_TARGETS),
        Case("ce", (8192, 1000), "float64", targets=CE_TARGETS + F64),
        Case("ce", (65536, 10), "float32", targets=CE_TARGETS),
        Case("ce", (65536, 10), "float64", targets=CE_TARGETS + F64),
        Case("bce", (10**7,), "float32", targets=BCE_TARGETS),
        Case("bce", (10**7,), "float64", targets=BCE_TARGETS + F64),
        Case("mse", (10**6,), "float32", targets=COPY_TARGETS),
        Case("mse", (10**7,), "float32", targets=COPY_TARGETS),
        Case("mse", (10**7,), "float64", targets=COPY_TARGETS + F64),
        Case("huber", (10**7,), "float32", targets=COPY_TARGETS),
        Case("huber", (10**7,), "float64", targets=COPY_TARGETS + F64),
        Case("ce", (32, 10), "float32", tiny=True, targets=TINY_CE_TARGETS),
        Case("ce", (32, 10), "float64", tiny=True, targets=TINY_CE_TARGETS + F64),
        Case("mse", (100,), "float32", tiny=True, targets=TINY_TARGETS),
        Case("mse", (100,), "float64", tiny=True, targets=TINY_TARGETS + F64),
    ] + new_loss_cases((65536, 10), (10**7,))


def new_loss_cases(rows: tuple[int, int], elements: tuple[int]) -> list[Case]:
    """The losses of issue #12, float32: rows of class scores of shape `rows`, the
    elementwise losses over `elements`."""
    return ([Case(loss, rows, "float32", targets=NEW_LOSS_TARGETS) for loss in NEW_ROW_LOSSES]
            + [Case(loss, elements, "float32", targets=NEW_LOSS_TARGETS)
               for loss in NEW_ELEMENTWISE_LOSSES])


def pairs_cases(quick: bool) -> list[Case]:
    """The metric-learning cases of issue #13: N = 65536 rows of D = 128, float32."""
    shape = (1024, 64) if quick else (65536, 128)
    return [Case(loss, shape, "float32", targets=PAIRS_TARGETS)
            for loss, spec in LOSSES.items() if spec.pairs]


def quick_cases() -> list[Case]:
    """The same kinds of case at small sizes: a smoke run (its numbers mean little)."""
    return [
        Case("ce", (16, 4000), "float32", targets=VOCAB_TARGETS),
        Case("ce", (256, 100), "float32", targets=CE_TARGETS),
        Case("ce", (256, 100), "float64", targets=CE_TARGETS + F64),
        Case("bce", (10**4,), "float32", targets=BCE_TARGETS),
        Case("mse", (10**4,), "float32", targets=COPY_TARGETS),
        Case("huber", (10**4,), "float64", targets=COPY_TARGETS),
        Case("ce", (32, 10), "float32", tiny=True, targets=TINY_CE_TARGETS),
        Case("mse", (100,), "float32", tiny=True, targets=TINY_TARGETS),
    ] + new_loss_cases((256, 10), (10**4,))


def scan_cases(quick: bool) -> list[Case]:
    """Sizes from far below the parallel threshold to far above it."""
    if quick:
        return [Case("mse", (100,), "float32"), Case("mse", (10**5,), "float32"),
                Case("ce", (64, 1000), "float32")]
    return [
        Case("mse", (100,), "float32"),
        Case("mse", (10**4,), "float32"),
        Case("mse", (10**5,), "float32"),
        Case("mse", (3 * 10**5,), "float32"),
        Case("mse", (10**6,), "float32"),
        Case("mse", (10**7,), "float32"),
        Case("huber", (10**7,), "float32"),
        Case("bce", (10**5,), "float32"),
        Case("bce", (10**6,), "float32"),
        Case("bce", (10**7,), "float32"),
        Case("ce", (32, 10), "float32"),
        Case("ce", (64, 1000), "float32"),
        Case("ce", (256, 1000), "float32"),
        Case("ce", (65536, 10), "float32"),
        Case("ce", (8192, 1000), "float64"),
        Case("ce", (2048, 32000), "float32"),
    ]


# ------------------------------------------------------------------------- data

def _normal(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Standard-normal data; large arrays repeat a 2**20-element block (fast to build,
    and still far larger than the caches of one core)."""
    block = rng.standard_normal(min(math.prod(shape), 1 << 20), dtype=np.dtype(dtype))
    return np.resize(block, shape)


def _operand(kind: str, shape: tuple[int, ...], dtype: str, rng: np.random.Generator):
    """Data of one kind: normal; labels (class indices of (N, C) rows); binary (0/1);
    sign (-1/1); positive (uniform in [0.01, 3]); probs / log_probs (softmax rows)."""
    if kind == "normal":
        return _normal(shape, dtype, rng)
    if kind == "labels":
        return rng.integers(0, shape[1], shape[0], dtype=np.int64)
    if kind in ("binary", "sign"):
        bits = rng.integers(0, 2, shape).astype(dtype)
        return bits if kind == "binary" else 2 * bits - 1
    if kind == "positive":
        return rng.uniform(0.01, 3.0, shape).astype(dtype)
    if kind == "probs" and len(shape) == 1:
        return rng.uniform(0.01, 0.99, shape).astype(dtype)
    logits = _normal(shape, dtype, rng).reshape(-1, shape[-1]).astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return (log_p if kind == "log_probs" else np.exp(log_p)).reshape(shape).astype(dtype)


def make_data(case: Case, seed: int = 0) -> dict[str, Any]:
    """Inputs of a case, as its loss takes them (see _operand): "x", "target", extra
    positional "args" and a gradient buffer "grad"."""
    rng = np.random.default_rng(seed)
    spec = LOSSES[case.loss]
    if spec.pairs:
        return _pairs_data(case, spec, rng)
    # Elementwise KL divergence: rows of 100 classes, each a distribution.
    shape = (case.size // 100, 100) if spec.input == "log_probs" and not spec.rows else case.shape
    x = _operand(spec.input, shape, case.dtype, rng)
    data = {"x": x, "target": _operand(spec.target, shape, case.dtype, rng),
            "grad": np.empty_like(x), "args": ()}
    if spec.extra == "var":
        data["args"] = (_operand("positive", shape, case.dtype, rng),)
    return data


def _pairs_data(case: Case, spec: Loss, rng: np.random.Generator) -> dict[str, Any]:
    """A metric-learning case: `args` (the positional arguments) and `grads` (one
    buffer per gradient, out=)."""
    n, d = case.shape
    rows = [_normal(case.shape, case.dtype, rng) for _ in range(spec.pairs)]
    if case.loss == "center":
        centers = _normal((PAIRS_CENTERS, d), case.dtype, rng)
        args: tuple = (rows[0], rng.integers(0, PAIRS_CENTERS, n), centers)
        grads = (np.empty_like(rows[0]), np.empty_like(centers))
    else:
        if case.loss == "contrastive":
            args = (*rows, rng.integers(0, 2, n).astype(case.dtype))
        elif case.loss == "cosine":
            args = (*rows, rng.choice([-1.0, 1.0], n).astype(case.dtype))
        elif spec.target == "sign":  # element losses: a -1/1 target per element
            args = (*rows, _operand("sign", case.shape, case.dtype, rng))
        else:
            args = tuple(rows)
        grads = tuple(np.empty_like(r) for r in rows)
    return {"x": rows[0], "grad": grads[0], "args": args, "grads": grads}


def _fastloss_call(case: Case, data: dict, n_threads: int, out: bool) -> Callable[[], Any]:
    import fastloss

    spec = LOSSES[case.loss]
    func = getattr(fastloss, spec.function + "_with_grad")
    if spec.pairs:
        pair_args, grads = data["args"], data["grads"]
        if out:  # (one gradient: out is the array itself)
            out_arg = grads if len(grads) > 1 else grads[0]
            return lambda: func(*pair_args, out=out_arg, n_threads=n_threads)
        return lambda: func(*pair_args, n_threads=n_threads)
    x, target, args, kwargs = data["x"], data["target"], data["args"], spec.kwargs
    if out:
        grad = (data["grad"], None) if spec.extra else data["grad"]
        return lambda: func(x, target, *args, out=grad, n_threads=n_threads, **kwargs)
    return lambda: func(x, target, *args, n_threads=n_threads, **kwargs)


def _reference_call(case: Case, data: dict) -> Callable[[], Any]:
    from fastloss import reference

    spec = LOSSES[case.loss]
    func = getattr(reference, spec.function + "_with_grad")
    if spec.pairs:
        pair_args = data["args"]
        return lambda: func(*pair_args)
    x, target, args, kwargs = data["x"], data["target"], data["args"], spec.kwargs
    return lambda: func(x, target, *args, **kwargs)


def _torch_formula(loss: str, torch: Any) -> Callable[..., Any]:
    """A loss that torch.nn.functional lacks, as a torch user writes it with torch
    ops (autograd gives its gradient)."""
    if loss == "hinge":
        return lambda x, y: torch.relu(1.0 - y * x).mean()
    if loss == "focal":
        def focal(x, y, reduction):  # torchvision.ops.sigmoid_focal_loss, alpha 0.25, gamma 2
            p = torch.sigmoid(x)
            ce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
            p_t = p * y + (1 - p) * (1 - y)
            return ((0.25 * y + 0.75 * (1 - y)) * ce * (1 - p_t) ** 2).mean()
        return focal
    if loss == "msle":
        return lambda x, y: ((torch.log1p(x.clamp(min=1e-7)) - torch.log1p(y.clamp(min=1e-7)))
                             ** 2).mean()
    if loss == "log-cosh":
        return lambda x, y: torch.log(torch.cosh(x - y)).mean()
    if loss == "contrastive":
        def contrastive(x1, x2, y):
            d = torch.nn.functional.pairwise_distance(x1, x2)
            return (0.5 * (y * d * d + (1 - y) * torch.clamp(1.0 - d, min=0) ** 2)).mean()
        return contrastive
    if loss == "center":
        def center(x, t, c):
            diff = x - c[t]
            return (0.5 * (diff * diff).sum(1)).mean()
        return center
    raise KeyError(loss)


def _torch_call(case: Case, data: dict) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    spec = LOSSES[case.loss]
    loss = getattr(F, spec.torch) if spec.torch else _torch_formula(case.loss, torch)
    kwargs = spec.kwargs
    if spec.pairs:
        args = [torch.from_numpy(a) for a in data["args"]]
        differentiable = (0, 2) if case.loss == "center" else range(spec.pairs)
        leaves = [args[i].requires_grad_(True) for i in differentiable]
    else:
        x = torch.from_numpy(data["x"]).requires_grad_(True)
        leaves = [x]
        args = [x, torch.from_numpy(data["target"]),
                *(torch.from_numpy(a) for a in data["args"])]

    def run():
        for leaf in leaves:
            leaf.grad = None
        value = loss(*args, **kwargs)
        value.backward()
        return value

    return run


def _sklearn_call(case: Case, data: dict, n_threads: int) -> Callable[[], Any]:
    from sklearn._loss import loss as sk

    x, target, grad = data["x"], data["target"], data["grad"]
    dtype = x.dtype
    if case.loss == "ce":
        obj = sk.HalfMultinomialLoss(n_classes=case.shape[1])
        y_true = target.astype(dtype)  # sklearn takes float labels of raw_prediction's dtype
    elif case.loss == "bce":
        obj, y_true = sk.HalfBinomialLoss(), target
    elif case.loss == "mse":
        obj, y_true = sk.HalfSquaredError(), target
    else:
        obj, y_true = sk.HuberLoss(delta=1.0), target
    loss_out = np.empty(len(y_true), dtype)
    add_reduce = np.add.reduce
    n = len(y_true)

    def run():
        obj.loss_gradient(y_true=y_true, raw_prediction=x, loss_out=loss_out,
                          gradient_out=grad, n_threads=n_threads)
        return add_reduce(loss_out) / n

    return run


def _memcpy_call(case: Case) -> Callable[[], Any]:
    half = case.bytes_moved // 2
    src = np.ones(half, np.uint8)
    dst = np.empty(half, np.uint8)
    return lambda: np.copyto(dst, src)


def _exp_call(data: dict) -> Callable[[], Any]:
    x, buf = data["x"], data["grad"]
    return lambda: np.exp(x, out=buf)


# ------------------------------------------------------ the C-loop yardstick
# Issue #11's "C loop": the obvious C kernel of each of the four main losses
# (_yardstick.c, shipped with the package), compiled here at bench time the way
# a user would build it for this machine, loaded with ctypes. Its .so is cached
# under the temporary directory, keyed by the source, compiler, flags and CPU.

YARDSTICK_SOURCE = "_yardstick.c"
YARDSTICK_LOSSES = ("ce", "bce", "mse", "huber")
YARDSTICK_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC")
# Linked in a second step, without -ffast-math: linking with it adds crtfastmath.o,
# whose constructor would switch the whole bench process to flush-to-zero when
# ctypes loads the library (GCC < 13 does it for -shared too).
YARDSTICK_LINK = ("-shared",)
# libmvec gives the vector expf/log1pf; without it (not glibc) the loops stay scalar.
YARDSTICK_LIBS = (("-lmvec", "-lm"), ("-lm",))


@dataclass
class Yardstick:
    lib: Any                        # the loaded ctypes.CDLL, or None when absent
    info: dict                      # compiler, flags, libmvec symbols; or the reason


_yardstick: Yardstick | None = None


def _compiler() -> list[str] | None:
    """$CC (default cc) as an argument list, if it names an executable."""
    command = shlex.split(os.environ.get("CC", "cc"))
    if not command or shutil.which(command[0]) is None:
        return None
    return command


def yardstick() -> Yardstick:
    """The C loop, built once per process (and cached on disk across processes)."""
    global _yardstick
    if _yardstick is None:
        _yardstick = _build_yardstick()
    return _yardstick


def _build_yardstick() -> Yardstick:
    from importlib import resources

    from . import _cpu

    cc = _compiler()
    if cc is None:
        return Yardstick(None, {"status": "absent", "reason": "no C compiler (CC="
                                f"{os.environ.get('CC', 'cc')!r} not found)"})
    try:
        source = (resources.files("fastloss") / YARDSTICK_SOURCE).read_bytes()
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.strip().splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as exc:
        return Yardstick(None, {"status": "absent", "reason": f"{type(exc).__name__}: {exc}"})
    features = sorted(k for k, v in _cpu.cpu_features().items() if v)
    cache = os.path.join(tempfile.gettempdir(), f"fastloss-yardstick-{os.getuid()}"
                         if hasattr(os, "getuid") else "fastloss-yardstick")
    os.makedirs(cache, exist_ok=True)
    errors = []
    for libs in YARDSTICK_LIBS:
        key = hashlib.sha256(repr((source, cc, version, YARDSTICK_FLAGS, YARDSTICK_LINK, libs,
                                   features)).encode()).hexdigest()[:16]
        so = os.path.join(cache, f"yardstick-{key}.so")
        if not os.path.exists(so):
            # this process's own source and output files, so that benches building at
            # the same time never see each other's half-written files
            src = os.path.join(cache, f"yardstick-{key}.{os.getpid()}.c")
            with open(src, "wb") as f:
                f.write(source)
            obj, partial = f"{src}.o", f"{so}.{os.getpid()}.tmp"
            proc = subprocess.run([*cc, *YARDSTICK_FLAGS, "-c", "-o", obj, src],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                proc = subprocess.run([*cc, *YARDSTICK_LINK, "-o", partial, obj, *libs],
                                      capture_output=True, text=True, timeout=300)
            for scratch in (src, obj):
                if os.path.exists(scratch):
                    os.remove(scratch)
            if proc.returncode != 0:
                errors.append(f"{' '.join(libs)}: {proc.stderr.strip()[-300:]}")
                continue
            os.replace(partial, so)  # atomic: a concurrent bench never loads half a file
        try:
            lib = ctypes.CDLL(so)
        except OSError as exc:
            errors.append(f"{so}: {exc}")
            continue
        with open(so, "rb") as f:
            vector_calls = sorted({m.decode() for m in re.findall(rb"_ZGV\w+", f.read())})
        for name in YARDSTICK_LOSSES:
            for suffix, ctype in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
                func = getattr(lib, f"yard_{name}_{suffix}")
                func.restype = ctypes.c_double
                args = [ctypes.c_void_p, ctypes.c_void_p]
                if name == "ce":
                    args += [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
                elif name == "huber":
                    args += [ctypes.c_int64, ctype, ctypes.c_void_p]
                else:
                    args += [ctypes.c_int64, ctypes.c_void_p]
                func.argtypes = args
        return Yardstick(lib, {"status": "ok", "compiler": " ".join(cc),
                               "compiler_version": version[0] if version else "",
                               "flags": " ".join(YARDSTICK_FLAGS),
                               "link": " ".join(YARDSTICK_LINK + libs), "library": so,
                               "libmvec_calls": vector_calls})
    return Yardstick(None, {"status": "absent", "reason": "the C loop did not build: "
                                                        + "; ".join(errors)})


def c_loop_call(case: Case, data: dict) -> Callable[[], float]:
    """The C loop of a case's loss on its data, writing data["grad"]; returns the mean
    loss. The C loop must have been built (``yardstick().lib``)."""
    built = yardstick()
    x, target, grad = data["x"], data["target"], data["grad"]
    for name, a in (("x", x), ("target", target), ("grad", grad)):
        if not a.flags.c_contiguous:
            raise ValueError(f"the C loop needs a C-contiguous {name}")
    func = getattr(built.lib, f"yard_{case.loss}_{_short_dtype(case.dtype)}")
    px, pt, pg = x.ctypes.data, target.ctypes.data, grad.ctypes.data
    if case.loss == "ce":
        if target.dtype != np.int64:
            raise ValueError("the C loop takes int64 labels")
        n, c = x.shape
        return lambda: func(px, pt, n, c, pg)
    if target.dtype != x.dtype:
        raise ValueError("the C loop takes a target of the input's dtype")
    n = x.size
    if case.loss == "huber":
        delta = LOSSES["huber"].kwargs.get("delta", 1.0)
        return lambda: func(px, pt, n, delta, pg)
    return lambda: func(px, pt, n, pg)


@dataclass
class Candidate:
    name: str
    call: Callable[[], Any] | None
    status: str = "ok"              # ok / absent / n/a / error
    reason: str = ""


def _peer(name: str, build: Callable[[], Callable[[], Any]]) -> Candidate:
    """A peer's callable, or an absent candidate when it cannot be imported."""
    try:
        return Candidate(name, build())
    except ImportError as exc:
        return Candidate(name, None, "absent", f"not installed ({exc})")
    except Exception as exc:  # an installed peer whose API changed: say so, go on
        return Candidate(name, None, "absent", f"unusable: {type(exc).__name__}: {exc}")


def _c_loop_candidate(case: Case, data: dict) -> Candidate:
    if case.loss not in YARDSTICK_LOSSES or case.tiny:
        return Candidate("c_loop", None, "n/a", "no C loop for this loss / tiny case")
    built = yardstick()
    if built.lib is None:
        return Candidate("c_loop", None, "absent", built.info["reason"])
    return _peer("c_loop", lambda: c_loop_call(case, data))


def candidates(case: Case, data: dict, n_threads: int) -> list[Candidate]:
    result = [
        Candidate("fastloss", _fastloss_call(case, data, n_threads, out=True)),
        Candidate("fastloss_alloc", _fastloss_call(case, data, n_threads, out=False)),
        Candidate("reference", _reference_call(case, data)),
        _peer("torch", lambda: _torch_call(case, data)),
        (_peer("sklearn", lambda: _sklearn_call(case, data, n_threads))
         if case.loss in SKLEARN_LOSSES
         else Candidate("sklearn", None, "n/a", "no twin in sklearn._loss")),
        _c_loop_candidate(case, data),
    ]
    if case.tiny or case.loss not in ("ce", "bce"):
        result.append(Candidate("np.exp", None, "n/a", "no exp in this loss / tiny case"))
    else:
        result.append(Candidate("np.exp", _exp_call(data)))
    if case.tiny:
        result.append(Candidate("memcpy", None, "n/a", "tiny case"))
    else:
        result.append(Candidate("memcpy", _memcpy_call(case)))
    return result


# ----------------------------------------------------------------------- timing

@dataclass
class Timing:
    loops: int
    samples: list[float]            # seconds per call

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def _run_loops(call: Callable[[], Any], loops: int) -> float:
    clock = time.perf_counter
    if loops == 1:
        start = clock()
        call()
        return clock() - start
    iterations = range(loops)
    start = clock()
    for _ in iterations:
        call()
    return (clock() - start) / loops


def measure(calls: dict[str, Callable[[], Any]], *, budget: float, sample_time: float,
            min_samples: int, progress: Callable[[str], None] | None = None,
            on_first: Callable[[str, Any], None] | None = None
            ) -> tuple[dict[str, Timing], dict[str, str]]:
    """Median-of-repeats timing of several calls, interleaved round by round.

    Each call is first warmed up and its loop count calibrated (timeit style)
    so that one sample takes at least `sample_time`; then each gets about
    ``budget / len(calls)`` seconds of samples (between `min_samples` and
    MAX_SAMPLES; 1 to 3 for calls slower than SLOW_CALL_S; just the warm-up
    call for calls slower than VERY_SLOW_CALL_S), spread evenly over the
    rounds, in rotating order.
    `on_first(name, result)` sees each call's first result. Returns the
    timings and the error of every call that raised.
    """
    timings: dict[str, Timing] = {}
    errors: dict[str, str] = {}
    wanted: dict[str, int] = {}
    share = budget / max(len(calls), 1)
    for name, call in calls.items():
        if progress:
            progress(f"warm-up {name}")
        try:
            start = time.perf_counter()
            result = call()
            first = time.perf_counter() - start
            if on_first:
                on_first(name, result)
            del result
            if first >= VERY_SLOW_CALL_S:
                timings[name] = Timing(1, [first])
                wanted[name] = 0
                continue
            loops, per_call = 1, _run_loops(call, 1)
            if per_call >= SLOW_CALL_S:
                timings[name] = Timing(1, [per_call])
                wanted[name] = max(1, min(3, round(share / per_call))) - 1
                continue
            while loops * per_call < sample_time:
                loops = max(loops * 2, math.ceil(sample_time / max(per_call, 1e-9) / 2))
                per_call = _run_loops(call, loops)
        except Exception as exc:  # a failing candidate is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        timings[name] = Timing(loops, [])
        wanted[name] = max(min_samples, min(MAX_SAMPLES, round(share / (loops * per_call))))

    rounds = max(wanted.values(), default=0)
    names = list(timings)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            if progress:
                progress(f"round {r + 1}/{rounds}")
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                n = wanted[name]
                # n samples spread evenly over the rounds
                if (r + 1) * n // rounds > r * n // rounds and name not in errors:
                    try:
                        timings[name].samples.append(_run_loops(calls[name], timings[name].loops))
                    except Exception as exc:
                        errors[name] = f"{type(exc).__name__}: {exc}"
    finally:
        if gc_was_enabled:
            gc.enable()
    return {k: v for k, v in timings.items() if k not in errors and v.samples}, errors


# ---------------------------------------------------------------------- running

class Progress:
    """One progress line on stderr: rewritten in place on a terminal, else a line per case."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.prefix = ""

    def case(self, prefix: str) -> None:
        self.prefix = prefix
        if self.enabled and not self.tty:
            print(f"bench: {prefix}", file=sys.stderr, flush=True)
        self.step("")

    def step(self, message: str) -> None:
        if self.tty:
            line = f"bench: {self.prefix} {message}"
            print(f"\r\x1b[K{line[:150]}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _loss_value(result: Any) -> float | None:
    try:
        value = result[0] if isinstance(result, tuple) else result
        return float(value.detach()) if hasattr(value, "detach") else float(value)
    except Exception:
        return None


def run_case(case: Case, n_threads: int, *, budget: float, sample_time: float,
             min_samples: int, progress: Progress) -> dict:
    data = make_data(case)
    cands = candidates(case, data, n_threads)
    calls = {c.name: c.call for c in cands if c.call is not None}
    # The loss values, to catch a benchmark that computes the wrong thing.
    values: dict[str, float | None] = {}

    def keep_value(name: str, result: Any) -> None:
        if name in ("fastloss", "reference", "torch", "sklearn", "c_loop"):
            values[name] = _loss_value(result)

    timings, errors = measure(calls, budget=budget, sample_time=sample_time,
                              min_samples=min_samples, progress=progress.step,
                              on_first=keep_value)
    base = timings.get("fastloss")
    out: dict[str, Any] = {}
    for c in cands:
        if c.name in timings:
            t = timings[c.name]
            out[c.name] = {"status": "ok", "median_s": t.median, "loops": t.loops,
                           "samples_s": t.samples,
                           "ratio": t.median / base.median if base else None}
        elif c.name in errors:
            out[c.name] = {"status": "error", "reason": errors[c.name]}
        else:
            out[c.name] = {"status": c.status, "reason": c.reason}
    agree = None
    if values.get("fastloss") is not None and values.get("reference") is not None:
        ref = values["reference"]
        agree = abs(values["fastloss"] - ref) / max(abs(ref), 1e-30)
    del data, cands, calls
    gc.collect()
    return {"key": case.key, "label": case.label, "loss": case.loss, "shape": list(case.shape),
            "dtype": case.dtype, "tiny": case.tiny, "n_elements": case.size,
            "bytes_moved": case.bytes_moved, "loss_values": values,
            "loss_rel_diff_vs_reference": agree, "candidates": out}


def warm_up(n_threads: int) -> None:
    """One call of every candidate on tiny data, so that one-time costs (imports, lazy
    initialisation of torch and OpenMP) do not land in the first case's samples."""
    for loss, shape in (("ce", (8, 10)), ("bce", (64,)), ("mse", (64,)), ("huber", (64,))):
        case = Case(loss, shape, "float32")
        for c in candidates(case, make_data(case), n_threads):
            if c.call is not None:
                try:
                    c.call()
                except Exception:
                    pass  # reported when the case itself runs


def evaluate_targets(cases: list[Case], results: list[dict]) -> list[dict]:
    by_key = {r["key"]: r for r in results}
    checks = []
    for case, res in zip(cases, results):
        cands = res["candidates"]
        for target in case.targets:
            kind = target[0]
            check = {"case": case.key, "label": case.label}
            if kind == "faster":
                _, peer, k = target
                c = cands.get(peer, {})
                check.update(target=f">= {k:g}\u00d7 faster than {PEER_NAMES[peer]}",
                             threshold=k, measured=c.get("ratio"), unit="")
                check["met"] = None if c.get("ratio") is None else c["ratio"] >= k
            elif kind == "within":
                _, peer, k = target
                c = cands.get(peer, {})
                value = 1 / c["ratio"] if c.get("ratio") else None
                check.update(target=f"<= {k:g}\u00d7 {PEER_NAMES[peer]}'s time",
                             threshold=k, measured=value, unit=f" {PEER_NAMES[peer]}'s time")
                check["met"] = None if value is None else value <= k
            elif kind == "max_us":
                _, k = target
                c = cands.get("fastloss", {})
                value = c["median_s"] * 1e6 if c.get("status") == "ok" else None
                alloc = cands.get("fastloss_alloc", {})
                check.update(target=f"<= {k:g} \u00b5s per call (out=)", threshold=k,
                             measured=value, unit="us")
                if alloc.get("status") == "ok":
                    check["note"] = f"without out=: {alloc['median_s'] * 1e6:.2f} \u00b5s"
                check["met"] = None if value is None else value <= k
            elif kind == "f64_ahead":
                twin_key = res["key"].replace("-f64", "-f32")
                twin = by_key.get(twin_key)
                pairs = []
                for peer in ("torch", "sklearn"):
                    r64 = cands.get(peer, {}).get("ratio")
                    r32 = twin and twin["candidates"].get(peer, {}).get("ratio")
                    if r64 and r32:
                        pairs.append((peer, r64, r32))
                check.update(target=f"float64 at least as far ahead of the peers as {twin_key}",
                             threshold=None, unit="",
                             measured={p: {"float64": a, "float32": b} for p, a, b in pairs})
                check["met"] = all(a >= b for _, a, b in pairs) if pairs else None
                check["note"] = ", ".join(f"{PEER_NAMES[p]} {a:.1f}\u00d7 vs {b:.1f}\u00d7"
                                          for p, a, b in pairs)
            checks.append(check)
    return checks


# Issues #3 and #11: N threads beat 1 on large inputs (>= large_elements) by at least
# min_speedup, and no size runs slower than max_slowdown x its 1-thread time.
THREADS_TARGETS = {"large_elements": 10**6, "min_speedup": 1.05, "max_slowdown": 1.10}


def run_scan(cases: list[Case], threads: int, *, budget: float, sample_time: float,
             min_samples: int, progress: Progress) -> dict:
    """fastloss (out=) with 1 thread against `threads` threads, interleaved, per size."""
    rows = []
    for i, case in enumerate(cases, 1):
        progress.case(f"threads scan [{i}/{len(cases)}] {case.label}")
        data = make_data(case)
        calls = {"1": _fastloss_call(case, data, 1, out=True),
                 str(threads): _fastloss_call(case, data, threads, out=True)}
        timings, errors = measure(calls, budget=budget, sample_time=sample_time,
                                  min_samples=min_samples, progress=progress.step)
        del data
        gc.collect()
        row = {"key": case.key, "label": case.label, "n_elements": case.size}
        if errors or len(timings) < 2:
            row.update(status="error", reason="; ".join(f"{k}: {v}" for k, v in errors.items()))
            rows.append(row)
            continue
        t1, tn = timings["1"].median, timings[str(threads)].median
        speedup = t1 / tn
        large = case.size >= THREADS_TARGETS["large_elements"]
        row.update(status="ok", time_1_s=t1, time_n_s=tn, speedup=speedup,
                   no_slowdown=tn <= THREADS_TARGETS["max_slowdown"] * t1, large=large,
                   faster=(speedup >= THREADS_TARGETS["min_speedup"]) if large else None)
        rows.append(row)
    verdicts = [v for r in rows if r["status"] == "ok"
                for v in (r["no_slowdown"], r["faster"]) if v is not None]
    return {"threads": [1, threads], "rows": rows, "targets": dict(THREADS_TARGETS),
            "summary": {"met": verdicts.count(True), "missed": verdicts.count(False)},
            "rules": f"every size: time with N threads <= {THREADS_TARGETS['max_slowdown']:g} x "
                     "time with 1 (no slowdown); >= "
                     f"{_short_count(THREADS_TARGETS['large_elements'])} elements: speedup >= "
                     f"{THREADS_TARGETS['min_speedup']:g} (faster)"}


# --------------------------------------------------------------- fastloss.torch

# Issue 14's targets: at least this many times faster than torch through autograd on
# every large case; a tiny call at most this many µs above the raw NumPy call.
TORCH_SPEEDUP = 5.0
TORCH_TINY_OVERHEAD_US = 10.0
# The training step: features -> hidden (ReLU) -> vocabulary logits, SGD.
STEP_MODEL = {"features": 256, "hidden": 128, "vocab": 32000, "batch": 1024}
STEP_MODEL_QUICK = {"features": 32, "hidden": 16, "vocab": 2000, "batch": 64}


def torch_cases(quick: bool) -> list[Case]:
    """The large cases of the main table (or small ones with --quick) and the tiny 32x10."""
    tiny = [Case("ce", (32, 10), "float32", tiny=True), Case("ce", (32, 10), "float64", tiny=True)]
    if quick:
        return [Case("ce", (256, 1000), "float32"), Case("bce", (10**5,), "float32"),
                Case("mse", (10**5,), "float64"), Case("huber", (10**5,), "float32"), tiny[0]]
    return [c for c in full_cases() if not c.tiny] + tiny


_TORCH_FUNCS = {"ce": "cross_entropy", "bce": "binary_cross_entropy_with_logits",
                "mse": "mse_loss", "huber": "huber_loss"}


def _autograd_call(func: Callable, data: dict) -> Callable[[], Any]:
    import torch

    x = torch.from_numpy(data["x"]).requires_grad_(True)
    target = torch.from_numpy(data["target"])

    def run():
        x.grad = None
        value = func(x, target)
        value.backward()
        return value

    return run


def _autograd_floor(data: dict) -> Callable[[], Any]:
    """Forward + .backward() of a Python autograd.Function that computes nothing (a 0-d
    loss, a preallocated gradient): what any Python-level autograd extension pays."""
    import torch

    x = torch.from_numpy(data["x"]).requires_grad_(True)
    grad = torch.zeros_like(x)
    loss = torch.zeros((), dtype=x.dtype)

    class Nothing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return loss.clone()

        @staticmethod
        def backward(ctx, upstream):
            return grad

    def run():
        x.grad = None
        value = Nothing.apply(x)
        value.backward()
        return value

    return run


def run_torch_case(case: Case, *, budget: float, sample_time: float, min_samples: int,
                   progress: Progress) -> dict:
    """fastloss.torch vs torch.nn.functional, forward + backward (and the raw NumPy call;
    for tiny cases also the autograd floor)."""
    import fastloss.torch as ft

    data = make_data(case)
    name = _TORCH_FUNCS[case.loss]
    calls = {"fastloss.torch": _autograd_call(getattr(ft, name), data),
             "torch": _autograd_call(ft._ORIGINALS[name], data),
             "numpy": _fastloss_call(case, data, 1, out=False)}
    if case.tiny:
        calls["floor"] = _autograd_floor(data)
    values: dict[str, float | None] = {}
    timings, errors = measure(calls, budget=budget, sample_time=sample_time,
                              min_samples=min_samples, progress=progress.step,
                              on_first=lambda k, r: values.__setitem__(k, _loss_value(r)))
    expected = set(calls)
    del data, calls
    gc.collect()
    row: dict[str, Any] = {"key": case.key, "label": case.label, "tiny": case.tiny,
                           "loss_values": values, "fallbacks": sum(ft.fallback_counts().values())}
    if errors or set(timings) != expected:
        row.update(status="error", reason="; ".join(f"{k}: {v}" for k, v in errors.items()))
        return row
    ours, theirs, raw = (timings[k].median for k in ("fastloss.torch", "torch", "numpy"))
    row.update(status="ok", fastloss_torch_s=ours, torch_s=theirs, numpy_s=raw,
               ratio=theirs / ours, overhead_us=(ours - raw) * 1e6)
    if case.tiny:
        row["floor_s"] = timings["floor"].median
    if case.tiny:
        row.update(target=f"<= {TORCH_TINY_OVERHEAD_US:g} \u00b5s above the raw NumPy call",
                   met=row["overhead_us"] <= TORCH_TINY_OVERHEAD_US)
    else:
        row.update(target=f">= {TORCH_SPEEDUP:g}\u00d7 faster than torch",
                   met=row["ratio"] >= TORCH_SPEEDUP)
    return row


def run_train_step(quick: bool, *, rounds: int, progress: Progress) -> dict:
    """One SGD step of a model with a vocabulary-sized output layer, torch's cross-entropy
    against patched; and the loss alone (forward + backward on logits of the same shape),
    whose time over the step's is the loss's share of the step."""
    import torch

    import fastloss.torch as ft

    dims = STEP_MODEL_QUICK if quick else STEP_MODEL
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(dims["features"], dims["hidden"]),
                                torch.nn.ReLU(), torch.nn.Linear(dims["hidden"], dims["vocab"]))
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(dims["batch"], dims["features"])
    labels = torch.randint(0, dims["vocab"], (dims["batch"],))
    logits = torch.randn(dims["batch"], dims["vocab"], requires_grad=True)
    criterion = torch.nn.CrossEntropyLoss()

    def step():
        optimiser.zero_grad()
        loss = criterion(model(x), labels)
        loss.backward()
        optimiser.step()
        return loss

    def loss_only():
        logits.grad = None
        loss = criterion(logits, labels)
        loss.backward()
        return loss

    def patched(call):
        def run():
            with ft.patched():
                return call()
        return run

    calls = {"torch step": step, "patched step": patched(step),
             "torch loss": loss_only, "patched loss": patched(loss_only)}
    # Every call takes 0.1-1.5 s, where measure() would take 1-3 samples: on a shared
    # machine that is too few, so `rounds` interleaved samples each, after a warm-up.
    result: dict[str, Any] = {"model": dims, "threads": torch.get_num_threads(),
                              "rounds": rounds}
    # Wall time, and the process's CPU time: on one thread the latter is the work
    # itself, without the time other processes on a shared machine take the core.
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    try:
        for call in calls.values():
            call()
        for r in range(rounds):
            progress.step(f"round {r + 1}/{rounds}")
            for name in names[r % len(names):] + names[:r % len(names)]:
                start, start_cpu = time.perf_counter(), time.process_time()
                calls[name]()
                cpu[name].append(time.process_time() - start_cpu)
                samples[name].append(time.perf_counter() - start)
    except Exception as exc:  # reported, not fatal
        result.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        return result
    result.update(status="ok", samples_s=samples, cpu_samples_s=cpu)
    for clock, data in (("", samples), ("cpu_", cpu)):
        t = {k: statistics.median(v) for k, v in data.items()}
        result.update({f"{clock}torch_step_s": t["torch step"],
                       f"{clock}patched_step_s": t["patched step"],
                       f"{clock}torch_loss_s": t["torch loss"],
                       f"{clock}patched_loss_s": t["patched loss"],
                       f"{clock}step_speedup": t["torch step"] / t["patched step"],
                       f"{clock}torch_loss_share": t["torch loss"] / t["torch step"],
                       f"{clock}patched_loss_share": t["patched loss"] / t["patched step"]})
    return result


def render_torch(report: dict) -> list[str]:
    rows = []
    for r in report["torch_cases"]:
        if r["status"] != "ok":
            rows.append([r["label"], "error", "", "", "", "", r.get("reason", "")])
            continue
        floor = format_time(r["floor_s"]) if "floor_s" in r else "\u2014"
        rows.append([r["label"], format_time(r["fastloss_torch_s"]), format_time(r["torch_s"]),
                     format_ratio(r["ratio"]), format_time(r["numpy_s"]),
                     f"{r['overhead_us']:.1f} \u00b5s", floor, "met" if r["met"] else "MISSED"])
    lines = ["", "fastloss.torch through autograd (forward + .backward()), against "
                 "torch.nn.functional and the raw NumPy fastloss call (overhead: "
                 "fastloss.torch minus NumPy call; autograd floor: forward + backward of a "
                 "Python autograd.Function that computes nothing):", ""]
    lines += _markdown(["case", "fastloss.torch", "torch", "torch / fastloss.torch",
                        "NumPy call", "overhead", "autograd floor", "target"], rows)
    step = report["train_step"]
    if step["status"] != "ok":
        return lines + ["", f"training step: error: {step['reason']}"]
    m = step["model"]
    lines += ["", f"Training step (Linear {m['features']}-{m['hidden']} ReLU, Linear "
                  f"{m['hidden']}-{m['vocab']}, batch {m['batch']}, float32, SGD, "
                  f"{step['threads']} thread(s); median of {step['rounds']} interleaved "
                  "rounds; loss fwd+bwd on logits of the same shape):", ""]
    rows = []
    for label, key in (("torch.nn.CrossEntropyLoss", "torch"), ("patched (fastloss)", "patched")):
        rows.append([label] + [cell for clock in ("", "cpu_") for cell in (
            format_time(step[f"{clock}{key}_step_s"]), format_time(step[f"{clock}{key}_loss_s"]),
            f"{step[f'{clock}{key}_loss_share']:.0%}")])
    lines += _markdown(["loss", "step", "loss fwd+bwd", "loss share", "step (CPU)",
                        "loss fwd+bwd (CPU)", "loss share (CPU)"], rows)
    lines.append(f"training step: {format_ratio(step['step_speedup'])} faster patched "
                 f"({format_ratio(step['cpu_step_speedup'])} in CPU time)")
    return lines


# ---------------------------------------------------------------------- context

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:
        return None
    return getattr(mod, "__version__", "unknown")


def environment(threads: int) -> dict:
    import fastloss
    from fastloss import _dispatch

    kernels = _dispatch.kernels
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "machine": {"cpu": _cpu_model(), "arch": platform.machine(),
                    "cpu_count": os.cpu_count(), "usable_cpus": affinity,
                    "platform": platform.platform(), "loadavg_start": _loadavg()},
        "versions": {"python": platform.python_version(), "fastloss": fastloss.__version__,
                     "numpy": np.__version__, "torch": _version("torch"),
                     "scikit-learn": _version("sklearn"),
                     "threadpoolctl": _version("threadpoolctl")},
        "fastloss_build": {"simd_path": kernels.SIMD_PATH,
                           "simd_forced": os.environ.get("FASTLOSS_SIMD", "").strip() or None,
                           "simd_available": _dispatch.available_paths(),
                           "built_with_openmp": bool(kernels.built_with_openmp())},
        "c_loop": yardstick().info,
        "threads": threads,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                           "FASTLOSS_SIMD") if k in os.environ},
    }


class ThreadSettings:
    """Pin torch and (via threadpoolctl) OpenMP/BLAS pools to `threads`; undo on exit."""

    def __init__(self, threads: int):
        self.threads = threads
        self.limiter = None
        self.torch_threads = None

    def __enter__(self):
        try:  # first, so that threadpoolctl also sees the OpenMP runtime torch loads
            import torch
            self.torch_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        except ImportError:
            pass
        try:
            from threadpoolctl import threadpool_limits
            self.limiter = threadpool_limits(limits=self.threads)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        if self.limiter is not None:
            self.limiter.restore_original_limits()
        if self.torch_threads is not None:
            import torch
            torch.set_num_threads(self.torch_threads)


# ------------------------------------------------------------------------ output

def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} \u00b5s" if seconds < 1e-5 else f"{seconds * 1e6:.1f} \u00b5s"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def format_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:.0f}\u00d7"
    if ratio >= 10:
        return f"{ratio:.1f}\u00d7"
    return f"{ratio:.2f}\u00d7"


def _cell(c: dict, ratio: bool) -> str:
    status = c.get("status")
    if status == "ok":
        return format_ratio(c["ratio"]) if ratio else format_time(c["median_s"])
    return {"n/a": "\u2014", "absent": "absent", "error": "error"}.get(status, str(status))


def _simd_reason(build: dict) -> str:
    if build.get("simd_forced"):
        return f"forced by FASTLOSS_SIMD={build['simd_forced']}"
    return "the widest this CPU runs"


def _c_loop_summary(info: dict) -> str:
    if info["status"] != "ok":
        return f"absent ({info['reason']})"
    vector = ", ".join(info["libmvec_calls"]) or "none: its exp stays scalar"
    return (f"{YARDSTICK_SOURCE} built with {info['compiler']} {info['flags']}, linked "
            f"{info['link']} "
            f"({info['compiler_version']}); libmvec calls: {vector}")


def _ratio_rows(report: dict) -> list[list[str]]:
    """One row per case: fastloss's time, every other column's ratio to it."""
    rows = []
    for res in report["cases"]:
        cands = res["candidates"]
        rows.append([res["label"], _cell(cands["fastloss"], ratio=False)]
                    + [_cell(cands[k], ratio=True) for k, _ in COLUMNS[1:]])
    return rows


def _targets_met(report: dict) -> dict[str, str]:
    """Per case key: "k/n met" over its applicable targets."""
    by_case: dict[str, list] = {}
    for t in report["targets"]:
        if t["met"] is not None:
            by_case.setdefault(t["case"], []).append(t["met"])
    return {k: f"{sum(v)}/{len(v)} met" for k, v in by_case.items()}


def _measured(t: dict) -> str:
    """A target's measured value (and its note) as text."""
    measured = t["measured"]
    if not isinstance(measured, float):
        return t.get("note") or "(peer absent)"
    shown = (f"{measured:.2f} \u00b5s" if t["unit"] == "us"
             else f"{format_ratio(measured)}{t['unit']}")
    return shown + (f" ({t['note']})" if t.get("note") else "")


def _target_line(t: dict) -> str:
    mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
    return f"  {mark}  {t['label']}: {t['target']}: {_measured(t)}"


def _scan_rows(scan: dict) -> list[list[str]]:
    rows = []
    for r in scan["rows"]:
        if r["status"] != "ok":
            rows.append([r["label"], "error", "", "", r.get("reason", "")])
            continue
        checks = ["no slowdown" if r["no_slowdown"] else "SLOWER"]
        if r["faster"] is not None:
            checks.append("faster" if r["faster"] else "NOT FASTER")
        rows.append([r["label"], format_time(r["time_1_s"]), format_time(r["time_n_s"]),
                     format_ratio(r["speedup"]), ", ".join(checks)])
    return rows


def render(report: dict) -> str:
    env = report["environment"]
    m, v, b = env["machine"], env["versions"], env["fastloss_build"]
    quick = " (--quick: tiny sizes, numbers mean little)" if report["quick"] else ""
    lines = [
        f"fastloss {v['fastloss']} bench{quick}: one fused forward+backward of a mean-reduced"
        " loss, median of interleaved repeats",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['arch']}); load average "
        f"{_fmt_load(m['loadavg_start'])} at start, {_fmt_load(m.get('loadavg_end'))} at end",
        f"SIMD path measured: {b['simd_path']} ({_simd_reason(b)}; this CPU runs "
        f"{', '.join(b['simd_available'])}); OpenMP {'yes' if b['built_with_openmp'] else 'no'};"
        f" threads: {env['threads']} (fastloss n_threads, torch.set_num_threads, threadpoolctl)",
        f"C loop: {_c_loop_summary(env['c_loop'])}",
        f"versions: python {v['python']}, numpy {v['numpy']}, torch {v['torch'] or 'absent'},"
        f" scikit-learn {v['scikit-learn'] or 'absent'}",
        "fastloss writes the gradient into a preallocated out= array; 'no out=' allocates it"
        " per call.",
    ]
    load = m["loadavg_start"]
    if load and load[0] >= 0.5:
        lines.append(f"warning: load average {load[0]:.2f} before the run: other processes share "
                     "this machine, so timings are noisy (multi-threaded ones especially: "
                     "OMP_WAIT_POLICY=passive helps)")
    if report.get("cases"):
        lines += ["", f"Ratios on the {b['simd_path']} path: candidate's time / fastloss's time "
                      "(> 1: fastloss is faster); tiny cases per call.", ""]
        met = _targets_met(report)
        rows = [row + [met.get(res["key"], "")]
                for row, res in zip(_ratio_rows(report), report["cases"])]
        lines += _markdown(["case"] + [h for _, h in COLUMNS] + ["targets"], rows)
        lines += ["", "Times (median per call):", ""]
        rows = [[res["label"]] + [_cell(res["candidates"][k], ratio=False) for k, _ in COLUMNS]
                for res in report["cases"]]
        lines += _markdown(["case"] + [h for _, h in COLUMNS], rows)
        absent = sorted({f"{PEER_NAMES.get(k, k)} ({c['reason']})"
                         for res in report["cases"] for k, c in res["candidates"].items()
                         if c["status"] in ("absent", "error")})
        if absent:
            lines += ["", "absent / failed: " + "; ".join(absent)]
        lines += ["", f"Targets (issues #3, #11, #12, #13) on the {b['simd_path']} path:"]
        lines += [_target_line(t) for t in report["targets"]]
        s = report["targets_summary"]
        lines.append(f"targets met: {s['met']} of {s['met'] + s['missed']}"
                     + (f" ({s['na']} not applicable)" if s["na"] else ""))
    if report.get("torch_cases") is not None:
        lines += render_torch(report)
    if report.get("threads_scan"):
        scan = report["threads_scan"]
        n = scan["threads"][1]
        lines += ["", f"Threads scan on the {b['simd_path']} path: fastloss (out=), 1 thread vs "
                      f"{n} threads; {scan['rules']}", ""]
        lines += _markdown(["case", "1 thread", f"{n} threads", "speedup", "check"],
                           _scan_rows(scan))
        lines.append(f"threads scan: {scan['summary']['met']} of "
                     f"{scan['summary']['met'] + scan['summary']['missed']} checks met")
    return "\n".join(lines)


def render_markdown(report: dict, list_missed: bool = True) -> str:
    """The README's Performance table of one path's run: a paragraph naming the path,
    the machine, the versions and the command, the ratio table, the targets missed
    (with `list_missed`) and the threads scan."""
    env = report["environment"]
    m, v, b, c = env["machine"], env["versions"], env["fastloss_build"], env["c_loop"]
    load = m["loadavg_start"]
    c_loop = (f"{c['compiler_version']}, `{c['flags']}`, linked `{c.get('link', '')}`"
              if c["status"] == "ok" else "absent")
    lines = [f"**{b['simd_path']} path** (`FASTLOSS_SIMD={b['simd_path']}`) on {m['cpu']}, "
             f"{m['usable_cpus']} usable CPUs (the CPU runs {', '.join(b['simd_available'])}), "
             f"load average {load[0] if load else '?'} at start, {env['threads']} thread(s), "
             f"{report.get('date', '')}.",
             f"fastloss {v['fastloss']}, numpy {v['numpy']}, PyTorch {v['torch'] or 'absent'}, "
             f"scikit-learn {v['scikit-learn'] or 'absent'}; C loop: {c_loop}.",
             f"`{' '.join(report.get('run_by') or report['command'])}`"]
    if report.get("cases"):
        met = _targets_met(report)
        rows = [row + [met.get(res["key"], "")]
                for row, res in zip(_ratio_rows(report), report["cases"])]
        lines += ["", *_markdown(["case"] + [h for _, h in COLUMNS] + ["targets"], rows)]
        missed = [t for t in report["targets"] if t["met"] is False]
        if missed and list_missed:
            lines += ["", "Missed on this run:", ""]
            lines += [f"- {t['label']}: {t['target']}: {_measured(t)}" for t in missed]
    if report.get("threads_scan"):
        scan = report["threads_scan"]
        n = scan["threads"][1]
        lines += ["", f"Threads ({b['simd_path']} path), 1 vs {n}:", ""]
        lines += _markdown(["case", "1 thread", f"{n} threads", "speedup", "check"],
                           _scan_rows(scan))
    return "\n".join(lines) + "\n"


def _fmt_load(load: list[float] | None) -> str:
    return "?" if not load else " ".join(f"{x:.2f}" for x in load)


def _markdown(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return [line(headers), sep] + [line(r) for r in rows]


# -------------------------------------------------------------------------- main


# ------------------------------------------------------------ gradient boosting
# `bench --boosting`: one objective call (gradient and hessian, XGBoost's
# convention) against a careful NumPy objective and one boosting round of the
# built-in objective on the same data (depth 6, hist), one thread. Targets
# (issue 15): >= 10x the NumPy objective, <= 10% of a round.

BOOSTING_TARGETS = (("faster", "numpy objective", 10.0),)


def numpy_softmax_objective(margins: np.ndarray, labels: np.ndarray):
    """The objective users write: stable softmax, p - onehot, max(2 p (1-p), 1e-16)."""
    shifted = margins - margins.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(len(labels)), labels] -= 1
    hess = np.maximum(2 * p * (1 - p), 1e-16)
    return grad, hess


def numpy_logistic_objective(margins: np.ndarray, labels: np.ndarray):
    """Sigmoid through exp(-|x|) (no overflow), p - y, max(p (1-p), 1e-16)."""
    e = np.exp(-np.abs(margins))
    p = np.where(margins >= 0, 1 / (1 + e), e / (1 + e))
    return p - labels, np.maximum(p * (1 - p), 1e-16)


def boosting_cases(quick: bool) -> list[tuple[str, int, int, int]]:
    """(task, objective n, classes, boosting-round n): the round runs on 1e6 rows
    (a 1e7-row DMatrix does not fit this benchmark's memory and time)."""
    if quick:
        return [("multiclass", 20_000, 10, 20_000), ("binary", 50_000, 1, 20_000)]
    return [("multiclass", 10**6, 10, 10**6), ("binary", 10**7, 1, 10**6)]


def _booster_round(library: str, task: str, X, y, n_classes: int):
    """A callable running one more boosting round of the built-in objective."""
    if library == "xgboost":
        import xgboost as xgb
        params = {"tree_method": "hist", "max_depth": 6, "nthread": 1, "base_score": 0.0,
                  "objective": "multi:softprob" if task == "multiclass" else "binary:logistic"}
        if task == "multiclass":
            params["num_class"] = n_classes
        dtrain = xgb.DMatrix(X, label=y, nthread=1)
        booster = xgb.Booster(params, [dtrain])
        state = {"i": 0}

        def one_round():
            booster.update(dtrain, state["i"])
            state["i"] += 1
        # The first round also builds the histogram index: time the steady state.
        one_round()
        return one_round
    import lightgbm as lgb
    params = {"objective": "multiclass" if task == "multiclass" else "binary", "max_depth": 6,
              "num_leaves": 63, "num_threads": 1, "verbose": -1, "force_row_wise": True}
    if task == "multiclass":
        params["num_class"] = n_classes
    booster = lgb.Booster(params, lgb.Dataset(X, label=y))
    booster.update()
    return booster.update


def run_boosting(quick: bool, *, budget: float, sample_time: float, min_samples: int,
                 progress: Progress | None = None) -> list[dict]:
    from . import functional
    rows = []
    for task, n, n_classes, n_round in boosting_cases(quick):
        rng = np.random.default_rng(0)
        if task == "multiclass":
            margins = rng.standard_normal((n, n_classes)).astype(np.float32)
            labels = rng.integers(0, n_classes, n)
            fast = functional.cross_entropy_grad_hess
            numpy_objective = numpy_softmax_objective
        else:
            margins = rng.standard_normal(n).astype(np.float32)
            labels = (rng.random(n) < 0.3).astype(np.float32)
            fast = functional.binary_cross_entropy_with_logits_grad_hess
            numpy_objective = numpy_logistic_objective
        out = (np.empty_like(margins), np.empty_like(margins))
        calls = {"fastloss": lambda: fast(margins, labels, hessian="xgboost", out=out),
                 "numpy objective": lambda: numpy_objective(margins, labels)}
        X = rng.standard_normal((n_round, 8)).astype(np.float32)
        y = labels[:n_round]
        for library in ("xgboost", "lightgbm"):
            try:
                calls[f"{library} round"] = _booster_round(library, task, X, y, n_classes)
            except ImportError:
                pass
        if progress:
            progress.case(f"boosting {task} n={_short_count(n)}")
        timings, errors = measure(calls, budget=budget, sample_time=sample_time,
                                  min_samples=min_samples,
                                  progress=progress.step if progress else None)
        medians = {name: t.median for name, t in timings.items()}
        rows.append({"task": task, "n": n, "classes": n_classes, "round_n": n_round,
                     "seconds": medians, "errors": errors})
        del margins, out, calls
    return rows


def render_boosting(rows: list[dict]) -> str:
    lines = ["Gradient boosting (one objective call, hessian='xgboost', 1 thread; "
             "a round: depth 6, hist, built-in objective):"]
    table = []
    for r in rows:
        t = r["seconds"]
        fast = t.get("fastloss")
        cells = [f"{r['task']} n={_short_count(r['n'])}" + (f" K={r['classes']}"
                                                           if r["classes"] > 1 else ""),
                 format_time(fast) if fast else "error"]
        numpy_time = t.get("numpy objective")
        cells.append(f"{format_time(numpy_time)} ({numpy_time / fast:.1f}x)"
                     if fast and numpy_time else "n/a")
        for library in ("xgboost", "lightgbm"):
            rt = t.get(f"{library} round")
            share = (fast * r["round_n"] / r["n"]) / rt if fast and rt else None
            cells.append(f"{format_time(rt)} (objective {100 * share:.1f}% of it)"
                         if share is not None else "n/a")
        table.append(cells)
    lines += _markdown(["case", "fastloss", "NumPy objective", "XGBoost round (n=round rows)",
                        "LightGBM round"], table)
    return "\n".join(lines)


def _write_outputs(args: argparse.Namespace, report: dict, markdown: Callable[[], str]) -> None:
    """--json: the report as data; --markdown: its README tables (made only when asked)."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown())


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastloss bench",
        description="Time fastloss's fused forward+backward losses against the NumPy reference, "
                    "PyTorch, scikit-learn, np.exp and a memory copy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="On a shared machine, set OMP_WAIT_POLICY=passive for multi-threaded runs.")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="threads for every candidate (fastloss n_threads, "
                             "torch.set_num_threads, threadpoolctl); default 1. With "
                             "--threads-scan: the thread count compared with 1 (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats: a smoke run of a few seconds")
    parser.add_argument("--threads-scan", action="store_true",
                        help="instead of the cases, time fastloss with 1 vs N threads over sizes")
    parser.add_argument("--torch", action="store_true",
                        help="instead of the cases, time fastloss.torch through autograd "
                             "against torch and a training step, torch's loss vs patched")
    parser.add_argument("--all", action="store_true", help="the cases and then the threads scan")
    parser.add_argument("--pairs", action="store_true",
                        help="the metric-learning cases (contrastive, cosine embedding, triplet, "
                             "center loss at N = 65536, D = 128) instead of the main ones")
    parser.add_argument("--boosting", action="store_true",
                        help="instead of the cases, time the gradient-boosting objectives "
                             "against a NumPy objective and one XGBoost/LightGBM round")
    parser.add_argument("--case", action="append", default=[], metavar="SUBSTRING",
                        help="only the cases whose key contains SUBSTRING (repeatable), "
                             "e.g. --case ce-2048 --case tiny")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="timing seconds per large case (default 3; tiny cases a third)")
    parser.add_argument("--all-paths", action="store_true",
                        help="measure every SIMD path this CPU runs, one subprocess per path "
                             "(FASTLOSS_SIMD=path), and show them side by side")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH",
                        help="also write the README's Performance table of each path (markdown)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a target is missed (with --all-paths: "
                             "on the paths of CHECKED_PATHS)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be > 0")
    return args


# The paths issue #11's targets hold on; the baseline path is measured alongside.
CHECKED_PATHS = ("avx512", "avx2")


def child_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of one path's run under --all-paths: the same run, without the
    switches the parent handles (--all-paths, --json, --markdown, --check)."""
    argv = ["--threads", str(args.threads)]
    for flag in ("quick", "threads_scan", "torch", "all", "pairs", "boosting", "no_progress"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    for sub in args.case:
        argv += ["--case", sub]
    if args.budget is not None:
        argv += ["--budget", repr(args.budget)]
    return argv


def run_all_paths(args: argparse.Namespace, argv: list[str]) -> int:
    """--all-paths: one `python -m fastloss bench` per SIMD path this CPU runs.

    The kernels are chosen once, at import (FASTLOSS_SIMD), so each path runs in a
    process of its own, exactly as a user forcing that path gets it, with every peer
    timed again in that process (its ratios are same-run ratios, as in a single-path
    run). A path whose process dies (say SIGILL) is reported without stopping the
    others. Each path's report is the JSON of a plain run."""
    from . import _dispatch

    paths = _dispatch.available_paths()
    reports: dict[str, dict] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()
    for i, path in enumerate(paths, 1):
        if not args.no_progress:
            print(f"bench: --all-paths [{i}/{len(paths)}] SIMD path {path}", file=sys.stderr,
                  flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "bench.json")
            env = dict(os.environ, FASTLOSS_SIMD=path)
            proc = subprocess.run([sys.executable, "-m", "fastloss", "bench", *child_argv(args),
                                   "--json", out], env=env, stdout=subprocess.PIPE, text=True)
            if os.path.exists(out):
                with open(out) as f:
                    reports[path] = json.load(f)
                reports[path]["run_by"] = ["python", "-m", "fastloss", "bench", *argv]
                if proc.returncode != 0:  # a fastloss call failed: the report says where
                    failures[path] = f"exit status {proc.returncode}"
            else:
                failures[path] = (f"exit status {proc.returncode}, no report; its output "
                                  f"ended: {proc.stdout[-500:]}")
    combined = {"command": ["python", "-m", "fastloss", "bench", *argv], "all_paths": True,
                "paths": paths, "checked_paths": _checked(paths), "reports": reports,
                "failures": failures, "elapsed_s": time.perf_counter() - started}
    for path, report in reports.items():
        print(f"\n======== SIMD path {path} ========\n")
        if report.get("cases") or report.get("threads_scan") or report.get("torch_cases"):
            print(render(report))
        if report.get("boosting"):
            print(render_boosting(report["boosting"]))
    print(render_side_by_side(combined))
    for path, reason in failures.items():
        print(f"bench: SIMD path {path}: {reason}", file=sys.stderr)
    print(f"\n({combined['elapsed_s']:.0f} s)")
    _write_outputs(args, combined, lambda: "\n".join(
        render_markdown(reports[p], p in combined["checked_paths"]) for p in paths if p in reports))
    if failures:
        return 1
    if args.check and any(_missed(reports[p]) for p in combined["checked_paths"]):
        return 1
    return 0


def _checked(paths: list[str]) -> list[str]:
    """The paths --check holds to the targets: those of CHECKED_PATHS, or, on a CPU that
    runs none of them, the widest it runs."""
    return [p for p in paths if p in CHECKED_PATHS] or paths[:1]


def _missed(report: dict) -> bool:
    scan = report.get("threads_scan")
    return bool(report["targets_summary"]["missed"]
                or any(not r.get("met", True) for r in report.get("torch_cases") or [])
                or (scan and scan["summary"]["missed"]))


SIDE_COLUMNS = ("c_loop", "torch", "sklearn", "np.exp", "memcpy")


def render_side_by_side(combined: dict) -> str:
    """Every path's fastloss time and its ratios to the peers timed in its own process,
    one row per case; the last column is the narrowest path's time over the widest's."""
    paths = [p for p in combined["paths"] if p in combined["reports"]]
    reports = [combined["reports"][p] for p in paths]
    lines = ["", f"Side by side ({', '.join(paths)}; ratios: the peer's time / fastloss's, "
                 "both timed in that path's process; --check holds the targets on "
                 f"{', '.join(combined['checked_paths'])}):", ""]
    if reports and reports[0].get("cases"):
        names = dict(COLUMNS)
        headers = ["case"]
        for p in paths:
            headers += [f"{p}: fastloss"] + [f"{p}: {names[k]}" for k in SIDE_COLUMNS]
        if len(paths) > 1:
            headers.append(f"{paths[-1]} / {paths[0]}")
        rows = []
        for i, res in enumerate(reports[0]["cases"]):
            row = [res["label"]]
            per_path = [r["cases"][i]["candidates"] if i < len(r["cases"]) else {}
                        for r in reports]
            for cands in per_path:
                row += [_cell(cands.get("fastloss", {}), ratio=False)]
                row += [_cell(cands.get(k, {}), ratio=True) for k in SIDE_COLUMNS]
            if len(paths) > 1:
                first, last = per_path[0].get("fastloss", {}), per_path[-1].get("fastloss", {})
                row.append(format_ratio(last["median_s"] / first["median_s"])
                           if first.get("status") == last.get("status") == "ok" else "\u2014")
            rows.append(row)
        lines += _markdown(headers, rows)
    if reports and reports[0].get("threads_scan"):
        n = reports[0]["threads_scan"]["threads"][1]
        lines += ["", f"Threads: speedup of {n} threads over 1, per path:", ""]
        rows = []
        for i, r0 in enumerate(reports[0]["threads_scan"]["rows"]):
            row = [r0["label"]]
            for r in reports:
                scan_row = r["threads_scan"]["rows"][i]
                row.append(format_ratio(scan_row["speedup"]) if scan_row["status"] == "ok"
                           else "error")
            rows.append(row)
        lines += _markdown(["case"] + paths, rows)
    lines.append("")
    for p, r in zip(paths, reports):
        summary = [f"targets met {r['targets_summary']['met']} of "
                   f"{r['targets_summary']['met'] + r['targets_summary']['missed']}"]
        if r.get("threads_scan"):
            ts = r["threads_scan"]["summary"]
            summary.append(f"threads checks met {ts['met']} of {ts['met'] + ts['missed']}")
        lines.append(f"{p}: " + ", ".join(summary))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(list(argv))
    if args.all_paths:
        return run_all_paths(args, list(argv))
    progress = Progress(not args.no_progress)
    run_cases = not (args.threads_scan or args.torch or args.boosting) or args.all
    run_threads_scan = args.threads_scan or args.all
    threads = args.threads
    scan_threads = threads if threads > 1 else 2

    if args.quick:
        budget, sample_time, min_samples = args.budget or 0.05, 0.002, 1
    else:
        budget, sample_time, min_samples = args.budget or 3.0, 0.01, 3
    tiny_budget = budget / 3

    report: dict[str, Any] = {"command": ["python", "-m", "fastloss", "bench", *argv],
                              "quick": args.quick, "environment": environment(threads),
                              "settings": {"budget_s": budget, "tiny_budget_s": tiny_budget,
                                           "sample_time_s": sample_time,
                                           "min_samples": min_samples,
                                           "fastloss_out_preallocated": True,
                                           "ratio": "candidate time / fastloss (out=) time"},
                              "cases": [], "targets": [],
                              "targets_summary": {"met": 0, "missed": 0, "na": 0},
                              "threads_scan": None, "torch_cases": None, "train_step": None,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    report["simd_path"] = report["environment"]["fastloss_build"]["simd_path"]
    started = time.perf_counter()
    fastloss_failed = False
    with ThreadSettings(threads):
        if run_cases:
            if args.pairs:
                cases = pairs_cases(args.quick)
            else:
                cases = quick_cases() if args.quick else full_cases()
            if args.case:
                cases = [c for c in cases if any(s in c.key for s in args.case)]
                if not cases:
                    print(f"bench: no case matches {args.case}", file=sys.stderr)
                    return 2
            progress.case("warm-up")
            warm_up(threads)
            for i, case in enumerate(cases, 1):
                progress.case(f"[{i}/{len(cases)}] {case.label}")
                res = run_case(case, threads, budget=tiny_budget if case.tiny else budget,
                               sample_time=sample_time, min_samples=min_samples,
                               progress=progress)
                fastloss_failed |= res["candidates"]["fastloss"]["status"] != "ok"
                report["cases"].append(res)
            report["targets"] = evaluate_targets(cases, report["cases"])
            met = [t["met"] for t in report["targets"]]
            report["targets_summary"] = {"met": met.count(True), "missed": met.count(False),
                                         "na": met.count(None)}
    if args.torch:
        with ThreadSettings(threads):
            cases = torch_cases(args.quick)
            if args.case:
                cases = [c for c in cases if any(sub in c.key for sub in args.case)]
            report["torch_cases"] = []
            for i, case in enumerate(cases, 1):
                progress.case(f"fastloss.torch [{i}/{len(cases)}] {case.label}")
                row = run_torch_case(case, budget=tiny_budget if case.tiny else budget,
                                     sample_time=sample_time, min_samples=min_samples,
                                     progress=progress)
                fastloss_failed |= row["status"] != "ok"
                report["torch_cases"].append(row)
            progress.case("fastloss.torch training step")
            report["train_step"] = run_train_step(args.quick, rounds=3 if args.quick else 7,
                                                  progress=progress)
            fastloss_failed |= report["train_step"]["status"] != "ok"
    if run_threads_scan:
        with ThreadSettings(scan_threads):
            report["threads_scan"] = run_scan(scan_cases(args.quick), scan_threads,
                                              budget=budget / 2, sample_time=sample_time,
                                              min_samples=min_samples, progress=progress)
        fastloss_failed |= any(r["status"] != "ok" for r in report["threads_scan"]["rows"])
    if args.boosting:
        with ThreadSettings(1):
            report["boosting"] = run_boosting(args.quick, budget=budget, sample_time=sample_time,
                                              min_samples=min_samples, progress=progress)
    progress.done()
    report["environment"]["machine"]["loadavg_end"] = _loadavg()
    report["elapsed_s"] = time.perf_counter() - started

    if run_cases or run_threads_scan or args.torch:
        print(render(report))
    if args.boosting:
        print(render_boosting(report["boosting"]))
    print(f"\n({report['elapsed_s']:.0f} s)")
    _write_outputs(args, report, lambda: render_markdown(report))
    if fastloss_failed:
        print("bench: a fastloss call failed (see 'error' above)", file=sys.stderr)
        return 1
    if args.check and _missed(report):
        return 1
    return 0
