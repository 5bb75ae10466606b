"""Episode loaders for meta-learning baselines trained on the base classes (ProtoNet, MAML)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.target_tasks import TargetTask


class EpisodeLoader:
    """Yields, per step, ``meta_batch`` episodes as (support x, support y, query x, query y) tuples.

    Episodes are precomputed and seeded (:func:`~learngene_core.data.target_tasks.make_episodes`);
    support and query images are augmented like every other training batch.
    """

    def __init__(self, x: torch.Tensor, episodes: list[TargetTask], augment: BatchAugment, seed: int,
                 meta_batch: int = 1) -> None:  # fmt: skip
        self.x, self.episodes, self.augment, self.meta_batch = x, episodes, augment, meta_batch
        self.gen = torch.Generator(device=x.device).manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.episodes) // self.meta_batch

    def _one(self, ep: TargetTask):
        dev = self.x.device
        xs = self.augment.train(self.x.index_select(0, ep.train_idx.to(dev)), self.gen)
        xq = self.augment.train(self.x.index_select(0, ep.test_idx.to(dev)), self.gen)
        return xs, ep.train_y.to(dev), xq, ep.test_y.to(dev)

    def __iter__(self) -> Iterator[list[tuple]]:
        for i in range(len(self)):
            yield [self._one(ep) for ep in self.episodes[i * self.meta_batch : (i + 1) * self.meta_batch]]
