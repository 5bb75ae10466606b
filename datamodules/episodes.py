"""EpisodesDataModule: the seeded meta-training episodes of base classes (ProtoNet, MAML).

Wraps :class:`~learngene_core.data.episodes.EpisodeLoader`: one step = ``meta_batch`` episodes, each
(support x, support y, query x, query y), augmented like every other training batch.
"""

from __future__ import annotations

from typing import Annotated

import lightning as L

from datamodules.device_images import DeviceImages
from learngene_core.bounds import Range
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.episodes import EpisodeLoader
from learngene_core.data.image_set import ImageSet
from learngene_core.data.target_tasks import TargetTask


class EpisodesDataModule(L.LightningDataModule):
    def __init__(
        self,
        image_set: ImageSet,
        episodes: list[TargetTask],
        augment: BatchAugment,
        seed: int,
        meta_batch: Annotated[int, Range(ge=1)] = 1,
        on_device: bool = True,
    ) -> None:
        super().__init__()
        self.episodes, self.augment, self.seed, self.meta_batch = episodes, augment, seed, meta_batch
        self.images = DeviceImages(image_set.x_train, on_device)

    def setup(self, stage: str | None = None) -> None:
        self.images.setup(self.trainer)

    def train_dataloader(self) -> EpisodeLoader:
        return EpisodeLoader(self.images.x, self.episodes, self.augment, self.seed, self.meta_batch)
