"""JointDataModule: the joint ancestor's data (``collective.mode=joint``), one seeded stream over all base images.

A :class:`~learngene_core.data.joint_plan.JointPlan` fixes the order: every pass a fresh permutation of all
base-class training images, cut into global batches, the optimizer steps split into ``n_tasks`` equal
chunks (the run's "tasks") and each chunk into Lightning epochs. ``set_task(t)`` selects chunk t; the
Trainer reloads the loader every epoch (``reload_dataloaders_every_n_epochs=1``) and gets that epoch's
batches. Everything else (test images, known and unknown images, global labels) is the sequential
module's, with a stream whose every task holds all base classes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from datamodules.sequential_tasks import SequentialTasksDataModule
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.image_set import ImageSet
from learngene_core.data.joint_plan import JointPlan
from learngene_core.data.task_stream import StreamTask
from learngene_core.utils.seeding import derive_seed


class PlannedBatchLoader:
    """Given global batches of image indices: each process takes every ``world``-th image of a batch from
    ``rank`` on (a batch not divisible by ``world`` is padded by wrapping), augmented with a seeded generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor], augment: BatchAugment,
                 seed: int, rank: int = 0, world: int = 1) -> None:  # fmt: skip
        self.x, self.y, self.batches, self.augment = x, y, batches, augment
        self.rank, self.world = rank, world
        self.aug_gen = torch.Generator(device=x.device)
        self.aug_gen.manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.batches:
            if self.world > 1:
                pad = -len(b) % self.world
                b = torch.cat([b, b[:pad]])[self.rank :: self.world]
            b = b.to(self.x.device)
            yield self.augment.train(self.x.index_select(0, b), self.aug_gen), self.y.index_select(0, b)


class JointDataModule(SequentialTasksDataModule):
    def __init__(self, image_set: ImageSet, stream: list[StreamTask], plan: JointPlan, augment: BatchAugment | None = None,
                 train_per_class: int | None = None, seed: int = 0, on_device: bool = True) -> None:  # fmt: skip
        super().__init__(
            image_set, stream, plan.batch_size, augment, "global", train_per_class, seed, on_device
        )
        self.plan = plan
        # the base pool in head order: dataset indices and global labels of all base training images
        self.pool = torch.cat([torch.as_tensor(self.train_idx[c]) for c in self.order]).long()
        self.pool_y = torch.cat(
            [torch.full((len(self.train_idx[c]),), self.head_index[c]) for c in self.order]
        ).long()
        if len(self.pool) != plan.n_images:
            raise ValueError(
                f"the plan has {plan.n_images} images per pass but the base pool {len(self.pool)}"
            )

    def task_size(self, t: int) -> int:
        """Training samples of task (chunk) ``t`` per Lightning epoch, on average (for progress bars)."""
        return self.plan.samples_in(self.plan.chunk(t)) // len(self.plan.epoch_steps(t))

    def fit_epochs(self, t: int) -> int:
        return len(self.plan.epoch_steps(t))

    def fit_samples(self, t: int) -> int:
        return self.plan.samples_in(self.plan.chunk(t))

    def batch_indices(self, step: int) -> torch.Tensor:
        """Dataset indices (into the training images) of global optimizer step ``step``."""
        return self.pool[torch.from_numpy(self.plan.batch(step))]

    def train_dataloader(self) -> PlannedBatchLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        steps = self.plan.epoch_steps(self.task)[epoch]
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        self.per_process_batch(world)  # the global batch must split evenly
        batches = [torch.from_numpy(self.plan.batch(s)) for s in steps]
        return PlannedBatchLoader(
            self.images.x, self.labels_by_index(), [self.pool[b] for b in batches], self.augment,
            seed=derive_seed(self.seed, "joint-augment", self.task, epoch), rank=rank, world=world,
        )  # fmt: skip

    def labels_by_index(self) -> torch.Tensor:
        """Global labels indexed by training-image index (-1 outside the base pool), on the images' device."""
        if getattr(self, "_y_all", None) is None or self._y_all.device != self.images.device:
            y = torch.full((len(self.image_set.x_train),), -1, dtype=torch.long)
            y[self.pool] = self.pool_y
            self._y_all = y.to(self.images.device)
        return self._y_all

    def fisher_batches(self, t: int, batch_size: int = 64, samples: int | None = None):
        """Task ``t``'s training samples in their (shuffled, all-class) training order, eval-normalised;
        ``samples``: only that many (default: the whole chunk; consumers stop early)."""
        steps = self.plan.chunk(t)
        start = self.plan.step_samples(steps[0]).start
        stop = self.plan.step_samples(steps[-1]).stop
        if samples is not None:
            stop = min(stop, start + samples)
        y = self.labels_by_index()
        for i in range(start, stop, batch_size):
            idx = self.pool[torch.from_numpy(self.plan.images(range(i, min(i + batch_size, stop))))]
            idx = idx.to(self.images.device)
            yield self.augment.eval(self.images.x.index_select(0, idx)), y.index_select(0, idx)
