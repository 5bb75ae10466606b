"""What every stage needs: the resolved config, the output directory, the data, Trainers and loggers."""

from __future__ import annotations

import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from learngene.datamodules.augmentation import BatchAugment
from learngene.datamodules.image_set import ImageSet
from learngene.datamodules.sources import load_image_set
from learngene.utils import dist

log = logging.getLogger("learngene")


class RunContext:
    def __init__(self, cfg: DictConfig, output_dir: str | Path, loggers: list[Logger] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(output_dir)
        self.loggers = loggers or []
        self.source = Path(str(cfg.from_run)) if cfg.get("from_run") else self.out
        self.timings: dict[str, float] = {}
        self.stage3_digest: str | None = None  # set by the individual stage: keys its caches

    # -- data ---------------------------------------------------------------------------------------
    @cached_property
    def image_set(self) -> ImageSet:
        t = time.perf_counter()
        image_set = load_image_set(OmegaConf.to_container(self.cfg.data, resolve=True))
        log.info("data: %s (%.1fs)", image_set.summary(), time.perf_counter() - t)
        return image_set

    @cached_property
    def augment(self) -> BatchAugment:
        return BatchAugment.from_config(
            {
                **OmegaConf.to_container(self.cfg.data, resolve=True),
                "channels_last": self.cfg.trainer.channels_last,
            }
        )

    @cached_property
    def device(self) -> torch.device:
        """The device this process evaluates (and, in stage 3, trains) on."""
        acc = self.cfg.trainer.accelerator
        if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                from learngene.errors import ConfigError

                raise ConfigError(
                    f"trainer.accelerator={acc!r} but no CUDA device is available; use trainer.accelerator=cpu"
                )
            return torch.device(
                "cuda", torch.cuda.current_device() if dist.world_size() == 1 else _local_rank()
            )
        return torch.device("cpu")

    # -- paths --------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def source_path(self, *parts: str) -> Path:
        """Where earlier stages' outputs are read from: ``from_run`` if set, else this run."""
        return self.source.joinpath(*parts)

    # -- Trainers -----------------------------------------------------------------------------------
    def trainer_kwargs(self) -> dict[str, Any]:
        t = self.cfg.trainer
        return {
            "accelerator": "gpu" if t.accelerator == "cuda" else t.accelerator,
            "precision": t.precision,
            "deterministic": t.deterministic,
            "benchmark": t.benchmark,
            "enable_progress_bar": t.enable_progress_bar,
            "enable_checkpointing": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": t.log_every_n_steps,
            "default_root_dir": str(self.out),
        }

    def make_trainer(self, max_epochs: int, callbacks: list | None = None, logger: Any = False,
                     single_device: bool = False) -> L.Trainer:  # fmt: skip
        """A fresh Trainer. ``single_device``: this process only (stage 3 shards tasks, not data)."""
        kw = self.trainer_kwargs()
        if single_device:
            from lightning.pytorch.strategies import SingleDeviceStrategy

            kw["accelerator"] = "gpu" if self.device.type == "cuda" else "cpu"
            kw["strategy"] = SingleDeviceStrategy(device=self.device)
            kw["devices"] = 1
        else:
            kw["strategy"] = self.cfg.trainer.strategy
            kw["devices"] = self.cfg.trainer.devices
            kw["num_nodes"] = self.cfg.trainer.num_nodes
            kw["sync_batchnorm"] = self.cfg.trainer.sync_batchnorm
        return L.Trainer(max_epochs=max_epochs, callbacks=callbacks or [], logger=logger, **kw)

    # -- logging ------------------------------------------------------------------------------------
    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, step_key: str | None = None
    ) -> None:
        """Log to every logger (rank 0). ``step_key`` names the step metric W&B plots these against
        (e.g. ``collective/task``), so that per-task metrics use the task index as their step."""
        clean = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if not dist.is_rank_zero() or not self.loggers:
            return
        if step_key is not None and step is not None:
            clean[step_key] = float(step)
        for lg in self.loggers:
            lg.log_metrics(clean, step=step if type(lg).__name__ != "WandbLogger" else None)


def _local_rank() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", 0))
