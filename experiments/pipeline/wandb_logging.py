"""Weights & Biases: one run per pipeline run, resumable with the same id after a requeue."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from learngene_core.errors import ConfigError

log = logging.getLogger("learngene")


def run_id(out: Path) -> str:
    """The W&B run id of this output directory (created once, reused on resume/requeue)."""
    path = out / "wandb_run_id.txt"
    if path.exists():
        return path.read_text().strip()
    rid = uuid.uuid4().hex[:12]
    from learngene_core.utils.io import atomic_write_text

    atomic_write_text(path, rid)
    return rid


def make_wandb_logger(node: DictConfig, out: Path):
    """The ``logger.wandb`` node built with this run directory's persistent run id (resumed after a requeue)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = instantiate(node, id=run_id(out), name=f"{node.name}-{out.name}")
    import wandb

    try:
        run = logger.experiment  # starts the run now, before any work, so a missing login stops the run here
    except wandb.errors.UsageError as err:
        if "api key" not in str(err).lower():
            raise
        raise ConfigError(
            f"logger.wandb.mode={node.mode} needs a W&B login: run `wandb login` or set WANDB_API_KEY; without a W&B "
            "server use logger.wandb.mode=offline (or WANDB_MODE=offline) and `wandb sync` later"
        ) from None
    define_step_metrics(run)
    url = getattr(run, "url", None)
    log.info("W&B run %s (%s): %s", getattr(run, "id", "?"), node.mode, url or getattr(run, "dir", ""))
    return logger


def log_learngene_artifact(logger, files: list[Path], name: str, metadata: dict) -> None:
    """``learngene.pt`` and its json as one W&B model artifact (versioned by W&B)."""
    import wandb

    artifact = wandb.Artifact(name=name, type="model", metadata=metadata)
    for f in files:
        artifact.add_file(str(f))
    logger.experiment.log_artifact(artifact)


def define_step_metrics(run) -> None:
    """Per-task collective metrics are plotted against the task index, not the Trainer's step."""
    if not hasattr(run, "define_metric"):
        return
    run.define_metric("collective/task")
    for pattern in ("collective/test/*", "collective/open_world/*", "collective/params"):
        run.define_metric(pattern, step_metric="collective/task")


def finish(logger, failed: bool) -> None:
    """End the W&B run cleanly (also when a stage failed), marking it failed with a non-zero exit code, and
    say where it is (offline: the ``wandb sync`` command that uploads it)."""
    exp = getattr(logger, "_experiment", None)
    if exp is not None and hasattr(exp, "finish"):
        offline = getattr(getattr(exp, "settings", None), "_offline", False) or getattr(exp, "offline", False)
        folder = Path(getattr(exp, "dir", "")).parent if getattr(exp, "dir", None) else None
        exp.finish(exit_code=1 if failed else 0)
        if offline and folder is not None:
            log.info("W&B run logged offline in %s; upload it with: wandb sync %s", folder, folder)
        elif getattr(exp, "url", None):
            log.info("W&B run: %s", exp.url)
