"""Function-preserving growth shared by every backbone: Net2WiderNet unit maps, head growth, schedules.

Widening a layer from w to w + n units draws, for each new unit, an existing unit to copy. One
:class:`WideningMap` then drives every tensor that must change:

- the units' own tensors (conv weight rows, conv bias, BatchNorm weight, bias, running mean and var;
  for a residual block's output, those of every branch that is summed into it) are copied from the
  source unit;
- every consumer's incoming weights from every copy of a unit (the original included) are divided by
  that unit's number of copies; a consumer may read ``group`` columns per unit (the first linear layer
  after a flatten reads s*s columns per channel);
- symmetry-breaking noise is added to those incoming weights, zero-sum across the copies of a unit, so
  the function stays exact while the copies receive different gradients and separate in training.

A backbone's ``widen`` returns a :class:`Widening` (one or more maps applied in order); the same object
widens EWC anchors (like the weights) and Fisher values (see :meth:`WideningMap.transform`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class WideningMap:
    src: torch.Tensor  # (new_width,) source unit of every unit after widening; src[:old_width] = arange
    counts: torch.Tensor  # (old_width,) copies of each old unit after widening, the original included
    own: list[str]  # state-dict keys whose dim 0 is indexed by these units
    consumers: list[tuple[str, int]]  # (weight key, columns per unit) of the layers reading these units
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # per consumer key, zero-sum per unit

    @property
    def old_width(self) -> int:
        return len(self.counts)

    @property
    def new_width(self) -> int:
        return len(self.src)

    def columns(self, group: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source column and divisor for every input column of a consumer after widening."""
        cols = (self.src[:, None] * group + torch.arange(group)[None, :]).reshape(-1)
        div = self.counts[self.src].to(torch.float32).repeat_interleave(group)
        return cols, div

    def transform(self, name: str, tensor: torch.Tensor, quantity: str = "param") -> torch.Tensor:
        """Widen one tensor of the state dict. ``quantity``: "param" (weights, buffers, EWC anchors) or "fisher".

        A Fisher value is widened to the Fisher of the widened network at the same point: a copy's own
        parameters see d loss / d copy = (d loss / d unit) / copies, so F / k^2; the consumers' divided
        weights see unchanged activations, so F is kept (exact without noise)."""
        src = self.src.to(tensor.device)
        if name in self.own:
            out = tensor.index_select(0, src)
            if quantity == "fisher":
                k = self.counts.to(tensor.device)[src].to(out.dtype)
                out = out / k.view(-1, *([1] * (out.ndim - 1))) ** 2
            return out
        for key, group in self.consumers:
            if name == key:
                cols, div = self.columns(group)
                out = tensor.index_select(1, cols.to(tensor.device))
                if quantity == "fisher":
                    return out
                out = out / div.to(tensor.device, tensor.dtype).view([1, -1] + [1] * (tensor.ndim - 2))
                if key in self.noise:
                    out = out + self.noise[key].to(tensor.device, tensor.dtype)
                return out
        return tensor


@dataclass
class Widening:
    """One growth step: the maps a backbone applied, in order, and what they describe."""

    block: int
    block_name: str
    old_width: int
    new_width: int
    maps: list[WideningMap]

    def transform(self, name: str, tensor: torch.Tensor, quantity: str = "param") -> torch.Tensor:
        for m in self.maps:
            tensor = m.transform(name, tensor, quantity)
        return tensor

    def fisher(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return self.transform(name, tensor, quantity="fisher")

    @property
    def noise(self) -> list[torch.Tensor]:
        return [n for m in self.maps for n in m.noise.values()]

    def describe(self) -> dict:
        return {"op": "widen", "block": self.block_name, "from": self.old_width, "to": self.new_width}


def draw_map(
    old: int,
    n_new: int,
    own: Sequence[str],
    consumers: Sequence[tuple[str, int, torch.Tensor]],
    generator: torch.Generator | None = None,
    noise: float = 0.0,
) -> WideningMap:
    """Draw source units for ``n_new`` new units and (``noise`` > 0) zero-sum noise for each consumer.

    ``consumers``: (weight key, columns per unit, current weight). Noise has standard deviation
    ``noise`` x the consumer weight's own standard deviation before it is made zero-sum per unit."""
    if n_new < 1:
        raise ValueError(f"widening by {n_new} units; it must add at least one")
    src = torch.cat([torch.arange(old), torch.randint(0, old, (n_new,), generator=generator)])
    wmap = WideningMap(src, torch.bincount(src, minlength=old), list(own), [(k, g) for k, g, _ in consumers])
    if noise > 0:
        for key, group, weight in consumers:
            cols, div = wmap.columns(group)
            shape = list(weight.shape)
            shape[1] = len(cols)
            eps = torch.randn(shape, generator=generator) * noise * float(weight.detach().float().std())
            # zero-sum across the copies of each unit (per output row and kernel position): the copies see
            # identical activations, so only the sum of their incoming weights matters.
            sums = torch.zeros([shape[0], old * group, *shape[2:]]).index_add_(1, cols, eps)
            mean = sums.index_select(1, cols) / div.view([1, -1] + [1] * (len(shape) - 2))
            wmap.noise[key] = eps - mean
    return wmap


@torch.no_grad()
def widen_module(module: nn.Module, wmap: WideningMap, prefix: str) -> nn.Module:
    """A copy of ``module`` (a Conv2d, BatchNorm2d or Linear) with every tensor ``wmap`` touches widened.

    ``prefix``: the module's state-dict prefix in the whole network (e.g. "blocks.3.conv")."""
    state = {f"{prefix}.{k}": v for k, v in module.state_dict().items()}
    new_state = {k[len(prefix) + 1 :]: wmap.transform(k, v) for k, v in state.items()}
    if isinstance(module, nn.Conv2d):
        w = new_state["weight"]
        new = nn.Conv2d(w.shape[1], w.shape[0], module.kernel_size, module.stride, module.padding,
                        bias=module.bias is not None)  # fmt: skip
    elif isinstance(module, nn.BatchNorm2d):
        new = nn.BatchNorm2d(new_state["weight"].shape[0], module.eps, module.momentum)
    elif isinstance(module, nn.Linear):
        w = new_state["weight"]
        new = nn.Linear(w.shape[1], w.shape[0], bias=module.bias is not None)
    else:
        raise TypeError(f"cannot widen a {type(module).__name__}")
    new = new.to(next(iter(state.values())).device)
    new.load_state_dict(new_state)
    new.train(module.training)
    return new


def widen(
    net, block: int, n_new: int, generator: torch.Generator | None = None, noise: float = 0.0
) -> Widening:
    """Widen block ``block`` of a backbone by ``n_new`` units, in place (see :meth:`BlockNet.widen`)."""
    return net.widen(block, n_new, generator, noise)


@torch.no_grad()
def grow_head(net: nn.Module, n_new: int, generator: torch.Generator | None = None) -> None:
    """Append ``n_new`` output units to ``net.head``; existing rows (and so old logits) are unchanged."""
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


def scale_width(w: int, mult: float) -> int:
    return max(1, int(round(w * mult)))


def parse_schedule(schedule, width_mult: float = 1.0) -> list[dict]:
    """Growth schedule entries: ``[block_index, units]`` (0-based block index, widened) or
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


def _relative_distances(weight: torch.Tensor) -> torch.Tensor:
    """||w_i - w_j|| / max(||w_i||, ||w_j||) for every pair of units (rows of dim 0)."""
    w = weight.detach().float().reshape(weight.shape[0], -1)
    norms = w.norm(dim=1)
    dist = torch.cdist(w, w, compute_mode="donot_use_mm_for_euclid_dist")  # exact 0 for exact copies
    return dist / torch.maximum(norms[:, None], norms[None, :]).clamp_min(1e-12)


def distinct_units(weight: torch.Tensor, rtol: float = 1e-6) -> int:
    """How many of a layer's units (rows of dim 0) are distinct: rows within ``rtol`` (relative to the
    larger row norm) of an earlier row count once. Tied Net2Net copies are exactly equal."""
    close = (_relative_distances(weight) <= rtol).triu(1)
    return int(weight.shape[0] - close.any(0).sum())


def nearest_unit_distance(weight: torch.Tensor) -> float:
    """The smallest relative distance between two of a layer's units (0 for a tied copy): how far the
    closest pair -- typically a Net2Net copy and its source -- has separated."""
    if weight.shape[0] < 2:
        return float("inf")
    d = _relative_distances(weight)
    d.fill_diagonal_(float("inf"))
    return float(d.min())
