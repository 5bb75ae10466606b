"""The paper's VGG-style backbone: blocks conv 3x3 (pad 1) -> BatchNorm -> ReLU (-> 2x2 max-pool).

The collective model (:func:`vgg`): 13 blocks "conv1".."conv13", max-pool after blocks 2, 4, 7, 10 and
13 (1-based), starting widths 64 64 64 64 128 128 128 256 256 256 256 256 256, then the classifier
Linear(C*s*s, 1024)-ReLU-Dropout-Linear(1024, 1024)-ReLU-Dropout-Linear(1024, K). Besides widening
(:meth:`BlockNet.widen`), this kind can deepen: :func:`deepen` inserts an identity-initialised block.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from learngene_core.backbones.base import (
    Block,
    BlockNet,
    BlockSpec,
    NetSpec,
    batch_norm,
    block_class,
    register_block,
    sequential_spec,
)
from learngene_core.growth import scale_width

PAPER_WIDTHS = [64, 64, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
PAPER_POOL_AFTER = (2, 4, 7, 10, 13)
PAPER_SCHEDULE = [
    [2, 64], [3, 64], [4, 64], [4, 64], [5, 64], [5, 64], [6, 64], [6, 64],
    [7, 128], [7, 128], [8, 128], [8, 128], [9, 128], [9, 128], [10, 128], [10, 128],
    [11, 128], [11, 128], [12, 128], [12, 128],
]  # fmt: skip


@register_block("vgg")
class ConvBlock(Block):
    output_keys = ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    input_keys = ("conv.weight",)
    criterion_keys = ("conv.weight",)
    can_deepen = True

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(spec.out_channels)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(batch_norm(self.bn, self.conv(x), self.frozen)))


def vgg_spec(
    widths: Sequence[int],
    pool_after: Sequence[int] = PAPER_POOL_AFTER,
    input_size: int = 32,
    in_channels: int = 3,
    hidden: Sequence[int] = (1024, 1024),
    num_classes: int = 64,
    dropout: float = 0.5,
) -> NetSpec:
    """The collective network's spec: len(widths) blocks, a max-pool after the 1-based ``pool_after`` blocks."""
    pools = [1 if (i + 1) in set(pool_after) else 0 for i in range(len(widths))]
    return sequential_spec("vgg", widths, pools, input_size, in_channels, hidden, num_classes, dropout, None)


def vgg(
    input_size: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] = PAPER_WIDTHS,
    pool_after: Sequence[int] = PAPER_POOL_AFTER,
    hidden: Sequence[int] = (1024, 1024),
    dropout: float = 0.5,
    width_mult: float = 1.0,
) -> BlockNet:
    """The collective model (``model=vgg13``); ``width_mult`` scales conv widths and hidden sizes."""
    return BlockNet(
        vgg_spec(
            [scale_width(w, width_mult) for w in widths],
            pool_after,
            input_size,
            in_channels,
            [scale_width(h, width_mult) for h in hidden],
            num_classes,
            dropout,
        )
    )


@torch.no_grad()
def deepen(net: BlockNet, after: int, calibration: torch.Tensor | None = None) -> str:
    """Insert an identity-initialised block after block ``after`` (Net2DeeperNet); returns its name.

    The conv is a Dirac (identity) kernel, bias 0. Its BatchNorm is set so that BN(x) = x in eval mode:
    running mean 0, running var 1, weight sqrt(1 + eps), bias 0; the ReLU is the identity on its
    (non-negative) input. With a ``calibration`` batch of network inputs, the BN is instead set from that
    batch's train-mode statistics at the insertion point (weight = sqrt(var + eps), bias = mean, running
    stats = batch stats): still the identity in eval mode, and also in train mode on that batch (and
    approximately on batches with similar statistics).
    The pool of block ``after`` stays with it; the new block has no pool.
    """
    if not block_class(net.kind).can_deepen:
        raise ValueError(f"deepening inserts a conv-BN-ReLU block; the {net.kind!r} backbone cannot deepen")
    prev = net.blocks[after]
    c = prev.out_channels
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
