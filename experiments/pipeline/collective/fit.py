"""The fit step: train the (grown) network on one task with a fresh Trainer and callbacks, and a fresh optimizer
(continual) or the run's one optimizer (joint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from callbacks.continuing_step import ContinuingStep
from callbacks.task_inputs import TaskInputs
from datamodules.joint_stream import JointDataModule
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


def task_inputs(ctx, t: int, csv_path: Path, probe_x, dm: SequentialTasksDataModule) -> TaskInputs:
    s = ctx.collective
    return TaskInputs(
        task=t, stats_csv=csv_path, tau=s.tau,
        probe_x=ctx.augment.eval(probe_x.to(ctx.device)) if probe_x is not None else None,
        fisher_batches=lambda: dm.fisher_batches(t, samples=s.fisher_samples),
        fisher_samples=s.fisher_samples, classes=s.relative, statistic_options=s.statistic_options,
    )  # fmt: skip


def fit_task(ctx, net: BlockNet, t: int, dm: SequentialTasksDataModule, ewc: EWC | None, csv_path: Path, probe_x,
             step: int = 0, label: str = "", run_optimizer=None) -> FitResult:  # fmt: skip
    """Train task ``t``; ``step``: the logging step the previous task ended at (the loggers' x-axis keeps rising).
    ``run_optimizer`` (joint mode): the run's one optimizer and LR scheduler, continued here; otherwise a fresh
    optimizer (and ``collective.lr_schedule`` over this task's steps, unless constant)."""
    s = ctx.collective
    dm.set_task(t)
    joint = isinstance(dm, JointDataModule)
    extra = {}
    if run_optimizer is not None:
        optimizer = run_optimizer.as_factory()
        extra["lr_schedule"] = run_optimizer.as_schedule()
    else:
        optimizer = s.optimizer
        if s.lr_schedule is not None:
            extra["lr_schedule"] = s.lr_schedule
    module = s.module(
        net=net,
        optimizer=optimizer,
        task=t,
        ewc=ewc,
        relative_classes=s.relative,
        channels_last=s.channels_last,
        compile=s.compile,
        **extra,
    )
    steps = ContinuingStep(step)
    callbacks = [*s.callbacks(task_inputs(ctx, t, csv_path, probe_x, dm)), steps]
    epochs = dm.fit_epochs(t) if joint else s.epochs
    # joint: each Lightning epoch is a slice of the task's chunk of the one sample stream (loaded per epoch)
    flags = {"reload_dataloaders_every_n_epochs": 1} if joint else {}
    trainer = ctx.make_trainer(epochs, callbacks, logger=ctx.loggers or False, label=label or f"task {t}",
                               samples_per_epoch=dm.task_size(t), **flags)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    # how far the data-parallel ranks' statistics were apart, from any callback that measures it (the criterion's)
    gaps = [cb.rank_disagreement for cb in callbacks if getattr(cb, "rank_disagreement", None) is not None]
    return FitResult(
        net=module.net.to("cpu"),
        processes=trainer.world_size,
        seconds=time.perf_counter() - start,
        samples=dm.fit_samples(t) if joint else dm.task_size(t) * s.epochs,
        rank_disagreement=max(gaps) if gaps else None,
        step_end=steps.end,
    )
