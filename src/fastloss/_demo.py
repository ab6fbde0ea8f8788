"""``python -m fastloss demo``: why classifiers train on softmax cross-entropy, shown with fastloss.

Trains a softmax-regression model and a one-hidden-layer network (NumPy forward
and backward passes, fastloss for every loss and its gradient) on scikit-learn's
bundled handwritten digits (8x8 images, 10 classes) with three losses:

- ``cross-entropy``: softmax cross-entropy on the logits; its gradient is ``p - y``;
- ``MSE(softmax)``: squared error between the softmax outputs and the one-hot
  targets, whose gradient is carried back through the softmax Jacobian
  ``diag(p) - p p^T`` here -- that product is small wherever the softmax is flat
  or saturated, which is the vanishing gradient;
- ``BCE one-vs-rest``: ten independent sigmoid binary cross-entropies.

Every run of a model starts from the same weights and sees the same mini-batches
with the same optimiser and learning rate. Every loss is summed over the ten
classes and averaged over the samples, so that the three share one scale (the
gradient of ``mse_loss``'s and BCE's default ``reduction="mean"`` would carry an
extra factor 1/10). The arguments of every loss+gradient call of a run are kept and
the calls replayed with fastloss and with the pure-NumPy ``fastloss.reference``:
both are timed and their gradients compared.

The network is 64-64-10 with a ReLU hidden layer; SGD with momentum 0.9, batches
of 32; ``run()`` returns the results as ``RunResult`` objects.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

import fastloss
from fastloss import reference

#: Test accuracy whose first epoch the table reports.
THRESHOLD = 0.90
#: The gradient-norm column averages over this many first epochs.
GRAD_EPOCHS = 3

LOSSES = ("cross-entropy", "mse", "bce")
LOSS_LABELS = {"cross-entropy": "cross-entropy", "mse": "MSE(softmax)", "bce": "BCE one-vs-rest"}
MODELS = ("softmax", "mlp")
MODEL_LABELS = {"softmax": "softmax regression", "mlp": "MLP 64-64-10"}

DEFAULT_EPOCHS = 20
QUICK_EPOCHS = 8
DEFAULT_LR = 0.01
MOMENTUM = 0.9
BATCH_SIZE = 32
HIDDEN = 64

_MISSING_EXTRAS = (
    "python -m fastloss demo needs scikit-learn (for its bundled digits data set) and "
    "matplotlib (for the figure): {error}\n"
    'Install them with:  pip install "fastloss[demo]"\n'
    '(from a source checkout:  pip install ".[demo]")'
)


# --------------------------------------------------------------------------------- results

@dataclass
class RunResult:
    """One model trained with one loss. ``history`` lists are indexed by epoch (0 = initial)."""

    model: str
    loss: str
    epochs: int
    #: First epoch (1-based) whose test accuracy reached THRESHOLD, or None.
    epochs_to_threshold: int | None
    final_train_loss: float
    final_test_accuracy: float
    #: Mean per-sample norm of d(loss)/d(logits) over the steps of the first GRAD_EPOCHS epochs.
    grad_norm: float
    #: Seconds inside the fastloss loss+gradient calls, and inside the reference's same calls.
    time_fastloss: float
    time_reference: float
    #: Largest |fastloss gradient - reference gradient| seen (per-sample scale).
    max_grad_diff: float
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    #: Per epoch (from 1): mean per-sample norm of d(loss)/d(logits).
    grad_norms: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------ data

def load_data(seed: int = 0):
    """Digits as (x_train, y_train, x_test, y_test): pixels scaled to [0, 1], a stratified
    75/25 split fixed by `seed`. Needs scikit-learn (its bundled copy; nothing is downloaded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=seed)
    return (np.ascontiguousarray(x_train), y_train.astype(np.int64),
            np.ascontiguousarray(x_test), y_test.astype(np.int64))


# ---------------------------------------------------------------------------------- models

def init_params(model: str, n_in: int, n_classes: int, seed: int) -> dict[str, np.ndarray]:
    """Glorot-normal weights (He for the ReLU layer), zero biases; depends only on the seed."""
    rng = np.random.default_rng([seed, 1])
    if model == "softmax":
        return {"W": rng.normal(0.0, np.sqrt(2.0 / (n_in + n_classes)), (n_in, n_classes)),
                "b": np.zeros(n_classes)}
    return {"W1": rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, HIDDEN)),
            "b1": np.zeros(HIDDEN),
            "W2": rng.normal(0.0, np.sqrt(2.0 / (HIDDEN + n_classes)), (HIDDEN, n_classes)),
            "b2": np.zeros(n_classes)}


def forward(params: dict[str, np.ndarray], x: np.ndarray):
    """(logits, cache for backward)."""
    if "W" in params:
        return x @ params["W"] + params["b"], (x,)
    h = np.maximum(x @ params["W1"] + params["b1"], 0.0)
    return h @ params["W2"] + params["b2"], (x, h)


def backward(params: dict[str, np.ndarray], cache, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the parameters from d(loss)/d(logits)."""
    if "W" in params:
        (x,) = cache
        return {"W": x.T @ dlogits, "b": dlogits.sum(axis=0)}
    x, h = cache
    dh = (dlogits @ params["W2"].T) * (h > 0.0)
    return {"W1": x.T @ dh, "b1": dh.sum(axis=0),
            "W2": h.T @ dlogits, "b2": dlogits.sum(axis=0)}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- losses

def loss_input(loss: str, logits: np.ndarray) -> np.ndarray:
    """What the loss function is called on: the logits, or for MSE the softmax outputs."""
    return softmax(logits) if loss == "mse" else logits


def call_loss(impl, loss: str, inp: np.ndarray, labels: np.ndarray, onehot: np.ndarray,
              out: np.ndarray | None = None):
    """One loss+gradient call of `impl` (``fastloss`` or ``fastloss.reference``, which take
    the same arguments): (loss summed over classes and averaged over samples, its gradient
    with respect to `inp`)."""
    kw = {} if out is None else {"out": out}
    if loss == "cross-entropy":
        return impl.cross_entropy_with_grad(inp, labels, **kw)
    n = inp.shape[0]
    if loss == "bce":
        value, grad = impl.binary_cross_entropy_with_logits_with_grad(
            inp, onehot, reduction="sum", grad_output=1.0 / n, **kw)
    else:
        value, grad = impl.mse_loss_with_grad(inp, onehot, reduction="sum",
                                              grad_output=1.0 / n, **kw)
    return value / n, grad


def logit_grad(loss: str, inp: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """d(loss)/d(logits) from the gradient `call_loss` returned. For MSE this carries
    d/dp back through the softmax Jacobian dp_i/dz_j = p_i ([i == j] - p_j):
    dz_j = p_j (dp_j - sum_i dp_i p_i). Every entry is scaled by a probability, so it
    vanishes wherever the softmax is saturated -- also on the true class of a
    confidently wrong prediction."""
    if loss != "mse":
        return grad
    p = inp
    return p * (grad - np.sum(grad * p, axis=1, keepdims=True))


def loss_and_grad(loss: str, logits: np.ndarray, labels: np.ndarray, onehot: np.ndarray,
                  impl=fastloss):
    """(loss, d(loss)/d(logits)) of a batch of logits, computed with `impl`."""
    inp = loss_input(loss, logits)
    value, grad = call_loss(impl, loss, inp, labels, onehot)
    return float(value), logit_grad(loss, inp, grad)


def _eval(loss: str, params, x, y, onehot):
    logits, _ = forward(params, x)
    inp = loss_input(loss, logits)
    value, _ = call_loss(fastloss, loss, inp, y, onehot)
    return float(value), float(np.mean(np.argmax(logits, axis=1) == y))


def replay(loss: str, calls, repeat: int = 5) -> tuple[float, float, float]:
    """Time the recorded loss+gradient calls of a training run, back to back, with fastloss
    and with the NumPy reference: (fastloss seconds, reference seconds, largest gradient
    difference on a per-sample scale). Each time is the best of `repeat` replays, so that
    a busy machine's interruptions of these microsecond calls do not count."""
    buffer = np.empty_like(calls[0][0]) if calls else None
    best = {}
    for impl in (fastloss, reference):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for inp, labels, onehot in calls:
                call_loss(impl, loss, inp, labels, onehot,
                          out=buffer[:len(inp)] if impl is fastloss else None)
            times.append(time.perf_counter() - t0)
        best[impl] = min(times)
    diff = 0.0
    for inp, labels, onehot in calls:
        _, g_fast = call_loss(fastloss, loss, inp, labels, onehot)
        _, g_ref = call_loss(reference, loss, inp, labels, onehot)
        diff = max(diff, len(inp) * float(np.max(np.abs(g_fast - g_ref))))
    return best[fastloss], best[reference], diff


# -------------------------------------------------------------------------------- training

class _Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal; one line per
    finished run otherwise)."""

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 30):
        self.total, self.done, self.width = total, 0, width
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, label: str, finished_run: bool = False) -> None:
        self.done += 1
        if not self.enabled or not (self.tty or finished_run):
            return
        filled = round(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"[{bar}] {100 * self.done / self.total:3.0f}%  {label:<52}"
                f"{time.perf_counter() - self.start:5.1f} s")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def train(model: str, loss: str, data, *, epochs: int, seed: int, lr: float = DEFAULT_LR,
          progress: _Progress | None = None) -> RunResult:
    """Train `model` with `loss` by mini-batch SGD with momentum; returns its RunResult."""
    x_train, y_train, x_test, y_test = data
    n_classes = 10
    onehot_train = np.eye(n_classes)[y_train]
    onehot_test = np.eye(n_classes)[y_test]
    params = init_params(model, x_train.shape[1], n_classes, seed)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    order_rng = np.random.default_rng([seed, 2])  # same batches for every loss
    grad_buffer = np.empty((BATCH_SIZE, n_classes))

    train_loss = [_eval(loss, params, x_train, y_train, onehot_train)[0]]
    test_acc = [_eval(loss, params, x_test, y_test, onehot_test)[1]]
    grad_norms: list[float] = []
    calls = []  # every loss+gradient call's arguments, replayed for the timings
    n = x_train.shape[0]
    for epoch in range(1, epochs + 1):
        order = order_rng.permutation(n)
        norm_sum, norm_count = 0.0, 0
        for start in range(0, n, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            xb, yb, ob = x_train[idx], y_train[idx], onehot_train[idx]
            logits, cache = forward(params, xb)
            inp = loss_input(loss, logits)
            _, grad = call_loss(fastloss, loss, inp, yb, ob, out=grad_buffer[:len(idx)])
            dlogits = logit_grad(loss, inp, grad)
            calls.append((inp, yb, ob))
            # per-sample gradient: the batch-mean loss scales each row by 1/len(idx)
            norm_sum += len(idx) * float(np.sum(np.linalg.norm(dlogits, axis=1)))
            norm_count += len(idx)
            grads = backward(params, cache, dlogits)
            for k, g in grads.items():
                velocity[k] *= MOMENTUM
                velocity[k] -= lr * g
                params[k] += velocity[k]
        grad_norms.append(norm_sum / norm_count)
        train_loss.append(_eval(loss, params, x_train, y_train, onehot_train)[0])
        test_acc.append(_eval(loss, params, x_test, y_test, onehot_test)[1])
        if progress is not None:
            progress.update(f"{MODEL_LABELS[model]}, {LOSS_LABELS[loss]}: epoch {epoch}/{epochs}",
                            finished_run=epoch == epochs)

    t_fast, t_ref, max_diff = replay(loss, calls)
    reached = next((e for e in range(1, epochs + 1) if test_acc[e] >= THRESHOLD), None)
    first = grad_norms[:GRAD_EPOCHS]
    return RunResult(model=model, loss=loss, epochs=epochs, epochs_to_threshold=reached,
                     final_train_loss=train_loss[-1], final_test_accuracy=test_acc[-1],
                     grad_norm=float(np.mean(first)) if first else float("nan"),
                     time_fastloss=t_fast, time_reference=t_ref, max_grad_diff=max_diff,
                     train_loss=train_loss, test_accuracy=test_acc, grad_norms=grad_norms)


def _one_blas_thread():
    """A context in which BLAS runs on one thread: these matrices are far too small to
    gain from more, and on a busy machine the extra threads cost several times the work.
    (threadpoolctl comes with scikit-learn.)"""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run(epochs: int = DEFAULT_EPOCHS, seed: int = 0, lr: float = DEFAULT_LR,
        models=MODELS, losses=LOSSES, progress: bool = False, data=None) -> list[RunResult]:
    """Train every model with every loss; the results in (model, loss) order.

    Needs scikit-learn (for the data). Deterministic for a given seed, timings aside.
    """
    if data is None:
        data = load_data(seed)
    bar = _Progress(len(models) * len(losses) * epochs, enabled=progress)
    try:
        with _one_blas_thread():
            return [train(m, l, data, epochs=epochs, seed=seed, lr=lr, progress=bar)
                    for m in models for l in losses]
    finally:
        bar.close()


# -------------------------------------------------------------------------------- reporting

_WIDTH = 100


def _wrap(text: str) -> str:
    """`text` filled to _WIDTH columns; a no-break space (\\xa0) keeps words together."""
    return textwrap.fill(text, _WIDTH).replace("\xa0", " ")


def format_table(results: list[RunResult]) -> str:
    """The results as a fixed-width text table (one row per model and loss)."""
    grad_epochs = min(GRAD_EPOCHS, results[0].epochs) if results else GRAD_EPOCHS
    cols = ("model", "loss", f"to {100 * THRESHOLD:.0f}%", "train loss", "test acc",
            f"|dL/dz| ep1-{grad_epochs}", "fastloss", "NumPy ref", "speed-up")
    fmt = "{:<19}{:<16}{:>6}{:>12}{:>10}{:>15}{:>10}{:>11}{:>10}"
    lines = [fmt.format(*cols)]
    lines.append("-" * len(lines[0]))
    for r in results:
        reached = (f"{r.epochs_to_threshold}" if r.epochs_to_threshold is not None
                   else f">{r.epochs}")
        lines.append(fmt.format(
            MODEL_LABELS[r.model], LOSS_LABELS[r.loss], reached, f"{r.final_train_loss:.4f}",
            f"{100 * r.final_test_accuracy:.1f}%", f"{r.grad_norm:.3f}",
            f"{1e3 * r.time_fastloss:.1f} ms", f"{1e3 * r.time_reference:.1f} ms",
            f"{r.time_reference / r.time_fastloss:.1f}x"))
    return "\n".join(lines)


def format_notes(results: list[RunResult], batches: int) -> str:
    epochs = results[0].epochs
    grad_epochs = min(GRAD_EPOCHS, epochs)
    diff = max(r.max_grad_diff for r in results)
    return "\n".join(_wrap(t) for t in (
        f"to {100 * THRESHOLD:.0f}%: the first epoch whose test accuracy reached "
        f"{100 * THRESHOLD:.0f}% (>{epochs}: not within the {epochs} epochs). train loss: each "
        f"row's own loss on the training set after the last epoch, summed over the 10 classes "
        f"and averaged over the samples (so not comparable across losses).",
        f"|dL/dz| ep1-{grad_epochs}: the per-sample norm of the loss's gradient with respect to "
        f"the logits z (for MSE after the softmax Jacobian), averaged over the training samples "
        f"of the first {grad_epochs} epochs. Through the softmax every component of MSE's gradient is "
        f"scaled by a probability: about 1/10 while the outputs are spread over the 10 classes, "
        f"and vanishing where they saturate. Cross-entropy's gradient is p\xa0-\xa0y.",
        f"fastloss / NumPy ref: time in the {batches} loss+gradient calls of each run (batches "
        f"of {BATCH_SIZE} x 10), replayed back to back with fastloss and with the pure-NumPy "
        f"fastloss.reference (best of 5); the gradients agree to {diff:.1e}. At this size the "
        f"cost per call is mostly fixed overhead.",
    ))


def worked_example() -> dict[str, tuple[float, float]]:
    """DESIGN.md section 7, computed by fastloss: {measure: (net A, net B)}, plus under
    "saturated" the per-sample |d(loss)/d(logits)| of one confidently wrong prediction,
    p = [.01 .01 .98] for class 0: (cross-entropy, MSE through the softmax)."""
    targets = np.array([2, 1, 0])
    nets = (np.array([[.3, .3, .4], [.3, .4, .3], [.1, .2, .7]]),
            np.array([[.1, .2, .7], [.1, .7, .2], [.3, .4, .3]]))
    onehot = np.eye(3)[targets]
    values: dict[str, list[float]] = {"cross-entropy": [], "squared error": [], "mse_loss": []}
    for p in nets:
        # log p are logits whose softmax is p, so cross_entropy gives mean(-ln p[target]).
        values["cross-entropy"].append(float(fastloss.cross_entropy(np.log(p), targets)))
        values["squared error"].append(float(fastloss.mse_loss(p, onehot, reduction="sum")) / 3)
        values["mse_loss"].append(float(fastloss.mse_loss(p, onehot)))
    result = {k: (v[0], v[1]) for k, v in values.items()}

    p = np.array([[.01, .01, .98]])
    label, target = np.array([0]), np.array([[1.0, 0.0, 0.0]])
    _, g_ce = call_loss(fastloss, "cross-entropy", np.log(p), label, target)
    _, g_mse = call_loss(fastloss, "mse", p, label, target)
    result["saturated"] = (float(np.linalg.norm(g_ce)),
                           float(np.linalg.norm(logit_grad("mse", p, g_mse))))
    return result


def format_worked_example() -> str:
    ex = worked_example()
    rows = (("cross-entropy (mean of -ln p[target])", "cross-entropy"),
            ("squared error summed over classes, mean over samples", "squared error"),
            ("mse_loss (mean over all 9 elements)", "mse_loss"))
    lines = [_wrap("Worked example (DESIGN.md section 7), computed by fastloss. Three samples "
                   "with targets 2, 1, 0; net A predicts [.3 .3 .4] [.3 .4 .3] [.1 .2 .7], "
                   "net B [.1 .2 .7] [.1 .7 .2] [.3 .4 .3]: both classify 2 of 3 correctly."),
             f"  {'':<54}{'net A':>7}{'net B':>7}"]
    lines += [f"  {label:<54}{ex[key][0]:>7.2f}{ex[key][1]:>7.2f}" for label, key in rows]
    lines.append(_wrap(
        "Cross-entropy separates the better net more sharply, which is why classifiers train "
        f"on it. And its gradient does not vanish: for one confidently wrong sample, p = "
        f"[.01 .01 .98] with target 0, |dL/dlogits| is {ex['saturated'][0]:.2f} for "
        f"cross-entropy (p\xa0-\xa0y) but {ex['saturated'][1]:.2f} for squared error through the "
        "softmax."))
    return "\n".join(lines)


def plot(results: list[RunResult], path: str) -> str:
    """Write the figure (test accuracy, train loss and gradient norm per epoch, one row per
    model) to `path` as a PNG with matplotlib's Agg renderer (pyplot is not used, so no
    backend is switched); returns the absolute path."""
    from matplotlib.figure import Figure

    models = [m for m in MODELS if any(r.model == m for r in results)]
    colours = {"cross-entropy": "tab:blue", "mse": "tab:red", "bce": "tab:green"}
    fig = Figure(figsize=(13, 1.0 + 3.4 * len(models)), layout="constrained")
    fig.suptitle("python -m fastloss demo: digits, three losses; per model the same initial "
                 "weights, batches and optimiser")
    axes = fig.subplots(len(models), 3, squeeze=False)
    for row, model in zip(axes, models):
        name = MODEL_LABELS[model]
        for r in (r for r in results if r.model == model):
            style = {"color": colours[r.loss], "label": LOSS_LABELS[r.loss]}
            epochs = np.arange(len(r.test_accuracy))
            row[0].plot(epochs, 100 * np.asarray(r.test_accuracy), **style)
            row[1].plot(epochs, r.train_loss, **style)
            row[2].plot(np.arange(1, len(r.grad_norms) + 1), r.grad_norms, **style)
        row[0].axhline(100 * THRESHOLD, color="grey", lw=0.8, ls="--")
        row[0].set(title=f"{name}: test accuracy (%)", ylim=(0, 100))
        row[1].set(title=f"{name}: train loss (each its own)", yscale="log")
        row[2].set(title=f"{name}: |dL/dlogits| per sample", yscale="log")
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[0].legend(loc="lower right")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return os.path.abspath(path)


# ------------------------------------------------------------------------------------- main

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastloss demo",
        description="Train softmax regression and a one-hidden-layer network on scikit-learn's "
                    "bundled digits with softmax cross-entropy, MSE on the softmax outputs and "
                    "one-vs-rest sigmoid BCE (fastloss computes every loss and its gradient), "
                    "print how they compare and plot it.")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs of every run (default {DEFAULT_EPOCHS}; "
                        f"{QUICK_EPOCHS} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"a small budget: {QUICK_EPOCHS} epochs")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the train/test split, the initial weights and the batch order "
                        "(default 0)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"learning rate, the same for every loss (default {DEFAULT_LR})")
    p.add_argument("--plot", metavar="PATH", default="fastloss_demo.png",
                   help="where to write the figure (default: fastloss_demo.png in the working "
                        "directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: list[str]) -> int:
    """``python -m fastloss demo [options]``; returns the exit code (2: demo extra missing)."""
    args = _parser().parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (
        QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    if epochs < 1:
        print("python -m fastloss demo: --epochs must be at least 1", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as error:
        print(_MISSING_EXTRAS.format(error=error), file=sys.stderr)
        return 2

    start = time.perf_counter()
    print(format_worked_example())
    print()
    data = load_data(args.seed)
    batches = -(-len(data[0]) // BATCH_SIZE) * epochs
    print(_wrap(
        f"Training on the digits (scikit-learn's bundled copy): {len(data[0])} train / "
        f"{len(data[2])} test images of 8x8 pixels, 10 classes. Each model starts from the "
        f"same weights for every loss and sees the same batches: SGD with momentum {MOMENTUM}, "
        f"learning rate {args.lr:g}, batch {BATCH_SIZE}, {epochs} epochs, seed {args.seed}."),
        flush=True)
    results = run(epochs=epochs, seed=args.seed, lr=args.lr, progress=not args.no_progress,
                  data=data)
    print()
    print(format_table(results))
    print()
    print(format_notes(results, batches))
    path = plot(results, args.plot)
    print(f"\nWrote the figure to {path} ({time.perf_counter() - start:.1f} s).")
    return 0
