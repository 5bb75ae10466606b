"""Shared machinery of stage-3 methods: per-task seeds, batched training, evaluation, sharding.

Every method sees the same target tasks. Task (seed s, index i) gets one init seed and one data seed,
the same for every method, so learngene and scratch start their random layers from the same numbers
and shuffle and augment their shots identically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from experiments.pipeline.context import RunContext
from learngene_core.backbones.base import BlockNet
from learngene_core.data.loaders import predict
from learngene_core.data.target_tasks import TargetTask
from learngene_core.stacked import stack_nets
from learngene_core.utils import dist
from learngene_core.utils.seeding import derive_seed


def init_seed(task: TargetTask) -> int:
    return derive_seed("init", task.seed, task.index)


def data_seed(task: TargetTask) -> int:
    return derive_seed("data", task.seed, task.index)


@dataclass
class TaskResult:
    seed: int
    task: int
    classes: list[int]
    acc: float
    train_time_s: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def my_share(tasks: Sequence[TargetTask]) -> list[TargetTask]:
    """This process's share of the tasks under multi-process runs (all of them otherwise)."""
    return list(tasks)[dist.rank() :: dist.world_size()]


def gather(results: list[TaskResult]) -> list[TaskResult]:
    """Results of every process, sorted by (seed, task), so the confidence interval uses all of them."""
    merged = [r for part in dist.all_gather_objects(results) for r in part]
    return sorted(merged, key=lambda r: (r.seed, r.task))


def groups(tasks: Sequence[TargetTask], size: int | None, batched: bool) -> list[list[TargetTask]]:
    if not batched:
        return [[t] for t in tasks]
    size = size or len(tasks) or 1
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def train_nets(
    ctx: RunContext,
    nets: list[BlockNet],
    tasks: list[TargetTask],
    inherited_blocks: Sequence[int] = (),
    name: str = "individual",
) -> tuple[list[BlockNet], float]:
    """Train ``nets`` (one per task) on their tasks' shots at once; returns the trained nets and wall time."""
    s = ctx.individual
    device = ctx.device
    stacked = stack_nets(nets).to(device)
    if s.channels_last:
        stacked = stacked.to(memory_format=torch.channels_last)
    if stacked.spec.dropout:
        stacked.set_dropout_generators(
            [
                torch.Generator(device=device).manual_seed(derive_seed("dropout", t.seed, t.index))
                for t in tasks
            ]
        )
    module = s.module(
        net=stacked, optimizer=s.optimizer, inherited_blocks=inherited_blocks, inherited_lr=s.inherited_lr,
        freeze_inherited=s.freeze_inherited, name=f"{name} tasks {[t.key for t in tasks][:3]}", compile=s.compile,
    )  # fmt: skip
    dm = s.datamodule(
        image_set=ctx.image_set, tasks=tasks, augment=ctx.augment, seeds=[data_seed(t) for t in tasks]
    )
    label = f"{ctx.progress_label or name} ({len(tasks)} task{'s' if len(tasks) > 1 else ''})"
    shots = sum(len(t.train_idx) for t in tasks)
    trainer = ctx.make_trainer(
        s.epochs, logger=False, single_device=True, label=label, samples_per_epoch=shots
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return [n.to(device) for n in stacked.to_nets()], elapsed


def test_images(ctx: RunContext, task: TargetTask) -> torch.Tensor:
    src = ctx.image_set.x_test if task.test_split == "test" else ctx.image_set.x_train
    return src[task.test_idx]


def evaluate_net(ctx: RunContext, net: BlockNet, task: TargetTask) -> float:
    logits = predict(net, test_images(ctx, task), ctx.augment, 500, ctx.device)
    return float((logits.argmax(1).cpu() == task.test_y).float().mean())


def train_and_evaluate(
    ctx: RunContext,
    build,
    tasks: list[TargetTask],
    inherited_blocks: Sequence[int] = (),
    name: str = "individual",
) -> list[TaskResult]:
    """``build(task) -> BlockNet``: a fresh network per task (never carried over from another task)."""
    results = []
    for group in groups(my_share(tasks), ctx.individual.task_batch, ctx.individual.batched):
        nets = [build(t) for t in group]
        trained, elapsed = train_nets(ctx, nets, group, inherited_blocks, name)
        for t, net in zip(group, trained):
            results.append(
                TaskResult(t.seed, t.index, list(t.classes), evaluate_net(ctx, net, t), elapsed / len(group))
            )
    return gather(results)


def net_digest(net: torch.nn.Module) -> str:
    """A hash of a network's tensors (what it *is*), to key computations on it."""
    import hashlib

    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.float().numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    return h.hexdigest()[:16]
