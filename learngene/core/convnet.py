"""A VGG-style conv net that both the collective model and the individual models are instances of.

Blocks are conv 3x3 (pad 1) -> BatchNorm -> ReLU, followed by ``pools`` 2x2 max-pools (0 or 1 in the
paper's networks). After the blocks an optional adaptive max-pool (``pool_to``) fixes the spatial size,
then the features are flattened (channel-major, as ``torch.flatten`` does) into an MLP classifier:
Linear -> ReLU (-> Dropout) per hidden layer, then a linear head.

Every block has a ``name`` ("conv1".."conv13" in the paper's network) that survives widening, so
statistics and artifacts refer to layers by name rather than by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from learngene.errors import CheckpointError


@dataclass
class BlockSpec:
    name: str
    in_channels: int
    out_channels: int
    pools: int = 0  # number of 2x2 max-pools after the block


@dataclass
class ConvNetSpec:
    """Everything needed to rebuild a :class:`ConvNet` with the same parameter shapes."""

    blocks: list[BlockSpec]
    input_size: int
    hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    num_classes: int = 64
    dropout: float = 0.0
    pool_to: int | None = None  # adaptive max-pool output size after the blocks (None: plain flatten)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConvNetSpec:
        d = dict(d)
        d["blocks"] = [BlockSpec(**b) for b in d["blocks"]]
        return cls(**d)

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels if self.blocks else 3

    def spatial_size(self) -> int:
        s = self.input_size
        for b in self.blocks:
            for _ in range(b.pools):
                s //= 2
        if s < 1:
            raise ValueError(
                f"input size {self.input_size} is too small for {sum(b.pools for b in self.blocks)} pools"
            )
        return self.pool_to if self.pool_to else s

    def feature_dim(self) -> int:
        return self.blocks[-1].out_channels * self.spatial_size() ** 2


class ConvBlock(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.name = spec.name
        self.pools = spec.pools
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.frozen = False  # frozen: BatchNorm uses (and keeps) its running statistics in every mode

    @property
    def spec(self) -> BlockSpec:
        return BlockSpec(self.name, self.conv.in_channels, self.conv.out_channels, self.pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.frozen:
            bn = self.bn
            x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            x = self.bn(x)
        x = F.relu(x)
        for _ in range(self.pools):
            x = F.max_pool2d(x, 2)
        return x


class ConvNet(nn.Module):
    def __init__(self, spec: ConvNetSpec) -> None:
        super().__init__()
        self.input_size = spec.input_size
        self.dropout = spec.dropout
        self.pool_to = spec.pool_to
        self.blocks = nn.ModuleList(ConvBlock(b) for b in spec.blocks)
        dims = [spec.feature_dim(), *spec.hidden]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], spec.num_classes)
        self.dropout_generator: torch.Generator | None = None  # dropout masks from this stream if set

    # -- description -------------------------------------------------------------------------------
    @property
    def spec(self) -> ConvNetSpec:
        return ConvNetSpec(
            blocks=[b.spec for b in self.blocks],
            input_size=self.input_size,
            hidden=[fc.out_features for fc in self.fcs],
            num_classes=self.head.out_features,
            dropout=self.dropout,
            pool_to=self.pool_to,
        )

    @property
    def widths(self) -> list[int]:
        return [b.conv.out_channels for b in self.blocks]

    @property
    def block_names(self) -> list[str]:
        return [b.name for b in self.blocks]

    def block_index(self, name: str) -> int:
        try:
            return self.block_names.index(name)
        except ValueError:
            raise KeyError(f"no block named {name!r}; blocks are {self.block_names}") from None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- forward -----------------------------------------------------------------------------------
    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.pool_to:
            x = F.adaptive_max_pool2d(x, self.pool_to)
        return torch.flatten(x, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the last hidden layer's activations)."""
        x = self.conv_features(x)
        for fc in self.fcs:
            x = F.relu(fc(x))
            if self.dropout and self.training and self.dropout_generator is not None:
                keep = torch.rand(x.shape, device=x.device, generator=self.dropout_generator) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
            elif self.dropout:
                x = F.dropout(x, self.dropout, self.training)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def vgg_spec(
    widths: Sequence[int],
    pool_after: Sequence[int] = (2, 4, 7, 10, 13),
    input_size: int = 32,
    in_channels: int = 3,
    hidden: Sequence[int] = (1024, 1024),
    num_classes: int = 64,
    dropout: float = 0.5,
) -> ConvNetSpec:
    """The collective model's network: len(widths) blocks, max-pool after the 1-based ``pool_after`` blocks."""
    blocks, c = [], in_channels
    for i, w in enumerate(widths):
        blocks.append(BlockSpec(f"conv{i + 1}", c, int(w), 1 if (i + 1) in set(pool_after) else 0))
        c = int(w)
    return ConvNetSpec(blocks, input_size, list(hidden), num_classes, dropout, pool_to=None)


def scale_width(w: int, mult: float) -> int:
    return max(1, int(round(w * mult)))


def load_state_checked(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``net``; a missing, unexpected or differently shaped tensor raises a clear error."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise CheckpointError(
            f"{source} does not fit this network: missing tensors {missing[:4]}, unexpected tensors {extra[:4]}"
        )
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(state[k].shape)} but the network expects "
                f"{tuple(v.shape)}; the checkpoint comes from another architecture or growth state"
            )
    net.load_state_dict(state)
