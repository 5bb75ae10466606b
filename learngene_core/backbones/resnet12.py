"""ResNet-12, the standard few-shot backbone (Oreshkin et al. 2018; Lee et al. 2019), as a growable backbone.

Four residual blocks "res1".."res4"; each is three conv 3x3 (no bias) -> BatchNorm layers with
LeakyReLU(0.1) between them, a 1x1 conv -> BatchNorm shortcut added to the third, LeakyReLU(0.1), and a
2x2 max-pool. Standard widths 64 160 320 640; the features are the globally average-pooled last block
(640-d), followed by a linear head (no hidden layers by default).

Widening a block by n units widens all three of its widths (conv1 and conv2 outputs, and the block's
output: conv3 and the shortcut, which are summed) with one Net2Wider map each; the consumers of the
output are the next block's conv1 and shortcut, or the classifier. Every operation between a unit and
its consumers is per channel (BatchNorm, LeakyReLU, the sum, max-pool, average pool), so copies stay
exact copies and the function is preserved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.backbones.base import (
    Block,
    BlockNet,
    BlockSpec,
    batch_norm,
    register_block,
    sequential_spec,
)
from learngene_core.growth import draw_map, scale_width

STANDARD_WIDTHS = [64, 160, 320, 640]
SLOPE = 0.1


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)


@register_block("resnet12")
class ResidualBlock(Block):
    output_keys = (
        "conv3.weight", "bn3.weight", "bn3.bias", "bn3.running_mean", "bn3.running_var",
        "shortcut.weight", "bn_shortcut.weight", "bn_shortcut.bias", "bn_shortcut.running_mean",
        "bn_shortcut.running_var",
    )  # fmt: skip
    input_keys = ("conv1.weight", "shortcut.weight")
    criterion_keys = ("conv1.weight", "conv2.weight", "conv3.weight", "shortcut.weight")

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        cin, c = spec.in_channels, spec.out_channels
        self.conv1, self.bn1 = _conv(cin, c, 3), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = _conv(c, c, 3), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = _conv(c, c, 3), nn.BatchNorm2d(c)
        self.shortcut, self.bn_shortcut = _conv(cin, c, 1), nn.BatchNorm2d(c)

    @property
    def in_channels(self) -> int:
        return self.conv1.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.frozen
        out = F.leaky_relu(batch_norm(self.bn1, self.conv1(x), f), SLOPE)
        out = F.leaky_relu(batch_norm(self.bn2, self.conv2(out), f), SLOPE)
        out = batch_norm(self.bn3, self.conv3(out), f) + batch_norm(self.bn_shortcut, self.shortcut(x), f)
        return self.pool(F.leaky_relu(out, SLOPE))

    def internal_widening(self, prefix: str, n_new: int, generator, noise: float) -> list:
        """conv1's outputs (read by conv2) and conv2's outputs (read by conv3) widen with the block."""
        maps = []
        for layer, bn, reader in (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")):
            own = [f"{prefix}.{layer}.weight"] + [
                f"{prefix}.{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
            ]
            weight = self.get_parameter(f"{reader}.weight")
            maps.append(
                draw_map(
                    self.out_channels,
                    n_new,
                    own,
                    [(f"{prefix}.{reader}.weight", 1, weight)],
                    generator,
                    noise,
                )
            )
        return maps


def resnet12(
    input_size: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] = STANDARD_WIDTHS,
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
    width_mult: float = 1.0,
) -> BlockNet:
    """The collective model with ``model=resnet12``: 4 residual blocks, global average pool, linear head."""
    spec = sequential_spec(
        "resnet12",
        [scale_width(w, width_mult) for w in widths],
        [1] * len(widths),
        input_size,
        in_channels,
        [scale_width(h, width_mult) for h in hidden],
        num_classes,
        dropout,
        pool_to=1,
        pool="avg",
        prefix="res",
    )
    spec.spatial_size()  # raises if the input is too small for the pools
    return BlockNet(spec)
