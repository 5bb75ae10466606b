"""T networks of one architecture trained at once, as one module (batched individual training).

Target tasks are tiny (50 to 100 images), so per-step overhead dominates when they run one after
another. A stack trains T :class:`~learngene_core.backbones.base.BlockNet` s of identical shape with one
optimizer, one loader and one Trainer; task t's output depends only on task t's parameters and inputs.
:class:`LoopedNets` holds the T networks themselves, each run on its slice of the batch: every tensor and
kernel is the one a one-task run uses, so training T tasks stacked is *bitwise* the training of each alone;
the saving is the per-task overhead (Trainer, training loop, data, optimizer calls).

(An earlier grouped implementation, one grouped convolution for all T tasks, re-implemented the VGG block
beside the backbone, ignored its pooling spec and drifted from one-by-one training by up to 7 points on
single tasks; as the default on GPU it made a GPU run and a CPU run of one configuration answer
differently. It was removed: one implementation, equal to one-by-one training everywhere.)

Dropout masks come from per-task generators. Inputs are (B, T, C, H, W), outputs (B, T, classes);
``to_nets`` splits the stack back into plain nets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from learngene_core.backbones.base import BlockNet


def _common_spec(nets: Sequence[BlockNet]):
    """The one architecture of ``nets``; stacking networks of different shapes is an error."""
    for n in nets[1:]:
        if n.spec != nets[0].spec:
            raise ValueError("all stacked networks must share one architecture")
    return nets[0].spec


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


def stack_nets(nets: Sequence[BlockNet]) -> LoopedNets:
    """Stack networks of one architecture for batched training (bitwise the training of each alone)."""
    return LoopedNets.from_nets(nets)
