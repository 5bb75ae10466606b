"""What the collective stage hands the callbacks of one task's Trainer.

A callback config with ``_partial_: true`` is completed per task as ``callback(task_inputs=TaskInputs(...))``; a
callback that needs nothing of the task is configured without ``_partial_`` and built as is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class TaskInputs:
    task: int  # the task's index in the stream
    stats_csv: Path | None = (
        None  # where per-epoch criterion statistics go (gradient_stats.csv); None: nowhere
    )
    tau: float = 5e-10  # the gradient criterion's threshold (criterion.tau)
    probe_x: torch.Tensor | None = (
        None  # fixed normalised images, on the training device (criterion.probe_images)
    )
    fisher_batches: Callable[[], Iterable] | None = (
        None  # a seeded class-stratified draw of the task's images
    )
    fisher_samples: int = 64  # how many images fisher_batches yields (criterion.fisher_samples)
    classes: int | None = None  # relative labels: the head's classes per task; None: global labels
    statistic_options: Mapping[str, Mapping] = field(default_factory=dict)  # criterion.options
