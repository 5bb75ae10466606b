"""TargetTasksDataModule: a group of target tasks (K shots each) trained at once by stage 3.

Wraps :class:`~learngene_core.data.loaders.TaskBatchLoader`: batches of x (B, T, C, H, W) and y (B, T), task
t shuffled and augmented with its own generators (seeded from ``seeds[t]``), so a group of one task is
exactly what training that task alone uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import lightning as L
import torch

from datamodules.device_images import DeviceImages
from learngene_core.bounds import Range
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.image_set import ImageSet
from learngene_core.data.loaders import TaskBatchLoader
from learngene_core.data.target_tasks import TargetTask


class TargetTasksDataModule(L.LightningDataModule):
    def __init__(
        self,
        image_set: ImageSet,
        tasks: Sequence[TargetTask],
        batch_size: Annotated[int, Range(ge=1)],
        augment: BatchAugment,
        seeds: Sequence[int],
        on_device: bool = True,
        batching: str = "even",
    ) -> None:
        super().__init__()
        self.tasks, self.batch_size, self.augment, self.seeds = list(tasks), batch_size, augment, list(seeds)
        self.batching = batching
        self.images = DeviceImages(image_set.x_train, on_device)

    def setup(self, stage: str | None = None) -> None:
        self.images.setup(self.trainer)

    def train_dataloader(self) -> TaskBatchLoader:
        return TaskBatchLoader(
            self.images.x,
            torch.stack([t.train_idx for t in self.tasks]),
            torch.stack([t.train_y for t in self.tasks]),
            self.batch_size,
            self.augment,
            self.seeds,
            self.batching,
        )
