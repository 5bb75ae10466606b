"""The stage pipeline end to end on tiny budgets: outputs, resume, reuse of an earlier run, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, compose

from learngene.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from learngene.pipeline import collective_stage
from learngene.pipeline.runner import run_pipeline


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One tiny quickstart run through every stage and method (shared by the tests below)."""
    out = tmp_path_factory.mktemp("full")
    cfg = compose(TINY, out)
    result = run_pipeline(cfg, out)
    return out, result


def test_full_pipeline_writes_every_artifact(full_run):
    out, result = full_run
    for rel in ["collective/manifest.json", "collective/metrics.json", "collective/task_00.pt", "collective/task_02.pt",
                "gradient_stats.csv", "learngene.pt", "learngene.json", "results.json", "results.md",
                "plots/gradient_heatmap.png", "plots/window_scores.png", "plots/accuracy_matrix.png",
                "plots/judgement_5shot.png", "individual/results_raw.json"]:  # fmt: skip
        assert (out / rel).is_file(), rel
    manifest = json.loads((out / "collective/manifest.json").read_text())
    assert [e["task"] for e in manifest["tasks"]] == [0, 1, 2]
    assert manifest["tasks"][1]["growth"]["op"] == "widen"
    metrics = json.loads((out / "collective/metrics.json").read_text())
    R = metrics["accuracy_matrix"]
    assert len(R) == 3 and R[0][1] is None and all(0 <= v <= 1 for v in R[2])
    assert metrics["average_accuracy"][-1] == pytest.approx(sum(R[2]) / 3)
    assert "auroc_msp" in metrics["open_world"][-1] and "fpr95_energy" in metrics["open_world"][-1]
    assert len(metrics["parameters"]) == 3 and metrics["parameters"][1] > metrics["parameters"][0]
    rows = {r["method"]: r for r in result["tables"]["5"]}
    assert set(rows) == {"learngene", "scratch", "finetune", "linear_probe", "prototype", "protonet", "maml"}
    for r in rows.values():
        assert r["n"] == 2 and 0 <= r["mean"] <= 1 and r["ci95"] is not None and len(r["accuracies"]) == 2
    assert rows["learngene"]["inherited_parameters"] > 0 and rows["scratch"]["inherited_parameters"] == 0
    assert rows["learngene"]["parameters"] == rows["scratch"]["parameters"]
    judgement = result["judgement"]["5"]
    assert len(judgement["rows"]) == 11 and sum(r["selected"] for r in judgement["rows"]) == 1
    lg = json.loads((out / "learngene.json").read_text())
    assert lg["provenance"]["class_sequence"] == manifest["stream"] and lg["statistic"] == "signed_frac"
    assert len(lg["scores"]["windows"]) == 11
    md = (out / "results.md").read_text()
    assert "learngene (inherit selected blocks)" in md and "Spearman" in md


def test_every_method_saw_the_same_tasks(full_run):
    out, _ = full_run
    raw = json.loads((out / "individual/results_raw.json").read_text())["entries"]
    keys = {tuple((t["seed"], t["task"], tuple(t["classes"])) for t in e["tasks"]) for e in raw.values()}
    assert len(keys) == 1


def test_reusing_an_earlier_run_skips_stage_one(full_run, tmp_path):
    src, first = full_run
    cfg = compose(
        [*TINY, "stage=[individual,report]", f"from_run={src}", "baselines.methods=[learngene,scratch]"],
        tmp_path,
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
    with pytest.raises(CheckpointError, match="32 px.*data.image_size=64"):
        run_pipeline(cfg, tmp_path)


def test_impossible_split_is_reported_before_training(tmp_path):
    cfg = compose([*TINY, "individual.ways=6"], tmp_path)
    with pytest.raises(DataError, match="individual.ways=6 but the novel group has 4 classes"):
        run_pipeline(cfg, tmp_path)
    assert not (tmp_path / "collective").exists()
    cfg = compose([*TINY, "individual.shots=[500]"], tmp_path)
    with pytest.raises(DataError, match="500 shots"):
        run_pipeline(cfg, tmp_path)


def test_non_finite_loss_stops_with_task_epoch_and_step(tmp_path):
    cfg = compose([*TINY, "stage=[collective]", "collective.lr=1e12"], tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"collective task 0, epoch 0, step \d+"):
        run_pipeline(cfg, tmp_path)


COLLECTIVE_ONLY = [*TINY, "stage=[collective]", "budget.collective_tasks=3", "trainer.deterministic=true"]


def _final_state(out):
    return torch.load(out / "collective" / "task_02.pt", weights_only=True)["state_dict"]


def test_killed_run_resumes_with_the_same_weights_and_metrics(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run_pipeline(compose(COLLECTIVE_ONLY, straight), straight)

    resumed = tmp_path / "resumed"
    real_prune = collective_stage.prune_checkpoints

    def killed_after_task_1(ctx, manifest, cfg):
        real_prune(ctx, manifest, cfg)
        if manifest["tasks"][-1]["task"] == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(collective_stage, "prune_checkpoints", killed_after_task_1)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(compose(COLLECTIVE_ONLY, resumed), resumed)
    assert not (resumed / "collective" / "task_02.pt").exists()
    monkeypatch.setattr(collective_stage, "prune_checkpoints", real_prune)
    run_pipeline(compose(COLLECTIVE_ONLY, resumed), resumed)

    a, b = _final_state(straight), _final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads((straight / "collective/metrics.json").read_text())
    mb = json.loads((resumed / "collective/metrics.json").read_text())
    assert ma["accuracy_matrix"] == mb["accuracy_matrix"] and ma["open_world"] == mb["open_world"]
    rows_a = (straight / "gradient_stats.csv").read_text().splitlines()
    rows_b = (resumed / "gradient_stats.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b)


def test_resume_with_another_config_is_refused(tmp_path):
    run_pipeline(compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1"], tmp_path), tmp_path)
    with pytest.raises(CheckpointError, match="another configuration"):
        run_pipeline(
            compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1", "collective.lr=0.5"], tmp_path), tmp_path
        )


def test_missing_collective_checkpoint_is_an_error_not_a_random_learngene(tmp_path):
    run_pipeline(compose([*COLLECTIVE_ONLY, "budget.collective_tasks=1"], tmp_path), tmp_path)
    (tmp_path / "collective" / "task_00.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        run_pipeline(compose([*TINY, "stage=[learngene]"], tmp_path), tmp_path)


def test_stage_without_outputs_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="from_run"):
        run_pipeline(compose([*TINY, "stage=[individual]"], tmp_path), tmp_path)


def test_stage_three_results_of_other_settings_are_not_reused(finished_run, tmp_path):
    base = [
        *TINY,
        "stage=[learngene,individual,report]",
        f"from_run={finished_run}",
        "baselines.methods=[learngene]",
    ]
    first = run_pipeline(compose(base, tmp_path), tmp_path)
    again = run_pipeline(compose(base, tmp_path), tmp_path)  # same settings: reused, identical
    assert again["tables"]["5"][0]["accuracies"] == first["tables"]["5"][0]["accuracies"]
    other = run_pipeline(compose([*base, "criterion.window=0"], tmp_path), tmp_path)
    assert list(tmp_path.glob("individual/results_raw.stale-*.json"))
    assert other["learngene"]["selected"]["blocks"] == ["conv1", "conv2", "conv3"]
    assert other["tables"]["5"][0]["parameters"] != first["tables"]["5"][0]["parameters"]


def test_meta_training_is_cached_for_its_settings_only(finished_run, tmp_path):
    base = [
        *TINY,
        "stage=[learngene,individual,report]",
        f"from_run={finished_run}",
        "baselines.methods=[protonet]",
    ]
    first = run_pipeline(compose(base, tmp_path), tmp_path)
    cache = tmp_path / "individual" / "protonet.pt"
    saved = torch.load(cache, weights_only=True)
    (tmp_path / "individual" / "results_raw.json").unlink()  # killed after meta-training, before the results
    again = run_pipeline(compose(base, tmp_path), tmp_path)
    assert (
        torch.load(cache, weights_only=True)["train_time_s"] == saved["train_time_s"]
    )  # reused, not retrained
    assert again["tables"]["5"][0]["accuracies"] == first["tables"]["5"][0]["accuracies"]
    run_pipeline(compose([*base, "baselines.protonet.lr=0.01"], tmp_path), tmp_path)
    assert torch.load(cache, weights_only=True)["digest"] != saved["digest"]  # other settings: retrained
