# cython: language_level=3
"""Scalar maths written so that the C compiler vectorises the loops calling it.

Every function here is branch-free (ternaries become SIMD blends) and calls no
libm function, so a loop over an array of them compiles to AVX-512/AVX2/SSE2/NEON
code at whatever instruction set the module is built for. Build with
``-fno-trapping-math`` (it keeps NaN/inf semantics, unlike ``-ffast-math``) so the
compiler may evaluate both sides of a ternary. Each side of a ternary is a
value computed before it, never a call or a division: Cython writes a ternary
as if/else, and GCC turns only short branches into blends (a log or exp inside
one left the whole loop scalar, 10-20x slower).

Accuracy, checked against mpmath in tests/test_fastmath.py:
- ``exp_nonpos``: <= 2 ulp on [ln(smallest normal), 0]; below that the result
  (a subnormal, < 2.3e-308 in float64, < 1.2e-38 in float32) is flushed to 0.
- ``log1p_unit``: <= 2 ulp on [0, 1] (checked in float64; float32 to 1e-7 relative).
- ``sum_lanes``/``dot_lanes``/``max_lanes``: double accumulators in a fixed
  order, so the result does not depend on the vector width of the build.
"""
from cython cimport floating
from libc.math cimport INFINITY, NAN

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* t = x*log2(e) + 1.5*2^52 holds round(x*log2(e)) = k in its low mantissa
       bits; adding the exponent bias and shifting those bits into the exponent
       field gives 2^k (valid for -1022 <= k <= 1023). memcpy is how C spells a
       bit cast without breaking aliasing rules; compilers turn it into a move. */
    static inline double fastloss_pow2_of_shifted_d(double t) {
        uint64_t bits; memcpy(&bits, &t, sizeof bits);
        bits = (bits + 1023u) << 52;
        double r; memcpy(&r, &bits, sizeof r); return r;
    }
    /* The float version: t = x*log2(e) + 1.5*2^23, -126 <= k <= 127. */
    static inline float fastloss_pow2_of_shifted_f(float t) {
        uint32_t bits; memcpy(&bits, &t, sizeof bits);
        bits = (bits + 127u) << 23;
        float r; memcpy(&r, &bits, sizeof r); return r;
    }
    /* For a positive normal x = 2^k * m with m in [1, 2): m, and k as a floating
       value. k is made a float by the same shifter trick (exponent bits OR-ed into
       the mantissa of 2^52 + 1023, or 2^23 + 127), since SIMD int64-to-double
       conversion needs AVX-512DQ. */
    static inline double fastloss_mantissa_d(double x) {
        uint64_t bits; memcpy(&bits, &x, sizeof bits);
        bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
        double m; memcpy(&m, &bits, sizeof m); return m;
    }
    static inline double fastloss_exponent_d(double x) {
        uint64_t bits; memcpy(&bits, &x, sizeof bits);
        bits = (bits >> 52) | 0x4330000000000000ull;
        double k; memcpy(&k, &bits, sizeof k); return k - 4503599627371519.0;
    }
    static inline float fastloss_mantissa_f(float x) {
        uint32_t bits; memcpy(&bits, &x, sizeof bits);
        bits = (bits & 0x007FFFFFu) | 0x3F800000u;
        float m; memcpy(&m, &bits, sizeof m); return m;
    }
    static inline float fastloss_exponent_f(float x) {
        uint32_t bits; memcpy(&bits, &x, sizeof bits);
        bits = (bits >> 23) | 0x4B000000u;
        float k; memcpy(&k, &bits, sizeof k); return k - 8388735.0f;
    }
    """
    double pow2_of_shifted_d "fastloss_pow2_of_shifted_d"(double t) noexcept nogil
    float pow2_of_shifted_f "fastloss_pow2_of_shifted_f"(float t) noexcept nogil
    double mantissa_d "fastloss_mantissa_d"(double x) noexcept nogil
    double exponent_d "fastloss_exponent_d"(double x) noexcept nogil
    float mantissa_f "fastloss_mantissa_f"(float x) noexcept nogil
    float exponent_f "fastloss_exponent_f"(float x) noexcept nogil

# Lanes of the fixed-order accumulators: 16 doubles fill two AVX-512 registers,
# and the order of additions stays the same whatever the vector width.
cdef enum:
    LANES = 16
    # max_lanes' accumulators. GCC unrolls a loop of 16 or fewer iterations
    # completely before it vectorizes, and the unrolled selects of a maximum stay
    # scalar (16 vmaxss per 16 elements, 2.3 instructions per element at 8192x1000
    # under callgrind); a 32-iteration loop is vectorized (vmaxps). A maximum does
    # not depend on the order it is taken in, so this changes no result.
    MAX_LANES = 32


cdef inline floating exp_nonpos(floating x) noexcept nogil:
    """exp(x) for x <= 0 (the only arguments the kernels need: logits minus their
    row maximum, and -|x|). NaN gives NaN, -inf gives 0.

    Cody-Waite range reduction x = k*ln2 + r with |r| <= ln2/2, then a Taylor
    polynomial for exp(r) whose truncation error is below half an ulp (degree 13
    in double, 7 in float), scaled by 2^k built from the exponent bits.
    """
    cdef floating lowest, shifted, k, r, p, clamped
    cdef floating zero = 0  # typed: Cython writes a bare 0 or 1 as a C double
    if floating is double:
        # ln of the smallest normal double; below it exp is subnormal: flush to 0.
        lowest = -708.3964185322641
        clamped = lowest if x < lowest else x
        shifted = clamped * 1.4426950408889634 + 6755399441055744.0
        k = shifted - 6755399441055744.0
        # ln2 split so that k*LN2_HI is exact for |k| < 2^20.
        r = clamped - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10
        p = 1.6059043836821613e-10
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        p = p * pow2_of_shifted_d(shifted)
    else:
        lowest = -87.33654475
        clamped = lowest if x < lowest else x
        shifted = clamped * <float>1.44269504 + <float>12582912.0
        k = shifted - <float>12582912.0
        # 0.693359375 has 9 significant bits, so k*LN2_HI is exact for |k| <= 126.
        r = clamped - k * <float>0.693359375 - k * <float>(-2.12194440e-4)
        p = <float>1.98412698e-4
        p = p * r + <float>1.38888889e-3
        p = p * r + <float>8.33333333e-3
        p = p * r + <float>4.16666667e-2
        p = p * r + <float>0.166666667
        p = p * r + <float>0.5
        p = p * r + <float>1.0
        p = p * r + <float>1.0
        p = p * pow2_of_shifted_f(shifted)
    return zero if x < lowest else p


cdef inline floating exp_any(floating x) noexcept nogil:
    """exp(x) for any x, from one exp_nonpos: e = exp(-|x|), then e or 1/e (one
    more rounding, so <= 3 ulp). exp_nonpos(-x) flushes to 0 below ln(smallest
    normal) = -708.4 (float32: -87.3), so 1/e alone would overflow before exp
    does (709.8, 88.7): above 700 (float32: 86) it is exp(x/2)^2 instead (x/2 is
    exact; <= 6 ulp there), inf only where exp(x) overflows. NaN gives NaN."""
    cdef floating one = 1, zero = 0, half = <floating>0.5  # typed: bare literals are C doubles
    cdef floating halve_from
    if floating is double:
        halve_from = 700.0
    else:
        halve_from = 86.0
    cdef bint big = x > halve_from
    cdef floating a = -x if x > zero else x
    cdef floating e = exp_nonpos(a * half if big else a)
    cdef floating inv_e = one / e
    cdef floating r = inv_e if x > zero else e
    return r * r if big else r


cdef inline floating pow_unit(floating q, floating gamma) noexcept nogil:
    """q**gamma for q in [0, 1] and gamma >= 0 (0**0 = 1, as torch's pow): q*q
    exactly for the common gamma = 2, else exp(gamma log q), with log 0 taken as
    -1e30 so that gamma = 0 gives 1 there too. NaN gives NaN."""
    cdef floating two = 2, floor = <floating>-1e30  # typed: bare literals are C doubles
    cdef floating log_q = log_nonneg(q)
    cdef floating general = exp_nonpos(gamma * (floor if log_q < floor else log_q))
    return q * q if gamma == two else general


cdef inline floating log_reduced(floating f, floating k, floating c) noexcept nogil:
    """k*ln2 + log(1 + f) + c for f in [sqrt(1/2) - 1, sqrt(2) - 1] and a small
    correction c, as fdlibm's log: log(1 + f) from the odd series in
    s = f/(2 + f) (minimax coefficients Lg1..), with k*ln2 split in two so that
    the low part and c join the small terms first."""
    cdef floating s, s2, hfsq, R
    cdef floating two = 2  # typed: Cython writes a bare 2 as a C double
    s = f / (two + f)
    s2 = s * s
    hfsq = <floating>0.5 * f * f
    if floating is double:
        R = s2 * (6.666666666666735130e-01 + s2 * (3.999999999940941908e-01 + s2 * (
            2.857142874366239149e-01 + s2 * (2.222219843214978396e-01 + s2 * (
                1.818357216161805012e-01 + s2 * (1.531383769920937332e-01
                                                 + s2 * 1.479819860511658591e-01))))))
        return (k * 6.93147180369123816490e-01
                + (f - (hfsq - (s * (hfsq + R) + (k * 1.90821492927058770002e-10 + c)))))
    else:
        R = s2 * (<float>0.66666662693 + s2 * (<float>0.40000972152 + s2 * (
            <float>0.28498786688 + s2 * <float>0.24279078841)))
        return (k * <float>0.693359375
                + (f - (hfsq - (s * (hfsq + R) + (k * <float>(-2.12194440e-4) + c)))))


cdef inline floating log1p_unit(floating z, floating u, floating inv_u) noexcept nogil:
    """log(1 + z) for 0 <= z <= 1, given u = 1 + z and inv_u = 1/u (the BCE kernel
    needs 1/(1 + exp(-|x|)) for the sigmoid anyway, so the division is shared).

    u = 2^k * m with k in {0, 1} and m in [sqrt(1/2), sqrt(2)); the rounding
    error of 1 + z is added back as (z - (u - 1)) / u, which is what makes it
    log1p and not log(1 + z).
    """
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating k = one if u > <floating>1.4142135623730951 else zero
    cdef floating m = u * <floating>0.5 if k != zero else u
    # m - 1 is exact: m is within a factor of 2 of 1.
    return log_reduced(m - one, k, (z - (u - one)) * inv_u)


cdef inline floating log1p_finite(floating z, floating u) noexcept nogil:
    """log(1 + z) given u = 1 + z, a positive normal number: log of u by its
    exponent and mantissa, plus the rounding error of 1 + z, (z - (u - 1)) / u
    (u - 1 is exact: for u >= 1/2 by Sterbenz, and below 1/2 u = 1 + z is)."""
    cdef floating one = 1  # typed: Cython writes a bare 1 as a C double
    cdef floating m, k
    if floating is double:
        m = mantissa_d(u)
        k = exponent_d(u)
    else:
        m = mantissa_f(u)
        k = exponent_f(u)
    k = k + one if m > <floating>1.4142135623730951 else k
    m = m * <floating>0.5 if m > <floating>1.4142135623730951 else m
    return log_reduced(m - one, k, (z - (u - one)) / u)


cdef inline floating log1p_nonneg(floating z) noexcept nogil:
    """log(1 + z) for z >= 0 of any size. NaN gives NaN, +inf gives +inf."""
    cdef floating one = 1  # typed: Cython writes a bare 1 as a C double
    cdef floating u = one + z
    cdef floating r = log1p_finite(z, u)
    # NaN and +inf have no exponent and mantissa to split: they are their own log1p.
    return r if u < INFINITY else u


cdef inline floating log1p_any(floating z) noexcept nogil:
    """log(1 + z) for any z: -inf at z = -1, NaN below (log1p(-p) for a
    probability p keeps full accuracy for tiny p, where log(1 - p) does not)."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating u = one + z
    # 1 + z is 0 or a normal number: it rounds to a multiple of 2**-53 (2**-24).
    cdef floating r = log1p_finite(z, u)
    return (r if (u > zero) & (u < INFINITY)
            else (-INFINITY if u == zero else (NAN if u < zero else u)))


cdef inline floating log_normal(floating x) noexcept nogil:
    """log(x) for a positive normal x (the kernels need it for sums of exponentials,
    which are >= 1): x = 2^k * m, m moved into [sqrt(1/2), sqrt(2)). NaN gives NaN,
    +inf gives +inf."""
    cdef floating one = 1, zero = 0  # typed: Cython writes a bare 1 or 0 as a C double
    cdef floating m, k
    if floating is double:
        m = mantissa_d(x)
        k = exponent_d(x)
    else:
        m = mantissa_f(x)
        k = exponent_f(x)
    k = k + one if m > <floating>1.4142135623730951 else k
    m = m * <floating>0.5 if m > <floating>1.4142135623730951 else m
    cdef floating r = log_reduced(m - one, k, zero)
    # NaN and +inf have no exponent and mantissa to split: they are their own log.
    return r if x < INFINITY else x


cdef inline floating log_nonneg(floating x) noexcept nogil:
    """log(x) for any x >= 0, subnormals included (scaled by 2**64 into the
    normal range first): 0 gives -inf, a negative x NaN, +inf +inf, NaN NaN."""
    cdef floating zero = 0  # typed: Cython writes a bare 0 as a C double
    cdef floating smallest_normal, scaled, r
    if floating is double:
        smallest_normal = 2.2250738585072014e-308
    else:
        smallest_normal = <float>1.17549435e-38
    # 2**64 and 64 ln 2.
    scaled = x * <floating>1.8446744073709552e19
    r = (log_normal(scaled if x < smallest_normal else x)
         - (<floating>44.3614195558365 if x < smallest_normal else zero))
    return -INFINITY if x == zero else (NAN if x < zero else r)


cdef inline floating sinh_small(floating h) noexcept nogil:
    """sinh(h) for |h| <= 1/4 from its Taylor series to h**15/15! (the next
    term is below 2**-60 of the sum there)."""
    cdef floating h2 = h * h
    return h * (<floating>1.0 + h2 * (<floating>0.16666666666666666 + h2 * (
        <floating>0.008333333333333333 + h2 * (<floating>1.984126984126984e-04 + h2 * (
            <floating>2.7557319223985893e-06 + h2 * (<floating>2.505210838544172e-08 + h2 * (
                <floating>1.6059043836821613e-10 + h2 * <floating>7.647163731819816e-13)))))))


cdef inline double combine_lanes(double* acc) noexcept nogil:
    """Pairwise tree over the LANES partial sums, always in the same order."""
    cdef int lane
    for lane in range(8):
        acc[lane] += acc[lane + 8]
    for lane in range(4):
        acc[lane] += acc[lane + 4]
    for lane in range(2):
        acc[lane] += acc[lane + 2]
    return acc[0] + acc[1]


cdef inline double sum_lanes(const floating* a, Py_ssize_t n) noexcept nogil:
    """Sum of a[0:n] in double: LANES interleaved partial sums combined pairwise,
    then the tail in order; a row shorter than LANES is summed in order. The order depends
    only on n, never on the vector width of the build."""
    cdef double acc[LANES]
    cdef double total = 0
    cdef Py_ssize_t i, lane
    if n < LANES:
        for i in range(n):
            total += a[i]
        return total
    for lane in range(LANES):
        acc[lane] = a[lane]
    i = LANES
    while i + LANES <= n:
        for lane in range(LANES):
            acc[lane] += a[i + lane]
        i += LANES
    total = combine_lanes(acc)
    while i < n:
        total += a[i]
        i += 1
    return total


cdef inline double sum_lanes_except(const floating* a, Py_ssize_t n, Py_ssize_t skip) noexcept nogil:
    """Sum of a[0:n] without a[skip] (skip < 0: none), in double, in an order fixed
    by n and skip. Short rows take a fixed-length loop with a[skip] read as 0
    (no branch on where skip falls); long rows, the sums on either side of it."""
    cdef double total = 0, zero = 0
    cdef Py_ssize_t i
    if n < LANES:
        for i in range(n):
            total += zero if i == skip else <double>a[i]
        return total
    return sum_lanes(a, skip) + sum_lanes(a + skip + 1, n - skip - 1)


cdef inline double dot_lanes(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """Sum of a[i]*b[i] over i < n in double, in the order of sum_lanes. A term with
    a factor 0 is 0 even where the other is infinite: a class of weight 0
    contributes nothing (0 * log 0 = 0), nor does an infinite weight on the
    row's maximum (d = 0), as in the reference.

    The guard is written `(a == 0) | (b == 0) ? 0 : a*b` on purpose: GCC 12.2 at
    -O3 with AVX2/AVX-512 and -fno-trapping-math miscompiles the lane loop when
    it reads `a == 0 ? 0 : a*b` (tests/test_fuzz.py keeps the repro)."""
    cdef double acc[LANES]
    cdef double total = 0, zero = 0
    cdef Py_ssize_t i, lane
    if n < LANES:
        for i in range(n):
            total += zero if (a[i] == 0) | (b[i] == 0) else <double>a[i] * b[i]
        return total
    for lane in range(LANES):
        acc[lane] = zero if (a[lane] == 0) | (b[lane] == 0) else <double>a[lane] * b[lane]
    i = LANES
    while i + LANES <= n:
        for lane in range(LANES):
            acc[lane] += (zero if (a[i + lane] == 0) | (b[i + lane] == 0)
                          else <double>a[i + lane] * b[i + lane])
        i += LANES
    total = combine_lanes(acc)
    while i < n:
        total += zero if (a[i] == 0) | (b[i] == 0) else <double>a[i] * b[i]
        i += 1
    return total


cdef inline floating max_lanes(const floating* a, Py_ssize_t n) noexcept nogil:
    """Largest of a[0:n], ignoring NaN (a NaN then reaches the result through the
    exp of its difference to the maximum); -inf for n == 0 or all-NaN."""
    cdef floating acc[MAX_LANES]
    cdef floating v, best = -INFINITY
    cdef Py_ssize_t i = 0, lane
    if n >= MAX_LANES:
        for lane in range(MAX_LANES):
            acc[lane] = -INFINITY
        while i + MAX_LANES <= n:
            for lane in range(MAX_LANES):
                v = a[i + lane]
                acc[lane] = v if v > acc[lane] else acc[lane]
            i += MAX_LANES
        for lane in range(MAX_LANES):
            best = acc[lane] if acc[lane] > best else best
    while i < n:
        v = a[i]
        best = v if v > best else best
        i += 1
    return best
