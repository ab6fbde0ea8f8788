# Softmax cross-entropy: rows of C logits with a class index or class
# probabilities. Included by _kernels.pxi (see there for the layout).

cdef enum:
    # Cross-entropy blocks hold about this many logits (at least one row, at most
    # CE_MAX_BLOCK_ROWS rows), so the passes over a block run in L2 (64 KB of
    # float64). Measured at C = 1000: 8192 was 4-9% faster than 4096, 2048 7%
    # slower.
    CE_BLOCK_ELEMS = 8192
    CE_MAX_BLOCK_ROWS = 256
    # Cross-entropy rows shorter than this many bytes (one AVX-512 register:
    # 15 float32 or 7 float64 logits) are worked with the rows as SIMD lanes.
    # Measured against the row-by-row kernel at 65536 rows: 1.6-2.2x faster
    # (float32, C = 2..15), 2.0x (float64, C = 2), even at float64 C = 8 and
    # 16% slower above. The same rule holds on AVX2 (32-byte registers): at
    # 65536 x 10 float32 the row-by-row kernel ran as many instructions under
    # callgrind (35.9M against 35.4M for two calls) and was no faster.
    NARROW_ROW_BYTES = 64
    # Elements of padding per column of the narrow kernel.
    NARROW_PAD = 16


cdef inline void soft_target_sums(
        const floating* q, const floating* weight, const floating* shifted, Py_ssize_t n,
        double smoothing, double* target_dot, double* target_mass) noexcept nogil:
    """With q' = (1-eps) q + eps/n: target_dot = sum_c w_c q'_c d_c and
    target_mass = sum_c w_c q'_c, accumulated like sum_lanes (LANES partial sums
    in a fixed order, then the tail). `weight` is never NULL here (ones without
    class weights). A factor 0 makes a term 0 even where the other is infinite:
    a class of target weight 0 at a -inf logit, an infinite one on the row's
    maximum (d = 0). The guard has dot_lanes' form (see there for why)."""
    cdef double dot[LANES]
    cdef double mass[LANES]
    cdef double tw, keep = 1 - smoothing, uniform = smoothing / n, zero = 0
    cdef double dot_total = 0, mass_total = 0
    cdef Py_ssize_t i = 0, lane
    if n >= LANES:
        for lane in range(LANES):
            dot[lane] = 0
            mass[lane] = 0
        while i + LANES <= n:
            for lane in range(LANES):
                tw = (keep * q[i + lane] + uniform) * weight[i + lane]
                dot[lane] += (zero if (tw == 0) | (shifted[i + lane] == 0)
                              else tw * shifted[i + lane])
                mass[lane] += tw
            i += LANES
        dot_total = combine_lanes(dot)
        mass_total = combine_lanes(mass)
    while i < n:
        tw = (keep * q[i] + uniform) * weight[i]
        dot_total += zero if (tw == 0) | (shifted[i] == 0) else tw * shifted[i]
        mass_total += tw
        i += 1
    target_dot[0] = dot_total
    target_mass[0] = mass_total


cdef inline void to_columns(const floating* x, Py_ssize_t n, Py_ssize_t C, Py_ssize_t stride,
                            floating* e) noexcept nogil:
    """e[c * stride + r] = x[r * C + c]: n rows of C values, class by class."""
    cdef Py_ssize_t r, c
    cdef floating* col
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            col[r] = x[r * C + c]


cdef inline void to_rows(const floating* e, Py_ssize_t n, Py_ssize_t C, Py_ssize_t stride,
                         floating* x) noexcept nogil:
    """x[r * C + c] = e[c * stride + r]: to_columns undone."""
    cdef Py_ssize_t r, c
    cdef floating* row
    for r in range(n):
        row = x + r * C
        for c in range(C):
            row[c] = e[c * stride + r]


cdef struct BlockRows:
    # What the passes over a block of cross-entropy rows know of each row.
    Py_ssize_t pivot[CE_MAX_BLOCK_ROWS]      # y, the argmax for soft targets, -1 if ignored
    double kept[CE_MAX_BLOCK_ROWS]           # 0 for an ignored row, else 1
    double scale[CE_MAX_BLOCK_ROWS]          # the gradient's outer factor
    double nll_weight[CE_MAX_BLOCK_ROWS]     # (1-eps) w_y; 0 for soft or ignored rows
    double target_weight[CE_MAX_BLOCK_ROWS]  # w_y
    double d_target[CE_MAX_BLOCK_ROWS]       # d at the pivot
    double rest_mass[CE_MAX_BLOCK_ROWS]      # index: (eps/C) sum w; soft: Q
    double rest_dot[CE_MAX_BLOCK_ROWS]       # index: (eps/C) sum w d; soft: T
    double e_target[CE_MAX_BLOCK_ROWS]       # e at the pivot
    double other[CE_MAX_BLOCK_ROWS]          # sum of e without the pivot's
    double loss[CE_MAX_BLOCK_ROWS]
    double factor[CE_MAX_BLOCK_ROWS]         # gradient = factor * e - target weights
    double target_grad[CE_MAX_BLOCK_ROWS]    # the gradient at an index target


cdef inline void start_row(BlockRows* rows, Py_ssize_t r, double scale) noexcept nogil:
    rows.pivot[r] = -1
    rows.kept[r] = 1
    rows.scale[r] = scale
    rows.nll_weight[r] = 0
    rows.target_weight[r] = 0
    rows.d_target[r] = 0
    rows.rest_mass[r] = 0
    rows.rest_dot[r] = 0


cdef inline bint index_target_row(BlockRows* rows, Py_ssize_t r, int64_t t,
                                  int64_t ignore_index, const floating* weight, double keep,
                                  double smoothing_mass) noexcept nogil:
    """What an index target t alone gives its row (after start_row); False if ignored."""
    if t == ignore_index:
        rows.kept[r] = 0
        rows.scale[r] = 0
        return False
    rows.pivot[r] = t
    rows.target_weight[r] = weight[t] if weight != NULL else 1.0
    rows.nll_weight[r] = keep * rows.target_weight[r]
    rows.rest_mass[r] = smoothing_mass
    return True


cdef void finish_rows(BlockRows* rows, Py_ssize_t n_rows, double uniform) noexcept nogil:
    """Each row's loss and gradient factors from its sums, over the block's rows at
    once (one vectorised loop; see cross_entropy_block for the formulas)."""
    cdef Py_ssize_t r
    cdef double s, log_s, nll, log1p_ratio, zero = 0
    for r in range(n_rows):
        s = rows.other[r] + rows.e_target[r]
        log1p_ratio = log1p_nonneg(rows.other[r] / rows.e_target[r])
        log_s = rows.d_target[r] + log1p_ratio if rows.d_target[r] > -1 else log_normal(s)
        nll = log1p_ratio if rows.d_target[r] > -1 else log_s - rows.d_target[r]
        # An ignored row is 0 even if its logits are NaN, and so is a term whose
        # weight is 0: neither is evaluated (0 * log 0 = 0, as in the reference).
        rows.loss[r] = ((zero if rows.nll_weight[r] == 0 else rows.nll_weight[r] * nll)
                        + (zero if rows.rest_mass[r] == 0
                           else rows.rest_mass[r] * log_s - rows.rest_dot[r])
                        if rows.kept[r] != 0 else zero)
        rows.factor[r] = (rows.scale[r] * (rows.nll_weight[r] + rows.rest_mass[r]) / s
                          if rows.kept[r] != 0 else zero)
        rows.target_grad[r] = rows.scale[r] * (rows.rest_mass[r] * rows.e_target[r] / s
                                               - uniform * rows.target_weight[r]
                                               - rows.nll_weight[r] * rows.other[r] / s)


cdef void wide_rows(
        BlockRows* rows, const floating* logits, const int64_t* target, const floating* probs,
        const floating* weight, double weight_total, Py_ssize_t C, Py_ssize_t row_start,
        Py_ssize_t n_rows, int64_t ignore_index, double smoothing, double grad_scale,
        const floating* grad_scale_rows, floating* work) noexcept nogil:
    """The sums of rows of NARROW_ROW_BYTES or more, row by row: `work` receives the
    rows' exponentials e = exp(x - max(x)) in the rows' own layout."""
    cdef Py_ssize_t r, j, row
    cdef const floating* x
    cdef floating* g
    cdef floating row_max
    cdef double keep = 1 - smoothing, uniform = smoothing / C
    # Soft targets and label smoothing take sums of the shifted logits d = x - max(x),
    # so those are written to `work` first (x may be the very buffer they overwrite),
    # and so are rows shorter than LANES, whose exponentials are then taken over the
    # whole block at once, to fill SIMD registers. Other rows take exp(x - max)
    # straight from the logits: one pass over the row fewer.
    cdef bint shift_in_exp = C >= LANES and probs == NULL and smoothing == 0
    for r in range(n_rows):
        row = row_start + r
        x = logits + row * C
        g = work + r * C
        row_max = max_lanes(x, C)
        if not shift_in_exp:
            for j in range(C):
                g[j] = x[j] - row_max
        start_row(rows, r, grad_scale_rows[row] if grad_scale_rows != NULL else grad_scale)
        if probs != NULL:
            soft_target_sums(probs + row * C, weight, g, C, smoothing,
                             &rows.rest_dot[r], &rows.rest_mass[r])
            # The argmax, found in d: d == 0 exactly where x == max.
            for j in range(C):
                if g[j] == 0:
                    rows.pivot[r] = j
                    break
        elif index_target_row(rows, r, target[row], ignore_index, weight, keep,
                              uniform * weight_total):
            rows.d_target[r] = x[rows.pivot[r]] - row_max if shift_in_exp else g[rows.pivot[r]]
            if smoothing != 0:
                rows.rest_dot[r] = uniform * (dot_lanes(weight, g, C) if weight != NULL
                                              else sum_lanes(g, C))
        if shift_in_exp:
            for j in range(C):
                g[j] = exp_nonpos(x[j] - row_max)
    if not shift_in_exp:
        for j in range(n_rows * C):
            work[j] = exp_nonpos(work[j])
    for r in range(n_rows):
        g = work + r * C
        rows.e_target[r] = g[rows.pivot[r]] if rows.pivot[r] >= 0 else 0
        rows.other[r] = sum_lanes_except(g, C, rows.pivot[r])


cdef void wide_gradient(
        const BlockRows* rows, const floating* probs, const floating* weight, Py_ssize_t C,
        Py_ssize_t row_start, Py_ssize_t n_rows, double smoothing, floating* work) noexcept nogil:
    """The gradient written over wide_rows' exponentials."""
    cdef Py_ssize_t r, j
    cdef const floating* q
    cdef floating* g
    cdef floating a, b_keep, b_uniform
    cdef double keep = 1 - smoothing, uniform = smoothing / C
    for r in range(n_rows):
        g = work + r * C
        a = <floating>rows.factor[r]
        b_keep = <floating>(rows.scale[r] * keep)
        b_uniform = <floating>(rows.scale[r] * uniform)
        if rows.kept[r] == 0:
            for j in range(C):
                g[j] = 0
        elif probs != NULL:
            q = probs + (row_start + r) * C
            for j in range(C):
                g[j] = g[j] * a - weight[j] * (b_keep * q[j] + b_uniform)
        else:
            if smoothing == 0:
                for j in range(C):
                    g[j] = g[j] * a
            elif weight != NULL:
                for j in range(C):
                    g[j] = g[j] * a - b_uniform * weight[j]
            else:
                for j in range(C):
                    g[j] = g[j] * a - b_uniform
            g[rows.pivot[r]] = <floating>rows.target_grad[r]


cdef struct Hessian:
    # Where and how cross_entropy writes the diagonal hessian: the booster
    # conventions in the same pass (max(factor * h, floor)), not a pass of their own.
    void* out        # (N, C) of the logits' dtype, or NULL for none
    double factor    # 1 (exact), 2 (XGBoost's multi:softprob), K/(K-1) (LightGBM's multiclass)
    double floor     # applied after the factor and the weights; 0 for none


cdef inline double hessian_factor(const BlockRows* rows, Py_ssize_t r, double rest,
                                  double factor) noexcept nogil:
    """factor * scale * Q / s^2 of row r, s = 1 + rest the exponentials' sum around
    the row's maximum (whose e is exactly 1) and Q = (1-eps) w_y + (eps/C) sum w
    (index targets) or sum w q' (soft) its target mass; 0 for an ignored row."""
    cdef double s = 1 + rest
    return (factor * rows.scale[r] * (rows.nll_weight[r] + rows.rest_mass[r]) / (s * s)
            if rows.kept[r] != 0 else 0.0)


cdef inline floating floored(floating h, floating floor) noexcept nogil:
    """max(h, floor), NaN kept (a floor of 0 changes nothing: h >= 0)."""
    return floor if h < floor else h


cdef void wide_hessian(const BlockRows* rows, Py_ssize_t C, Py_ssize_t n_rows,
                       const floating* work, floating* hess, const Hessian* spec) noexcept nogil:
    """The diagonal hessian scale * Q p_c (1 - p_c) of the block's rows from
    wide_rows' exponentials, written to `hess` (the block's rows). Around the
    row's maximum k (e_k = 1, rest = sum of the other e): p_c (1 - p_c) =
    e_c (s - e_c) / s^2, where s - e_c >= 1 for c != k, and rest / s^2 at k, so a
    confident row (p_k -> 1) keeps the digits of 1 - p_k = rest / s. Scaled and
    floored as `spec` says."""
    cdef Py_ssize_t r, j, k, found, last = C - 1
    cdef const floating* e
    cdef floating* h
    cdef floating a, s, floor = <floating>spec.floor
    cdef double rest
    for r in range(n_rows):
        e = work + r * C
        h = hess + r * C
        if rows.kept[r] == 0:  # 0 (or the floor) even where the row's logits are NaN
            for j in range(C):
                h[j] = floor
            continue
        # The first class whose e is 1 (the last one if none is), as a minimum
        # over the row: a search loop that stops there stays scalar.
        k = last
        for j in range(C):
            found = j if e[j] == 1 else last
            k = found if found < k else k
        rest = sum_lanes_except(e, C, k)
        a = <floating>hessian_factor(rows, r, rest, spec.factor)
        s = <floating>(1 + rest)
        for j in range(C):
            h[j] = floored(a * e[j] * (s - e[j]), floor)
        h[k] = floored(<floating>(a * rest), floor)


cdef void narrow_hessian(const BlockRows* rows, Py_ssize_t C, Py_ssize_t n_rows,
                         Py_ssize_t stride, const floating* e, floating* hess,
                         const Hessian* spec) noexcept nogil:
    """wide_hessian for narrow_rows' exponentials (class c of row r at
    e[c * stride + r]), across the rows as lanes, then written in the rows' layout
    (one transposition, as narrow_gradient's)."""
    cdef Py_ssize_t n = n_rows, r, c
    cdef Py_ssize_t k[CE_MAX_BLOCK_ROWS]
    cdef double rest[CE_MAX_BLOCK_ROWS]
    cdef floating a[CE_MAX_BLOCK_ROWS]
    cdef floating s[CE_MAX_BLOCK_ROWS]
    cdef floating at_max[CE_MAX_BLOCK_ROWS]
    cdef floating h_columns[(CE_MAX_BLOCK_ROWS + NARROW_PAD) * 16]
    cdef const floating* col
    cdef floating* h
    cdef floating v, h_other, h_class, floor = <floating>spec.floor
    cdef double zero = 0
    for r in range(n):
        k[r] = -1
        rest[r] = 0
    for c in range(C - 1, -1, -1):  # the first class whose e is 1
        col = e + c * stride
        for r in range(n):
            k[r] = c if col[r] == 1 else k[r]
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            rest[r] += zero if c == k[r] else <double>col[r]
    for r in range(n):
        a[r] = <floating>hessian_factor(rows, r, rest[r], spec.factor)
        s[r] = <floating>(1 + rest[r])
        at_max[r] = <floating>(a[r] * rest[r])
    for c in range(C):
        col = e + c * stride
        h = h_columns + c * stride
        for r in range(n):
            v = col[r]
            h_other = a[r] * v * (s[r] - v)
            h_class = at_max[r] if c == k[r] else h_other
            h_class = floored(h_class, floor)
            # An ignored row is the floor even where its logits are NaN.
            h[r] = floor if rows.kept[r] == 0 else h_class
    to_rows(h_columns, n, C, stride, hess)


cdef void narrow_rows(
        BlockRows* rows, const floating* logits, const int64_t* target, const floating* probs,
        const floating* weight, double weight_total, Py_ssize_t C, Py_ssize_t row_start,
        Py_ssize_t n_rows, int64_t ignore_index, double smoothing, double grad_scale,
        const floating* grad_scale_rows, Py_ssize_t stride, floating* e) noexcept nogil:
    """The sums of rows shorter than NARROW_ROW_BYTES, with the block's rows as the
    SIMD lanes: `e` receives the exponentials class by class, class c of row r
    at e[c * stride + r] (stride >= n_rows). The sums add in class order, as
    wide_rows' do for rows this short (only the compiler's choice of fused
    multiply-adds may differ)."""
    cdef Py_ssize_t n = n_rows, r, c
    cdef floating row_max[CE_MAX_BLOCK_ROWS]
    cdef floating v
    cdef floating* col
    cdef double lane_sum[CE_MAX_BLOCK_ROWS]
    cdef double keep = 1 - smoothing, uniform = smoothing / C, tw, wc, zero = 0
    to_columns(logits + row_start * C, n, C, stride, e)
    for r in range(n):
        row_max[r] = -INFINITY
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            v = col[r]
            row_max[r] = v if v > row_max[r] else row_max[r]
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            col[r] = col[r] - row_max[r]
    for r in range(n):
        start_row(rows, r, grad_scale_rows[row_start + r] if grad_scale_rows != NULL
                  else grad_scale)
    if probs != NULL:
        # soft_target_sums across the lanes; the argmax is the first d == 0.
        for c in range(C):
            col = e + c * stride
            wc = weight[c]
            for r in range(n):
                tw = (keep * probs[(row_start + r) * C + c] + uniform) * wc
                rows.rest_dot[r] += zero if (tw == 0) | (col[r] == 0) else tw * col[r]
                rows.rest_mass[r] += tw
        for c in range(C - 1, -1, -1):
            col = e + c * stride
            for r in range(n):
                rows.pivot[r] = c if col[r] == 0 else rows.pivot[r]
    else:
        for r in range(n):
            if index_target_row(rows, r, target[row_start + r], ignore_index, weight, keep,
                                uniform * weight_total):
                rows.d_target[r] = e[rows.pivot[r] * stride + r]
        if smoothing != 0:
            # dot_lanes(weight, d) or sum_lanes(d) across the lanes.
            for r in range(n):
                lane_sum[r] = 0
            for c in range(C):
                col = e + c * stride
                if weight != NULL:
                    wc = weight[c]
                    for r in range(n):
                        lane_sum[r] += zero if (wc == 0) | (col[r] == 0) else wc * col[r]
                else:
                    for r in range(n):
                        lane_sum[r] += col[r]
            for r in range(n):
                rows.rest_dot[r] = uniform * lane_sum[r] if rows.kept[r] != 0 else zero
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            col[r] = exp_nonpos(col[r])
    for r in range(n):
        rows.e_target[r] = e[rows.pivot[r] * stride + r] if rows.pivot[r] >= 0 else 0
        rows.other[r] = 0
    for c in range(C):
        col = e + c * stride
        for r in range(n):
            rows.other[r] += zero if c == rows.pivot[r] else <double>col[r]


cdef void narrow_gradient(
        const BlockRows* rows, const floating* probs, const floating* weight, Py_ssize_t C,
        Py_ssize_t row_start, Py_ssize_t n_rows, double smoothing, Py_ssize_t stride,
        floating* e, floating* grad) noexcept nogil:
    """wide_gradient for narrow_rows' exponentials `e`, computed over them class by
    class and then written to the block's rows of `grad` (which may be the
    logits: narrow_rows has read them all)."""
    cdef Py_ssize_t n = n_rows, r, c
    cdef floating a[CE_MAX_BLOCK_ROWS]
    cdef floating b_keep[CE_MAX_BLOCK_ROWS]
    cdef floating b_uniform[CE_MAX_BLOCK_ROWS]
    cdef floating wc, zero = 0
    cdef floating* g
    cdef double keep = 1 - smoothing, uniform = smoothing / C
    cdef const floating* q = probs + row_start * C if probs != NULL else NULL
    for r in range(n):
        a[r] = <floating>rows.factor[r]
        b_keep[r] = <floating>(rows.scale[r] * keep)
        b_uniform[r] = <floating>(rows.scale[r] * uniform)
    for c in range(C):
        g = e + c * stride
        wc = weight[c] if weight != NULL else 1
        if probs != NULL:
            for r in range(n):
                g[r] = (g[r] * a[r] - wc * (b_keep[r] * q[r * C + c] + b_uniform[r])
                        if rows.kept[r] != 0 else zero)
        elif smoothing == 0:
            for r in range(n):
                g[r] = g[r] * a[r] if rows.kept[r] != 0 else zero
        else:
            for r in range(n):
                g[r] = g[r] * a[r] - b_uniform[r] * wc if rows.kept[r] != 0 else zero
    if probs == NULL:
        for r in range(n):
            if rows.kept[r] != 0:
                e[rows.pivot[r] * stride + r] = <floating>rows.target_grad[r]
    to_rows(e, n, C, stride, grad)


cdef double cross_entropy_block(
        const floating* logits, const int64_t* target, const floating* probs,
        const floating* weight, double weight_total, Py_ssize_t n_classes,
        Py_ssize_t row_start, Py_ssize_t row_stop, int64_t ignore_index, double smoothing,
        double grad_scale, const floating* grad_scale_rows,
        floating* loss_rows, floating* work, bint want_grad, const Hessian* hessian) noexcept nogil:
    """Loss (and gradient, and hessian) of rows [row_start, row_stop); returns their loss sum.

    `weight` may be NULL for index targets only (ones are passed for soft targets).
    `work` holds the block's rows: the gradient array itself (which may be the
    logits' own buffer: every pass reads an element before writing it) or scratch.
    With d = x - max(x), e = exp(d), s = sum e, a row's loss is

      index target y:  (1-eps) w_y (-log p_y) + (eps/C) sum_c w_c (log s - d_c)
      soft target q:   Q log s - T,  Q = sum w_c q'_c,  T = sum w_c q'_c d_c

    with -log p_y = log1p(other/e_y) (other = s - e_y summed without e_y) when
    p_y is large, which keeps full accuracy as p_y -> 1, and log(s) - d_y (a sum
    of two non-negative terms) otherwise. Likewise log(s) = d_k + log1p(other/e_k)
    around a pivot class k: the target, or for soft targets the row's argmax
    (d_k = 0, e_k = 1), so that a confident row's tiny loss keeps its digits. The gradient is
    grad_scale * (Q p - target weights), Q = (1-eps) w_y + (eps/C) sum w for an
    index target, and its target element is -(1-eps) w_y other/s + (eps/C)(sum w
    p_y - w_y), free of the cancellation in p_y - 1. `hessian.out` (NULL for none),
    the whole array, receives the diagonal hessian grad_scale * Q p (1 - p) (see
    wide_hessian), computed from the exponentials before the gradient
    overwrites them.

    Rows shorter than NARROW_ROW_BYTES do not fill a SIMD register, so they are
    worked with the block's rows as the lanes (narrow_rows); longer rows one
    by one (wide_rows).
    """
    cdef Py_ssize_t n_rows = row_stop - row_start, r
    cdef BlockRows rows
    cdef floating* hess = <floating*>hessian.out
    # A narrow block's columns: rows under NARROW_ROW_BYTES have fewer than 16 classes.
    cdef floating narrow_e[(CE_MAX_BLOCK_ROWS + NARROW_PAD) * 16]
    cdef bint narrow = n_classes * <Py_ssize_t>sizeof(floating) < NARROW_ROW_BYTES
    # Columns a little longer than the rows, so that the columns' starts do not
    # fall on the same cache sets (a stride of 2**k bytes made the scattered
    # stores of the transposition several times slower).
    cdef Py_ssize_t stride = n_rows + NARROW_PAD
    if narrow:
        narrow_rows(&rows, logits, target, probs, weight, weight_total, n_classes, row_start,
                    n_rows, ignore_index, smoothing, grad_scale, grad_scale_rows, stride,
                    narrow_e)
    else:
        wide_rows(&rows, logits, target, probs, weight, weight_total, n_classes, row_start,
                  n_rows, ignore_index, smoothing, grad_scale, grad_scale_rows, work)
    finish_rows(&rows, n_rows, smoothing / n_classes)
    if hess != NULL:
        if narrow:
            narrow_hessian(&rows, n_classes, n_rows, stride, narrow_e,
                           hess + row_start * n_classes, hessian)
        else:
            wide_hessian(&rows, n_classes, n_rows, work, hess + row_start * n_classes, hessian)
    if want_grad:
        if narrow:
            narrow_gradient(&rows, probs, weight, n_classes, row_start, n_rows, smoothing,
                            stride, narrow_e, work)
        else:
            wide_gradient(&rows, probs, weight, n_classes, row_start, n_rows, smoothing, work)
    if loss_rows != NULL:
        for r in range(n_rows):
            loss_rows[row_start + r] = <floating>rows.loss[r]
    return sum_lanes(rows.loss, n_rows)


def cross_entropy(logits, target, probs, weight, int64_t ignore_index, double label_smoothing,
                  int reduction, double grad_output, grad_output_rows, loss_out, grad,
                  int n_threads, *, hess=None, double hess_factor=1.0,
                  double hess_floor=0.0):
    """Softmax cross-entropy of the rows of `logits` (N, C), fused with its gradient.

    Every array is a C-contiguous ndarray of logits' dtype (float32 or float64)
    or None where optional. Exactly one of `target` (N,) int64 class indices and
    `probs` (N, C) probabilities is given; `weight` (C,) class weights.
    `loss_out` (N,) receives per-row losses for reduction "none"; `grad` (N, C),
    if given, receives the gradient of sum(grad_output * loss) (per-row
    `grad_output_rows` (N,) for "none"). `grad` may be `logits` itself; no other
    output may overlap an input. `hess` (N, C), if given, receives the diagonal
    hessian of the same sum (it needs `grad`; it may overlap nothing), times
    `hess_factor` and at least `hess_floor`. Returns the reduced loss as a NumPy scalar of
    logits' dtype (None for "none"). Raises IndexError for a class index outside [0, C) other than ignore_index.
    """
    cdef int typenum = float_typenum(logits, "logits")
    cdef Py_ssize_t n_rows, n_classes, item
    cdef const void* x
    cdef const void* probs_ptr
    cdef const void* weight_ptr
    cdef const void* rows_ptr
    cdef const int64_t* target_ptr
    cdef void* loss_ptr
    cdef void* grad_ptr
    cdef void* hess_ptr
    cdef Hessian hessian
    cdef Span inputs[5]
    cdef Span hess_span
    cdef int i
    cdef double value
    if cnp.PyArray_NDIM(<cnp.ndarray>logits) != 2:
        raise ValueError(f"logits: expected a 2-d array, got shape {logits.shape}")
    n_rows = cnp.PyArray_DIMS(<cnp.ndarray>logits)[0]
    n_classes = cnp.PyArray_DIMS(<cnp.ndarray>logits)[1]
    if n_classes == 0:
        raise ValueError("input: expected at least one class (C >= 1)")
    item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>logits)
    x = array_data(logits, "logits", typenum, n_rows, n_classes, False)
    target_ptr = <const int64_t*>array_data(target, "target", cnp.NPY_INT64, n_rows, -1, False)
    probs_ptr = array_data(probs, "probs", typenum, n_rows, n_classes, False)
    if (target_ptr == NULL) == (probs_ptr == NULL):
        raise ValueError("expected exactly one of target and probs")
    weight_ptr = array_data(weight, "weight", typenum, n_classes, -1, False)
    rows_ptr = array_data(grad_output_rows, "grad_output_rows", typenum, n_rows, -1, False)
    loss_ptr = array_data(loss_out, "loss_out", typenum, n_rows, -1, True)
    grad_ptr = array_data(grad, "grad", typenum, n_rows, n_classes, True)
    inputs[0] = Span(x, n_rows * n_classes * item)
    inputs[1] = Span(target_ptr, n_rows * 8)
    inputs[2] = Span(probs_ptr, n_rows * n_classes * item)
    inputs[3] = Span(weight_ptr, n_classes * item)
    inputs[4] = Span(rows_ptr, n_rows * item)
    check_outputs(Span(grad_ptr, n_rows * n_classes * item), Span(loss_ptr, n_rows * item),
                  inputs, 5)
    hess_ptr = array_data(hess, "hess", typenum, n_rows, n_classes, True)
    if hess_ptr != NULL and grad_ptr == NULL:
        raise ValueError("hess: needs grad")
    hess_span = Span(hess_ptr, n_rows * n_classes * item)
    for i in range(5):
        if overlap(hess_span, inputs[i]):
            raise ValueError("hess: must not overlap an operand")
    if (overlap(hess_span, Span(grad_ptr, n_rows * n_classes * item))
            or overlap(hess_span, Span(loss_ptr, n_rows * item))):
        raise ValueError("hess: must not overlap grad or loss_out")
    hessian = Hessian(out=hess_ptr, factor=hess_factor, floor=hess_floor)
    if typenum == cnp.NPY_FLOAT:
        value = cross_entropy_rows(
            <const float*>x, n_rows, n_classes, target_ptr, <const float*>probs_ptr,
            <const float*>weight_ptr, ignore_index, label_smoothing, reduction, grad_output,
            <const float*>rows_ptr, <float*>loss_ptr, <float*>grad_ptr, n_threads, &hessian)
    else:
        value = cross_entropy_rows(
            <const double*>x, n_rows, n_classes, target_ptr, <const double*>probs_ptr,
            <const double*>weight_ptr, ignore_index, label_smoothing, reduction, grad_output,
            <const double*>rows_ptr, <double*>loss_ptr, <double*>grad_ptr, n_threads, &hessian)
    return reduced_loss(value, typenum, reduction)


cdef double cross_entropy_rows(
        const floating* logits, Py_ssize_t n_rows, Py_ssize_t n_classes,
        const int64_t* target_ptr, const floating* probs_ptr, const floating* weight_ptr,
        int64_t ignore_index, double label_smoothing, int reduction, double grad_output,
        const floating* rows_scale_ptr, floating* loss_ptr, floating* grad_ptr,
        int n_threads, const Hessian* hessian=NULL) except? -1:
    """The body of cross_entropy once its arrays are checked (see there); `hessian`
    NULL for none."""
    cdef Hessian no_hessian = Hessian(out=NULL, factor=1.0, floor=0.0)
    cdef Py_ssize_t rows_per_block, n_blocks, block_elems, i, n_invalid = 0
    cdef floating* scratch = NULL
    cdef floating* ones = NULL
    cdef double* block_sums
    cdef double weight_total, denominator, scale = grad_output, total = 0
    cdef int threads
    cdef PyThreadState* gil

    if n_rows == 0:
        return NAN if reduction == REDUCTION_MEAN else 0.0
    rows_per_block = max(1, min(<Py_ssize_t>CE_MAX_BLOCK_ROWS, CE_BLOCK_ELEMS // n_classes))
    n_blocks = (n_rows + rows_per_block - 1) // rows_per_block
    block_elems = rows_per_block * n_classes
    threads = threads_for(n_rows * n_classes, n_threads, n_blocks)
    block_sums = <double*>malloc(n_blocks * sizeof(double))
    if grad_ptr == NULL:
        scratch = <floating*>malloc(threads * block_elems * sizeof(floating))
    if probs_ptr != NULL and weight_ptr == NULL:
        # Soft targets always read class weights, so their loops have no branch.
        ones = <floating*>malloc(n_classes * sizeof(floating))
    if (block_sums == NULL or (grad_ptr == NULL and scratch == NULL)
            or (probs_ptr != NULL and weight_ptr == NULL and ones == NULL)):
        free(block_sums)
        free(scratch)
        free(ones)
        raise MemoryError()

    gil = release_gil_if(n_rows * n_classes >= NOGIL_MIN_ELEMS)
    if ones != NULL:
        for i in range(n_classes):
            ones[i] = 1
        weight_ptr = ones
    # sum_c w_c: the smoothing term's weight (C without class weights).
    weight_total = sum_lanes(weight_ptr, n_classes) if weight_ptr != NULL else <double>n_classes
    if probs_ptr != NULL:
        denominator = <double>n_rows
    else:
        denominator = class_index_denominator(target_ptr, n_rows, n_classes, ignore_index,
                                              True, weight_ptr, &n_invalid)
    if reduction == REDUCTION_MEAN:
        # Every target ignored: the mean is 0/0 = nan, its gradient zero (as torch).
        scale = grad_output / denominator if denominator != 0 else 0.0
    if n_invalid == 0:
        total = cross_entropy_blocks(
            logits, target_ptr, probs_ptr, weight_ptr, weight_total, n_rows, n_classes,
            rows_per_block, n_blocks, ignore_index, label_smoothing, scale, rows_scale_ptr,
            loss_ptr, grad_ptr, scratch, block_sums, threads,
            hessian if hessian != NULL else &no_hessian)
    restore_gil(gil)
    free(block_sums)
    free(scratch)
    free(ones)
    if n_invalid != 0:
        raise_bad_class_index(target_ptr, n_rows, n_classes, ignore_index, True)
    if reduction == REDUCTION_MEAN:
        # Kept rows of total weight 0: nan, as torch, even with smoothing terms.
        return total / denominator if denominator != 0 else NAN
    if reduction == REDUCTION_SUM:
        return total
    return NAN


cdef double cross_entropy_blocks(
        const floating* logits, const int64_t* target_ptr, const floating* probs_ptr,
        const floating* weight_ptr, double weight_total, Py_ssize_t n_rows,
        Py_ssize_t n_classes, Py_ssize_t rows_per_block, Py_ssize_t n_blocks,
        int64_t ignore_index, double label_smoothing, double scale,
        const floating* rows_scale_ptr, floating* loss_ptr, floating* grad_ptr,
        floating* scratch, double* block_sums, int threads, const Hessian* hessian) noexcept nogil:
    """Every block, serially or by `threads` OpenMP threads (one fork-join), and
    the sum of their losses in block order."""
    cdef Py_ssize_t b, block_elems = rows_per_block * n_classes
    if threads == 1:
        for b in range(n_blocks):
            block_sums[b] = cross_entropy_block(
                logits, target_ptr, probs_ptr, weight_ptr, weight_total, n_classes,
                b * rows_per_block, min(n_rows, (b + 1) * rows_per_block),
                ignore_index, label_smoothing, scale, rows_scale_ptr, loss_ptr,
                grad_ptr + b * block_elems if grad_ptr != NULL else scratch,
                grad_ptr != NULL, hessian)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=threads):
            block_sums[b] = cross_entropy_block(
                logits, target_ptr, probs_ptr, weight_ptr, weight_total, n_classes,
                b * rows_per_block, min(n_rows, (b + 1) * rows_per_block),
                ignore_index, label_smoothing, scale, rows_scale_ptr, loss_ptr,
                grad_ptr + b * block_elems if grad_ptr != NULL
                else scratch + threadid() * block_elems,
                grad_ptr != NULL, hessian)
    return sum_in_order(block_sums, n_blocks)

