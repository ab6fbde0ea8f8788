# The class-rows family: rows of C scores, each with a class index, whose loss
# is a function of the row and its target alone (nll_loss, multi_margin_loss).
# Included by _kernels.pxi (see there for the layout). Softmax cross-entropy
# is its own family (_cross_entropy.pxi): its rows need several passes.
#
# A loss of this family is a `<name>_row` function (the row's loss, and its
# gradient written over the row), a tag in ClassRowsTag dispatched in
# class_row and run_class_rows_kind, and its code in ClassRowsLoss.

cdef enum:
    # Blocks hold about this many scores (at least one row, at most
    # CLASS_ROWS_MAX_BLOCK_ROWS rows): the block sums are added in order.
    CLASS_ROWS_BLOCK_ELEMS = 8192
    CLASS_ROWS_MAX_BLOCK_ROWS = 256

# Class-rows loss codes: fastloss.functional takes them from here.
cpdef enum ClassRowsLoss:
    NLL = 0
    MULTI_MARGIN = 1


cdef struct ClassRows:
    # One call's operands once checked; float arrays of the input's type.
    const int64_t* target
    const void* weight            # (C,) class weights, or NULL
    const void* grad_scale_rows   # per-row grad_output (reduction "none"), or NULL
    void* loss_rows               # per-row losses, or NULL
    void* grad                    # (N, C) gradient, or NULL; may be the input itself
    Py_ssize_t n_rows
    Py_ssize_t n_classes
    Py_ssize_t rows_per_block
    int64_t ignore_index
    bint has_ignore
    double scale                  # the gradient's factor: grad_output / "mean" denominator
    int p                         # multi_margin: 1 or 2
    double margin                 # multi_margin


# ----------------------------------------------------------------- per-row maths
# Each returns the loss of one kept row with target t, scaled by w = w[t], and,
# when g is not NULL, writes the gradient of scale * loss over g (which may be
# the row x itself: every x[j] is read before g[j] is written). A loss whose
# gradient is 0 but at t (target_only) is a `<name>_target` function of x[t]
# instead, giving the loss and the slope at t.

cdef inline double nll_target(double x_t, double w, double scale,
                              floating* slope_t) noexcept nogil:
    """-w x[t] (x holds log-probabilities), given x_t = x[t]; the gradient is -w
    at t, written to slope_t, and 0 elsewhere (see target_only). A class of
    weight 0 contributes exactly 0, even where x[t] is -inf or NaN (the
    reference's convention, as cross-entropy's; torch's 0 * -inf is NaN)."""
    slope_t[0] = <floating>(-w * scale)
    return 0.0 if w == 0 else -w * x_t


cdef inline double multi_margin_row(const floating* x, Py_ssize_t C, Py_ssize_t t, double w,
                                    int p, double margin, double scale, floating* g,
                                    floating* h) noexcept nogil:
    """torch's multi_margin_loss: w sum_{j != t} max(0, margin - x[t] + x[j])^p / C.
    `h` (C scratch) receives the active margins, 0 at t, at the kink (the
    subgradient there is 0, as in torch) and where a margin is NaN (torch's
    `z > 0` skips those too). The gradient at j is w p h_j^(p-1) / C, at t minus
    the sum of the others."""
    cdef floating zero = 0, xt = x[t], m = <floating>margin, hj
    cdef Py_ssize_t j
    cdef int active = 0   # int, as wide as a float lane: the counting loop vectorises
    cdef double total, slope_sum, coefficient = w * scale / C
    for j in range(C):
        hj = m - xt + x[j]
        h[j] = hj if hj > zero else zero
    h[t] = zero
    if p == 1:
        total = sum_lanes(h, C)
        if g != NULL:
            for j in range(C):
                active += h[j] > zero
                g[j] = <floating>coefficient if h[j] > zero else zero
            slope_sum = active   # the sum of the ones, exactly
    else:
        total = dot_lanes(h, h, C)
        if g != NULL:
            for j in range(C):
                g[j] = <floating>(2 * coefficient) * h[j]
            slope_sum = 2 * sum_lanes(h, C)
    if g != NULL:
        g[t] = <floating>(-coefficient * slope_sum)
    return w * total / C


# ---------------------------------------------------------------- the registry

cdef struct NllTag:
    char unused
cdef struct MultiMarginTag:
    char unused

ctypedef fused ClassRowsTag:
    NllTag
    MultiMarginTag


cdef inline bint target_only(const ClassRowsTag* tag) noexcept nogil:
    """Whether the loss's gradient is 0 but at the target (nll_loss): it runs in
    target_only_block, which needs only each row's x[t]."""
    return ClassRowsTag is NllTag


cdef inline double class_target(const ClassRowsTag* tag, double x_t, double w, double scale,
                                floating* slope_t) noexcept nogil:
    if ClassRowsTag is NllTag:
        return nll_target(x_t, w, scale, slope_t)
    return 0


cdef inline double class_row(const ClassRowsTag* tag, const floating* x, Py_ssize_t C,
                             Py_ssize_t t, double w, const ClassRows* call, double scale,
                             floating* g, floating* scratch) noexcept nogil:
    if ClassRowsTag is MultiMarginTag:
        return multi_margin_row(x, C, t, w, call.p, call.margin, scale, g, scratch)
    return 0


cdef double run_class_rows_kind(ClassRowsLoss kind, const floating* x, const ClassRows* call,
                                int n_threads) except? -1:
    """run_class_rows for the tag of `kind`."""
    if kind == NLL:
        return run_class_rows(<const NllTag*>NULL, x, call, n_threads)
    if kind == MULTI_MARGIN:
        return run_class_rows(<const MultiMarginTag*>NULL, x, call, n_threads)
    raise ValueError(f"kind: unknown class-rows loss {kind}")


# --------------------------------------------------------------- the machinery

cdef inline void target_only_rows(const ClassRowsTag* tag, const floating* x,
                                  const ClassRows* call, Py_ssize_t row_start, Py_ssize_t n,
                                  bint weighted, bint scaled_rows, double* losses,
                                  floating* slopes, int32_t* offsets) noexcept nogil:
    """target_only_block's passes over its rows: each row's loss, its slope and
    the offset of its x[t] from the block's first score (an ignored row's: loss
    and slope 0 at column 0). Each pass vectorises (AVX2 gathers x[t] and w[t]
    with int32 offsets, which fit: a block holds fewer than 2^31 scores).
    `weighted` and `scaled_rows` say whether the call has class weights and
    per-row scales: constants where this is inlined, so that the common case
    (neither) has no loads for them."""
    cdef double x_t[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef double weights_t[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef int32_t columns[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef int32_t ignored[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef const floating* weight = <const floating*>call.weight
    cdef const floating* rows_scale = <const floating*>call.grad_scale_rows
    cdef const floating* scores = x + row_start * call.n_classes
    cdef const int64_t* targets = call.target + row_start
    cdef int32_t C = <int32_t>call.n_classes, r
    cdef int64_t ignore_index = call.ignore_index, has_ignore = call.has_ignore
    cdef floating zero = 0, slope
    cdef double w = 1.0, scale = call.scale, loss
    for r in range(<int32_t>n):
        ignored[r] = has_ignore & (targets[r] == ignore_index)
        columns[r] = 0 if ignored[r] else <int32_t>targets[r]
        offsets[r] = r * C + columns[r]
    for r in range(<int32_t>n):
        x_t[r] = scores[offsets[r]]
    if weighted:
        for r in range(<int32_t>n):
            weights_t[r] = weight[columns[r]]
    for r in range(<int32_t>n):
        if weighted:
            w = weights_t[r]
        if scaled_rows:
            scale = rows_scale[row_start + r]
        loss = class_target(tag, x_t[r], w, scale, &slope)
        # Ignored: loss 0 and gradient 0, even where the row is NaN.
        losses[r] = 0.0 if ignored[r] else loss
        slopes[r] = zero if ignored[r] else slope


cdef double target_only_block(const ClassRowsTag* tag, const floating* x, const ClassRows* call,
                              Py_ssize_t row_start, Py_ssize_t row_stop) noexcept nogil:
    """class_rows_block of a target_only loss: the rows' losses and slopes at
    their targets (target_only_rows), then the block's gradient rows zeroed at
    once and each slope put at its target. Row by row (a memset call of C
    elements each, and the loads between the maths) nll_loss took 2.5-3x the time."""
    cdef double losses[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef floating slopes[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef int32_t offsets[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef floating* loss_rows = <floating*>call.loss_rows
    cdef floating* grad = <floating*>call.grad
    cdef floating* g
    cdef Py_ssize_t C = call.n_classes, n = row_stop - row_start, r
    if call.weight == NULL and call.grad_scale_rows == NULL:
        target_only_rows(tag, x, call, row_start, n, False, False, losses, slopes, offsets)
    else:
        target_only_rows(tag, x, call, row_start, n, call.weight != NULL,
                         call.grad_scale_rows != NULL, losses, slopes, offsets)
    if grad != NULL:
        # Only now that every x[t] of the block is read: grad may be the input.
        g = grad + row_start * C
        memset(g, 0, n * C * sizeof(floating))
        for r in range(n):
            g[offsets[r]] = slopes[r]
    if loss_rows != NULL:
        for r in range(n):
            loss_rows[row_start + r] = <floating>losses[r]
    return sum_lanes(losses, n)


cdef double class_rows_block(const ClassRowsTag* tag, const floating* x, const ClassRows* call,
                             Py_ssize_t row_start, Py_ssize_t row_stop,
                             floating* scratch) noexcept nogil:
    """Loss (and gradient) of rows [row_start, row_stop); returns their loss sum
    (summed as sum_lanes sums, so the order depends only on the block)."""
    cdef double losses[CLASS_ROWS_MAX_BLOCK_ROWS]
    cdef const floating* weight = <const floating*>call.weight
    cdef const floating* rows_scale = <const floating*>call.grad_scale_rows
    cdef floating* loss_rows = <floating*>call.loss_rows
    cdef floating* grad = <floating*>call.grad
    cdef floating* g
    cdef Py_ssize_t C = call.n_classes, n = row_stop - row_start, r, row, j
    cdef int64_t t
    cdef double w, scale
    if target_only(tag):
        return target_only_block(tag, x, call, row_start, row_stop)
    for r in range(n):
        row = row_start + r
        t = call.target[row]
        g = grad + row * C if grad != NULL else NULL
        scale = rows_scale[row] if rows_scale != NULL else call.scale
        if call.has_ignore and t == call.ignore_index:
            # Ignored: loss 0 and gradient 0, even where the row is NaN.
            losses[r] = 0
            if g != NULL:
                for j in range(C):
                    g[j] = 0
            continue
        w = weight[t] if weight != NULL else 1.0
        losses[r] = class_row(tag, x + row * C, C, t, w, call, scale, g, scratch)
    if loss_rows != NULL:
        for r in range(n):
            loss_rows[row_start + r] = <floating>losses[r]
    return sum_lanes(losses, n)


cdef double class_rows_blocks(const ClassRowsTag* tag, const floating* x, const ClassRows* call,
                              Py_ssize_t n_blocks, double* block_sums, floating* scratch,
                              int threads) noexcept nogil:
    """Every block, serially or by `threads` OpenMP threads (one fork-join), and
    the sum of their losses in block order."""
    cdef Py_ssize_t b, per = call.rows_per_block
    if threads == 1:
        for b in range(n_blocks):
            block_sums[b] = class_rows_block(tag, x, call, b * per,
                                             min(call.n_rows, (b + 1) * per), scratch)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=threads):
            block_sums[b] = class_rows_block(tag, x, call, b * per,
                                             min(call.n_rows, (b + 1) * per),
                                             scratch + threadid() * call.n_classes)
    return sum_in_order(block_sums, n_blocks)


cdef double run_class_rows(const ClassRowsTag* tag, const floating* x, const ClassRows* call,
                           int n_threads) except? -1:
    """The sum of the losses of a checked call (N > 0), its outputs written."""
    cdef Py_ssize_t n_blocks = (call.n_rows + call.rows_per_block - 1) // call.rows_per_block
    cdef Py_ssize_t n_elems = call.n_rows * call.n_classes
    cdef int threads = threads_for(n_elems, n_threads, n_blocks)
    cdef double total
    cdef double* block_sums = <double*>malloc(n_blocks * sizeof(double))
    cdef floating* scratch = <floating*>malloc(threads * call.n_classes * sizeof(floating))
    cdef PyThreadState* gil
    if block_sums == NULL or scratch == NULL:
        free(block_sums)
        free(scratch)
        raise MemoryError()
    gil = release_gil_if(n_elems >= NOGIL_MIN_ELEMS)
    total = class_rows_blocks(tag, x, call, n_blocks, block_sums, scratch, threads)
    restore_gil(gil)
    free(block_sums)
    free(scratch)
    return total


cdef double class_rows_elems(ClassRowsLoss kind, const floating* x, ClassRows* call,
                             int reduction, double grad_output, int n_threads) except? -1:
    """The reduced loss of a checked call; NaN for reduction "none". "mean"
    divides nll_loss by the kept rows' summed class weights (NaN, with a zero
    gradient, when that is 0) and multi_margin_loss by N."""
    cdef Py_ssize_t n_invalid = 0
    cdef double denominator, total
    if call.n_rows == 0:
        return NAN if reduction == REDUCTION_MEAN else 0.0
    denominator = class_index_denominator(call.target, call.n_rows, call.n_classes,
                                          call.ignore_index, call.has_ignore,
                                          <const floating*>call.weight, &n_invalid)
    if n_invalid != 0:
        raise_bad_class_index(call.target, call.n_rows, call.n_classes, call.ignore_index,
                              call.has_ignore)
    if kind == MULTI_MARGIN:
        denominator = <double>call.n_rows
    call.scale = grad_output
    if reduction == REDUCTION_MEAN:
        call.scale = grad_output / denominator if denominator != 0 else 0.0
    total = run_class_rows_kind(kind, x, call, n_threads)
    if reduction == REDUCTION_MEAN:
        return total / denominator if denominator != 0 else NAN
    if reduction == REDUCTION_SUM:
        return total
    return NAN


def class_rows_loss(ClassRowsLoss kind, input, target, weight, int64_t ignore_index,
                    bint has_ignore, int reduction, double grad_output, grad_output_rows,
                    loss_out, grad, int n_threads, *, int p=1, double margin=1.0):
    """A class-rows loss of the rows of `input` (N, C), fused with its gradient.

    `target` (N,) int64 class indices (ignore_index counts only when
    `has_ignore`), `weight` (C,) class weights or None, every float array of
    input's dtype. `loss_out` (N,) receives per-row losses for reduction "none";
    `grad` (N, C), if given, the gradient of sum(grad_output * loss) (per-row
    `grad_output_rows` (N,) for "none"); it may be `input` itself, and no other
    output may overlap an input. Returns the reduced loss as a NumPy scalar of
    input's dtype (None for "none"). Raises IndexError for a class index
    outside [0, C) that is not ignored.
    """
    cdef int typenum = float_typenum(input, "input")
    cdef Py_ssize_t n_rows, n_classes, item
    cdef const void* x
    cdef ClassRows call
    cdef Span inputs[4]
    cdef double value
    if cnp.PyArray_NDIM(<cnp.ndarray>input) != 2:
        raise ValueError(f"input: expected a 2-d array, got shape {input.shape}")
    n_rows = cnp.PyArray_DIMS(<cnp.ndarray>input)[0]
    n_classes = cnp.PyArray_DIMS(<cnp.ndarray>input)[1]
    if n_classes == 0:
        raise ValueError("input: expected at least one class (C >= 1)")
    if n_classes > INT32_MAX // 2:
        # target_only_block's int32 offsets: a block holds at most max(C, 8192) scores.
        raise ValueError(f"input: expected at most {INT32_MAX // 2} classes, got {n_classes}")
    if p != 1 and p != 2:
        raise ValueError(f"p: expected 1 or 2, got {p}")
    item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>input)
    x = array_data(input, "input", typenum, n_rows, n_classes, False)
    call.target = <const int64_t*>array_data(target, "target", cnp.NPY_INT64, n_rows, -1, False)
    call.weight = array_data(weight, "weight", typenum, n_classes, -1, False)
    call.grad_scale_rows = array_data(grad_output_rows, "grad_output_rows", typenum, n_rows, -1,
                                      False)
    call.loss_rows = array_data(loss_out, "loss_out", typenum, n_rows, -1, True)
    call.grad = array_data(grad, "grad", typenum, n_rows, n_classes, True)
    inputs[0] = Span(x, n_rows * n_classes * item)
    inputs[1] = Span(call.target, n_rows * 8)
    inputs[2] = Span(call.weight, n_classes * item)
    inputs[3] = Span(call.grad_scale_rows, n_rows * item)
    check_outputs(Span(call.grad, n_rows * n_classes * item), Span(call.loss_rows, n_rows * item),
                  inputs, 4)
    call.n_rows = n_rows
    call.n_classes = n_classes
    call.rows_per_block = max(1, min(<Py_ssize_t>CLASS_ROWS_MAX_BLOCK_ROWS,
                                     CLASS_ROWS_BLOCK_ELEMS // n_classes))
    call.ignore_index = ignore_index
    call.has_ignore = has_ignore
    call.p = p
    call.margin = margin
    if typenum == cnp.NPY_FLOAT:
        value = class_rows_elems(kind, <const float*>x, &call, reduction, grad_output, n_threads)
    else:
        value = class_rows_elems(kind, <const double*>x, &call, reduction, grad_output, n_threads)
    return reduced_loss(value, typenum, reduction)
