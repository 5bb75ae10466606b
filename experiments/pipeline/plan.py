"""What a run will do, computed from the config and the data alone: each collective seed's task stream (or joint
plan) and the target tasks of each shot count. The config checks (before any work) and the stages share it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from omegaconf import ListConfig

from learngene_core.data.image_set import ImageSet
from learngene_core.data.joint_plan import JointPlan
from learngene_core.data.splits import GROUPS
from learngene_core.data.target_tasks import TargetTask, make_target_task_grid
from learngene_core.data.task_stream import StreamTask, joint_phases, make_task_stream, train_subset
from learngene_core.errors import ConfigError

JOINT_MODES = ("joint", "joint_phases")
# the collective head: rows for the classes seen so far, or for every class of the stream from the start
HEADS = ("growing", "fixed")
# the groups validation tasks may draw their classes from: never the base (training) classes
VALIDATION_GROUPS = tuple(sorted(set(GROUPS) - {"base"}))


def trainer_processes(trainer: Mapping) -> int:
    """How many training processes the Trainer config starts: devices x nodes, where ``devices`` "auto" or -1
    means every visible GPU (one process on a CPU). The batch-split check and the Ctrl-C handling share it. A
    ``devices`` value Lightning would not read is a ConfigError naming it."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit() and devices.count("-") <= 1:
        devices = int(devices)
    if devices in ("auto", -1) and not isinstance(devices, bool):
        cpu = str(trainer.get("accelerator")) == "cpu"
        per_node = 1 if cpu else max(1, torch.cuda.device_count())
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 0:
        per_node = max(1, devices)
    elif isinstance(devices, str) and all(d.strip().isdigit() for d in devices.split(",") if d.strip()):
        per_node = max(1, len([d for d in devices.split(",") if d.strip()]))  # "0,1": devices by index
    elif isinstance(devices, list | tuple | ListConfig) and all(
            isinstance(d, int) and not isinstance(d, bool) for d in devices):  # fmt: skip
        per_node = max(1, len(devices))
    else:
        raise ConfigError(f"trainer.devices={devices!r}: must be a number of devices, -1 or 'auto' (every one), a "
                          "list of device indices or a string like '0,1'")  # fmt: skip
    return per_node * (nodes if isinstance(nodes, int) and not isinstance(nodes, bool) and nodes > 0 else 1)


def make_stream(cfg, image_set: ImageSet, seed: int) -> list[StreamTask]:
    """The continual task stream; in the joint modes, as many tasks over all base classes with the same
    number of sample-steps in all (``joint``: the chunks of :func:`joint_plan`; ``joint_phases``: phases of
    as many images per epoch as the matching continual task)."""
    c = cfg.collective
    if c.mode == "joint":
        plan = joint_plan(cfg, image_set, seed)
        base = tuple(int(k) for k in image_set.groups["base"])
        return [StreamTask(t, base, plan.samples_in(plan.chunk(t))) for t in range(plan.n_tasks)]
    joint = c.mode in JOINT_MODES
    stream = make_task_stream(
        image_set.groups["base"], c.n_tasks, c.classes_per_task, seed, c.replacement or joint,
        open_world=image_set.groups["open_world"], open_world_enters_at=c.open_world_enters_at,
    )  # fmt: skip
    if not joint:
        return stream
    return joint_phases(stream, image_set.groups["base"], continual_task_sizes(cfg, image_set, stream, seed))


def continual_task_sizes(cfg, image_set: ImageSet, stream: list[StreamTask], seed: int) -> list[int]:
    """Training images per epoch of each task of the continual ``stream`` (as its DataModule would draw them)."""
    in_stream = {c for task in stream for c in task.classes}
    by_class = {c: v.numpy() for c, v in image_set.indices_by_class("train").items() if c in in_stream}
    sizes = {c: len(v) for c, v in train_subset(by_class, cfg.collective.train_per_class, seed).items()}
    return [t.samples if t.samples is not None else sum(sizes[c] for c in t.classes) for t in stream]


def joint_plan(cfg, image_set: ImageSet, seed: int) -> JointPlan:
    """``collective.mode=joint``: every base training image once per pass, for as many sample-steps as the
    continual stream of this seed (sum of its task sizes x epochs), in ``n_tasks`` equal chunks."""
    c = cfg.collective
    stream = make_task_stream(image_set.groups["base"], c.n_tasks, c.classes_per_task, seed, True)
    total = sum(continual_task_sizes(cfg, image_set, stream, seed)) * c.epochs
    by_class = {
        k: v.numpy()
        for k, v in image_set.indices_by_class("train").items()
        if k in set(image_set.groups["base"])
    }
    n_images = sum(len(v) for v in train_subset(by_class, c.train_per_class, seed).values())
    return JointPlan(n_images, total, c.batch_size, c.n_tasks, c.epochs, seed)


def target_tasks(cfg, image_set: ImageSet, shots: int) -> list[TargetTask]:
    """The test target tasks of one shot count: ``target.n_tasks`` per seed of ``target.seeds``."""
    icfg = cfg.target
    return make_target_task_grid(
        image_set,
        icfg.n_tasks,
        icfg.ways,
        shots,
        list(icfg.seeds),
        protocol=icfg.protocol,
        queries=icfg.queries,
    )


def validation_tasks(cfg, image_set: ImageSet, shots: int) -> list[TargetTask]:
    """The held-out target tasks on which the report chooses (``target.validation``): other seeds, drawn from
    the group's classes, support and queries both from its *training* images (episodic), so that no test image
    informs a choice. Under ``target.protocol=episodic`` the test tasks' queries are training images too: those
    of every shot count are left out of the validation pool. Empty when ``target.validation.n_tasks`` is 0."""
    icfg = cfg.target
    v = icfg.validation
    if v.n_tasks == 0:
        return []
    exclude = None
    if icfg.protocol == "episodic":
        exclude = np.unique(
            np.concatenate([t.test_idx.numpy() for s in icfg.shots for t in target_tasks(cfg, image_set, s)])
        )
    return make_target_task_grid(image_set, v.n_tasks, icfg.ways, shots, list(v.seeds), protocol="episodic",
                                 queries=v.queries, group=v.group, exclude=exclude)  # fmt: skip


def describe(ctx) -> list[str]:
    """The plan in a few log lines: normalisation, each collective seed's stream, the target tasks per shot count."""
    cfg, image_set = ctx.cfg, ctx.image_set
    mean, std = ctx.normalisation
    lines = [f"normalisation: mean {mean}, std {std} ({image_set.channels} channels)"]
    for seed in ctx.collective_seeds:
        stream = make_stream(cfg, image_set, seed)
        shown = ", ".join(str(list(t.classes)) for t in stream[:4])
        what = {"joint": "joint tasks (equal chunks of one stream over all base images)",
                "joint_phases": "joint phases over all base classes"}.get(cfg.collective.mode, "tasks")  # fmt: skip
        lines.append(f"collective stream (seed {seed}): {len(stream)} {what} of {len(stream[0].classes)} classes: "
                     f"{shown[:300]}{' ...' if len(stream) > 4 else ''}")  # fmt: skip
    for shots in cfg.target.shots:
        tasks = target_tasks(cfg, image_set, shots)
        lines.append(f"target tasks, {shots}-shot: {len(tasks)} ({cfg.target.n_tasks} per seed x seeds "
                     f"{list(cfg.target.seeds)}), e.g. classes {[list(t.classes) for t in tasks[:3]]}")  # fmt: skip
    return lines
