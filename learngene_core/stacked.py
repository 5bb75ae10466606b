"""T networks of one architecture trained at once, as one module (batched individual training).

Target tasks are tiny (50 to 100 images), so per-step overhead dominates when they run one after
another. A stack trains T :class:`~learngene_core.backbones.base.BlockNet` s of identical shape with one
optimizer, one loader and one Trainer; task t's output depends only on task t's parameters and inputs.
Two implementations (:func:`stack_nets`, ``mode``):

- ``loop`` (:class:`LoopedNets`, default on CPU): the T networks themselves, run one after another
  on their slice of the batch. Every tensor and kernel is the one a one-task run uses, so training T
  tasks stacked is *bitwise* the training of each alone; the saving is the per-task overhead (Trainer,
  training loop, data, optimizer calls).
- ``grouped`` (:class:`GroupedNets`, default on GPU): parameters stacked into single tensors (task t
  owns conv channels [t*C, (t+1)*C) and row t of every linear layer), one grouped convolution
  (``groups=T``), one BatchNorm over all channels (per channel, so per task) and one batched matmul per
  layer: far fewer kernel launches. Equal to one-by-one training up to floating-point rounding; with
  real images, exact ties inside max-pool windows can turn a 1-ulp difference into a different gradient
  route, so long runs drift apart like two runs with different cuDNN algorithms.

Dropout masks come from per-task generators. Inputs are (B, T, C, H, W), outputs (B, T, classes);
``to_nets`` splits the stack back into plain nets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learngene_core.backbones.base import BlockNet, NetSpec, block_class
from learngene_core.backbones.vgg import ConvBlock

MODES = ("loop", "grouped")
# per-block tensors concatenated along the channel axis when T networks are stacked (every block tensor
# but the BatchNorm step counter, which is one scalar shared by the stack)
STACKED_BLOCK_TENSORS = ConvBlock.output_keys


def _common_spec(nets: Sequence[BlockNet]):
    """The one architecture of ``nets``; stacking networks of different shapes is an error."""
    for n in nets[1:]:
        if n.spec != nets[0].spec:
            raise ValueError("all stacked networks must share one architecture")
    return nets[0].spec


def _tensor(block: nn.Module, attr: str) -> torch.Tensor:
    mod, name = attr.split(".")
    return getattr(getattr(block, mod), name)


class StackedBlock(nn.Module):
    def __init__(self, tasks: int, in_channels: int, out_channels: int, pools: int) -> None:
        super().__init__()
        self.tasks, self.pools = tasks, pools
        self.conv = nn.Conv2d(tasks * in_channels, tasks * out_channels, 3, padding=1, groups=tasks)
        self.bn = nn.BatchNorm2d(tasks * out_channels)
        self.frozen = False

    def _norm(self, x: torch.Tensor, sl: slice) -> torch.Tensor:
        bn = self.bn
        # a frozen block keeps its BatchNorm statistics, whatever mode the module is in
        training = bn.training and not self.frozen
        return F.batch_norm(x, bn.running_mean[sl], bn.running_var[sl], bn.weight[sl], bn.bias[sl], training,
                            bn.momentum if training else 0.0, bn.eps)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._norm(self.conv(x), slice(None))
        if self.bn.training and not self.frozen:
            self.bn.num_batches_tracked.add_(1)
        x = F.relu(x)
        for _ in range(self.pools):
            x = F.max_pool2d(x, 2)
        return x


class StackedLinear(nn.Module):
    def __init__(self, tasks: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(tasks, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(tasks, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, in) -> (B, T, out)
        return torch.einsum("bti,toi->bto", x, self.weight) + self.bias


class GroupedNets(nn.Module):
    """The ``grouped`` stack: one set of stacked tensors and one kernel per layer for all T tasks."""

    mode = "grouped"

    def __init__(self, spec: NetSpec, tasks: int) -> None:
        super().__init__()
        self.spec, self.tasks = spec, tasks
        self.blocks = nn.ModuleList(
            StackedBlock(tasks, b.in_channels, b.out_channels, b.pools) for b in spec.blocks
        )
        dims = [spec.feature_dim(), *spec.hidden]
        self.fcs = nn.ModuleList(StackedLinear(tasks, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = StackedLinear(tasks, dims[-1], spec.num_classes)
        self.generators: list[torch.Generator] | None = None  # per-task dropout streams

    # -- conversion ---------------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_nets(cls, nets: Sequence[BlockNet]) -> GroupedNets:
        spec = _common_spec(nets)
        if not block_class(spec.kind).groupable:
            raise ValueError(
                f"grouped stacking is written for conv-BN-ReLU blocks, not the {spec.kind!r} backbone; "
                f"use stacking 'loop'"
            )
        stacked = cls(spec, len(nets)).to(next(nets[0].parameters()).device)
        for i, sb in enumerate(stacked.blocks):
            for attr in STACKED_BLOCK_TENSORS:
                _tensor(sb, attr).copy_(torch.cat([_tensor(n.blocks[i], attr) for n in nets]))
            sb.bn.num_batches_tracked.copy_(nets[0].blocks[i].bn.num_batches_tracked)
        for j, sl in enumerate([*stacked.fcs, stacked.head]):
            layers = [n.fcs[j] if j < len(n.fcs) else n.head for n in nets]
            sl.weight.copy_(torch.stack([layer.weight for layer in layers]))
            sl.bias.copy_(torch.stack([layer.bias for layer in layers]))
        return stacked

    @torch.no_grad()
    def to_nets(self) -> list[BlockNet]:
        nets = [BlockNet(self.spec).to(self.head.weight.device) for _ in range(self.tasks)]
        for i, sb in enumerate(self.blocks):
            for attr in STACKED_BLOCK_TENSORS:
                for t, part in enumerate(_tensor(sb, attr).chunk(self.tasks)):
                    _tensor(nets[t].blocks[i], attr).copy_(part)
            for n in nets:
                n.blocks[i].bn.num_batches_tracked.copy_(sb.bn.num_batches_tracked)
        for j, sl in enumerate([*self.fcs, self.head]):
            for t, n in enumerate(nets):
                layer = n.fcs[j] if j < len(n.fcs) else n.head
                layer.weight.copy_(sl.weight[t])
                layer.bias.copy_(sl.bias[t])
        return nets

    # -- options ------------------------------------------------------------------------------------
    def block_parameters(self, i: int) -> list[nn.Parameter]:
        return list(self.blocks[i].parameters())

    def set_dropout_generators(self, generators: list[torch.Generator]) -> None:
        self.generators = generators

    def freeze_blocks(self, indices: Sequence[int]) -> None:
        """Freeze blocks: parameters get no gradient and their BatchNorm keeps its running statistics."""
        for i in indices:
            blk = self.blocks[i]
            blk.frozen = True
            for p in blk.parameters():
                p.requires_grad_(False)

    # -- forward ------------------------------------------------------------------------------------
    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        p = self.spec.dropout
        if not p or not self.training:
            return x
        b, t, f = x.shape
        if self.generators is None:
            mask = torch.rand(b, t, f, device=x.device) >= p
        else:
            mask = torch.stack(
                [torch.rand(b, f, device=x.device, generator=g) >= p for g in self.generators], 1
            )
        return x * mask / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        x = x.reshape(b, t * x.shape[2], *x.shape[3:])
        for blk in self.blocks:
            x = blk(x)
        if self.spec.pool_to:
            x = F.adaptive_max_pool2d(x, self.spec.pool_to)
        x = x.reshape(b, t, -1)
        for fc in self.fcs:
            x = self._dropout(F.relu(fc(x)))
        return self.head(x)


class LoopedNets(nn.Module):
    """The ``loop`` stack: the T plain networks, each run on its own slice of the batch."""

    mode = "loop"

    def __init__(self, nets: Sequence[BlockNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.spec, self.tasks = nets[0].spec, len(nets)

    @classmethod
    def from_nets(cls, nets: Sequence[BlockNet]) -> LoopedNets:
        _common_spec(nets)
        return cls([copy.deepcopy(n) for n in nets])

    def to_nets(self) -> list[BlockNet]:
        nets = [copy.deepcopy(n) for n in self.nets]
        for n in nets:
            n.dropout_generator = None
            for b in n.blocks:
                b.frozen = False
        return nets

    def block_parameters(self, i: int) -> list[nn.Parameter]:
        return [p for n in self.nets for p in n.blocks[i].parameters()]

    def set_dropout_generators(self, generators: list[torch.Generator]) -> None:
        for n, g in zip(self.nets, generators):
            n.dropout_generator = g

    def freeze_blocks(self, indices: Sequence[int]) -> None:
        for n in self.nets:
            for i in indices:
                n.blocks[i].frozen = True
                for p in n.blocks[i].parameters():
                    p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x[:, t]) for t, net in enumerate(self.nets)], 1)


def stack_nets(nets: Sequence[BlockNet], mode: str = "loop") -> GroupedNets | LoopedNets:
    """Stack networks of one architecture for batched training (``mode``: loop | grouped)."""
    if mode == "loop":
        return LoopedNets.from_nets(nets)
    if mode == "grouped":
        return GroupedNets.from_nets(nets)
    raise ValueError(f"stacking mode {mode!r}; valid: {list(MODES)}")
