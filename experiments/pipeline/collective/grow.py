"""The grow step: before task t, apply the schedule's t-th entry (widen or deepen) and grow the head."""

from __future__ import annotations

import torch

from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import deepen
from learngene_core.ewc import EWC
from learngene_core.growth import grow_head
from learngene_core.utils.seeding import derive_seed


def apply_growth(net: BlockNet, step: dict, ewc: EWC | None, seed: int, noise: float) -> dict:
    """One schedule entry, applied in place; EWC anchors and Fisher values follow the weights."""
    g = torch.Generator().manual_seed(seed)
    if step["op"] == "deepen":
        n_before = len(net.blocks)
        name = deepen(net, step["after"])
        if ewc:
            after = step["after"]
            renamed = {}
            for key in list(ewc.anchor):
                parts = key.split(".")
                if parts[0] == "blocks" and int(parts[1]) > after:
                    renamed[key] = ".".join(["blocks", str(int(parts[1]) + 1), *parts[2:]])
            ewc.sync_new_parameters(net, renamed)
        return {"op": "deepen", "after": step["after"], "name": name, "blocks": [n_before, len(net.blocks)]}
    widening = net.widen(step["block"], step["units"], g, noise)
    if ewc:
        ewc.widen(widening)
    return widening.describe()


def grow(net: BlockNet, t: int, schedule: list[dict], ewc: EWC | None, seed: int, noise: float,
         head: int | None) -> dict | None:  # fmt: skip
    """Before task ``t``: the schedule entry for it (if any), then the head up to ``head`` rows (if given)."""
    growth = None
    if t > 0 and t - 1 < len(schedule):
        growth = apply_growth(net, schedule[t - 1], ewc, derive_seed(seed, "grow", t), noise)
    if head is not None and head > net.head.out_features:
        grow_head(
            net, head - net.head.out_features, torch.Generator().manual_seed(derive_seed(seed, "head", t))
        )
        if ewc:
            ewc.sync_new_parameters(net)
    return growth
