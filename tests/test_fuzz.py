"""Hypothesis fuzzing of the public API with hostile inputs.

Every example draws a loss, random shapes (including 0-size), dtypes (float16/32/64,
ints, bool, complex, object, strings, None), memory layouts (C/F order, transposed,
reversed, strided "huge step" views, stride-0 broadcasts, read-only arrays, nested
lists) and random argument values (weights and pos_weights of the wrong shape, class
indices out of range / negative / huge / equal to ignore_index, ignore_index equal to a
real class, NaN/inf/negative label_smoothing and delta, bad reductions, bad
grad_output, wrong `out=` buffers, bad n_threads).

An independent model of the API contract (DESIGN.md section 3 and the docstrings)
decides whether the call is valid.  Then:

- valid: the call must return, with the right types, dtypes and shapes, values equal
  to ``fastloss.reference`` evaluated on the same inputs (tolerance per dtype, NaN and
  inf positions identical);
- invalid: the call must raise ValueError, TypeError or IndexError (and, when exactly
  one argument is wrong, name it in the message);
- always: no crash, and no input array (nor the memory under a view) is modified,
  except ``out`` (and ``input`` when ``out is input``, on success only).

Budget: 60 examples per test by default (CI); FASTLOSS_FUZZ_EXAMPLES=N runs N each.
"""

from __future__ import annotations

import operator
import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastloss as fl  # noqa: E402
from fastloss import _dispatch  # noqa: E402
from fastloss import reference as ref  # noqa: E402

EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "60"))
# CI (CI=true) draws the same examples on every run, so that main stays reproducibly
# green; elsewhere each run draws new ones (FASTLOSS_FUZZ_EXAMPLES=N for a longer hunt).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                derandomize=os.environ.get("CI") == "true",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

ALLOWED = (ValueError, TypeError, IndexError)
FLOATS = (np.float16, np.float32, np.float64)
BAD_DTYPES = (np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_, np.complex64,
              np.complex128, object)
REDUCTIONS = ("none", "mean", "sum")
# the kernels' threading threshold: "big" examples go above it
THRESHOLD = _dispatch.kernels.PARALLEL_THRESHOLD
RTOL = {np.dtype(np.float16): 4e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}


# ------------------------------------------------------------------ array generation

_HOSTILITY = [0.0]  # per example: the chance that each argument is drawn wrong


def hostile(data):
    """Set this example's hostility: about half the examples are entirely valid."""
    _HOSTILITY[0] = data.draw(st.sampled_from([0.0, 0.0, 0.15, 0.5]), label="hostility")


def pick(data, good, bad, label):
    """One of `good`, or (with this example's hostility) one of `bad`."""
    if bad and data.draw(st.integers(0, 99), label=f"{label} bad?") < 100 * _HOSTILITY[0]:
        return data.draw(st.sampled_from(bad), label=label)
    return data.draw(st.sampled_from(good), label=label)


def values(data, shape):
    """Values for an array of `shape`: moderate numbers, sometimes specials."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n = int(np.prod(shape, dtype=np.int64))
    scale = data.draw(st.sampled_from([1.0, 3.0, 30.0]), label="scale")
    v = rng.standard_normal(n) * scale
    if n and data.draw(st.booleans(), label="specials"):
        specials = [0.0, -0.0, 1e4, -1e4, np.inf, -np.inf, np.nan, 1e-30, 88.0, -88.0]
        k = data.draw(st.integers(1, min(n, 4)), label="n_specials")
        idx = rng.integers(0, n, k)
        v[idx] = rng.choice(specials, k)
    return v.reshape(shape)


def present(data, array, label):
    """The array as the caller passes it, in a random layout.  Returns (object passed,
    list of every ndarray whose memory it touches).  All layouts hold the same values
    except the stride-0 broadcast, which repeats the first one: callers take the
    values from the returned object."""
    layout = data.draw(st.sampled_from(
        ["C", "C", "C", "F", "strided", "reversed", "transposed", "readonly", "broadcast",
         "list"]), label=f"{label} layout")
    a = np.array(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    if layout == "F":
        out = np.array(a, order="F")
    elif layout == "strided":
        step = data.draw(st.sampled_from([2, 3, 1000]), label=f"{label} step")
        base = np.zeros(max(a.size, 1) * step, a.dtype)
        view = base[::step][:a.size].reshape(a.shape)  # every step-th element of base
        view[...] = a
        return view, [base]
    elif layout == "reversed" and a.ndim:
        base = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return base[(slice(None, None, -1),) * a.ndim], [base]
    elif layout == "transposed" and a.ndim >= 2:
        base = np.ascontiguousarray(a.T)
        return base.T, [base]
    elif layout == "readonly":
        out = a.copy()
        out.flags.writeable = False
    elif layout == "broadcast" and a.size:
        # stride-0 view: every element the same value (huge logical size, no memory)
        base = np.array(a.reshape(-1)[0], dtype=a.dtype)
        return np.broadcast_to(base, a.shape), [base]
    elif layout == "list" and a.size <= 64 and a.dtype != object and \
            np.asarray(a.tolist()).shape == a.shape and \
            np.asarray(a.tolist()).dtype.kind == a.dtype.kind:  # ([] is float64 of shape (0,))
        return a.tolist(), []
    else:
        out = a.copy()
    return out, [out]


def float_array(data, shape, label, dtype=None):
    if dtype is None:
        dtype = data.draw(st.sampled_from(FLOATS), label=f"{label} dtype")
    with np.errstate(over="ignore", invalid="ignore"):
        a = values(data, shape).astype(dtype)
    return a


def bad_array(data, shape, label):
    """An array of a dtype the API must refuse for a float argument."""
    dtype = data.draw(st.sampled_from(BAD_DTYPES), label=f"{label} bad dtype")
    v = values(data, shape)
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.asarray(np.nan_to_num(v, nan=1.0, posinf=7.0, neginf=-7.0))
        if np.dtype(dtype).kind == "c":
            return (v + 0.5j).astype(dtype)
        if np.dtype(dtype).kind in "iub":
            return np.clip(v, 0 if np.dtype(dtype).kind in "ub" else -100, 100).astype(dtype)
    out = np.empty(v.shape, dtype=object)
    out[...] = v
    return out


def draw_shape(data, label, min_dims=0, max_dims=3, big=True):
    if big and data.draw(st.integers(0, 19), label=f"{label} big?") == 0:
        # across many blocks, sometimes over the threading threshold
        n = data.draw(st.sampled_from([1023, 1025, 4097, 12289, THRESHOLD + 1001]),
                      label=f"{label} big n")
        return (n,)
    ndim = data.draw(st.integers(min_dims, max_dims), label=f"{label} ndim")
    return tuple(data.draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim),
                           label=f"{label} shape"))


def snapshot(arrays):
    return [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray)]


def unchanged(snap):
    """Every snapshotted array still holds the same bytes (objects: the same items)."""
    return all(a.tobytes() == b.tobytes() if a.dtype != object
               else all(x is y for x, y in zip(a.flat, b.flat)) for a, b in snap)


# ---------------------------------------------------------------- common arguments

def draw_reduction(data):
    r = pick(data, REDUCTIONS, ("avg", "", None, 1, "NONE"), "reduction")
    return r, (None if r in REDUCTIONS else ("reduction", ValueError))


def draw_threads(data):
    n = pick(data, [None, None, 1, 2, 3, 8, True, 2**40], [0, -1, 1.5, "2"], "n_threads")
    if n is None:
        return n, None
    try:
        count = operator.index(n)
    except TypeError:
        return n, ("n_threads", TypeError)
    return n, (None if count >= 1 else ("n_threads", ValueError))


def draw_grad_output(data, loss_shape, reduction, compute):
    kind = pick(data, ["none", "none", "scalar", "int", "0d"] +
                (["array", "array"] if reduction == "none" else []),
                ["array", "array_wrong", "complex", "string"], "grad_output kind")
    if kind == "none":
        return None, None, []
    if kind == "scalar":
        # (a scalar grad_output is used in the compute dtype, as torch does: one that
        # underflows float32, times an infinite slope, is NaN there but inf in the
        # float64 reference -- not drawn)
        return data.draw(st.sampled_from([0.0, 0.5, -1.25, 3.0, 1e-3, -0.0]), label="go"), None, []
    if kind == "int":
        return 2, None, []
    if kind == "0d":
        return np.array(0.5, np.float32), None, []
    if kind == "complex":
        return np.ones(loss_shape, np.complex64), ("grad_output", TypeError), []
    if kind == "string":
        return "1", ("grad_output", TypeError), []
    if kind == "array":
        g = float_array(data, loss_shape, "go")
        g, mem = present(data, g, "go")
        arr = np.asarray(g)
        if arr.ndim == 0:
            return g, None, mem
        return g, (None if reduction == "none" else ("grad_output", ValueError)), mem
    wrong = tuple(s + 1 for s in loss_shape) if loss_shape else (2,)
    g = np.ones(wrong, np.float64)
    return g, ("grad_output", ValueError), [g]


def draw_out(data, x_obj, x_arr, result_dtype, operands):
    """An out= buffer: correct, input itself, or wrong in one way."""
    kind = pick(data, ["none", "good", "good", "input"],
                ["dtype", "shape", "fortran", "readonly", "list", "overlap"], "out kind")
    if kind == "none":
        return None, None
    shape = x_arr.shape
    if kind == "good":
        return np.full(shape, np.nan, result_dtype), None
    if kind == "input":
        ok = (isinstance(x_obj, np.ndarray) and x_obj.dtype == result_dtype
              and x_obj.flags.c_contiguous and x_obj.flags.writeable
              and not any(o is not None and isinstance(o, np.ndarray)
                          and np.may_share_memory(x_obj, o) for o in operands))
        return x_obj, None if ok else ("out", (ValueError, TypeError))
    if kind == "dtype":
        other = np.float64 if result_dtype != np.float64 else np.float32
        return np.zeros(shape, other), ("out", TypeError)
    if kind == "shape":
        return np.zeros(shape + (1,), result_dtype), ("out", ValueError)
    if kind == "fortran":
        buf = np.zeros(shape, result_dtype, order="F")
        if buf.flags.c_contiguous:  # 0/1-d or size <= 1: F and C coincide -> valid
            return buf, None
        return buf, ("out", ValueError)
    if kind == "readonly":
        buf = np.zeros(shape, result_dtype)
        buf.flags.writeable = False
        return buf, ("out", ValueError)
    if kind == "list":
        return np.zeros(shape).tolist(), ("out", TypeError)
    # overlap: out shares memory with another operand of the same shape
    for o in operands:
        if isinstance(o, np.ndarray) and o.shape == shape and o.dtype == result_dtype \
                and o.flags.c_contiguous and o.flags.writeable and o.size:
            return o, ("out", ValueError)
    return np.full(shape, np.nan, result_dtype), None


# --------------------------------------------------------------------- comparison

def assert_close(got, want, dtype, scale, what, loose_nonfinite=False):
    """got vs the reference: NaN and inf where the reference has them, else within
    rtol*(|want| + scale) (scale: the magnitude of cancelling terms).

    loose_nonfinite: where the reference is NaN or +-inf, any NaN or inf is accepted
    (used when grad_output or a weight is itself infinite or NaN: inf*0 and inf-inf
    then depend on the order of operations, and torch, the reference and the kernels
    each pick a different one; finite results must still match)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if loose_nonfinite:
        nonfinite_w = ~np.isfinite(want)
        assert np.all(~np.isfinite(got[nonfinite_w])), \
            f"{what}: finite {got[nonfinite_w & np.isfinite(got)][:5]} where the reference is not"
        got, want = got[~nonfinite_w], want[~nonfinite_w]
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), nonfinite_w.shape)[~nonfinite_w]
    rtol = RTOL[np.dtype(dtype)]
    big = float(np.finfo(dtype).max) * (1 - 4 * rtol)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{what}: NaN at {np.argwhere(nan_g != nan_w)[:5]}" \
                                         f" got {got[nan_g != nan_w][:5]} want {want[nan_g != nan_w][:5]}"
    ok = ~nan_w
    g, w = got[ok], want[ok]
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), got.shape)[ok]
    inf_g, inf_w = np.isinf(g), np.isinf(w)
    # at the top of float16's range one side may round to inf and the other not
    edge = (inf_g & (np.abs(w) >= big)) | (inf_w & (np.abs(g) >= big))
    same_inf = inf_g & inf_w & (np.sign(g) == np.sign(w))
    fin = ~(inf_g | inf_w)
    assert np.all(same_inf | edge | fin), f"{what}: inf mismatch got {g[~(same_inf | edge | fin)][:5]} " \
                                          f"want {w[~(same_inf | edge | fin)][:5]}"
    with np.errstate(invalid="ignore", over="ignore"):
        tol = rtol * (np.abs(w[fin]) + s[fin]) + float(np.finfo(dtype).tiny) * 4
        bad = np.abs(g[fin] - w[fin]) > tol
    assert not np.any(bad), f"{what}: got {g[fin][bad][:5]} want {w[fin][bad][:5]} " \
                            f"tol {tol[bad][:5]}"


def check_types(loss, grad, reduction, loss_shape, x_shape, result_dtype, want_grad):
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == loss_shape, (type(loss), loss_shape)
        assert loss.dtype == result_dtype, (loss.dtype, result_dtype)
    else:
        assert isinstance(loss, np.generic) and loss.dtype == result_dtype, (type(loss), result_dtype)
    if want_grad:
        assert isinstance(grad, np.ndarray) and grad.shape == x_shape and grad.dtype == result_dtype


def run_case(call, reasons, snap, x_obj, out, on_success):
    reasons = [r for r in reasons if r is not None]
    hypothesis.event("valid call" if not reasons else
                     "invalid: " + ",".join(sorted({r[0] for r in reasons})))
    try:
        result = call()
    except ALLOWED as exc:
        assert unchanged(snap), "an input was modified by a call that raised"
        assert reasons, f"valid call rejected: {type(exc).__name__}: {exc}"
        if len(reasons) == 1:
            name, kind = reasons[0]
            assert isinstance(exc, kind), f"{name}: expected {kind}, got {type(exc).__name__}: {exc}"
            assert name in str(exc), f"error does not name {name!r}: {exc}"
        return
    assert not reasons, f"invalid call accepted ({reasons}): returned {result!r}"[:2000]
    keep = [(a, b) for a, b in snap if not (out is not None and out is x_obj and a is x_obj)]
    # `out is input`: the input's own buffer (and views of it) receive the gradient
    if out is not None and out is x_obj:
        keep = [(a, b) for a, b in keep if not np.may_share_memory(a, out)]
    assert unchanged(keep), "an input was modified"
    on_success(result)


def compute_dtype(dtype):
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


# ------------------------------------------------------------------ pointwise losses

POINTWISE = ["mse_loss", "huber_loss", "binary_cross_entropy_with_logits"]


def draw_weight_for(data, x_shape, label):
    """A BCE weight/pos_weight: broadcastable (valid) or not, any real dtype, or bad."""
    kind = pick(data, ["none", "none", "scalar", "row", "full", "leading1", "int"],
                ["wrong", "complex"], f"{label} kind")
    if kind == "none":
        return None, None, []
    if kind == "scalar":
        return data.draw(st.floats(0, 4), label=label), None, []
    if kind == "complex":
        return np.ones(x_shape[-1:] or (1,), np.complex128), (label, TypeError), []
    if kind == "wrong":
        wrong = ((x_shape[-1] + 2) if x_shape else 3,)
        return np.ones(wrong), (label, ValueError), []
    if kind == "row":
        shape = x_shape[-1:]
    elif kind == "leading1":
        shape = tuple(1 if i % 2 == 0 else s for i, s in enumerate(x_shape))
    else:
        shape = x_shape
    if kind == "int":
        w = np.abs(values(data, x_shape[-1:]) % 5).astype(np.int32)
        return w, None, [w]
    w = np.abs(float_array(data, shape, label))
    w_obj, mem = present(data, w, label)
    return w_obj, None, mem


@FUZZ
@given(data=st.data())
def test_fuzz_pointwise(data):
    hostile(data)
    name = data.draw(st.sampled_from(POINTWISE), label="loss")
    want_grad = data.draw(st.booleans(), label="with_grad")
    shape = draw_shape(data, "input")
    reasons = []
    mem = []
    # input
    x_kind = pick(data, ["float"], ["bad", "none", "string"], "x kind")
    if x_kind == "float":
        x_arr = float_array(data, shape, "input")
        x_obj, m = present(data, x_arr, "input")
        mem += m
        x_arr = np.asarray(x_obj)  # a nested list is float64, whatever it was made from
        dtype = x_arr.dtype
    else:
        x_arr = bad_array(data, shape, "input") if x_kind == "bad" else np.asarray(
            None if x_kind == "none" else "abc")
        x_obj = x_arr if x_kind == "bad" else (None if x_kind == "none" else "abc")
        shape = x_arr.shape
        reasons.append(("input", TypeError))
        mem.append(x_arr)
        dtype = np.dtype(np.float64)
    result_dtype = np.dtype(dtype) if x_kind == "float" else np.dtype(np.float64)
    comp = compute_dtype(result_dtype)
    # target
    t_kind = pick(data, ["float"] * 6 + ["same"], ["int", "shape"], "t kind")
    if t_kind == "same" and x_kind == "float":
        t_obj, t_arr = x_obj, x_arr
    elif t_kind == "int":
        t_arr = np.zeros(shape, np.int64)
        t_obj = t_arr
        reasons.append(("target", TypeError))
        mem.append(t_arr)
    elif t_kind == "shape":
        t_arr = np.zeros(shape + (2,), np.float64)
        t_obj = t_arr
        reasons.append(("target", ValueError))
        mem.append(t_arr)
    else:
        t_arr = float_array(data, shape, "target")
        if name == "binary_cross_entropy_with_logits" and data.draw(st.booleans(), label="01"):
            t_arr = (np.abs(np.nan_to_num(t_arr.astype(np.float64))) % 1.0).astype(t_arr.dtype)
        t_obj, m = present(data, t_arr, "target")
        mem += m
    kwargs = {}
    if name == "huber_loss":
        delta = pick(data, [1.0, 0.5, 2.5, 1e-30, 1e30, np.inf, 3, np.float32(0.25)],
                     [0.0, -1.0, np.nan, "x", None], "delta")
        kwargs["delta"] = delta
        try:
            dv = float(delta)
            if not dv > 0:
                reasons.append(("delta", ValueError))
        except (TypeError, ValueError):
            reasons.append(("delta", TypeError))
    w = pw = None
    if name == "binary_cross_entropy_with_logits":
        w, r, m = draw_weight_for(data, shape, "weight")
        reasons.append(r)
        mem += m
        pw, r, m = draw_weight_for(data, shape, "pos_weight")
        reasons.append(r)
        mem += m
        kwargs["weight"] = w
        kwargs["pos_weight"] = pw
    reduction, r = draw_reduction(data)
    reasons.append(r)
    n_threads, r = draw_threads(data)
    reasons.append(r)
    go = out = None
    if want_grad:
        go, r, m = draw_grad_output(data, shape, reduction, comp)
        reasons.append(r)
        mem += m
        out, r = draw_out(data, x_obj, x_arr, result_dtype, [t_obj, w, pw, go])
        reasons.append(r)
        kwargs["grad_output"] = go
        kwargs["out"] = out
    snap = snapshot(mem + ([x_obj] if isinstance(x_obj, np.ndarray) else []))
    x_vals, t_vals = np.array(x_arr), np.array(np.asarray(t_obj))  # before out= may write

    fn = getattr(fl, name + ("_with_grad" if want_grad else ""))

    def call():
        return fn(x_obj, t_obj, reduction=reduction, n_threads=n_threads, **kwargs)

    # the reference, on the same values converted as the API documents: operands in the
    # compute dtype, a scalar grad_output in double
    def on_success(result):
        loss, grad = result if want_grad else (result, None)
        check_types(loss, grad, reduction, shape, shape, result_dtype, want_grad)
        if want_grad and out is not None:
            assert grad is out
        x_ref = x_vals
        y_ref = t_vals.astype(comp)
        rkw = {}
        if name == "huber_loss":
            rkw["delta"] = float(kwargs["delta"])
        if name == "binary_cross_entropy_with_logits":
            rkw["weight"] = None if w is None else np.asarray(w).astype(comp)
            rkw["pos_weight"] = None if pw is None else np.asarray(pw).astype(comp)
        go_ref = None
        if go is not None:
            g = np.asarray(go)
            go_ref = float(g) if g.ndim == 0 else g.astype(comp)
        rfn = getattr(ref, name + "_with_grad")
        with np.errstate(all="ignore"):
            want_loss, want_grad_arr = rfn(x_ref, y_ref, reduction=reduction, grad_output=go_ref, **rkw)
            per, dper = rfn(x_ref, y_ref, reduction="none", grad_output=None, **rkw)
            per = np.abs(np.asarray(per, np.float64))
            n = max(per.size, 1)
            gmag = 1.0 if go_ref is None else np.abs(np.asarray(go_ref, np.float64))
            yy = np.abs(y_ref.astype(np.float64))
            wmag = 1.0 if w is None else np.abs(np.broadcast_to(np.asarray(w, np.float64), shape))
            pwmag = 1.0 if pw is None else np.abs(np.broadcast_to(np.asarray(pw, np.float64), shape))
            if name == "binary_cross_entropy_with_logits":
                # targets outside [0, 1] make the terms A|x| and c log1p(e) cancel: their sizes
                xx = np.abs(x_ref.astype(np.float64))
                per = wmag * ((1 + yy) * np.maximum(pwmag, 1) * (xx + np.log1p(np.exp(-xx))))
            per_elem_scale = per if reduction == "none" else 0.0
            if reduction == "none":
                loss_scale = per_elem_scale
            else:
                loss_scale = float(np.sum(per[np.isfinite(per)])) * (1.0 / n if reduction == "mean" else 1.0)
            # gradient terms that cancel (BCE: (1-y) s(x) and pw y s(-x)): their sizes
            grad_scale = gmag * wmag * (1 + yy) * np.maximum(pwmag, 1) * (1.0 / n if reduction == "mean" else 1.0)
        if reduction == "mean" and per.size == 0:
            assert np.isnan(loss)
        loose = not all(v is None or np.all(np.isfinite(np.asarray(v, dtype=np.float64)))
                        for v in (go_ref, rkw.get("weight"), rkw.get("pos_weight")))
        assert_close(loss, want_loss, result_dtype, loss_scale, f"{name} loss", loose)
        if want_grad:
            if name != "binary_cross_entropy_with_logits":
                grad_scale = 0.0
            assert_close(grad, want_grad_arr, result_dtype, grad_scale, f"{name} grad", loose)

    run_case(call, reasons, snap, x_obj, out, on_success)


# ------------------------------------------------------------------- cross-entropy

@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy(data):
    hostile(data)
    want_grad = data.draw(st.booleans(), label="with_grad")
    reasons = []
    mem = []
    big = data.draw(st.integers(0, 19), label="big?") == 0
    if big:
        N, C = data.draw(st.sampled_from([(1500, 10), (3, 5000), (THRESHOLD // 4 + 3, 4)]),
                         label="N, C")
        x_shape = (N, C)
    else:
        ndim = data.draw(st.integers(0, 4), label="ndim")
        x_shape = tuple(data.draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim),
                                  label="x shape"))
        if ndim >= 2 and data.draw(st.integers(0, 4), label="wide?") == 0:
            x_shape = (x_shape[0], data.draw(st.sampled_from([63, 64, 70]), label="C")) + x_shape[2:]
    ndim = len(x_shape)
    x_kind = pick(data, ["float"], ["bad", "none"], "x kind")
    if x_kind == "float":
        x_arr = float_array(data, x_shape, "input")
        x_obj, m = present(data, x_arr, "input")
        mem += m
        x_arr = np.asarray(x_obj)  # a nested list is float64, whatever it was made from
        result_dtype = x_arr.dtype
    else:
        x_arr = bad_array(data, x_shape, "input") if x_kind == "bad" else np.asarray(None)
        x_obj = x_arr if x_kind == "bad" else None
        x_shape = x_arr.shape
        ndim = len(x_shape)
        reasons.append(("input", TypeError))
        mem.append(x_arr)
        result_dtype = np.dtype(np.float64)
    comp = compute_dtype(result_dtype)
    C = None
    if ndim == 0:
        reasons.append(("input", ValueError))
    else:
        C = x_shape[0] if ndim == 1 else x_shape[1]
        if C == 0:
            reasons.append(("input", ValueError))
    index_shape = () if ndim <= 1 else (x_shape[0],) + x_shape[2:]
    # ignore_index
    ii = pick(data, ["default", "class", "neg", "npint", "bool"], ["huge", "float", "none"],
              "ignore kind")
    ignore_index = {"default": -100, "class": 1, "neg": -1, "huge": 2**70, "float": 1.5,
                    "none": None, "npint": np.int16(2), "bool": True}[ii]
    if ii in ("float", "none"):
        reasons.append(("ignore_index", TypeError))
    elif ii == "huge":
        reasons.append(("ignore_index", ValueError))
    ignore_val = operator.index(ignore_index) if ii not in ("float", "none") else -100
    # target
    t_kind = pick(data, ["index"] * 5 + ["probs"] * 3, ["index_bad_shape", "probs_bad_shape",
                                                        "float_index", "bool", "complex"],
                  "target kind")
    soft = False
    if t_kind == "index":
        tdtype = data.draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint64,
                                            np.int16]), label="index dtype")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="t seed"))
        hi = max(C or 1, 1)
        t = rng.integers(0, hi, index_shape)
        if t.size and data.draw(st.booleans(), label="ignored rows"):
            t.reshape(-1)[rng.integers(0, t.size, max(1, t.size // 3))] = ignore_val \
                if -2**63 <= ignore_val < 2**63 else 0
        bad_idx = pick(data, [None], [-1, -100, "C", 2**40, -2**62], "bad index")
        if bad_idx is not None and t.size:
            t.reshape(-1)[rng.integers(0, t.size)] = (C or 0) if bad_idx == "C" else bad_idx
        # does the target fit its dtype?  (unsigned/narrow dtypes cannot hold -1 etc.)
        info = np.iinfo(tdtype)
        if t.size and (t.min() < info.min or t.max() > info.max):
            tdtype = np.int64
        t = t.astype(tdtype)
        t_obj, m = present(data, t, "target")
        mem += m
        t = np.asarray(t_obj)  # the values passed (a stride-0 layout repeats one of them)
        if C and t.size:
            tv = t.astype(np.int64) if tdtype != np.uint64 else t
            invalid = (tv != ignore_val) & ((tv < 0) | (tv >= C)) if tdtype != np.uint64 else \
                (t.astype(np.float64) != float(ignore_val)) & (t >= np.uint64(C))
            if np.any(invalid):
                reasons.append(("target", IndexError))
        t_arr = t
    elif t_kind == "probs":
        soft = True
        t_arr = np.abs(float_array(data, x_shape, "target"))
        t_obj, m = present(data, t_arr, "target")
        mem += m
    elif t_kind == "index_bad_shape":
        t_arr = np.zeros(index_shape + (3,), np.int64)
        t_obj = t_arr
        reasons.append(("target", ValueError))
    elif t_kind == "probs_bad_shape":
        t_arr = np.zeros(x_shape + (2,), np.float32)
        t_obj = t_arr
        reasons.append(("target", ValueError))
    elif t_kind == "float_index":
        t_arr = np.zeros(index_shape, np.float64)
        t_obj = t_arr
        reasons.append(("target", TypeError if index_shape != x_shape else ValueError))
    else:
        t_arr = np.zeros(index_shape, np.bool_ if t_kind == "bool" else np.complex64)
        t_obj = t_arr
        reasons.append(("target", TypeError))
    # weight
    w_kind = pick(data, ["none", "none", "good", "int"], ["wrong", "complex", "2d"],
                  "weight kind")
    w = None
    if w_kind == "good" and C is not None:
        w = np.abs(float_array(data, (C,), "weight"))
        w, m = present(data, w, "weight")
        mem += m
    elif w_kind == "int" and C is not None:
        w = np.arange(C, dtype=np.int32) % 3
    elif w_kind == "wrong":
        w = np.ones(((C or 0) + 1,))
        reasons.append(("weight", ValueError))
    elif w_kind == "complex":
        w = np.ones((C or 1,), np.complex128)
        reasons.append(("weight", TypeError))
    elif w_kind == "2d":
        w = np.ones((1, C or 1))
        reasons.append(("weight", ValueError))
    ls = pick(data, [0.0, 0.0, 0.1, 1.0, 0.5, 1, np.float16(0.25)],
              [-0.1, 1.5, np.nan, np.inf, "a", None], "label_smoothing")
    try:
        lsv = float(ls)
        if not 0.0 <= lsv <= 1.0:
            reasons.append(("label_smoothing", ValueError))
    except (TypeError, ValueError):
        reasons.append(("label_smoothing", TypeError))
    reduction, r = draw_reduction(data)
    reasons.append(r)
    n_threads, r = draw_threads(data)
    reasons.append(r)
    go = out = None
    kwargs = dict(weight=w, ignore_index=ignore_index, label_smoothing=ls)
    if want_grad:
        go, r, m = draw_grad_output(data, index_shape, reduction, comp)
        reasons.append(r)
        mem += m
        out, r = draw_out(data, x_obj, x_arr, result_dtype, [t_obj, w, go])
        reasons.append(r)
        kwargs.update(grad_output=go, out=out)
    snap = snapshot(mem + [a for a in (x_obj, t_obj, w) if isinstance(a, np.ndarray)])
    x_vals, t_vals = np.array(x_arr), np.array(np.asarray(t_obj))  # before out= may write
    fn = fl.cross_entropy_with_grad if want_grad else fl.cross_entropy

    def call():
        return fn(x_obj, t_obj, reduction=reduction, n_threads=n_threads, **kwargs)

    def on_success(result):
        loss, grad = result if want_grad else (result, None)
        check_types(loss, grad, reduction, index_shape, x_shape, result_dtype, want_grad)
        if want_grad and out is not None:
            assert grad is out
        x_ref = x_vals
        t_ref = t_vals.astype(comp) if soft else t_vals
        w_ref = None if w is None else np.asarray(w).astype(comp)
        go_ref = None
        if go is not None:
            g = np.asarray(go)
            go_ref = float(g) if g.ndim == 0 else g.astype(comp)
        with np.errstate(all="ignore"):
            want_loss, want_g = ref.cross_entropy_with_grad(
                x_ref, t_ref, weight=w_ref, ignore_index=ignore_val, reduction=reduction,
                label_smoothing=float(ls), grad_output=go_ref)
            per, _ = ref.cross_entropy_with_grad(x_ref, t_ref, weight=w_ref,
                                                 ignore_index=ignore_val, reduction="none",
                                                 label_smoothing=float(ls))
            per = np.abs(np.asarray(per, np.float64))
            if reduction == "mean":
                if soft:
                    denom = max(per.size, 1)
                else:
                    tt = np.asarray(t_arr).reshape(-1).astype(np.int64)
                    keep = tt != ignore_val
                    wv = np.ones(C) if w_ref is None else w_ref.astype(np.float64)
                    denom = abs(float(np.sum(wv[tt[keep]]))) if keep.any() else 1.0
                    denom = denom if denom > 0 else 1.0
            else:
                denom = 1.0
            gmag = 1.0 if go_ref is None else np.max(np.abs(np.asarray(go_ref, np.float64)), initial=0)
            wmax = 1.0 if w_ref is None else max(1.0, float(np.max(np.abs(w_ref), initial=0)))
            qmax = 1.0
            if soft and t_ref.size:
                qs = np.abs(t_ref.astype(np.float64))
                qmax = 1.0 + float(np.max(np.sum(qs, axis=0 if ndim == 1 else 1), initial=0))
            # the float64 reference forms log(sum exp) - d: an absolute error of a few
            # 2**-53 per unit of target mass, which swamps a tiny exact loss (a row
            # right with confidence: 1e-18) -- allow for it
            per = per + (1e-15 / RTOL[np.dtype(result_dtype)]) * wmax * qmax * (2 + np.log(C or 1))
            finite = per[np.isfinite(per)]
            loss_scale = per if reduction == "none" else float(np.sum(finite)) / denom
            grad_scale = gmag * wmax * qmax * 2 / denom
        if not soft and want_grad:
            # torch (and the kernels) give ignored rows a zero gradient whatever
            # grad_output is; the reference multiplies its zero by grad_output, so a NaN
            # or inf grad_output would make it NaN there
            ignored = np.asarray(t_ref) == ignore_val
            mask = ignored[None] if ndim == 1 else np.expand_dims(ignored, 1)
            want_g = np.where(np.broadcast_to(mask, np.shape(want_g)), 0, want_g).astype(want_g.dtype)
        loose = not all(v is None or np.all(np.isfinite(np.asarray(v, dtype=np.float64)))
                        for v in (go_ref, w_ref))
        assert_close(loss, want_loss, result_dtype, loss_scale, "cross_entropy loss", loose)
        if want_grad:
            assert_close(grad, want_g, result_dtype, grad_scale, "cross_entropy grad", loose)

    run_case(call, reasons, snap, x_obj, out, on_success)


# ------------------------------------------------------------ garbage of every kind

# ------------------------------------------------- the losses of the second layout
# One table: per loss, its options (valid values, invalid values with the exception
# they must raise), how its input and target are drawn from the example's values, and
# the sizes of the terms its kernel adds (the tolerance scale where they cancel).

def _opt(good, bad=()):
    return good, bad


NEW_LOSSES = {
    # name: (options {name: (good, [(bad, exception)])}, family)
    "mse_loss": ({}, "exact_weight"),
    "l1_loss": ({}, "exact_weight"),
    "huber_loss": ({"delta": _opt([1.0, 0.5, 3], [(0.0, ValueError), ("x", TypeError)])},
                   "exact_weight"),
    "smooth_l1_loss": ({"beta": _opt([1.0, 0.0, 0.25, 2], [(-1.0, ValueError), (np.nan, ValueError),
                                                          ("1", TypeError)])}, "elementwise"),
    "log_cosh_loss": ({}, "elementwise"),
    "msle_loss": ({}, "elementwise"),
    "binary_cross_entropy": ({}, "probabilities"),
    "soft_margin_loss": ({}, "signs"),
    "hinge_loss": ({"margin": _opt([1.0, 0.5, 0, -1.0], [("x", TypeError), (None, TypeError)]),
                    "squared": _opt([False, True])}, "signs"),
    "multilabel_soft_margin_loss": ({}, "multilabel"),
    "sigmoid_focal_loss": ({"alpha": _opt([0.25, -1.0, 0.0, 1.0], [("a", TypeError)]),
                            "gamma": _opt([2.0, 0.0, 1.5, 0.5], [(-1.0, ValueError)])},
                           "binary"),
    "kl_div": ({"log_target": _opt([False, True])}, "kl"),
    "poisson_nll_loss": ({"log_input": _opt([True, False]), "full": _opt([False, True]),
                          "eps": _opt([1e-8, 0.1], [("x", TypeError)])}, "counts"),
    "gaussian_nll_loss": ({"full": _opt([False, True]),
                           "eps": _opt([1e-6, 1e-3, 0.0], [(-1.0, ValueError)])}, "gaussian"),
    "nll_loss": ({"ignore_index": _opt([-100, 1, -1], [(1.5, TypeError)])}, "rows"),
    "multi_margin_loss": ({"p": _opt([1, 2], [(3, ValueError), (1.0, TypeError)]),
                           "margin": _opt([1.0, 0.5, 0], [("m", TypeError)])}, "rows"),
}


def _term_sizes(name, x, y, kw, w):
    """(loss, gradient) sizes of the terms each element's formula adds: the rounding of a
    float32 kernel is relative to these where they cancel (float64 values of the inputs)."""
    ax, ay = np.abs(x), np.abs(y)
    with np.errstate(all="ignore"):
        if name in ("mse_loss", "huber_loss"):
            return w * (ax + ay) ** 2, 2 * w * (ax + ay)
        if name == "l1_loss":
            return w * (ax + ay), 0 * x
        if name == "smooth_l1_loss":
            beta = float(kw["beta"])
            return ((ax + ay) ** 2 / beta if beta else ax + ay), ((ax + ay) / beta if beta else 0 * x)
        if name == "log_cosh_loss":
            return ax + ay, ax + ay
        if name == "msle_loss":
            r = np.abs(np.log1p(np.maximum(x, 1e-7))) + np.abs(np.log1p(np.maximum(y, 1e-7)))
            return r * r, 2 * r / (1 + np.maximum(x, 1e-7))
        if name == "binary_cross_entropy":
            lx = np.minimum(-np.log(x), 100)
            l1x = np.minimum(-np.log1p(-x), 100)
            return (w * (ay * lx + np.abs(1 - y) * l1x),
                    w * (ax + ay) / np.maximum(x * (1 - x), 1e-12))
        if name in ("soft_margin_loss", "hinge_loss"):
            m = float(kw.get("margin", 1.0))
            t = np.abs(m) + ax * ay + 1
            return (t * t, 2 * ay * t) if kw.get("squared") else (t, ay * t)
        if name in ("multilabel_soft_margin_loss", "sigmoid_focal_loss"):
            gamma = float(kw.get("gamma", 0.0))
            amp = 1 + gamma * (ax + 1)  # q^gamma from exp(gamma log q)
            return w * (ax + 1) * (1 + ay) * amp, w * (1 + ay) * (1 + gamma * (ax + 1)) * amp
        if name == "kl_div":
            p = np.exp(y) if kw["log_target"] else y
            lp = y if kw["log_target"] else np.log(np.abs(y))
            return np.abs(p) * (np.abs(lp) + ax + 1), np.abs(p)
        if name == "poisson_nll_loss":
            eps = float(kw["eps"])
            if kw["log_input"]:
                size, grad = np.exp(x) + ay * ax, np.exp(x) + ay
            else:
                size = ax + ay * np.abs(np.log(np.abs(x + eps))) + ay / np.abs(x + eps) * ax
                grad = 1 + ay / np.abs(x + eps)
            if kw["full"]:
                size = size + ay * np.abs(np.log(ay)) + ay + np.abs(np.log(2 * np.pi * ay))
            return size, grad
    raise KeyError(name)


def _draw_target(data, family, x_shape, label):
    """Targets in the loss's domain (any real value is valid, but values far outside it
    make the terms cancel beyond what a tolerance can say), in a random layout."""
    v = np.nan_to_num(values(data, x_shape), nan=0.5, posinf=3.0, neginf=-3.0)
    if family == "signs":
        v = np.where(v < 0, -1.0, 1.0)
    elif family in ("multilabel", "binary", "probabilities"):
        v = np.abs(v) % 1.0
        if data.draw(st.booleans(), label=f"{label} 0/1"):
            v = np.round(v)
    elif family == "kl":
        v = np.abs(v) % 1.0
    elif family == "counts":
        v = np.floor(np.abs(v) % 20)
    return v


@FUZZ
@given(data=st.data())
def test_fuzz_new_losses(data):
    """The losses of the second layout (one table entry each): every call returns what
    the reference gives or raises an allowed exception naming the argument, and no
    input is modified."""
    hostile(data)
    name = data.draw(st.sampled_from(sorted(NEW_LOSSES)), label="loss")
    options, family = NEW_LOSSES[name]
    want_grad = data.draw(st.booleans(), label="with_grad")
    reasons, mem = [], []
    rows = family == "rows"
    if rows:
        C = data.draw(st.sampled_from([1, 3, 7, 40]), label="C")
        if name == "nll_loss":
            shape = draw_shape(data, "batch", 0, 3)
            x_shape = (C,) if not shape else shape[:1] + (C,) + shape[1:]
        else:
            shape = draw_shape(data, "batch", 0, 1)
            x_shape = shape + (C,)
        loss_shape = shape
    else:
        x_shape = draw_shape(data, "input", 1 if family == "multilabel" else 0,
                             2 if family == "multilabel" else 3)
        loss_shape = x_shape[:-1] if family == "multilabel" else x_shape
    # input
    x_kind = pick(data, ["float"], ["bad"], "x kind")
    if x_kind == "float":
        x_arr = float_array(data, x_shape, "input")
        if family == "probabilities":
            with np.errstate(all="ignore"):
                in_range = np.abs(np.nan_to_num(x_arr.astype(np.float64), nan=0.5)) % 1.0
                if not (_HOSTILITY[0] and data.draw(st.booleans(), label="bce raw")):
                    x_arr = in_range.astype(x_arr.dtype)
            with np.errstate(invalid="ignore"):
                if not np.all((x_arr >= 0) & (x_arr <= 1)):
                    reasons.append(("input", ValueError))
        if name == "poisson_nll_loss" and data.draw(st.booleans(), label="x >= 0"):
            x_arr = np.abs(x_arr)
        x_obj, m = present(data, x_arr, "input")
        mem += m
        x_arr = np.asarray(x_obj)
        result_dtype = x_arr.dtype
    else:
        x_arr = bad_array(data, x_shape, "input")
        x_obj = x_arr
        reasons.append(("input", TypeError))
        mem.append(x_arr)
        result_dtype = np.dtype(np.float64)
    comp = compute_dtype(result_dtype)
    # target
    if rows:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="t seed"))
        t_arr = rng.integers(0, C, loss_shape)
        t_kind = pick(data, ["ok", "int32"], ["range", "float"], "t kind")
        if t_kind == "int32":
            t_arr = t_arr.astype(np.int32)
        elif t_kind == "range" and t_arr.size:
            t_arr.reshape(-1)[-1] = C + 2
            reasons.append(("target", IndexError))
        elif t_kind == "float":
            t_arr = t_arr.astype(np.float64)
            reasons.append(("target", TypeError))
    else:
        t_arr = _draw_target(data, family, x_shape, "target").astype(
            data.draw(st.sampled_from(FLOATS), label="target dtype"))
        if pick(data, ["ok"], ["shape"], "t shape") == "shape":
            t_arr = np.zeros(x_shape + (2,))
            reasons.append(("target", ValueError))
    t_obj, m = present(data, t_arr, "target")
    mem += m
    # options
    kwargs = {}
    for opt, (good, bad) in options.items():
        choice = pick(data, [("ok", g) for g in good], [("bad", b) for b in bad], opt)
        if choice[0] == "bad":
            kwargs[opt], exc = choice[1]
            reasons.append((opt, exc))
        else:
            kwargs[opt] = choice[1]
    if name == "multi_margin_loss" and rows and len(x_shape) > 2:
        reasons.append(("input", ValueError))
    if family == "multilabel" and x_arr.ndim == 0:
        reasons.append(("input", ValueError))
    if rows and any(d == 0 for d in x_shape[1:2] if len(x_shape) > 1):
        reasons.append(("input", ValueError))
    # weight / var
    w = None
    if family == "exact_weight" or name in ("binary_cross_entropy", "multilabel_soft_margin_loss") \
            or rows:
        wkind = pick(data, ["none", "ok"], ["wrong"], "weight kind")
        wshape = (x_shape if family in ("exact_weight", "probabilities") else
                  (C,) if rows else x_shape[-1:])
        if wkind == "ok":
            with np.errstate(invalid="ignore"):  # (inf % 4 is NaN: a NaN weight is valid)
                w = np.abs(float_array(data, wshape, "weight", comp)) % 4
        elif wkind == "wrong":
            w = np.ones(tuple(s + 1 for s in wshape) or (2,))
            reasons.append(("weight", ValueError))
        if w is not None:
            w_obj, m = present(data, w, "weight")
            mem += m
            kwargs["weight"] = w_obj
    var = None
    if name == "gaussian_nll_loss":
        vkind = pick(data, ["float", "full", "row"] + (["ones"] if len(x_shape) >= 2 else []),
                     ["negative"], "var kind")
        vrng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="var seed"))
        if vkind == "float":
            var = float(vrng.uniform(0, 3))
        elif vkind == "negative":
            var = -1.0
            reasons.append(("var", ValueError))
        else:
            vshape = {"full": x_shape, "row": x_shape[:-1],
                      "ones": x_shape[:-1] + (1,)}[vkind]
            var = vrng.uniform(0, 3, vshape).astype(comp)
            if vkind == "row" and not x_shape:
                var = vrng.uniform(0, 3, x_shape).astype(comp)
            mem.append(var)
    # reduction, threads, grad_output, out
    reduction = pick(data, list(REDUCTIONS) + (["batchmean"] if name == "kl_div" else []),
                     ["avg", None], "reduction")
    if reduction not in REDUCTIONS + ("batchmean",) or (reduction == "batchmean"
                                                        and name != "kl_div"):
        reasons.append(("reduction", ValueError))
    n_threads, r = draw_threads(data)
    reasons.append(r)
    go = out = None
    if want_grad:
        go, r, m = draw_grad_output(data, loss_shape, reduction, comp)
        if r is None and reduction == "batchmean" and np.ndim(go) and np.ndim(go) > 0:
            r = ("grad_output", ValueError)
        reasons.append(r)
        mem += m
        out, r = draw_out(data, x_obj, x_arr, result_dtype,
                          [t_obj, kwargs.get("weight"), go, var])
        reasons.append(r)
        kwargs["grad_output"] = go
        kwargs["out"] = (out, None) if name == "gaussian_nll_loss" and out is not None else out
    args = (x_obj, t_obj) + ((var,) if name == "gaussian_nll_loss" else ())
    snap = snapshot(mem + ([x_obj] if isinstance(x_obj, np.ndarray) else []))
    x_vals, t_vals = np.array(x_arr), np.array(np.asarray(t_obj))
    fn = getattr(fl, name + ("_with_grad" if want_grad else ""))

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kl_div's "mean"
            return fn(*args, reduction=reduction, n_threads=n_threads, **kwargs)

    def on_success(result):
        if want_grad:
            loss, grad = result[0], result[1]
        else:
            loss, grad = result, None
        check_types(loss, grad, "none" if reduction == "none" else "mean", loss_shape, x_shape,
                    result_dtype, want_grad)
        rkw = {k: v for k, v in kwargs.items() if k not in ("grad_output", "out")}
        if "weight" in rkw:
            rkw["weight"] = np.asarray(rkw["weight"]).astype(comp)
        for k in ("delta", "beta", "margin", "alpha", "gamma", "eps"):
            if k in rkw:
                rkw[k] = float(rkw[k])
        y_ref = t_vals if rows else t_vals.astype(comp)
        go_ref = None
        if go is not None:
            g = np.asarray(go)
            go_ref = float(g) if g.ndim == 0 else g.astype(comp)
        ref_args = (x_vals, y_ref) + ((var,) if name == "gaussian_nll_loss" else ())
        rfn = getattr(ref, name + "_with_grad")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            want = rfn(*ref_args, reduction=reduction, grad_output=go_ref, **rkw)
            per = np.abs(np.asarray(rfn(*ref_args, reduction="none", **rkw)[0], np.float64))
        x64 = x_vals.astype(np.float64)
        n = max(per.size, 1)
        denom = {"mean": n, "batchmean": x_vals.shape[0] if x_vals.ndim else 1}.get(reduction, 1)
        gv_scale = None
        if name in ("nll_loss", "multi_margin_loss"):
            # sums of exact terms (nll) or of few roundings; the losses themselves set the scale
            sizes = per * 4, 0.0
        elif name == "gaussian_nll_loss":
            v = np.asarray(var, np.float64)
            if v.ndim and v.shape != x64.shape and v.shape == x64.shape[:-1]:
                v = v[..., np.newaxis]
            v = np.maximum(np.broadcast_to(v, x64.shape), float(rkw["eps"]))
            d = np.abs(x64) + np.abs(np.asarray(y_ref, np.float64))
            with np.errstate(all="ignore"):
                sizes = 0.5 * (np.abs(np.log(v)) + d * d / v) + 1, d / v
                gv_terms = 0.5 * (1 / v + d * d / (v * v))
            gm = 1.0 if go_ref is None else np.abs(np.broadcast_to(np.asarray(go_ref, np.float64),
                                                                   np.shape(per)))
            if isinstance(var, np.ndarray):
                vshape = np.shape(var)
                full_terms = gv_terms * gm
                if vshape != x64.shape:
                    axes = (x64.ndim - 1,) if vshape == x64.shape[:-1] else tuple(
                        i for i in range(x64.ndim) if vshape[i] == 1 and x64.shape[i] != 1)
                    full_terms = np.sum(full_terms, axis=axes).reshape(vshape)
                gv_scale = full_terms
        else:
            w64 = 1.0 if w is None else np.broadcast_to(
                np.asarray(w, np.float64).reshape(np.shape(w)), x64.shape)
            with np.errstate(all="ignore"):
                sizes = _term_sizes(name, x64, np.asarray(y_ref, np.float64), rkw, w64)
            if family == "multilabel":
                sizes = (np.sum(sizes[0], axis=-1) / max(x_shape[-1], 1), sizes[1] / max(x_shape[-1], 1))
        gmag = 1.0 if go_ref is None else np.abs(np.asarray(go_ref, np.float64))
        if rows:
            gmag = 1.0  # (their gradients are single products: no cancelling terms)
        elif family == "multilabel" and np.ndim(gmag):
            gmag = gmag[..., np.newaxis]  # one grad_output per sample, spread over C
        if reduction == "none":
            loss_scale = sizes[0]
        else:
            fin = np.asarray(sizes[0])[np.isfinite(sizes[0])]
            # (an empty input's mean divides by 0: NaN, compared as such)
            loss_scale = float(np.sum(fin)) / ((denom or 1) if reduction in ("mean", "batchmean")
                                               else 1)
            if name == "multilabel_soft_margin_loss" and reduction == "sum":
                loss_scale = float(np.sum(fin))
        grad_scale = gmag * np.asarray(sizes[1]) / ((denom or 1)
                                                    if reduction in ("mean", "batchmean") else 1)
        loose = not all(v is None or np.all(np.isfinite(np.asarray(v, dtype=np.float64)))
                        for v in (go_ref, rkw.get("weight")))
        assert_close(loss, want[0], result_dtype, loss_scale, f"{name} loss", loose)
        if want_grad:
            assert_close(grad, want[1], result_dtype, grad_scale, f"{name} grad", loose)
            if name == "gaussian_nll_loss" and want[2] is not None:
                scale = gv_scale / (denom if reduction in ("mean", "batchmean") else 1)
                assert result[2].dtype == result_dtype and result[2].shape == np.shape(var)
                assert_close(result[2], want[2], result_dtype, scale, f"{name} grad_var", loose)

    run_case(call, reasons, snap, x_obj, out, on_success)


GARBAGE = [None, "abc", b"xyz", 3, 2.5, 1j, [], [[1.0], [2.0, 3.0]], {"a": 1}, object(),
           np.array([1.0, "a"], dtype=object), np.ones((2, 2), np.complex64),
           np.arange(4, dtype=np.uint16).reshape(2, 2), np.datetime64("2020-01-01"),
           np.array(["x", "y"]), np.ones((2, 2), np.float64)[:, :, None].transpose(2, 0, 1)]
FUNCS = ["mse_loss", "huber_loss", "binary_cross_entropy_with_logits", "cross_entropy"]


@FUZZ
@given(name=st.sampled_from(FUNCS), grad=st.booleans(),
       x=st.sampled_from(range(len(GARBAGE))), t=st.sampled_from(range(len(GARBAGE))),
       extra=st.sampled_from(["none", "weight", "pos_weight", "grad_output", "out", "delta",
                              "label_smoothing", "ignore_index", "reduction", "n_threads"]),
       e=st.sampled_from(range(len(GARBAGE))))
def test_fuzz_garbage_arguments(name, grad, x, t, extra, e):
    """Arbitrary Python objects in every argument: a result or an allowed exception,
    never anything else (no SystemError, OverflowError, AttributeError, crash)."""
    kwargs = {}
    if extra != "none":
        if extra in ("weight", "pos_weight") and name != "binary_cross_entropy_with_logits":
            extra = "reduction"
        if extra in ("grad_output", "out") and not grad:
            extra = "n_threads"
        if extra == "delta" and name != "huber_loss":
            extra = "reduction"
        if extra in ("label_smoothing", "ignore_index") and name != "cross_entropy":
            extra = "reduction"
        kwargs[extra] = GARBAGE[e]
    fn = getattr(fl, name + ("_with_grad" if grad else ""))
    args = [GARBAGE[x], GARBAGE[t]]
    snaps = snapshot([a for a in args + list(kwargs.values()) if isinstance(a, np.ndarray)
                      and a.dtype != object])
    try:
        fn(*args, **kwargs)
    except ALLOWED:
        pass
    assert unchanged(snaps)


def test_fuzz_budget_is_reported():
    """Not a check: records the per-test example budget in the pytest output (-rA)."""
    print(f"fuzz budget: {EXAMPLES} examples per test (FASTLOSS_FUZZ_EXAMPLES)")


# ------------------------------------------------- regressions found by the fuzzer
# Deterministic repros of what the fuzz tests found, so they fail on every run (the
# fuzzer meets them only now and then within a CI budget).

def test_huge_n_threads_is_accepted():
    """n_threads is 'the most threads to use': any positive integer is valid (the
    kernels never use more threads than blocks).  2**40 must not leak an
    OverflowError from the C int conversion."""
    x = np.linspace(-1, 1, 10_000)
    want = fl.mse_loss(x, x * 0.5, n_threads=1)
    for n in (2**31, 2**40, 2**63):
        got = fl.mse_loss(x, x * 0.5, n_threads=n)
        assert got == want
        loss, _ = fl.cross_entropy_with_grad(x.reshape(100, 100), np.zeros(100, np.int64),
                                             n_threads=n)
        assert np.isfinite(loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ce_nan_logit_gives_nan(simd_path, dtype):
    """A NaN logit makes its row's loss NaN (as in torch and the reference), never a
    finite number: log of a NaN sum of exponentials must stay NaN."""
    x = np.array([[np.nan, 5.0, 0.0], [1.0, np.nan, -3.0]], dtype)
    for target in (np.array([2, 2]), np.array([[0, 0, 1], [0.2, 0.3, 0.5]], dtype)):
        loss, grad = fl.cross_entropy_with_grad(x, target, reduction="none")
        assert np.all(np.isnan(loss)), (target, loss)
        assert np.all(np.isnan(grad)), (target, grad)
        for reduction in ("mean", "sum"):
            assert np.isnan(fl.cross_entropy(x, target, reduction=reduction)), reduction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ce_posinf_logit_gives_nan(simd_path, dtype):
    """A +inf logit: softmax is inf/inf, so torch and the reference give NaN for the
    row's loss whatever the target; the kernels gave +inf for targets other than
    the +inf class."""
    x = np.array([[np.inf, 0.5, 1.0], [np.inf, np.inf, 0.0]], dtype)
    for t in range(3):
        loss, grad = fl.cross_entropy_with_grad(x, np.array([t, t]), reduction="none")
        want = ref.cross_entropy(x, np.array([t, t]), reduction="none")
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(want), err_msg=f"target {t}")
        assert np.all(np.isnan(grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ce_infinite_weight_or_probability_on_the_maximum(simd_path, dtype):
    """An infinite class weight or probability on the row's largest logit: the exact
    loss (and torch's, and the reference's) is +inf (inf times -log p, p < 1); the
    kernels' Q*log(s) - T form gives inf*0 = NaN there."""
    x = np.array([[1.0, 5.0, 0.0]], dtype)
    w = np.array([1.0, np.inf, 1.0], dtype)
    loss = fl.cross_entropy(x, np.array([0]), weight=w, label_smoothing=0.1, reduction="none")
    assert loss[0] == np.inf, loss
    q = np.array([[0.5, np.inf, 0.0]], dtype)
    loss = fl.cross_entropy(x, q, reduction="none")
    assert loss[0] == np.inf, loss


@pytest.mark.parametrize("C", [16, 17, 40, 100, 1000, 5000])
def test_ce_zero_class_weights_with_label_smoothing(simd_path, C):
    """Class weights with zeros and label smoothing on rows of >= 16 classes: the
    avx2/avx512 builds summed sum_c w_c d_c wrongly (dot_lanes' `0 if w == 0 else
    w*d` accumulation is miscompiled by gcc 12.2 -O3 -mavx2 -fno-trapping-math; a
    standalone C copy of the loop reproduces it), off by up to 4% of the loss."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((3, C))
    t = rng.integers(0, C, 3)
    w = (np.arange(C) % 3).astype(np.float64)
    for dtype in (np.float64, np.float32):
        got, grad = fl.cross_entropy_with_grad(x.astype(dtype), t, weight=w.astype(dtype),
                                               label_smoothing=0.1, reduction="none")
        want, want_grad = ref.cross_entropy_with_grad(x.astype(dtype), t, weight=w.astype(dtype),
                                                      label_smoothing=0.1, reduction="none")
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=rtol, err_msg=f"{simd_path} C={C} {dtype}")
        np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * 1e-3)


# ------------------------------------------------------------------ gradient boosting
# Every elementwise *_grad_hess under every convention, on drawn sizes (across the
# kernels' block boundaries), dtypes, values and sample weights: the kernel's one
# pass against the reference, out= identical to a fresh result, inputs unchanged.

GRAD_HESS_ELEMENTWISE = {
    # name -> (input kind, target kind, options)
    "binary_cross_entropy_with_logits": ("margin", "01", {}),
    "sigmoid_focal_loss": ("margin", "01", {}),
    "soft_margin_loss": ("margin", "sign", {}),
    "hinge_loss": ("margin", "sign", {"squared": True}),
    "mse_loss": ("margin", "real", {}),
    "huber_loss": ("margin", "real", {"delta": 1.5}),
    "log_cosh_loss": ("margin", "real", {}),
    "poisson_nll_loss": ("small", "count", {}),
    "msle_loss": ("positive", "positive", {}),
    "binary_cross_entropy": ("probability", "01", {}),
    "kl_div": ("log_probability", "probability", {}),
}


def _grad_hess_operand(data, kind, n, dtype, label):
    bound = {"margin": 30.0, "real": 30.0, "small": 5.0, "positive": 50.0, "count": 20.0,
             "probability": 1.0, "log_probability": 1.0, "01": 1.0, "sign": 1.0}[kind]
    v = np.array(data.draw(st.lists(st.floats(-bound, bound, allow_nan=False), min_size=n,
                                    max_size=n), label=label), np.float64)
    if kind in ("positive", "count"):
        v = np.abs(v)
    if kind == "count":
        v = np.floor(v)
    if kind == "probability":
        v = 0.02 + 0.96 * np.abs(v)
    if kind == "log_probability":
        v = np.log(0.02 + 0.96 * np.abs(v))
    if kind == "01":
        v = (v > 0).astype(np.float64)
    if kind == "sign":
        v = np.where(v > 0, 1.0, -1.0)
    return v.astype(dtype)


@FUZZ
@given(data=st.data())
def test_fuzz_grad_hess(data):
    name = data.draw(st.sampled_from(sorted(GRAD_HESS_ELEMENTWISE)), label="loss")
    x_kind, t_kind, options = GRAD_HESS_ELEMENTWISE[name]
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64]), label="dtype"))
    n = data.draw(st.sampled_from([0, 1, 15, 17, 1023, 1025, 2100]), label="n")
    hessian = data.draw(st.sampled_from(["exact", "xgboost", "lightgbm"]), label="hessian")
    x = _grad_hess_operand(data, x_kind, n, dtype, "input")
    y = _grad_hess_operand(data, t_kind, n, dtype, "target")
    sw = None
    if data.draw(st.booleans(), label="sample_weight"):
        sw = np.abs(_grad_hess_operand(data, "real", n, np.float64, "sample_weight")) / 10
    x0, y0 = x.copy(), y.copy()
    fast = getattr(fl, name + "_grad_hess")
    loss, grad, hess = fast(x, y, **options, sample_weight=sw, hessian=hessian)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    assert grad.dtype == hess.dtype == dtype and grad.shape == hess.shape == x.shape
    r_loss, r_grad, r_hess = getattr(ref, name + "_grad_hess")(x, y, **options, sample_weight=sw,
                                                              hessian=hessian)
    rtol = RTOL[dtype] * 10
    # A loss term can cancel (kl_div's p (log p - x) at x = log p): its rounding is
    # relative to the size of its parts, not of the result.
    w = np.ones(n) if sw is None else sw
    parts = float(np.sum(w * (1 + np.abs(x.astype(np.float64)) + np.abs(y.astype(np.float64)))))
    np.testing.assert_allclose(float(loss), float(r_loss), rtol=rtol, atol=rtol * parts)
    for actual, expected in ((grad, r_grad), (hess, r_hess)):
        expected = np.asarray(expected, np.float64)
        scale = np.max(np.abs(expected)) if expected.size else 1.0
        np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                                   atol=rtol * scale + np.finfo(dtype).tiny)
    if hessian != "exact" and n:
        assert np.all(hess >= 0) if sw is not None else np.all(hess > 0)
    out = (np.empty_like(x), np.empty_like(x))
    again = fast(x, y, **options, sample_weight=sw, hessian=hessian, out=out)
    assert again[1] is out[0] and again[2] is out[1]
    np.testing.assert_array_equal(out[0], grad)
    np.testing.assert_array_equal(out[1], hess)
    assert again[0] == loss
