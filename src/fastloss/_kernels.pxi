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
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

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

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int fastloss_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int fastloss_cpu_has_avx512(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    }
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    /* MSVC has no __builtin_cpu_supports: ask CPUID, and XCR0 for whether the OS
       saves the wider registers (YMM: bits 1-2; ZMM and mask registers: 5-7). */
    #include <intrin.h>
    static int fastloss_os_saves(unsigned long long xcr0_bits) {
        int info[4];
        __cpuid(info, 1);
        if (!((info[2] >> 27) & 1)) return 0;  /* OSXSAVE */
        return (_xgetbv(0) & xcr0_bits) == xcr0_bits;
    }
    static unsigned fastloss_leaf7_ebx(void) {
        int info[4];
        __cpuid(info, 0);
        if (info[0] < 7) return 0;
        __cpuidex(info, 7, 0);
        return (unsigned)info[1];
    }
    static int fastloss_cpu_has_avx2(void) {
        int info[4];
        __cpuid(info, 1);
        if (!((info[2] >> 12) & 1) || !((info[2] >> 28) & 1)) return 0;  /* FMA, AVX */
        return fastloss_os_saves(0x6) && ((fastloss_leaf7_ebx() >> 5) & 1);
    }
    static int fastloss_cpu_has_avx512(void) {
        unsigned ebx = fastloss_leaf7_ebx();  /* F: 16, DQ: 17, BW: 30, VL: 31 */
        return fastloss_cpu_has_avx2() && fastloss_os_saves(0xE6)
            && ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);
    }
    #else
    static int fastloss_cpu_has_avx2(void) { return 0; }
    static int fastloss_cpu_has_avx512(void) { return 0; }
    #endif
    """
    int cpu_has_avx2 "fastloss_cpu_has_avx2"() noexcept nogil
    int cpu_has_avx512 "fastloss_cpu_has_avx512"() noexcept nogil



def cpu_features():
    """Which of the instruction sets fastloss has kernels for this CPU supports."""
    return {"avx2": bool(cpu_has_avx2()), "avx512": bool(cpu_has_avx512())}



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
