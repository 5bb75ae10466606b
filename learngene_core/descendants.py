"""One learngene, descendants of many sizes: adapting the inherited window to another width and depth.

A descendant's *shape* is a width multiplier of the individual network (every conv width: the random lower
blocks and the inherited blocks; the MLP head keeps its sizes) and a depth: the number of blocks of the
individual network (lower + inherited), ``None`` for the paper's, an integer for an absolute count, or a
string ``"+N"`` / ``"-N"`` relative to the paper's. The lower stack is fixed by the width, so the depth
changes the number of blocks that come from the learngene.

Adapting the learngene to a shape is one named strategy per direction, each registered with
:func:`register_adaptation` and applied to the window (a :class:`Learngene`, returning a new one):

- ``widen`` (wider): Net2Wider on every inherited block (:meth:`BlockNet.widen`, symmetry-breaking noise on
  the copies' consumers, zero-sum so the function is exact); the first block's new input channels read zero
  weights. The first ``C`` output channels of the widened window equal the original window's output.
- ``narrow`` (narrower): per block, the output filters with the largest L2 norm of their incoming weights
  (the block's ``unit_weights``; internal widths of a residual block by their own rows) are kept, in their
  original order, and the next block's input channels are sliced to match; the first block keeps the input
  channels whose weights have the largest L2 norm.
- ``deepen`` (deeper, VGG only): Dirac-initialised conv-BN-ReLU blocks appended after the inherited ones
  (``backbones.vgg.deepen``): the identity in eval mode.
- ``repeat`` (deeper): SWS-style stage-wise weight sharing: the extra blocks start as copies of the
  inherited blocks of the last width (cyclically), each reading the last width (zero weights on added input
  channels, most important ones kept when fewer).
- ``truncate`` (shallower): the window's first blocks.

Shapes that cannot be built are refused by :func:`check_shape` before any work, naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from learngene_core.artifact import Learngene
from learngene_core.backbones.base import BlockNet, BlockSpec, NetSpec, block_class
from learngene_core.errors import ConfigError
from learngene_core.growth import scale_width
from learngene_core.individual import individual_spec, lower_widths

DIRECTIONS = ("wider", "narrower", "deeper", "shallower")
ADAPTATIONS: dict[str, type[Adaptation]] = {}
# per block kind: (layer, its BatchNorm, the layer reading it) for widths inside a block that follow its output
INTERNAL_UNITS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "resnet12": (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")),
}
DEPTH_RE = re.compile(r"^[+-]\d+$")


def register_adaptation(name: str, direction: str) -> Callable[[type], type]:
    """Class decorator: a strategy adapting a learngene window in one ``direction`` (wider, narrower, deeper,
    shallower); its constructor arguments are its config keys (``_target_`` nodes)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}; valid: {list(DIRECTIONS)}")

    def deco(cls: type) -> type:
        cls.name, cls.direction = name, direction
        ADAPTATIONS[name] = cls
        return cls

    return deco


class Adaptation:
    name: ClassVar[str] = ""
    direction: ClassVar[str] = ""

    def refuse(self, kind: str) -> str | None:
        """Why this strategy cannot adapt blocks of ``kind`` (None: it can)."""
        return None

    def apply(self, window: Learngene, target: Sequence[int] | int) -> Learngene:
        """Width strategies: ``target`` = the new output width per block (the first block's input width is
        ``target_in``); depth strategies: the new number of blocks."""
        raise NotImplementedError


def _state(window: Learngene) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in st.items()} for st in window.state]


def _replace(window: Learngene, blocks: list[BlockSpec], state: list[dict]) -> Learngene:
    meta = dict(window.meta)
    return dataclasses.replace(window, blocks=blocks, state=state, meta=meta)


def _window_net(window: Learngene) -> BlockNet:
    spec = NetSpec([copy.copy(b) for b in window.blocks], window.input_size, [], 1, 0.0, 1, window.kind)
    net = BlockNet(spec)
    for b, st in zip(net.blocks, window.state):
        b.load_state_dict(st)
    return net.eval()


def _from_net(window: Learngene, net: BlockNet) -> Learngene:
    state = [{k: v.detach().clone() for k, v in b.state_dict().items()} for b in net.blocks]
    return _replace(window, [b.spec for b in net.blocks], state)


def input_importance(kind: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per input channel of a block: the L2 norm of every weight reading it."""
    ws = [state[k] for k in block_class(kind).input_keys]
    return torch.cat([w.transpose(0, 1).reshape(w.shape[1], -1) for w in ws], dim=1).norm(dim=1)


def output_importance(kind: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per output filter of a block: the L2 norm of its incoming weights (as ``Block.unit_weights``)."""
    keys = [k for k in block_class(kind).output_keys if k.endswith("weight") and state[k].ndim > 1]
    return torch.cat([state[k].reshape(state[k].shape[0], -1) for k in keys], dim=1).norm(dim=1)


def top(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest scores, in ascending index order (ties: the lower index)."""
    order = torch.argsort(-scores, stable=True)[:n]
    return torch.sort(order).values


def resize_input(kind: str, state: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """A block's input channels to ``width``: new channels read zero weights; fewer keep the most important."""
    keys = block_class(kind).input_keys
    c = state[keys[0]].shape[1]
    out = dict(state)
    if width > c:
        for k in keys:
            w = state[k]
            pad = torch.zeros((w.shape[0], width - c, *w.shape[2:]), dtype=w.dtype)
            out[k] = torch.cat([w, pad], dim=1)
    elif width < c:
        keep = top(input_importance(kind, state), width)
        for k in keys:
            out[k] = state[k][:, keep].clone()
    return out


@register_adaptation("widen", "wider")
class Widen(Adaptation):
    """Function-preserving widening (Net2Wider) of every inherited block, with symmetry-breaking noise."""

    def __init__(self, noise: float = 0.5, seed: int = 0) -> None:
        self.noise, self.seed = float(noise), int(seed)

    def apply(self, window: Learngene, target: Sequence[int], target_in: int | None = None) -> Learngene:
        net = _window_net(window)
        gen = torch.Generator().manual_seed(self.seed)
        for i, w in enumerate(target):
            if w > net.blocks[i].out_channels:
                net.widen(i, w - net.blocks[i].out_channels, gen, self.noise)
        out = _from_net(window, net)
        if target_in is not None and target_in != out.blocks[0].in_channels:
            out.state[0] = resize_input(window.kind, out.state[0], target_in)
            out.blocks[0] = dataclasses.replace(out.blocks[0], in_channels=target_in)
        return out


@register_adaptation("narrow", "narrower")
class Narrow(Adaptation):
    """Keep each block's most important output filters (L2 norm of their weights); slice the next block's input."""

    def apply(self, window: Learngene, target: Sequence[int], target_in: int | None = None) -> Learngene:
        kind, orig = window.kind, window.state
        state = _state(window)
        keeps = [top(output_importance(kind, st), w) for st, w in zip(orig, target)]
        cls = block_class(kind)
        for i, keep in enumerate(keeps):
            for k in cls.output_keys:
                state[i][k] = state[i][k][keep]
            for layer, bn, reader in INTERNAL_UNITS.get(kind, ()):
                w = orig[i][f"{layer}.weight"]
                inner = top(w.reshape(w.shape[0], -1).norm(dim=1), len(keep))
                state[i][f"{layer}.weight"] = state[i][f"{layer}.weight"][inner]
                for s in ("weight", "bias", "running_mean", "running_var"):
                    state[i][f"{bn}.{s}"] = state[i][f"{bn}.{s}"][inner]
                state[i][f"{reader}.weight"] = state[i][f"{reader}.weight"][:, inner]
            if i + 1 < len(state):
                for k in cls.input_keys:
                    state[i + 1][k] = state[i + 1][k][:, keep]
        for st in state:
            for k, v in st.items():
                st[k] = v.clone()
        blocks = [dataclasses.replace(b, out_channels=len(keep)) for b, keep in zip(window.blocks, keeps)]
        for i in range(1, len(blocks)):
            blocks[i] = dataclasses.replace(blocks[i], in_channels=len(keeps[i - 1]))
        if target_in is not None and target_in != blocks[0].in_channels:
            state[0] = resize_input(kind, state[0], target_in)
            blocks[0] = dataclasses.replace(blocks[0], in_channels=target_in)
        return _replace(window, blocks, state)


def _extra_names(window: Learngene, n: int) -> list[str]:
    return [f"{window.blocks[-1].name}+{j + 1}" for j in range(n)]


def _unpool_last(window: Learngene) -> list[BlockSpec]:
    blocks = list(window.blocks)
    blocks[-1] = dataclasses.replace(blocks[-1], pools=0)  # the appended blocks run at its resolution
    return blocks


@register_adaptation("deepen", "deeper")
class DeepenIdentity(Adaptation):
    """Identity-initialised (Dirac conv, identity BatchNorm) blocks appended after the inherited ones."""

    def refuse(self, kind: str) -> str | None:
        if not block_class(kind).can_deepen:
            return f"the {kind!r} backbone cannot deepen with identity blocks; use the repeat strategy"
        return None

    def apply(self, window: Learngene, target: int) -> Learngene:
        from learngene_core.backbones.vgg import deepen

        net = _window_net(_replace(window, _unpool_last(window), window.state))
        k = len(window.blocks)
        for _ in range(target - k):
            deepen(net, len(net.blocks) - 1)
        for block, name in zip(list(net.blocks)[k:], _extra_names(window, target - k)):
            block.name = name  # the same names as repeat's blocks: one spec, one scratch network per shape
        return _from_net(window, net)


@register_adaptation("repeat", "deeper")
class Repeat(Adaptation):
    """SWS-style stage-wise weight sharing: extra blocks start as copies of the inherited blocks of the last
    width (cyclically, in order), each reading the last width."""

    def apply(self, window: Learngene, target: int) -> Learngene:
        c = window.blocks[-1].out_channels
        sources = [i for i, b in enumerate(window.blocks) if b.out_channels == c]
        blocks, state = _unpool_last(window), _state(window)
        for j, name in enumerate(_extra_names(window, target - len(window.blocks))):
            i = sources[j % len(sources)]
            blocks.append(BlockSpec(name, c, c, 0))
            state.append({k: v.clone() for k, v in resize_input(window.kind, window.state[i], c).items()})
        return _replace(window, blocks, state)


@register_adaptation("truncate", "shallower")
class Truncate(Adaptation):
    """The window's first blocks."""

    def apply(self, window: Learngene, target: int) -> Learngene:
        return _replace(window, list(window.blocks[:target]), _state(window)[:target])


# -- shapes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    width: float = 1.0  # multiplier of every conv width of the individual network
    depth: int | str | None = None  # blocks of the individual network; None: the paper's; "+N"/"-N": relative

    @property
    def name(self) -> str:
        d = "" if self.depth is None else f"-d{self.depth}"
        return f"w{self.width:g}{d}"


def check_shape_value(width, depth, key: str = "") -> Shape:
    """The shape's own values (no learngene needed); ``key``: the config key to name in errors."""
    p = f"{key}." if key else ""
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ConfigError(
            f"{p}width={width!r}: must be a number > 0 (a multiplier of the individual network's widths)"
        )
    ok = depth is None or (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1)
    if not ok and not (isinstance(depth, str) and DEPTH_RE.match(depth)):
        raise ConfigError(f"{p}depth={depth!r}: must be null (the paper's), an integer >= 1 (blocks of the "
                          "individual network) or '+N' / '-N' (relative to the paper's)")  # fmt: skip
    return Shape(float(width), depth)


def paper_lower(learngene: Learngene, width: float, base_width: int) -> int:
    """How many random lower blocks the individual network of this width has."""
    if learngene.window_start == 0:
        return 0
    return len(lower_widths(scale_width(learngene.in_channels, width), scale_width(base_width, width)))


def window_depth(learngene: Learngene, shape: Shape, base_width: int = 64) -> tuple[int, int]:
    """(lower blocks, inherited-window blocks) of the descendant."""
    n_lower = paper_lower(learngene, shape.width, base_width)
    k = len(learngene.blocks)
    if shape.depth is None:
        return n_lower, k
    if isinstance(shape.depth, str):
        return n_lower, k + int(shape.depth)
    return n_lower, shape.depth - n_lower


def directions(learngene: Learngene, shape: Shape, base_width: int = 64) -> tuple[str | None, str | None]:
    n_lower, k = window_depth(learngene, shape, base_width)
    w = "wider" if shape.width > 1 else "narrower" if shape.width < 1 else None
    d = "deeper" if k > len(learngene.blocks) else "shallower" if k < len(learngene.blocks) else None
    return w, d


def check_shape(
    learngene: Learngene,
    shape: Shape,
    strategies: Sequence[Adaptation],
    base_width: int = 64,
    key: str = "",
    strategy_key: str = "strategy",
) -> None:
    """Refuse, before any work, a shape that cannot be built from this learngene with these strategies."""
    p = f"{key}." if key else ""
    n_lower, k = window_depth(learngene, shape, base_width)
    if k < 1:
        raise ConfigError(f"{p}depth={shape.depth!r}: the descendant needs at least {n_lower + 1} blocks "
                          f"({n_lower} random lower blocks + at least one inherited block)")  # fmt: skip
    for b in learngene.blocks:
        if scale_width(b.out_channels, shape.width) < 1:
            raise ConfigError(f"{p}width={shape.width!r}: block {b.name} would have no filters")
    needed = [d for d in directions(learngene, shape, base_width) if d]
    for s in strategies:
        if s.direction not in needed:
            raise ConfigError(f"{strategy_key}={s.name!r}: the shape {shape.name} is not {s.direction} than the "
                              f"learngene's individual network (it needs: {needed or 'no adaptation'})")  # fmt: skip
        why = s.refuse(learngene.kind)
        if why:
            raise ConfigError(f"{strategy_key}={s.name!r}: {why}")
    for d in needed:
        if not any(s.direction == d for s in strategies):
            raise ConfigError(f"{strategy_key}: the shape {shape.name} is {d} than the learngene's individual "
                              f"network but no {d} strategy is given; {d}: {by_direction(d)}")  # fmt: skip


def by_direction(direction: str) -> list[str]:
    return [n for n, c in ADAPTATIONS.items() if c.direction == direction]


def make_strategy(name: str, key: str = "strategy", **kwargs) -> Adaptation:
    if name not in ADAPTATIONS:
        raise ConfigError(f"{key}={name!r}: not a registered adaptation; registered: {sorted(ADAPTATIONS)}")
    return ADAPTATIONS[name](**kwargs)


def default_strategies(learngene: Learngene, shape: Shape, base_width: int = 64) -> list[Adaptation]:
    """widen / narrow, then deepen (repeat where the backbone cannot deepen) / truncate."""
    out = []
    w, d = directions(learngene, shape, base_width)
    if w:
        out.append(Widen() if w == "wider" else Narrow())
    if d == "deeper":
        out.append(DeepenIdentity() if block_class(learngene.kind).can_deepen else Repeat())
    elif d:
        out.append(Truncate())
    return out


def adapt(
    learngene: Learngene, shape: Shape, strategies: Sequence[Adaptation], base_width: int = 64
) -> Learngene:
    """The learngene adapted to ``shape``: shallower first, then the width, then deeper."""
    check_shape(learngene, shape, strategies, base_width)
    _, k = window_depth(learngene, shape, base_width)
    window = learngene
    by = {s.direction: s for s in strategies}
    if "shallower" in by:
        window = by["shallower"].apply(window, k)
    for d in ("wider", "narrower"):
        if d in by:
            target = [scale_width(b.out_channels, shape.width) for b in window.blocks]
            first = learngene.in_channels  # a window starting at the first block reads the images themselves
            window = by[d].apply(
                window, target, first if learngene.window_start == 0 else scale_width(first, shape.width)
            )
    if "deeper" in by:
        window = by["deeper"].apply(window, k)
    return window


def descendant_spec(
    adapted: Learngene,
    shape: Shape,
    ways: int,
    hidden: Sequence[int] = (1024, 1024),
    base_width: int = 64,
    lower_pools: str = "paper",
    pool_to: int = 2,
    input_size: int | None = None,
) -> tuple[NetSpec, int]:
    """The descendant's spec (lower blocks at the shape's width, the adapted window, the head)."""
    return individual_spec(adapted, ways, hidden, scale_width(base_width, shape.width), lower_pools, pool_to,
                           input_size)  # fmt: skip


# -- config values (the descendants method's options, experiments/methods/descendants.py) ----------------------


def check_shapes_config(key: str, shapes) -> None:
    """A list of ``{width, depth}`` mappings, each value valid (names ``key[i].width`` etc. in errors)."""
    if shapes is None or isinstance(shapes, str | bytes) or not hasattr(shapes, "__len__") or not len(shapes):
        raise ConfigError(f"{key}={shapes!r}: must be a list of at least one shape {{width: W, depth: D}}")
    for i, node in enumerate(shapes):
        if not hasattr(node, "keys"):
            raise ConfigError(f"{key}[{i}]={node!r}: must be a mapping {{width: W, depth: D}}")
        extra = sorted(set(node.keys()) - {"width", "depth"})
        if extra:
            raise ConfigError(f"{key}[{i}].{extra[0]} is not a key of a shape; its keys: ['depth', 'width']")
        check_shape_value(node.get("width", 1.0), node.get("depth"), f"{key}[{i}]")


def check_strategies_config(key: str, strategies) -> None:
    """A mapping name -> ``{_target_: <a registered adaptation class>, ...}``."""
    if strategies is None or not hasattr(strategies, "items"):
        raise ConfigError(f"{key}={strategies!r}: must be a mapping name -> {{_target_: ..., ...}}")
    targets = {f"{c.__module__}.{c.__qualname__}": n for n, c in ADAPTATIONS.items()}
    for name, node in strategies.items():
        target = node.get("_target_") if hasattr(node, "get") else None
        if target not in targets:
            raise ConfigError(f"{key}.{name}._target_={target!r}: not a registered adaptation; registered: "
                              f"{sorted(targets)}")  # fmt: skip
