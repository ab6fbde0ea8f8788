"""Bad input raises the named exception type, with a message naming the argument, never a crash.

Every check runs on the forward (``fastloss.<name>``) and the fused (``<name>_with_grad``) form
where both take the argument.
"""

import numpy as np
import pytest

import fastloss as fl

N, C = 4, 3
POINTWISE = ["binary_cross_entropy_with_logits", "mse_loss", "huber_loss"]
ALL = ["cross_entropy"] + POINTWISE


def both(name):
    """The forward and the fused function of a loss."""
    return [getattr(fl, name), getattr(fl, name + "_with_grad")]


def good_args(name, dtype=np.float64):
    """(input, target) that the loss accepts."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(dtype)
    if name == "cross_entropy":
        return x, np.array([0, 2, 1, -100])
    return x, rng.uniform(0, 1, (N, C)).astype(dtype)


def raises(exc, arg, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises exc with a message that names arg."""
    with pytest.raises(exc, match=arg):
        fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                                   np.complex128, object])
@pytest.mark.parametrize("name", ALL)
def test_input_dtype(name, dtype):
    x, t = good_args(name)
    bad = x.astype(dtype)
    for fn in both(name):
        raises(TypeError, "input", fn, bad, t)
    # a list of Python ints is an integer input too
    for fn in both(name):
        raises(TypeError, "input", fn, [[1, 2, 3]] * N, t)


def test_ce_input_ndim():
    for fn in both("cross_entropy"):
        raises(ValueError, "input", fn, np.array(1.0), np.array(0))
        raises(ValueError, "input", fn, np.zeros((N, 0)), np.zeros(N, np.int64))  # no classes


# --------------------------------------------------------------------------------------------
# target
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [C, C + 5, -1, -2, -101, 2**40])
def test_ce_class_index_out_of_range(bad):
    x, _ = good_args("cross_entropy")
    y = np.array([0, 1, bad, 2])
    for fn in both("cross_entropy"):
        raises(IndexError, "target", fn, x, y)
        raises(IndexError, "target", fn, x, y, label_smoothing=0.1, weight=np.ones(C))
        raises(IndexError, "target", fn, x, y, reduction="none")
    # unbatched and K-dim
    for fn in both("cross_entropy"):
        raises(IndexError, "target", fn, x[0], np.array(bad))
        xk = np.zeros((2, C, 2, 2))
        yk = np.zeros((2, 2, 2), np.int64)
        yk[1, 1, 0] = bad
        raises(IndexError, "target", fn, xk, yk)


def test_ce_class_index_out_of_range_other_dtypes():
    x, _ = good_args("cross_entropy")
    for y in (np.array([0, 1, 200, 2], np.uint8), np.array([0, 1, -5, 2], np.int8),
              np.array([0, 1, 2**63, 2], np.uint64), np.array([0, 1, 2**64 - 1, 2], np.uint64)):
        for fn in both("cross_entropy"):
            raises(IndexError, "target", fn, x, y)


def test_ce_ignore_index_is_not_out_of_range():
    """The negative value that is ignore_index is fine; any other is not."""
    x, _ = good_args("cross_entropy")
    y = np.array([0, -1, 1, -1])
    fl.cross_entropy(x, y, ignore_index=-1)
    fl.cross_entropy(x, np.array([0, C, 1, 2]), ignore_index=C)
    raises(IndexError, "target", fl.cross_entropy, x, y)  # default ignore_index=-100
    raises(IndexError, "target", fl.cross_entropy, x, np.array([0, -100, 1, 2]), ignore_index=-1)


def test_ce_index_error_leaves_in_place_buffer_untouched():
    x, _ = good_args("cross_entropy")
    buf = x.copy()
    raises(IndexError, "target", fl.cross_entropy_with_grad, buf, np.array([0, 1, 2, 7]),
           out=buf)
    np.testing.assert_array_equal(buf, x)


@pytest.mark.parametrize("shape", [(N + 1,), (N - 1,), (N, 1), (), (1, N)])
def test_ce_target_shape(shape):
    x, _ = good_args("cross_entropy")
    y = np.zeros(shape, np.int64)
    for fn in both("cross_entropy"):
        raises(ValueError, "target", fn, x, y)


def test_ce_target_shape_unbatched_and_kdim():
    for fn in both("cross_entropy"):
        raises(ValueError, "target", fn, np.zeros(C), np.array([0]))
        raises(ValueError, "target", fn, np.zeros((2, C, 4)), np.zeros((2, 5), np.int64))
        raises(ValueError, "target", fn, np.zeros((2, C, 4)), np.zeros((2,), np.int64))
        raises(ValueError, "target", fn, np.zeros((2, C, 4)), np.zeros((2, 4, 1), np.int64))


def test_ce_probability_target_shape():
    x, _ = good_args("cross_entropy")
    for shape in [(N, C + 1), (N + 1, C), (C, N), (1, C)]:
        for fn in both("cross_entropy"):
            raises(ValueError, "target", fn, x, np.full(shape, 1.0 / C))


def test_ce_float_target_where_indices_are_needed():
    x, _ = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        for dtype in (np.float64, np.float32, np.float16):
            raises(TypeError, "target", fn, x, np.array([0, 2, 1, 0], dtype))
        raises(TypeError, "target", fn, x[0], np.array(1.0))  # unbatched


def test_ce_integer_target_where_probabilities_are_needed():
    """An integer target of input's shape is neither class indices nor probabilities.
    (Either exception type is acceptable here; the message must name the target.)"""
    x, _ = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises((TypeError, ValueError), "target", fn, x, np.zeros((N, C), np.int64))


@pytest.mark.parametrize("dtype", [np.bool_, np.complex128, object, "U1"])
def test_ce_target_dtype(dtype):
    x, _ = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises(TypeError, "target", fn, x, np.zeros(N).astype(dtype))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint8, np.bool_, np.complex128])
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_target_dtype(name, dtype):
    x, t = good_args(name)
    for fn in both(name):
        raises(TypeError, "target", fn, x, t.astype(dtype))


@pytest.mark.parametrize("shape", [(N, C + 1), (N + 1, C), (C, N), (C,), (N, 1), (1, N, C), ()])
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_target_shape(name, shape):
    x, _ = good_args(name)
    for fn in both(name):
        raises(ValueError, "target", fn, x, np.zeros(shape))


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["avg", "MEAN", "Sum", "", None, 1, "elementwise_mean"])
@pytest.mark.parametrize("name", ALL)
def test_unknown_reduction(name, reduction):
    x, t = good_args(name)
    for fn in both(name):
        raises(ValueError, "reduction", fn, x, t, reduction=reduction)


@pytest.mark.parametrize("delta", [0.0, -0.0, -1.0, float("nan"), -float("inf")])
def test_huber_delta(delta):
    x, t = good_args("huber_loss")
    for fn in both("huber_loss"):
        raises(ValueError, "delta", fn, x, t, delta=delta)
    for fn in both("huber_loss"):
        raises(TypeError, "delta", fn, x, t, delta="big")


@pytest.mark.parametrize("eps", [-0.1, -1e-12, 1.0000001, 2.0, float("nan"), float("inf")])
def test_label_smoothing_range(eps):
    x, y = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises(ValueError, "label_smoothing", fn, x, y, label_smoothing=eps)
        raises(ValueError, "label_smoothing", fn, x, np.full((N, C), 1.0 / C),
               label_smoothing=eps)
    for fn in both("cross_entropy"):
        raises(TypeError, "label_smoothing", fn, x, y, label_smoothing="some")


def test_ignore_index_type_and_range():
    x, y = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises(TypeError, "ignore_index", fn, x, y, ignore_index=1.5)
        raises(TypeError, "ignore_index", fn, x, y, ignore_index="-100")
        raises(ValueError, "ignore_index", fn, x, y, ignore_index=2**64)


@pytest.mark.parametrize("shape", [(C - 1,), (C + 1,), (1, C), (N, C), (), (1,)])
def test_ce_weight_length(shape):
    x, y = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises(ValueError, "weight", fn, x, y, weight=np.ones(shape))
        raises(ValueError, "weight", fn, x, np.full((N, C), 1.0 / C), weight=np.ones(shape))


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_, object])
def test_weight_dtype(dtype):
    x, y = good_args("cross_entropy")
    for fn in both("cross_entropy"):
        raises(TypeError, "weight", fn, x, y, weight=np.ones(C).astype(dtype))
    xb, yb = good_args("binary_cross_entropy_with_logits")
    for fn in both("binary_cross_entropy_with_logits"):
        raises(TypeError, "pos_weight", fn, xb, yb, pos_weight=np.ones(C).astype(dtype))
        raises(TypeError, "weight", fn, xb, yb, weight=np.ones(C).astype(dtype))


@pytest.mark.parametrize("shape", [(C + 1,), (2,), (N + 1, 1), (N, C, 1), (2, N, C), (1, N, C),
                                   (C, N)])
@pytest.mark.parametrize("arg", ["weight", "pos_weight"])
def test_bce_weights_that_do_not_broadcast(arg, shape):
    x, t = good_args("binary_cross_entropy_with_logits")
    for fn in both("binary_cross_entropy_with_logits"):
        raises(ValueError, arg, fn, x, t, **{arg: np.ones(shape)})
    # a row length of 64 or more takes another path in the implementation
    x, t = np.zeros((N, 100)), np.zeros((N, 100))
    for fn in both("binary_cross_entropy_with_logits"):
        raises(ValueError, arg, fn, x, t, **{arg: np.ones((99,))})
        raises(ValueError, arg, fn, x, t, **{arg: np.ones((2, N, 100))})


@pytest.mark.parametrize("n_threads", [0, -1, -8])
@pytest.mark.parametrize("name", ALL)
def test_n_threads(name, n_threads):
    x, t = good_args(name)
    for fn in both(name):
        raises(ValueError, "n_threads", fn, x, t, n_threads=n_threads)
        raises(TypeError, "n_threads", fn, x, t, n_threads=1.5)
        raises(TypeError, "n_threads", fn, x, t, n_threads="2")


# --------------------------------------------------------------------------------------------
# out= and grad_output
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_out_shape_and_dtype(name):
    x, t = good_args(name)
    fn = getattr(fl, name + "_with_grad")
    for shape in [(N, C + 1), (C, N), (N * C,), (1, N, C), ()]:
        raises(ValueError, "out", fn, x, t, out=np.empty(shape))
    for dtype in (np.float32, np.float16, np.int64, np.complex128):
        raises(TypeError, "out", fn, x, t, out=np.empty((N, C), dtype))
    raises(TypeError, "out", fn, x.astype(np.float32), t, out=np.empty((N, C)))
    raises(TypeError, "out", fn, x, t, out=np.empty((N, C)).tolist())


@pytest.mark.parametrize("name", ALL)
def test_out_layout_and_writeability(name):
    x, t = good_args(name)
    fn = getattr(fl, name + "_with_grad")
    raises(ValueError, "out", fn, x, t, out=np.empty((N, C), order="F"))
    raises(ValueError, "out", fn, x, t, out=np.empty((N, 2 * C))[:, ::2])
    read_only = np.empty((N, C))
    read_only.flags.writeable = False
    raises(ValueError, "out", fn, x, t, out=read_only)
    misaligned = np.empty(N * C * 8 + 1, np.uint8)[1:].view(np.float64).reshape(N, C)
    raises(ValueError, "out", fn, x, t, out=misaligned)


@pytest.mark.parametrize("name", ALL)
def test_out_overlaps(name):
    x, t = good_args(name)
    fn = getattr(fl, name + "_with_grad")
    # partially overlapping the input
    big = np.zeros(N * C + 1)
    xs, out = big[:-1].reshape(N, C), big[1:].reshape(N, C)
    xs[...] = x
    raises(ValueError, "out", fn, xs, t, out=out)
    if name == "cross_entropy":
        q = np.full((N, C), 1.0 / C)
        raises(ValueError, "out", fn, x, q, out=q)  # the probability target
        w = np.ones(N * C)
        raises(ValueError, "out", fn, x, np.array([0, 1, 2, 0]), weight=w[:C],
               out=w.reshape(N, C))  # the class weights
        buf = np.zeros(N * C)  # class indices (all 0) living in out's memory
        raises(ValueError, "out", fn, x, buf.view(np.int64)[:N], out=buf.reshape(N, C))
        go = np.ones(N * C)
        raises(ValueError, "out", fn, x, np.array([0, 1, 2, 0]), reduction="none",
               grad_output=go[:N], out=go.reshape(N, C))
        return
    raises(ValueError, "out", fn, x, t, out=t)  # the target
    g = np.ones((N, C))
    raises(ValueError, "out", fn, x, t, reduction="none", grad_output=g, out=g)
    if name == "binary_cross_entropy_with_logits":
        w = np.ones((N, C))
        raises(ValueError, "out", fn, x, t, weight=w, out=w)
        raises(ValueError, "out", fn, x, t, pos_weight=w, out=w)
        raises(ValueError, "out", fn, x, t, weight=w[0], out=w)  # a view of it


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ALL)
def test_grad_output_array_for_reduced_loss(name, reduction):
    x, t = good_args(name)
    fn = getattr(fl, name + "_with_grad")
    loss_shape = (N,) if name == "cross_entropy" else (N, C)
    for go in (np.ones(loss_shape), np.ones(1), np.ones((1, 1))):
        raises(ValueError, "grad_output", fn, x, t, reduction=reduction, grad_output=go)


@pytest.mark.parametrize("name", ALL)
def test_grad_output_shape_and_dtype_for_none(name):
    x, t = good_args(name)
    fn = getattr(fl, name + "_with_grad")
    shapes = ([(N + 1,), (N, 1), (1, N), (N, C)] if name == "cross_entropy"
              else [(N, C + 1), (C,), (N, 1), (1, N, C), (N * C,)])
    for shape in shapes:
        raises(ValueError, "grad_output", fn, x, t, reduction="none", grad_output=np.ones(shape))
    for reduction in ("none", "mean"):
        raises(TypeError, "grad_output", fn, x, t, reduction=reduction, grad_output=1j)
        raises(TypeError, "grad_output", fn, x, t, reduction=reduction, grad_output="1")


# --------------------------------------------------------------------------------------------
# the kernels' own entries: whoever calls them, they check what they are handed
# --------------------------------------------------------------------------------------------


def _ce_kernel_args(dtype=np.float64):
    x, t = good_args("cross_entropy", dtype)
    return dict(logits=x, target=t, probs=None, weight=None, ignore_index=-100,
                label_smoothing=0.0, reduction=1, grad_output=1.0, grad_output_rows=None,
                loss_out=None, grad=np.empty_like(x), n_threads=1)


def _elementwise_kernel_args(dtype=np.float64):
    x, t = good_args("mse_loss", dtype)
    return dict(kind=0, input=x.reshape(-1), target=t.reshape(-1), aux=None, aux_period=0,
                weight=None, weight_period=0, reduction=1, denominator=float(N * C),
                grad_output=1.0, grad_output_elems=None, loss_out=None,
                grad=np.empty(N * C, dtype), grad_aux=None, n_threads=1)


def _class_rows_kernel_args(dtype=np.float64):
    x, t = good_args("cross_entropy", dtype)
    return dict(kind=0, input=x, target=t, weight=None, ignore_index=-100, has_ignore=True,
                reduction=1, grad_output=1.0, grad_output_rows=None, loss_out=None,
                grad=np.empty_like(x), n_threads=1)


def _misaligned(a):
    view = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def test_kernel_entries_check_their_arrays(simd_path):
    from fastloss import _dispatch
    kernels = _dispatch.kernels
    ce, pw, rows = _ce_kernel_args(), _elementwise_kernel_args(), _class_rows_kernel_args()
    shared = np.zeros(N * C + 1)
    # what the entries return: a NumPy scalar of the call's dtype, None for "none"
    for dtype in (np.float32, np.float64):
        value = kernels.cross_entropy(**_ce_kernel_args(dtype))
        assert type(value) is np.dtype(dtype).type
        value = kernels.elementwise_loss(**_elementwise_kernel_args(dtype))
        assert type(value) is np.dtype(dtype).type
        value = kernels.class_rows_loss(**_class_rows_kernel_args(dtype))
        assert type(value) is np.dtype(dtype).type
    assert kernels.cross_entropy(**dict(ce, reduction=0, loss_out=np.empty(N))) is None

    bad_ce = [
        ("logits", TypeError, dict(logits=ce["logits"].tolist())),
        ("logits", TypeError, dict(logits=ce["logits"].astype(np.float16))),
        ("logits", ValueError, dict(logits=ce["logits"].reshape(-1))),
        ("logits", ValueError, dict(logits=np.asfortranarray(ce["logits"]))),
        ("logits", ValueError, dict(logits=_misaligned(ce["logits"]))),
        ("target", TypeError, dict(target=ce["target"].astype(np.int32))),
        ("target", TypeError, dict(target=ce["target"].astype(">i8"))),
        ("target", ValueError, dict(target=ce["target"][:-1])),
        ("probs", ValueError, dict(probs=np.ones((N, C))[:, :2])),
        ("target and probs", ValueError, dict(target=None)),
        ("weight", ValueError, dict(weight=np.ones(C + 1))),
        ("weight", TypeError, dict(weight=np.ones(C, np.float32))),
        ("grad", TypeError, dict(grad=np.empty((N, C), np.float32))),
        ("grad", ValueError, dict(grad=np.empty((C, N)))),
        ("grad", ValueError, dict(grad=np.empty((N, 2 * C))[:, ::2])),
        ("out", ValueError, dict(logits=shared[:-1].reshape(N, C),  # partly in place
                                 grad=shared[1:].reshape(N, C))),
        ("loss_out", ValueError, dict(reduction=0, loss_out=np.empty(N - 1))),
        ("loss_out", ValueError, dict(reduction=0, loss_out=ce["grad"].reshape(-1)[:N])),
    ]
    x_in_place = ce["logits"].copy()
    kernels.cross_entropy(**dict(ce, logits=x_in_place, grad=x_in_place))  # exactly: allowed
    for name, exc, change in bad_ce:
        raises(exc, name, kernels.cross_entropy, **dict(ce, **change))
    read_only = np.empty((N, C))
    read_only.flags.writeable = False
    raises(ValueError, "grad", kernels.cross_entropy, **dict(ce, grad=read_only))

    bad_pw = [
        ("input", TypeError, dict(input=pw["input"].astype(np.int64))),
        ("input", ValueError, dict(input=pw["input"].reshape(N, C))),
        ("target", ValueError, dict(target=pw["target"][:-1])),
        ("target", ValueError, dict(target=_misaligned(pw["target"]))),
        ("weight", ValueError, dict(weight=np.ones(C), weight_period=C + 1)),
        ("period", ValueError, dict(weight=np.ones(0), weight_period=0)),
        ("aux", ValueError, dict(aux=np.ones(C), aux_period=C + 1)),
        ("out", ValueError, dict(grad=pw["target"])),
        ("grad_output_elems", ValueError, dict(reduction=0, grad_output_elems=np.ones(3))),
        ("grad_aux", ValueError, dict(grad_aux=np.empty(N * C))),  # not Gaussian NLL
        ("grad_aux", ValueError, dict(kind=13, aux=np.ones(N * C), aux_period=N * C,
                                      grad_aux=pw["target"])),
    ]
    for name, exc, change in bad_pw:
        raises(exc, name, kernels.elementwise_loss, **dict(pw, **change))

    bad_rows = [
        ("input", TypeError, dict(input=rows["input"].astype(np.int64))),
        ("input", ValueError, dict(input=rows["input"].reshape(-1))),
        ("target", TypeError, dict(target=rows["target"].astype(np.int32))),
        ("target", ValueError, dict(target=rows["target"][:-1])),
        ("weight", ValueError, dict(weight=np.ones(C + 1))),
        ("p", ValueError, dict(kind=1, p=3)),
        ("out", ValueError, dict(input=shared[:-1].reshape(N, C), grad=shared[1:].reshape(N, C))),
        ("loss_out", ValueError, dict(reduction=0, loss_out=np.empty(N - 1))),
        ("target", IndexError, dict(target=np.full(N, C, np.int64))),
    ]
    for name, exc, change in bad_rows:
        raises(exc, name, kernels.class_rows_loss, **dict(rows, **change))


@pytest.mark.parametrize("name", ["nll_loss", "multi_margin_loss"])
def test_class_rows_class_count_limit(name):
    # The class-rows kernels address a block's scores with int32 offsets; a row of
    # 2**30 classes (4 GiB of float32 per sample) is refused, not miscomputed.
    # An empty batch keeps the test cheap: the check is on the shape.
    target = np.empty(0, np.int64)
    for f in both(name):
        with pytest.raises(ValueError, match="input: expected at most 1073741823 classes"):
            f(np.empty((0, 2**30), np.float32), target)
    fl.nll_loss(np.empty((0, 2**30 - 1), np.float32), target, reduction="sum")
