"""SequentialTasksDataModule: the collective model's stream of tasks (stage 1) as a Lightning DataModule.

The stream is drawn once (seeded) from the base group; ``set_task(t)`` selects the task the next
``fit`` trains on. Labels are global base-class labels by default (the row of the class in the growing
head, in order of first appearance), or task-relative 0..C-1 (``labels="relative"``, the original
code's behaviour). A task with ``samples`` set is a phase of the joint ancestor: that many training images
drawn (seeded) from all its classes. It also serves each task's test images, the known images (test images of the
classes seen so far) and the unknowns (test images of the open-world classes not yet learned).
"""

from __future__ import annotations

from typing import Annotated

import lightning as L
import numpy as np
import torch

from datamodules.device_images import DeviceImages
from learngene_core.bounds import Range
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.image_set import ImageSet
from learngene_core.data.loaders import TensorBatchLoader
from learngene_core.data.task_stream import StreamTask, head_order, train_subset
from learngene_core.ewc import stratified_order
from learngene_core.utils.seeding import derive_seed

LABELS = ("global", "relative")


class SequentialTasksDataModule(L.LightningDataModule):
    def __init__(
        self,
        image_set: ImageSet,
        stream: list[StreamTask],
        batch_size: Annotated[int, Range(ge=1)] = 64,
        augment: BatchAugment | None = None,
        labels: str = "global",
        train_per_class: int | None = None,
        seed: int = 0,
        on_device: bool = True,
    ) -> None:
        super().__init__()
        if labels not in LABELS:
            raise ValueError(f"collective.labels={labels!r}; valid: {list(LABELS)}")
        self.image_set, self.stream = image_set, stream
        self.batch_size, self.labels, self.seed = batch_size, labels, seed
        self.augment = augment or BatchAugment()
        self.order = head_order(stream)
        self.head_index = {c: i for i, c in enumerate(self.order)}
        in_stream = {c for task in stream for c in task.classes}
        by_class = {c: v.numpy() for c, v in image_set.indices_by_class("train").items() if c in in_stream}
        self.train_idx = train_subset(by_class, train_per_class, seed)
        self.test_idx = {c: v.numpy() for c, v in image_set.indices_by_class("test").items()}
        self.task = 0
        self.images = DeviceImages(image_set.x_train, on_device)

    # -- task bookkeeping ---------------------------------------------------------------------------
    def set_task(self, t: int) -> None:
        if not 0 <= t < len(self.stream):
            raise IndexError(f"task {t} is outside the stream's {len(self.stream)} tasks")
        self.task = t

    def task_size(self, t: int) -> int:
        """Training images of task ``t`` (one epoch, all processes together)."""
        task = self.stream[t]
        return task.samples if task.samples is not None else sum(len(self.train_idx[c]) for c in task.classes)

    def classes_seen(self, t: int) -> list[int]:
        """Dataset classes seen in tasks 0..t, in head order."""
        seen = {c for task in self.stream[: t + 1] for c in task.classes}
        return [c for c in self.order if c in seen]

    def label(self, c: int, task: StreamTask) -> int:
        return self.head_index[c] if self.labels == "global" else task.classes.index(c)

    def _gather(self, t: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        task = self.stream[t]
        pool = self.train_idx if split == "train" else self.test_idx
        idx = torch.cat([torch.as_tensor(pool[c]) for c in task.classes]).long()
        y = torch.cat([torch.full((len(pool[c]),), self.label(c, task)) for c in task.classes]).long()
        if split == "train" and task.samples is not None:  # a joint phase: a seeded subset of all classes
            pick = np.sort(
                np.random.default_rng([self.seed, 5, t]).choice(len(idx), task.samples, replace=False)
            )
            idx, y = idx[torch.from_numpy(pick)], y[torch.from_numpy(pick)]
        return idx, y

    def known_images(self, t: int) -> torch.Tensor:
        idx = [torch.as_tensor(self.test_idx[c]) for c in self.classes_seen(t)]
        return self.image_set.x_test[torch.cat(idx).long()]

    def unknown_images(self, t: int) -> torch.Tensor:
        seen = set(self.classes_seen(t))
        idx = [
            torch.as_tensor(self.test_idx[c]) for c in self.image_set.groups["open_world"] if c not in seen
        ]
        if not idx:
            return self.image_set.x_test[:0]
        return self.image_set.x_test[torch.cat(idx).long()]

    # -- Lightning hooks ----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.images.setup(self.trainer)

    def per_process_batch(self, world: int) -> int:
        """``batch_size`` is the global batch: each of ``world`` processes takes batch_size / world, so the
        number of optimizer steps per epoch and the effective batch do not change with the device count."""
        if self.batch_size % world:
            from learngene_core.errors import ConfigError

            raise ConfigError(
                f"collective.batch_size={self.batch_size} is the global batch but is not divisible by the {world} "
                f"processes; use a multiple of {world}"
            )
        return self.batch_size // world

    def train_dataloader(self) -> TensorBatchLoader:
        idx, y = self._gather(self.task, "train")
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        return TensorBatchLoader(
            self.images.x.index_select(0, idx.to(self.images.device)), y.to(self.images.device), self.per_process_batch(world),
            self.augment, train=True, seed=self.seed * 100_003 + self.task, rank=rank, world=world,
        )  # fmt: skip

    def fisher_batches(self, t: int, batch_size: int = 64, samples: int | None = None):
        """Deterministic (eval-normalised) batches of task ``t``'s training images for a Fisher estimate
        (EWC, fisher_importance): a seeded, class-stratified draw over all the task's classes
        (:func:`~learngene_core.ewc.stratified_order`, seeded by the collective seed and the task), so the
        first ``samples`` images cover every class, not the first class in storage order; ``samples``:
        only that many (default all)."""
        idx, y = self._gather(t, "train")
        order = stratified_order(
            y, torch.Generator().manual_seed(derive_seed(self.seed, "fisher-samples", t))
        )
        order = order[:samples] if samples is not None else order
        idx, y = idx[order], y[order]
        x = self.images.x.index_select(0, idx.to(self.images.device))
        return TensorBatchLoader(x, y.to(self.images.device), batch_size, self.augment, train=False)
