"""The one in-memory form every data source produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from learngene_core.data.splits import GROUPS, validate_groups
from learngene_core.errors import DataError


@dataclass
class ImageSet:
    """uint8 images (N, C, H, W), int64 labels, class names and class groups, per split.

    ``groups`` maps "base" / "open_world" / "novel" to sorted class indices; it is the same for the train
    and test splits (a class is in one group, whichever split its images come from).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    groups: dict[str, list[int]]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise DataError(
                    f"{self.name}: x_{split} must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(
                    f"{self.name}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels; they must match"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise DataError(
                    f"{self.name}: y_{split} holds labels {int(y.min())}..{int(y.max())} but there are "
                    f"{len(self.class_names)} class names"
                )
        self.y_train = self.y_train.long()
        self.y_test = self.y_test.long()
        validate_groups(self.groups, len(self.class_names))

    def set_groups(self, groups: dict[str, list[int]]) -> None:
        validate_groups(groups, len(self.class_names))
        self.groups = groups

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def indices_by_class(self, split: str) -> dict[int, torch.Tensor]:
        """Image indices of each class in ``split``, in storage order."""
        y = self.y_train if split == "train" else self.y_test
        order = torch.argsort(y, stable=True)
        counts = torch.bincount(y, minlength=self.num_classes).tolist()
        out, start = {}, 0
        for c, n in enumerate(counts):
            out[c] = order[start : start + n]
            start += n
        return out

    def summary(self) -> str:
        g = ", ".join(f"{k} {len(self.groups[k])}" for k in GROUPS)
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images, "
            f"{self.num_classes} classes ({g}), {self.channels}x{self.image_size}x{self.image_size} uint8"
        )


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch (N, C, H, W) to size x size with antialiasing; a no-op at the same size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torchvision.transforms.v2 import functional as F

    out = []
    for chunk in torch.split(x, 4096):
        out.append(F.resize(chunk, [size, size], antialias=True))
    return torch.cat(out) if out else x.new_zeros((0, x.shape[1], size, size))


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a single-channel batch to ``channels`` channels (grayscale -> RGB)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    raise DataError(f"cannot convert images with {x.shape[1]} channels to {channels}; use 1 or {channels}")
