"""The fit step: train the (grown) network on one task with a fresh Trainer, optimizer and callbacks."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate

from callbacks.continuing_step import ContinuingStep
from callbacks.criterion_stats import CriterionStatsCallback
from datamodules.sequential_tasks import SequentialTasksDataModule
from learngene_core.backbones.base import BlockNet
from learngene_core.ewc import EWC


@dataclass
class FitResult:
    net: BlockNet
    processes: int
    seconds: float
    samples: int  # training images processed (images x epochs on all processes)
    rank_disagreement: float | None
    step_end: int  # the logging step after this task


def make_callbacks(
    ctx, t: int, csv_path: Path, probe_x, dm: SequentialTasksDataModule, relative: int | None
) -> list:
    """Every callback of ``cfg.callbacks`` for task ``t`` (partials get the task's own arguments)."""
    cfg = ctx.cfg
    out = []
    for node in (cfg.callbacks or {}).values():
        obj = instantiate(node)
        if not isinstance(obj, functools.partial):
            out.append(obj)
        elif obj.func is CriterionStatsCallback:
            probe = ctx.augment.eval(probe_x.to(ctx.device)) if probe_x is not None else None
            out.append(obj(csv_path=csv_path, tau=cfg.criterion.tau, task=t, probe_x=probe,
                           fisher_batches=lambda t=t: dm.fisher_batches(t, samples=cfg.criterion.fisher_samples),
                           fisher_samples=cfg.criterion.fisher_samples,
                           classes=relative))  # fmt: skip
        else:
            out.append(obj())
    return out


def fit_task(ctx, net: BlockNet, t: int, dm: SequentialTasksDataModule, ewc: EWC | None, relative: int | None,
             csv_path: Path, probe_x, step: int = 0, label: str = "") -> FitResult:  # fmt: skip
    """Train task ``t``; ``step``: the logging step the previous task ended at (the loggers' x-axis keeps rising)."""
    cfg, c = ctx.cfg, ctx.cfg.collective
    dm.set_task(t)
    module = instantiate(c.module)(
        net=net,
        optimizer=instantiate(c.optimizer),
        task=t,
        ewc=ewc,
        relative_classes=relative,
        channels_last=cfg.compute.channels_last,
        compile=cfg.compute.compile,
    )
    steps = ContinuingStep(step)
    callbacks = [*make_callbacks(ctx, t, csv_path, probe_x, dm, relative), steps]
    trainer = ctx.make_trainer(c.epochs, callbacks, logger=ctx.loggers or False, label=label or f"task {t}",
                               samples_per_epoch=dm.task_size(t))  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    stats = next((cb for cb in callbacks if isinstance(cb, CriterionStatsCallback)), None)
    return FitResult(
        net=module.net.to("cpu"),
        processes=trainer.world_size,
        seconds=time.perf_counter() - start,
        samples=dm.task_size(t) * c.epochs,
        rank_disagreement=stats.rank_disagreement if stats else None,
        step_end=steps.end,
    )
