"""The metric-learning losses under the suite's robustness checks: fuzzed arguments
against the reference (hypothesis), concurrent calls from many Python threads, the
GIL released during big calls, and no leaks on any path. The machinery (counting
thread, memory probes) is test_threads.py's and test_memory.py's."""

from __future__ import annotations

import gc
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl
from fastloss import reference
from test_functional import _unaligned
from test_memory import MALLINFO2, _run_all, heap_in_use, rss_bytes
from test_threads import Counter, counted, same

ALLOWED = (ValueError, TypeError, IndexError)
EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "60"))
RTOL = {np.dtype(np.float16): 4e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
LOSSES = ("contrastive_loss", "cosine_embedding_loss", "triplet_margin_loss",
          "margin_ranking_loss", "hinge_embedding_loss", "center_loss")


def _arguments(name, rng, shape, dtype, n_classes=4):
    """(differentiable arrays, target, options) of a valid call of `name`."""
    def rows(k):
        return [rng.standard_normal(shape).astype(dtype) for _ in range(k)]
    loss_shape = shape if name in ("margin_ranking_loss", "hinge_embedding_loss") else shape[:-1]
    signs = rng.choice([-1.0, 1.0], loss_shape).astype(dtype)
    if name == "contrastive_loss":
        return rows(2), (rng.random(loss_shape) < 0.5).astype(dtype), {"margin": 1.5}
    if name == "cosine_embedding_loss":
        return rows(2), signs, {"margin": 0.2}
    if name == "triplet_margin_loss":
        return rows(3), None, {"margin": 1.0, "p": float(rng.choice([1, 2, 3, 0.7])),
                               "swap": bool(rng.random() < 0.5)}
    if name == "margin_ranking_loss":
        return rows(2), signs, {"margin": 0.1}
    if name == "hinge_embedding_loss":
        return rows(1), signs, {"margin": 0.5}
    centers = rng.standard_normal((n_classes, shape[-1])).astype(dtype)
    return rows(1), rng.integers(0, n_classes, loss_shape), {"centers": centers}


def _positional(name, arrays, target, options):
    options = dict(options)
    if name == "center_loss":
        return (arrays[0], target, options.pop("centers")), options
    if name == "triplet_margin_loss":
        return tuple(arrays), options
    return (*arrays, target), options


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_against_reference(data):
    """Random shapes (0-size included), dtypes, layouts, reductions, grad_output and one
    argument made hostile: every call matches the reference or raises one of
    ValueError, TypeError, IndexError; the inputs are never modified."""
    name = data.draw(st.sampled_from(LOSSES), "loss")
    dtype = np.dtype(data.draw(st.sampled_from([np.float16, np.float32, np.float64]), "dtype"))
    elementwise = name in ("margin_ranking_loss", "hinge_embedding_loss")
    shape = tuple(data.draw(st.lists(st.integers(0, 6), min_size=1,
                                     max_size=3 if elementwise else 2), "shape"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    arrays, target, options = _arguments(name, rng, shape, dtype)
    if data.draw(st.booleans(), "non-contiguous"):
        arrays = [np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a for a in arrays]
    for a in arrays:
        a.flags.writeable = data.draw(st.booleans(), "writeable")
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    args, kwargs = _positional(name, arrays, target, options)
    hostile = data.draw(st.sampled_from(["none", "shape", "int", "target", "reduction"]),
                        "hostile")
    args = list(args)
    if hostile == "shape":
        args[0] = args[0][..., :-1] if shape[-1] else np.zeros(shape + (1,), dtype)
    elif hostile == "int":
        args[0] = args[0].astype(np.int32)
    elif hostile == "target" and name != "triplet_margin_loss":
        index = 1 if name == "center_loss" else len(args) - 1
        args[index] = np.zeros(np.shape(args[index]) + (1,))
    elif hostile == "reduction":
        reduction = "avg"
    snapshot = [np.copy(a) for a in args if isinstance(a, np.ndarray)]
    try:
        got = getattr(fl, name + "_with_grad")(*args, **kwargs, reduction=reduction)
    except ALLOWED:
        assert hostile != "none", "a valid call raised"
        return
    compute = np.float32 if dtype == np.float16 else dtype
    want = getattr(reference, name + "_with_grad")(
        *(a.astype(compute) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
          for a in args), **kwargs, reduction=reduction)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == dtype
        scale = max(1.0, float(np.max(np.abs(w), initial=0)))
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                   rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    for a, s in zip([a for a in args if isinstance(a, np.ndarray)], snapshot):
        np.testing.assert_array_equal(a, s)


def _tasks(inputs, reductions, threads):
    """(name, thunk) for every loss, reduction and n_threads on shared inputs."""
    x1, x2, x3, y, s, t, c = (inputs[k] for k in ("x1", "x2", "x3", "y", "s", "t", "c"))
    tasks = []
    for red in reductions:
        for nt in threads:
            kw = dict(reduction=red, n_threads=nt)
            tasks += [
                (f"contrastive {red} {nt}", lambda kw=kw: fl.contrastive_loss_with_grad(
                    x1, x2, y, **kw)),
                (f"cosine {red} {nt}", lambda kw=kw: fl.cosine_embedding_loss_with_grad(
                    x1, x2, s, **kw)),
                (f"triplet {red} {nt}", lambda kw=kw: fl.triplet_margin_loss_with_grad(
                    x1, x2, x3, swap=True, **kw)),
                (f"ranking {red} {nt}", lambda kw=kw: fl.margin_ranking_loss_with_grad(
                    x1, x2, np.sign(x3), **kw)),
                (f"hinge {red} {nt}", lambda kw=kw: fl.hinge_embedding_loss_with_grad(
                    x1, np.sign(x3), **kw)),
                (f"center {red} {nt}", lambda kw=kw: fl.center_loss_with_grad(x1, t, c, **kw)),
            ]
    return tasks


def _inputs(rng, n, d, dtype):
    x1, x2, x3 = (rng.standard_normal((n, d)).astype(dtype) for _ in range(3))
    inputs = dict(x1=x1, x2=x2, x3=x3, y=(rng.random(n) < 0.5).astype(dtype),
                  s=rng.choice([-1.0, 1.0], n).astype(dtype), t=rng.integers(0, 50, n),
                  c=rng.standard_normal((50, d)).astype(dtype))
    for a in inputs.values():
        a.flags.writeable = False
    return inputs


@pytest.mark.parametrize("size", ["small", "big"])
def test_concurrent_calls_match_serial(size):
    """8 Python threads call every loss at once on shared read-only inputs; every result
    has the serial call's bits. big: above the threshold, so several OpenMP teams run."""
    rng = np.random.default_rng(4)
    n, d, reductions, threads, rounds = ((200, 32, ("none", "mean", "sum"), (1, 2), 4)
                                         if size == "small" else
                                         (8200, 128, ("mean",), (2,), 1))
    inputs = _inputs(rng, n, d, np.float32)
    tasks = _tasks(inputs, reductions, threads)
    expected = {name: thunk() for name, thunk in tasks}

    def worker(k):
        order = list(range(len(tasks)))
        random.Random(k).shuffle(order)
        return [tasks[i][0] for _ in range(rounds) for i in order
                if not same(tasks[i][1](), expected[tasks[i][0]])]

    with ThreadPoolExecutor(8) as pool:
        failures = sorted({name for bad in pool.map(worker, range(8)) for name in bad})
    assert not failures, f"results differ from the serial call under concurrency: {failures}"


@pytest.fixture(scope="module")
def big_inputs():
    rng = np.random.default_rng(1)
    inputs = _inputs(rng, 2**15, 128, np.float64)  # 2**22 elements: calls of 10-30 ms
    inputs["sign"] = np.sign(inputs["x3"])
    return inputs


@pytest.mark.parametrize("name", ["triplet", "center", "ranking"])
def test_gil_released_during_kernel(big_inputs, name):
    """As test_threads.py's: a counting thread advances many times during one big call."""
    inputs = big_inputs
    call = {"triplet": lambda: fl.triplet_margin_loss_with_grad(
                inputs["x1"], inputs["x2"], inputs["x3"], n_threads=1),
            "center": lambda: fl.center_loss_with_grad(inputs["x1"], inputs["t"], inputs["c"],
                                                       n_threads=1),
            "ranking": lambda: fl.margin_ranking_loss_with_grad(
                inputs["x1"], inputs["x2"], inputs["sign"], n_threads=1)}[name]
    call()
    with Counter() as counter:
        advance = counted(counter, call)
    assert advance >= 20, f"{name}: the counter advanced only {advance} times during the call"


def _calls():
    """(name, thunk, expected exception or None) over every pairs path."""
    rng = np.random.default_rng(0)
    out = []
    for n, dtype in ((20, np.float32), (600, np.float64)):
        inp = _inputs(rng, n, 16, dtype)
        outs = tuple(np.empty_like(inp["x1"]) for _ in range(3))
        out += [(name, thunk, None) for name, thunk in _tasks(inp, ("none", "mean", "sum"),
                                                               (None,))]
        out += [
            ("triplet out", lambda i=inp, o=outs: fl.triplet_margin_loss_with_grad(
                i["x1"], i["x2"], i["x3"], p=3, out=o), None),
            ("center out", lambda i=inp, o=outs: fl.center_loss_with_grad(
                i["x1"], i["t"], i["c"], out=(o[0], None)), None),
            ("center update", lambda i=inp: fl.center_loss_update(
                np.array(i["c"]), i["x1"], i["t"]), None),
            ("center bad index", lambda i=inp: fl.center_loss_with_grad(
                i["x1"], i["t"] + 50, i["c"]), IndexError),
            ("triplet bad p", lambda i=inp: fl.triplet_margin_loss(
                i["x1"], i["x2"], i["x3"], p=0), ValueError),
            ("contrastive int target", lambda i=inp: fl.contrastive_loss(
                i["x1"], i["x2"], i["t"]), TypeError),
            ("cosine bad out", lambda i=inp: fl.cosine_embedding_loss_with_grad(
                i["x1"], i["x2"], i["s"], out=(i["x1"], None)), ValueError),
        ]
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_leaks_on_any_path():
    """As test_memory.py's, over the pairs paths (fewer rounds: the bounds scale)."""
    calls = _calls()
    rounds, per_round = 4, 60
    _run_all(calls, 30)
    gc.collect()
    rss, heap, blocks = [rss_bytes()], [heap_in_use()], [sys.getallocatedblocks()]
    for _ in range(rounds):
        _run_all(calls, per_round)
        gc.collect()
        rss.append(rss_bytes())
        heap.append(heap_in_use())
        blocks.append(sys.getallocatedblocks())
    detail = f"RSS {rss}, heap {heap}, Python blocks {blocks}"
    # 240 calls of each path: a 16-byte malloc leaked by one path is 240 * 32 B = 7.7 kB
    # of heap, one Python object leaked per call 240 blocks.
    assert rss[-1] - rss[0] < 8 * 2**20, detail
    if MALLINFO2 is not None:
        assert heap[-1] - heap[0] < 4 * 2**10, detail
    assert blocks[-1] - blocks[0] < 200, detail


@pytest.mark.parametrize("name", LOSSES)
def test_unaligned_operands(name):
    """Unaligned but contiguous arrays (as a distributed worker may hand over) give the
    aligned call's loss and gradients, for every operand including the target."""
    rng = np.random.default_rng(7)
    arrays, target, options = _arguments(name, rng, (6, 5), np.float64)
    want = getattr(fl, name + "_with_grad")(*_positional(name, arrays, target, options)[0],
                                            **_positional(name, arrays, target, options)[1])
    shifted = [_unaligned(a) for a in arrays]
    target_shifted = None if target is None else _unaligned(target)
    args, kwargs = _positional(name, shifted, target_shifted, options)
    got = getattr(fl, name + "_with_grad")(*args, **kwargs)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_center_update_unaligned_features():
    rng = np.random.default_rng(8)
    features = rng.standard_normal((6, 5))
    target = rng.integers(0, 3, 6)
    centers = rng.standard_normal((3, 5))
    want = fl.center_loss_update(centers.copy(), features, target)
    got = fl.center_loss_update(centers.copy(), _unaligned(features), target)
    np.testing.assert_array_equal(got, want)
