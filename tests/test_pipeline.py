"""The stage pipeline end to end on tiny budgets: outputs, resume, reuse of an earlier run, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, compose, kill_collective_after_task

from experiments.pipeline.run_guard import RunInterrupted
from experiments.pipeline.runner import run_pipeline
from learngene_core.criterion.records import read_rows
from learngene_core.errors import CheckpointError, ConfigError, NonFiniteLossError

C0 = "collective/seed_0"
L0 = "learngene/seed_0"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One tiny quickstart run through every stage and method (shared by the tests below)."""
    out = tmp_path_factory.mktemp("full")
    cfg = compose(TINY, out)
    result = run_pipeline(cfg, out)
    return out, result


def test_full_pipeline_writes_every_artifact(full_run):
    out, result = full_run
    for rel in [f"{C0}/manifest.json", f"{C0}/metrics.json", f"{C0}/task_00.pt", f"{C0}/task_02.pt",
                f"{C0}/gradient_stats.csv", f"{L0}/learngene.pt", f"{L0}/learngene.json", "results.json", "results.md",
                "plots/seed_0/gradient_heatmap.png", "plots/seed_0/window_scores.png", "plots/seed_0/accuracy_matrix.png",
                "plots/judgement_5shot.png", "individual/results_raw.json", "timings.json"]:  # fmt: skip
        assert (out / rel).is_file(), rel
    manifest = json.loads((out / C0 / "manifest.json").read_text())
    assert [e["task"] for e in manifest["tasks"]] == [0, 1, 2]
    assert manifest["tasks"][1]["growth"]["op"] == "widen"
    for e in manifest["tasks"]:
        assert len(e["distinct_filters"]) == len(e["widths"]) and e["samples"] > 0
    # growth adds capacity: every unit of the last checkpoint is its own filter, none a tied copy
    last = manifest["tasks"][-1]
    assert last["distinct_filters"] == last["widths"] and min(last["nearest_filter_distance"]) > 0
    metrics = json.loads((out / C0 / "metrics.json").read_text())
    for kind in ("class_incremental", "task_incremental"):
        R = metrics[kind]["accuracy_matrix"]
        assert len(R) == 3 and R[0][1] is None and all(0 <= v <= 1 for v in R[2])
        assert metrics[kind]["average_accuracy"][-1] == pytest.approx(sum(R[2]) / 3)
    assert metrics["class_incremental"]["chance"][-1] == pytest.approx(1 / manifest["tasks"][-1]["head_size"])
    assert metrics["task_incremental"]["chance"] == pytest.approx(1 / 3)
    assert "auroc_msp" in metrics["open_world"][-1] and "fpr95_energy" in metrics["open_world"][-1]
    assert len(metrics["parameters"]) == 3 and metrics["parameters"][1] > metrics["parameters"][0]
    assert result["collective_seeds"] == [0]
    rows = {r["method"]: r for r in result["tables"]["5"]}
    assert set(rows) == {"learngene", "scratch", "finetune", "linear_probe", "prototype", "protonet", "maml"}
    for r in rows.values():
        assert r["n"] == 2 and 0 <= r["mean"] <= 1 and r["ci95"] is not None and len(r["accuracies"]) == 2
        assert {"vs", "mean_diff", "ci95", "p", "p_wilcoxon", "n", "unit", "collective_seeds"} <= set(
            r["paired"]
        )
        assert r["paired"]["vs"] == "scratch" and r["paired"]["unit"] == "target task"
        assert r["paired"]["n"] == 2
        diff = sum(a - b for a, b in zip(r["accuracies"], rows["scratch"]["accuracies"])) / 2
        assert r["paired"]["mean_diff"] == pytest.approx(diff)
    assert rows["learngene"]["inherited_parameters"] > 0 and rows["scratch"]["inherited_parameters"] == 0
    assert rows["learngene"]["parameters"] == rows["scratch"]["parameters"]
    for meta in ("protonet", "maml"):  # meta-learners say whether their meta-training loss flattened
        assert isinstance(rows[meta]["converged"], bool) and (out / f"plots/{meta}_meta_loss.png").is_file()
    judgement = result["judgement"]["5"]
    assert len(judgement["rows"]) == 11 and sum(bool(r["selected_in_seeds"]) for r in judgement["rows"]) == 1
    for r in judgement["rows"]:
        assert r["inherit"]["n"] == r["scratch"]["n"] == r["gain"]["n"] == 2
        assert r["gain"]["mean_diff"] == pytest.approx(r["inherit"]["mean"] - r["scratch"]["mean"])
        assert {"paper_signed_frac", "weight_change", "cka_drift", "fisher_importance"} <= set(r["scores"])
    # the terminal summary fits 100 columns and points to results.md for the full tables
    from experiments.pipeline.report import terminal_summary

    text = terminal_summary(result, out / "results.md")
    assert max(len(line) for line in text.splitlines()[:-1]) <= 100  # the last line: the path of results.md
    assert text.splitlines()[-1].strip() == str(out / "results.md")
    assert "chosen on validation: window" in text and "learngene chosen by paper_signed_frac" in text
    # the window and the statistic are chosen on the validation tasks, and reported with their test gains
    chosen = judgement["chosen_on_validation"]
    by_val = max(judgement["rows"], key=lambda r: r["validation_gain"]["mean_diff"])
    assert chosen["window"] == by_val["window"] and chosen["window_test_gain"] == by_val["gain"]
    assert all(r["validation_gain"]["n"] == 2 for r in judgement["rows"])
    raw = json.loads((out / "individual/results_raw.json").read_text())
    val = [e for e in raw["entries"].values() if e.get("split") == "validation"]
    assert val and {e["method"] for e in val} == {"judgement"}
    val_tasks = {(t["seed"], t["task"]) for e in val for t in raw["computations"][e["computation"]]["tasks"]}
    assert {s for s, _ in val_tasks} == {1000}  # other seeds than the test tasks' (target.seeds=[0])
    assert {"paper_signed_frac", "weight_change"} <= set(judgement["statistics"])
    learngene = json.loads((out / L0 / "learngene.json").read_text())
    assert (
        learngene["provenance"]["class_sequence"] == manifest["stream"]
        and learngene["statistic"] == "paper_signed_frac"
    )
    assert len(learngene["scores"]["windows"]) == 11 and "cka_drift" in learngene["all_statistics"]
    cadences = {name: s["cadence"] for name, s in learngene["all_statistics"].items()}
    assert (cadences["cka_drift"], cadences["paper_signed_frac"]) == ("task", "step")
    md = (out / "results.md").read_text()
    assert "learngene (inherit selected blocks)" in md and "Spearman" in md and "vs scratch" in md
    assert "task-IL" in md and "class-IL" in md


def test_selected_window_and_its_scratch_are_computed_once(full_run):
    out, _ = full_run
    raw = json.loads((out / "individual/results_raw.json").read_text())
    entries = raw["entries"]
    learngene = json.loads((out / L0 / "learngene.json").read_text())
    w = "-".join(learngene["selected"]["blocks"][:1] + learngene["selected"]["blocks"][-1:])
    assert (
        entries[f"judgement/inherit:{w}@5/seed0"]["computation"]
        == entries["learngene@5/seed0"]["computation"]
    )
    assert (
        entries[f"judgement/scratch:{w}@5/seed0"]["computation"] == entries["scratch@5/seed0"]["computation"]
    )
    assert len(raw["computations"]) == len({e["computation"] for e in entries.values()})


def test_every_method_saw_the_same_tasks(full_run):
    out, _ = full_run
    raw = json.loads((out / "individual/results_raw.json").read_text())
    split = {e["computation"]: e.get("split", "test") for e in raw["entries"].values()}
    for which in (
        "test",
        "validation",
    ):  # every method the same test tasks; the judgement its validation tasks
        keys = {tuple((t["seed"], t["task"], tuple(t["classes"])) for t in c["tasks"])
                for k, c in raw["computations"].items() if split[k] == which}  # fmt: skip
        assert len(keys) == 1, which


def test_two_collective_seeds_give_two_learngenes_and_pair_over_both(tmp_path):
    result = run_pipeline(
        compose([*TINY, "collective.seeds=[0,1]", "methods=[learngene,scratch]"], tmp_path), tmp_path
    )
    assert result["collective_seeds"] == [0, 1]
    a = torch.load(tmp_path / "learngene/seed_0/learngene.pt", weights_only=True)["state"][0]
    b = torch.load(tmp_path / "learngene/seed_1/learngene.pt", weights_only=True)["state"][0]
    assert not torch.equal(a["conv.weight"], b["conv.weight"])
    rows = {r["method"]: r for r in result["tables"]["5"]}
    # the unit is the target task: 2 tasks, each averaged over the 2 collective seeds (a two-level interval)
    assert rows["learngene"]["n"] == rows["learngene"]["paired"]["n"] == 2
    assert rows["learngene"]["collective_seeds"] == rows["learngene"]["paired"]["collective_seeds"] == 2
    assert rows["scratch"]["n"] == 2 and rows["scratch"]["collective_seeds"] == 1  # one shared computation
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())["entries"]
    # scratch does not depend on stage 1: one computation serves both collective seeds
    assert raw["scratch@5/seed0"]["computation"] == raw["scratch@5/seed1"]["computation"]
    assert raw["learngene@5/seed0"]["computation"] != raw["learngene@5/seed1"]["computation"]
    m0 = json.loads((tmp_path / "collective/seed_0/manifest.json").read_text())
    m1 = json.loads((tmp_path / "collective/seed_1/manifest.json").read_text())
    assert m0["stream"] != m1["stream"] and m1["collective_seed"] == 1


def test_reusing_an_earlier_run_skips_stage_one(full_run, tmp_path):
    src, first = full_run
    cfg = compose(
        [*TINY, "stage=[individual,report]", f"from_run={src}", "methods=[learngene,scratch]"], tmp_path
    )
    result = run_pipeline(cfg, tmp_path)
    assert not (tmp_path / "collective").exists()
    assert {r["method"] for r in result["tables"]["5"]} == {"learngene", "scratch"}
    again = {r["method"]: r["accuracies"] for r in result["tables"]["5"]}
    before = {r["method"]: r["accuracies"] for r in first["tables"]["5"]}
    assert again["learngene"] == pytest.approx(before["learngene"], abs=1e-6)  # deterministic on CPU


def test_learngene_from_another_input_size_is_rejected(full_run, tmp_path):
    src, _ = full_run
    cfg = compose([*TINY, "stage=[individual]", f"from_run={src}", "data.image_size=64"], tmp_path)
    with pytest.raises(CheckpointError, match="32 px.*64 px"):
        run_pipeline(cfg, tmp_path)


def test_impossible_split_is_reported_before_training(tmp_path):
    cfg = compose([*TINY, "target.ways=6"], tmp_path)
    with pytest.raises(ConfigError, match="target.ways=6.*novel group has 4 classes"):
        run_pipeline(cfg, tmp_path)
    assert not (tmp_path / "collective").exists()
    cfg = compose([*TINY, "target.shots=[500]"], tmp_path)
    with pytest.raises(ConfigError, match="target.shots.*500"):
        run_pipeline(cfg, tmp_path)


def test_non_finite_loss_stops_with_task_epoch_and_step(tmp_path):
    cfg = compose([*TINY, "stage=[collective]", "collective.lr=1e12"], tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"collective task 0, epoch 0, step \d+"):
        run_pipeline(cfg, tmp_path)


COLLECTIVE_ONLY = [*TINY, "stage=[collective]", "budget.collective_tasks=3", "trainer.deterministic=true"]


def _final_state(out):
    return torch.load(out / C0 / "task_02.pt", weights_only=True)["state_dict"]


def test_killed_run_resumes_with_the_same_weights_metrics_and_statistics(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run_pipeline(compose(COLLECTIVE_ONLY, straight), straight)

    resumed = tmp_path / "resumed"
    undo_kill = kill_collective_after_task(monkeypatch, 1)
    with pytest.raises(RunInterrupted, match="SIGINT"):
        run_pipeline(compose(COLLECTIVE_ONLY, resumed), resumed)
    assert not (resumed / C0 / "task_02.pt").exists()
    undo_kill()
    run_pipeline(compose(COLLECTIVE_ONLY, resumed), resumed)

    a, b = _final_state(straight), _final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads((straight / C0 / "metrics.json").read_text())
    mb = json.loads((resumed / C0 / "metrics.json").read_text())
    for kind in ("class_incremental", "task_incremental", "open_world", "parameters"):
        assert ma[kind] == mb[kind], kind
    rows_a, rows_b = (
        read_rows(straight / C0 / "gradient_stats.csv"),
        read_rows(resumed / C0 / "gradient_stats.csv"),
    )
    key = lambda r: (r["task"], r["epoch"], r["layer"], r["statistic"])  # noqa: E731
    assert sorted(map(key, rows_a)) == sorted(map(key, rows_b)) and len(rows_a) > 0
    va, vb = {key(r): r["value"] for r in rows_a}, {key(r): r["value"] for r in rows_b}
    assert va == vb  # every statistic of every task, epoch and layer, value for value


def test_resume_with_another_config_is_refused_naming_the_key(tmp_path):
    run_pipeline(compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1"], tmp_path), tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"another configuration \(differs in: \['collective.lr', 'collective.optimizer.lr'\]\)",
    ):
        run_pipeline(
            compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1", "collective.lr=0.5"], tmp_path), tmp_path
        )


def test_missing_collective_checkpoint_is_an_error_not_a_random_learngene(tmp_path):
    run_pipeline(compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1"], tmp_path), tmp_path)
    (tmp_path / C0 / "task_00.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        run_pipeline(compose([*TINY, "budget.collective_tasks=1", "stage=[learngene]"], tmp_path), tmp_path)


def test_stage_without_outputs_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="from_run"):
        run_pipeline(compose([*TINY, "stage=[individual]"], tmp_path), tmp_path)


def test_stage_three_results_of_other_settings_are_not_reused(finished_run, tmp_path, caplog):
    base = [*TINY, "stage=[learngene,individual,report]", f"from_run={finished_run}", "methods=[learngene]"]
    first = run_pipeline(compose(base, tmp_path), tmp_path)
    again = run_pipeline(compose(base, tmp_path), tmp_path)  # same settings: reused, identical
    assert again["tables"]["5"][0]["accuracies"] == first["tables"]["5"][0]["accuracies"]
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())
    assert len(raw["computations"]) == 1
    with caplog.at_level("INFO", logger="learngene"):
        other = run_pipeline(compose([*base, "criterion.window=0"], tmp_path), tmp_path)
    assert other["learngene"]["selected"]["0"] == ["conv1", "conv2", "conv3"]
    assert "learngene seed 0: criterion.window forces conv1-conv2-conv3; rule selects " in caplog.text
    assert other["tables"]["5"][0]["parameters"] != first["tables"]["5"][0]["parameters"]
    run_pipeline(compose([*base, "individual.lr=0.02"], tmp_path), tmp_path)
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())
    assert len(raw["computations"]) == 3  # another learning rate is another computation, never the cached one


def test_meta_training_is_cached_for_its_settings_only(finished_run, tmp_path):
    base = [*TINY, "stage=[learngene,individual,report]", f"from_run={finished_run}", "methods=[protonet]"]
    first = run_pipeline(compose(base, tmp_path), tmp_path)
    [cache] = list((tmp_path / "individual").glob("protonet-*.pt"))
    saved = torch.load(cache, weights_only=True)
    (tmp_path / "individual" / "results_raw.json").unlink()  # killed after meta-training, before the results
    again = run_pipeline(compose(base, tmp_path), tmp_path)
    assert (
        torch.load(cache, weights_only=True)["train_time_s"] == saved["train_time_s"]
    )  # reused, not retrained
    assert again["tables"]["5"][0]["accuracies"] == first["tables"]["5"][0]["accuracies"]
    run_pipeline(compose([*base, "methods.protonet.lr=0.01"], tmp_path), tmp_path)
    assert len(list((tmp_path / "individual").glob("protonet-*.pt"))) == 2  # other settings: retrained


def test_joint_ancestor_matches_the_continual_sample_steps_and_runs_every_stage(full_run, tmp_path):
    out, _ = full_run
    result = run_pipeline(
        compose([*TINY, "collective.mode=joint", "methods=[learngene,scratch]"], tmp_path), tmp_path
    )
    cont = json.loads((out / C0 / "manifest.json").read_text())
    joint = json.loads((tmp_path / C0 / "manifest.json").read_text())
    assert joint["mode"] == "joint" and cont["mode"] == "continual"
    assert sum(e["samples"] for e in joint["tasks"]) == sum(
        e["samples"] for e in cont["tasks"]
    )  # same sample-steps
    assert all(
        e["widths"] == cont["tasks"][-1]["widths"] for e in joint["tasks"]
    )  # the final architecture throughout
    assert all(len(classes) == 5 for classes in joint["stream"])  # every phase over all base classes
    assert joint["tasks"][0]["head_size"] == 5  # the head covers every base class from the start
    assert result["collective_mode"] == "joint" and result["tables"]["5"][0]["method"] == "learngene"
    seed0 = result["collective"]["per_seed"]["0"]
    assert seed0["task_il_chance"] == pytest.approx(1 / 5)  # a joint phase's task is every base class
    assert seed0["task_il_final_average_accuracy"] == seed0["class_il_final_average_accuracy"]
    assert "joint" in (tmp_path / "results.md").read_text()


def test_budget_scaling_multirun_and_its_comparison(tmp_path):
    """``+exp=[quickstart,budget_scaling]`` runs one job per (ancestor mode, budget) offline; compare.py gathers them."""
    import subprocess
    import sys

    from conftest import ROOT

    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("budget.collective_epochs")]
    cmd = [sys.executable, str(ROOT / "experiments" / "run.py"), "+exp=[quickstart,budget_scaling]", *tiny,
           "collective.epochs=1,2", f"hydra.sweep.dir={sweep}", "individual.cache_dir=" + str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.rglob("results.json"))
    assert len(jobs) == 4
    modes = {json.loads((j / C0 / "manifest.json").read_text())["mode"] for j in jobs}
    assert modes == {"continual", "joint"}
    # scratch (every window) did not depend on the ancestor: computed by the first job, reused by the others
    assert len(list((tmp_path / "cache").glob("*.json"))) < 4 * 2 * 11 * 2  # test and validation tasks
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "compare.py"), str(sweep)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    comp = json.loads((sweep / "comparison.json").read_text())
    assert len(comp["runs"]) == 4 and comp["shots"] == ["5"]
    cont = sorted((r for r in comp["runs"] if r["mode"] == "continual"), key=lambda r: r["epochs_per_task"])
    joint = sorted((r for r in comp["runs"] if r["mode"] == "joint"), key=lambda r: r["epochs_per_task"])
    assert [r["epochs_per_task"] for r in cont] == [1, 2]
    assert [r["compute_samples"] for r in cont] == [r["compute_samples"] for r in joint]  # same sample-steps
    assert cont[1]["compute_samples"] == 2 * cont[0]["compute_samples"]
    for r in comp["runs"]:
        e = r["shots"]["5"]
        assert {"learngene", "linear_probe", "protonet", "scratch", "chosen_window", "statistics"} <= set(e)
        assert e["chosen_window"]["test"]["unit"] == "target task"
        assert (r["lower_pools"], r["precision"]) == ("paper", "32-true")  # rows of other layouts stay apart
    assert (sweep / "comparison.md").is_file() and (sweep / "plots" / "gain_vs_budget.png").is_file()
    from experiments.compare import _layout  # a run written before results.json held them: its Hydra config

    (tmp_path / "old" / ".hydra").mkdir(parents=True)
    (tmp_path / "old" / ".hydra" / "config.yaml").write_text(
        "individual: {lower_pools: match}\ntrainer: {precision: bf16-mixed}\n"
    )
    assert _layout(tmp_path / "old", {"protocol": {}}) == {"lower_pools": "match", "precision": "bf16-mixed"}
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "compare.py"), str(tmp_path / "nothing")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_the_report_shows_this_configuration_only_and_trainer_numerics_key_the_results(
    finished_run, tmp_path
):
    base = [*TINY, "stage=[learngene,individual,report]", f"from_run={finished_run}"]
    run_pipeline(compose([*base, "methods=[learngene,scratch]"], tmp_path), tmp_path)
    only = run_pipeline(compose([*base, "methods=[learngene]"], tmp_path), tmp_path)
    assert [r["method"] for r in only["tables"]["5"]] == ["learngene"]  # scratch's earlier entry is not shown
    assert only["tables"]["5"][0]["paired"] is None  # nothing to pair with in this configuration
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())
    n = len(raw["computations"])
    run_pipeline(
        compose([*base, "methods=[learngene]", "+trainer.gradient_clip_val=0.01"], tmp_path), tmp_path
    )
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())
    assert (
        len(raw["computations"]) == n + 1
    )  # clipping changes the numbers: a new computation, not the cached one
    run_pipeline(compose([*base, "methods=[learngene]", "individual.batched=false"], tmp_path), tmp_path)
    raw = json.loads((tmp_path / "individual/results_raw.json").read_text())
    assert (
        len(raw["computations"]) == n + 1
    )  # one by one is bitwise the batched training: the same computation


def test_without_a_probe_set_the_representation_statistic_is_not_recorded(tmp_path):
    run_pipeline(
        compose([*TINY, "stage=[collective,learngene]", "criterion.probe_images=0"], tmp_path), tmp_path
    )
    stats = {r["statistic"] for r in read_rows(tmp_path / C0 / "gradient_stats.csv")}
    assert "cka_drift" not in stats and "weight_change" in stats
    with pytest.raises(CheckpointError, match="criterion.statistic='cka_drift' was not recorded"):
        run_pipeline(compose([*TINY, "stage=[learngene]", f"from_run={tmp_path}", "criterion.statistic=cka_drift",
                              "criterion.probe_images=0"], tmp_path / "b"), tmp_path / "b")  # fmt: skip


def test_a_pair_of_computations_shared_by_collective_seeds_counts_once():
    """ProtoNet and scratch do not depend on the learngene: over 3 collective seeds their pairs are the same
    10 pairs, not 30 (which would narrow the interval by sqrt(3)); the learngene's pairs are all distinct."""
    from experiments.pipeline.report.analysis import Gathered, _paired

    rng = np.random.default_rng(0)
    tasks = [(s, t) for s in range(2) for t in range(5)]
    shared = {k: float(rng.uniform(0.4, 0.7)) for k in tasks}
    scratch = Gathered(
        {(cs, *k): v for cs in range(3) for k, v in shared.items()}, {cs: "S" for cs in range(3)}
    )
    meta = {k: v + float(rng.normal(0.05, 0.03)) for k, v in shared.items()}
    protonet = Gathered(
        {(cs, *k): v for cs in range(3) for k, v in meta.items()}, {cs: "P" for cs in range(3)}
    )
    learngene = Gathered(
        {(cs, *k): v + float(rng.normal(0, 0.03)) for cs in range(3) for k, v in shared.items()},
        {cs: f"L{cs}" for cs in range(3)},
    )
    once = _paired(protonet, scratch, "scratch")
    alone = _paired(Gathered(dict(list(protonet.by_task.items())[:10]), {0: "P"}), scratch, "scratch")
    assert once["n"] == 10 and once == alone
    both = _paired(
        learngene, scratch, "scratch"
    )  # the unit is the target task: 10, with three collective seeds in it
    assert both["n"] == 10 and both["collective_seeds"] == 3
