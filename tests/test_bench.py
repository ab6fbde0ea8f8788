"""`python -m fastloss bench`: a --quick smoke run, its JSON, and the timing helper."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastloss
from fastloss import _bench

# The subprocesses import the same fastloss as this test process.
PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)
STATUSES = {"ok", "absent", "n/a", "error"}


def run_bench(args, tmp_path, preamble=""):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    code = (f"import sys\n{preamble}\nfrom fastloss.__main__ import main\n"
            f"sys.exit(main(['bench', *sys.argv[1:]]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench")
    path = tmp_path / "bench.json"
    proc = run_bench(["--quick", "--all", "--json", str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(path.read_text())


def test_quick_run_prints_table_and_progress(quick_run):
    proc, _ = quick_run
    assert "| case" in proc.stdout and "fastloss (out=)" in proc.stdout
    assert "Targets (issue #3):" in proc.stdout and "targets met:" in proc.stdout
    assert "Threads scan:" in proc.stdout
    assert "bench: [1/" in proc.stderr  # the progress line


def test_quick_json_structure(quick_run):
    _, report = quick_run
    env = report["environment"]
    assert env["machine"]["cpu_count"] >= 1 and env["machine"]["cpu"]
    assert env["versions"]["fastloss"] == fastloss.__version__
    assert env["versions"]["numpy"]
    assert env["fastloss_build"]["simd_path"] in {"avx512", "avx2", "baseline"}
    assert env["threads"] == 1
    assert report["quick"] is True
    assert report["settings"]["fastloss_out_preallocated"] is True

    cases = _bench.quick_cases()
    assert [c["key"] for c in report["cases"]] == [c.key for c in cases]
    for case, res in zip(cases, report["cases"]):
        assert res["n_elements"] == case.size and res["dtype"] == case.dtype
        assert res["loss_rel_diff_vs_reference"] < 1e-4  # it times the right computation
        cands = res["candidates"]
        assert set(cands) == {name for name, _ in _bench.COLUMNS}
        assert cands["fastloss"]["status"] == "ok" and cands["fastloss"]["ratio"] == 1.0
        base = cands["fastloss"]["median_s"]
        for name, c in cands.items():
            assert c["status"] in STATUSES, (name, c)
            if c["status"] == "ok":
                assert c["samples_s"] and all(s > 0 for s in c["samples_s"])
                assert c["loops"] >= 1
                assert math.isclose(c["ratio"], c["median_s"] / base)
            else:
                assert c["reason"]
        # the memory-copy and np.exp baselines exist exactly where the issue has them
        assert (cands["memcpy"]["status"] == "n/a") == case.tiny
        assert (cands["np.exp"]["status"] == "ok") == (case.loss in ("ce", "bce")
                                                        and not case.tiny)

    assert len(report["targets"]) == sum(len(c.targets) for c in cases)
    for t in report["targets"]:
        assert t["met"] in (True, False, None) and t["target"]
    summary = report["targets_summary"]
    assert summary["met"] + summary["missed"] + summary["na"] == len(report["targets"])

    scan = report["threads_scan"]
    assert scan["threads"] == [1, 2]
    assert [r["key"] for r in scan["rows"]] == [c.key for c in _bench.scan_cases(quick=True)]
    for row in scan["rows"]:
        assert row["status"] == "ok"
        assert math.isclose(row["speedup"], row["time_1_s"] / row["time_n_s"])
        assert isinstance(row["no_slowdown"], bool)


def test_absent_peers_are_reported_not_errors(tmp_path):
    path = tmp_path / "bench.json"
    blocked = "sys.modules['torch'] = None\nsys.modules['sklearn'] = None"
    proc = run_bench(["--quick", "--case", "tiny-mse", "--json", str(path), "--no-progress"],
                     tmp_path, preamble=blocked)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(path.read_text())
    assert report["environment"]["versions"]["torch"] is None
    (case,) = report["cases"]
    assert case["candidates"]["torch"]["status"] == "absent"
    assert case["candidates"]["sklearn"]["status"] == "absent"
    assert case["candidates"]["reference"]["status"] == "ok"
    assert "absent" in proc.stdout


def test_measure_interleaves_and_reports_errors():
    order = []

    def fast():
        order.append("fast")

    def slow():
        order.append("slow")
        x = 0
        for i in range(20000):
            x += i

    def broken():
        raise RuntimeError("boom")

    timings, errors = _bench.measure({"fast": fast, "slow": slow, "broken": broken},
                                     budget=0.02, sample_time=0.0005, min_samples=3)
    assert set(timings) == {"fast", "slow"} and "boom" in errors["broken"]
    for t in timings.values():
        assert 3 <= len(t.samples) <= _bench.MAX_SAMPLES and t.median > 0
    # after the warm-up, the two calls alternate rather than run back to back
    tail = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert tail.count("slow") >= 3


def test_case_keys_and_labels():
    case = _bench.Case("ce", (2048, 32000), "float32")
    assert case.key == "ce-2048x32000-f32"
    assert case.label == "cross-entropy 2048\u00d732000 f32"
    assert case.bytes_moved == 2 * 2048 * 32000 * 4 + 2048 * 8
    assert _bench.Case("mse", (10**7,), "float64").key == "mse-1e7-f64"
    assert _bench.Case("mse", (100,), "float32", tiny=True).key == "tiny-mse-100-f32"


def test_torch_group_quick_run(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    proc = run_bench(["--torch", "--quick", "--json", str(path), "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(path.read_text())
    assert report["cases"] == [] and report["threads_scan"] is None
    rows = report["torch_cases"]
    assert [r["key"] for r in rows] == [c.key for c in _bench.torch_cases(quick=True)]
    for row in rows:
        assert row["status"] == "ok" and row["fallbacks"] == 0  # fastloss served every call
        assert math.isclose(row["ratio"], row["torch_s"] / row["fastloss_torch_s"])
        assert math.isclose(row["overhead_us"], (row["fastloss_torch_s"] - row["numpy_s"]) * 1e6)
        values = row["loss_values"]  # the three candidates compute the same loss
        assert math.isclose(values["fastloss.torch"], values["torch"], rel_tol=1e-4)
        assert math.isclose(values["fastloss.torch"], values["numpy"], rel_tol=1e-6)
        assert isinstance(row["met"], bool) and row["target"]
        assert ("floor_s" in row) == row["tiny"]
    step = report["train_step"]
    assert step["status"] == "ok" and step["model"] == _bench.STEP_MODEL_QUICK
    assert all(len(v) == step["rounds"] == 3 for v in step["samples_s"].values())
    assert 0 < step["torch_loss_share"] and 0 < step["patched_loss_share"]
    for clock in ("", "cpu_"):
        assert math.isclose(step[f"{clock}step_speedup"],
                            step[f"{clock}torch_step_s"] / step[f"{clock}patched_step_s"])
    assert all(len(v) == 3 for v in step["cpu_samples_s"].values())
    assert "fastloss.torch through autograd" in proc.stdout and "Training step" in proc.stdout


def test_boosting_group_quick(tmp_path):
    """`bench --boosting`: the objective against the NumPy one and a boosting round."""
    path = tmp_path / "boosting.json"
    proc = run_bench(["--boosting", "--quick", "--no-progress", "--json", str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Gradient boosting" in proc.stdout and "| case" in proc.stdout
    report = json.loads(path.read_text())
    assert report["cases"] == [] and report["threads_scan"] is None
    rows = report["boosting"]
    assert [r["task"] for r in rows] == ["multiclass", "binary"]
    for row in rows:
        assert row["errors"] == {}
        assert row["seconds"]["fastloss"] > 0 and row["seconds"]["numpy objective"] > 0
