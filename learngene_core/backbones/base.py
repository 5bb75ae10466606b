"""What a growable backbone is: named blocks, a spec that round-trips to a dict, a classifier, widening.

Every network of the suite -- the collective model, the individual models, the meta-learners'
networks -- is a :class:`BlockNet`: a sequence of named blocks of one *kind* (``vgg``: conv-BN-ReLU;
``resnet12``: a residual block), an optional adaptive pool, and an MLP classifier (Linear -> ReLU
(-> Dropout) per hidden layer, then a linear ``head``). A block kind is one class registered with
:func:`register_block`; it declares which of its tensors hold its output units, which read its input,
and which weights the criterion watches. From that, :meth:`BlockNet.widen` widens any block
function-preservingly, :func:`extract_window` cuts out consecutive blocks, and the individual network
is assembled the same way for every kind.

Block names ("conv7", "res2") survive widening, so statistics and artifacts refer to blocks by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.errors import CheckpointError
from learngene_core.growth import Widening, distinct_units, draw_map, nearest_unit_distance, widen_module

BLOCK_KINDS: dict[str, type[Block]] = {}


def register_block(kind: str):
    """Class decorator: make a block class available as backbone kind ``kind``."""

    def deco(cls: type[Block]) -> type[Block]:
        cls.kind = kind
        BLOCK_KINDS[kind] = cls
        return cls

    return deco


def block_class(kind: str) -> type[Block]:
    if kind not in BLOCK_KINDS:
        raise ValueError(f"backbone kind {kind!r} is not registered; registered kinds: {sorted(BLOCK_KINDS)}")
    return BLOCK_KINDS[kind]


@dataclass
class BlockSpec:
    name: str
    in_channels: int
    out_channels: int
    pools: int = 0  # number of 2x2 max-pools after the block


@dataclass
class NetSpec:
    """Everything needed to rebuild a :class:`BlockNet` with the same parameter shapes."""

    blocks: list[BlockSpec]
    input_size: int
    hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    num_classes: int = 64
    dropout: float = 0.0
    pool_to: int | None = None  # adaptive pool output size after the blocks (None: plain flatten)
    kind: str = "vgg"
    pool: str = "max"  # the adaptive pool: max | avg

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetSpec:
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
            pools = sum(b.pools for b in self.blocks)
            raise ValueError(
                f"input size {self.input_size} px is too small for the network's {pools} 2x2 pools; "
                f"use images of at least {2**pools} px"
            )
        return self.pool_to if self.pool_to else s

    def feature_dim(self) -> int:
        return self.blocks[-1].out_channels * self.spatial_size() ** 2


class Block(nn.Module):
    """One named block. Subclasses define the layers and the three key lists below."""

    kind: ClassVar[str] = ""
    output_keys: ClassVar[tuple[str, ...]] = ()  # tensors whose dim 0 is the block's output units
    input_keys: ClassVar[tuple[str, ...]] = ()  # weights whose dim 1 reads the block's input channels
    criterion_keys: ClassVar[tuple[str, ...]] = ()  # weights whose gradients the criterion watches
    # what this kind supports besides widening: identity-initialised insertion (model.growth deepen entries)
    can_deepen: ClassVar[bool] = False

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.name = spec.name
        self.pools = spec.pools
        self.frozen = False  # frozen: BatchNorm uses (and keeps) its running statistics in every mode

    @property
    def in_channels(self) -> int:
        raise NotImplementedError

    @property
    def out_channels(self) -> int:
        raise NotImplementedError

    @property
    def spec(self) -> BlockSpec:
        return BlockSpec(self.name, self.in_channels, self.out_channels, self.pools)

    def internal_widening(self, prefix: str, n_new: int, generator, noise: float) -> list:
        """Maps for widths inside the block that follow its output width (none for a plain conv block)."""
        return []

    def criterion_weights(self) -> list[torch.Tensor]:
        return [self.get_parameter(k) for k in self.criterion_keys]

    def unit_weights(self) -> torch.Tensor:
        """(out_channels, -1): each output unit's incoming weights (every weight producing the unit)."""
        ws = [self.get_parameter(k).detach() for k in self.output_keys if k.endswith("weight")]
        return torch.cat([w.reshape(w.shape[0], -1) for w in ws if w.ndim > 1], dim=1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.pools):
            x = F.max_pool2d(x, 2)
        return x


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, frozen: bool) -> torch.Tensor:
    """BatchNorm, or (``frozen``) BatchNorm with its running statistics in every mode."""
    if frozen:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


class BlockNet(nn.Module):
    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        cls = block_class(spec.kind)
        self.kind = spec.kind
        self.input_size = spec.input_size
        self.dropout = spec.dropout
        self.pool_to = spec.pool_to
        self.pool_mode = spec.pool
        self.blocks = nn.ModuleList(cls(b) for b in spec.blocks)
        dims = [spec.feature_dim(), *spec.hidden]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], spec.num_classes)
        self.dropout_generator: torch.Generator | None = None  # dropout masks from this stream if set

    # -- description -------------------------------------------------------------------------------
    @property
    def spec(self) -> NetSpec:
        return NetSpec(
            blocks=[b.spec for b in self.blocks],
            input_size=self.input_size,
            hidden=[fc.out_features for fc in self.fcs],
            num_classes=self.head.out_features,
            dropout=self.dropout,
            pool_to=self.pool_to,
            kind=self.kind,
            pool=self.pool_mode,
        )

    @property
    def widths(self) -> list[int]:
        return [b.out_channels for b in self.blocks]

    @property
    def block_names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels

    def block_index(self, name: str) -> int:
        try:
            return self.block_names.index(name)
        except ValueError:
            raise KeyError(f"no block named {name!r}; blocks are {self.block_names}") from None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def distinct_filters(self) -> list[int]:
        """Per block, how many of its output units have distinct incoming weights (Net2Net copies that
        never separated count once)."""
        return [distinct_units(b.unit_weights()) for b in self.blocks]

    def nearest_filter_distances(self) -> list[float]:
        """Per block, the smallest relative distance between two of its output units."""
        return [round(nearest_unit_distance(b.unit_weights()), 6) for b in self.blocks]

    # -- forward -----------------------------------------------------------------------------------
    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.pool_to:
            pool = F.adaptive_avg_pool2d if self.pool_mode == "avg" else F.adaptive_max_pool2d
            x = pool(x, self.pool_to)
        return torch.flatten(x, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the last hidden layer's activations; the pooled blocks without one)."""
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

    # -- growth ------------------------------------------------------------------------------------
    def _consumer(self, i: int) -> tuple[str, nn.Linear | None, int]:
        """Where block i's output goes: the next block's input weights, else the first linear layer."""
        if i + 1 < len(self.blocks):
            return f"blocks.{i + 1}", None, 1
        layer = self.fcs[0] if len(self.fcs) else self.head
        return ("fcs.0" if len(self.fcs) else "head"), layer, layer.in_features // self.blocks[i].out_channels

    @torch.no_grad()
    def widen(
        self, block: int, n_new: int, generator: torch.Generator | None = None, noise: float = 0.0
    ) -> Widening:
        """Widen block ``block`` by ``n_new`` output units, function-preservingly, in place."""
        if not 0 <= block < len(self.blocks):
            raise ValueError(f"cannot widen block {block}: the network has blocks 0..{len(self.blocks) - 1}")
        blk = self.blocks[block]
        prefix = f"blocks.{block}"
        maps = blk.internal_widening(prefix, n_new, generator, noise)
        nxt_prefix, layer, group = self._consumer(block)
        state = self.state_dict()
        if layer is None:
            keys = [f"{nxt_prefix}.{k}" for k in type(self.blocks[block + 1]).input_keys]
        else:
            keys = [f"{nxt_prefix}.weight"]
        consumers = [(k, group, state[k]) for k in keys]
        own = [f"{prefix}.{k}" for k in type(blk).output_keys]
        maps.append(draw_map(blk.out_channels, n_new, own, consumers, generator, noise))
        widening = Widening(block, blk.name, blk.out_channels, blk.out_channels + n_new, maps)
        self._rebuild_block(block, widening)
        if layer is None:
            self._rebuild_block(block + 1, widening)
        else:
            new = layer
            for m in widening.maps:
                new = widen_module(new, m, nxt_prefix)
            if nxt_prefix == "fcs.0":
                self.fcs[0] = new
            else:
                self.head = new
        return widening

    def _rebuild_block(self, i: int, widening: Widening) -> None:
        old = self.blocks[i]
        prefix = f"blocks.{i}"
        state = {k: widening.transform(f"{prefix}.{k}", v) for k, v in old.state_dict().items()}
        spec = old.spec
        if i == widening.block:
            spec.out_channels = widening.new_width
        else:
            spec.in_channels = widening.new_width
        new = type(old)(spec).to(old_device(old))
        new.load_state_dict(state)
        new.train(old.training)
        new.frozen = old.frozen
        self.blocks[i] = new


def old_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def build_net(spec: NetSpec | dict) -> BlockNet:
    """A network from its spec (or the spec's dict form, as stored in checkpoints and artifacts)."""
    return BlockNet(NetSpec.from_dict(spec) if isinstance(spec, dict) else spec)


def make_block(kind: str, spec: BlockSpec) -> Block:
    return block_class(kind)(spec)


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


def sequential_spec(
    kind: str,
    widths: Sequence[int],
    pools: Sequence[int],
    input_size: int,
    in_channels: int,
    hidden: Sequence[int],
    num_classes: int,
    dropout: float,
    pool_to: int | None,
    pool: str = "max",
    prefix: str = "conv",
) -> NetSpec:
    """A spec of ``len(widths)`` blocks named prefix1..prefixN, block i followed by ``pools[i]`` pools."""
    blocks, c = [], in_channels
    for i, (w, p) in enumerate(zip(widths, pools)):
        blocks.append(BlockSpec(f"{prefix}{i + 1}", c, int(w), int(p)))
        c = int(w)
    return NetSpec(blocks, input_size, list(hidden), num_classes, dropout, pool_to, kind, pool)
