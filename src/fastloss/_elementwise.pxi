# The elementwise family: a loss of each element of `input` against the same
# element of `target` (and of an optional second operand `aux`), reduced over
# all elements. Included by _kernels.pxi (see there for the layout).
#
# A loss of this family is
#   1. a `<name>_point` function below: the element's loss, slope (d loss /
#      d input; for a loss with a second differentiable operand, d loss / d aux
#      too) and curvature (d^2 loss / d input^2, the exact diagonal the
#      *_grad_hess functions return), branch-free so that the loops calling it
#      vectorise (a loop that does not store the curvature lets the compiler
#      drop its computation);
#   2. a tag struct, listed in ElementTag and dispatched in element_point and
#      run_elementwise_kind, with its code in ElementwiseLoss.
# Blocks, threads, weights, reductions and checks are written once, for every
# tag: each tag gets its own copy of the block loop (a fused type), so the
# compiler vectorises each loss's loop on its own.

cdef enum:
    # Elements per block; a block's losses and slopes sit in stack buffers of
    # this size, which must stay in L1 beside the streamed inputs (1024 beat
    # 2048 and 4096 for MSE at 1e6 elements).
    ELEMENT_BLOCK = 1024

# Elementwise loss codes: fastloss.functional takes them from here.
cpdef enum ElementwiseLoss:
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


cdef struct ElementOptions:
    double delta      # huber: delta; smooth_l1: beta
    double margin     # hinge
    double alpha      # sigmoid_focal (< 0: no class weighting)
    double gamma      # sigmoid_focal
    double eps        # poisson_nll, gaussian_nll
    bint squared      # hinge
    bint log_target   # kl_div
    bint log_input    # poisson_nll
    bint full         # poisson_nll, gaussian_nll


cdef struct Elementwise:
    # One call's operands once checked; arrays of the input's float type.
    const void* target
    const void* aux                # (aux_period,) repeating along the input, or NULL
    Py_ssize_t aux_period
    const void* weight             # (weight_period,) repeating along the input, or NULL
    Py_ssize_t weight_period
    const void* grad_scale_elems   # per-element grad_output (reduction "none"), or NULL
    void* loss_elems               # per-element losses, or NULL
    void* grad                     # d / d input, or NULL
    void* grad_aux                 # d / d aux per element, or NULL
    void* hess                     # d^2 / d input^2 per element, or NULL
    Py_ssize_t n
    double scale                   # the gradient's factor: grad_output / "mean" denominator
    ElementOptions options
    # A booster's convention for `hess` (read only when hess is not NULL), applied
    # to each element's curvature before its weight: floored at hess_floor
    # (times BCE's pw y + 1 - y, which its curvature carries like a weight) when
    # hess_floored, replaced by 1 when unit_hess; then times scale * hess_factor.
    bint hess_floored
    double hess_floor
    bint unit_hess
    double hess_factor


# ------------------------------------------------------------ per-element maths
# Each writes the loss of one element, its slope d loss / d x and its curvature
# d^2 loss / d x^2 (0 where the loss is piecewise linear; at a kink, the side
# the slope takes). NaN in gives NaN out in loss and slope unless a comment
# says otherwise.

cdef inline floating sign_of(floating d) noexcept nogil:
    """torch.sign: -1, 0 or 1, and 0 for NaN."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    return one if d > zero else (-one if d < zero else zero)


cdef inline void mse_point(floating x, floating y, floating* loss, floating* slope,
                           floating* curvature) noexcept nogil:
    cdef floating d = x - y
    loss[0] = d * d
    slope[0] = (d + d)
    curvature[0] = 2


cdef inline void huber_point(floating x, floating y, floating delta,
                             floating* loss, floating* slope, floating* curvature) noexcept nogil:
    """With c = min(|d|, delta): loss c (|d| - c/2), which is exactly 0.5 d^2 where
    |d| <= delta (|d| - |d|/2 is exact) and delta (|d| - delta/2) beyond; slope
    the clipped residual, delta sign(d) at |d| == delta. Each select is written
    as IEEE min/max operand order (a < b ? a : b), so GCC emits vminps/vmaxps
    instead of compare-and-blend chains (fastloss / a plain C loop at 1e6
    float32 on AVX2: 1.3-1.4 before, 1.1-1.2 after).
    NaN stays NaN in loss and slope: a NaN |d| gives c = delta, and each clip
    passes its NaN operand through."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating d = x - y
    cdef floating abs_d = abs(d)
    cdef floating c = abs_d if abs_d < delta else delta
    loss[0] = c * (abs_d - <floating>0.5 * c)
    cdef floating upper = delta if delta < d else d
    cdef floating neg_delta = -delta
    slope[0] = neg_delta if neg_delta > upper else upper
    curvature[0] = one if abs_d <= delta else zero


cdef inline void l1_point(floating x, floating y, floating* loss, floating* slope,
                          floating* curvature) noexcept nogil:
    cdef floating d = x - y
    loss[0] = -d if d < 0 else d
    slope[0] = sign_of(d)
    curvature[0] = 0


cdef inline void smooth_l1_point(floating x, floating y, floating beta,
                                 floating* loss, floating* slope, floating* curvature) noexcept nogil:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (torch's smooth_l1_loss).
    beta = 0 never takes the quadratic side, so it is exactly L1, as in torch."""
    cdef floating one = 1  # typed: Cython writes a bare 1 as a C double
    cdef floating d = x - y
    cdef floating abs_d = -d if d < 0 else d
    cdef bint quadratic = abs_d < beta
    cdef floating d_over_beta = d / beta
    cdef floating linear_loss = abs_d - <floating>0.5 * beta
    cdef floating quadratic_loss = <floating>0.5 * d * d_over_beta
    loss[0] = quadratic_loss if quadratic else linear_loss
    # A NaN d: torch's slope is NaN for beta > 0 (its d / beta side), 0 for beta = 0
    # (l1's sign). Written as sign_of with that last case, a select of values: the
    # condition (d != d) & (beta > 0) on the outer select made GCC keep the loop scalar.
    cdef floating zero = 0
    cdef floating unsigned = d * zero if beta > zero else zero
    cdef floating sign = one if d > zero else (-one if d < zero else unsigned)
    slope[0] = d_over_beta if quadratic else sign
    cdef floating inv_beta = one / beta
    curvature[0] = inv_beta if quadratic else zero


cdef inline void bce_point(floating x, floating y, floating pos_weight,
                           floating* loss, floating* slope, floating* curvature) noexcept nogil:
    """-[pw y log sigmoid(x) + (1-y) log(1 - sigmoid(x))] and its x-derivative.

    With c = pw y + 1 - y the loss is A|x| + c log1p(exp(-|x|)), A = 1-y for
    x >= 0 and pw*y for x < 0. A*|x| is taken as 0 when A == 0, so x = +-inf
    gives the exact finite limit (torch gives nan there). The slope
    (1-y) sigmoid(x) - pw y sigmoid(-x) equals c sigmoid(x) - pw y but keeps full
    relative accuracy when it is tiny (x = 20, y = 1). The curvature is
    c sigmoid(x) sigmoid(-x): a product, never p - p^2, so it keeps its digits
    at any |x| (about exp(-|x|)) instead of cancelling to 0.
    """
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating abs_x = -x if x < zero else x
    cdef floating e = exp_nonpos(-abs_x)
    cdef floating u = one + e
    cdef floating inv_u = one / u
    # sigmoid(|x|) = 1/u and sigmoid(-|x|) = e/u: neither overflows, both exact at inf.
    cdef floating sig = inv_u if x >= zero else e * inv_u
    cdef floating sig_neg = e * inv_u if x >= zero else inv_u
    cdef floating pwy = pos_weight * y
    cdef floating c = pwy + (one - y)  # not (pwy + 1) - y: 1 - y is exact for y near 1
    cdef floating linear = (one - y) if x >= zero else pwy
    loss[0] = (zero if linear == zero else linear * abs_x) + c * log1p_unit(e, u, inv_u)
    slope[0] = (one - y) * sig - pwy * sig_neg
    curvature[0] = c * (sig * sig_neg)


cdef inline void soft_margin_point(floating x, floating y, floating* loss,
                                   floating* slope, floating* curvature) noexcept nogil:
    """log(1 + exp(z)), z = -y x, as max(z, 0) + log1p(exp(-|z|)): finite for
    every finite z (torch's literal formula overflows from |z| = 89 in float32,
    710 in float64). The slope is -y sigmoid(z), sigmoid taken as in bce_point;
    the curvature y^2 sigmoid(z) sigmoid(-z) = y^2 e / (1 + e)^2."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating z = -(y * x)
    cdef floating abs_z = -z if z < zero else z
    cdef floating e = exp_nonpos(-abs_z)
    cdef floating u = one + e
    cdef floating inv_u = one / u
    loss[0] = (zero if z <= zero else z) + log1p_unit(e, u, inv_u)
    slope[0] = -y * (inv_u if z >= zero else e * inv_u)
    curvature[0] = (y * y) * (e * inv_u * inv_u)


cdef inline void hinge_point(floating x, floating y, floating margin, bint squared,
                             floating* loss, floating* slope, floating* curvature) noexcept nogil:
    """max(0, h), h = margin - y x (squared: its square); the subgradient at the
    kink h = 0 is 0, as torch's relu gives. Curvature: 0, squared 2 y^2 where h > 0."""
    cdef floating zero = 0  # typed: Cython writes a bare 0 as a C double
    cdef floating h = margin - y * x
    cdef floating active = zero if h <= zero else h  # NaN stays NaN
    # At a NaN h, torch's relu passes no gradient (its mask h > 0 is false): 0.
    cdef floating dactive = -y if h > zero else zero
    loss[0] = active * active if squared else active
    slope[0] = (active + active) * dactive if squared else dactive
    cdef floating squared_curvature = (y + y) * y
    curvature[0] = squared_curvature if squared & (h > zero) else zero


cdef inline void sigmoid_focal_point(floating x, floating y, floating alpha, floating gamma,
                                     floating* loss, floating* slope, floating* curvature) noexcept nogil:
    """torchvision's sigmoid_focal_loss: a_t ce q^gamma, where ce is BCE from
    logits, q = 1 - p_t = y sigmoid(-x) + (1-y) sigmoid(x) and
    a_t = alpha y + (1-alpha)(1-y) (1 for alpha < 0). With dq/dx = (1-2y) p(1-p),
    the slope is a_t q^gamma [(p - y) + gamma (1-2y) ce p(1-p)/q]. Every factor
    comes from exp(-|x|), so nothing overflows at any logit; p(1-p)/q <= 1, and
    it is 0 where q underflows to 0 (where q^gamma is 0 too). With s = p(1-p),
    r = s/q, k = 1-2y and ds/dx = s (1-2p), the curvature is

      a_t q^gamma [s + 2 gamma k (p-y) r + gamma ce k r ((gamma-1) k r + (1-2p))]

    (focal loss is not convex: it is negative for some confident elements)."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating ce, dce, dce2, q, q_gamma, pq, a_t
    bce_point(x, y, one, &ce, &dce, &dce2)
    cdef floating abs_x = -x if x < zero else x
    cdef floating e = exp_nonpos(-abs_x)
    cdef floating inv_u = one / (one + e)
    cdef floating sig = inv_u if x >= zero else e * inv_u
    cdef floating sig_neg = e * inv_u if x >= zero else inv_u
    q = y * sig_neg + (one - y) * sig
    q_gamma = pow_unit(q, gamma)
    pq = sig * sig_neg
    cdef floating weighted = alpha * y + (one - alpha) * (one - y)
    a_t = weighted if alpha >= zero else one
    # q underflows to 0 only where p(1-p) does: the ratio is then 0.
    cdef floating ratio = pq / (q if q > zero else one)
    loss[0] = a_t * ce * q_gamma
    cdef floating k = one - y - y
    slope[0] = a_t * q_gamma * (dce + gamma * k * ce * ratio)
    curvature[0] = a_t * q_gamma * (pq + gamma * k * ratio * ((dce + dce) + ce * (
        (gamma - one) * k * ratio + (sig_neg - sig))))


cdef inline void binary_cross_entropy_point(floating x, floating y, floating* loss,
                                            floating* slope, floating* curvature) noexcept nogil:
    """torch's binary_cross_entropy of a probability x: each log clamped at -100,
    log(1 - x) as log1p(-x); the slope torch's (x - y) / max((1 - x) x, 1e-12);
    the curvature that of the unclamped loss, y / x^2 + (1 - y) / (1 - x)^2."""
    cdef floating one = 1  # typed: Cython writes a bare 1 as a C double
    cdef floating floor = -100
    cdef floating log_x = log_nonneg(x)
    cdef floating log_1mx = log1p_any(-x)
    log_x = floor if log_x < floor else log_x
    log_1mx = floor if log_1mx < floor else log_1mx
    loss[0] = (y - one) * log_1mx - y * log_x
    cdef floating variance = (one - x) * x
    # torch's floor is the float 1e-12 (9.99999996e-13), in float64 too.
    cdef floating floor_curvature = <floating><float>1e-12
    slope[0] = (x - y) / (floor_curvature if variance < floor_curvature else variance)
    cdef floating one_mx = one - x
    curvature[0] = y / (x * x) + (one - y) / (one_mx * one_mx)


cdef inline void kl_div_point(floating x, floating y, bint log_target, floating* loss,
                              floating* slope, floating* curvature) noexcept nogil:
    """x = log q. y p: y (log y - x), where a target of 0 contributes exactly 0
    (even at x = -inf, where torch's 0 * inf gives NaN); log_target, y = log p:
    exp(y) (y - x). The slope is -p, the curvature 0 (the loss is linear in x).
    log_target is a constant of the loss's tag (see element_point): one exp or
    one log per element, not both."""
    cdef floating zero = 0  # typed: Cython writes a bare 0 as a C double
    cdef floating p, log_p
    if log_target:
        p = exp_any(y)
        log_p = y
    else:
        p = y
        log_p = log_nonneg(y)
    cdef floating term = p * (log_p - x)
    loss[0] = zero if p == zero else term
    slope[0] = -p
    curvature[0] = 0


cdef inline void msle_point(floating x, floating y, floating* loss, floating* slope,
                            floating* curvature) noexcept nogil:
    """Keras's mean squared logarithmic error: r = log1p(max(x, 1e-7)) -
    log1p(max(y, 1e-7)), loss r^2, slope 2 r / (1 + x) and curvature
    2 (1 - r) / (1 + x)^2 where x is not clamped, and both 0 where it is (x < 1e-7).
    The curvature is negative where r > 1: MSLE is not convex in x."""
    cdef floating eps = <floating>1e-7, zero = 0, one = 1
    cdef floating x_clamped = eps if x < eps else x  # NaN stays NaN
    cdef floating y_clamped = eps if y < eps else y
    cdef floating r = log1p_nonneg(x_clamped) - log1p_nonneg(y_clamped)
    loss[0] = r * r
    cdef floating one_px = one + x_clamped
    cdef floating active_slope = (r + r) / one_px
    cdef floating active_curvature = (one - r + one - r) / (one_px * one_px)
    # (a NaN x is not >= eps: slope 0, as the reference's where(x >= eps, ...))
    slope[0] = active_slope if x >= eps else zero
    curvature[0] = active_curvature if x >= eps else zero


cdef inline void log_cosh_point(floating x, floating y, floating* loss, floating* slope,
                                floating* curvature) noexcept nogil:
    """log(cosh(d)), d = x - y, and its slope tanh(d), never overflowing. For
    |d| >= 1/2: |d| + log1p(exp(-2|d|)) - log 2 and (1 - e)/(1 + e), e = exp(-2|d|).
    Below, that sum cancels to about d^2/2, so with S = sinh(|d|/2) (a series):
    log1p(2 S^2) (cosh - 1 = 2 S^2) and 2 S sqrt(1 + S^2) / (1 + 2 S^2). The
    curvature 1 - tanh(d)^2 = 1/cosh(d)^2 is taken as 4 e / (1 + e)^2 and
    1 / (1 + 2 S^2)^2, never as a difference (which would be 0 from |d| = 19)."""
    cdef floating one = 1, zero = 0, half = <floating>0.5  # typed: bare literals are C doubles
    cdef floating d = x - y
    cdef floating a = -d if d < zero else d
    cdef floating s = sinh_small(half * a)
    # 2 S^2 feeds three sums: through a select GCC cannot fuse it into them (as
    # multiply-adds), which it did in the vector loop and not in its scalar tail,
    # so an element's bits depended on where in the block it fell.
    cdef floating two_s2_product = (s + s) * s
    cdef floating two_s2 = zero if two_s2_product < zero else two_s2_product
    cdef floating e = exp_nonpos(-(a + a))
    cdef floating u = one + e
    cdef floating inv_u = one / u
    cdef bint small = a < half
    cdef floating t_small = (s + s) * sqrt(one + s * s) / (one + two_s2)
    cdef floating t_large = (one - e) * inv_u
    cdef floating loss_small = log1p_nonneg(two_s2)
    cdef floating loss_large = a + log1p_unit(e, u, inv_u) - <floating>0.6931471805599453
    cdef floating t = t_small if small else t_large
    loss[0] = loss_small if small else loss_large
    slope[0] = -t if d < zero else (t if d == d else d)
    cdef floating inv_cosh = one / (one + two_s2)
    cdef floating curvature_small = inv_cosh * inv_cosh
    cdef floating curvature_large = (e + e + e + e) * (inv_u * inv_u)
    curvature[0] = curvature_small if small else curvature_large


cdef inline void poisson_nll_point(floating x, floating y, bint log_input, bint full,
                                   floating eps, floating* loss, floating* slope,
                                   floating* curvature) noexcept nogil:
    """torch's poisson_nll_loss: exp(x) - y x (log_input), else x - y log(x + eps);
    full adds Stirling's y log y - y + log(2 pi y)/2 where y > 1 (it does not
    depend on x), taken as (y + 1/2) log y - y + log(2 pi)/2 (one log). Curvature:
    exp(x) (log_input), else y / (x + eps)^2. log_input is a constant of the
    loss's tag (see element_point), so that each choice computes only its terms."""
    cdef floating one = 1, zero = 0, half = <floating>0.5  # typed: bare literals are C doubles
    cdef floating rate, shifted
    if log_input:
        rate = exp_any(x)
        loss[0] = rate - y * x
        slope[0] = rate - y
        curvature[0] = rate
    else:
        shifted = x + eps
        loss[0] = x - y * log_nonneg(shifted)
        slope[0] = one - y / shifted
        curvature[0] = y / (shifted * shifted)
    cdef floating stirling = (y + half) * log_nonneg(y) - y + <floating>0.9189385332046727
    loss[0] = loss[0] + (zero if (y <= one) | (not full) else stirling)


cdef inline void gaussian_nll_point(floating x, floating y, floating var, bint full, floating eps,
                                    floating* loss, floating* slope, floating* curvature,
                                    floating* slope_var) noexcept nogil:
    """torch's gaussian_nll_loss: (log v + d^2 / v) / 2 (+ log(2 pi)/2 if full),
    d = x - y, v = max(var, eps). torch clamps var without recording it, so the
    var-slope is the derivative at v, (1/v - d^2/v^2) / 2, even where clamped.
    The curvature in x is 1/v."""
    cdef floating half = <floating>0.5, one = 1, zero = 0  # typed: bare literals are C doubles
    cdef floating v = eps if var < eps else var
    cdef floating d = x - y
    cdef floating inv_v = one / v
    # d / v, not d * inv_v: 1/v overflows for a subnormal v (with eps = 0), and
    # 0 * inf would make the loss of d = 0 NaN where torch's d^2 / v is 0.
    cdef floating d_over_v = d / v
    loss[0] = half * (log_nonneg(v) + d * d_over_v) + (
        <floating>0.9189385332046727 if full else zero)
    slope[0] = d_over_v
    curvature[0] = inv_v
    # The two terms of the var-slope cancel where d^2 is close to v. In float32 they
    # are taken in double from the exact difference x - y, as the reference does:
    # float32 terms lost up to 5e-5 relative of a result 1000x smaller than them.
    cdef double v_wide = v, d_wide = <double>x - <double>y, d_over_v_wide
    if floating is float:
        d_over_v_wide = d_wide / v_wide
        slope_var[0] = <floating>(0.5 * (1.0 / v_wide - d_over_v_wide * d_over_v_wide))
    else:
        slope_var[0] = half * (inv_v - d_over_v * d_over_v)


# ---------------------------------------------------------------- the registry
# One empty struct per loss: each tag makes the block loop a separate C function.
# An option that chooses which terms a loss computes (kl_div's log_target,
# poisson_nll's log_input) gives it a tag per choice: as a select in one loop,
# every choice's exp and logs would be computed for every element.

cdef struct MseTag:
    char unused
cdef struct HuberTag:
    char unused
cdef struct BceWithLogitsTag:
    char unused
cdef struct L1Tag:
    char unused
cdef struct SmoothL1Tag:
    char unused
cdef struct SoftMarginTag:
    char unused
cdef struct HingeTag:
    char unused
cdef struct SigmoidFocalTag:
    char unused
cdef struct BinaryCrossEntropyTag:
    char unused
cdef struct KlDivTag:
    char unused
cdef struct KlDivLogTargetTag:
    char unused
cdef struct MsleTag:
    char unused
cdef struct LogCoshTag:
    char unused
cdef struct PoissonNllTag:
    char unused
cdef struct PoissonNllRateTag:
    char unused
cdef struct GaussianNllTag:
    char unused

ctypedef fused ElementTag:
    MseTag
    HuberTag
    BceWithLogitsTag
    L1Tag
    SmoothL1Tag
    SoftMarginTag
    HingeTag
    SigmoidFocalTag
    BinaryCrossEntropyTag
    KlDivTag
    KlDivLogTargetTag
    MsleTag
    LogCoshTag
    PoissonNllTag
    PoissonNllRateTag
    GaussianNllTag


cdef inline void element_point(const ElementTag* tag, floating x, floating y, floating aux,
                               const ElementOptions* o, floating* loss, floating* slope,
                               floating* curvature, floating* slope_aux) noexcept nogil:
    """The loss of `tag` at one element; `aux` is BCE's pos_weight or Gaussian
    NLL's var (1 where a loss has none), `slope_aux` d loss / d aux (Gaussian NLL
    only). Resolved at compile time: each tag's loop calls its own maths."""
    if ElementTag is MseTag:
        mse_point(x, y, loss, slope, curvature)
    elif ElementTag is HuberTag:
        huber_point(x, y, <floating>o.delta, loss, slope, curvature)
    elif ElementTag is BceWithLogitsTag:
        bce_point(x, y, aux, loss, slope, curvature)
    elif ElementTag is L1Tag:
        l1_point(x, y, loss, slope, curvature)
    elif ElementTag is SmoothL1Tag:
        smooth_l1_point(x, y, <floating>o.delta, loss, slope, curvature)
    elif ElementTag is SoftMarginTag:
        soft_margin_point(x, y, loss, slope, curvature)
    elif ElementTag is HingeTag:
        hinge_point(x, y, <floating>o.margin, o.squared, loss, slope, curvature)
    elif ElementTag is SigmoidFocalTag:
        sigmoid_focal_point(x, y, <floating>o.alpha, <floating>o.gamma, loss, slope, curvature)
    elif ElementTag is BinaryCrossEntropyTag:
        binary_cross_entropy_point(x, y, loss, slope, curvature)
    elif ElementTag is KlDivTag:
        kl_div_point(x, y, False, loss, slope, curvature)
    elif ElementTag is KlDivLogTargetTag:
        kl_div_point(x, y, True, loss, slope, curvature)
    elif ElementTag is MsleTag:
        msle_point(x, y, loss, slope, curvature)
    elif ElementTag is LogCoshTag:
        log_cosh_point(x, y, loss, slope, curvature)
    elif ElementTag is PoissonNllTag:
        poisson_nll_point(x, y, True, o.full, <floating>o.eps, loss, slope, curvature)
    elif ElementTag is PoissonNllRateTag:
        poisson_nll_point(x, y, False, o.full, <floating>o.eps, loss, slope, curvature)
    elif ElementTag is GaussianNllTag:
        gaussian_nll_point(x, y, aux, o.full, <floating>o.eps, loss, slope, curvature, slope_aux)


cdef inline floating booster_curvature(const ElementTag* tag, floating curvature, floating y,
                                       floating aux, bint floored, floating floor,
                                       bint unit) noexcept nogil:
    """An element's curvature under a booster convention (see Elementwise): each
    step a select of values computed before it, so the loop stays vectorised."""
    cdef floating one = 1  # typed: Cython writes a bare 1 as a C double
    cdef floating factor
    if ElementTag is BceWithLogitsTag:
        factor = aux * y + (one - y)  # bce_point's c: its curvature is c p (1 - p)
    else:
        factor = one
    cdef floating floor_value = floor * factor
    cdef floating raised = floor_value if floor_value > curvature else curvature
    cdef floating adjusted = raised if floored else curvature
    return one if unit else adjusted


cdef inline bint in_domain(const ElementTag* tag, floating x) noexcept nogil:
    """Whether `tag` is defined at input x: only binary_cross_entropy restricts
    it (probabilities in [0, 1]; NaN is not one, as in torch)."""
    if ElementTag is BinaryCrossEntropyTag:
        return (x >= 0) & (x <= 1)
    else:
        return True


cdef double run_elementwise_kind(ElementwiseLoss kind, const floating* x,
                                 const Elementwise* call, int n_threads) except? -1:
    """run_elementwise for the tag of `kind`."""
    if kind == MSE:
        return run_elementwise(<const MseTag*>NULL, x, call, n_threads)
    if kind == HUBER:
        return run_elementwise(<const HuberTag*>NULL, x, call, n_threads)
    if kind == BCE_WITH_LOGITS:
        return run_elementwise(<const BceWithLogitsTag*>NULL, x, call, n_threads)
    if kind == L1:
        return run_elementwise(<const L1Tag*>NULL, x, call, n_threads)
    if kind == SMOOTH_L1:
        return run_elementwise(<const SmoothL1Tag*>NULL, x, call, n_threads)
    if kind == SOFT_MARGIN:
        return run_elementwise(<const SoftMarginTag*>NULL, x, call, n_threads)
    if kind == HINGE:
        return run_elementwise(<const HingeTag*>NULL, x, call, n_threads)
    if kind == SIGMOID_FOCAL:
        return run_elementwise(<const SigmoidFocalTag*>NULL, x, call, n_threads)
    if kind == BINARY_CROSS_ENTROPY:
        return run_elementwise(<const BinaryCrossEntropyTag*>NULL, x, call, n_threads)
    if kind == KL_DIV and call.options.log_target:
        return run_elementwise(<const KlDivLogTargetTag*>NULL, x, call, n_threads)
    if kind == KL_DIV:
        return run_elementwise(<const KlDivTag*>NULL, x, call, n_threads)
    if kind == MSLE:
        return run_elementwise(<const MsleTag*>NULL, x, call, n_threads)
    if kind == LOG_COSH:
        return run_elementwise(<const LogCoshTag*>NULL, x, call, n_threads)
    if kind == POISSON_NLL and call.options.log_input:
        return run_elementwise(<const PoissonNllTag*>NULL, x, call, n_threads)
    if kind == POISSON_NLL:
        return run_elementwise(<const PoissonNllRateTag*>NULL, x, call, n_threads)
    if kind == GAUSSIAN_NLL:
        return run_elementwise(<const GaussianNllTag*>NULL, x, call, n_threads)
    raise ValueError(f"kind: unknown elementwise loss {kind}")


# --------------------------------------------------------------- the machinery

cdef inline Py_ssize_t segment_stop(Py_ssize_t i, Py_ssize_t stop, Py_ssize_t period) noexcept nogil:
    """End of the run from element i that stays inside one period of a repeating operand."""
    return min(stop, (i // period + 1) * period)


cdef double lane_sum_block(const ElementTag* tag, const floating* xs, const floating* ys,
                           Py_ssize_t n, const ElementOptions* o, floating scale,
                           floating* slopes) noexcept nogil:
    """elementwise_block without per-element losses, weights or aux: each loss goes
    straight into sum_lanes' lane sums (same order, same bits) instead of through
    a buffer summed afterwards: 1.2-1.3x faster for MSE at 1e6 elements and
    1.05-1.1x at 1e7, where it is a memory-bound pass."""
    cdef double acc[LANES]
    cdef double total = 0
    cdef floating loss, slope, curvature, slope_aux, one = 1
    cdef Py_ssize_t i = 0, lane
    if n >= LANES:
        for lane in range(LANES):
            element_point(tag, xs[lane], ys[lane], one, o, &loss, &slope, &curvature,
                          &slope_aux)
            slopes[lane] = slope * scale
            acc[lane] = loss
        i = LANES
        while i + LANES <= n:
            for lane in range(LANES):
                element_point(tag, xs[i + lane], ys[i + lane], one, o, &loss, &slope, &curvature,
                          &slope_aux)
                slopes[i + lane] = slope * scale
                acc[lane] += loss
            i += LANES
        total = combine_lanes(acc)
    while i < n:
        element_point(tag, xs[i], ys[i], one, o, &loss, &slope, &curvature,
                          &slope_aux)
        slopes[i] = slope * scale
        total += loss
        i += 1
    return total


cdef double elementwise_block(const ElementTag* tag, const floating* x, const Elementwise* call,
                              Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Loss (and gradients) of elements [start, stop); returns their loss sum.

    Each step is its own branch-free loop over the block so that it vectorises:
    the loss and scaled slopes, then (when given) weights and per-element factors.
    `aux` and `weight` repeat with their period (the input's last dimension, or
    the whole input), walked in runs that stay inside one period so that every
    inner loop is contiguous.
    """
    cdef floating loss_buffer[ELEMENT_BLOCK]
    cdef floating slope_buffer[ELEMENT_BLOCK]
    cdef floating slope_aux_buffer[ELEMENT_BLOCK]
    cdef floating curvature_buffer[ELEMENT_BLOCK]
    cdef const floating* y = <const floating*>call.target
    cdef const floating* aux = <const floating*>call.aux
    cdef const floating* weight = <const floating*>call.weight
    cdef const floating* elems_scale = <const floating*>call.grad_scale_elems
    cdef floating* loss_elems = <floating*>call.loss_elems
    cdef floating* grad = <floating*>call.grad
    cdef floating* grad_aux = <floating*>call.grad_aux
    cdef floating* losses = loss_elems + start if loss_elems != NULL else loss_buffer
    cdef floating* slopes = grad + start if grad != NULL else slope_buffer
    cdef floating* slopes_aux = grad_aux + start if grad_aux != NULL else slope_aux_buffer
    cdef floating* hess = <floating*>call.hess
    # Without `hess` the curvatures go to a buffer nobody reads (the plain
    # calls take lane_sum_block, which drops them).
    cdef floating* curvatures = hess + start if hess != NULL else curvature_buffer
    cdef ElementOptions o = call.options
    # A per-element factor is applied in a pass of its own (reduction "none" only).
    cdef floating scale = 1 if elems_scale != NULL else <floating>call.scale
    cdef floating slope, curvature, slope_aux, one = 1
    cdef bint floored = False, unit = False
    cdef floating floor = 0, hess_scale = scale
    if hess != NULL:
        floored, floor, unit = call.hess_floored, <floating>call.hess_floor, call.unit_hess
        hess_scale = scale * <floating>call.hess_factor
    cdef Py_ssize_t n = stop - start, i, run, run_stop, offset

    if loss_elems == NULL and weight == NULL and aux == NULL and hess == NULL:
        return lane_sum_block(tag, x + start, y + start, n, &o, scale, slopes)
    if aux == NULL:
        for i in range(n):
            element_point(tag, x[start + i], y[start + i], one, &o, &losses[i], &slope,
                          &curvature, &slope_aux)
            slopes[i] = slope * scale
            curvatures[i] = booster_curvature(tag, curvature, y[start + i], one, floored, floor,
                                              unit) * hess_scale
    else:
        # The losses and curvatures go to the block's own buffers first. With two
        # more outputs of unknown address the loop would need more run-time alias
        # checks than GCC makes (10), and it stayed scalar: Gaussian NLL ran at the
        # baseline's speed on every tier.
        run = start
        while run < stop:
            run_stop = segment_stop(run, stop, call.aux_period)
            offset = run % call.aux_period - run
            for i in range(run, run_stop):
                element_point(tag, x[i], y[i], aux[i + offset], &o, &loss_buffer[i - start],
                              &slope, &curvature, &slope_aux)
                slopes[i - start] = slope * scale
                curvature_buffer[i - start] = booster_curvature(
                    tag, curvature, y[i], aux[i + offset], floored, floor, unit) * hess_scale
                if ElementTag is GaussianNllTag:
                    slopes_aux[i - start] = slope_aux * scale
            run = run_stop
        if losses != loss_buffer:
            memcpy(losses, loss_buffer, n * sizeof(floating))
        if curvatures != curvature_buffer:
            memcpy(curvatures, curvature_buffer, n * sizeof(floating))
    if weight != NULL:
        run = start
        while run < stop:
            run_stop = segment_stop(run, stop, call.weight_period)
            offset = run % call.weight_period - run
            for i in range(run, run_stop):
                losses[i - start] = weight[i + offset] * losses[i - start]
                slopes[i - start] = weight[i + offset] * slopes[i - start]
                if ElementTag is GaussianNllTag:
                    slopes_aux[i - start] = weight[i + offset] * slopes_aux[i - start]
            if hess != NULL:
                for i in range(run, run_stop):
                    curvatures[i - start] = weight[i + offset] * curvatures[i - start]
            run = run_stop
    if elems_scale != NULL:
        for i in range(n):
            slopes[i] = slopes[i] * elems_scale[start + i]
            if ElementTag is GaussianNllTag:
                slopes_aux[i] = slopes_aux[i] * elems_scale[start + i]
        if hess != NULL:
            for i in range(n):
                curvatures[i] = curvatures[i] * elems_scale[start + i]
    return sum_lanes(losses, n)


cdef double elementwise_blocks(const ElementTag* tag, const floating* x, const Elementwise* call,
                               Py_ssize_t n_blocks, double* block_sums, int threads) noexcept nogil:
    """Every block, serially or by `threads` OpenMP threads (one fork-join), and
    the sum of their losses in block order."""
    cdef Py_ssize_t b
    if threads == 1:
        for b in range(n_blocks):
            block_sums[b] = elementwise_block(tag, x, call, b * ELEMENT_BLOCK,
                                              min(call.n, (b + 1) * ELEMENT_BLOCK))
    else:
        for b in prange(n_blocks, schedule="static", num_threads=threads):
            block_sums[b] = elementwise_block(tag, x, call, b * ELEMENT_BLOCK,
                                              min(call.n, (b + 1) * ELEMENT_BLOCK))
    return sum_in_order(block_sums, n_blocks)


cdef double run_elementwise(const ElementTag* tag, const floating* x, const Elementwise* call,
                            int n_threads) except? -1:
    """The sum of the losses of a checked call (n > 0), its outputs written.
    Raises ValueError, before anything is written, for an input outside the loss's domain."""
    cdef Py_ssize_t n = call.n, n_blocks = (call.n + ELEMENT_BLOCK - 1) // ELEMENT_BLOCK
    cdef Py_ssize_t i, n_invalid = 0
    cdef int threads = threads_for(n, n_threads, n_blocks)
    cdef double total
    cdef double* block_sums
    cdef PyThreadState* gil
    if ElementTag is BinaryCrossEntropyTag:
        for i in range(n):  # branch-free, so that it vectorises
            n_invalid += not in_domain(tag, x[i])
        if n_invalid != 0:
            for i in range(n):
                if not in_domain(tag, x[i]):
                    raise ValueError(f"input: expected probabilities in [0, 1], got {x[i]} "
                                     f"at flat position {i}")
    block_sums = <double*>malloc(n_blocks * sizeof(double))
    if block_sums == NULL:
        raise MemoryError()
    gil = release_gil_if(n >= NOGIL_MIN_ELEMS)
    total = elementwise_blocks(tag, x, call, n_blocks, block_sums, threads)
    restore_gil(gil)
    free(block_sums)
    return total


cdef double elementwise_elems(ElementwiseLoss kind, const floating* x, Elementwise* call,
                              int reduction, double denominator, double grad_output,
                              int n_threads) except? -1:
    """The reduced loss of a checked call ("mean" divides by `denominator`: NaN,
    with a zero gradient, when it is 0); NaN for reduction "none". No elements
    sum to 0, so their "mean" is 0 too where the denominator is not (a multilabel
    "sum" divides by the class count)."""
    cdef double total = 0
    call.scale = grad_output
    if reduction == REDUCTION_MEAN:
        call.scale = grad_output / denominator if denominator != 0 else 0.0
    if call.n != 0:
        total = run_elementwise_kind(kind, x, call, n_threads)
    if reduction == REDUCTION_MEAN:
        return total / denominator if denominator != 0 else NAN
    if reduction == REDUCTION_SUM:
        return total
    return NAN


def elementwise_loss(ElementwiseLoss kind, input, target, aux, Py_ssize_t aux_period, weight,
                     Py_ssize_t weight_period, int reduction, double denominator,
                     double grad_output, grad_output_elems, loss_out, grad, grad_aux,
                     int n_threads, *, hess=None, double delta=1.0, double margin=1.0, double alpha=0.25,
                     double gamma=2.0, double eps=1e-8, bint squared=False,
                     bint log_target=False, bint log_input=True, bint full=False,
                     bint hess_floored=False, double hess_floor=0.0, bint unit_hess=False,
                     double hess_factor=1.0):
    """An elementwise loss over flat `input`/`target` (n,), fused with its gradients.

    Every array is a 1-d C-contiguous ndarray of input's dtype (float32 or
    float64), or None where optional. `aux` (BCE with logits: pos_weight;
    Gaussian NLL: var) and `weight` hold one period of an operand that repeats
    along the input. `loss_out` (n,) receives per-element losses for reduction
    "none"; `grad` (n,), if given, the gradient of sum(grad_output * loss) with
    respect to input (per-element `grad_output_elems` (n,) for "none"), and
    `grad_aux` (n,) that with respect to each element's aux (Gaussian NLL; aux
    of period n). `hess` (n,), if given, receives the curvature d^2 loss / d
    input^2 per element, scaled like `grad` (grad_output, weight, "mean"), under
    a booster's convention when asked: floored at `hess_floor` before the weight
    (`hess_floored`; BCE's floor times pw y + 1 - y), 1 before the weight
    (`unit_hess`), times `hess_factor`. `grad`
    may be `input` itself; no other output may overlap an input or another output. "mean" divides by `denominator`. The keyword options are the losses'
    (ElementOptions). Returns the reduced loss as a NumPy scalar of input's
    dtype (None for "none").
    """
    cdef int typenum = float_typenum(input, "input")
    cdef Py_ssize_t n, item
    cdef const void* x
    cdef Elementwise call
    cdef Span inputs[5]
    cdef Span aux_grad_span, hess_span
    cdef double value
    cdef int i
    if cnp.PyArray_NDIM(<cnp.ndarray>input) != 1:
        raise ValueError(f"input: expected a 1-d array, got shape {input.shape}")
    n = cnp.PyArray_DIMS(<cnp.ndarray>input)[0]
    item = cnp.PyArray_ITEMSIZE(<cnp.ndarray>input)
    if n > 0 and ((weight is not None and weight_period < 1)
                  or (aux is not None and aux_period < 1)):
        raise ValueError("weight_period, aux_period: expected positive periods")
    x = array_data(input, "input", typenum, n, -1, False)
    call.n = n
    call.target = array_data(target, "target", typenum, n, -1, False)
    call.aux = array_data(aux, "aux", typenum, aux_period, -1, False)
    call.aux_period = aux_period
    call.weight = array_data(weight, "weight", typenum, weight_period, -1, False)
    call.weight_period = weight_period
    call.grad_scale_elems = array_data(grad_output_elems, "grad_output_elems", typenum, n, -1,
                                       False)
    call.loss_elems = array_data(loss_out, "loss_out", typenum, n, -1, True)
    call.grad = array_data(grad, "grad", typenum, n, -1, True)
    call.grad_aux = array_data(grad_aux, "grad_aux", typenum, n, -1, True)
    call.hess = array_data(hess, "hess", typenum, n, -1, True)
    if call.grad_aux != NULL and (kind != GAUSSIAN_NLL or aux_period != n):
        raise ValueError("grad_aux: only for Gaussian NLL with an aux of the input's size")
    inputs[0] = Span(x, n * item)
    inputs[1] = Span(call.target, n * item)
    inputs[2] = Span(call.aux, aux_period * item)
    inputs[3] = Span(call.weight, weight_period * item)
    inputs[4] = Span(call.grad_scale_elems, n * item)
    check_outputs(Span(call.grad, n * item), Span(call.loss_elems, n * item), inputs, 5)
    aux_grad_span = Span(call.grad_aux, n * item)
    for i in range(5):
        if overlap(aux_grad_span, inputs[i]):
            raise ValueError("grad_aux: must not overlap an operand")
    if overlap(aux_grad_span, Span(call.grad, n * item)) or overlap(
            aux_grad_span, Span(call.loss_elems, n * item)):
        raise ValueError("grad_aux: must not overlap grad or loss_out")
    hess_span = Span(call.hess, n * item)
    for i in range(5):
        if overlap(hess_span, inputs[i]):
            raise ValueError("hess: must not overlap an operand")
    if (overlap(hess_span, Span(call.grad, n * item)) or overlap(hess_span, aux_grad_span)
            or overlap(hess_span, Span(call.loss_elems, n * item))):
        raise ValueError("hess: must not overlap grad, grad_aux or loss_out")
    call.options = ElementOptions(delta=delta, margin=margin, alpha=alpha, gamma=gamma, eps=eps,
                                  squared=squared, log_target=log_target, log_input=log_input,
                                  full=full)
    call.hess_floored, call.hess_floor = hess_floored, hess_floor
    call.unit_hess, call.hess_factor = unit_hess, hess_factor
    if typenum == cnp.NPY_FLOAT:
        value = elementwise_elems(kind, <const float*>x, &call, reduction, denominator,
                                  grad_output, n_threads)
    else:
        value = elementwise_elems(kind, <const double*>x, &call, reduction, denominator,
                                  grad_output, n_threads)
    return reduced_loss(value, typenum, reduction)
