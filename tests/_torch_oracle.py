"""Shared helpers for comparing fastloss.reference with torch (+ autograd) and with the calculus.

The basic ones (``check``, ``torch_loss_grad``, ``cases``, ...) live in test_reference_vs_torch.py
and are re-exported from here; this module adds what the newer losses need: gradients with
respect to several arrays, and 4th-order central finite differences.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from test_reference_vs_torch import (  # noqa: E402,F401  (re-exported)
    DTYPES,
    REDUCTIONS,
    TOL,
    _t,
    cases,
    check,
    grad_output_for,
    grad_output_kinds,
    make_ce,
    torch_loss_grad,
)


def torch_loss_grads(fn, *args, diff=(0,), grad_output=None, **kwargs):
    """Loss of ``fn(*args, **kwargs)`` and autograd gradients of sum(grad_output * loss) with
    respect to the positional arrays whose indices are in ``diff`` (a tuple of arrays)."""
    targs = []
    for i, a in enumerate(args):
        if i in diff:
            targs.append(torch.from_numpy(np.array(a, copy=True)).requires_grad_(True))
        else:
            targs.append(_t(a) if isinstance(a, np.ndarray) else a)
    kwargs = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    loss = fn(*targs, **kwargs)
    dtype = np.asarray(args[0]).dtype
    go = 1.0 if grad_output is None else torch.as_tensor(np.asarray(grad_output, dtype))
    (loss * go).sum().backward()
    return (loss.detach().numpy(), *(targs[i].grad.numpy() for i in diff))


def fd_grad(f, x, h=1e-5):
    """4th-order central finite differences of the scalar function ``f`` at the float64 ``x``:
    ``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h`` along every element (as sklearn does)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        def at(step, i=i):
            xp = x.copy()
            xp[i] += step
            return float(f(xp))
        g[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return g


def check_fd(with_grad, x, *args, grad_output=None, rtol=1e-7, atol=1e-9, h=1e-5, **kwargs):
    """The analytic gradient of ``with_grad`` (float64) against finite differences of
    sum(grad_output * loss), for reduction "none" with an array grad_output."""
    loss, grad = with_grad(x, *args, reduction="none", grad_output=grad_output, **kwargs)[:2]
    go = 1.0 if grad_output is None else grad_output

    def f(xp):
        return np.sum(go * with_grad(xp, *args, reduction="none", **kwargs)[0])

    np.testing.assert_allclose(grad, fd_grad(f, x, h), rtol=rtol, atol=atol)
