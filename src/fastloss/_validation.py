"""Validation and conversion every public loss shares (fastloss.functional's machinery).

Each public function first offers its call, as given, to the kernels' fast
path (_fastpath.pxi): when the arrays already have the kernels' layout and the
options are plain, it runs the kernel at once; otherwise it returns
NotImplemented and the function validates and converts with these helpers
before calling a kernel entry. Every error names the argument it is about.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ._kernels_baseline import REDUCTION_MEAN, REDUCTION_NONE, REDUCTION_SUM

__all__ = [
    "F16", "F32", "F64", "I64", "REDUCTIONS", "as_result", "check_out", "copy_result",
    "float_input", "float_operand", "grad_scale", "kernel_array", "option_float",
    "real_array", "reduction_code", "same_memory", "thread_count",
]

# The kernels' codes (the same in every SIMD build of them).
REDUCTIONS = {"none": REDUCTION_NONE, "mean": REDUCTION_MEAN, "sum": REDUCTION_SUM}
# Identity checks against these are the cheap first test on every call.
F16, F32, F64, I64 = (np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int64))


def reduction_code(reduction: Any) -> int:
    code = REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if code is None:
        raise ValueError(f"reduction: expected 'none', 'mean' or 'sum', got {reduction!r}")
    return code


def float_input(value: Any) -> tuple[np.ndarray, np.dtype]:
    """(`input` as an aligned C-contiguous float32/float64 array, the results'
    dtype): float16 is computed in float32 and its results cast back."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    dtype = array.dtype
    if dtype is F32 or dtype is F64 or dtype == F32 or dtype == F64:
        flags = array.flags
        if flags.c_contiguous and flags.aligned:
            return array, dtype
        return array.astype(dtype, order="C"), dtype
    if dtype == F16:
        return array.astype(F32, order="C"), F16
    if dtype.kind == "f" and dtype.itemsize in (4, 8):  # float32/64 of the other byte order
        native = dtype.newbyteorder("=")
        return array.astype(native, order="C"), native
    raise TypeError(f"input: expected a float32 or float64 array, got dtype {dtype}")


def float_operand(value: Any, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """A float operand of exactly `shape`, aligned C-contiguous in the compute `dtype`."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype is dtype and array.shape == shape:
        flags = array.flags
        if flags.c_contiguous and flags.aligned:
            return array
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (input's shape), got {array.shape}")
    return array.astype(dtype, order="C")


def kernel_array(array: np.ndarray) -> np.ndarray:
    """`array` itself when the kernels take it as it is (aligned, C-contiguous), else such a copy."""
    flags = array.flags
    return array if flags.c_contiguous and flags.aligned else np.array(array, order="C")


def real_array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """A weight: any real (integer or float) array, as `dtype`."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def thread_count(n_threads: Any) -> int:
    """A positive thread count (None is passed to the kernels as -1: ask OpenMP)."""
    try:
        count = operator.index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads: expected a positive integer or None, got {n_threads!r}") from None
    if count < 1:
        raise ValueError(f"n_threads: expected a positive integer or None, got {count}")
    # The kernels take a C int; OpenMP never starts more threads than blocks anyway.
    return min(count, 2**31 - 1)


def grad_scale(grad_output: Any, code: int, loss_shape: tuple, dtype: np.dtype):
    """(scalar, per-element array or None) of the gradient's outer factor."""
    array = grad_output if type(grad_output) is np.ndarray else np.asarray(grad_output)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"grad_output: expected a real number or array, got dtype {array.dtype}")
    if array.ndim == 0:
        return float(array), None
    if code != REDUCTION_NONE:
        raise ValueError(f"grad_output: a reduced loss takes a scalar grad_output, "
                         f"got shape {array.shape}")
    if array.shape != loss_shape:
        raise ValueError(f"grad_output: expected a scalar or the loss's shape {loss_shape}, "
                         f"got {array.shape}")
    return 1.0, kernel_array(array.astype(dtype, copy=False)).reshape(-1)


def as_result(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast computed values (an array or a NumPy scalar) to the results' dtype: float16
    results that overflow are inf, as when torch computes in float16, without NumPy's
    cast warning."""
    if array.dtype is dtype:
        return array
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def copy_result(out: np.ndarray, values: np.ndarray) -> None:
    """Write computed values into `out` of the results' dtype, overflowing to inf
    without a warning as as_result does (float16)."""
    with np.errstate(over="ignore"):
        np.copyto(out, values, casting="unsafe")


def check_out(out: Any, input: Any, dtype: np.dtype, operands: tuple) -> None:
    """`out` must be a writeable, aligned C-contiguous array of input's shape and dtype
    that overlaps no operand (it may be `input` itself: the kernels allow that)."""
    if type(out) is not np.ndarray:
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype is not dtype and out.dtype != dtype:
        raise TypeError(f"out: expected dtype {dtype} (input's dtype), got {out.dtype}")
    shape = input.shape if type(input) is np.ndarray else np.shape(input)
    if out.shape != shape:
        raise ValueError(f"out: expected shape {shape} (input's shape), got {out.shape}")
    flags = out.flags
    if not (flags.c_contiguous and flags.aligned and flags.writeable):
        raise ValueError("out: expected a writeable, aligned C-contiguous array")
    for operand in operands:
        if operand is not None and np.may_share_memory(out, operand):
            raise ValueError("out: must not overlap target, weights or grad_output")
    if out is not input and np.may_share_memory(out, input) and not same_memory(out, input):
        raise ValueError("out: may be input itself (in place), but must not partially overlap it")


def same_memory(a: np.ndarray, b: Any) -> bool:
    """True when b is an array viewing exactly a's memory in a's layout (e.g. b[...])."""
    return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
            and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def option_float(value: Any, name: str, condition: str = "any") -> float:
    """A float option: TypeError if it is not a real number, ValueError if it
    breaks `condition` ("positive", "nonnegative" or "any"; NaN breaks both)."""
    try:
        # float() would parse a string ("1"): an option is a number, as in torch
        if isinstance(value, (str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a float, got {value!r}") from None
    if condition == "positive" and not number > 0:
        raise ValueError(f"{name}: expected a positive value, got {number}")
    if condition == "nonnegative" and not number >= 0:
        raise ValueError(f"{name}: expected a value >= 0, got {number}")
    return number


# ------------------------------------------------------------ gradient boosting

#: The hessian conventions of the *_grad_hess functions.
HESSIANS = ("exact", "xgboost", "lightgbm")
#: The floor XGBoost's built-in objectives put under a hessian (binary:logistic,
#: multi:softprob: ``kRtEps``/``1e-16f``).
XGBOOST_HESSIAN_FLOOR = 1e-16


def hessian_convention(hessian: Any) -> str:
    if not isinstance(hessian, str) or hessian not in HESSIANS:
        raise ValueError(f"hessian: expected one of {', '.join(map(repr, HESSIANS))}, "
                         f"got {hessian!r}")
    return hessian


def sample_weights(sample_weight: Any, n: int, dtype: np.dtype) -> np.ndarray | None:
    """`sample_weight` as an (n,) array of `dtype` (None stays None): real, finite, >= 0."""
    if sample_weight is None:
        return None
    array = real_array(sample_weight, "sample_weight", dtype)
    if array.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},) (one weight per sample), "
                         f"got {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError("sample_weight: expected finite weights >= 0")
    return kernel_array(array)


def out_pair(out: Any) -> tuple[Any, Any]:
    """(grad_out, hess_out) of a *_grad_hess call's `out=` (None or a pair)."""
    if out is None:
        return None, None
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("out: expected None or a pair (grad_out, hess_out)")
    return out
