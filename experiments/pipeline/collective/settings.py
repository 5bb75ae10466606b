"""What stage 1 takes from the config, read in one place: the collective stage's pieces (setup, fit, the joint
optimizer, the per-task loop) receive these values (``ctx.collective``), never a config node."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from callbacks.task_inputs import TaskInputs
from experiments.pipeline.objects import build
from learngene_core.growth import parse_schedule
from lightning_modules.lr_schedules import resolved_node, schedule_factory


@dataclass(frozen=True)
class CollectiveSettings:
    mode: str  # continual | joint | joint_phases
    n_tasks: int
    epochs: int
    labels: str  # global | relative
    head: str  # growing | fixed
    classes_per_task: int
    joint_growth: bool
    keep_checkpoints: str
    eval_batch_size: int
    schedule: tuple  # the parsed growth schedule (empty: growth off)
    growth_noise: float
    ewc: Callable | None  # () -> a fresh EWC penalty; None: EWC off
    ewc_fisher: str
    ewc_fisher_samples: int
    tau: float
    probe_images: int
    fisher_samples: int
    statistic_options: dict  # criterion.options: statistic name -> its options
    after_task: int | None  # the learngene's source task (kept by checkpoint pruning)
    input_size: int
    channels_last: bool
    compile: bool
    net: Callable  # (input_size, in_channels, num_classes) -> BlockNet
    optimizer: Callable  # params -> Optimizer
    lr_schedule: Callable | None  # (optimizer, total_steps) -> scheduler; None: constant lr
    lr_schedule_node: dict  # the schedule as run (the manifest records it)
    module: Callable  # partial CollectiveModule
    datamodule: Callable  # the mode's stream DataModule builder
    callbacks: Callable[[TaskInputs], list]  # a task's callbacks, built afresh

    @property
    def relative(self) -> int | None:
        """Relative labels: the classes per task; None with global labels."""
        return self.classes_per_task if self.labels == "relative" else None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> CollectiveSettings:
        c, crit, growth = cfg.collective, cfg.criterion, cfg.model.growth
        mode = str(c.mode)
        nodes = list((cfg.callbacks or {}).values())
        return cls(
            mode=mode, n_tasks=int(c.n_tasks), epochs=int(c.epochs), labels=str(c.labels), head=str(c.head),
            classes_per_task=int(c.classes_per_task), joint_growth=bool(c.joint_growth),
            keep_checkpoints=str(c.keep_checkpoints), eval_batch_size=int(c.eval_batch_size),
            schedule=tuple(parse_schedule(growth.schedule, cfg.model.width_mult) if growth.enabled else ()),
            growth_noise=float(growth.noise),
            ewc=functools.partial(build, c.ewc.penalty, "collective.ewc.penalty") if c.ewc.enabled else None,
            ewc_fisher=str(c.ewc.fisher), ewc_fisher_samples=int(c.ewc.fisher_samples),
            tau=crit.tau, probe_images=int(crit.probe_images or 0), fisher_samples=int(crit.fisher_samples),
            statistic_options=OmegaConf.to_container(crit.options, resolve=True) if crit.get("options") else {},
            after_task=crit.after_task, input_size=int(cfg.data.image_size),
            channels_last=bool(cfg.compute.channels_last), compile=bool(cfg.compute.compile),
            net=_fresh(cfg.model.net, "model.net"), optimizer=_fresh(c.optimizer, "collective.optimizer"),
            lr_schedule=(functools.partial(_fresh_schedule, c.get("lr_schedule"), mode)
                         if schedule_factory(c.get("lr_schedule"), mode) is not None else None),
            lr_schedule_node=resolved_node(c.get("lr_schedule"), mode),
            module=_fresh(c.module, "collective.module"),
            datamodule=_fresh(c.datamodule[mode], f"collective.datamodule.{mode}"),
            callbacks=functools.partial(_task_callbacks, nodes),
        )  # fmt: skip


def _build_and_call(node, key: str, *args, **kwargs):
    return build(node, key)(*args, **kwargs)


def _fresh(node, key: str) -> Callable:
    """A builder that instantiates ``node`` anew at every call, so nothing a partial's arguments build (a nested
    ``_target_``) is shared between tasks or seeds, exactly as instantiating it at each use did."""
    build(node, key)  # a node that cannot be built fails here, once, naming its key
    return functools.partial(_build_and_call, node, key)


def _fresh_schedule(node, mode: str, *args, **kwargs):
    return schedule_factory(node, mode)(*args, **kwargs)


def _task_callbacks(nodes: list, inputs: TaskInputs) -> list:
    """Every callback of ``cfg.callbacks`` for one task, built afresh: a partial (``_partial_: true``) is completed
    with the task's :class:`TaskInputs`, any other is used as built."""
    out = []
    for node in nodes:
        obj = instantiate(node)
        out.append(obj(task_inputs=inputs) if isinstance(obj, functools.partial) else obj)
    return out
