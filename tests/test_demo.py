"""`python -m fastloss demo`: runs end to end on a small budget, writes its figure, and
cross-entropy trains faster than MSE on the softmax outputs (seeds fixed)."""

import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from fastloss import _demo  # noqa: E402
from fastloss.__main__ import main as fastloss_main  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK = _demo.QUICK_EPOCHS


@pytest.fixture(scope="module")
def results():
    """Both models trained with the three losses on the --quick budget, seed 0."""
    return {(r.model, r.loss): r for r in _demo.run(epochs=QUICK, seed=0)}


def test_demo_end_to_end(tmp_path, capsys):
    path = tmp_path / "figures" / "demo.png"
    code = fastloss_main(["demo", "--quick", "--seed", "0", "--plot", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert f"Wrote the figure to {path}" in out
    # the worked example of DESIGN.md section 7
    assert "1.38   0.64" in out and "0.81   0.34" in out and "0.27   0.11" in out
    # the table: a header and one row per model and loss
    assert "to 90%" in out and "NumPy ref" in out
    for model in _demo.MODELS:
        for loss in _demo.LOSSES:
            assert f"{_demo.MODEL_LABELS[model]:<19}{_demo.LOSS_LABELS[loss]}" in out
    assert "100%" in err  # the progress bar, on stderr


def test_cross_entropy_reaches_threshold_before_mse(results):
    for model in _demo.MODELS:
        ce = results[model, "cross-entropy"]
        mse = results[model, "mse"]
        assert ce.epochs_to_threshold is not None, (model, ce.test_accuracy)
        assert mse.epochs_to_threshold is None or ce.epochs_to_threshold < mse.epochs_to_threshold
        # ... because MSE's gradient reaches the logits scaled down by the softmax
        assert mse.grad_norm < 0.5 * ce.grad_norm


def test_results_are_complete(results):
    for r in results.values():
        assert len(r.test_accuracy) == len(r.train_loss) == QUICK + 1
        assert len(r.grad_norms) == QUICK
        assert np.all(np.isfinite(r.train_loss))
        assert r.final_test_accuracy == r.test_accuracy[-1] > 0.5
        assert r.time_fastloss > 0 and r.time_reference > 0
        assert r.max_grad_diff < 1e-9  # fastloss agrees with the NumPy reference


def test_reproducible_with_fixed_seed():
    a, b = (_demo.run(epochs=2, seed=3, models=("mlp",), losses=("mse",))[0] for _ in range(2))
    assert a.train_loss == b.train_loss
    assert a.test_accuracy == b.test_accuracy
    assert a.grad_norms == b.grad_norms


def test_worked_example():
    ex = _demo.worked_example()
    rounded = {k: tuple(round(v, 2) for v in pair) for k, pair in ex.items()}
    assert rounded["cross-entropy"] == (1.38, 0.64)
    assert rounded["squared error"] == (0.81, 0.34)
    assert rounded["mse_loss"] == (0.27, 0.11)
    ce, mse = ex["saturated"]
    assert mse < 0.1 * ce


def test_mse_gradient_through_softmax_matches_finite_differences():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 10)) * 3
    labels = rng.integers(0, 10, 4)
    onehot = np.eye(10)[labels]
    _, grad = _demo.loss_and_grad("mse", logits, labels, onehot)
    numeric = np.empty_like(logits)
    h = 1e-6
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (_demo.loss_and_grad("mse", up, labels, onehot)[0]
                        - _demo.loss_and_grad("mse", down, labels, onehot)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def test_missing_extras_exit_code_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    code = _demo.main(["--quick", "--plot", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert 'pip install "fastloss[demo]"' in err
    assert not (tmp_path / "x.png").exists()
