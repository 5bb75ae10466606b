"""What every stage needs: the resolved config, the output directory, the data, Trainers and loggers."""

from __future__ import annotations

import logging
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from experiments.pipeline import run_files
from experiments.pipeline.objects import build
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.image_set import ImageSet
from learngene_core.data.statistics import channel_stats
from learngene_core.errors import ConfigError, DataError
from learngene_core.utils import dist

log = logging.getLogger("learngene")


class RunContext:
    def __init__(self, cfg: DictConfig, output_dir: str | Path, loggers: list[Logger] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(output_dir)
        self.loggers = loggers or []
        # where the earlier stages' outputs are read: the from_run directory, or this run's own
        self.reads_from = Path(str(cfg.from_run)) if cfg.get("from_run") else self.out
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}  # this process's CPU seconds per stage
        self.image_set_override: ImageSet | None = None
        self.progress = None  # the running stage's rich Progress (fits add an epoch row to it)
        self.progress_label: str | None = None  # what stage 3 is computing now

    # -- data ---------------------------------------------------------------------------------------
    @cached_property
    def image_set(self) -> ImageSet:
        t = time.perf_counter()
        try:
            image_set = self.image_set_override or build(self.cfg.data.source, "data.source")
        except DataError as err:
            raise DataError(f"{err}{source_keys_hint(self.cfg, str(err))}") from None
        log.info("data: %s (%.1fs)", image_set.summary(), time.perf_counter() - t)
        return image_set

    @cached_property
    def normalisation(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std: ``data.mean`` / ``data.std`` as given, or (``auto``) computed from the
        training images; a list whose length does not match the images' channels is an error."""
        d, channels = self.cfg.data, self.image_set.channels
        auto = [k for k in ("mean", "std") if d[k] == "auto"]
        if auto:
            mean, std = channel_stats(self.image_set.x_train)
            log.info("data.%s=auto: %s from the %d training images", "/".join(auto),
                     {"mean": mean, "std": std}, len(self.image_set.x_train))  # fmt: skip
        values = {
            k: (mean if k == "mean" else std) if d[k] == "auto" else [float(v) for v in d[k]]
            for k in ("mean", "std")
        }
        for key, v in values.items():
            if len(v) != channels:
                raise ConfigError(
                    f"data.{key}={v}: {len(v)} values but the images have {channels} channel"
                    f"{'s' if channels != 1 else ''}; give one value per channel or data.{key}=auto"
                )
        return values["mean"], values["std"]

    @cached_property
    def collective(self):
        """Stage 1's settings (experiments/pipeline/collective/settings.py), read from the config once."""
        from experiments.pipeline.collective.settings import CollectiveSettings

        return CollectiveSettings.from_config(self.cfg)

    @cached_property
    def individual(self):
        """Stage 3's settings (experiments/methods/settings.py), read from the config once."""
        from experiments.methods.settings import IndividualSettings

        return IndividualSettings.from_config(self.cfg)

    @cached_property
    def augment(self) -> BatchAugment:
        """``data.augment`` (a partial BatchAugment) completed with the run's normalisation and memory layout."""
        mean, std = self.normalisation
        channels_last = bool(self.cfg.compute.channels_last)
        try:
            return build(self.cfg.data.augment, "data.augment")(
                mean=mean, std=std, channels_last=channels_last
            )
        except ValueError as err:  # the augmentation's own checks (a negative padding)
            raise ConfigError(f"data.augment cannot be built: {err}") from None

    @cached_property
    def device(self) -> torch.device:
        """The device this process evaluates (and, in stage 3, trains) on."""
        acc = self.cfg.trainer.accelerator
        if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise ConfigError(
                    f"trainer.accelerator={acc!r} but no CUDA device is available; use trainer.accelerator=cpu"
                )
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", torch.cuda.current_device() if dist.world_size() == 1 else local)
        return torch.device("cpu")

    # -- paths --------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def collective_seeds(self) -> list[int]:
        return [int(s) for s in self.cfg.collective.seeds]

    def collective_dir(self, seed: int, own: bool = False) -> Path:
        """Stage-1 outputs of collective seed ``seed``: this run's (``own``) or, with from_run, the earlier run's."""
        return run_files.collective_dir(self.out if own else self.reads_from, seed)

    def learngene_dir(self, seed: int, own: bool = False) -> Path:
        """This run's learngene of ``seed`` if the learngene stage ran here (or ``own``), else from_run's."""
        mine = run_files.learngene_dir(self.out, seed)
        if own or (mine / "learngene.pt").exists() or self.reads_from == self.out:
            return mine
        return run_files.learngene_dir(self.reads_from, seed)

    # -- Trainers -----------------------------------------------------------------------------------
    def make_trainer(self, max_epochs: int, callbacks: list | None = None, logger: Any = False,
                     single_device: bool = False, label: str | None = None,
                     samples_per_epoch: int | None = None, **flags: Any) -> L.Trainer:  # fmt: skip
        """A fresh Trainer from ``cfg.trainer`` (every flag there passes through). ``single_device``: this
        process only (stage 3 shards tasks, not data). ``label``: show the fit's epochs under that name.
        ``flags``: further Trainer flags the stage needs (e.g. reloading the loader every epoch)."""
        callbacks = list(callbacks or [])
        if label is not None:
            from callbacks.progress import EpochProgress
            from experiments.pipeline.console import log_epochs

            callbacks.append(EpochProgress(self.progress, label, samples_per_epoch, log_epochs()))
        kw: dict[str, Any] = {"default_root_dir": str(self.out), **flags}
        if single_device:
            from lightning.pytorch.strategies import SingleDeviceStrategy

            kw.update(
                accelerator="gpu" if self.device.type == "cuda" else "cpu",
                strategy=SingleDeviceStrategy(device=self.device),
                devices=1,
                num_nodes=1,
                sync_batchnorm=False,
            )
        elif self.cfg.trainer.accelerator == "cuda":
            kw["accelerator"] = "gpu"
        return instantiate(self.cfg.trainer)(
            max_epochs=max_epochs, callbacks=callbacks or [], logger=logger, **kw
        )

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
        for logger in self.loggers:
            logger.log_metrics(clean, step=None if is_wandb(logger) else step)


def source_keys_hint(cfg: DictConfig, message: str) -> str:
    """Which ``data.*`` keys set the source parameters a core message names (the core speaks of ``root``,
    the user of ``data.root``)."""
    source = cfg.data.source
    pairs = []
    for param in source:
        if param.startswith("_") or param not in message:
            continue
        keys = [k for k in cfg.data if k != "source" and cfg.data[k] == source[param]]
        key = param if param in keys else (keys[0] if keys else None)
        if key is not None:
            pairs.append(f"{param} is data.{key}")
    return f" (in the config: {', '.join(pairs)})" if pairs else ""


def is_wandb(logger: Logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)
