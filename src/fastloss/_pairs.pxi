# The pairs family: losses of rows of two or three embedding arrays
# (contrastive, cosine embedding, triplet margin), of two inputs element by
# element (margin ranking, hinge embedding: torch's are elementwise), and of
# rows against a table of class centres (center loss). Included by
# _kernels.pxi after _elementwise.pxi (see there for the layout).
#
# A row loss is a `<name>_row` function (the row's loss, and its gradient
# written for every row array), an element loss a `<name>_point` function;
# either has a tag in PairsTag, dispatched in pairs_block and run_pairs_kind,
# and its code in PairsLoss. Element losses run as rows of one element in
# blocks of ELEMENT_BLOCK. center_loss has a pass of its own (center_classes):
# its centre gradient is a scatter-add into (C, D) sums in double, each class
# summed in row order by one thread, so that its bits do not depend on the threads.
from libc.math cimport pow
from libc.stdlib cimport calloc

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTLOSS_PREFETCH(p) __builtin_prefetch(p)
    #define FASTLOSS_PREFETCH_WRITE(p) __builtin_prefetch(p, 1)
    #else
    #define FASTLOSS_PREFETCH(p) ((void)(p))
    #define FASTLOSS_PREFETCH_WRITE(p) ((void)(p))
    #endif
    """
    void prefetch "FASTLOSS_PREFETCH"(const void* p) noexcept nogil
    void prefetch_write "FASTLOSS_PREFETCH_WRITE"(const void* p) noexcept nogil

cdef enum:
    # center_loss reaches each row's centre and its (C, D) sums at random: it asks
    # for those of the row this many places ahead (cache lines of 64 bytes). One
    # row ahead measured best (bench --pairs --case center, and with 8192 and
    # 32768 classes); 4 was slower by 10-15% at 1024 classes (more requests in
    # flight than the core keeps, and their loop's instructions).
    CENTER_PREFETCH_ROWS = 1
    CACHE_LINE = 64
    # Row blocks hold about this many elements of the first array (at least one
    # row, at most PAIRS_MAX_BLOCK_ROWS rows): the block sums are added in order.
    PAIRS_BLOCK_ELEMS = 8192
    PAIRS_MAX_BLOCK_ROWS = 256

# Pairs loss codes: fastloss.functional takes them from here.
cpdef enum PairsLoss:
    CONTRASTIVE = 0
    COSINE_EMBEDDING = 1
    TRIPLET_MARGIN = 2
    MARGIN_RANKING = 3
    HINGE_EMBEDDING = 4

cdef enum:
    # How a distance raises |u| to p: the common p = 1, 2 keep their loops free
    # of pow (and p = 2 vectorised); p = inf is the largest |u|.
    POWER_ANY = 0
    POWER_ONE = 1
    POWER_TWO = 2
    POWER_INF = 3

# torch's cosine_embedding_loss adds this to both squared norms.
cdef double COSINE_EPS = 1e-12


cdef struct Pairs:
    # One call's operands once checked; float arrays of the input's type.
    const void* second            # (N, D) rows (margin ranking: (n,) elements), or NULL
    const void* third             # (N, D) rows (triplet negatives), or NULL
    const void* target            # (N,) floats, or NULL (triplet)
    const void* grad_scale_rows   # per-row grad_output (reduction "none"), or NULL
    void* loss_rows               # per-row losses, or NULL
    void* grad1                   # gradients of the first, second, third arrays, or NULL
    void* grad2
    void* grad3
    Py_ssize_t n_rows
    Py_ssize_t dim                # D (element losses: 1)
    Py_ssize_t rows_per_block
    double scale                  # the gradient's factor: grad_output / "mean" denominator
    double margin
    double p                      # triplet
    double eps                    # triplet; contrastive: 1e-6
    int power                     # POWER_* of p
    bint swap                     # triplet


# ------------------------------------------------------------------ distances

cdef inline double pow_abs(floating u, int power, double p) noexcept nogil:
    """|u|^p in double."""
    cdef double a
    if power == POWER_TWO:
        # u * u is |u|^2 to the bit, with no select: in distance_sum's 16 unrolled
        # lanes a select kept GCC from vectorising the squared distances.
        return <double>u * u
    a = -u if u < 0 else u
    if power == POWER_ONE:
        return a
    return pow(a, p)


cdef inline double distance_sum(const floating* a, const floating* b, floating eps, int power,
                                double p, Py_ssize_t n) noexcept nogil:
    """sum_j |a[j] - b[j] + eps|^p in double, in sum_lanes' order. u = a - b + eps
    is formed in the input's precision, as torch's pairwise_distance forms it."""
    cdef double acc[LANES]
    cdef double total = 0
    cdef Py_ssize_t i, lane
    if n < LANES:
        for i in range(n):
            total += pow_abs(a[i] - b[i] + eps, power, p)
        return total
    for lane in range(LANES):
        acc[lane] = pow_abs(a[lane] - b[lane] + eps, power, p)
    i = LANES
    while i + LANES <= n:
        for lane in range(LANES):
            acc[lane] += pow_abs(a[i + lane] - b[i + lane] + eps, power, p)
        i += LANES
    total = combine_lanes(acc)
    while i < n:
        total += pow_abs(a[i] - b[i] + eps, power, p)
        i += 1
    return total


cdef inline double products_sum(const floating* a, const floating* b,
                                Py_ssize_t n) noexcept nogil:
    """sum_j a[j] b[j] in double, in sum_lanes' order (without dot_lanes' zero
    guard: torch's sums have none). cosine_embedding_row takes its three sums
    from three calls, the second and third over rows already in L1: one
    accumulator array vectorises, while three in one loop (48 doubles) spilled to
    the stack and stayed scalar (perf: vcvtss2sd/vfmadd213sd on the stack, 112 ms
    at 65536x128 float32, 3.7x the copy)."""
    cdef double acc[LANES]
    cdef double total = 0
    cdef Py_ssize_t i, lane
    if n < LANES:
        for i in range(n):
            total += <double>a[i] * b[i]
        return total
    for lane in range(LANES):
        acc[lane] = <double>a[lane] * b[lane]
    i = LANES
    while i + LANES <= n:
        for lane in range(LANES):
            acc[lane] += <double>a[i + lane] * b[i + lane]
        i += LANES
    total = combine_lanes(acc)
    while i < n:
        total += <double>a[i] * b[i]
        i += 1
    return total


cdef inline floating distance_max(const floating* a, const floating* b, floating eps,
                                  Py_ssize_t n) noexcept nogil:
    """max_j |a[j] - b[j] + eps| (exact in the input's precision), NaN if any term
    is NaN, as torch's inf-norm."""
    cdef floating zero = 0, m = 0, u
    cdef Py_ssize_t j
    for j in range(n):
        u = a[j] - b[j] + eps
        u = -u if u < zero else u
        m = u if (u > m) | (u != u) | (m != m) else m
    return m


cdef inline floating inf_factor(const floating* a, const floating* b, floating eps, floating norm,
                                Py_ssize_t n) noexcept nogil:
    """torch's backward of the inf-norm splits the gradient evenly over the terms
    where |u_j| == ||u||_inf (or u_j is NaN): 1 / their count, and 0 at ||u|| = 0
    (as norm_factor)."""
    cdef floating zero = 0, one = 1, u
    cdef Py_ssize_t j, ties = 0
    if norm == zero:
        return zero
    for j in range(n):
        u = a[j] - b[j] + eps
        ties += ((-u if u < zero else u) == norm) | (u != u)
    return one / <floating>ties


cdef inline floating pair_distance(const floating* a, const floating* b, floating eps, int power,
                                   double p, Py_ssize_t n) noexcept nogil:
    """||a - b + eps||_p, rounded to the input's precision as torch's norm returns
    it. Each branch passes its power as a literal, so that distance_sum's loop is
    compiled for it (pow_abs's branch folded away) and vectorises for p = 1, 2."""
    if power == POWER_INF:
        return distance_max(a, b, eps, n)
    if power == POWER_TWO:
        return <floating>sqrt(distance_sum(a, b, eps, POWER_TWO, 2.0, n))
    if power == POWER_ONE:
        return <floating>distance_sum(a, b, eps, POWER_ONE, 1.0, n)
    return <floating>pow(distance_sum(a, b, eps, POWER_ANY, p, n), 1.0 / p)


cdef inline floating norm_factor(floating norm, int power, double p) noexcept nogil:
    """k in d||u||_p / du_j = sign(u_j) |u_j|^(p-1) k: 1/||u|| for p = 2 (where
    the slope is u_j k), else ||u||^(1-p); 0 at ||u|| = 0, where torch's norm
    backward masks the gradient to 0 (so d = 0 gives a zero gradient)."""
    cdef floating zero = 0, one = 1
    if norm == zero:
        return zero
    if power == POWER_TWO:
        return one / norm
    if power == POWER_ONE or power == POWER_INF:  # (inf: inf_factor's share, applied apart)
        return one
    return <floating>pow(norm, 1.0 - p)


cdef inline floating norm_slope(floating u, floating k, floating norm, int power,
                               double p) noexcept nogil:
    """d||u||_p / du_j for one u_j, given norm_factor's k; 0 where u_j = 0 (as
    torch's masked |u|^(p-1) for p < 1). For p = inf, sign(u_j) k on the terms
    that attain the norm (k: inf_factor's share), 0 elsewhere."""
    cdef floating zero = 0, a = -u if u < 0 else u
    if power == POWER_TWO:
        return u * k
    if power == POWER_ONE:
        return sign_of(u) * k
    if power == POWER_INF:
        return sign_of(u) * k if (a == norm) | (u != u) else zero
    return zero if u == zero else sign_of(u) * <floating>pow(a, p - 1.0) * k


# --------------------------------------------------------------- per-row maths
# Each returns the loss of one row and, when the gradients are wanted (g1 not
# NULL), writes the gradients of scale * loss for each of its arrays. Every
# clamp at 0 is torch's clamp_min: NaN stays NaN, and the gradient passes where
# the clamped value is >= 0, so exactly at the margin too.

cdef inline double contrastive_row(const floating* a, const floating* b, Py_ssize_t D, floating y,
                                   const Pairs* o, floating scale, floating* ga,
                                   floating* gb) noexcept nogil:
    """0.5 [y d^2 + (1 - y) max(0, margin - d)^2], d = ||a - b + eps||_2. The
    gradient is (y d - (1 - y) h) u / d with h the clamped margin term: it is
    continuous at the kink d = margin (h = 0 both sides), and 0 at d = 0."""
    cdef floating zero = 0, one = 1, eps = <floating>o.eps
    cdef floating d = pair_distance(a, b, eps, POWER_TWO, 2.0, D)
    cdef floating h = <floating>o.margin - d
    cdef floating c, g
    cdef Py_ssize_t j
    h = zero if h < zero else h  # NaN stays NaN
    if ga != NULL:
        c = scale * (y * d - (one - y) * h) * norm_factor(d, POWER_TWO, 2.0)
        for j in range(D):
            g = c * (a[j] - b[j] + eps)
            ga[j] = g
            gb[j] = -g
    return 0.5 * (<double>y * d * d + (1.0 - <double>y) * h * h)


cdef inline double cosine_embedding_row(const floating* a, const floating* b, Py_ssize_t D,
                                        floating y, const Pairs* o, floating scale,
                                        floating* ga, floating* gb) noexcept nogil:
    """torch's cosine_embedding_loss: cos = a.b / sqrt((|a|^2 + 1e-12)(|b|^2 + 1e-12));
    1 - cos for y = 1, max(0, cos - margin) for y = -1, 0 for any other y.
    The sums run in double, the rest in the input's precision as in torch (so a
    pair exactly at the margin there is at it here). d cos / da = b / den - cos a / s_a."""
    cdef floating zero = 0, one = 1, eps = <floating>COSINE_EPS
    cdef floating s_a, s_b, den, cos, z, loss = zero, slope = zero, c, inv_den, ca, cb
    cdef Py_ssize_t j
    s_a = <floating>products_sum(a, a, D) + eps
    s_b = <floating>products_sum(b, b, D) + eps
    den = sqrt(s_a * s_b)
    cos = <floating>products_sum(a, b, D) / den
    z = cos - <floating>o.margin
    if y == one:
        loss = one - cos
        slope = -one
    elif y == -one:
        loss = zero if z < zero else z
        slope = one if z >= zero else zero
    if ga != NULL:
        c = scale * slope
        inv_den = c / den
        ca = c * cos / s_a
        cb = c * cos / s_b
        for j in range(D):
            ga[j] = b[j] * inv_den - a[j] * ca
            gb[j] = a[j] * inv_den - b[j] * cb
    return loss


cdef inline double triplet_margin_row(const floating* a, const floating* pos, const floating* neg,
                                      Py_ssize_t D, const Pairs* o, floating scale, floating* ga,
                                      floating* gp, floating* gn) noexcept nogil:
    """torch's triplet_margin_loss: max(0, margin + d(a, pos) - d(a, neg)), d the
    pairwise p-distance ||x - y + eps||_p; with swap, d(a, neg) is replaced by
    min(d(a, neg), d(pos, neg)). torch's min sends the gradient to the smaller,
    half to each at a tie."""
    cdef floating zero = 0, half = 0.5, one = 1, eps = <floating>o.eps
    cdef int power = o.power
    cdef double p = o.p
    cdef floating d_pos = pair_distance(a, pos, eps, power, p, D)
    cdef floating d_neg = pair_distance(a, neg, eps, power, p, D)
    cdef floating d_swap = zero, w_neg = one, w_swap = zero, nearest = d_neg, z, c
    cdef floating k_pos, k_neg, k_swap = zero, s_pos, s_neg, s_swap = zero
    cdef Py_ssize_t j
    if o.swap:
        d_swap = pair_distance(pos, neg, eps, power, p, D)
        if d_swap < d_neg or d_swap != d_swap:  # a NaN wins torch's min
            w_neg, w_swap, nearest = zero, one, d_swap
        elif d_swap == d_neg:
            w_neg = w_swap = half
    z = (<floating>o.margin + d_pos) - nearest
    if ga != NULL:
        c = scale if z >= zero else zero
        k_pos = norm_factor(d_pos, power, p)
        k_neg = norm_factor(d_neg, power, p)
        if o.swap:
            k_swap = norm_factor(d_swap, power, p)
        if power == POWER_INF:
            k_pos = inf_factor(a, pos, eps, d_pos, D)
            k_neg = inf_factor(a, neg, eps, d_neg, D)
            if o.swap:
                k_swap = inf_factor(pos, neg, eps, d_swap, D)
        if power == POWER_TWO:
            # The slopes are u k: branch-free loops that vectorise (without swap the
            # third term is 0 * u, u finite where the distances are). One loop per
            # output: a loop writing all three has too many possible overlaps with
            # the three inputs for GCC to check at run time, and stays scalar.
            k_pos, k_neg, k_swap = c * k_pos, c * w_neg * k_neg, c * w_swap * k_swap
            for j in range(D):
                ga[j] = k_pos * (a[j] - pos[j] + eps) - k_neg * (a[j] - neg[j] + eps)
            for j in range(D):
                gp[j] = -k_pos * (a[j] - pos[j] + eps) - k_swap * (pos[j] - neg[j] + eps)
            for j in range(D):
                gn[j] = k_neg * (a[j] - neg[j] + eps) + k_swap * (pos[j] - neg[j] + eps)
            return zero if z < zero else z
        for j in range(D):
            s_pos = norm_slope(a[j] - pos[j] + eps, k_pos, d_pos, power, p)
            s_neg = w_neg * norm_slope(a[j] - neg[j] + eps, k_neg, d_neg, power, p)
            if o.swap:
                s_swap = w_swap * norm_slope(pos[j] - neg[j] + eps, k_swap, d_swap, power, p)
            ga[j] = c * (s_pos - s_neg)
            gp[j] = c * (-s_pos - s_swap)
            gn[j] = c * (s_neg + s_swap)
    return zero if z < zero else z


# ----------------------------------------------------------- per-element maths

cdef inline void margin_ranking_point(floating x1, floating x2, floating y, floating margin,
                                      floating* loss, floating* slope) noexcept nogil:
    """torch's (-y (x1 - x2) + margin).clamp_min(0); the slope is d / dx1 (d / dx2
    is its negative), -y where the clamped value is >= 0."""
    cdef floating zero = 0
    cdef floating z = -y * (x1 - x2) + margin
    loss[0] = zero if z < zero else z
    slope[0] = -y if z >= zero else zero


cdef inline void hinge_embedding_point(floating x, floating y, floating margin,
                                       floating* loss, floating* slope) noexcept nogil:
    """torch's hinge_embedding_loss: max(0, margin - x) where y != 1 plus x where
    y != -1 (so a target outside {-1, 1} gets both terms, as in torch)."""
    cdef floating zero = 0, one = 1
    cdef floating z = margin - x
    loss[0] = (zero if (y == one) | (z < zero) else z) + (zero if y == -one else x)
    slope[0] = (zero if (y == one) | (z < zero) else -one) + (zero if y == -one else one)


# ---------------------------------------------------------------- the registry

cdef struct ContrastiveTag:
    char unused
cdef struct CosineEmbeddingTag:
    char unused
cdef struct TripletMarginTag:
    char unused
cdef struct MarginRankingTag:
    char unused
cdef struct HingeEmbeddingTag:
    char unused

ctypedef fused PairsTag:
    ContrastiveTag
    CosineEmbeddingTag
    TripletMarginTag
    MarginRankingTag
    HingeEmbeddingTag


cdef double run_pairs_kind(PairsLoss kind, const floating* x, const Pairs* call,
                           int n_threads) except? -1:
    """run_pairs for the tag of `kind`."""
    if kind == CONTRASTIVE:
        return run_pairs(<const ContrastiveTag*>NULL, x, call, n_threads)
    if kind == COSINE_EMBEDDING:
        return run_pairs(<const CosineEmbeddingTag*>NULL, x, call, n_threads)
    if kind == TRIPLET_MARGIN:
        return run_pairs(<const TripletMarginTag*>NULL, x, call, n_threads)
    if kind == MARGIN_RANKING:
        return run_pairs(<const MarginRankingTag*>NULL, x, call, n_threads)
    if kind == HINGE_EMBEDDING:
        return run_pairs(<const HingeEmbeddingTag*>NULL, x, call, n_threads)
    raise ValueError(f"kind: unknown pairs loss {kind}")


# --------------------------------------------------------------- the machinery

cdef double pair_elements_block(const PairsTag* tag, const floating* x, const Pairs* call,
                                Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Loss (and gradients) of elements [start, stop) of an element loss; each
    step its own branch-free loop so that it vectorises."""
    cdef floating loss_buffer[ELEMENT_BLOCK]
    cdef floating slope_buffer[ELEMENT_BLOCK]
    cdef const floating* x2 = <const floating*>call.second
    cdef const floating* y = <const floating*>call.target
    cdef const floating* elems_scale = <const floating*>call.grad_scale_rows
    cdef floating* loss_elems = <floating*>call.loss_rows
    cdef floating* grad1 = <floating*>call.grad1
    cdef floating* grad2 = <floating*>call.grad2
    cdef floating* losses = loss_elems + start if loss_elems != NULL else loss_buffer
    cdef floating* slopes = grad1 + start if grad1 != NULL else slope_buffer
    cdef floating margin = <floating>call.margin, scale = <floating>call.scale
    cdef Py_ssize_t n = stop - start, i
    for i in range(n):
        if PairsTag is MarginRankingTag:
            margin_ranking_point(x[start + i], x2[start + i], y[start + i], margin, &losses[i],
                                 &slopes[i])
        elif PairsTag is HingeEmbeddingTag:
            hinge_embedding_point(x[start + i], y[start + i], margin, &losses[i], &slopes[i])
    if grad1 != NULL:
        if elems_scale != NULL:
            for i in range(n):
                slopes[i] = slopes[i] * elems_scale[start + i]
        else:
            for i in range(n):
                slopes[i] = slopes[i] * scale
        if grad2 != NULL:
            for i in range(n):
                grad2[start + i] = -slopes[i]
    return sum_lanes(losses, n)


cdef double pair_rows_block(const PairsTag* tag, const floating* x, const Pairs* call,
                            Py_ssize_t row_start, Py_ssize_t row_stop) noexcept nogil:
    """Loss (and gradients) of rows [row_start, row_stop) of a row loss; returns
    their loss sum (summed as sum_lanes sums, so the order depends only on the block)."""
    cdef double losses[PAIRS_MAX_BLOCK_ROWS]
    cdef const floating* second = <const floating*>call.second
    cdef const floating* third = <const floating*>call.third
    cdef const floating* y = <const floating*>call.target
    cdef const floating* rows_scale = <const floating*>call.grad_scale_rows
    cdef floating* loss_rows = <floating*>call.loss_rows
    cdef floating* grad1 = <floating*>call.grad1
    cdef floating* grad2 = <floating*>call.grad2
    cdef floating* grad3 = <floating*>call.grad3
    cdef bint want_grad = grad1 != NULL
    cdef Py_ssize_t D = call.dim, r, row, at
    cdef floating scale
    for r in range(row_stop - row_start):
        row = row_start + r
        at = row * D
        scale = rows_scale[row] if rows_scale != NULL else <floating>call.scale
        if PairsTag is ContrastiveTag:
            losses[r] = contrastive_row(x + at, second + at, D, y[row], call, scale,
                                        grad1 + at if want_grad else NULL,
                                        grad2 + at if want_grad else NULL)
        elif PairsTag is CosineEmbeddingTag:
            losses[r] = cosine_embedding_row(x + at, second + at, D, y[row], call, scale,
                                             grad1 + at if want_grad else NULL,
                                             grad2 + at if want_grad else NULL)
        elif PairsTag is TripletMarginTag:
            losses[r] = triplet_margin_row(x + at, second + at, third + at, D, call, scale,
                                           grad1 + at if want_grad else NULL,
                                           grad2 + at if want_grad else NULL,
                                           grad3 + at if want_grad else NULL)
    if loss_rows != NULL:
        for r in range(row_stop - row_start):
            loss_rows[row_start + r] = <floating>losses[r]
    return sum_lanes(losses, row_stop - row_start)


cdef inline double pairs_block(const PairsTag* tag, const floating* x, const Pairs* call,
                               Py_ssize_t b) noexcept nogil:
    """Block b of a call: its loss sum."""
    cdef Py_ssize_t start = b * call.rows_per_block
    cdef Py_ssize_t stop = min(call.n_rows, start + call.rows_per_block)
    if PairsTag is MarginRankingTag or PairsTag is HingeEmbeddingTag:
        return pair_elements_block(tag, x, call, start, stop)
    else:
        return pair_rows_block(tag, x, call, start, stop)


cdef double pairs_blocks(const PairsTag* tag, const floating* x, const Pairs* call,
                         Py_ssize_t n_blocks, double* block_sums, int threads) noexcept nogil:
    """Every block, serially or by `threads` OpenMP threads (one fork-join), and
    the sum of their losses in block order."""
    cdef Py_ssize_t b
    if threads == 1:
        for b in range(n_blocks):
            block_sums[b] = pairs_block(tag, x, call, b)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=threads):
            block_sums[b] = pairs_block(tag, x, call, b)
    return sum_in_order(block_sums, n_blocks)


cdef double run_pairs(const PairsTag* tag, const floating* x, const Pairs* call,
                      int n_threads) except? -1:
    """The sum of the losses of a checked call (N > 0), its outputs written."""
    cdef Py_ssize_t n_blocks = (call.n_rows + call.rows_per_block - 1) // call.rows_per_block
    cdef Py_ssize_t n_elems = call.n_rows * call.dim
    cdef int threads = threads_for(n_elems, n_threads, n_blocks)
    cdef double total
    cdef double* block_sums = <double*>malloc(n_blocks * sizeof(double))
    cdef PyThreadState* gil
    if block_sums == NULL:
        raise MemoryError()
    gil = release_gil_if(n_elems >= NOGIL_MIN_ELEMS)
    total = pairs_blocks(tag, x, call, n_blocks, block_sums, threads)
    restore_gil(gil)
    free(block_sums)
    return total


cdef int check_disjoint(const Span* outputs, int n_outputs, const Span* inputs,
                        int n_inputs) except -1:
    """No output overlaps an input or another output: the row kernels read every
    array again while they write the gradients."""
    cdef int i, j
    for i in range(n_outputs):
        for j in range(n_inputs):
            if overlap(outputs[i], inputs[j]):
                raise ValueError("out: a gradient must not overlap an input")
        for j in range(i):
            if overlap(outputs[i], outputs[j]):
                raise ValueError("out: the gradients must not overlap each other")
    return 0


def pairs_loss(PairsLoss kind, input, second, third, target, int reduction, double grad_output,
               grad_output_rows, loss_out, grad1, grad2, grad3, int n_threads, *,
               double margin=1.0, double p=2.0, double eps=1e-6, bint swap=False):
    """A pairs loss of `input` and its partner arrays, fused with their gradients.

    Row losses (contrastive, cosine embedding, triplet): `input`, `second` and
    (triplet) `third` are (N, D) rows, `target` (N,) (None for triplet); element
    losses (margin ranking, hinge embedding): `input`, `second` (margin ranking,
    else None) and `target` are (n,). Every array is C-contiguous of input's
    dtype. `loss_out` (N,) receives per-row losses for reduction "none";
    `grad1`..`grad3` (each array's shape, or None; all or none of the
    differentiable arrays') the gradients of sum(grad_output * loss) (per-row
    `grad_output_rows` (N,) for "none"). No output may overlap an input or
    another output. "mean" divides by N. The keyword options are the losses'
    (`p` > 0, inf included: the triplet's distance). Returns the reduced loss as a
    NumPy scalar of input's dtype (None for "none").
    """
    cdef int typenum = float_typenum(input, "input")
    cdef bint elements = kind == MARGIN_RANKING or kind == HINGE_EMBEDDING
    cdef Py_ssize_t n_rows, dim, item, size
    cdef const void* x
    cdef Pairs call
    cdef Span inputs[5]
    cdef Span outputs[4]
    cdef double value
    if kind < CONTRASTIVE or kind > HINGE_EMBEDDING:
        raise ValueError(f"kind: unknown pairs loss {kind}")
    if cnp.PyArray_NDIM(<cnp.ndarray>input) != (1 if elements else 2):
        raise ValueError(f"input: expected a {1 if elements else 2}-d array, got shape "
                         f"{input.shape}")
    n_rows = cnp.PyArray_DIMS(<cnp.ndarray>input)[0]
    dim = 1 if elements else cnp.PyArray_DIMS(<cnp.ndarray>input)[1]
    if (second is None) != (kind == HINGE_EMBEDDING):
        raise ValueError("second: required by every pairs loss but hinge embedding")
    if (third is None) != (kind != TRIPLET_MARGIN) or (target is None) != (kind == TRIPLET_MARGIN):
        raise ValueError("third, target: triplet takes a third array and no target, "
                         "the others a target")
    if kind == TRIPLET_MARGIN and not p > 0:
        raise ValueError(f"p: expected a positive value (inf included), got {p}")
    if kind != HINGE_EMBEDDING and (grad1 is None) != (grad2 is None):
        raise ValueError("grad1, grad2: give the gradients of all arrays or of none")
    if kind == TRIPLET_MARGIN and (grad1 is None) != (grad3 is None):
        raise ValueError("grad3: give the gradients of all arrays or of none")
    item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>input)
    size = n_rows * dim * item
    x = array_data(input, "input", typenum, n_rows, -1 if elements else dim, False)
    call.second = array_data(second, "second", typenum, n_rows, -1 if elements else dim, False)
    call.third = array_data(third, "third", typenum, n_rows, dim, False)
    call.target = array_data(target, "target", typenum, n_rows, -1, False)
    call.grad_scale_rows = array_data(grad_output_rows, "grad_output_rows", typenum, n_rows, -1,
                                      False)
    call.loss_rows = array_data(loss_out, "loss_out", typenum, n_rows, -1, True)
    call.grad1 = array_data(grad1, "grad1", typenum, n_rows, -1 if elements else dim, True)
    call.grad2 = array_data(grad2 if kind != HINGE_EMBEDDING else None, "grad2", typenum,
                            n_rows, -1 if elements else dim, True)
    call.grad3 = array_data(grad3 if kind == TRIPLET_MARGIN else None, "grad3", typenum, n_rows,
                            dim, True)
    inputs[0] = Span(x, size)
    inputs[1] = Span(call.second, size)
    inputs[2] = Span(call.third, size)
    inputs[3] = Span(call.target, n_rows * item)
    inputs[4] = Span(call.grad_scale_rows, n_rows * item)
    outputs[0] = Span(call.grad1, size)
    outputs[1] = Span(call.grad2, size)
    outputs[2] = Span(call.grad3, size)
    outputs[3] = Span(call.loss_rows, n_rows * item)
    check_disjoint(outputs, 4, inputs, 5)
    call.n_rows = n_rows
    call.dim = dim
    call.rows_per_block = <Py_ssize_t>ELEMENT_BLOCK if elements else max(
        1, min(<Py_ssize_t>PAIRS_MAX_BLOCK_ROWS, PAIRS_BLOCK_ELEMS // max(dim, 1)))
    call.margin = margin
    call.p = p
    call.power = (POWER_TWO if p == 2 else POWER_ONE if p == 1 else
                  POWER_INF if p == INFINITY else POWER_ANY)
    call.eps = eps
    call.swap = swap
    call.scale = grad_output
    if reduction == REDUCTION_MEAN:
        # An empty batch: the NaN mean has nothing to scale.
        call.scale = grad_output / n_rows if n_rows else 0.0
    if n_rows == 0:
        value = NAN if reduction == REDUCTION_MEAN else 0.0
    elif typenum == cnp.NPY_FLOAT:
        value = run_pairs_kind(kind, <const float*>x, &call, n_threads)
    else:
        value = run_pairs_kind(kind, <const double*>x, &call, n_threads)
    if reduction == REDUCTION_MEAN and n_rows:
        value = value / n_rows
    return reduced_loss(value, typenum, reduction)


# ------------------------------------------------------------------ center loss

cdef struct Centers:
    # One call's operands once checked.
    const int64_t* target
    void* centers                 # (C, D); written only by center_update
    const void* grad_scale_rows   # per-row grad_output (reduction "none"), or NULL
    void* loss_rows               # (N,) per-row losses, or NULL
    void* grad                    # (N, D) features' gradient, or NULL
    void* grad_centers            # (C, D) centres' gradient, or NULL
    double* losses                # (N,) per-row losses in double, for the sum
    double* acc                   # (C, D) each centre's sum over its rows, in double
    const int64_t* counts         # (C,) rows per class (center_update)
    Py_ssize_t n_rows
    Py_ssize_t dim
    Py_ssize_t n_classes
    double scale
    double alpha
    bint update


cdef inline void prefetch_lines(const void* p, size_t n, bint write) noexcept nogil:
    """Ask for every cache line of the n bytes at p, from the line holding the
    first byte: a row off the lines' alignment (numpy's arrays are 16-byte
    aligned) spans one line more than its bytes, the last one asked for too."""
    cdef size_t line = <size_t>p - <size_t>p % CACHE_LINE
    cdef size_t end = <size_t>p + n
    while line < end:
        if write:
            prefetch_write(<const void*>line)
        else:
            prefetch(<const void*>line)
        line += CACHE_LINE


cdef void center_rows(const floating* x, const Centers* call, Py_ssize_t lo,
                      Py_ssize_t hi) noexcept nogil:
    """The rows of classes [lo, hi), in row order: their losses 0.5 ||x_i - c_j||^2
    and gradients s_i (x_i - c_j), each summed into its centre's acc row (in
    double); then those classes' centre gradients -acc_j, or for center_update
    c_j -= alpha acc_j / (1 + n_j) with acc_j = sum_i (c_j - x_i).

    Every class's sum runs over its rows in row order whatever [lo, hi) is, so
    the bits do not depend on how the classes are split over threads. The rows
    are read (and their gradients written) in memory order: the features stream
    once, and only the (C, D) table and its sums (L2/L3) are reached at random,
    prefetched CENTER_PREFETCH_ROWS rows ahead (perf showed the loads of the sums
    stalling without). A row's gradient is written and added to its sums in one
    loop (the sums add the value just computed, not a reload of g). 65536x128
    float32, 1000 classes, bench --pairs: 82.5 ms (5.2x the copy) sorted by class
    with the features' rows prefetched, 24 ms (2.9x) in row order, ~20 ms with the
    prefetch (loaded machine, +-20%). 1024 classes, `OMP_WAIT_POLICY=passive python
    -m fastloss bench --pairs --case center`, five interleaved runs: 4 rows ahead
    with two loops over k 2.2-2.6x memcpy's time (~10 ms), 1 row ahead with one
    loop 2.2x (~9 ms); callgrind counts 705 instructions a row before, 640 after.
    Tried and slower here: non-temporal stores of the gradient rows (through an
    L1 buffer, whose reload stalled), and passes over groups of classes whose
    sums fit in L2 (each pass reading its rows scattered: 2-3x slower)."""
    cdef const floating* centers = <const floating*>call.centers
    cdef const floating* rows_scale = <const floating*>call.grad_scale_rows
    cdef floating* loss_rows = <floating*>call.loss_rows
    cdef floating* grad = <floating*>call.grad
    cdef floating* grad_centers = <floating*>call.grad_centers
    cdef floating* c_update = <floating*>call.centers
    cdef const floating* xi
    cdef const floating* c
    cdef floating* g
    cdef double* acc
    cdef floating s, v, zero = 0
    cdef Py_ssize_t D = call.dim, i, j, k, ahead
    cdef double loss, factor, zero_d = 0
    for i in range(call.n_rows):
        j = call.target[i]
        if j < lo or j >= hi:
            continue
        if i + CENTER_PREFETCH_ROWS < call.n_rows:
            ahead = call.target[i + CENTER_PREFETCH_ROWS] * D
            prefetch_lines(centers + ahead, D * sizeof(floating), False)
            prefetch_lines(call.acc + ahead, D * sizeof(double), True)
        xi = x + i * D
        c = centers + j * D
        acc = call.acc + j * D
        if call.update:
            for k in range(D):
                acc[k] += <double>c[k] - xi[k]
            continue
        loss = 0.5 * distance_sum(xi, c, zero, POWER_TWO, 2.0, D)
        call.losses[i] = loss
        if loss_rows != NULL:
            loss_rows[i] = <floating>loss
        if grad != NULL:
            s = rows_scale[i] if rows_scale != NULL else <floating>call.scale
            g = grad + i * D
            for k in range(D):
                v = s * (xi[k] - c[k])
                g[k] = v
                acc[k] += v
    for j in range(lo, hi):
        acc = call.acc + j * D
        if call.update:
            if call.counts[j] > 0:
                factor = call.alpha / (1.0 + call.counts[j])
                for k in range(D):
                    c_update[j * D + k] = <floating>(c_update[j * D + k] - factor * acc[k])
        elif grad_centers != NULL:
            for k in range(D):
                # 0 - acc, not -acc: a class without rows gets +0, as torch's index_add.
                grad_centers[j * D + k] = <floating>(zero_d - acc[k])


cdef void center_split(const floating* x, Centers* call, int64_t* counts, Py_ssize_t* bounds,
                       int threads) noexcept nogil:
    """Count the rows of each class, then center_rows serially or, for `threads`
    OpenMP threads (one fork-join), over `threads` ranges of classes holding about
    N / threads rows each (each thread reads every target, and only its rows)."""
    cdef Py_ssize_t N = call.n_rows, C = call.n_classes, i, j, part = 1
    cdef int64_t seen = 0
    for i in range(N):
        counts[call.target[i]] += 1
    call.counts = counts
    if threads == 1:
        center_rows(x, call, 0, C)
        return
    bounds[0] = 0
    for j in range(C):
        seen += counts[j]
        if part < threads and seen * threads >= part * N:
            bounds[part] = j + 1
            part += 1
    while part <= threads:
        bounds[part] = C
        part += 1
    for i in prange(threads, schedule="static", num_threads=threads):
        center_rows(x, call, bounds[i], bounds[i + 1])


cdef int center_classes(const floating* x, Centers* call, int n_threads) except -1:
    """center_split with its buffers (the (C, D) sums in double among them), the GIL
    released for big calls."""
    cdef Py_ssize_t N = call.n_rows, C = call.n_classes, D = call.dim
    cdef int threads = threads_for(N * D, n_threads, C)
    cdef int64_t* counts = <int64_t*>calloc(max(C, 1), sizeof(int64_t))
    cdef Py_ssize_t* bounds = <Py_ssize_t*>malloc((threads + 1) * sizeof(Py_ssize_t))
    cdef double* acc = <double*>calloc(max(C * D, 1), sizeof(double))
    cdef PyThreadState* gil
    if counts == NULL or bounds == NULL or acc == NULL:
        free(counts)
        free(bounds)
        free(acc)
        raise MemoryError()
    call.acc = acc
    gil = release_gil_if(N * D >= NOGIL_MIN_ELEMS)
    center_split(x, call, counts, bounds, threads)
    restore_gil(gil)
    free(counts)
    free(bounds)
    free(acc)
    return 0


cdef int center_operands(Centers* call, int typenum, features, target, centers,
                         bint centers_writeable, const void** x) except -1:
    """Check features (N, D), target (N,) int64 in [0, C), centers (C, D) and fill `call`."""
    cdef Py_ssize_t n_invalid = 0
    if cnp.PyArray_NDIM(<cnp.ndarray>features) != 2:
        raise ValueError(f"features: expected a 2-d array, got shape {features.shape}")
    if not cnp.PyArray_Check(centers) or cnp.PyArray_NDIM(<cnp.ndarray>centers) != 2:
        raise ValueError("centers: expected a 2-d ndarray (C, D)")
    call.n_rows = cnp.PyArray_DIMS(<cnp.ndarray>features)[0]
    call.dim = cnp.PyArray_DIMS(<cnp.ndarray>features)[1]
    call.n_classes = cnp.PyArray_DIMS(<cnp.ndarray>centers)[0]
    x[0] = array_data(features, "features", typenum, call.n_rows, call.dim, False)
    call.target = <const int64_t*>array_data(target, "target", cnp.NPY_INT64, call.n_rows, -1,
                                             False)
    call.centers = array_data(centers, "centers", typenum, call.n_classes, call.dim,
                              centers_writeable)
    class_index_denominator(call.target, call.n_rows, call.n_classes, 0, False,
                            <const double*>NULL, &n_invalid)
    if n_invalid != 0:
        raise_bad_class_index(call.target, call.n_rows, call.n_classes, 0, False)
    return 0


def center_loss(features, target, centers, int reduction, double grad_output, grad_output_rows,
                loss_out, grad, grad_centers, int n_threads):
    """Center loss 0.5 ||x_i - c[t_i]||^2 of the rows of `features` (N, D), fused
    with its gradients.

    `target` (N,) int64 class indices into `centers` (C, D), both float arrays of
    features' dtype. `loss_out` (N,) receives per-row losses for reduction
    "none"; `grad` (N, D) and `grad_centers` (C, D) (both or neither) the
    gradients of sum(grad_output * loss) (per-row `grad_output_rows` (N,) for
    "none"). "mean" divides by N. The centre gradient has the same bits for
    every thread count. Raises IndexError for a class index outside [0, C).
    """
    cdef int typenum = float_typenum(features, "features")
    cdef const void* x = NULL
    cdef Centers call
    cdef Span inputs[4]
    cdef Span outputs[3]
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>features)
    cdef double total
    cdef double* losses
    center_operands(&call, typenum, features, target, centers, False, &x)
    if (grad is None) != (grad_centers is None):
        raise ValueError("grad, grad_centers: give both gradients or neither")
    call.grad_scale_rows = array_data(grad_output_rows, "grad_output_rows", typenum, call.n_rows,
                                      -1, False)
    call.loss_rows = array_data(loss_out, "loss_out", typenum, call.n_rows, -1, True)
    call.grad = array_data(grad, "grad", typenum, call.n_rows, call.dim, True)
    call.grad_centers = array_data(grad_centers, "grad_centers", typenum, call.n_classes,
                                   call.dim, True)
    inputs[0] = Span(x, call.n_rows * call.dim * item)
    inputs[1] = Span(call.target, call.n_rows * 8)
    inputs[2] = Span(call.centers, call.n_classes * call.dim * item)
    inputs[3] = Span(call.grad_scale_rows, call.n_rows * item)
    outputs[0] = Span(call.grad, call.n_rows * call.dim * item)
    outputs[1] = Span(call.grad_centers, call.n_classes * call.dim * item)
    outputs[2] = Span(call.loss_rows, call.n_rows * item)
    check_disjoint(outputs, 3, inputs, 4)
    call.update = False
    call.alpha = 0
    call.scale = grad_output
    if reduction == REDUCTION_MEAN:
        call.scale = grad_output / call.n_rows if call.n_rows else 0.0
    losses = <double*>malloc(max(call.n_rows, 1) * sizeof(double))
    if losses == NULL:
        raise MemoryError()
    call.losses = losses
    try:
        if typenum == cnp.NPY_FLOAT:
            center_classes(<const float*>x, &call, n_threads)
        else:
            center_classes(<const double*>x, &call, n_threads)
        total = sum_lanes(losses, call.n_rows)
    finally:
        free(losses)
    if reduction == REDUCTION_MEAN:
        total = total / call.n_rows if call.n_rows else NAN
    return reduced_loss(total, typenum, reduction)


def center_update(centers, features, target, double alpha, int n_threads):
    """Wen et al.'s centre update, in place: c_j -= alpha sum_{i: t_i = j} (c_j - x_i) / (1 + n_j)
    for `centers` (C, D) (writeable), `features` (N, D) of its dtype and
    `target` (N,) int64 in [0, C). Classes without rows are left as they are.
    The result has the same bits for every thread count."""
    cdef int typenum = float_typenum(centers, "centers")
    cdef const void* x = NULL
    cdef Centers call
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>centers)
    center_operands(&call, typenum, features, target, centers, True, &x)
    if (overlap(Span(call.centers, call.n_classes * call.dim * item),
                Span(x, call.n_rows * call.dim * item))
            or overlap(Span(call.centers, call.n_classes * call.dim * item),
                       Span(call.target, call.n_rows * 8))):
        raise ValueError("centers: must not overlap features or target")
    call.update = True
    call.alpha = alpha
    call.grad_scale_rows = call.loss_rows = call.grad = call.grad_centers = NULL
    call.losses = NULL
    if typenum == cnp.NPY_FLOAT:
        center_classes(<const float*>x, &call, n_threads)
    else:
        center_classes(<const double*>x, &call, n_threads)
    return centers
