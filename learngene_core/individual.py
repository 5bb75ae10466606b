"""The individual (offspring) network: random lower layers, the inherited learngene blocks, a new head.

Paper configuration (inheriting conv11-13, 512 -> 512): lower stack conv 3->64, pool, 64->128, pool,
128->256, pool, 256->512; the three inherited blocks; a max-pool to 2x2; Linear(512*2*2, 1024)-ReLU-
Linear(1024, 1024)-ReLU-Linear(1024, ways). 11.79 M parameters, 7.08 M of them inherited.

The lower stack is built from the learngene's input width, with blocks of the learngene's own kind
(conv blocks for VGG, residual blocks for ResNet-12): widths double from ``base_width`` until they
reach it (the last lower block has exactly that width). ``lower_pools``:

- ``paper``: a 2x2 pool after every lower block but the last (the paper's recipe; at 32 px the
  inherited blocks then run at 4x4, where the collective model ran them at 2x2);
- ``match``: as many pools as the collective network applied before the window, so the inherited
  blocks see the resolution they were trained at (extra pools go after the last lower block).

Inside the window the collective network's pools are kept, except after the last inherited block,
where an adaptive max-pool to ``pool_to`` x ``pool_to`` feeds the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learngene_core.artifact import Learngene
from learngene_core.backbones.base import BlockNet, BlockSpec, NetSpec

LOWER_POOLS = ("paper", "match")


def lower_widths(in_width: int, base_width: int) -> list[int]:
    widths, w = [], base_width
    while w < in_width:
        widths.append(w)
        w *= 2
    return [*widths, in_width]


def individual_spec(
    learngene: Learngene,
    ways: int,
    hidden: Sequence[int] = (1024, 1024),
    base_width: int = 64,
    lower_pools: str = "paper",
    pool_to: int = 2,
    input_size: int | None = None,
) -> tuple[NetSpec, int]:
    """The individual network's spec and the number of lower (random) blocks before the inherited ones."""
    if lower_pools not in LOWER_POOLS:
        raise ValueError(f"lower_pools={lower_pools!r}; valid: {list(LOWER_POOLS)}")
    blocks: list[BlockSpec] = []
    if learngene.window_start > 0:
        widths = lower_widths(learngene.in_channels, base_width)
        if lower_pools == "paper":
            pools = [1] * (len(widths) - 1) + [0]
        else:
            pools = [0] * len(widths)
            for j in range(learngene.pools_before):
                pools[min(j, len(widths) - 1)] += 1
        c = learngene.image_channels
        for j, (w, p) in enumerate(zip(widths, pools)):
            blocks.append(BlockSpec(f"lower{j + 1}", c, w, p))
            c = w
    n_lower = len(blocks)
    for j, b in enumerate(learngene.blocks):
        last = j == len(learngene.blocks) - 1
        blocks.append(BlockSpec(b.name, b.in_channels, b.out_channels, 0 if last else b.pools))
    spec = NetSpec(
        blocks,
        input_size or learngene.input_size,
        list(hidden),
        ways,
        dropout=0.0,
        pool_to=pool_to,
        kind=learngene.kind,
    )
    spec.spatial_size()  # raises if the input is too small for the pools
    return spec, n_lower


@torch.no_grad()
def build_individual(
    learngene: Learngene,
    spec: NetSpec,
    n_lower: int,
    seed: int,
    inherit: bool = True,
    device: str | torch.device = "cpu",
) -> BlockNet:
    """A fresh individual network: seeded random init, then (``inherit``) the learngene's tensors copied in."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = BlockNet(spec)
    if inherit:
        for j, st in enumerate(learngene.state):
            net.blocks[n_lower + j].load_state_dict(st)
    return net.to(device)


def inherited_parameters(net: BlockNet, n_lower: int) -> int:
    return sum(p.numel() for b in list(net.blocks)[n_lower:] for p in b.parameters())
