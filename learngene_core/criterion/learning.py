"""Task statistics: how much a block's learning moved during one task, free of gradient scale.

Measured once per task, between the start of the task (after growth) and its end:

- ``weight_change``: ||W_end - W_start|| / ||W_start|| over the block's watched weights, normalised by
  the block's own value on the first task (a block that keeps changing as much as when it started
  learning scores 1, one that has settled scores near 0);
- ``cka_drift``: 1 - linear CKA (Kornblith et al. 2019) between the block's outputs on a fixed probe set
  of base images at the start and at the end of the task (eval mode; outputs average-pooled to at most
  8x8 positions, which bounds memory at large image sizes): how much the block's representation moved.
  Linear CKA compares centred Gram matrices, so it needs no matching units;
- ``fisher_importance``: the block's share of sum_i F_i W_i^2 over all blocks, with F the diagonal
  Fisher information of the block's weights on the task's training images at the end of the task
  (mean squared per-sample gradient of the log-likelihood at the true label): how much the current
  task's loss depends on the block's weights at their own scale.

None of them depends on the gradient's scale, and exact-zero gradient entries weigh nothing in them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property

import torch
from torch import nn

from learngene_core.criterion.registry import register_statistic
from learngene_core.ewc import fisher_diagonal


def block_weights(net) -> list[list[torch.Tensor]]:
    """The watched weights of every block (detached copies on the CPU)."""
    return [[w.detach().float().cpu().clone() for w in b.criterion_weights()] for b in net.blocks]


GRAM_MAX_SIDE = 8


def _probe_features(out: torch.Tensor) -> torch.Tensor:
    if out.shape[-1] > GRAM_MAX_SIDE:
        out = nn.functional.adaptive_avg_pool2d(out, GRAM_MAX_SIDE)
    return out.detach().float().flatten(1)


@torch.no_grad()
def block_grams(net, x: torch.Tensor, batch_size: int = 128) -> list[torch.Tensor]:
    """Centred Gram matrices (n x n, float64) of every block's output on the probe images ``x`` (eval mode)."""
    was_training = net.training
    net.eval()
    outs: list[list[torch.Tensor]] = [[] for _ in net.blocks]
    hooks = [
        b.register_forward_hook(lambda _m, _i, out, j=j: outs[j].append(_probe_features(out)))
        for j, b in enumerate(net.blocks)
    ]
    try:
        for xb in x.split(batch_size):
            net.conv_features(xb)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    grams = []
    for feats in outs:
        f = torch.cat(feats).double()
        f = f - f.mean(0, keepdim=True)
        grams.append((f @ f.T).cpu())
    return grams


def linear_cka(K: torch.Tensor, L: torch.Tensor) -> float:
    """Linear CKA of two centred Gram matrices: <K, L>_F / (||K||_F ||L||_F); 1 for identical geometry."""
    den = float(torch.linalg.norm(K) * torch.linalg.norm(L))
    return float((K * L).sum()) / den if den > 0 else 1.0


def fisher_of_blocks(
    net, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_samples: int = 64, chunk: int = 8,
    classes: int | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Per block: the diagonal Fisher (mean squared per-sample log-likelihood gradient at the true label,
    eval mode) of its watched weights, flattened; only those weights get per-sample gradients."""
    keys = [[f"blocks.{i}.{k}" for k in type(b).criterion_keys] for i, b in enumerate(net.blocks)]
    fisher = fisher_diagonal(net, batches, max_samples, "empirical", chunk, classes=classes,
                             names=[n for block in keys for n in block])  # fmt: skip
    params = dict(net.named_parameters())
    zero = lambda n: torch.zeros_like(params[n])  # noqa: E731 -- a frozen weight: no gradient, no information
    return [torch.cat([fisher.get(n, zero(n)).float().reshape(-1).cpu() for n in block]) for block in keys]


class TaskProbe:
    """What the task statistics read: call :meth:`begin` at the start of a task and :meth:`end` at its end.

    ``probe_x``: normalised probe images (float, on the network's device); ``fisher_batches``: a callable
    giving (x, y) batches of the task's training images (eval-normalised) for the Fisher estimate."""

    def __init__(self, net, probe_x: torch.Tensor | None, fisher_batches: Callable[[], Iterable] | None = None,
                 fisher_samples: int = 64, classes: int | None = None) -> None:  # fmt: skip
        self.net = net
        self.probe_x = probe_x
        self.fisher_batches = fisher_batches
        self.fisher_samples = fisher_samples
        self.classes = classes
        self.start_weights: list[list[torch.Tensor]] = []
        self.start_grams: list[torch.Tensor] | None = None

    def begin(self) -> None:
        self.start_weights = block_weights(self.net)
        self.start_grams = block_grams(self.net, self.probe_x) if self.probe_x is not None else None

    def end(self) -> None:
        """Snapshot the end of the task (the Fisher estimate is computed only if a statistic asks for it)."""
        _ = self.end_weights, (self.end_grams if self.probe_x is not None else None)

    @cached_property
    def end_weights(self) -> list[list[torch.Tensor]]:
        return block_weights(self.net)

    @cached_property
    def end_grams(self) -> list[torch.Tensor]:
        if self.probe_x is None:
            raise ValueError("a probe set is needed for representation statistics")
        return block_grams(self.net, self.probe_x)

    @cached_property
    def fisher(self) -> list[torch.Tensor]:
        if self.fisher_batches is None:
            raise ValueError("Fisher statistics need the task's training batches")
        return fisher_of_blocks(self.net, self.fisher_batches(), self.fisher_samples, classes=self.classes)


@register_statistic(
    "weight_change",
    "task",
    "||W_end - W_start|| / ||W_start|| per task, normalised by the block's first-task value",
    normalise="first_task",
)
def weight_change(probe: TaskProbe) -> list[float]:
    out = []
    for start, end in zip(probe.start_weights, probe.end_weights):
        s, e = torch.cat([w.reshape(-1) for w in start]), torch.cat([w.reshape(-1) for w in end])
        out.append(float(torch.linalg.vector_norm(e - s) / torch.linalg.vector_norm(s).clamp_min(1e-12)))
    return out


@register_statistic("cka_drift", "task", "1 - linear CKA of the block's probe-set outputs, task start vs end")
def cka_drift(probe: TaskProbe) -> list[float]:
    if probe.start_grams is None:  # no probe set (criterion.probe_images=0): not recorded
        return []
    return [1.0 - linear_cka(a, b) for a, b in zip(probe.start_grams, probe.end_grams)]


@register_statistic("fisher_importance", "task", "the block's share of sum F * W^2 over all blocks")
def fisher_importance(probe: TaskProbe) -> list[float]:
    vals = [
        float((f * torch.cat([w.reshape(-1) for w in ws]) ** 2).sum())
        for f, ws in zip(probe.fisher, probe.end_weights)
    ]
    total = sum(vals)
    return [v / total if total > 0 else 0.0 for v in vals]
