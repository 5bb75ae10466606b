"""Weights & Biases: one run per pipeline run, resumable with the same id after a requeue."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def run_id(out: Path) -> str:
    """The W&B run id of this output directory (created once, reused on resume/requeue)."""
    path = out / "wandb_run_id.txt"
    if path.exists():
        return path.read_text().strip()
    rid = uuid.uuid4().hex[:12]
    from learngene.utils.io import atomic_write_text

    atomic_write_text(path, rid)
    return rid


def make_wandb_logger(cfg: DictConfig, out: Path):
    from lightning.pytorch.loggers import WandbLogger

    lc = cfg.logger
    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(
        project=lc.project,
        entity=lc.entity,
        group=lc.group,
        tags=list(lc.tags or []),
        mode=lc.mode,
        save_dir=str(out),
        id=run_id(out),
        resume="allow",
        name=f"{cfg.exp_name}-{out.name}",
        config=OmegaConf.to_container(cfg, resolve=True),
    )
