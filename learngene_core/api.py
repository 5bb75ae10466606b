"""Use a learngene outside this repository: load ``learngene.pt``, build an individual network from it, or
plug its blocks into a model of your own. Needs only torch and this package (no Lightning, no Hydra)::

    from learngene_core import build_descendant, build_individual_network, learngene_blocks, load_learngene

    learngene = load_learngene("runs/x/learngene/seed_0/learngene.pt")
    net = build_individual_network(learngene, ways=5)   # random lower blocks, inherited blocks, new head
    blocks = learngene_blocks(learngene)                # just the inherited blocks, weights loaded
    wide = build_descendant(learngene, ways=5, width=2.0, depth="+1", strategy="widen+repeat")  # another size
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from learngene_core.artifact import Learngene, load_learngene
from learngene_core.backbones.base import BlockNet, make_block
from learngene_core.descendants import (
    Adaptation,
    adapt,
    check_shape,
    check_shape_value,
    default_strategies,
    descendant_spec,
    make_strategy,
)
from learngene_core.errors import ConfigError
from learngene_core.individual import build_individual, individual_spec

__all__ = ["Learngene", "build_descendant", "build_individual_network", "learngene_blocks", "load_learngene"]


def build_individual_network(
    learngene: Learngene,
    ways: int,
    hidden: Sequence[int] = (1024, 1024),
    base_width: int = 64,
    lower_pools: str = "paper",
    pool_to: int = 2,
    seed: int = 0,
    inherit: bool = True,
) -> BlockNet:
    """The paper's individual network for a ``ways``-way task: random lower blocks (widths doubling from
    ``base_width`` to the learngene's input width), the inherited blocks (weights and BatchNorm state), an
    adaptive max-pool to ``pool_to`` and an MLP head; ``inherit=False`` gives the same network from scratch.
    Its input is images of ``learngene.image_channels`` channels and ``learngene.input_size`` pixels."""
    spec, n_lower = individual_spec(learngene, ways, hidden, base_width, lower_pools, pool_to)
    return build_individual(learngene, spec, n_lower, seed, inherit=inherit)


def learngene_blocks(learngene: Learngene, trainable: bool = True) -> nn.Sequential:
    """The inherited blocks as an ``nn.Sequential`` (named like the collective's blocks, e.g. "conv11"),
    with their weights and BatchNorm statistics loaded. They map ``learngene.in_channels`` channels to
    ``learngene.blocks[-1].out_channels``; each keeps its own pooling. ``trainable=False`` freezes them
    (no gradients; BatchNorm keeps its statistics in training mode too)."""
    blocks = nn.Sequential()
    for spec, state in zip(learngene.blocks, learngene.state):
        block = make_block(learngene.kind, spec)
        block.load_state_dict(state)
        if not trainable:
            block.frozen = True
            block.requires_grad_(False)
        blocks.add_module(spec.name, block)
    return blocks


def build_descendant(
    learngene: Learngene,
    ways: int,
    width: float = 1.0,
    depth: int | str | None = None,
    strategy: str | Adaptation | Sequence[Adaptation] | None = None,
    hidden: Sequence[int] = (1024, 1024),
    base_width: int = 64,
    lower_pools: str = "paper",
    pool_to: int = 2,
    seed: int = 0,
    inherit: bool = True,
) -> BlockNet:
    """A descendant of another shape than the paper's individual network: every conv width times ``width``
    (lower and inherited blocks), ``depth`` blocks in all (lower + inherited; None: the paper's; "+N" / "-N":
    relative to it), the learngene adapted by ``strategy``: names joined by "+" ("widen", "narrow", "deepen",
    "repeat", "truncate"; see :mod:`learngene_core.descendants`), strategy objects, or None for the defaults
    (widen / narrow, deepen -- repeat for backbones that cannot deepen -- / truncate). ``inherit=False``: the same
    network from scratch (same ``seed``: the same random lower blocks and head). A shape that cannot be built
    raises :class:`ConfigError` naming the argument, before anything is built."""
    shape = check_shape_value(width, depth)
    if strategy is None:
        strategies = default_strategies(learngene, shape, base_width)
    elif isinstance(strategy, str):
        strategies = [make_strategy(n) for n in strategy.split("+") if n]
    elif isinstance(strategy, Adaptation):
        strategies = [strategy]
    else:
        strategies = list(strategy)
        if not all(isinstance(s, Adaptation) for s in strategies):
            raise ConfigError(f"strategy={strategy!r}: must be names joined by '+', or adaptation objects")
    check_shape(learngene, shape, strategies, base_width)
    adapted = adapt(learngene, shape, strategies, base_width) if strategies else learngene
    spec, n_lower = descendant_spec(adapted, shape, ways, hidden, base_width, lower_pools, pool_to)
    return build_individual(adapted, spec, n_lower, seed, inherit=inherit)
