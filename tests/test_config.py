"""Config composition (experiments x budgets x data sources) and the up-front config check."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, compose

from learngene.errors import ConfigError
from learngene.pipeline.config_check import check_config


@pytest.mark.parametrize("exp", [None, "cifar_fewshot", "miniimagenet_fewshot"])
@pytest.mark.parametrize("budget", [None, "small", "paper", "quickstart"])
def test_every_experiment_and_budget_composes_and_checks(exp, budget, tmp_path):
    overrides = []
    if exp:
        overrides.append(f"+exp={exp}")
    if budget:
        overrides.append(f"budget={budget}")
    if exp == "miniimagenet_fewshot":
        overrides.append(f"data.path={tmp_path}")
    cfg = compose(overrides, tmp_path)
    check_config(cfg)
    if budget:
        assert cfg.budget.name == budget


def test_paper_budget_values_of_the_cifar_experiment(tmp_path):
    cfg = compose(["+exp=cifar_fewshot"], tmp_path)
    assert cfg.data.source == "cifar100" and cfg.budget.name == "paper"
    assert (cfg.collective.n_tasks, cfg.collective.epochs, cfg.collective.batch_size) == (21, 100, 64)
    assert cfg.collective.lr == 0.001 and cfg.collective.classes_per_task == 5
    assert cfg.model.width_mult == 1.0 and len(cfg.model.growth.schedule) == 20
    assert (cfg.individual.n_tasks, cfg.individual.epochs, cfg.individual.lr, cfg.individual.batch_size) == (
        5,
        30,
        0.005,
        32,
    )
    assert list(cfg.individual.shots) == [10, 20] and cfg.individual.ways == 5
    assert cfg.criterion.tau == 5e-10


def test_budget_and_data_overrides_win_over_the_experiment(tmp_path):
    cfg = compose(["+exp=miniimagenet_fewshot", "budget=small", "data=npz", "data.path=x.npz"], tmp_path)
    assert cfg.data.source == "npz" and cfg.data.path == "x.npz"
    assert cfg.individual.n_tasks == 5 and cfg.collective.epochs == cfg.budget.collective_epochs
    assert compose(["+exp=miniimagenet_fewshot", f"data.path={tmp_path}"], tmp_path).individual.n_tasks == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("collective.epochs=0", r"collective.epochs=0: must be an integer >= 1"),
        ("criterion.statistic=magic", r"criterion.statistic='magic': valid values are \['signed_frac'"),
        ("stage=[individual,collective]", r"stage=.*pipeline order"),
        ("stage=[collective,train]", r"'train' is not a stage"),
        ("baselines.methods=[learngene,knn]", r"'knn' is not a method"),
        ("individual.lr=-1", r"individual.lr=-1: must be a number > 0"),
        ("model.growth.schedule=[[20,64]]", r"model.growth.schedule\[0\]"),
        ("collective.labels=relative", r"collective.head='growing'"),
        ("criterion.k=14", r"criterion.k=14"),
        ("from_run=/nonexistent/run", r"from_run='/nonexistent/run'"),
        ("data.std=[0.1,0.0,0.1]", r"data.std"),
    ],
)
def test_invalid_values_are_named_with_what_is_valid(override, message, tmp_path):
    cfg = compose([override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_missing_npz_path_is_reported(tmp_path):
    cfg = compose(["data=npz"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.path is required"):
        check_config(cfg)


def test_later_stage_without_collective_outputs_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="from_run"):
        check_config(compose(["stage=[learngene]"], tmp_path))


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_cli_reports_an_unknown_experiment_and_a_bad_value(tmp_path):
    unknown = run_cli("+exp=imagenet_full", f"hydra.run.dir={tmp_path}/a")
    assert unknown.returncode != 0
    assert "exp/imagenet_full" in unknown.stderr and "cifar_fewshot" in unknown.stderr
    bad = run_cli("collective.epochs=0", f"hydra.run.dir={tmp_path}/b")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: collective.epochs=0: must be an integer >= 1"
    assert "Traceback" not in bad.stderr


def test_from_run_cannot_be_combined_with_training_stage_one(tmp_path):
    with pytest.raises(ConfigError, match="'collective' cannot be in stage"):
        check_config(compose([f"from_run={tmp_path}"], tmp_path))


def test_fp16_loss_scaling_is_refused_while_gradient_statistics_are_gathered(tmp_path):
    with pytest.raises(ConfigError, match="trainer.precision='16-mixed'"):
        check_config(compose(["trainer.precision=16-mixed"], tmp_path))
    check_config(compose(["trainer.precision=16-mixed", "callbacks.gradient_stats.enabled=false"], tmp_path))
