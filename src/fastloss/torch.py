"""fastloss as a loss backend for PyTorch on CPU: functions, modules, ``patch()``, ``torch.compile``.

``fastloss.torch.<loss>`` has the signature of ``torch.nn.functional.<loss>`` (legacy
``size_average``/``reduce`` included) plus a keyword-only ``n_threads``; it takes and
returns tensors and is differentiable through autograd. ``fastloss.torch.patch()``
routes ``torch.nn.functional``'s losses, and through them ``torch.nn``'s loss modules,
here; ``unpatch()`` undoes it and ``with patched(): ...`` scopes it.

How a call runs:

- Served by fastloss when every tensor is a strided CPU tensor without a
  ``__torch_function__`` override, ``input`` is float32/float64 (float16/bfloat16 are
  computed in float32 and the results cast back, as torch does on CPU), the other
  float tensors have input's dtype, class indices are int64, no tensor fastloss does
  not differentiate (target, weights) requires grad, and every option is one fastloss
  supports. Anything else, and anything fastloss rejects as bad input, goes to the
  original torch function with the same arguments: torch's exact result, or torch's
  own error. ``fallback_counts()`` counts those calls by reason, and the logger
  ``"fastloss.torch"`` reports each at DEBUG.
- The kernels are the custom operators ``torch.ops.fastloss.<loss>`` (forward only,
  used when no argument requires grad: no gradient is allocated) and
  ``torch.ops.fastloss.<loss>_with_grad`` (the loss and its gradients from one fused
  pass), with fake implementations and an autograd formula, so ``torch.compile``
  (``fullgraph=True``) traces them.
- Backward: the fused gradient times the upstream gradient (per element, or per row
  for cross-entropy, with ``reduction="none"``). An upstream gradient of exactly 1
  (``loss.backward()`` on a mean or sum) returns the saved gradient itself, with no
  pass over it; any other is multiplied in place into that buffer, which only
  fastloss holds, unless the graph is retained (``retain_graph=True``), where the
  saved gradient must survive for the next backward and the product is a new
  tensor. Under ``torch.compile`` the "exactly 1" test would depend on data, so the
  compiled backward always multiplies.
- Double backward (``create_graph=True``) raises a RuntimeError naming fastloss and
  ``unpatch()``: the fused gradient is not itself differentiable, and a silent zero
  second derivative would be wrong.
- Tensors reach the kernels without copies: a contiguous float32/float64 CPU tensor is
  passed as a NumPy view of its memory, a non-contiguous one is copied once, and the
  results are wrapped with ``torch.from_numpy``.
- Threads: with ``n_threads=None`` (the default) the kernels use
  ``torch.get_num_threads()`` at call time, so ``torch.set_num_threads`` governs
  fastloss under this adapter as it governs torch; an explicit ``n_threads=`` wins.

Per loss, as the table says:

- Every loss of ``fastloss.functional`` is here. The eighteen with a
  ``torch.nn.functional`` twin have its signature and are what ``patch()`` routes;
  ``hinge_loss``, ``msle_loss``, ``log_cosh_loss``, ``contrastive_loss``,
  ``center_loss`` (torch-style signatures) and ``sigmoid_focal_loss`` (torchvision's,
  ``inputs``/``targets``) have none, and a call they cannot serve raises TypeError
  instead of falling back.
- The losses with several differentiable tensors (the pairs family: input1/input2,
  anchor/positive/negative, features/centers) give each its gradient from the one
  fused pass. ``margin_ranking_loss`` and ``hinge_embedding_loss`` broadcast their
  operands as torch does; with ``reduction="none"`` they are expanded to the common
  shape (views) so that the per-element upstream gradient applies before autograd
  sums each gradient back. ``center_loss`` with ``reduction="none"`` and centres that
  require grad gathers each row's centre (``centers[target]``), since its centre
  gradient sums over rows. ``cosine_embedding_loss`` and ``triplet_margin_loss``
  serve partners of input's shape only (torch broadcasts them: that falls back);
  ``triplet_margin_loss`` with ``p <= 0`` falls back (fastloss refuses it).
- ``gaussian_nll_loss`` differentiates ``input`` and a ``var`` tensor; a Python float
  ``var`` is passed to fastloss as the float. With ``reduction="none"`` a homoscedastic
  ``var`` is expanded to input's shape (a view), so its gradient takes the per-element
  upstream gradient and autograd sums it back to var's shape.
- ``kl_div(reduction="mean")`` warns with torch's own warning and runs as
  ``"batchmean"`` on ``(numel, 1)`` views (the same mean, without fastloss's warning).
- Falls back, beyond the rules above: ``multi_margin_loss`` in float16/bfloat16 (torch
  raises) or of an empty batch (torch returns uninitialised memory); a target or a
  ``weight=`` of mse/l1/huber that requires grad (torch differentiates them).
- fastloss's documented differences from torch at NaN/inf-producing inputs (exact
  limits at +-inf logits, ``0 * log 0 = 0``, a finite ``soft_margin_loss`` at huge
  ``|x|``) apply to served calls: detecting them would cost a pass over the input.

Adding a loss is one ``_Loss`` entry in ``_LOSSES`` (see its fields).
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

try:
    import torch
except ImportError as exc:  # torch is optional: say how to get it
    raise ImportError("fastloss.torch needs PyTorch: pip install fastloss[torch]") from exc
import torch.nn.functional as F
from torch.nn import _reduction

from . import functional as _functional

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CenterLoss",
    "ContrastiveLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "GaussianNLLLoss",
    "HingeEmbeddingLoss",
    "HingeLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "LogCoshLoss",
    "MSELoss",
    "MSLELoss",
    "MarginRankingLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "NLLLoss",
    "PoissonNLLLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "TripletMarginLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "center_loss",
    "contrastive_loss",
    "cosine_embedding_loss",
    "cross_entropy",
    "fallback_counts",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "hinge_loss",
    "huber_loss",
    "is_patched",
    "kl_div",
    "l1_loss",
    "log_cosh_loss",
    "margin_ranking_loss",
    "mse_loss",
    "msle_loss",
    "multi_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "patch",
    "patched",
    "poisson_nll_loss",
    "reset_fallback_counts",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "unpatch",
]

_log = logging.getLogger("fastloss.torch")

_FLOAT = (torch.float32, torch.float64)
# Computed in float32 and cast back, as torch's CPU kernels do.
_HALF = (torch.float16, torch.bfloat16)
# Schema types of the scalar options.
_SCHEMA_TYPES = {int: "int", float: "float", str: "str", bool: "bool"}
# torch's loss functions as they were when this module was imported: what every
# fallback calls and what unpatch() restores.
_ORIGINALS: dict[str, Callable] = {}


# ------------------------------------------------------------------ the table

@dataclass
class _Loss:
    """One loss of fastloss.functional as a torch function, custom op and module.

    - ``name``: its name in ``fastloss.functional`` (with a ``<name>_with_grad`` twin
      returning ``(loss, grad1, grad2, ...)``, one gradient per ``differentiable``
      tensor, in that order) and in ``torch.nn.functional`` when ``twin``.
    - ``tensors``: the tensor arguments, in the signature's order (those defaulting to
      None are optional); ``differentiable``: those fastloss differentiates;
      ``index_tensors``: those that may hold int64 class indices.
    - ``options``: the scalar arguments fastloss takes, with their types.
    - ``unsupported``: torch arguments fastloss lacks: a call that sets one
      (to anything but None) falls back to torch.
    - ``same_shape``: tensors that must have input's shape to be served (torch
      broadcasts them with a warning; fastloss refuses).
    - ``none_axis``: for ``reduction="none"``, the axis of input that one loss value
      spans (cross-entropy: the class axis), None when losses are per element.
    - ``broadcast``: the tensors broadcast together (torch's rules) and the
      ``reduction="none"`` loss has their common shape (its ``prepare`` expands them,
      see _broadcast_none).
    - ``signature``: for a loss without a torch twin, its torch-style signature.
    - ``module``: ``(torch.nn class name, its attributes passed as keywords)``; a class
      name torch.nn lacks gets a ``torch.nn.modules.loss._Loss`` subclass whose
      constructor takes those attributes with the function's defaults.
    - ``reductions``: the reductions served (others fall back, or raise without a twin).
    - ``half``: whether float16/bfloat16 inputs are served (computed in float32); False
      where torch's CPU kernel refuses them, so the call gets torch's own error.
    - ``numbers``: tensor arguments torch also takes as a Python float (gaussian's
      ``var``): fastloss then gets the float, and its gradient is not computed.
    - ``kernel_names``: the names in ``fastloss.functional`` of tensor arguments whose
      torch names differ (torchvision's ``inputs``/``targets``).
    - ``prepare``: ``prepare(args, reduction)`` before a served call: returns a reason to
      fall back (None to serve), and may replace tensors and the reduction in ``args``.
    """

    name: str
    tensors: tuple[str, ...]
    differentiable: tuple[str, ...]
    options: dict[str, type]
    twin: bool = True
    index_tensors: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()
    same_shape: tuple[str, ...] = ()
    none_axis: int | None = None
    broadcast: bool = False
    signature: str | None = None
    module: tuple[str, tuple[str, ...]] | None = None
    reductions: tuple[str, ...] = ("none", "mean", "sum")
    half: bool = True
    numbers: tuple[str, ...] = ()
    kernel_names: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[dict[str, Any], str], str | None] | None = None
    # Filled in at import: the custom ops (by with_grad), their eager twins, the function.
    positions: tuple[int, ...] = field(default=(), repr=False)  # of differentiable in tensors
    ops: dict[bool, Any] = field(default_factory=dict, repr=False)
    eager: Callable = field(default=None, repr=False)  # type: ignore[assignment]
    eager_with_grad: Callable = field(default=None, repr=False)  # type: ignore[assignment]
    function: Callable = field(default=None, repr=False)  # type: ignore[assignment]
    module_class: type | None = field(default=None, repr=False)


def _kl_div_mean(args: dict[str, Any], reduction: str) -> None:
    """kl_div's reduction="mean" warns with torch's own warning, attributed to the
    caller as torch's is, and is served as "batchmean" of (numel, 1) views of input and
    target: the same sum over the element count, without fastloss.functional's own
    (differently worded) warning."""
    if reduction != "mean":
        return None
    if args["size_average"] is None and args["reduce"] is None:
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.", stacklevel=4)
    args["input"] = args["input"].reshape(-1, 1)
    args["target"] = args["target"].reshape(-1, 1)
    args["reduction"] = "batchmean"
    return None


def _multi_margin_empty(args: dict[str, Any], reduction: str) -> str | None:
    """torch returns uninitialised memory for an empty batch (fastloss: NaN mean, zero
    sum); the patched call must give torch's result, whatever it is."""
    x = args["input"]
    return "empty batch" if x.dim() == 2 and x.shape[0] == 0 else None


def _gaussian_var(args: dict[str, Any], reduction: str) -> str | None:
    """For ``reduction="none"``, a var of fewer elements than input (torch's homoscedastic
    shapes) is expanded to input's shape as a view: fastloss's per-element gradient of
    var then takes the per-element upstream gradient, and autograd's backward of the
    expand sums it to var's shape."""
    x, var = args["input"], args["var"]
    if reduction != "none" or not isinstance(var, torch.Tensor) or var.shape == x.shape:
        return None
    if var.shape == x.shape[:-1]:
        args["var"] = var.unsqueeze(-1).expand(x.shape)
    elif var.dim() == x.dim() and [d for d in range(x.dim()) if var.shape[d] != x.shape[d]] \
            and all(var.shape[d] == 1 for d in range(x.dim()) if var.shape[d] != x.shape[d]) \
            and sum(var.shape[d] for d in range(x.dim()) if var.shape[d] != x.shape[d]) == 1:
        args["var"] = var.expand(x.shape)
    return None  # any other shape: fastloss rejects it and torch raises its own error


def _broadcast_none(*names: str, same_ndim: bool = False) -> Callable:
    """The prepare of an element loss whose operands broadcast (torch's rules): for
    ``reduction="none"`` they are expanded to their common shape (views), so that each
    gradient is per element and takes the per-element upstream gradient, and autograd's
    backward of the expand sums it back to the operand's shape. (For a reduced loss
    fastloss sums each gradient back itself.) Operands of different numbers of
    dimensions where torch wants one (`same_ndim`), or that do not broadcast, are left
    for fastloss to reject: torch then raises its own error."""
    def prepare(args: dict[str, Any], reduction: str) -> None:
        if reduction != "none":
            return None
        shapes = [args[name].shape for name in names]
        if all(shape == shapes[0] for shape in shapes) or (
                same_ndim and len({len(shape) for shape in shapes}) > 1):
            return None
        try:
            shape = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            return None
        for name in names:
            args[name] = args[name].expand(shape)
        return None
    return prepare


def _center_rows(args: dict[str, Any], reduction: str) -> None:
    """center_loss with ``reduction="none"`` and centres that require grad: the centre
    gradient sums over rows, so the per-row upstream gradient cannot scale it
    afterwards. Each row's centre is gathered instead (``centers[target]``,
    differentiable) and row i is matched with centre row i: the centre gradient is then
    per row, takes each row's upstream gradient, and autograd's backward of the gather
    adds the rows into the table. A class index out of range is left for fastloss's
    IndexError (checked in eager mode only)."""
    features, target, centers = args["features"], args["target"], args["centers"]
    if (reduction != "none" or not (torch.is_grad_enabled() and centers.requires_grad)
            or features.dim() != 2 or centers.dim() != 2 or target.shape != features.shape[:1]):
        return None
    if not torch.compiler.is_compiling() and target.numel() and bool(
            (target < 0).any() or (target >= centers.shape[0]).any()):
        return None
    args["centers"] = centers.index_select(0, target)
    args["target"] = torch.arange(target.shape[0])
    return None


_ELEMENTWISE = ("input", "target")
_PAIR = ("input1", "input2", "target")
_LOSSES = [
    _Loss("cross_entropy", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"ignore_index": int, "reduction": str, "label_smoothing": float},
          index_tensors=("target",), none_axis=1,
          module=("CrossEntropyLoss", ("weight", "ignore_index", "reduction",
                                       "label_smoothing"))),
    _Loss("nll_loss", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"ignore_index": int, "reduction": str}, index_tensors=("target",),
          none_axis=1, module=("NLLLoss", ("weight", "ignore_index", "reduction"))),
    _Loss("multi_margin_loss", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"p": int, "margin": float, "reduction": str}, index_tensors=("target",),
          none_axis=1, half=False, prepare=_multi_margin_empty,
          module=("MultiMarginLoss", ("p", "margin", "weight", "reduction"))),
    _Loss("multilabel_soft_margin_loss", tensors=("input", "target", "weight"),
          differentiable=("input",), options={"reduction": str}, same_shape=("target",),
          none_axis=-1, module=("MultiLabelSoftMarginLoss", ("weight", "reduction"))),
    _Loss("binary_cross_entropy_with_logits", tensors=("input", "target", "weight", "pos_weight"),
          differentiable=("input",), options={"reduction": str},
          module=("BCEWithLogitsLoss", ("weight", "reduction", "pos_weight"))),
    _Loss("binary_cross_entropy", tensors=("input", "target", "weight"),
          differentiable=("input",), options={"reduction": str}, same_shape=("target",),
          module=("BCELoss", ("weight", "reduction"))),
    _Loss("soft_margin_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"reduction": str}, same_shape=("target",),
          module=("SoftMarginLoss", ("reduction",))),
    _Loss("hinge_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"margin": float, "squared": bool, "reduction": str}, same_shape=("target",),
          twin=False, signature="(input, target, margin=1.0, squared=False, reduction='mean')",
          module=("HingeLoss", ("margin", "squared", "reduction"))),
    _Loss("sigmoid_focal_loss", tensors=("inputs", "targets"), differentiable=("inputs",),
          options={"alpha": float, "gamma": float, "reduction": str}, same_shape=("targets",),
          twin=False, signature="(inputs, targets, alpha=0.25, gamma=2, reduction='none')",
          kernel_names={"inputs": "input", "targets": "target"}),
    _Loss("kl_div", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"reduction": str, "log_target": bool}, same_shape=("target",),
          reductions=("none", "mean", "sum", "batchmean"), prepare=_kl_div_mean,
          module=("KLDivLoss", ("reduction", "log_target"))),
    _Loss("mse_loss", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"reduction": str}, same_shape=("target", "weight"),
          module=("MSELoss", ("reduction",))),
    _Loss("l1_loss", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"reduction": str}, same_shape=("target", "weight"),
          module=("L1Loss", ("reduction",))),
    _Loss("huber_loss", tensors=("input", "target", "weight"), differentiable=("input",),
          options={"reduction": str, "delta": float}, same_shape=("target", "weight"),
          module=("HuberLoss", ("reduction", "delta"))),
    _Loss("smooth_l1_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"reduction": str, "beta": float}, same_shape=("target",),
          module=("SmoothL1Loss", ("reduction", "beta"))),
    _Loss("msle_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"reduction": str}, same_shape=("target",), twin=False,
          signature="(input, target, reduction='mean')", module=("MSLELoss", ("reduction",))),
    _Loss("log_cosh_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"reduction": str}, same_shape=("target",), twin=False,
          signature="(input, target, reduction='mean')",
          module=("LogCoshLoss", ("reduction",))),
    _Loss("poisson_nll_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"log_input": bool, "full": bool, "eps": float, "reduction": str},
          same_shape=("target",),
          module=("PoissonNLLLoss", ("log_input", "full", "eps", "reduction"))),
    _Loss("gaussian_nll_loss", tensors=("input", "target", "var"),
          differentiable=("input", "var"),
          options={"full": bool, "eps": float, "reduction": str}, same_shape=("target",),
          numbers=("var",), prepare=_gaussian_var,
          module=("GaussianNLLLoss", ("full", "eps", "reduction"))),
    _Loss("contrastive_loss", tensors=_PAIR, differentiable=("input1", "input2"),
          options={"margin": float, "reduction": str}, same_shape=("input2",), none_axis=-1,
          twin=False, signature="(input1, input2, target, margin=1.0, reduction='mean')",
          module=("ContrastiveLoss", ("margin", "reduction"))),
    _Loss("cosine_embedding_loss", tensors=_PAIR, differentiable=("input1", "input2"),
          options={"margin": float, "reduction": str}, index_tensors=("target",),
          same_shape=("input2",), none_axis=-1,
          module=("CosineEmbeddingLoss", ("margin", "reduction"))),
    _Loss("triplet_margin_loss", tensors=("anchor", "positive", "negative"),
          differentiable=("anchor", "positive", "negative"),
          options={"margin": float, "p": float, "eps": float, "swap": bool, "reduction": str},
          same_shape=("positive", "negative"), none_axis=-1,
          module=("TripletMarginLoss", ("margin", "p", "eps", "swap", "reduction"))),
    _Loss("margin_ranking_loss", tensors=_PAIR, differentiable=("input1", "input2"),
          options={"margin": float, "reduction": str},
          broadcast=True, prepare=_broadcast_none(*_PAIR, same_ndim=True),
          module=("MarginRankingLoss", ("margin", "reduction"))),
    _Loss("hinge_embedding_loss", tensors=_ELEMENTWISE, differentiable=("input",),
          options={"margin": float, "reduction": str}, index_tensors=("target",),
          broadcast=True, prepare=_broadcast_none(*_ELEMENTWISE),
          module=("HingeEmbeddingLoss", ("margin", "reduction"))),
    _Loss("center_loss", tensors=("features", "target", "centers"),
          differentiable=("features", "centers"), options={"reduction": str},
          index_tensors=("target",), none_axis=-1, twin=False,
          signature="(features, target, centers, reduction='mean')", prepare=_center_rows,
          module=("CenterLoss", ("reduction",))),
]


# --------------------------------------------------------- tensors <-> NumPy

def _array(tensor: torch.Tensor | None, compute: torch.dtype | None) -> np.ndarray | None:
    """A NumPy view of a CPU tensor (fastloss copies a non-contiguous one once);
    float tensors are first converted to `compute` when it is given (half types)."""
    if tensor is None:
        return None
    if compute is not None and tensor.is_floating_point():
        tensor = tensor.to(compute, memory_format=torch.contiguous_format)
    return tensor.numpy()


def _tensor(value: Any, dtype: torch.dtype) -> torch.Tensor:
    """fastloss's result (an array or a NumPy scalar) as a tensor sharing its memory,
    cast to `dtype` where the computation ran in float32 for a half type."""
    result = torch.from_numpy(np.asarray(value))
    return result if result.dtype == dtype else result.to(dtype)


def _drop_axis(shape: torch.Size, axis: int | None) -> tuple[int, ...]:
    """The shape of the ``reduction="none"`` loss of an input of `shape`."""
    if axis is None:
        return tuple(shape)
    if len(shape) <= axis:  # an unbatched input, e.g. (C,) logits: one loss value
        return tuple(shape[:-1])
    axis %= len(shape)  # e.g. -1: rows of features, one loss per row
    return tuple(shape[:axis]) + tuple(shape[axis + 1:])


# ------------------------------------------------------------- custom ops

def _kernel(loss: _Loss, with_grad: bool) -> Callable:
    """The CPU implementation of ``fastloss::<name>`` (``_with_grad``): op arguments are
    the tensors, then the options, then one flag per ``numbers`` argument (True: that
    tensor is a 0-d float64 stand-in for a Python float), then n_threads
    (0: torch.get_num_threads())."""
    func_name = loss.name + ("_with_grad" if with_grad else "")
    count = len(loss.tensors)
    n_options = len(loss.options)
    positions = loss.positions
    names = [loss.kernel_names.get(name, name) for name in loss.tensors]
    numbers = [loss.tensors.index(name) for name in loss.numbers]

    def run(*args):
        tensors, n_threads = args[:count], args[-1]
        options, flags = args[count:count + n_options], args[count + n_options:-1]
        dtype = tensors[0].dtype
        compute = torch.float32 if dtype in _HALF else None
        arrays = {name: _array(t, compute) for name, t in zip(names, tensors)}
        for i, is_number in zip(numbers, flags):
            if is_number:
                arrays[names[i]] = tensors[i].item()
        kwargs = dict(zip(loss.options, options))
        func = getattr(_functional, func_name)  # looked up per call, so tests can spy on it
        result = func(**arrays, **kwargs, n_threads=n_threads or torch.get_num_threads())
        if not with_grad:
            return _tensor(result, dtype)
        value, *grads = result
        # (a float stand-in has no gradient: a 0-d zero, as the fake implementation says)
        return (_tensor(value, dtype),
                *(_tensor(g, tensors[i].dtype) if g is not None else tensors[i].new_zeros(())
                  for g, i in zip(grads, positions)))

    return run


def _fake(loss: _Loss, with_grad: bool) -> Callable:
    """Shapes and dtypes of the op's results, for tracing (torch.compile, meta tensors)."""
    count = len(loss.tensors)
    reduction_at = count + list(loss.options).index("reduction")
    positions = loss.positions

    def fake(*args):
        x = args[0]
        if args[reduction_at] != "none":
            shape: tuple[int, ...] = ()
        elif loss.broadcast:
            shape = tuple(torch.broadcast_shapes(*(t.shape for t in args[:count])))
        else:
            shape = _drop_axis(x.shape, loss.none_axis)
        value = x.new_empty(shape)
        if not with_grad:
            return value
        return (value, *(torch.empty_like(args[i]) for i in positions))

    return fake


_DOUBLE_BACKWARD = (
    "fastloss.torch: {name} does not support double backward (create_graph=True): its "
    "backward hands back the gradient of the fused forward pass, which is not itself "
    "differentiable. Compute this loss with torch: call fastloss.torch.unpatch(), or "
    "use torch.nn.functional.{name} outside fastloss.torch.patched().")


def _autograd(loss: _Loss) -> tuple[Callable, Callable, Callable]:
    """setup_context and backward of ``fastloss::<name>_with_grad``, and the backward
    of its eager twin (see _eager_function)."""
    n_args = len(loss.tensors) + len(loss.options) + len(loss.numbers) + 1
    positions = loss.positions
    axis = loss.none_axis
    message = _DOUBLE_BACKWARD.format(name=loss.name)

    def setup_context(ctx, inputs, output):
        grads = output[1:]
        ctx.mark_non_differentiable(*grads)
        # Otherwise autograd fills a zero "gradient" for each gradient output: a pass
        # over the whole buffer, as costly as the fused kernel for pointwise losses.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*grads)

    def gradients(ctx, upstream, needed):
        """The saved gradients times upstream, None where not `needed`."""
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is wanted
            raise RuntimeError(message)
        if upstream is None:  # the loss took no part in what is differentiated
            return [None] * len(positions)
        return [_scaled(grad, upstream, axis) if need else None
                for grad, need in zip(ctx.saved_tensors, needed)]

    def backward(ctx, upstream, *unused):
        result: list[torch.Tensor | None] = [None] * n_args
        needed = [ctx.needs_input_grad[i] for i in positions]
        for grad, i in zip(gradients(ctx, upstream, needed), positions):
            result[i] = grad
        return tuple(result)

    def eager_backward(ctx, upstream):
        return (None, *gradients(ctx, upstream, ctx.needs_input_grad[1:]))

    return setup_context, backward, eager_backward


def _scaled(grad: torch.Tensor, upstream: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``grad * upstream`` (upstream per loss value, broadcast over `axis`), with no
    pass over `grad` when upstream is exactly 1 and in place when that is safe."""
    if axis is not None and 0 < upstream.dim() < grad.dim():
        upstream = upstream.unsqueeze(axis)
    if torch.compiler.is_compiling():
        # A traced graph cannot branch on the upstream value, nor own buffers.
        return grad * upstream
    if torch._C._autograd._get_current_graph_task_keep_graph():
        # retain_graph=True: the saved gradient serves the next backward too.
        return grad * upstream
    # The graph is freed after this backward, so the saved gradient belongs to us.
    if upstream.dim() == 0 and upstream.item() == 1.0:
        return grad
    return grad.mul_(upstream)


def _eager_function(name: str, kernel: Callable, backward: Callable) -> Callable:
    """The op's kernel and autograd formula as an autograd.Function for eager calls,
    applied as ``(op arguments, *differentiable tensors)``.

    It skips the ~50 µs of the custom op's Python dispatch (measured on a 32x10
    cross-entropy whose kernel takes 2 µs). Autograd sees only the differentiable
    tensors as inputs, and the loss as the one output (the gradients are saved as
    intermediates): fewer edges and no bookkeeping of non-differentiable outputs,
    ~40 µs less per forward + backward. ``forward`` takes ``ctx`` itself: a Function
    with a separate ``setup_context`` binds its arguments through ``inspect.signature``
    on every call (another ~20 µs)."""
    def forward(ctx, args, *differentiable):
        loss, *grads = kernel(*args)
        ctx.save_for_backward(*grads)
        return loss

    function: Any = type(f"{name}_function", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    return function.apply


def _build(loss: _Loss) -> None:
    """Register ``fastloss::<name>`` and ``fastloss::<name>_with_grad``."""
    params = [f"Tensor{'?' if _optional(loss, name) else ''} {name}" for name in loss.tensors]
    params += [f"{_SCHEMA_TYPES[kind]} {name}" for name, kind in loss.options.items()]
    params += [f"bool {name}_is_number" for name in loss.numbers]
    params.append("int n_threads")
    grads = ", ".join(["Tensor"] * (1 + len(loss.differentiable)))
    for with_grad in (False, True):
        name = loss.name + ("_with_grad" if with_grad else "")
        schema = f"({', '.join(params)}) -> {'(' + grads + ')' if with_grad else 'Tensor'}"
        kernel = _kernel(loss, with_grad)
        op = torch.library.custom_op(f"fastloss::{name}", kernel, mutates_args=(),
                                     schema=schema)
        op.register_fake(_fake(loss, with_grad))
        loss.ops[with_grad] = op
        if with_grad:
            setup_context, backward, eager_backward = _autograd(loss)
            op.register_autograd(backward, setup_context=setup_context)
            loss.eager_with_grad = _eager_function(name, kernel, eager_backward)
        else:
            loss.eager = kernel


def _signature(loss: _Loss) -> inspect.Signature:
    if loss.twin:
        return inspect.signature(_ORIGINALS[loss.name])
    assert loss.signature is not None, f"{loss.name}: a loss without a torch twin needs a signature"
    namespace: dict[str, Any] = {}
    exec(f"def f{loss.signature}: pass", namespace)
    return inspect.signature(namespace["f"])


def _optional(loss: _Loss, name: str) -> bool:
    return _signature(loss).parameters[name].default is None


# ------------------------------------------------------------------ fallbacks

_counts: collections.Counter[tuple[str, str]] = collections.Counter()
_counts_lock = threading.Lock()


def fallback_counts() -> dict[tuple[str, str], int]:
    """How many calls fell back to torch, by ``(loss name, reason)``, since import or
    :func:`reset_fallback_counts`. Each fallback is also logged at DEBUG to the logger
    ``"fastloss.torch"`` (``logging.getLogger("fastloss.torch").setLevel(logging.DEBUG)``)."""
    with _counts_lock:
        return dict(_counts)


def reset_fallback_counts() -> None:
    """Set every count of :func:`fallback_counts` back to 0."""
    with _counts_lock:
        _counts.clear()


def _fallback(loss: _Loss, reason: str, args: dict[str, Any]) -> torch.Tensor:
    # Counted and logged when it runs, not while torch.compile traces it (a lock and a
    # logging call would break the graph; the traced graph is torch's function).
    if not torch.compiler.is_compiling():
        with _counts_lock:
            _counts[loss.name, reason] += 1
        _log.debug("%s falls back to torch: %s", loss.name, reason)
    if not loss.twin:
        raise TypeError(f"fastloss.torch.{loss.name}: cannot serve this call ({reason}) "
                        "and torch has no such loss to fall back to")
    args.pop("n_threads")
    return _ORIGINALS[loss.name](**args)


def _unservable(loss: _Loss, tensors: tuple, options: tuple, grad_mode: bool) -> str | None:
    """Why fastloss cannot serve a call (None when it can): cheap attribute checks."""
    if torch.overrides.has_torch_function([t for t in tensors if t is not None]):
        return "a tensor with __torch_function__ (subclass or mode)"
    x = tensors[0]
    if not isinstance(x, torch.Tensor):
        return "input is not a tensor"
    dtype = x.dtype
    if dtype not in _FLOAT and (dtype not in _HALF or not loss.half):
        return f"input dtype {dtype}"
    for name, t in zip(loss.tensors, tensors):
        if t is None or (type(t) is float and name in loss.numbers):
            continue
        if not isinstance(t, torch.Tensor):
            return f"{name} is not a tensor"
        if not t.is_cpu:  # (is_cpu is 6x cheaper than device.type)
            return f"{name} on device {t.device.type}"
        if t.layout is not torch.strided:
            return f"{name} has layout {t.layout}"
        if t.dtype != dtype and not (t.dtype is torch.int64 and name in loss.index_tensors):
            return f"{name} dtype {t.dtype} with input dtype {dtype}"
        if grad_mode and t.requires_grad and name not in loss.differentiable:
            return f"{name} requires grad"
        if name in loss.same_shape and t.shape != x.shape:
            return f"{name} shape differs from input's (torch broadcasts)"
    for (name, kind), value in zip(loss.options.items(), options):
        if type(value) is not kind and not (kind is float and type(value) is int):
            return f"{name} of type {type(value).__name__}"
    reduction = options[list(loss.options).index("reduction")]
    if reduction not in loss.reductions:
        return f"reduction {reduction!r}"
    return None


def _run(loss: _Loss, args: dict[str, Any]) -> torch.Tensor:
    """Serve a call of a generated function (its arguments by name) or fall back."""
    for name in loss.unsupported:
        if args[name] is not None:
            return _fallback(loss, f"{name}= (not in fastloss)", args)
    legacy = args.get("size_average") is not None or args.get("reduce") is not None
    reduction = (_reduction.legacy_get_string(args["size_average"], args["reduce"],
                                              emit_warning=False)
                 if legacy else args["reduction"])
    tensors = tuple(args[name] for name in loss.tensors)
    options = tuple(reduction if name == "reduction" else args[name] for name in loss.options)
    grad_mode = torch.is_grad_enabled()
    reason = _unservable(loss, tensors, options, grad_mode)
    if reason is None and loss.prepare is not None:
        # prepare may replace tensors and the reduction; a fallback gets the caller's
        served = dict(args, reduction=reduction)
        reason = loss.prepare(served, reduction)
        tensors = tuple(served[name] for name in loss.tensors)
        options = tuple(served[name] for name in loss.options)
    if reason is not None:
        return _fallback(loss, reason, args)
    if legacy:  # torch's own deprecation warning
        _reduction.legacy_get_string(args["size_average"], args["reduce"])
    # int values of float options as floats (the op's schema takes a float)
    options = tuple(float(v) if kind is float else v
                    for v, kind in zip(options, loss.options.values()))
    flags = tuple(type(args[name]) is float for name in loss.numbers)
    if any(flags):  # a Python float var: a 0-d float64 stand-in, read back as the float
        tensors = tuple(torch.tensor(t, dtype=torch.float64) if type(t) is float else t
                        for t in tensors)
    n_threads = args["n_threads"]
    if n_threads is None:
        n_threads = 0
    elif type(n_threads) is not int or n_threads < 1:
        raise ValueError(f"n_threads: expected a positive integer or None, got {n_threads!r}")
    with_grad = grad_mode and any(tensors[i].requires_grad for i in loss.positions)
    op_args = (*tensors, *options, *flags, n_threads)
    try:
        if torch.compiler.is_compiling():
            result = loss.ops[with_grad](*op_args)
            return result[0] if with_grad else result
        if with_grad:
            return loss.eager_with_grad(op_args, *(tensors[i] for i in loss.positions))
        return loss.eager(*op_args)
    except (ValueError, TypeError, IndexError) as exc:
        # Bad input as fastloss sees it: torch raises its own error for it (or, where
        # it accepts what fastloss refuses, computes its own result).
        return _fallback(loss, f"rejected by fastloss: {type(exc).__name__}", args)


def _function(loss: _Loss) -> Callable:
    """The public function: the loss's (torch) signature + keyword-only n_threads,
    generated as source like dataclasses' __init__, so a call binds its arguments at
    C speed instead of through inspect.Signature.bind."""
    signature = _signature(loss)
    params = []
    for p in signature.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        params.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    if "*" not in params:
        params.append("*")
    params.append("n_threads=None")
    names = ", ".join(f"{n!r}: {n}" for n in [*signature.parameters, "n_threads"])
    source = (f"def {loss.name}({', '.join(params)}):\n"
              f"    return _run(_loss, {{{names}}})\n")
    namespace: dict[str, Any] = {"_run": _run, "_loss": loss}
    exec(source, namespace)
    func = namespace[loss.name]
    func.__module__ = __name__
    func.__qualname__ = loss.name
    func.__doc__ = _docstring(loss)
    return func


def _docstring(loss: _Loss) -> str:
    numpy_doc = inspect.getdoc(getattr(_functional, loss.name)) or ""
    twin = f"``torch.nn.functional.{loss.name}``" if loss.twin else "a torch-style loss"
    return (f"{twin} on CPU tensors through fastloss's fused kernels, differentiable.\n\n"
            "Same arguments and results as torch (plus keyword-only ``n_threads``: default\n"
            "``torch.get_num_threads()``); calls fastloss cannot serve, among them class\n"
            "indices that are not int64, go to torch (see :mod:`fastloss.torch`). The loss,\n"
            "as in ``fastloss.functional`` (arrays there are tensors here):\n\n"
            + numpy_doc)


# ------------------------------------------------------------------- modules

def _module(loss: _Loss) -> type:
    """A subclass of the torch.nn loss class (same constructor, buffers, state_dict)
    whose forward calls the fastloss.torch function; for a loss torch.nn lacks, a
    subclass of ``torch.nn.modules.loss._Loss`` whose constructor takes the module's
    attributes with the function's defaults."""
    class_name, attributes = loss.module  # type: ignore[misc]
    base = getattr(torch.nn, class_name, None)
    func = loss.function

    def forward(self, *tensors):
        return func(*tensors, **{name: getattr(self, name) for name in attributes})

    namespace = {"forward": forward, "__module__": __name__}
    if base is None:
        base = torch.nn.modules.loss._Loss
        namespace["__init__"] = _module_init(loss)
        namespace["__doc__"] = (f"A torch.nn loss module computed by :func:`{loss.name}` "
                                f"(fastloss): ``{class_name}({', '.join(attributes)})``.")
    else:
        namespace["__doc__"] = (f"``torch.nn.{class_name}`` computed by :func:`{loss.name}` "
                                "(fastloss).")
    return type(class_name, (base,), namespace)


def _module_init(loss: _Loss) -> Callable:
    """The constructor of a module torch.nn lacks: its attributes, with the function's
    defaults, by keyword or in that order (generated as source, like the functions)."""
    class_name, attributes = loss.module  # type: ignore[misc]
    defaults = _signature(loss).parameters
    params = ", ".join(f"{name}={defaults[name].default!r}" for name in attributes)
    sets = "".join(f"    self.{name} = {name}\n" for name in attributes if name != "reduction")
    source = (f"def __init__(self, {params}):\n"
              f"    _Base.__init__(self, reduction=reduction)\n{sets}")
    namespace: dict[str, Any] = {"_Base": torch.nn.modules.loss._Loss}
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{class_name}.__init__"
    return init


# --------------------------------------------------------------------- patch

_patch_lock = threading.Lock()
_patched = False


def patch() -> None:
    """Route ``torch.nn.functional``'s losses (and so ``torch.nn``'s loss modules, which
    call them at run time) to fastloss.torch. Idempotent. Code that imported a loss
    function by name before the patch (``from torch.nn.functional import mse_loss``)
    keeps torch's."""
    global _patched
    with _patch_lock:
        for loss in _LOSSES:
            if loss.twin:
                setattr(F, loss.name, loss.function)
        _patched = True


def unpatch() -> None:
    """Restore torch's own loss functions. Idempotent."""
    global _patched
    with _patch_lock:
        for loss in _LOSSES:
            if loss.twin:
                setattr(F, loss.name, _ORIGINALS[loss.name])
        _patched = False


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _patched


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``with fastloss.torch.patched(): ...``: :func:`patch` for the block, then back to
    the state before it."""
    was = _patched
    patch()
    try:
        yield
    finally:
        if not was:
            unpatch()


# --------------------------------------------------------------------- build

def _register(loss: _Loss) -> None:
    """Everything of one table entry: its ops, its function, its module."""
    if loss.twin:
        _ORIGINALS[loss.name] = getattr(F, loss.name)
    loss.positions = tuple(loss.tensors.index(name) for name in loss.differentiable)
    _build(loss)
    loss.function = _function(loss)
    if loss.module is not None:
        loss.module_class = _module(loss)


# The public names the table defines, declared for type checkers and __all__
# (tests/test_torch_adapter.py checks that they match the table).
cross_entropy: Callable[..., torch.Tensor]
nll_loss: Callable[..., torch.Tensor]
multi_margin_loss: Callable[..., torch.Tensor]
multilabel_soft_margin_loss: Callable[..., torch.Tensor]
binary_cross_entropy_with_logits: Callable[..., torch.Tensor]
binary_cross_entropy: Callable[..., torch.Tensor]
soft_margin_loss: Callable[..., torch.Tensor]
hinge_loss: Callable[..., torch.Tensor]
sigmoid_focal_loss: Callable[..., torch.Tensor]
kl_div: Callable[..., torch.Tensor]
mse_loss: Callable[..., torch.Tensor]
l1_loss: Callable[..., torch.Tensor]
huber_loss: Callable[..., torch.Tensor]
smooth_l1_loss: Callable[..., torch.Tensor]
msle_loss: Callable[..., torch.Tensor]
log_cosh_loss: Callable[..., torch.Tensor]
poisson_nll_loss: Callable[..., torch.Tensor]
gaussian_nll_loss: Callable[..., torch.Tensor]
contrastive_loss: Callable[..., torch.Tensor]
cosine_embedding_loss: Callable[..., torch.Tensor]
triplet_margin_loss: Callable[..., torch.Tensor]
margin_ranking_loss: Callable[..., torch.Tensor]
hinge_embedding_loss: Callable[..., torch.Tensor]
center_loss: Callable[..., torch.Tensor]
CrossEntropyLoss: type[torch.nn.CrossEntropyLoss]
NLLLoss: type[torch.nn.NLLLoss]
MultiMarginLoss: type[torch.nn.MultiMarginLoss]
MultiLabelSoftMarginLoss: type[torch.nn.MultiLabelSoftMarginLoss]
BCEWithLogitsLoss: type[torch.nn.BCEWithLogitsLoss]
BCELoss: type[torch.nn.BCELoss]
SoftMarginLoss: type[torch.nn.SoftMarginLoss]
HingeLoss: type[torch.nn.modules.loss._Loss]
KLDivLoss: type[torch.nn.KLDivLoss]
MSELoss: type[torch.nn.MSELoss]
L1Loss: type[torch.nn.L1Loss]
HuberLoss: type[torch.nn.HuberLoss]
SmoothL1Loss: type[torch.nn.SmoothL1Loss]
MSLELoss: type[torch.nn.modules.loss._Loss]
LogCoshLoss: type[torch.nn.modules.loss._Loss]
PoissonNLLLoss: type[torch.nn.PoissonNLLLoss]
GaussianNLLLoss: type[torch.nn.GaussianNLLLoss]
ContrastiveLoss: type[torch.nn.modules.loss._Loss]
CosineEmbeddingLoss: type[torch.nn.CosineEmbeddingLoss]
TripletMarginLoss: type[torch.nn.TripletMarginLoss]
MarginRankingLoss: type[torch.nn.MarginRankingLoss]
HingeEmbeddingLoss: type[torch.nn.HingeEmbeddingLoss]
CenterLoss: type[torch.nn.modules.loss._Loss]

for _entry in _LOSSES:
    _register(_entry)
    globals()[_entry.name] = _entry.function
    if _entry.module_class is not None:
        globals()[_entry.module_class.__name__] = _entry.module_class
del _entry
