"""fastloss's losses over Dask arrays, exact, on Dask's own schedulers (``pip install fastloss[dask]``).

Every function of :mod:`fastloss.functional` is here with the same name and
arguments (every loss, its ``_with_grad`` and, for ``functional.GRAD_HESS``, its
``_grad_hess``), plus a keyword ``rechunk=False``. Example::

    import dask.array as da
    import fastloss.dask as fd

    logits = da.from_zarr("logits.zarr")            # (N, C), chunked along N
    target = da.from_zarr("target.zarr")            # (N,), the same chunks along N
    loss = fd.cross_entropy(logits, target)         # a lazy 0-d dask array
    loss, grad = fd.cross_entropy_with_grad(logits, target, label_smoothing=0.1)
    loss.compute(), grad.to_zarr("grad.zarr")       # grad is chunked like logits

Arguments. The per-element operands (``input``, ``target``, ``input1``/``input2``,
``anchor``/``positive``/``negative``, ``features``, a per-element ``weight``,
``pos_weight`` or ``var``, ``sample_weight``, and ``grad_output`` for
``reduction="none"``) are dask arrays chunked along their first (batch) axis with
the first array's chunks, each other axis in one chunk; a NumPy one of them (one
whose first axis is the batch) is wrapped with those chunks. Anything else (class
weights, a ``pos_weight`` of shape ``(C,)``, ``centers``, a float ``var``) is a
NumPy array or number, handed whole to every chunk. Cross-entropy and the other
losses of class rows need each row's classes in one chunk. Chunks that break
these rules, chunks of two operands that differ, and every argument the
single-machine function rejects raise at call time, before anything is computed;
``rechunk=True`` rechunks instead (data-dependent errors, such as a class index
out of range, raise when the chunk is computed, as the single-machine call
raises them). ``out=`` must be None: results are new dask arrays.

Results are lazy: a 0-d dask array of input's dtype for ``"mean"``/``"sum"``
(and the ``_grad_hess`` loss), a dask array chunked like the loss for ``"none"``,
gradients chunked like the array they differentiate (the gradient of an operand
handed whole, ``centers`` or a float ``var``, is the sum of the chunks'). Each
chunk runs the single-machine kernel with ``n_threads=1`` by default (Dask
already runs one chunk per worker thread) and the GIL released.

Exact reductions. Each chunk yields its loss sum in double (the kernels' double
total, not rounded to float32: fastloss._dispatch.double_totals) and its
denominator: the element (or row) count, the summed weights ``w[y]`` of the
kept targets for cross-entropy and nll_loss with class-index targets, or
``sum(weight)`` for weighted mse/l1. A tree of fixed shape (``SPLIT_EVERY``
chunks per node, in chunk order) adds the pairs, and ``"mean"`` is the global
sum over the global denominator, rounded once to input's dtype (not a mean of
chunk means). The corner cases are the single-machine call's: every target
ignored, or an empty array, gives a NaN mean with a zero gradient and a zero
sum; NaN propagates. A ``"mean"`` gradient first computes the global
denominator from the targets and weights alone, as a node of the graph (never
an eager ``compute()``; the logits are read once), then each chunk's fused pass
runs as ``reduction="sum"`` with ``grad_output = g / D``: the scale the
single-machine kernel uses. For class weights that denominator is a chain
through the chunks in order that adds ``w[y]`` one by one in double, exactly as
the kernel does, so every gradient is bit-identical to the single-machine one,
except weighted mse/l1 (``sum(weight)`` added per chunk, then by the tree: the
scale may differ in the last place) and ``multilabel_soft_margin_loss``
(``(g/N)/C`` against ``g/(N C)``), which agree to a few ulps.

Determinism and accuracy. For a fixed chunking the graph and every task in it
are fixed, so results are bit-identical across runs, schedulers (threads,
processes, ``distributed``), numbers of workers and threads, and worker
restarts. Against the single-machine call a reduced loss differs only in the
order of its double additions: for ``n`` terms ``l_i`` both totals are within
``(n - 1) u sum|l_i|`` of the exact sum (``u = 2**-53``, the bound of any
summation order), so they differ by at most ``2 (n - 1) u sum|l_i|`` (over
``|D|`` for a mean), and the final rounding to input's dtype can then differ by
one unit in the last place. With one chunk the totals are the same and so are
the results, bit for bit (but multilabel's mean, as above). Per-element results (``"none"``, the gradients of
chunked operands, ``_grad_hess``'s grad and hess) are bit-identical to the
single-machine call's; the gradient of an operand handed whole is the sum of
the chunks' (each rounded to input's dtype), in double.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import _dispatch, functional

#: Partial results added per node of the reduction tree.
SPLIT_EVERY = 8

# The per-element arguments besides the first (batch) array, chunked along the
# batch axis when they have it (see _is_batch_operand): those that always have a
# row per sample, and those that may instead broadcast whole (a (C,) weight).
_ROW_OPERANDS = ("target", "input2", "positive", "negative", "sample_weight")
_BATCH_OPERANDS = _ROW_OPERANDS + ("weight", "pos_weight", "var")
# Arguments that are per-class (or per-table) whatever their shape.
_WHOLE = {"class rows": ("weight",), "pairs": ("centers",)}
# The arrays a _with_grad differentiates, in the order of its gradients.
_DIFFERENTIATED = {
    "gaussian_nll_loss": ("input", "var"),
    "contrastive_loss": ("input1", "input2"),
    "cosine_embedding_loss": ("input1", "input2"),
    "margin_ranking_loss": ("input1", "input2"),
    "triplet_margin_loss": ("anchor", "positive", "negative"),
    "center_loss": ("features", "centers"),
}
# "mean" denominators that depend on the data: the kept targets' class weights
# (class-index targets), or the summed weights; every other "mean" divides by the
# number of loss terms (kl_div's "batchmean" by the batch size).
_CLASS_WEIGHTED = ("cross_entropy", "nll_loss")
_WEIGHT_SUM = ("mse_loss", "l1_loss")


def _dask():
    try:
        import dask
        import dask.array
    except ImportError as error:
        raise ImportError("fastloss.dask needs Dask: pip install fastloss[dask]") from error
    return dask


def _family(name: str) -> str:
    return next(f for f, names in functional.LOSSES.items() if name in names)


# --------------------------------------------------------------- block tasks
# Module-level functions of plain arguments: the processes scheduler and
# distributed workers pickle them.

def _block_call(name: str, form: str, kwargs: dict, reduction: str | None,
                arrays: dict, grad_output: Any, n_threads: int):
    """The single-machine call on one chunk; reduced losses as double totals."""
    # (distributed may hand a chunk over in an unaligned buffer, pickle protocol 5
    # frames: every family's validation copies those, as for any caller.)
    call = dict(kwargs, **arrays)
    if reduction is not None:
        call["reduction"] = reduction
    if form == "with_grad" and grad_output is not None:
        call["grad_output"] = grad_output
    function = getattr(functional, name if form == "loss" else f"{name}_{form}")
    with _dispatch.double_totals():
        result = function(**call, n_threads=n_threads)
    return result if isinstance(result, tuple) else (result,)


def _denominator(name: str, kwargs: dict, arrays: dict, dtype: np.dtype,
                 start: float = 0.0) -> float:
    """One chunk's data-dependent "mean" denominator (see _CLASS_WEIGHTED,
    _WEIGHT_SUM), added to `start`. The kept targets' class weights are added one
    by one in double, in row order, as the kernels' class_index_denominator adds
    them (np.cumsum is sequential); the weights of mse/l1 are summed as
    fastloss.functional sums them (np.sum)."""
    if name in _CLASS_WEIGHTED:
        target = np.asarray(arrays["target"]).reshape(-1)
        kept = target[target != kwargs.get("ignore_index", -100)]
        weight = kwargs.get("weight")
        if weight is None:
            return start + float(kept.size)
        # An index out of range raises in the loss's own task; clip it here.
        w = np.take(np.asarray(weight, dtype=dtype), kept, mode="clip").astype(np.float64)
        return float(np.cumsum(np.concatenate(([start], w)))[-1])
    weight = np.asarray(arrays["weight"], dtype=dtype)
    return start + float(np.sum(weight, dtype=np.float64))


def _loss_task(name, form, kwargs, reduction, keys, n_threads, dtype, denom, *blocks):
    """A chunk of a reduced call: ([loss sum, denominator], gradients...)."""
    arrays = dict(zip(keys, blocks[:len(keys)]))
    scale = blocks[len(keys)] if len(blocks) > len(keys) else None
    result = _block_call(name, form, kwargs, reduction, arrays, scale, n_threads)
    d = _denominator(name, kwargs, arrays, dtype) if denom else 0.0
    # A sum over no rows is 0 (multilabel_soft_margin_loss's "sum" of an empty
    # batch is NaN in fastloss.functional: it divides a "mean" by C).
    total = float(result[0]) if len(next(iter(arrays.values()))) else 0.0
    return (np.array([total, d]),) + tuple(result[1:])


def _none_task(name, form, kwargs, keys, n_threads, *blocks):
    """A chunk of a reduction="none" call: (losses, gradients...)."""
    arrays = dict(zip(keys, blocks[:len(keys)]))
    grad_output = blocks[len(keys)] if len(blocks) > len(keys) else None
    return _block_call(name, form, kwargs, "none", arrays, grad_output, n_threads)


def _denominator_task(name, kwargs, keys, dtype, before, *blocks):
    """[0, the denominator up to this chunk]: `before`'s (None for the first chunk)
    plus this chunk's, from its targets and weights only."""
    start = 0.0 if before is None else float(before[1])
    return np.array([0.0, _denominator(name, kwargs, dict(zip(keys, blocks)), dtype, start)])


def _add(*parts):
    """Partial results added in the order given, in double (a node of the fixed tree)."""
    total = np.array(parts[0], dtype=np.float64)
    for part in parts[1:]:
        total = total + part
    return total


def _mean_scale(denominator, grad_output):
    """A chunk's gradient factor for a "mean": g / D, 0 when D is 0 (the kernels')."""
    d = float(denominator[1])
    return float(grad_output) / d if d != 0 else 0.0


def _finish(pair, denominator, mean, dtype):
    """The reduced loss of the summed [loss, denominator] (the denominator from
    `denominator` when given), rounded once to `dtype` as the kernels round."""
    total = float(pair[0])
    if mean:
        d = float((pair if denominator is None else denominator)[1])
        total = total / d if d != 0 else math.nan
    with np.errstate(over="ignore"):
        # float16 results: the kernels' float32, cast (as fastloss.functional does).
        return np.asarray(total, np.float64 if dtype == np.float64 else np.float32).astype(dtype)


def _cast_sum(summed, dtype):
    with np.errstate(over="ignore"):
        return np.asarray(summed).astype(dtype)


def _tree(delayed, parts):
    """The fixed-order tree sum of delayed partial results: SPLIT_EVERY
    consecutive parts per node, level by level, so its shape depends only on
    the number of chunks."""
    if len(parts) == 1:
        return delayed(_add, pure=True)(parts[0])
    while len(parts) > 1:
        parts = [delayed(_add, pure=True)(*parts[i:i + SPLIT_EVERY])
                 for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


# ----------------------------------------------------------- argument layout

def _is_dask(value: Any) -> bool:
    return type(value).__module__.startswith("dask.") and hasattr(value, "chunks")


def _is_batch_operand(name: str, value: Any, family: str, n: int, ndim: int) -> bool:
    """Whether a per-element argument is chunked along the batch axis: a dask
    array, or an array whose first axis is the batch's (and, for a weight-like
    operand, with input's number of axes: a (C,) weight broadcasts whole)."""
    if value is None or name in _WHOLE.get(family, ()):
        return False
    if _is_dask(value):
        return True
    shape = np.shape(value)
    if not shape or shape[0] != n:
        return False
    return name in _ROW_OPERANDS or len(shape) == ndim


def _layout(family: str, name: str, bound: dict, rechunk: bool):
    """(first array's name, {name: dask array chunked like it along the batch axis})."""
    da = _dask().array
    first = next(iter(bound))
    x = bound[first]
    if not _is_dask(x):
        x = np.asarray(x)
        x = da.from_array(x, chunks=(-1,) * x.ndim)
    if x.ndim == 0 or (family == "class rows" and x.ndim < 2):
        kind = "(N, C) or (N, C, d1, ..., dk)" if family == "class rows" else "at least 1-d"
        raise ValueError(f"{first}: fastloss.dask needs a batch axis to chunk: expected {kind}, "
                         f"got shape {x.shape}")
    if any(math.isnan(c) for c in x.chunks[0]):
        raise ValueError(f"{first}: chunk sizes are unknown (NaN); call compute_chunk_sizes()")
    whole = {axis: -1 for axis in range(1, x.ndim) if len(x.chunks[axis]) > 1}
    if whole:
        if not rechunk:
            what = ("each row's classes (axis 1) and positions" if family == "class rows"
                    else "every axis but the first")
            raise ValueError(f"{first}: {name} needs {what} in one chunk; got chunks "
                             f"{x.chunks[1:]} along axes 1..{x.ndim - 1}. Rechunk with "
                             f"{first}.rechunk({whole}) or pass rechunk=True")
        x = x.rechunk(whole)
    rows = x.chunks[0]
    arrays = {first: x}
    for key in _BATCH_OPERANDS:
        value = bound.get(key)
        if key in bound and key != first and _is_batch_operand(key, value, family, x.shape[0],
                                                               x.ndim):
            arrays[key] = _aligned(key, value, rows, first, rechunk)
    return first, arrays


def _aligned(key: str, value: Any, rows: tuple, first: str, rechunk: bool):
    """`value` as a dask array with the batch chunks `rows`, other axes whole."""
    da = _dask().array
    if not _is_dask(value):
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != sum(rows):
            raise ValueError(f"{key}: expected {sum(rows)} rows along the first axis, as "
                             f"{first} has, got shape {array.shape}")
        return da.from_array(array, chunks=(rows,) + tuple(-1 for _ in array.shape[1:]))
    wanted = (rows,) + tuple((n,) for n in value.shape[1:])
    if value.ndim == 0 or value.shape[0] != sum(rows):
        raise ValueError(f"{key}: expected {sum(rows)} rows along the first axis, as {first} "
                         f"has, got shape {value.shape}")
    if value.chunks != wanted:
        if not rechunk:
            raise ValueError(f"{key}: chunks {value.chunks} differ from {first}'s along the "
                             f"batch axis {rows} (other axes must be whole); rechunk it like "
                             f"{first} or pass rechunk=True")
        value = value.rechunk(wanted)
    return value


def _probe(function: Callable, bound: dict, arrays: dict):
    """The single-machine call on empty chunks: it checks every argument (at call
    time, before anything is computed) and gives the results' dtypes and shapes."""
    return function(**dict(bound, **{k: np.empty((0,) + a.shape[1:], a.dtype)
                                     for k, a in arrays.items()}))


# ----------------------------------------------------------------- the graph

def _build(name: str, form: str, bound: dict, n_threads: Any, rechunk: bool):
    dask = _dask()
    da, delayed = dask.array, dask.delayed
    family = _family(name)
    if bound.pop("out", None) is not None:
        raise TypeError("out: fastloss.dask returns new dask arrays; pass out=None")
    grad_output = bound.pop("grad_output", None)
    first, arrays = _layout(family, name, bound, rechunk)
    x = arrays[first]
    result_dtype = x.dtype
    if x.dtype == np.float16:
        # fastloss.functional computes float16 in float32: run the chunks in
        # float32, so that their totals stay double, and cast the results back.
        arrays[first] = x = x.astype(np.float32)
    kwargs = {k: v for k, v in bound.items() if k not in arrays}
    for key, value in kwargs.items():
        if _is_dask(value):
            raise TypeError(f"{key}: expected a NumPy array or number (it is handed whole to "
                            f"every chunk), got a dask array")
    threads = 1 if n_threads is None else n_threads
    reduction = "sum" if form == "grad_hess" else bound.get("reduction", "mean")
    rows = x.chunks[0]
    go = None
    if grad_output is not None and (_is_dask(grad_output) or np.ndim(grad_output)):
        if reduction != "none":
            raise ValueError(f"grad_output: a reduced loss takes a scalar grad_output, got "
                             f"shape {np.shape(grad_output)}")
        go = _aligned("grad_output", grad_output, rows, first, rechunk)

    # Every argument checked by the single-machine call itself, on empty chunks.
    function = getattr(functional, name if form == "loss" else f"{name}_{form}")
    probe_arrays = dict(arrays, **({} if go is None else {"grad_output": go}))
    probe = _probe(function, dict(bound, n_threads=threads, **(
        {} if grad_output is None or go is not None else {"grad_output": grad_output})),
        probe_arrays)
    probe = probe if isinstance(probe, tuple) else (probe,)
    keys = tuple(arrays)
    columns = [a.to_delayed().reshape(-1) for a in arrays.values()]
    blocks = [[c[i] for c in columns] for i in range(len(rows))]
    grads_of = _DIFFERENTIATED.get(name, (first,)) if form == "with_grad" else (first, first)

    if reduction == "none":
        extra = ([[b] for b in go.to_delayed().reshape(-1)] if go is not None
                 else [[grad_output]] * len(rows) if grad_output is not None
                 else [[]] * len(rows))
        tasks = [delayed(_none_task, pure=True)(
            name, form, kwargs, keys, threads, *blocks[i], *extra[i]) for i in range(len(rows))]
        loss = _chunked(da, tasks, 0, rows, probe[0], result_dtype)
        if form == "loss":
            return loss
        return (loss,) + _gradients(da, delayed, tasks, rows, grads_of, arrays, probe[1:],
                                    result_dtype)

    mean = reduction in ("mean", "batchmean")
    by_data = mean and (
        (name in _CLASS_WEIGHTED and np.dtype(arrays["target"].dtype).kind in "iu")
        or (name in _WEIGHT_SUM and "weight" in arrays))
    denominator = None   # a delayed [0, D] when D depends on the data
    if mean and not by_data:
        # The number of loss terms (kl_div's "batchmean": the batch size).
        if reduction == "batchmean":
            d = float(x.shape[0])
        else:
            terms = _probe(getattr(functional, name), dict(bound, n_threads=threads,
                                                           reduction="none"), arrays)
            d = float(x.shape[0] * math.prod(terms.shape[1:]))
        denominator = np.array([0.0, d])
    elif by_data and form == "with_grad":
        # The global denominator first, from the targets and weights alone: a
        # chain through the chunks in order for class weights, so that it is the
        # kernels' sequential sum exactly (the target chunks are small), a tree
        # of the chunks' sums for mse/l1's weights.
        deps = [k for k in keys if k != first]
        chained = name in _CLASS_WEIGHTED
        parts, before = [], None
        for i in range(len(rows)):
            before = delayed(_denominator_task, pure=True)(
                name, kwargs, deps, x.dtype, before if chained else None,
                *[b for k, b in zip(keys, blocks[i]) if k != first])
            parts.append(before)
        denominator = before if chained else _tree(delayed, parts)
    extra = [[]] * len(rows)
    if form == "with_grad":
        g = 1.0 if grad_output is None else grad_output
        scale = delayed(_mean_scale, pure=True)(denominator, g) if mean else g
        extra = [[scale]] * len(rows)
    tasks = [delayed(_loss_task, pure=True)(
        name, form, kwargs, None if form == "grad_hess" else "sum", keys, threads, x.dtype,
        bool(by_data and form == "loss"), *blocks[i], *extra[i]) for i in range(len(rows))]
    total = delayed(_finish, pure=True)(_tree(delayed, [t[0] for t in tasks]),
                                        denominator if mean else None, mean, result_dtype)
    loss = da.from_delayed(total, shape=(), dtype=result_dtype)
    if form == "loss":
        return loss
    return (loss,) + _gradients(da, delayed, tasks, rows, grads_of, arrays, probe[1:],
                                result_dtype)


def _chunked(da, tasks, j, rows, meta, result_dtype):
    """Output `j` of the chunks' tasks (each returns a tuple) as one dask array of
    `meta`'s per-row shape, chunked along the batch axis like `rows`."""
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    name = f"fastloss-{j}-{tokenize([t.key for t in tasks], j)}"
    tail = meta.shape[1:]
    layer = {(name, i) + (0,) * len(tail): (operator.getitem, t.key, j)
             for i, t in enumerate(tasks)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=tasks)
    out = da.Array(graph, name, (rows,) + tuple((n,) for n in tail), meta=meta)
    return out if out.dtype == result_dtype else out.astype(result_dtype)


def _gradients(da, delayed, tasks, rows, grads_of, arrays, metas, result_dtype):
    """The chunks' gradients: chunked like the array they differentiate, or (an
    operand handed whole) the fixed-order tree sum of the chunks', in double;
    None where the single-machine call gives None."""
    out = []
    for j, (of, meta) in enumerate(zip(grads_of, metas), start=1):
        if meta is None:  # not differentiated (gaussian_nll_loss's float var)
            out.append(None)
        elif of in arrays:
            out.append(_chunked(da, tasks, j, rows, meta, result_dtype))
        else:
            parts = [t[j] for t in tasks]
            summed = delayed(_cast_sum, pure=True)(_tree(delayed, parts), result_dtype)
            out.append(da.from_delayed(summed, shape=meta.shape, dtype=result_dtype))
    return tuple(out)


# ------------------------------------------------------ the public functions

def _make(name: str, form: str) -> Callable:
    target_name = name if form == "loss" else f"{name}_{form}"
    single = getattr(functional, target_name)
    signature = inspect.signature(single)
    parameters = list(signature.parameters.values())
    parameters.append(inspect.Parameter("rechunk", inspect.Parameter.KEYWORD_ONLY, default=False))

    @functools.wraps(single)
    def dask_function(*args, **kw):
        rechunk = bool(kw.pop("rechunk", False))
        n_threads = kw.pop("n_threads", None)
        bound = signature.bind(*args, **kw)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop("n_threads", None)
        return _build(name, form, arguments, n_threads, rechunk)

    setattr(dask_function, "__signature__", signature.replace(parameters=parameters))
    dask_function.__module__ = __name__
    dask_function.__doc__ = (
        f"{target_name} over dask arrays (see fastloss.functional.{target_name} for the "
        f"formula and arguments; this module's docstring for chunks, exactness and "
        f"``rechunk``).\n\n" + (single.__doc__ or ""))
    return dask_function


def _names() -> list[tuple[str, str]]:
    pairs = []
    for names in functional.LOSSES.values():
        for name in names:
            pairs += [(name, "loss"), (name, "with_grad")]
            if name in functional.GRAD_HESS:
                pairs.append((name, "grad_hess"))
    return pairs


if TYPE_CHECKING:
    # The functions are made from fastloss.functional's at import (see _make),
    # with its signatures (inspect.signature shows them) plus ``rechunk``.
    def __getattr__(name: str) -> Callable[..., Any]: ...


__all__: list[str] = []
for _name, _form in _names():
    _public = _name if _form == "loss" else f"{_name}_{_form}"
    globals()[_public] = _make(_name, _form)
    __all__.append(_public)
__all__.sort()
del _name, _form, _public
