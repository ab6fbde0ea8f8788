# Machinery every kernel family shares: thread counts, the GIL, block sums in
# order, reduction codes, and the checks every def entry makes of its arrays.
# Included by _kernels.pxi (see there for the layout).

cdef enum:
    # Below this many elements a call runs on the calling thread, with no thread
    # team at all: measured with `python -m fastloss bench --threads-scan`, 2
    # threads lost to 1 up to ~1e6 elements on a shared 2-core VM (a fork-join
    # there costs as much as the work it splits).
    PARALLEL_MIN_ELEMS = 1 << 20
    # Calls on fewer elements keep the GIL: they take a microsecond or so, about
    # what releasing and retaking it costs.
    NOGIL_MIN_ELEMS = 4096

#: Inputs with fewer elements than this always run on the calling thread.
PARALLEL_THRESHOLD = PARALLEL_MIN_ELEMS

# Reduction codes: fastloss.functional takes them from here.
REDUCTION_NONE = 0
REDUCTION_MEAN = 1
REDUCTION_SUM = 2


def built_with_openmp():
    """True when the kernels were compiled with OpenMP (else n_threads is ignored)."""
    return bool(BUILT_WITH_OPENMP)


def default_threads():
    """The number of threads OpenMP would use now (OMP_NUM_THREADS, threadpoolctl)."""
    return openmp_max_threads()



cdef inline int threads_for(Py_ssize_t n_elems, int n_threads, Py_ssize_t n_blocks) noexcept nogil:
    if n_threads < 1:
        n_threads = openmp_max_threads()
    if n_elems < PARALLEL_MIN_ELEMS or n_blocks < 2:
        return 1
    return n_threads if n_threads < n_blocks else <int>n_blocks


cdef extern from "Python.h":
    ctypedef struct PyThreadState:
        pass
    PyThreadState* PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState*) nogil


cdef inline PyThreadState* release_gil_if(bint release) noexcept:
    """Release the GIL when `release` (a call big enough to be worth it); what
    restore_gil needs. In between, only C code runs: no Python object is touched."""
    return PyEval_SaveThread() if release else NULL


cdef inline void restore_gil(PyThreadState* state) noexcept:
    if state != NULL:
        PyEval_RestoreThread(state)


cdef inline double sum_in_order(const double* block_sums, Py_ssize_t n_blocks) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t b
    for b in range(n_blocks):
        total += block_sums[b]
    return total


# ------------------------------------------------------------ argument checks
# The def entries take ndarrays (or None) and read their C structs directly:
# typed memoryviews would parse a buffer format string per argument, which cost
# more than a whole kernel run on a tiny input. Whoever calls an entry, every
# array is checked before a kernel sees a pointer into it, so a kernel never
# reads or writes outside the arrays it is handed.

cnp.import_array()

from cpython.pythread cimport PyThread_tss_create, PyThread_tss_get, PyThread_tss_set


cdef int float_typenum(object array, str name) except -1:
    """NPY_FLOAT or NPY_DOUBLE: the floating type of the call, taken from `array`."""
    cdef int typenum
    if not cnp.PyArray_Check(array):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(array).__name__}")
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>array)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        raise TypeError(f"{name}: expected a float32 or float64 array, "
                        f"got dtype {(<cnp.ndarray>array).dtype}")
    return typenum


cdef void* array_data(object array, str name, int typenum, Py_ssize_t dim0, Py_ssize_t dim1,
                      bint writeable) except? NULL:
    """The data of `array`, which must be an aligned, native-order, C-contiguous
    ndarray of `typenum` and shape (dim0,) (dim1 < 0) or (dim0, dim1), writeable
    if asked; None gives NULL."""
    cdef cnp.ndarray a
    cdef int ndim = 1 if dim1 < 0 else 2
    if array is None:
        return NULL
    if not cnp.PyArray_Check(array):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(array).__name__}")
    a = <cnp.ndarray>array
    if not (cnp.PyArray_EquivTypenums(cnp.PyArray_TYPE(a), typenum)
            and cnp.PyArray_ISNOTSWAPPED(a)):
        raise TypeError(f"{name}: expected dtype {cnp.PyArray_DescrFromType(typenum)}, "
                        f"got {array.dtype}")
    if (cnp.PyArray_NDIM(a) != ndim or cnp.PyArray_DIMS(a)[0] != dim0
            or (ndim == 2 and cnp.PyArray_DIMS(a)[1] != dim1)):
        expected = f"({dim0},)" if ndim == 1 else f"({dim0}, {dim1})"
        raise ValueError(f"{name}: expected shape {expected}, got {array.shape}")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a)):
        raise ValueError(f"{name}: expected an aligned C-contiguous array")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name}: expected a writeable array")
    return cnp.PyArray_DATA(a)


cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)


# fastloss.dask sums the blocks of many chunks, so it takes each chunk's reduced
# loss as the double total, unrounded, and rounds once, after combining them. A
# flag per thread: Dask runs chunks on several threads, other code may run too.
cdef Py_tss_t double_totals_key
if PyThread_tss_create(&double_totals_key) != 0:
    raise MemoryError()


def set_double_totals(bint on):
    """Private (fastloss._dispatch.double_totals): while on, this thread's reduced
    losses are float64 scalars of the double total, float32 calls' too."""
    PyThread_tss_set(&double_totals_key, <void*><size_t>on)


cdef object reduced_loss(double value, int typenum, int reduction):
    """What a def entry returns: the reduced loss as a NumPy scalar of the call's
    dtype (a float32 loss is accumulated in double and rounded once, here, unless
    set_double_totals is on), or None for reduction "none"."""
    cdef float single = <float>value
    if reduction == REDUCTION_NONE:
        return None
    if typenum == cnp.NPY_FLOAT and PyThread_tss_get(&double_totals_key) == NULL:
        return PyArray_Scalar(&single, cnp.PyArray_DescrFromType(typenum), None)
    return PyArray_Scalar(&value, cnp.PyArray_DescrFromType(cnp.NPY_DOUBLE), None)


def reduced_sum(double total, like):
    """A sum accumulated in double by the Python layer as the kernels return one:
    a scalar of `like`'s dtype (float32 or float64), rounded as reduced_loss does."""
    return reduced_loss(total, float_typenum(like, "like"), REDUCTION_SUM)


cdef struct Span:
    const void* start
    Py_ssize_t n_bytes


cdef inline bint overlap(Span a, Span b) noexcept:
    return (a.start != NULL and b.start != NULL and a.n_bytes > 0 and b.n_bytes > 0
            and <const char*>a.start < <const char*>b.start + b.n_bytes
            and <const char*>b.start < <const char*>a.start + a.n_bytes)


cdef int check_outputs(Span grad, Span loss, const Span* inputs, int n_inputs) except -1:
    """Outputs overlap no input and not each other, except that the gradient may
    be the first input (the values) exactly: the kernels read every element of
    it before writing that element. The gradient is the public functions' `out=`,
    and the errors name it so."""
    cdef int i
    if grad.start != inputs[0].start and overlap(grad, inputs[0]):
        raise ValueError("out: may be input itself (in place), but must not partially overlap it")
    for i in range(1, n_inputs):
        if overlap(grad, inputs[i]):
            raise ValueError("out: must not overlap target, weights or grad_output")
    for i in range(n_inputs):
        if overlap(loss, inputs[i]) or overlap(loss, grad):
            raise ValueError("loss_out: must not overlap an operand or grad")
    return 0



# ------------------------------------------------------------- class indices

cdef double class_index_denominator(
        const int64_t* target, Py_ssize_t n_rows, Py_ssize_t n_classes, int64_t ignore_index,
        bint has_ignore, const floating* weight, Py_ssize_t* n_invalid) noexcept nogil:
    """Check every class index before a kernel uses one, and give what "mean"
    divides by: the summed w[t] of the kept rows (their count without `weight`).
    `n_invalid` receives the number of indices outside [0, C) that are not
    `ignore_index` (which only counts when `has_ignore`); with any, the
    denominator is meaningless and nothing may read the weights at them."""
    cdef Py_ssize_t i, n_ignored = 0, invalid = 0
    cdef int64_t t
    cdef double denominator = 0
    # Branch-free, so that it vectorises.
    for i in range(n_rows):
        t = target[i]
        n_ignored += has_ignore & (t == ignore_index)
        invalid += (not has_ignore or t != ignore_index) & ((t < 0) | (t >= n_classes))
    n_invalid[0] = invalid
    if invalid != 0 or weight == NULL:
        return <double>(n_rows - n_ignored)
    for i in range(n_rows):
        t = target[i]
        if not has_ignore or t != ignore_index:
            denominator += weight[t]
    return denominator


cdef int raise_bad_class_index(const int64_t* target, Py_ssize_t n_rows, Py_ssize_t n_classes,
                               int64_t ignore_index, bint has_ignore) except -1:
    """The IndexError for the first index class_index_denominator found invalid."""
    cdef Py_ssize_t i
    cdef int64_t t
    for i in range(n_rows):
        t = target[i]
        if (not has_ignore or t != ignore_index) and (t < 0 or t >= n_classes):
            allowed = f" or target == ignore_index ({ignore_index})" if has_ignore else ""
            raise IndexError(
                f"target: class index {t} (at flat position {i}) is out of range for "
                f"{n_classes} classes; expected 0 <= target < {n_classes}{allowed}")
    return 0
