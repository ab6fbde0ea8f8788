# The fast path of the public functions, compiled with the kernels (each
# _kernels_<isa>.pyx includes this file after _kernels.pxi).
#
# fastloss.functional validates and normalises a call in Python, which costs
# more than the whole kernel run on a tiny input. So each public function first
# hands its arguments, as the caller gave them, to one of these. When every
# array is already an aligned, C-contiguous, native-order ndarray (no subclass)
# of the right dtype and shape, and the other arguments are of the exact types
# the general path would turn them into, it runs the kernel at once and returns
# what the general path would, (loss, gradient or None). Anything else gives
# NotImplemented, and functional takes its general path, which converts what it
# can and raises the errors. A fast path converts nothing and raises only what
# the kernel itself raises (a class index out of range), with the general
# path's message.

cdef inline bint is_kernel_array(object array, int typenum, bint writeable) noexcept:
    """An exact ndarray of `typenum`, aligned, C-contiguous, native order (and
    writeable if asked): what a kernel reads as it is."""
    if not cnp.PyArray_CheckExact(array):
        return False
    if cnp.PyArray_TYPE(<cnp.ndarray>array) != typenum:
        return False
    if writeable:
        return cnp.PyArray_ISCARRAY(<cnp.ndarray>array)
    return cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>array)


cdef inline bint same_shape(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIMS(a)[d] != cnp.PyArray_DIMS(b)[d]:
            return False
    return True


cdef inline int thread_count(object n_threads) noexcept:
    """The kernels' thread count for n_threads None (-1: OpenMP's setting) or a
    positive int (capped to a C int, as the general path does); 0 for anything else."""
    if n_threads is None:
        return -1
    if type(n_threads) is not int or not n_threads >= 1:
        return 0
    return n_threads if n_threads < 2**31 - 1 else 2**31 - 1


cdef inline int reduction_code(object reduction) noexcept:
    """The kernels' code of a reduction name, -1 for anything else."""
    if type(reduction) is not str:
        return -1
    if reduction == "mean":
        return REDUCTION_MEAN
    if reduction == "sum":
        return REDUCTION_SUM
    if reduction == "none":
        return REDUCTION_NONE
    return -1


cdef inline bint out_fits(object out, cnp.ndarray input, const Span* operands,
                          int n_operands) noexcept:
    """`out` can take the gradient as it is: a writeable kernel array of input's
    dtype and shape that is input itself or overlaps nothing handed to the kernel."""
    cdef cnp.ndarray o
    cdef Span span
    cdef int i
    if not is_kernel_array(out, cnp.PyArray_TYPE(input), True):
        return False
    o = <cnp.ndarray>out
    if not same_shape(o, input):
        return False
    span = Span(cnp.PyArray_DATA(o), cnp.PyArray_NBYTES(o))
    if span.start != cnp.PyArray_DATA(input) and overlap(
            span, Span(cnp.PyArray_DATA(input), cnp.PyArray_NBYTES(input))):
        return False
    for i in range(n_operands):
        if overlap(span, operands[i]):
            return False
    return True


def cross_entropy_fast(input, target, weight, ignore_index, reduction, label_smoothing,
                       grad_output, out, n_threads, bint want_grad):
    """(loss, gradient or None) of cross_entropy_with_grad(...) for (N, C) logits
    and (N,) int64 class indices, no class weights, a float label_smoothing, a
    default grad_output; otherwise NotImplemented."""
    cdef int typenum, code, threads = thread_count(n_threads)
    cdef cnp.ndarray x, t, grad = None, losses = None
    cdef cnp.npy_intp n_rows, n_classes
    cdef double smoothing, value
    cdef int64_t ignore
    cdef void* loss_data
    cdef void* grad_data
    cdef Span target_span
    if weight is not None or grad_output is not None or threads == 0:
        return NotImplemented
    if type(ignore_index) is not int or not -(2**63) <= ignore_index < 2**63:
        return NotImplemented
    if type(label_smoothing) is not float:
        return NotImplemented
    smoothing = label_smoothing
    code = reduction_code(reduction)
    if not (0.0 <= smoothing <= 1.0) or code < 0:
        return NotImplemented
    if not cnp.PyArray_CheckExact(input):
        return NotImplemented
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>input)
    if ((typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE)
            or not is_kernel_array(input, typenum, False)
            or cnp.PyArray_NDIM(<cnp.ndarray>input) != 2):
        return NotImplemented
    x = <cnp.ndarray>input
    n_rows = cnp.PyArray_DIMS(x)[0]
    n_classes = cnp.PyArray_DIMS(x)[1]
    if (n_classes == 0 or not is_kernel_array(target, cnp.NPY_INT64, False)
            or cnp.PyArray_NDIM(<cnp.ndarray>target) != 1
            or cnp.PyArray_DIMS(<cnp.ndarray>target)[0] != n_rows):
        return NotImplemented
    t = <cnp.ndarray>target
    if want_grad:
        if out is None:
            grad = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x), typenum, 0)
        else:
            target_span = Span(cnp.PyArray_DATA(t), cnp.PyArray_NBYTES(t))
            if not out_fits(out, x, &target_span, 1):
                return NotImplemented
            grad = <cnp.ndarray>out
    if code == REDUCTION_NONE:
        losses = cnp.PyArray_EMPTY(1, &n_rows, typenum, 0)
    ignore = ignore_index
    loss_data = cnp.PyArray_DATA(losses) if losses is not None else NULL
    grad_data = cnp.PyArray_DATA(grad) if grad is not None else NULL
    if typenum == cnp.NPY_FLOAT:
        value = cross_entropy_rows(
            <const float*>cnp.PyArray_DATA(x), n_rows, n_classes,
            <const int64_t*>cnp.PyArray_DATA(t), <const float*>NULL, <const float*>NULL,
            ignore, smoothing, code, 1.0, <const float*>NULL, <float*>loss_data,
            <float*>grad_data, threads)
    else:
        value = cross_entropy_rows(
            <const double*>cnp.PyArray_DATA(x), n_rows, n_classes,
            <const int64_t*>cnp.PyArray_DATA(t), <const double*>NULL, <const double*>NULL,
            ignore, smoothing, code, 1.0, <const double*>NULL, <double*>loss_data,
            <double*>grad_data, threads)
    return (losses if code == REDUCTION_NONE else reduced_loss(value, typenum, code)), grad


def elementwise_fast(ElementwiseLoss kind, input, target, delta, reduction, grad_output, out,
                     n_threads, bint want_grad):
    """(loss, gradient or None) of the elementwise loss `kind` for input and
    target of the same shape and dtype, no weights, a positive float `delta` (the
    loss's one option, for the losses that have one: Huber's delta, smooth L1's
    beta), a default grad_output; otherwise NotImplemented. Losses with other
    options take the general path."""
    cdef int typenum, code, threads = thread_count(n_threads)
    cdef cnp.ndarray x, y, grad = None, losses = None
    cdef Elementwise call
    cdef double value
    cdef Span target_span
    if grad_output is not None or threads == 0 or type(delta) is not float:
        return NotImplemented
    code = reduction_code(reduction)
    if not delta > 0 or code < 0 or not cnp.PyArray_CheckExact(input):
        return NotImplemented
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>input)
    if ((typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE)
            or not is_kernel_array(input, typenum, False)
            or not is_kernel_array(target, typenum, False)
            or not same_shape(<cnp.ndarray>input, <cnp.ndarray>target)):
        return NotImplemented
    x = <cnp.ndarray>input
    y = <cnp.ndarray>target
    if want_grad:
        if out is None:
            grad = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0)
        else:
            target_span = Span(cnp.PyArray_DATA(y), cnp.PyArray_NBYTES(y))
            if not out_fits(out, x, &target_span, 1):
                return NotImplemented
            grad = <cnp.ndarray>out
    if code == REDUCTION_NONE:
        losses = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0)
    call.target = cnp.PyArray_DATA(y)
    call.aux = call.weight = call.grad_scale_elems = NULL
    call.aux_period = call.weight_period = 0
    call.loss_elems = cnp.PyArray_DATA(losses) if losses is not None else NULL
    call.grad = cnp.PyArray_DATA(grad) if grad is not None else NULL
    call.grad_aux = call.hess = NULL
    call.n = cnp.PyArray_SIZE(x)
    call.options = ElementOptions(delta=delta, margin=1.0, alpha=0.25, gamma=2.0, eps=1e-8,
                                  squared=False, log_target=False, log_input=True, full=False)
    if typenum == cnp.NPY_FLOAT:
        value = elementwise_elems(kind, <const float*>cnp.PyArray_DATA(x), &call, code,
                                  <double>call.n, 1.0, threads)
    else:
        value = elementwise_elems(kind, <const double*>cnp.PyArray_DATA(x), &call, code,
                                  <double>call.n, 1.0, threads)
    return (losses if code == REDUCTION_NONE else reduced_loss(value, typenum, code)), grad
