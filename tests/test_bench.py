"""`python -m fastloss bench`: a --quick smoke run, its JSON, and the timing helper."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import numpy as np

import fastloss
from fastloss import _bench, _dispatch

# The subprocesses import the same fastloss as this test process.
PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)
STATUSES = {"ok", "absent", "n/a", "error"}


def run_bench(args, tmp_path, preamble="", **environ):
    env = dict(os.environ, **environ)
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
    path = os.environ.get("FASTLOSS_SIMD") or _dispatch.available_paths()[0]
    assert f"SIMD path measured: {path} (" in proc.stdout
    assert f"Targets (issues #3, #11, #12, #13) on the {path} path:" in proc.stdout
    assert "targets met:" in proc.stdout
    assert f"Threads scan on the {path} path:" in proc.stdout and "threads scan:" in proc.stdout
    assert "C loop: " in proc.stdout
    assert "bench: [1/" in proc.stderr  # the progress line


def test_quick_json_structure(quick_run):
    _, report = quick_run
    env = report["environment"]
    assert env["machine"]["cpu_count"] >= 1 and env["machine"]["cpu"]
    assert env["versions"]["fastloss"] == fastloss.__version__
    assert env["versions"]["numpy"]
    build = env["fastloss_build"]
    assert build["simd_path"] in {"avx512", "avx2", "baseline"}
    assert report["simd_path"] == build["simd_path"]
    assert build["simd_available"] == _dispatch.available_paths()
    assert build["simd_path"] in build["simd_available"]
    assert build["simd_forced"] == (os.environ.get("FASTLOSS_SIMD") or None)
    assert env["c_loop"]["status"] in {"ok", "absent"}
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
        # the C loop: for the four main losses' large cases, unless no compiler built it
        has_c_loop = case.loss in _bench.YARDSTICK_LOSSES and not case.tiny
        if not has_c_loop:
            assert cands["c_loop"]["status"] == "n/a"
        elif env["c_loop"]["status"] == "ok":
            assert cands["c_loop"]["status"] == "ok"
            assert math.isclose(res["loss_values"]["c_loop"], res["loss_values"]["fastloss"],
                                rel_tol=1e-5)  # it computes the same loss
        else:
            assert cands["c_loop"]["status"] == "absent"

    assert len(report["targets"]) == sum(len(c.targets) for c in cases)
    for t in report["targets"]:
        assert t["met"] in (True, False, None) and t["target"]
    summary = report["targets_summary"]
    assert summary["met"] + summary["missed"] + summary["na"] == len(report["targets"])

    scan = report["threads_scan"]
    assert scan["threads"] == [1, 2] and scan["targets"] == _bench.THREADS_TARGETS
    verdicts = [v for r in scan["rows"] for v in (r["no_slowdown"], r["faster"]) if v is not None]
    assert scan["summary"] == {"met": verdicts.count(True), "missed": verdicts.count(False)}
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


# ---------------------------------------------------------------- issue #11

def test_forced_path_is_named(tmp_path):
    """FASTLOSS_SIMD=baseline: the header, the JSON and the markdown say so."""
    path, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = run_bench(["--quick", "--case", "tiny-mse", "--no-progress", "--json", str(path),
                      "--markdown", str(md)], tmp_path, FASTLOSS_SIMD="baseline")
    assert proc.returncode == 0, proc.stderr
    assert "SIMD path measured: baseline (forced by FASTLOSS_SIMD=baseline;" in proc.stdout
    report = json.loads(path.read_text())
    assert report["simd_path"] == "baseline"
    assert report["environment"]["fastloss_build"]["simd_forced"] == "baseline"
    text = md.read_text()
    assert text.startswith("**baseline path** (`FASTLOSS_SIMD=baseline`)")
    lines = text.splitlines()
    assert "C loop: " in lines[1] and lines[2].startswith("`python -m fastloss bench")
    assert lines[3] == "" and lines[4].startswith("| case ") and "| C loop |" in lines[4]
    assert lines[6].startswith("| tiny: MSE 100 f32 ")


def test_all_paths_runs_each_path_in_its_own_process(tmp_path):
    path, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = run_bench(["--all-paths", "--quick", "--case", "tiny-mse-100-f32", "--case",
                      "mse-1e4", "--no-progress", "--json", str(path), "--markdown", str(md)],
                     tmp_path)
    assert proc.returncode == 0, proc.stderr
    combined = json.loads(path.read_text())
    paths = _dispatch.available_paths()
    assert combined["all_paths"] is True and combined["paths"] == paths
    assert combined["failures"] == {} and list(combined["reports"]) == paths
    assert combined["checked_paths"] == _bench._checked(paths)
    for simd, report in combined["reports"].items():
        assert report["simd_path"] == simd  # each process ran the path it was given
        assert report["environment"]["fastloss_build"]["simd_forced"] == simd
        assert [c["key"] for c in report["cases"]] == ["mse-1e4-f32", "tiny-mse-100-f32"]
        for case in report["cases"]:  # the peers were timed in that path's process
            assert case["candidates"]["sklearn"]["status"] in {"ok", "absent"}
        assert f"======== SIMD path {simd} ========" in proc.stdout
        assert f"**{simd} path** (`FASTLOSS_SIMD={simd}`)" in md.read_text()
        assert report["run_by"][4:] == ["--all-paths", "--quick", "--case", "tiny-mse-100-f32",
                                        "--case", "mse-1e4", "--no-progress", "--json",
                                        str(path), "--markdown", str(md)]
    assert "Side by side (" + ", ".join(paths) in proc.stdout
    side = proc.stdout.split("Side by side", 1)[1]
    assert all(f"{p}: fastloss" in side and f"{p}: C loop" in side for p in paths)


def test_child_argv_forwards_the_run_but_not_the_parents_switches():
    argv = ["--all-paths", "--threads", "2", "--quick", "--threads-scan", "--torch", "--all",
            "--pairs", "--boosting", "--case", "ce", "--case", "tiny", "--budget", "0.5",
            "--json", "x.json", "--markdown", "x.md", "--check", "--no-progress"]
    parent = vars(_bench.parse_args(argv))
    child = vars(_bench.parse_args(_bench.child_argv(_bench.parse_args(argv))))
    handled = {"all_paths", "json", "markdown", "check"}
    assert {k: v for k, v in child.items() if k not in handled} == \
        {k: v for k, v in parent.items() if k not in handled}
    assert child["all_paths"] is False and child["json"] is None and child["check"] is False


def test_checked_paths():
    assert _bench._checked(["avx512", "avx2", "baseline"]) == ["avx512", "avx2"]
    assert _bench._checked(["avx2", "baseline"]) == ["avx2"]
    assert _bench._checked(["baseline"]) == ["baseline"]  # a CPU that runs nothing wider


def test_c_loop_absent_without_a_compiler(tmp_path):
    path = tmp_path / "bench.json"
    proc = run_bench(["--quick", "--case", "mse-1e4", "--no-progress", "--json", str(path)],
                     tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(path.read_text())
    assert report["environment"]["c_loop"]["status"] == "absent"
    assert "no C compiler" in report["environment"]["c_loop"]["reason"]
    (case,) = report["cases"]
    assert case["candidates"]["c_loop"]["status"] == "absent"
    assert case["candidates"]["fastloss"]["status"] == "ok"
    assert "C loop: absent (no C compiler" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| MSE 1e4"))
    assert "absent" in row


def test_yardstick_source_ships_with_the_package():
    from importlib import resources
    source = (resources.files("fastloss") / _bench.YARDSTICK_SOURCE).read_text()
    for loss in _bench.YARDSTICK_LOSSES:
        assert f"double yard_{loss}_##SUF(" in source


def _yardstick_or_skip():
    built = _bench.yardstick()
    if built.lib is None:
        pytest.skip(f"the C loop cannot be built here: {built.info['reason']}")
    return built


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,shape", [("ce", (37, 10)), ("ce", (19, 1003)), ("bce", (1001,)),
                                        ("mse", (1001,)), ("huber", (1001,))])
def test_c_loop_computes_what_fastloss_computes(loss, shape, dtype):
    """The yardstick does the same work as the fastloss call it is compared with: the
    same mean loss and gradient (the C loop's -ffast-math exp is a few ulp off)."""
    built = _yardstick_or_skip()
    assert built.info["flags"].startswith("-O3 -march=native -ffast-math")
    case = _bench.Case(loss, shape, dtype)
    data = _bench.make_data(case, seed=3)
    if loss == "huber":
        data["x"] *= 3  # both sides of delta = 1
    x0 = data["x"].copy()
    value = _bench.c_loop_call(case, data)()
    spec = _bench.LOSSES[loss]
    expected, grad = getattr(fastloss, spec.function + "_with_grad")(data["x"], data["target"])
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert math.isclose(value, float(expected), rel_tol=tol)
    scale = np.abs(grad).max()
    assert np.abs(data["grad"] - grad).max() <= 4 * tol * scale
    np.testing.assert_array_equal(data["x"], x0)  # inputs untouched
    if loss == "huber":
        assert (np.abs(x0 - data["target"]) > 1).any() and (np.abs(x0 - data["target"]) < 1).any()


def test_loading_the_c_loop_keeps_subnormals():
    """-ffast-math at link time would add crtfastmath.o, which turns on flush-to-zero
    for the whole process when the library loads: the bench's other candidates (and
    this test process) would then run with subnormals flushed."""
    _yardstick_or_skip()
    tiny = float(np.finfo(np.float64).smallest_subnormal)
    assert tiny * 1.0 == tiny > 0 and np.float32(1e-45) * np.float32(1) > 0


def test_c_loop_uses_libmvec_where_glibc_has_it():
    built = _yardstick_or_skip()
    if "-lmvec" not in built.info["link"]:
        pytest.skip("no libmvec on this system: the C loop's exp is scalar")
    assert any("expf" in name for name in built.info["libmvec_calls"]), built.info


def test_issue_11_targets_are_in_the_tables():
    def targets(case):
        return set(case.targets)
    for case in _bench.full_cases():
        t = targets(case)
        if case.loss in ("ce", "bce"):
            assert {("faster", "torch", 8.0), ("faster", "sklearn", 3.0)} <= t, case.key
            if not case.tiny:
                assert ("faster", "c_loop", 1.0) in t, case.key
        if case.loss in ("mse", "huber") and not case.tiny:
            assert {("within", "c_loop", 1.1), ("within", "memcpy", 1.2)} <= t, case.key
        if case.tiny:
            assert ("within", "sklearn", 0.15) in t and ("max_us", 3.0) in t, case.key
        if case.loss == "ce" and case.shape[1] >= 32000:
            assert ("within", "np.exp", 1.2) in t, case.key
    keys = {c.key for c in _bench.full_cases()}
    assert {"ce-2048x32000-f32", "ce-256x128000-f32", "ce-8192x1000-f32", "ce-8192x1000-f64",
            "ce-65536x10-f32", "bce-1e7-f32", "mse-1e6-f32", "mse-1e7-f32", "huber-1e7-f32",
            "tiny-ce-32x10-f32", "tiny-mse-100-f32"} <= keys  # issue #11's table


def _result(case, times):
    return {"key": case.key, "candidates": {
        name: {"status": "ok", "median_s": t, "ratio": t / times["fastloss"]}
        for name, t in times.items()}}


def test_within_and_faster_targets_evaluate_ratios():
    case = _bench.Case("mse", (100,), "float32", tiny=True,
                       targets=(("within", "sklearn", 0.15), ("faster", "torch", 8.0)))
    met = _bench.evaluate_targets([case], [_result(case, {"fastloss": 1e-6, "sklearn": 10e-6,
                                                          "torch": 8e-6})])
    assert [t["met"] for t in met] == [True, True]
    assert math.isclose(met[0]["measured"], 0.1)
    missed = _bench.evaluate_targets([case], [_result(case, {"fastloss": 1e-6, "sklearn": 5e-6,
                                                             "torch": 7.9e-6})])
    assert [t["met"] for t in missed] == [False, False]
