# Stub of the compiled kernels (src/fastloss/_kernels.pxi built for the baseline
# instruction set). _kernels_avx2.pyi and _kernels_avx512.pyi re-export this
# file: the three modules are the same source compiled with different flags.
# tests/test_stubs.py runs mypy.stubtest against every variant that is built.
#
# Array arguments are ndarrays, aligned and C-contiguous, all of the first
# array's dtype (float32 or float64; class indices int64), None where optional;
# the entries check this and raise TypeError/ValueError naming the argument.
from enum import IntEnum
from types import NotImplementedType
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

_Float = TypeVar("_Float", np.float32, np.float64)

# Cython's doctest table (empty: the kernels have no doctests).
__test__: dict[str, str]

#: The instruction set this module was compiled for: "baseline", "avx2" or "avx512".
SIMD_PATH: str

#: Inputs with fewer elements than this always run on the calling thread.
PARALLEL_THRESHOLD: int
#: The fixed blocks whose sums are added in order: keys "cross_entropy_elems",
#: "cross_entropy_max_rows", "class_rows_elems", "class_rows_max_rows", "elementwise",
#: "pairs_elems", "pairs_max_rows".
BLOCK_SIZES: dict[str, int]

# Reduction codes shared with fastloss.functional.
REDUCTION_NONE: Final[int]
REDUCTION_MEAN: Final[int]
REDUCTION_SUM: Final[int]

class ElementwiseLoss(IntEnum):
    MSE = 0
    HUBER = 1
    BCE_WITH_LOGITS = 2
    L1 = 3
    SMOOTH_L1 = 4
    SOFT_MARGIN = 5
    HINGE = 6
    SIGMOID_FOCAL = 7
    BINARY_CROSS_ENTROPY = 8
    KL_DIV = 9
    MSLE = 10
    LOG_COSH = 11
    POISSON_NLL = 12
    GAUSSIAN_NLL = 13

class ClassRowsLoss(IntEnum):
    NLL = 0
    MULTI_MARGIN = 1

def built_with_openmp() -> bool:
    """True when the kernels were compiled with OpenMP (else n_threads is ignored)."""

def default_threads() -> int:
    """The number of threads OpenMP would use now (OMP_NUM_THREADS, threadpoolctl)."""

def set_double_totals(on: bool) -> None:
    """Private (fastloss._dispatch.double_totals): while on, this thread's reduced
    losses are float64 scalars of the double total, float32 calls' too."""

def reduced_sum(total: float, like: npt.NDArray[np.floating[Any]]) -> np.floating[Any]:
    """A sum accumulated in double by the Python layer as the kernels return one:
    a scalar of `like`'s dtype (float32 or float64), rounded as reduced_loss does."""

def cross_entropy(
    logits: npt.NDArray[_Float],
    target: npt.NDArray[np.int64] | None,
    probs: npt.NDArray[_Float] | None,
    weight: npt.NDArray[_Float] | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: int,
    grad_output: float,
    grad_output_rows: npt.NDArray[_Float] | None,
    loss_out: npt.NDArray[_Float] | None,
    grad: npt.NDArray[_Float] | None,
    n_threads: int,
    *,
    hess: npt.NDArray[_Float] | None = None,
    hess_factor: float = 1.0,
    hess_floor: float = 0.0,
) -> _Float | None:
    """Softmax cross-entropy of the rows of `logits` (N, C), fused with its gradient."""

def class_rows_loss(
    kind: ClassRowsLoss | int,
    input: npt.NDArray[_Float],
    target: npt.NDArray[np.int64],
    weight: npt.NDArray[_Float] | None,
    ignore_index: int,
    has_ignore: bool,
    reduction: int,
    grad_output: float,
    grad_output_rows: npt.NDArray[_Float] | None,
    loss_out: npt.NDArray[_Float] | None,
    grad: npt.NDArray[_Float] | None,
    n_threads: int,
    *,
    p: int = 1,
    margin: float = 1.0,
) -> _Float | None:
    """A class-rows loss of the rows of `input` (N, C), fused with its gradient."""

def elementwise_loss(
    kind: ElementwiseLoss | int,
    input: npt.NDArray[_Float],
    target: npt.NDArray[_Float],
    aux: npt.NDArray[_Float] | None,
    aux_period: int,
    weight: npt.NDArray[_Float] | None,
    weight_period: int,
    reduction: int,
    denominator: float,
    grad_output: float,
    grad_output_elems: npt.NDArray[_Float] | None,
    loss_out: npt.NDArray[_Float] | None,
    grad: npt.NDArray[_Float] | None,
    grad_aux: npt.NDArray[_Float] | None,
    n_threads: int,
    *,
    hess: npt.NDArray[_Float] | None = None,
    delta: float = 1.0,
    margin: float = 1.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
    eps: float = 1e-8,
    squared: bool = False,
    log_target: bool = False,
    log_input: bool = True,
    full: bool = False,
    hess_floored: bool = False,
    hess_floor: float = 0.0,
    unit_hess: bool = False,
    hess_factor: float = 1.0,
) -> _Float | None:
    """An elementwise loss over flat `input`/`target` (n,), fused with its gradients."""

# The fast path (_fastpath.pxi): the arguments as the caller gave them to the
# public function; (loss, gradient or None), or NotImplemented when they need
# the general path of fastloss.functional.
_FastResult = (
    tuple[np.floating[Any] | npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]] | None]
    | NotImplementedType
)

def cross_entropy_fast(
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    grad_output: Any,
    out: Any,
    n_threads: Any,
    want_grad: bool,
) -> _FastResult:
    """cross_entropy_with_grad's (loss, gradient or None) for canonical arguments, else NotImplemented."""

def elementwise_fast(
    kind: ElementwiseLoss | int,
    input: Any,
    target: Any,
    delta: Any,
    reduction: Any,
    grad_output: Any,
    out: Any,
    n_threads: Any,
    want_grad: bool,
) -> _FastResult:
    """An elementwise loss's (loss, gradient or None) for canonical arguments, else NotImplemented."""

# ------------------------------------------------------------ the pairs family (_pairs.pxi)

class PairsLoss(IntEnum):
    CONTRASTIVE = 0
    COSINE_EMBEDDING = 1
    TRIPLET_MARGIN = 2
    MARGIN_RANKING = 3
    HINGE_EMBEDDING = 4

def pairs_loss(
    kind: PairsLoss | int,
    input: npt.NDArray[_Float],
    second: npt.NDArray[_Float] | None,
    third: npt.NDArray[_Float] | None,
    target: npt.NDArray[_Float] | None,
    reduction: int,
    grad_output: float,
    grad_output_rows: npt.NDArray[_Float] | None,
    loss_out: npt.NDArray[_Float] | None,
    grad1: npt.NDArray[_Float] | None,
    grad2: npt.NDArray[_Float] | None,
    grad3: npt.NDArray[_Float] | None,
    n_threads: int,
    *,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
) -> _Float | None:
    """A pairs loss of `input` and its partner arrays, fused with their gradients."""

def center_loss(
    features: npt.NDArray[_Float],
    target: npt.NDArray[np.int64],
    centers: npt.NDArray[_Float],
    reduction: int,
    grad_output: float,
    grad_output_rows: npt.NDArray[_Float] | None,
    loss_out: npt.NDArray[_Float] | None,
    grad: npt.NDArray[_Float] | None,
    grad_centers: npt.NDArray[_Float] | None,
    n_threads: int,
) -> _Float | None:
    """Center loss 0.5 ||x_i - c[t_i]||^2 of the rows of `features` (N, D), fused with its gradients."""

def center_update(
    centers: npt.NDArray[_Float],
    features: npt.NDArray[_Float],
    target: npt.NDArray[np.int64],
    alpha: float,
    n_threads: int,
) -> npt.NDArray[_Float]:
    """Wen et al.'s centre update, in place."""
