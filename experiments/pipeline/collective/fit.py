"""The fit step: train the (grown) network on one task with a fresh Trainer and callbacks, and a fresh optimizer
(continual) or the run's one optimizer (joint)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate

from callbacks.continuing_step import ContinuingStep
from callbacks.criterion_stats import CriterionStatsCallback
from callbacks.task_inputs import TaskInputs
from datamodules.joint_stream import JointDataModule
from datamodules.sequential_tasks import SequentialTasksDataModule
from learngene_core.backbones.base import BlockNet
from learngene_core.ewc import EWC
from lightning_modules.lr_schedules import schedule_factory


@dataclass
class FitResult:
    net: BlockNet
    processes: int
    seconds: float
    samples: int  # training images processed (images x epochs on all processes)
    rank_disagreement: float | None
    step_end: int  # the logging step after this task


def make_callbacks(ctx, inputs: TaskInputs) -> list:
    """Every callback of ``cfg.callbacks`` for one task: a partial (``_partial_: true``) is completed with the
    task's :class:`TaskInputs`, any other is used as built."""
    out = []
    for node in (ctx.cfg.callbacks or {}).values():
        obj = instantiate(node)
        out.append(obj(task_inputs=inputs) if isinstance(obj, functools.partial) else obj)
    return out


def task_inputs(
    ctx, t: int, csv_path: Path, probe_x, dm: SequentialTasksDataModule, relative: int | None
) -> TaskInputs:
    crit = ctx.cfg.criterion
    return TaskInputs(
        task=t, stats_csv=csv_path, tau=crit.tau,
        probe_x=ctx.augment.eval(probe_x.to(ctx.device)) if probe_x is not None else None,
        fisher_batches=lambda: dm.fisher_batches(t, samples=crit.fisher_samples),
        fisher_samples=crit.fisher_samples, classes=relative,
    )  # fmt: skip


def fit_task(ctx, net: BlockNet, t: int, dm: SequentialTasksDataModule, ewc: EWC | None, relative: int | None,
             csv_path: Path, probe_x, step: int = 0, label: str = "", run_optimizer=None) -> FitResult:  # fmt: skip
    """Train task ``t``; ``step``: the logging step the previous task ended at (the loggers' x-axis keeps rising).
    ``run_optimizer`` (joint mode): the run's one optimizer and LR scheduler, continued here; otherwise a fresh
    optimizer (and ``collective.lr_schedule`` over this task's steps, unless constant)."""
    cfg, c = ctx.cfg, ctx.cfg.collective
    dm.set_task(t)
    joint = isinstance(dm, JointDataModule)
    extra = {}
    if run_optimizer is not None:
        optimizer = run_optimizer.as_factory()
        extra["lr_schedule"] = run_optimizer.as_schedule()
    else:
        optimizer = instantiate(c.optimizer)
        schedule = schedule_factory(c.get("lr_schedule"), c.get("mode", "continual"))
        if schedule is not None:
            extra["lr_schedule"] = schedule
    module = instantiate(c.module)(
        net=net,
        optimizer=optimizer,
        task=t,
        ewc=ewc,
        relative_classes=relative,
        channels_last=cfg.compute.channels_last,
        compile=cfg.compute.compile,
        **extra,
    )
    steps = ContinuingStep(step)
    callbacks = [*make_callbacks(ctx, task_inputs(ctx, t, csv_path, probe_x, dm, relative)), steps]
    epochs = dm.fit_epochs(t) if joint else c.epochs
    # joint: each Lightning epoch is a slice of the task's chunk of the one sample stream (loaded per epoch)
    flags = {"reload_dataloaders_every_n_epochs": 1} if joint else {}
    trainer = ctx.make_trainer(epochs, callbacks, logger=ctx.loggers or False, label=label or f"task {t}",
                               samples_per_epoch=dm.task_size(t), **flags)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    stats = next((cb for cb in callbacks if isinstance(cb, CriterionStatsCallback)), None)
    return FitResult(
        net=module.net.to("cpu"),
        processes=trainer.world_size,
        seconds=time.perf_counter() - start,
        samples=dm.fit_samples(t) if joint else dm.task_size(t) * c.epochs,
        rank_disagreement=stats.rank_disagreement if stats else None,
        step_end=steps.end,
    )
