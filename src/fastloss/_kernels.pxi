# The loss kernels. This file is compiled once per instruction set
# (_kernels_baseline.pyx, _kernels_avx2.pyx, _kernels_avx512.pyx each include it)
# and fastloss._dispatch imports the best one the CPU runs.
#
# One file per family of losses, each with its own block machinery, sharing
# _common.pxi (threads, GIL, block sums, argument checks) and _fastmath.pxd
# (vectorisable exp/log, lane sums):
#   _elementwise.pxi    a loss per element of input against target (MSE, BCE, ...)
#   _cross_entropy.pxi  softmax cross-entropy over rows with a class index or probabilities
#   _class_rows.pxi     other losses of rows with a class index (nll, multi-margin)
#   _pairs.pxi          rows of two or three embedding arrays, rows against a table
#                       of class centres, and two-input elementwise margin losses
#   _fastpath.pxi       the public functions' shortcut for calls already in kernel layout
#
# Layout of every family:
# - per-element or per-row maths: `cdef inline` functions, branch-free where
#   they are called in a vectorised loop;
# - a `*_block` function: one fixed-size block of rows/elements, `nogil`, no
#   Python objects, returns the block's loss sum in double;
# - a `def` entry: takes arrays already validated by fastloss.functional, checks
#   each of them again (dtype, shape, layout, overlap) and what only a pass over
#   the data can (class indices, domains), runs the blocks serially or with
#   OpenMP, and adds the block sums in block order. Blocks have a fixed size, so
#   the result is bit-identical whatever the number of threads.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, NAN, sqrt
from libc.stdint cimport INT32_MAX, int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from fastloss._fastmath cimport (
    LANES, combine_lanes, dot_lanes, exp_any, exp_nonpos, log1p_any, log1p_nonneg, log1p_unit,
    log_nonneg, log_normal, max_lanes, pow_unit, sinh_small, sum_lanes, sum_lanes_except,
)

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastloss_openmp_max_threads(void) { return omp_get_max_threads(); }
    #define FASTLOSS_BUILT_WITH_OPENMP 1
    #else
    static int fastloss_openmp_max_threads(void) { return 1; }
    #define FASTLOSS_BUILT_WITH_OPENMP 0
    #endif
    """
    int openmp_max_threads "fastloss_openmp_max_threads"() noexcept nogil
    int BUILT_WITH_OPENMP "FASTLOSS_BUILT_WITH_OPENMP"

include "_common.pxi"
include "_cross_entropy.pxi"
include "_class_rows.pxi"
include "_elementwise.pxi"
include "_pairs.pxi"
include "_fastpath.pxi"

#: The fixed blocks whose sums are added in order (tests size their inputs by them).
BLOCK_SIZES = {"cross_entropy_elems": CE_BLOCK_ELEMS,
               "cross_entropy_max_rows": CE_MAX_BLOCK_ROWS,
               "class_rows_elems": CLASS_ROWS_BLOCK_ELEMS,
               "class_rows_max_rows": CLASS_ROWS_MAX_BLOCK_ROWS,
               "elementwise": ELEMENT_BLOCK,
               "pairs_elems": PAIRS_BLOCK_ELEMS,
               "pairs_max_rows": PAIRS_MAX_BLOCK_ROWS}
