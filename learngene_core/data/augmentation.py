"""Batch augmentation on the training device: random crop with zero padding, horizontal flip, normalise.

Whole uint8 batches are augmented with a few tensor ops on whatever device they live on (no per-image
PIL work). Randomness comes from an explicit ``torch.Generator`` so that a task's augmentation stream
is reproducible and independent of other tasks (the batched individual trainer relies on this).
Evaluation (:meth:`BatchAugment.eval`) has no randomness at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F

from learngene_core.bounds import Range

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BatchAugment:
    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_padding: Annotated[int, Range(ge=0, le=64)] = 4,
        flip: bool = True,
        channels_last: bool = False,
    ) -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding={crop_padding} must be >= 0")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean {list(mean)} and std {list(std)} must have equal length and std > 0")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.channels_last = channels_last
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = (self.mean.to(device), self.std.to(device))
        return self._cache[device]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 normalised, deterministic."""
        mean, std = self._stats(x.device)
        out = (x.float() / 255.0 - mean) / std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x)

    def random_crop(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.crop_padding
        if p == 0:
            return x
        b, c, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        wp = w + 2 * p
        rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
        offsets = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
        return torch.gather(padded.reshape(b, c, -1), 2, offsets).reshape(b, c, h, w)

    def random_flip(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.flip:
            return x
        mask = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
        return torch.where(mask[:, None, None, None], x.flip(-1), x)

    def train(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) -> augmented float32 batch on the same device."""
        return self.normalize(self.random_flip(self.random_crop(x, generator), generator))
