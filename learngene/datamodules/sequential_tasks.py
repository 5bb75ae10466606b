"""SequentialTasksDataModule: the collective model's stream of tasks (stage 1) as a Lightning DataModule.

The stream is drawn once (seeded) from the base group; ``set_task(t)`` selects the task the next
``fit`` trains on. Labels are global base-class labels by default (the row of the class in the growing
head, in order of first appearance), or task-relative 0..C-1 (``labels="relative"``, the original
code's behaviour). It also serves each task's test images, the known images (test images of the
classes seen so far) and the unknowns (test images of the open-world classes not yet learned).
"""

from __future__ import annotations

import lightning as L
import torch

from learngene.datamodules.augmentation import BatchAugment
from learngene.datamodules.image_set import ImageSet
from learngene.datamodules.loaders import TensorBatchLoader
from learngene.datamodules.task_stream import StreamTask, head_order, train_subset

LABELS = ("global", "relative")


class SequentialTasksDataModule(L.LightningDataModule):
    def __init__(
        self,
        image_set: ImageSet,
        stream: list[StreamTask],
        batch_size: int = 64,
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
        self.on_device = on_device
        self.order = head_order(stream)
        self.head_index = {c: i for i, c in enumerate(self.order)}
        in_stream = {c for task in stream for c in task.classes}
        by_class = {c: v.numpy() for c, v in image_set.indices_by_class("train").items() if c in in_stream}
        self.train_idx = train_subset(by_class, train_per_class, seed)
        self.test_idx = {c: v.numpy() for c, v in image_set.indices_by_class("test").items()}
        self.task = 0
        self._device = torch.device("cpu")
        self._x_train = image_set.x_train

    # -- task bookkeeping ---------------------------------------------------------------------------
    def set_task(self, t: int) -> None:
        if not 0 <= t < len(self.stream):
            raise IndexError(f"task {t} is outside the stream's {len(self.stream)} tasks")
        self.task = t

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
        return idx, y

    def task_test(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 test images and labels of task ``t`` (on CPU)."""
        idx, y = self._gather(t, "test")
        return self.image_set.x_test[idx], y

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
        device = (
            self.trainer.strategy.root_device if (self.trainer and self.on_device) else torch.device("cpu")
        )
        if device != self._device:
            self._x_train = self.image_set.x_train.to(device)
            self._device = device

    def train_dataloader(self) -> TensorBatchLoader:
        idx, y = self._gather(self.task, "train")
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        return TensorBatchLoader(
            self._x_train.index_select(0, idx.to(self._device)), y.to(self._device), self.batch_size, self.augment,
            train=True, seed=self.seed * 100_003 + self.task, rank=rank, world=world,
        )  # fmt: skip

    def fisher_batches(self, t: int, batch_size: int = 64):
        """Deterministic (eval-normalised) batches of task ``t``'s training images for the EWC Fisher."""
        idx, y = self._gather(t, "train")
        x = self._x_train.index_select(0, idx.to(self._device))
        return TensorBatchLoader(x, y.to(self._device), batch_size, self.augment, train=False)
