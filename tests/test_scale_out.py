"""Scale-out paths, tested for real on CPU: W&B offline, sweeps, DDP (torchrun and Lightning's launcher),
the submitit local launcher and the plain sbatch script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, TINY, compose

from experiments.pipeline.config_check import check_config
from experiments.pipeline.runner import run_pipeline
from learngene_core.errors import ConfigError

RUN_PY = str(ROOT / "experiments" / "run.py")


def env(**extra) -> dict:
    e = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    e.update(extra)
    return e


def run(cmd: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )
    return proc


# -- W&B ------------------------------------------------------------------------------------------------
def _wandb_run_dir(out: Path) -> Path:
    rid = (out / "wandb_run_id.txt").read_text().strip()
    dirs = list((out / "wandb").glob(f"offline-run-*-{rid}"))
    assert len(dirs) == 1, list((out / "wandb").iterdir())
    return dirs[0]


def _records(run_dir: Path, expect: tuple[str, ...] = (), timeout: float = 30.0) -> tuple[bytes, str]:
    """The offline run's record file (protobuf records: metric and config keys appear verbatim) and debug log.

    W&B's writer process may still be flushing the file for a moment after ``finish`` returns: wait for
    ``expect`` (bounded).
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        data = next(run_dir.glob("run-*.wandb")).read_bytes()
        if all(k.encode() in data for k in expect) or time.monotonic() > deadline:
            return data, (run_dir / "logs" / "debug.log").read_text()
        time.sleep(0.5)


def test_wandb_offline_run_holds_config_metrics_and_table(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(
        [*TINY, "logger=wandb", "logger.wandb.mode=offline", "methods=[learngene,prototype]"], tmp_path
    )
    run_pipeline(cfg, tmp_path)
    run_dir = _wandb_run_dir(tmp_path)
    keys = (
        "collective/task",
        "collective/test/avg_acc",
        "collective/open_world/auroc_msp",
        "criterion",
        "individual/test/acc/learngene/5shot",
        "learngene/window_start",
        "results",
        "plots/seed_0/gradient_heatmap",
        "criterion/weight_change/conv1",
        "learngene-quickstart-seed0",  # the learngene as a model artifact
    )
    records, debug = _records(run_dir, keys)
    for key in keys:
        assert key.encode() in records, key
    assert "got exitcode: 0" in debug
    assert (
        f"upload it with: wandb sync {run_dir}" in caplog.text
    )  # where the offline run is, and how to send it
    assert list((run_dir / "files" / "media" / "table").glob("results_*.table.json"))
    assert list((run_dir / "files" / "media" / "images" / "plots").rglob("*.png"))


def test_wandb_run_is_finished_and_reused_after_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(
        [*TINY, "logger=wandb", "logger.wandb.mode=offline", "stage=[collective]", "collective.lr=1e12"],
        tmp_path,
    )
    from learngene_core.errors import NonFiniteLossError

    with pytest.raises(NonFiniteLossError):
        run_pipeline(cfg, tmp_path)
    first = _wandb_run_dir(tmp_path)
    import wandb

    assert wandb.run is None  # finished, not left dangling
    assert "got exitcode: 1" in _records(first)[1]  # closed cleanly, marked failed
    # a rerun of the same output directory (resume, requeue) logs to the same W&B run id
    rid = (tmp_path / "wandb_run_id.txt").read_text().strip()
    run_pipeline(
        compose([*TINY, "logger=wandb", "logger.wandb.mode=offline", "stage=[collective]"], tmp_path),
        tmp_path,
    )
    assert (tmp_path / "wandb_run_id.txt").read_text().strip() == rid
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    # wandb names a second offline run started in the same second "...-<id>-1"
    assert runs and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{rid}(-\d+)?", r.name) for r in runs)
    assert any("got exitcode: 0" in _records(r)[1] for r in runs)


# -- sweeps -------------------------------------------------------------------------------------------------
SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line the W&B agent would run for one set of values (wandb's own helpers)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    args.update(env=[], interpreter=[sys.executable], program=[sweep["program"]])
    out = []
    for c in create_sweep_command(list(sweep["command"])):
        c = str(c)
        out += args[c[2:-1]] if c.startswith("${") and c.endswith("}") else [c]
    return out


def first_values(sweep: dict) -> dict:
    vals = {}
    for key, spec in sweep["parameters"].items():
        vals[key] = spec["values"][0] if "values" in spec else spec.get("min")
    return vals


def logged_metric_names(tmp_path: Path) -> set[str]:
    """Every metric name the pipeline logs (CSV logger columns of a tiny full run)."""
    cfg = compose([*TINY, "logger=csv", "methods=[learngene,scratch]"], tmp_path)
    run_pipeline(cfg, tmp_path)
    header = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    return set(header.split(","))


@pytest.fixture(scope="module")
def logged_names(tmp_path_factory):
    return logged_metric_names(tmp_path_factory.mktemp("logged"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_keys_exist_and_its_metric_is_logged(path, finished_run, logged_names, monkeypatch):
    sweep = yaml.safe_load(path.read_text())
    assert (ROOT / sweep["program"]).is_file()
    assert sweep["method"] in ("grid", "random", "bayes")
    monkeypatch.setenv("LEARNGENE_FROM_RUN", str(finished_run))
    cmd = agent_command(sweep, first_values(sweep))
    assert cmd[:2] == [sys.executable, "experiments/run.py"]
    overrides = cmd[2:]
    cfg = compose(overrides, finished_run.parent / f"sweep-{path.stem}")
    check_config(cfg)
    for key in sweep["parameters"]:
        assert any(o.startswith(f"{key}=") for o in overrides)
    name = sweep["metric"]["name"]
    assert name.replace("10shot", "5shot") in logged_names, (name, sorted(logged_names))
    if "from_run" in " ".join(overrides):
        assert f"from_run={finished_run}" in overrides and "collective" not in str(cfg.stage)


def test_a_sweep_command_line_runs_as_the_agent_would(finished_run, tmp_path, monkeypatch):
    sweep = yaml.safe_load((ROOT / "experiments" / "sweeps" / "individual_lr_epochs.yaml").read_text())
    monkeypatch.setenv(
        "LEARNGENE_FROM_RUN", str(finished_run)
    )  # the agent expands ${envvar:...} from its env
    cmd = agent_command(sweep, {"individual.lr": 0.01, "individual.epochs": 2})
    assert f"from_run={finished_run}" in cmd
    tiny = [o for o in TINY if not o.startswith("logger")] + [
        "data=digits",  # the finished run's data (the sweep's experiment defaults to CIFAR-100)
        "target.ways=3",
        "collective.classes_per_task=3",
        "logger.wandb.mode=offline",
        f"hydra.run.dir={tmp_path}",
    ]
    run(cmd + tiny, env=env(LEARNGENE_FROM_RUN=str(finished_run)))
    res = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in res["tables"]["5"]} == {"learngene", "scratch"}
    assert res["protocol"]["lr"] == 0.01 and not (tmp_path / "collective").exists()


def test_hydra_multirun_through_the_submitit_local_launcher(finished_run, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run([sys.executable, RUN_PY, "-m", "hydra/launcher=local", "criterion.k=2,3", "stage=[learngene]",
         f"from_run={finished_run}", *TINY, f"hydra.sweep.dir={tmp_path}"], env=env())  # fmt: skip
    for job, k in (("0", 2), ("1", 3)):
        info = json.loads((tmp_path / job / "learngene" / "seed_0" / "learngene.json").read_text())
        assert len(info["selected"]["blocks"]) == k


def test_sbatch_script_runs_with_srun(tmp_path):
    """The sbatch script's srun line, run by a stand-in srun on one CPU task with SLURM's variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "srun"
    fake.write_text(
        '#!/bin/bash\nexport SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_NTASKS=1\nexec "$@"\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "run"
    overrides = [o for o in TINY] + ["stage=[collective,learngene]", "data=digits", "target.ways=3"]
    run(["bash", str(ROOT / "scripts" / "slurm" / "learngene.sbatch"), *overrides],
        env=env(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_NTASKS_PER_NODE="1",
                SLURM_NNODES="1", SLURM_JOB_NAME="learngene", RUN_DIR=str(out), ACCEL="cpu", PYTHON=sys.executable,
                EXP="cifar_fewshot"))  # fmt: skip
    assert (out / "learngene/seed_0/learngene.pt").is_file() and (
        out / "collective/seed_0/manifest.json"
    ).is_file()


# -- data parallel -------------------------------------------------------------------------------------------
DDP_COMMON = [
    *TINY,
    "stage=[collective,learngene,individual,report]",
    "methods=[learngene,prototype]",
    "criterion.statistic=rel_norm",
    "budget.collective_tasks=3",
    "budget.collective_epochs=2",
    "budget.target_tasks=3",
    "trainer.accelerator=cpu",
]


def _stats(out: Path) -> dict:
    import csv

    with open(out / "collective" / "seed_0" / "gradient_stats.csv") as f:
        return {
            (r["task"], r["epoch"], r["layer"], r["statistic"]): float(r["value"]) for r in csv.DictReader(f)
        }


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    """A two-process CPU (gloo) run of every stage, launched by torchrun, with growth between tasks."""
    out = tmp_path_factory.mktemp("torchrun")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    run([torchrun, "--standalone", "--nproc_per_node=2", RUN_PY, *DDP_COMMON, "trainer=ddp",
         f"hydra.run.dir={out}"], env=env())  # fmt: skip
    return out


def test_two_processes_grow_agree_on_statistics_and_write_one_artifact(torchrun_run):
    out = torchrun_run
    manifest = json.loads((out / "collective" / "seed_0" / "manifest.json").read_text())
    assert [e["task"] for e in manifest["tasks"]] == [0, 1, 2]
    assert manifest["tasks"][2]["widths"] != manifest["tasks"][0]["widths"]  # grew between tasks under DDP
    for e in manifest["tasks"]:
        assert e["processes"] == 2
        assert e["gradient_stats_rank_disagreement"] < 1e-5  # both ranks computed the same statistics
    rows = (out / "collective" / "seed_0" / "gradient_stats.csv").read_text().splitlines()
    assert len(rows) == 1 + len(set(rows[1:]))  # written once (rank 0), no duplicated rows
    assert len(list(out.rglob("learngene*.pt"))) == 1 and not list(out.rglob(".*.tmp"))
    res = json.loads((out / "results.json").read_text())
    for row in res["tables"]["5"]:
        assert row["n"] == 3  # the ranks' target tasks were gathered before the interval was computed


def test_ddp_artifact_and_accuracies_equal_a_single_process_replay(torchrun_run, tmp_path):
    """A single process reading the DDP run selects the same window, writes the same learngene, and gets the
    same per-task accuracies as the two processes did with their sharded tasks."""
    import torch

    run_pipeline(
        compose([*DDP_COMMON, "stage=[learngene,individual,report]", f"from_run={torchrun_run}"], tmp_path),
        tmp_path,
    )
    a = json.loads((torchrun_run / "learngene/seed_0/learngene.json").read_text())
    b = json.loads((tmp_path / "learngene/seed_0/learngene.json").read_text())
    assert a["selected"] == b["selected"] and a["scores"]["window_scores"] == b["scores"]["window_scores"]
    la = torch.load(torchrun_run / "learngene/seed_0/learngene.pt", weights_only=True)
    lb = torch.load(tmp_path / "learngene/seed_0/learngene.pt", weights_only=True)
    for sa, sb in zip(la["state"], lb["state"]):
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    ra = json.loads((torchrun_run / "results.json").read_text())["tables"]["5"]
    rb = json.loads((tmp_path / "results.json").read_text())["tables"]["5"]
    for ma, mb in zip(ra, rb):
        assert ma["method"] == mb["method"]
        np.testing.assert_allclose(ma["accuracies"], mb["accuracies"], atol=1e-6)


def test_two_process_statistics_track_a_single_process_run(torchrun_run, tmp_path):
    """collective.batch_size is the global batch: two processes take 32 each, one process 64, so both runs make
    the same steps on the same samples; only BatchNorm's per-rank batch statistics differ."""
    run_pipeline(compose([*DDP_COMMON, "stage=[collective]"], tmp_path), tmp_path)
    ma = json.loads((torchrun_run / "collective/seed_0/manifest.json").read_text())
    mb = json.loads((tmp_path / "collective/seed_0/manifest.json").read_text())
    assert [e["samples"] for e in ma["tasks"]] == [e["samples"] for e in mb["tasks"]]
    a, b = _stats(torchrun_run), _stats(tmp_path)
    assert a.keys() == b.keys()
    keys = [k for k in a if k[3] == "rel_norm"]
    ratio = np.array([a[k] for k in keys]) / np.array([b[k] for k in keys])
    assert np.median(np.abs(np.log(ratio))) < 0.25


def test_lightnings_own_launcher_runs_growth_under_ddp(tmp_path):
    run([sys.executable, RUN_PY, *DDP_COMMON, "trainer=ddp", "stage=[collective,learngene]",
         f"hydra.run.dir={tmp_path}"], env=env())  # fmt: skip
    manifest = json.loads((tmp_path / "collective" / "seed_0" / "manifest.json").read_text())
    assert [e["task"] for e in manifest["tasks"]] == [0, 1, 2]
    assert all(e["processes"] == 2 for e in manifest["tasks"])
    assert (tmp_path / "learngene/seed_0/learngene.pt").is_file()


def test_wandb_mode_follows_wandb_mode_env_and_a_missing_login_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert compose([*TINY, "logger=wandb"], tmp_path).logger.wandb.mode == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = compose([*TINY, "logger=wandb"], tmp_path)
    assert cfg.logger.wandb.mode == "online"
    with pytest.raises(ConfigError, match="logger.wandb.mode=online needs a W&B login"):
        run_pipeline(cfg, tmp_path)
    assert not (tmp_path / "collective").exists()  # stopped before any work


def test_the_collective_batch_is_global_under_data_parallelism(image_set):
    """N processes each take batch_size / N: the optimizer steps per epoch do not change with the device count."""
    from datamodules.sequential_tasks import SequentialTasksDataModule
    from learngene_core.data.task_stream import make_task_stream

    stream = make_task_stream(image_set.groups["base"], 2, 3, seed=0)
    dm = SequentialTasksDataModule(image_set, stream, batch_size=16, on_device=False)

    class FakeTrainer:
        def __init__(self, rank, world):
            self.global_rank, self.world_size = rank, world

    single = dm.train_dataloader()
    dm.trainer = FakeTrainer(0, 2)
    r0 = dm.train_dataloader()
    dm.trainer = FakeTrainer(1, 2)
    r1 = dm.train_dataloader()
    assert single.batch_size == 16 and r0.batch_size == r1.batch_size == 8
    assert len(r0) == len(r1) == len(single)  # as many steps per epoch as one process
    x0, x1 = next(iter(r0))[0], next(iter(r1))[0]
    assert len(x0) + len(x1) == 16
    dm.batch_size = 15
    with pytest.raises(
        ConfigError, match="collective.batch_size=15 is the global batch but is not divisible by the 2"
    ):
        dm.train_dataloader()
