"""Every Python benchmark script runs end to end at a tiny size and prints its figure line.

Each script runs as a user runs it (``python benchmarks/<name>.py``, from the repository root, in a
subprocess), so these tests also catch imports that only work under pytest's ``pythonpath``. The figures
themselves mean nothing at this size; what is checked is that the real code path runs and reports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def run_script(name: str, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def test_gradient_stats_overhead_runs_the_whole_callback(tmp_path):
    out = tmp_path / "overhead.json"
    stdout = run_script("gradient_stats_overhead.py", "--images", "64", "--epochs", "1", "--repeats", "1",
                        "--width-mult", "0.0625", "--grown", "--device", "cpu", "--json", str(out))  # fmt: skip
    assert "overhead:" in stdout and "(goal <= 10 %)" in stdout
    # 256 probe images on CIFAR-100; fewer on the digits fallback (a machine without ../shared/data)
    probe = re.search(r"task statistics at the end \((\d+) probe images, 64 Fisher samples\)", stdout)
    assert probe and int(probe.group(1)) > 0
    result = json.loads(out.read_text())
    assert result["seconds"]["with"] > 0 and result["seconds"]["without"] > 0
    assert isinstance(result["overhead"], float)


def test_loop_overhead_matches_the_plain_loop(tmp_path):
    out = tmp_path / "loop.json"
    stdout = run_script("loop_overhead.py", "--images-per-class", "32", "--classes", "2", "--epochs", "1",
                        "--repeats", "1", "--width-mult", "0.0625", "--json", str(out))  # fmt: skip
    assert "ratio Lightning / plain:" in stdout
    # same weights, batches and SGD (momentum 0.9, weight decay 5e-4) in both: the same losses
    assert "per-step losses equal to 5 decimals: True" in stdout
    assert json.loads(out.read_text())["losses_equal_5_decimals"] is True


def test_batched_individual_runs_on_digits(tmp_path):
    out = tmp_path / "batched.json"
    stdout = run_script("batched_individual.py", "--tasks", "2", "--seeds", "1", "--epochs", "1",
                        "--width-mult", "0.0625", "--npz", "/nonexistent", "--json", str(out))  # fmt: skip
    assert "(digits)" in stdout and "3-way" in stdout
    for variant in ("one_by_one", "batched_loop"):
        assert f"{variant:16s}:" in stdout
    assert "speed-up" in stdout
    result = json.loads(out.read_text())
    assert result["max_accuracy_difference"]["batched_loop"] == 0.0  # loop stacking is bitwise one-by-one


@pytest.mark.slow
def test_compile_strategy_runs(tmp_path):
    out = tmp_path / "compile.json"
    stdout = run_script("compile_strategy.py", "--tasks", "2", "--steps", "2", "--batch-size", "8",
                        "--width-mult", "0.0625", "--strategies", "eager,recompile", "--json", str(out),
                        timeout=1200)  # fmt: skip
    assert "max |loss - eager loss|" in stdout
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"eager", "recompile"}
    assert results["recompile"]["max_loss_diff_vs_eager"] < 1e-4


@pytest.mark.slow
def test_data_pipeline_runs(tmp_path):
    out = tmp_path / "pipeline.json"
    stdout = run_script("data_pipeline.py", "--images", "200", "--samples", "256", "--num-workers", "1",
                        "--threads", "1", "--json", str(out))  # fmt: skip
    assert "ratio ours / PIL:" in stdout
    assert json.loads(out.read_text())["ratio_ours_over_pil"] > 0


def test_cpu_precision_compares_fp32_and_the_fast_path(tmp_path):
    out = tmp_path / "precision.json"
    stdout = run_script("cpu_precision.py", "--images", "64", "--batch-size", "32", "--repeats", "1",
                        "--width-mult", "0.0625", "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert "ratio to fp32" in stdout and result["variants"]["fp32"]["ratio"] == 1.0
    if result["native_bf16"]:
        fast = result["variants"]["bf16 channels-last (cpu_fast)"]
        assert fast["samples_per_s"] > 0 and fast["max_loss_gap"] < 0.5


def test_study_time_profile_reads_a_finished_run(finished_run, tmp_path):
    out = tmp_path / "profile.json"
    stdout = run_script("study_time_profile.py", str(finished_run), str(finished_run), "--json", str(out))
    profiles = json.loads(out.read_text())["profiles"]
    assert len(profiles) == 2 and "collective" in profiles[0]["stages_s"]
    seed = profiles[0]["collective"]["seed_0"]
    assert seed["tasks"] == 3 and seed["fit_s"] > 0 and seed["samples_per_s"] > 0
    assert "ratio to first" in stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study_time_profile.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "timings.json" in bad.stderr


def test_study_time_profile_counts_shared_meta_training_once(finished_run, tmp_path):
    """The 20-shot MAML computation loads the weights the 10-shot one meta-trained; its record repeats the
    meta-training time, which must not be counted twice."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    task = [{"seed": 0, "task": 0, "acc": 0.5, "train_time_s": 2.0}]
    comps = {
        "a": {
            "wall_time_s": 100.0,
            "tasks": task,
            "info": {"meta_train_time_s": 95.0},
            "first_entry": "maml@10",
        },
        "b": {
            "wall_time_s": 5.0,
            "tasks": task,
            "info": {"meta_train_time_s": 95.0},
            "first_entry": "maml@20",
        },
    }
    entries = {f"maml@{k}": {"method": "maml", "shots": k, "computation": c, "collective_seed": 0}
               for k, c in ((10, "a"), (20, "b"))}  # fmt: skip
    (run / "individual").mkdir(exist_ok=True)
    (run / "individual" / "results_raw.json").write_text(
        json.dumps({"computations": comps, "entries": entries})
    )
    out = tmp_path / "profile.json"
    run_script("study_time_profile.py", str(run), "--json", str(out))
    maml = json.loads(out.read_text())["profiles"][0]["individual"]["maml"]
    assert maml["wall_s"] == 105.0 and maml["train_s"] == 95.0 + 2 * 2.0


def _fake_run(root, accs: list[float], window: list[str], final_acc: float):
    """A run directory with only what precision_parity.py reads: stage-3 results, a learngene record, metrics."""
    tasks = [{"seed": 0, "task": i, "acc": a, "train_time_s": 1.0} for i, a in enumerate(accs)]
    raw = {"computations": {"c1": {"tasks": tasks, "info": {}}},
           "entries": {"learngene@10/seed0": {"method": "learngene", "computation": "c1"}}}  # fmt: skip
    (root / "individual").mkdir(parents=True)
    (root / "individual" / "results_raw.json").write_text(json.dumps(raw))
    (root / "learngene" / "seed_0").mkdir(parents=True)
    info = {
        "selected": {"blocks": window},
        "statistic": "s",
        "all_statistics": {"s": {"window_scores": [0.1]}},
    }
    (root / "learngene" / "seed_0" / "learngene.json").write_text(json.dumps(info))
    (root / "collective" / "seed_0").mkdir(parents=True)
    metrics = {"class_incremental": {"final_average_accuracy": final_acc}}
    (root / "collective" / "seed_0" / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_precision_parity_pairs_the_same_tasks_of_two_runs(tmp_path):
    accs = [0.5, 0.6, 0.55, 0.7, 0.65]
    first = _fake_run(tmp_path / "fp32", accs, ["conv11", "conv12", "conv13"], 0.40)
    second = _fake_run(tmp_path / "fast", [a + 0.02 for a in accs], ["conv1", "conv2", "conv3"], 0.41)
    out = tmp_path / "parity.json"
    stdout = run_script("precision_parity.py", str(first), str(second), "--json", str(out))
    row = json.loads(out.read_text())["methods"]["learngene@10/seed0"]
    assert row["difference"]["mean_diff"] == pytest.approx(0.02) and row["difference"]["n"] == 5
    assert row["max_abs_task_difference"] == pytest.approx(0.02)
    assert "+2.0" in stdout and "(DIFFERENT)" in stdout and "first 0.4, second 0.41" in stdout


@pytest.mark.slow
def test_stage3_layout_times_the_same_stage_three_in_each_layout(finished_run, tmp_path):
    """fp32, cpu_fast and cpu_fast sharded over two processes (torchrun): every layout finishes the same work
    (the same methods, shot counts and number of tasks) and reports its time and the per-task gaps."""
    from conftest import TINY

    from learngene_core.utils.native_bf16 import cpu_has_bf16

    out = tmp_path / "layout.json"
    stdout = run_script("stage3_layout.py", str(finished_run), *TINY, "methods=[learngene,scratch]",
                        "--processes", "2", "--out", str(tmp_path / "runs"), "--json", str(out), timeout=600)  # fmt: skip
    result = json.loads(out.read_text())
    expected = ["fp32, 1 process"] + (
        ["cpu_fast, 1 process", "cpu_fast, 2 processes"] if cpu_has_bf16() else []
    )
    assert list(result["seconds"]) == expected and "x fp32" in stdout
    pairs = len(expected) * (len(expected) - 1) // 2
    assert len(result["largest_accuracy_gap"]) == pairs
    assert all(0 <= g <= 1 for g in result["largest_accuracy_gap"].values())
    assert all(s > 0 for s in result["seconds"].values())


@pytest.mark.slow
def test_study_layout_runs_the_same_study_both_ways(tmp_path):
    """fp32 one run after another and cpu_fast a core per process: both ancestors finish every stage in each
    layout, with the same methods, and the script reports both times and both accuracies."""
    from conftest import TINY

    from learngene_core.utils.native_bf16 import cpu_has_bf16

    out = tmp_path / "layout.json"
    stdout = run_script(
        "study_layout.py", *TINY, "--out", str(tmp_path / "runs"), "--json", str(out), timeout=900
    )
    result = json.loads(out.read_text())
    expected = ["fp32, one run after another"] + (["cpu_fast, a core per process"] if cpu_has_bf16() else [])
    assert list(result["layouts"]) == expected and "x fp32" in stdout
    for r in result["layouts"].values():
        assert set(r["stages_s"]["joint"]) == {"collective", "learngene", "individual", "report"}
        assert r["accuracy"]["joint"].keys() == result["layouts"][expected[0]]["accuracy"]["joint"].keys()
        assert set(r["accuracy"]) == {"joint", "continual"}
