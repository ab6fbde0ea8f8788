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

``--threads-scan`` instead times fastloss with 1 and with 2 (``--threads``)
threads over a range of sizes: the parallel speedup of large inputs and the
no-slowdown check of small ones. ``--json PATH`` writes all results as data.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
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
LOSS_LABELS = {"ce": "cross-entropy", "bce": "BCE with logits", "mse": "MSE", "huber": "Huber",
               "contrastive": "contrastive", "cosine": "cosine embedding",
               "triplet": "triplet margin", "center": "center loss"}
# The metric-learning cases (``--pairs``): rows (N, D) of two or three embedding
# arrays, or of features against a table of PAIRS_CENTERS class centres.
PAIRS = {"contrastive": 2, "cosine": 2, "triplet": 3, "center": 1}  # differentiable rows
PAIRS_CENTERS = 1000
# (column key, header) in table order; "fastloss" is the baseline of the ratios.
COLUMNS = [
    ("fastloss", "fastloss (out=)"),
    ("fastloss_alloc", "no out="),
    ("reference", "NumPy ref"),
    ("torch", "PyTorch"),
    ("sklearn", "sklearn"),
    ("np.exp", "np.exp"),
    ("memcpy", "memcpy"),
]
PEER_NAMES = {"torch": "PyTorch", "sklearn": "scikit-learn", "np.exp": "np.exp",
              "memcpy": "memcpy", "reference": "the NumPy reference"}


# ------------------------------------------------------------------------ cases

@dataclass(frozen=True)
class Case:
    loss: str                       # "ce", "bce", "mse", "huber", or one of PAIRS
    shape: tuple[int, ...]          # ce: (N, C); pointwise: (n,); PAIRS: (N, D)
    dtype: str                      # "float32" / "float64"
    tiny: bool = False              # per-call overhead case (µs, timeit loops)
    # Targets of issue #3: ("faster", peer, k): peer's time >= k * fastloss's;
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
        return f"{prefix}{LOSS_LABELS[self.loss]} {dims} {_short_dtype(self.dtype)}"

    @property
    def bytes_moved(self) -> int:
        """Bytes a fused pass must read and write: inputs once, the gradient once."""
        item = np.dtype(self.dtype).itemsize
        if self.loss == "ce":
            return 2 * self.size * item + self.shape[0] * 8  # logits + gradient + int64 labels
        if self.loss == "center":
            # features + their gradient, int64 labels, the centre table read and its gradient
            table = PAIRS_CENTERS * self.shape[1] * item
            return 2 * self.size * item + self.shape[0] * 8 + 2 * table
        if self.loss in PAIRS:
            # each row array read and its gradient written, plus the float targets
            return 2 * PAIRS[self.loss] * self.size * item + (
                self.shape[0] * item if self.loss != "triplet" else 0)
        return 3 * self.size * item  # input + target + gradient


def _short_dtype(dtype: str) -> str:
    return {"float32": "f32", "float64": "f64"}[dtype]


def _short_count(n: int) -> str:
    exponent = round(math.log10(n)) if n > 0 else 0
    if n >= 1000 and 10**exponent == n:
        return f"1e{exponent}"
    return str(n)


CE_TARGETS = (("faster", "torch", 8.0), ("faster", "sklearn", 3.0))
VOCAB_TARGETS = CE_TARGETS + (("within", "np.exp", 2.0),)
BCE_TARGETS = (("faster", "torch", 8.0), ("within", "np.exp", 3.0))
COPY_TARGETS = (("within", "memcpy", 1.5),)
PAIRS_TARGETS = (("faster", "torch", 5.0), ("within", "memcpy", 2.0))
F64 = (("f64_ahead",),)
TINY_TARGETS = (("max_us", 3.0),)


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
        Case("ce", (32, 10), "float32", tiny=True, targets=TINY_TARGETS + CE_TARGETS),
        Case("ce", (32, 10), "float64", tiny=True, targets=TINY_TARGETS + CE_TARGETS + F64),
        Case("mse", (100,), "float32", tiny=True, targets=TINY_TARGETS),
        Case("mse", (100,), "float64", tiny=True, targets=TINY_TARGETS + F64),
    ]


def quick_cases() -> list[Case]:
    """The same kinds of case at small sizes: a smoke run (its numbers mean little)."""
    return [
        Case("ce", (16, 4000), "float32", targets=VOCAB_TARGETS),
        Case("ce", (256, 100), "float32", targets=CE_TARGETS),
        Case("ce", (256, 100), "float64", targets=CE_TARGETS + F64),
        Case("bce", (10**4,), "float32", targets=BCE_TARGETS),
        Case("mse", (10**4,), "float32", targets=COPY_TARGETS),
        Case("huber", (10**4,), "float64", targets=COPY_TARGETS),
        Case("ce", (32, 10), "float32", tiny=True, targets=TINY_TARGETS + CE_TARGETS),
        Case("mse", (100,), "float32", tiny=True, targets=TINY_TARGETS),
    ]


def pairs_cases(quick: bool) -> list[Case]:
    """The metric-learning cases of issue 13: N = 65536 rows of D = 128, float32."""
    shape = (1024, 64) if quick else (65536, 128)
    return [Case(loss, shape, "float32", targets=PAIRS_TARGETS) for loss in PAIRS]


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


def make_data(case: Case, seed: int = 0) -> dict[str, Any]:
    """Inputs of a case: standard-normal logits, labels / 0-1 / normal targets; for
    PAIRS, `args` (the positional arguments) and `grads` (one buffer per gradient)."""
    rng = np.random.default_rng(seed)
    x = _normal(case.shape, case.dtype, rng)
    if case.loss in PAIRS:
        return _pairs_data(case, x, rng)
    if case.loss == "ce":
        target = rng.integers(0, case.shape[1], case.shape[0], dtype=np.int64)
    elif case.loss == "bce":
        target = rng.integers(0, 2, case.shape).astype(case.dtype)
    else:
        target = _normal(case.shape, case.dtype, rng)
    return {"x": x, "target": target, "grad": np.empty_like(x)}


def _pairs_data(case: Case, x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    n, d = case.shape
    rows = [x] + [_normal(case.shape, case.dtype, rng) for _ in range(PAIRS[case.loss] - 1)]
    if case.loss == "center":
        target = rng.integers(0, PAIRS_CENTERS, n)
        centers = _normal((PAIRS_CENTERS, d), case.dtype, rng)
        args = (x, target, centers)
        grads = (np.empty_like(x), np.empty_like(centers))
    else:
        if case.loss == "contrastive":
            args = (*rows, rng.integers(0, 2, n).astype(case.dtype))
        elif case.loss == "cosine":
            args = (*rows, rng.choice([-1.0, 1.0], n).astype(case.dtype))
        else:
            args = tuple(rows)
        grads = tuple(np.empty_like(r) for r in rows)
    return {"x": x, "grad": grads[0], "args": args, "grads": grads}


_FASTLOSS_FUNCS = {"ce": "cross_entropy_with_grad",
                   "bce": "binary_cross_entropy_with_logits_with_grad",
                   "mse": "mse_loss_with_grad", "huber": "huber_loss_with_grad",
                   "contrastive": "contrastive_loss_with_grad",
                   "cosine": "cosine_embedding_loss_with_grad",
                   "triplet": "triplet_margin_loss_with_grad",
                   "center": "center_loss_with_grad"}


def _fastloss_call(case: Case, data: dict, n_threads: int, out: bool) -> Callable[[], Any]:
    import fastloss

    func = getattr(fastloss, _FASTLOSS_FUNCS[case.loss])
    if case.loss in PAIRS:
        args, grads = data["args"], data["grads"]
        if out:
            return lambda: func(*args, out=grads, n_threads=n_threads)
        return lambda: func(*args, n_threads=n_threads)
    x, target, grad = data["x"], data["target"], data["grad"]
    if out:
        return lambda: func(x, target, out=grad, n_threads=n_threads)
    return lambda: func(x, target, n_threads=n_threads)


def _reference_call(case: Case, data: dict) -> Callable[[], Any]:
    from fastloss import reference

    func = getattr(reference, _FASTLOSS_FUNCS[case.loss])
    if case.loss in PAIRS:
        args = data["args"]
        return lambda: func(*args)
    x, target = data["x"], data["target"]
    return lambda: func(x, target)


def _torch_pairs_call(case: Case, data: dict) -> Callable[[], Any]:
    """torch's forward + backward of a PAIRS case: its functions, or the torch-ops
    formula (contrastive, center loss) with autograd."""
    import torch
    import torch.nn.functional as F

    args = [torch.from_numpy(a) for a in data["args"]]
    leaves = [args[i].requires_grad_(True) for i in ((0, 2) if case.loss == "center"
                                                     else range(PAIRS[case.loss]))]

    def contrastive(x1, x2, y):
        d = F.pairwise_distance(x1, x2)
        return (0.5 * (y * d * d + (1 - y) * torch.clamp(1.0 - d, min=0) ** 2)).mean()

    def center(x, t, c):
        diff = x - c[t]
        return (0.5 * (diff * diff).sum(1)).mean()

    loss = {"contrastive": contrastive, "cosine": F.cosine_embedding_loss,
            "triplet": F.triplet_margin_loss, "center": center}[case.loss]

    def run():
        for leaf in leaves:
            leaf.grad = None
        value = loss(*args)
        value.backward()
        return value

    return run


def _torch_call(case: Case, data: dict) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    if case.loss in PAIRS:
        return _torch_pairs_call(case, data)
    x = torch.from_numpy(data["x"]).requires_grad_(True)
    target = torch.from_numpy(data["target"])
    loss = {"ce": F.cross_entropy, "bce": F.binary_cross_entropy_with_logits,
            "mse": F.mse_loss, "huber": F.huber_loss}[case.loss]

    def run():
        x.grad = None
        value = loss(x, target)
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


def candidates(case: Case, data: dict, n_threads: int) -> list[Candidate]:
    result = [
        Candidate("fastloss", _fastloss_call(case, data, n_threads, out=True)),
        Candidate("fastloss_alloc", _fastloss_call(case, data, n_threads, out=False)),
        Candidate("reference", _reference_call(case, data)),
        _peer("torch", lambda: _torch_call(case, data)),
        Candidate("sklearn", None, "n/a", "no such loss in scikit-learn") if case.loss in PAIRS
        else _peer("sklearn", lambda: _sklearn_call(case, data, n_threads)),
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
        if name in ("fastloss", "reference", "torch", "sklearn"):
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
                             threshold=k, measured=value, unit=f" {peer}'s time")
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
        large = case.size >= 10**6
        row.update(status="ok", time_1_s=t1, time_n_s=tn, speedup=speedup,
                   no_slowdown=tn <= 1.10 * t1, large=large,
                   faster=(speedup >= 1.05) if large else None)
        rows.append(row)
    return {"threads": [1, threads], "rows": rows,
            "rules": "every size: time with N threads <= 1.10 x time with 1 (no slowdown); "
                     ">= 1e6 elements: speedup >= 1.05 (faster)"}


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
        "fastloss_build": {"simd_path": kernels.__name__.rsplit("_", 1)[-1],
                           "built_with_openmp": bool(kernels.built_with_openmp())},
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


def render(report: dict) -> str:
    env = report["environment"]
    m, v, b = env["machine"], env["versions"], env["fastloss_build"]
    quick = " (--quick: tiny sizes, numbers mean little)" if report["quick"] else ""
    lines = [
        f"fastloss {v['fastloss']} bench{quick}: one fused forward+backward of a mean-reduced"
        " loss, median of interleaved repeats",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['arch']}); load average "
        f"{_fmt_load(m['loadavg_start'])} at start, {_fmt_load(m.get('loadavg_end'))} at end",
        f"fastloss kernels: {b['simd_path']}, OpenMP {'yes' if b['built_with_openmp'] else 'no'};"
        f" threads: {env['threads']} (fastloss n_threads, torch.set_num_threads, threadpoolctl)",
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
        lines += ["", "Ratios: candidate's time / fastloss's time (> 1: fastloss is faster); "
                      "tiny cases per call.", ""]
        headers = ["case"] + [h for _, h in COLUMNS] + ["targets"]
        rows = []
        targets_by_case: dict[str, list] = {}
        for t in report["targets"]:
            targets_by_case.setdefault(t["case"], []).append(t)
        for res in report["cases"]:
            cands = res["candidates"]
            first = cands["fastloss"]
            cells = [res["label"], _cell(first, ratio=False)]
            cells += [_cell(cands[k], ratio=True) for k, _ in COLUMNS[1:]]
            ts = [t for t in targets_by_case.get(res["key"], []) if t["met"] is not None]
            cells.append(f"{sum(t['met'] for t in ts)}/{len(ts)} met" if ts else "")
            rows.append(cells)
        lines += _markdown(headers, rows)
        lines += ["", "Times (median per call):", ""]
        rows = [[res["label"]] + [_cell(res["candidates"][k], ratio=False) for k, _ in COLUMNS]
                for res in report["cases"]]
        lines += _markdown(["case"] + [h for _, h in COLUMNS], rows)
        absent = sorted({f"{PEER_NAMES.get(k, k)} ({c['reason']})"
                         for res in report["cases"] for k, c in res["candidates"].items()
                         if c["status"] in ("absent", "error")})
        if absent:
            lines += ["", "absent / failed: " + "; ".join(absent)]
        lines += ["", "Targets (issue #3):"]
        for t in report["targets"]:
            mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
            measured = t["measured"]
            if isinstance(measured, float):
                shown = (f"{measured:.2f} \u00b5s" if t["unit"] == "us"
                         else f"{format_ratio(measured)}{t['unit']}")
            else:
                shown = t.get("note") or "(peer absent)"
            note = f" ({t['note']})" if t.get("note") and isinstance(measured, float) else ""
            lines.append(f"  {mark}  {t['label']}: {t['target']}: {shown}{note}")
        s = report["targets_summary"]
        lines.append(f"targets met: {s['met']} of {s['met'] + s['missed']}"
                     + (f" ({s['na']} not applicable)" if s["na"] else ""))
    if report.get("threads_scan"):
        scan = report["threads_scan"]
        n = scan["threads"][1]
        lines += ["", f"Threads scan: fastloss (out=), 1 thread vs {n} threads; {scan['rules']}",
                  ""]
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
        lines += _markdown(["case", "1 thread", f"{n} threads", "speedup", "check"], rows)
    return "\n".join(lines)


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
    parser.add_argument("--all", action="store_true", help="the cases and then the threads scan")
    parser.add_argument("--pairs", action="store_true",
                        help="the metric-learning cases (contrastive, cosine embedding, triplet, "
                             "center loss at N = 65536, D = 128) instead of the main ones")
    parser.add_argument("--case", action="append", default=[], metavar="SUBSTRING",
                        help="only the cases whose key contains SUBSTRING (repeatable), "
                             "e.g. --case ce-2048 --case tiny")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="timing seconds per large case (default 3; tiny cases a third)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a target is missed")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(list(argv))
    progress = Progress(not args.no_progress)
    run_cases = not args.threads_scan or args.all
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
                              "threads_scan": None}
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
    if run_threads_scan:
        with ThreadSettings(scan_threads):
            report["threads_scan"] = run_scan(scan_cases(args.quick), scan_threads,
                                              budget=budget / 2, sample_time=sample_time,
                                              min_samples=min_samples, progress=progress)
        fastloss_failed |= any(r["status"] != "ok" for r in report["threads_scan"]["rows"])
    progress.done()
    report["environment"]["machine"]["loadavg_end"] = _loadavg()
    report["elapsed_s"] = time.perf_counter() - started

    print(render(report))
    print(f"\n({report['elapsed_s']:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if fastloss_failed:
        print("bench: a fastloss call failed (see 'error' above)", file=sys.stderr)
        return 1
    if args.check and report["targets_summary"]["missed"]:
        return 1
    return 0
