"""Function-preserving growth of a :class:`~learngene.core.convnet.ConvNet` (Net2WiderNet, Net2DeeperNet).

Widening conv block i from w to w + n units draws, for each new unit, an existing unit to copy. One
:class:`WideningMap` then drives every tensor that must change:

- the unit's own tensors (conv weight rows, conv bias, BatchNorm weight, bias, running mean and var)
  are copied from the source unit;
- the next layer's incoming weights from every copy of a unit (the original included) are divided by
  that unit's number of copies; when block i is the last block, the next layer is the first linear
  layer, whose input has one column group of s*s columns per channel;
- optional symmetry-breaking noise is added to those incoming weights, zero-sum across the copies of a
  unit, so the function stays exact.

The same map widens EWC anchors (like the weights) and Fisher values (see :meth:`WideningMap.fisher`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from learngene.core.convnet import BlockSpec, ConvBlock, ConvNet, scale_width


@dataclass
class WideningMap:
    block: int  # index of the widened block
    block_name: str
    old_width: int
    src: torch.Tensor  # (new_width,) source unit of every unit after widening; src[:old_width] = arange
    counts: torch.Tensor  # (old_width,) copies of each old unit after widening, the original included
    next_name: str  # state-dict prefix of the next layer ("blocks.{i+1}.conv" or "fcs.0")
    next_group: int  # columns per channel in the next layer (1 for a conv, s*s for the first linear)
    noise: torch.Tensor | None = None  # added to the next layer's widened weight (zero-sum per unit)

    @property
    def new_width(self) -> int:
        return len(self.src)

    def own_names(self) -> list[str]:
        p = f"blocks.{self.block}"
        return [f"{p}.conv.weight", f"{p}.conv.bias", f"{p}.bn.weight", f"{p}.bn.bias", f"{p}.bn.running_mean",
                f"{p}.bn.running_var"]  # fmt: skip

    def _columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Source column and divisor for every input column of the next layer after widening."""
        g = self.next_group
        cols = (self.src[:, None] * g + torch.arange(g)[None, :]).reshape(-1)
        div = self.counts[self.src].to(torch.float32).repeat_interleave(g)
        return cols, div

    def transform(self, name: str, tensor: torch.Tensor, kind: str = "param") -> torch.Tensor:
        """Widen one tensor of the state dict. ``kind``: "param" (weights, buffers, EWC anchors) or "fisher"."""
        src = self.src.to(tensor.device)
        if name in self.own_names():
            out = tensor.index_select(0, src)
            if kind == "fisher":  # d loss / d copy = (d loss / d unit) / copies
                out = (
                    out
                    / self.counts.to(tensor.device)[src].to(out.dtype).view(-1, *([1] * (out.ndim - 1))) ** 2
                )
            return out
        if name == f"{self.next_name}.weight":
            cols, div = self._columns()
            out = tensor.index_select(1, cols.to(tensor.device))
            if kind == "fisher":  # the copies' activations equal the unit's, so the gradient is unchanged
                return out
            shape = [1, -1] + [1] * (tensor.ndim - 2)
            out = out / div.to(tensor.device, tensor.dtype).view(shape)
            if self.noise is not None:
                out = out + self.noise.to(tensor.device, tensor.dtype)
            return out
        return tensor

    def fisher(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Widen a diagonal Fisher value so that it equals the Fisher of the widened network at the same point
        (exactly without symmetry-breaking noise; with noise the copies' incoming weights differ slightly)."""
        return self.transform(name, tensor, kind="fisher")


def make_widening_map(
    net: ConvNet, block: int, n_new: int, generator: torch.Generator | None = None, noise: float = 0.0
) -> WideningMap:
    if not 0 <= block < len(net.blocks):
        raise ValueError(f"cannot widen block {block}: the network has blocks 0..{len(net.blocks) - 1}")
    if n_new < 1:
        raise ValueError(f"widening by {n_new} units; it must add at least one")
    old = net.blocks[block].conv.out_channels
    new_src = torch.randint(0, old, (n_new,), generator=generator)
    src = torch.cat([torch.arange(old), new_src])
    counts = torch.bincount(src, minlength=old)
    if block + 1 < len(net.blocks):
        next_name, group = f"blocks.{block + 1}.conv", 1
        next_weight = net.blocks[block + 1].conv.weight
    else:
        next_name = "fcs.0" if len(net.fcs) else "head"
        layer = net.fcs[0] if len(net.fcs) else net.head
        next_weight = layer.weight
        group = layer.in_features // old
    wmap = WideningMap(block, net.blocks[block].name, old, src, counts, next_name, group)
    if noise > 0:
        cols, div = wmap._columns()
        shape = list(next_weight.shape)
        shape[1] = len(cols)
        eps = torch.randn(shape, generator=generator) * noise * float(next_weight.detach().std())
        # zero-sum across the copies of each unit (per output row and kernel position): the copies see
        # identical activations, so only the sum of their incoming weights matters.
        sums = torch.zeros([shape[0], old * group, *shape[2:]]).index_add_(1, cols, eps)
        mean = sums.index_select(1, cols) / div.view([1, -1] + [1] * (len(shape) - 2))
        wmap.noise = eps - mean
    return wmap


@torch.no_grad()
def apply_widening(net: ConvNet, wmap: WideningMap) -> None:
    """Replace the widened block and the next layer with wider modules holding the transformed tensors."""
    state = net.state_dict()
    i = wmap.block
    old_block = net.blocks[i]
    spec = old_block.spec
    new_block = ConvBlock(BlockSpec(spec.name, spec.in_channels, wmap.new_width, spec.pools)).to(
        old_block.conv.weight.device, old_block.conv.weight.dtype
    )
    new_state = {}
    for key in new_block.state_dict():
        full = f"blocks.{i}.{key}"
        new_state[key] = state[full] if key == "bn.num_batches_tracked" else wmap.transform(full, state[full])
    new_block.load_state_dict(new_state)
    new_block.train(old_block.training)
    net.blocks[i] = new_block
    if wmap.next_name.startswith("blocks."):
        nxt = net.blocks[i + 1]
        conv = nn.Conv2d(wmap.new_width, nxt.conv.out_channels, 3, padding=1).to(nxt.conv.weight.device)
        conv.weight.copy_(wmap.transform(f"{wmap.next_name}.weight", nxt.conv.weight))
        conv.bias.copy_(nxt.conv.bias)
        nxt.conv = conv
    else:
        layer = net.fcs[0] if wmap.next_name == "fcs.0" else net.head
        lin = nn.Linear(wmap.new_width * wmap.next_group, layer.out_features).to(layer.weight.device)
        lin.weight.copy_(wmap.transform(f"{wmap.next_name}.weight", layer.weight))
        lin.bias.copy_(layer.bias)
        if wmap.next_name == "fcs.0":
            net.fcs[0] = lin
        else:
            net.head = lin


def widen(
    net: ConvNet, block: int, n_new: int, generator: torch.Generator | None = None, noise: float = 0.0
) -> WideningMap:
    """Widen ``net`` in place by ``n_new`` units at ``block``; returns the map for EWC and logging."""
    wmap = make_widening_map(net, block, n_new, generator, noise)
    apply_widening(net, wmap)
    return wmap


@torch.no_grad()
def deepen(net: ConvNet, after: int, calibration: torch.Tensor | None = None) -> str:
    """Insert an identity-initialised block after block ``after`` (Net2DeeperNet); returns its name.

    The conv is a Dirac (identity) kernel, bias 0. Its BatchNorm is set so that BN(x) = x in eval mode:
    running mean 0, running var 1, weight sqrt(1 + eps), bias 0; the ReLU is the identity on its
    (non-negative) input. With a ``calibration`` batch of network inputs, the BN is instead set from that
    batch's train-mode statistics at the insertion point (weight = sqrt(var + eps), bias = mean, running
    stats = batch stats): still the identity in eval mode, and also in train mode on that batch (and
    approximately on batches with similar statistics).
    The pool of block ``after`` stays with it; the new block has no pool.
    """
    prev = net.blocks[after]
    c = prev.conv.out_channels
    existing = set(net.block_names)
    k = 1
    while f"{prev.name}+{k}" in existing:
        k += 1
    name = f"{prev.name}+{k}"
    block = ConvBlock(BlockSpec(name, c, c, 0)).to(prev.conv.weight.device)
    nn.init.dirac_(block.conv.weight)
    block.conv.bias.zero_()
    eps = block.bn.eps
    if calibration is None:
        block.bn.running_mean.zero_()
        block.bn.running_var.fill_(1.0)
        block.bn.weight.fill_((1.0 + eps) ** 0.5)
        block.bn.bias.zero_()
    else:
        saved = [copy.deepcopy(b.state_dict()) for b in net.blocks[: after + 1]]
        was_training = net.training
        net.train()  # train-mode activations: what the new block's BatchNorm normalises during training
        x = calibration
        for b in net.blocks[: after + 1]:
            x = b(x)
        for b, st in zip(net.blocks[: after + 1], saved):
            b.load_state_dict(st)  # undo the running-statistics update of the calibration pass
        net.train(was_training)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        block.bn.running_mean.copy_(mean)
        block.bn.running_var.copy_(var)
        block.bn.weight.copy_((var + eps).sqrt())
        block.bn.bias.copy_(mean)
    block.train(net.training)
    net.blocks.insert(after + 1, block)
    return name


@torch.no_grad()
def grow_head(net: ConvNet, n_new: int, generator: torch.Generator | None = None) -> None:
    """Append ``n_new`` output units to the head; existing rows (and so old logits) are unchanged."""
    if n_new <= 0:
        return
    old = net.head
    new = nn.Linear(old.in_features, old.out_features + n_new).to(old.weight.device)
    bound = 1.0 / old.in_features**0.5  # nn.Linear's default init range
    new.weight.uniform_(-bound, bound, generator=generator)
    new.bias.uniform_(-bound, bound, generator=generator)
    new.weight[: old.out_features] = old.weight
    new.bias[: old.out_features] = old.bias
    net.head = new


def parse_schedule(schedule, width_mult: float = 1.0) -> list[dict]:
    """Growth schedule entries: ``[conv_index, units]`` (0-based conv index, widened) or
    ``{op: deepen, after: i}``; the t-th entry is applied before task t + 1."""
    out = []
    for entry in schedule or []:
        if isinstance(entry, Mapping):
            e = dict(entry)
            if e.get("op") == "deepen":
                out.append({"op": "deepen", "after": int(e["after"])})
                continue
            out.append(
                {"op": "widen", "block": int(e["block"]), "units": scale_width(int(e["units"]), width_mult)}
            )
        else:
            block, units = entry
            out.append({"op": "widen", "block": int(block), "units": scale_width(int(units), width_mult)})
    return out


PAPER_SCHEDULE = [
    [2, 64], [3, 64], [4, 64], [4, 64], [5, 64], [5, 64], [6, 64], [6, 64],
    [7, 128], [7, 128], [8, 128], [8, 128], [9, 128], [9, 128], [10, 128], [10, 128],
    [11, 128], [11, 128], [12, 128], [12, 128],
]  # fmt: skip
PAPER_WIDTHS = [64, 64, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
