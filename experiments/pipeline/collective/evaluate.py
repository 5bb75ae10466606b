"""The evaluate step: after task t, accuracy on every task j <= t, two ways, and open-world detection.

- class-incremental (class-IL): argmax over every head output (with global labels: every class seen so
  far; chance is 1 / that number). With task-relative labels the head is read task-aware (first C
  outputs), as the original code did, so class-IL equals task-IL there.
- task-incremental (task-IL): argmax over the head rows of task j's own classes (chance 1 / C).

One forward pass per test image of a seen class serves every task and both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datamodules.sequential_tasks import SequentialTasksDataModule
from learngene_core.backbones.base import BlockNet
from learngene_core.data.loaders import predict
from learngene_core.metrics.open_world import open_world_metrics


@dataclass
class Evaluation:
    class_il: list[float]  # R[t][j], j <= t
    task_il: list[float]
    open_world: dict
    outputs: int  # head outputs the class-IL argmax ranges over (chance = 1 / outputs)


@torch.no_grad()
def evaluate(net: BlockNet, dm: SequentialTasksDataModule, t: int, relative: int | None, augment, device,
             batch_size: int) -> Evaluation:  # fmt: skip
    seen = dm.classes_seen(t)
    logits = predict(net, dm.known_images(t), augment, batch_size, device).cpu()
    if relative:
        logits = logits[:, :relative]
    by_class, start = {}, 0
    for c in seen:
        n = len(dm.test_idx[c])
        by_class[c] = logits[start : start + n]
        start += n
    class_il, task_il = [], []
    for j in range(t + 1):
        task = dm.stream[j]
        task_logits = torch.cat([by_class[c] for c in task.classes])
        y = torch.cat([torch.full((len(by_class[c]),), dm.label(c, task)) for c in task.classes])
        class_il.append(float((task_logits.argmax(1) == y).float().mean()))
        if relative:
            task_il.append(class_il[-1])
            continue
        rows = torch.tensor([dm.label(c, task) for c in task.classes])
        local = torch.cat([torch.full((len(by_class[c]),), i) for i, c in enumerate(task.classes)])
        task_il.append(float((task_logits[:, rows].argmax(1) == local).float().mean()))
    unknown = dm.unknown_images(t)
    ow = {}
    if len(unknown):
        u = predict(net, unknown, augment, batch_size, device).cpu()
        ow = open_world_metrics(logits, u[:, :relative] if relative else u)
    return Evaluation(class_il, task_il, ow, int(logits.shape[1]))
