"""Learning-rate schedules of the collective stage (``collective.lr_schedule``), stepped once per optimizer step.

A schedule is a factory ``(optimizer, total_steps) -> torch LR scheduler | None`` (configured as a
``_target_`` node with ``_partial_: true``); ``None`` keeps the optimizer's lr. ``total_steps``: the
steps of one task in the continual modes (a fresh optimizer per task), of the whole run in joint mode
(one optimizer). The lr used at step s (0-based) is ``lr * factor(s)``. Any
``torch.optim.lr_scheduler`` class whose other arguments are given in the node can be wrapped with
:func:`torch_scheduler`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from hydra.utils import get_object
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

# the schedule each mode uses when collective.lr_schedule is null
MODE_DEFAULTS = {
    "continual": {"_target_": "lightning_modules.lr_schedules.constant", "_partial_": True},
    "joint_phases": {"_target_": "lightning_modules.lr_schedules.constant", "_partial_": True},
    "joint": {"_target_": "lightning_modules.lr_schedules.warmup_cosine", "_partial_": True, "warmup": 0.05,
              "final": 0.0},
}  # fmt: skip


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """The optimizer's lr throughout (no scheduler, so results are those of a plain optimizer)."""
    return None


def warmup_cosine_factor(step: int, total_steps: int, warmup: float = 0.05, final: float = 0.0) -> float:
    """lr factor at step ``step``: linear warm-up over the first ``round(warmup * total_steps)`` steps (from
    1/w to 1), then a half cosine from 1 down to ``final`` at the last step."""
    w = int(round(warmup * total_steps))
    if step < w:
        return (step + 1) / w
    p = min(1.0, (step - w) / max(1, total_steps - w - 1))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))


class _Factor:
    """A picklable lr_lambda (a plain closure would be dropped from the scheduler's state dict)."""

    def __init__(self, total_steps: int, warmup: float, final: float) -> None:
        self.total_steps, self.warmup, self.final = int(total_steps), float(warmup), float(final)

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.total_steps, self.warmup, self.final)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05, final: float = 0.0
) -> LambdaLR:
    """Linear warm-up over a fraction ``warmup`` of the steps, then cosine decay to ``final`` x lr."""
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup={warmup}: a fraction of the steps in [0, 1)")
    if not 0.0 <= final <= 1.0:
        raise ValueError(f"final={final}: a fraction of the lr in [0, 1]")
    return LambdaLR(optimizer, _Factor(total_steps, warmup, final))


def torch_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cls: str, total_key: str | None = None,
                    **kwargs) -> LRScheduler:  # fmt: skip
    """Any ``torch.optim.lr_scheduler`` class by name (``cls``), with ``kwargs``; ``total_key`` names the argument
    that receives the step count (e.g. ``T_max`` of CosineAnnealingLR, ``total_iters`` of LinearLR)."""
    sched = get_object(cls)
    if total_key:
        kwargs[total_key] = total_steps
    return sched(optimizer, **kwargs)


def schedule_factory(node, mode: str) -> Callable | None:
    """The factory ``collective.lr_schedule`` names (null: the mode's default); None for a constant lr."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if node is None:
        node = MODE_DEFAULTS[mode]
    elif not isinstance(node, dict):
        node = OmegaConf.to_container(node, resolve=True)
    if node.get("_target_") in ("lightning_modules.lr_schedules.constant", f"{__name__}.constant"):
        return None
    return instantiate(node)


def resolved_node(node, mode: str) -> dict:
    """The schedule's config as run (for the manifest)."""
    from omegaconf import OmegaConf

    if node is None:
        return dict(MODE_DEFAULTS[mode])
    return node if isinstance(node, dict) else OmegaConf.to_container(node, resolve=True)
