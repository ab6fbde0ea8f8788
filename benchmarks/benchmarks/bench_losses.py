"""Timing and peak memory of fastloss's fused losses, parametrised over loss, dtype, size, threads.

Each ``time_*`` / ``peakmem_*`` method is one call of the public API on data
built in ``setup``; ``setup`` raises NotImplementedError to skip a combination
(asv then reports it as skipped, not failed). Sizes follow the cases of
``python -m fastloss bench``: "tiny" measures per-call overhead, "medium" sits
above the parallel threshold, "large" is the issue's large-vocabulary /
1e7-element case.
"""

import contextlib
import os

import numpy as np

import fastloss
from fastloss import _bench, _dispatch

LOSSES = ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "huber_loss"]
DTYPES = ["float32", "float64"]
THREADS = [1, 2]
# The SIMD paths this CPU runs (issue #11: the AVX2 path's cases next to the widest).
# asv runs every benchmark in-process, so a path is chosen in `setup` with
# fastloss._dispatch.use, which imports that path's kernel module (after the same CPU
# check as FASTLOSS_SIMD) and makes the public functions call it; nothing else in
# fastloss holds on to a kernel module, so the call timed is the one a process
# started with FASTLOSS_SIMD=<path> makes. (`python -m fastloss bench --all-paths`
# instead runs one process per path: it times the peers again in each.)
SIMD = _dispatch.available_paths()

# (N, C) logits for cross-entropy; element counts for the pointwise losses.
CE_SHAPES = {"tiny": (32, 10), "medium": (8192, 1000), "large": (2048, 32000)}
POINTWISE_SIZES = {"tiny": 100, "medium": 10**6, "large": 10**7}


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _normal(shape, dtype, rng):
    """Standard-normal data; large arrays repeat a 2**20-element block (fast to build)."""
    size = int(np.prod(shape))
    block = rng.standard_normal(min(size, 1 << 20), dtype=np.dtype(dtype))
    return np.resize(block, shape)


def make_data(loss, dtype, size):
    """(input, target) of a loss at a size, as ``python -m fastloss bench`` builds them."""
    rng = np.random.default_rng(0)
    if loss == "cross_entropy":
        n, c = CE_SHAPES[size]
        return _normal((n, c), dtype, rng), rng.integers(0, c, n, dtype=np.int64)
    n = POINTWISE_SIZES[size]
    x = _normal((n,), dtype, rng)
    if loss == "binary_cross_entropy_with_logits":
        return x, rng.integers(0, 2, n).astype(dtype)
    return x, _normal((n,), dtype, np.random.default_rng(1))


class _Fused:
    """Setup shared by the fused-loss classes: the SIMD path's kernels, data of
    (loss, dtype, size) and a gradient buffer."""

    def setup(self, loss, dtype, size, threads, simd):
        if threads > _usable_cpus():
            raise NotImplementedError(f"{threads} threads on {_usable_cpus()} CPUs")
        self.previous = _dispatch.use(simd).SIMD_PATH
        self.x, self.target = make_data(loss, dtype, size)
        self.grad = np.empty_like(self.x)
        self.forward = getattr(fastloss, loss)
        self.with_grad = getattr(fastloss, loss + "_with_grad")
        self.threads = threads
        # warm the gradient buffer's pages so time_with_grad_out is steady state
        self.with_grad(self.x, self.target, out=self.grad, n_threads=threads)

    def teardown(self, loss, dtype, size, threads, simd):
        if hasattr(self, "previous"):
            _dispatch.use(self.previous)

    def time_with_grad_out(self, loss, dtype, size, threads, simd):
        """One fused forward + backward, the gradient written into a preallocated ``out=``."""
        self.with_grad(self.x, self.target, out=self.grad, n_threads=self.threads)

    def peakmem_with_grad(self, loss, dtype, size, threads, simd):
        """Inputs + one fresh gradient: the kernels make no input-sized temporaries."""
        self.with_grad(self.x, self.target, n_threads=self.threads)


class Losses(_Fused):
    """Fused forward + backward (mean reduction) of every loss at the tiny and medium sizes."""

    params = [LOSSES, DTYPES, ["tiny", "medium"], THREADS, SIMD]
    param_names = ["loss", "dtype", "size", "threads", "simd"]
    timeout = 120

    def time_with_grad(self, loss, dtype, size, threads, simd):
        """A fresh gradient array per call (includes its allocation and page faults)."""
        self.with_grad(self.x, self.target, n_threads=self.threads)

    def time_forward(self, loss, dtype, size, threads, simd):
        """The loss alone (``reduction="mean"``)."""
        self.forward(self.x, self.target, n_threads=self.threads)

    def peakmem_with_grad_out(self, loss, dtype, size, threads, simd):
        self.with_grad(self.x, self.target, out=self.grad, n_threads=self.threads)


class LossesLarge(_Fused):
    """The large sizes (2048x32000 logits, 1e7 elements): only the headline timing and
    the peak memory, since building their data dominates a quick run."""

    params = [LOSSES, DTYPES, ["large"], THREADS, SIMD]
    param_names = ["loss", "dtype", "size", "threads", "simd"]
    timeout = 300


class CrossEntropyOptions:
    """The non-default cross-entropy paths at the medium size, single thread."""

    params = [["plain", "weight", "ignore_index", "label_smoothing", "probabilities"],
              DTYPES]
    param_names = ["option", "dtype"]

    def setup(self, option, dtype):
        x, labels = make_data("cross_entropy", dtype, "medium")
        n, c = x.shape
        self.x = x
        self.grad = np.empty_like(x)
        self.kwargs = {}
        self.target = labels
        if option == "weight":
            self.kwargs["weight"] = np.random.default_rng(2).uniform(0.5, 2.0, c).astype(dtype)
        elif option == "ignore_index":
            labels = labels.copy()
            labels[::4] = -100
            self.target = labels
        elif option == "label_smoothing":
            self.kwargs["label_smoothing"] = 0.1
        elif option == "probabilities":
            p = np.random.default_rng(3).uniform(size=x.shape).astype(dtype)
            self.target = p / p.sum(axis=1, keepdims=True)

    def time_with_grad_out(self, option, dtype):
        fastloss.cross_entropy_with_grad(self.x, self.target, out=self.grad, n_threads=1,
                                         **self.kwargs)


class BCEOptions:
    """BCE with logits with per-class pos_weight / weight at the medium size (as (n/100, 100))."""

    params = [["plain", "pos_weight", "weight", "both"], DTYPES]
    param_names = ["option", "dtype"]

    def setup(self, option, dtype):
        x, y = make_data("binary_cross_entropy_with_logits", dtype, "medium")
        self.x, self.y = x.reshape(-1, 100), y.reshape(-1, 100)
        self.grad = np.empty_like(self.x)
        rng = np.random.default_rng(4)
        self.kwargs = {}
        if option in ("pos_weight", "both"):
            self.kwargs["pos_weight"] = rng.uniform(0.5, 3.0, 100).astype(dtype)
        if option in ("weight", "both"):
            self.kwargs["weight"] = rng.uniform(0.5, 2.0, 100).astype(dtype)

    def time_with_grad_out(self, option, dtype):
        fastloss.binary_cross_entropy_with_logits_with_grad(
            self.x, self.y, out=self.grad, n_threads=1, **self.kwargs)


class OtherLosses:
    """Fused forward + backward (the loss's default options, "mean" or its own default
    reduction) of the losses beyond the first four (the metric-learning ones are
    MetricLearning's), float32, single thread, built as ``python -m fastloss bench``
    builds them: rows of 10 classes or elements."""

    params = [sorted(key for key, spec in _bench.LOSSES.items()
                     if not spec.pairs and key not in ("ce", "bce", "mse", "huber")),
              ["small", "large"]]
    param_names = ["loss", "size"]
    timeout = 300

    def setup(self, loss, size):
        spec = _bench.LOSSES[loss]
        n = {"small": 10**4, "large": 10**7}[size]
        case = _bench.Case(loss, (n // 10, 10) if spec.rows else (n,), "float32")
        data = _bench.make_data(case)
        self.args = (data["x"], data["target"], *data["args"])
        self.grad = (data["grad"], None) if spec.extra else data["grad"]
        self.kwargs = spec.kwargs
        self.with_grad = getattr(fastloss, spec.function + "_with_grad")
        self.with_grad(*self.args, out=self.grad, n_threads=1, **self.kwargs)

    def time_with_grad_out(self, loss, size):
        self.with_grad(*self.args, out=self.grad, n_threads=1, **self.kwargs)


def _torch():
    """torch and fastloss.torch, or NotImplementedError (asv: skipped) without torch."""
    try:
        import torch

        import fastloss.torch as ft
    except ImportError as exc:
        raise NotImplementedError(f"torch is not installed: {exc}") from None
    return torch, ft


class TorchAutograd:
    """fastloss.torch against torch.nn.functional through autograd: forward + .backward()
    of a mean-reduced loss on a leaf tensor, one thread."""

    params = [LOSSES, DTYPES, ["tiny", "medium", "large"], ["fastloss.torch", "torch"]]
    param_names = ["loss", "dtype", "size", "backend"]
    timeout = 300

    def setup(self, loss, dtype, size, backend):
        torch, ft = _torch()
        torch.set_num_threads(1)
        x, target = make_data(loss, dtype, size)
        self.x = torch.from_numpy(x).requires_grad_()
        self.target = torch.from_numpy(target)
        self.func = getattr(ft, loss) if backend == "fastloss.torch" else ft._ORIGINALS[loss]

    def time_forward_backward(self, loss, dtype, size, backend):
        self.x.grad = None
        self.func(self.x, self.target).backward()


class TorchTrainStep:
    """One SGD step (Linear 256-128, ReLU, Linear 128-32000, batch 1024, float32, one
    thread) with torch.nn.CrossEntropyLoss, unpatched and under fastloss.torch.patched()."""

    params = [["torch", "patched"]]
    param_names = ["loss"]
    timeout = 300

    def setup(self, loss):
        torch, ft = _torch()
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                         torch.nn.Linear(128, 32000))
        self.optimiser = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(1024, 256)
        self.labels = torch.randint(0, 32000, (1024,))
        self.criterion = torch.nn.CrossEntropyLoss()
        self.scope = ft.patched if loss == "patched" else contextlib.nullcontext

    def time_step(self, loss):
        with self.scope():
            self.optimiser.zero_grad()
            self.criterion(self.model(self.x), self.labels).backward()
            self.optimiser.step()


class Boosting:
    """One gradient-boosting objective call (gradient and hessian, XGBoost's convention)
    at the issue's sizes: multiclass n = 1e6, K = 10; binary n = 1e7; against the
    NumPy objective users write (``fastloss._bench.numpy_*_objective``). One boosting
    round is timed by ``python -m fastloss bench --boosting``: it needs xgboost."""

    params = [["multiclass", "binary"], ["fastloss", "numpy"]]
    param_names = ["task", "implementation"]
    timeout = 300

    def setup(self, task, implementation):
        from fastloss import _bench

        rng = np.random.default_rng(0)
        if task == "multiclass":
            self.x = _normal((10**6, 10), "float32", rng)
            self.y = rng.integers(0, 10, 10**6)
            self.fast = fastloss.cross_entropy_grad_hess
            self.numpy = _bench.numpy_softmax_objective
        else:
            self.x = _normal((10**7,), "float32", rng)
            self.y = rng.integers(0, 2, 10**7).astype(np.float32)
            self.fast = fastloss.binary_cross_entropy_with_logits_grad_hess
            self.numpy = _bench.numpy_logistic_objective
        self.out = (np.empty_like(self.x), np.empty_like(self.x))

    def time_objective(self, task, implementation):
        if implementation == "fastloss":
            self.fast(self.x, self.y, hessian="xgboost", out=self.out, n_threads=1)
        else:
            self.numpy(self.x, self.y)


class MetricLearning:
    """The metric-learning losses at N = 65536 rows of D = 128, float32 (issue 13): the
    fused call, torch's forward + backward, and the memory copy of the bytes a fused
    pass moves, as candidates side by side (data and calls of
    ``python -m fastloss bench --pairs``)."""

    params = [["contrastive", "cosine", "triplet", "center"], ["fastloss", "torch", "memcpy"],
              THREADS]
    param_names = ["loss", "candidate", "threads"]
    timeout = 300

    def setup(self, loss, candidate, threads):
        from fastloss import _bench

        if threads > _usable_cpus():
            raise NotImplementedError(f"{threads} threads on {_usable_cpus()} CPUs")
        case = _bench.Case(loss, (65536, 128), "float32")
        if candidate == "memcpy":
            self.call = _bench._memcpy_call(case)
        elif candidate == "torch":
            try:
                import torch
            except ImportError:
                raise NotImplementedError("torch is not installed") from None
            torch.set_num_threads(threads)
            self.call = _bench._torch_call(case, _bench.make_data(case))
        else:
            self.call = _bench._fastloss_call(case, _bench.make_data(case), threads, out=True)
        self.call()  # warm the buffers' pages

    def time_forward_backward(self, loss, candidate, threads):
        """One forward + backward (mean reduction); fastloss writes into preallocated ``out=``."""
        self.call()
