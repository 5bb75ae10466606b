"""Task statistics: how much a block's learning moved during one task, free of gradient scale.

Measured once per task, between the start of the task (after growth) and its end, each block on its own:

- ``weight_change``: ||W_end - W_start|| / ||W_start|| over the block's watched weights, measured on the
  block's *distinct* units, normalised by the block's own value on the first task (a block that keeps
  changing as much as when it started learning scores 1, one that has settled scores near 0). Growth
  widens a block before the task starts by copying units (Net2WiderNet), and symmetry-breaking noise on the
  consumers' weights lets the copies drift apart in training: that separation uses the freedom growth
  created, and it would make the block widened at each task look like the one that learns most. So the
  rows of a weight that are identical at the task's start (a unit and its copies) are merged into their
  mean, and the columns that read such a group of units are merged into their sum for the reference
  norm (the consumer's function depends only on the sum while the copies are identical) and into their
  mean for the change (each copy's column receives the unit's whole gradient, so under the same
  training their sum moves k times as fast as the unwidened column would: Net2Net preserves the
  function, not the SGD dynamics). At the start the merged weights are exactly the weights before the
  widening, so the statistic is measured in the block's pre-growth coordinates: copies moving apart
  symmetrically count 0, copies moving together count as one unit moving, and a block without copies
  is measured as before. Rows are grouped per weight; the columns of
  a weight reading the block's input use the previous block's copy groups, the others the copy groups
  of the preceding watched weight (ResNet-12: conv2 reads conv1, conv3 reads conv2);
- ``cka_drift``: 1 - linear CKA (Kornblith et al. 2019) between the outputs of the block at the start
  and at the end of the task *on the same inputs*: the end-of-task network runs a fixed probe set of
  base images, each block's input is captured there and fed both to the block and to its start-of-task
  copy (eval mode; outputs average-pooled to at most 8x8 positions, which bounds memory at large image
  sizes). Changes of the blocks below therefore do not count: a block that did not change scores 0
  whatever its neighbours did. (Comparing the block's outputs after two full forward passes would add
  every change below it, growing with depth.) Linear CKA compares centred Gram matrices, so it needs no
  matching units;
- ``fisher_importance``: the block's share of sum_i F_i W_i^2 over all blocks, with F the diagonal
  Fisher information of the block's weights on the task's training images at the end of the task
  (mean squared per-sample gradient of the log-likelihood at the true label): how much the current
  task's loss depends on the block's weights at their own scale. The images are a seeded, class-stratified
  draw from the whole task (:func:`learngene_core.ewc.stratified_order`), not its first images.

None of them depends on the gradient's scale, and exact-zero gradient entries weigh nothing in them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from functools import cached_property

import torch
from torch import nn

from learngene_core.criterion.registry import register_statistic
from learngene_core.ewc import fisher_diagonal


def block_weights(net) -> list[list[torch.Tensor]]:
    """The watched weights of every block (detached copies on the CPU)."""
    return [[w.detach().float().cpu().clone() for w in b.criterion_weights()] for b in net.blocks]


def copy_groups(rows: torch.Tensor) -> torch.Tensor | None:
    """Group label of every row of ``rows`` (dim 0 = units), identical rows sharing one (Net2Net copies);
    None when every row is distinct."""
    flat = rows.detach().float().reshape(len(rows), -1)
    _, labels = torch.unique(flat, dim=0, return_inverse=True)
    return labels.cpu() if int(labels.max()) + 1 < len(rows) else None


def merge_plan(net) -> list[list[tuple[torch.Tensor | None, torch.Tensor | None]]]:
    """Per block and watched weight: (row groups, column groups) of the units that are copies right now.

    Rows: identical rows of the weight itself. Columns: a weight reading the block's input uses the
    previous block's output groups (identical rows of its :meth:`unit_weights`); any other watched weight
    reads the preceding watched weight's units and uses its row groups."""
    plan, prev_out = [], None
    for b in net.blocks:
        weights = b.criterion_weights()
        rows = [copy_groups(w) for w in weights]
        block_plan = []
        for j, (key, w) in enumerate(zip(type(b).criterion_keys, weights)):
            cols = prev_out if key in type(b).input_keys else (rows[j - 1] if j > 0 else None)
            if w.ndim < 2 or (cols is not None and len(cols) != w.shape[1]):
                cols = None
            block_plan.append((rows[j], cols))
        plan.append(block_plan)
        prev_out = copy_groups(b.unit_weights().cpu())
    return plan


def merge_copies(
    w: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None, columns: str = "sum"
) -> torch.Tensor:
    """``w`` with copy groups of rows merged into their mean and copy groups of columns into their sum
    (``columns="mean"``: their mean)."""
    if rows is not None:
        n = int(rows.max()) + 1
        counts = torch.bincount(rows, minlength=n).to(w.dtype).view(-1, *([1] * (w.ndim - 1)))
        w = w.new_zeros(n, *w.shape[1:]).index_add_(0, rows, w) / counts
    if cols is not None:
        n = int(cols.max()) + 1
        w = w.new_zeros(w.shape[0], n, *w.shape[2:]).index_add_(1, cols, w)
        if columns == "mean":
            w = w / torch.bincount(cols, minlength=n).to(w.dtype).view(1, -1, *([1] * (w.ndim - 2)))
    return w


def merged_change(
    start: list[torch.Tensor], end: list[torch.Tensor], plan
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block's (change, start) with copies merged, flattened: rows of copies by their mean; the columns
    reading a group of copies by their sum for the start (the weight the group's unit had before the
    widening) and by their mean for the change (each copy's column gets the unit's whole gradient, so the
    sum would move k times faster than the unwidened column under the same training)."""
    change = [merge_copies(e - s, r, c, "mean").reshape(-1) for s, e, (r, c) in zip(start, end, plan)]
    base = [merge_copies(s, r, c, "sum").reshape(-1) for s, (r, c) in zip(start, plan)]
    return torch.cat(change), torch.cat(base)


GRAM_MAX_SIDE = 8


def _probe_features(out: torch.Tensor) -> torch.Tensor:
    if out.shape[-1] > GRAM_MAX_SIDE:
        out = nn.functional.adaptive_avg_pool2d(out, GRAM_MAX_SIDE)
    return out.detach().float().flatten(1)


def _centred_gram(feats: list[torch.Tensor]) -> torch.Tensor:
    f = torch.cat(feats).double()
    f = f - f.mean(0, keepdim=True)
    return (f @ f.T).cpu()


@torch.no_grad()
def block_gram_pairs(
    net, start_blocks: list[nn.Module], x: torch.Tensor, batch_size: int = 128
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per block: centred Gram matrices (n x n, float64) of the start copy's and the current block's outputs
    on the same inputs, the block's inputs in the current network run on the probe images ``x`` (eval mode)."""
    was_training = net.training
    modes = [b.training for b in start_blocks]
    net.eval()
    for b in start_blocks:
        b.eval()
    start_outs: list[list[torch.Tensor]] = [[] for _ in net.blocks]
    end_outs: list[list[torch.Tensor]] = [[] for _ in net.blocks]

    def hook(j):
        def fn(_m, inputs, out):
            end_outs[j].append(_probe_features(out))
            start_outs[j].append(_probe_features(start_blocks[j](*inputs)))

        return fn

    hooks = [b.register_forward_hook(hook(j)) for j, b in enumerate(net.blocks)]
    try:
        for xb in x.split(batch_size):
            net.conv_features(xb)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
        for b, m in zip(start_blocks, modes):
            b.train(m)
    return [(_centred_gram(s), _centred_gram(e)) for s, e in zip(start_outs, end_outs)]


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
        self.plan: list = []  # per block and watched weight: copy groups at the start (merge_plan)
        self.start_blocks: list[nn.Module] | None = None

    def begin(self) -> None:
        """Snapshot the start of the task: the watched weights, their copy groups and (with a probe set) a
        copy of every block, run at the end on the end network's block inputs."""
        self.start_weights = block_weights(self.net)
        self.plan = merge_plan(self.net)
        self.start_blocks = [copy.deepcopy(b) for b in self.net.blocks] if self.probe_x is not None else None

    def end(self) -> None:
        """Snapshot the end of the task (the Fisher estimate is computed only if a statistic asks for it)."""
        _ = self.end_weights, (self.gram_pairs if self.start_blocks is not None else None)
        self.start_blocks = None  # the Gram matrices are all that is needed of them

    @cached_property
    def end_weights(self) -> list[list[torch.Tensor]]:
        return block_weights(self.net)

    @cached_property
    def gram_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block: centred Grams of its start copy's and its own outputs on its end-of-task inputs."""
        if self.probe_x is None or self.start_blocks is None:
            raise ValueError("a probe set (and begin() before end()) is needed for representation statistics")
        return block_gram_pairs(self.net, self.start_blocks, self.probe_x)

    @cached_property
    def fisher(self) -> list[torch.Tensor]:
        if self.fisher_batches is None:
            raise ValueError("Fisher statistics need the task's training batches")
        return fisher_of_blocks(self.net, self.fisher_batches(), self.fisher_samples, classes=self.classes)


@register_statistic(
    "weight_change",
    "task",
    "||W_end - W_start|| / ||W_start|| per task on the block's distinct units (Net2Net copies merged), "
    "normalised by the block's first-task value",
    normalise="first_task",
)
def weight_change(probe: TaskProbe) -> list[float]:
    out = []
    for start, end, plan in zip(probe.start_weights, probe.end_weights, probe.plan):
        change, base = merged_change(start, end, plan)
        out.append(float(torch.linalg.vector_norm(change) / torch.linalg.vector_norm(base).clamp_min(1e-12)))
    return out


@register_statistic(
    "cka_drift",
    "task",
    "1 - linear CKA of the block's start and end outputs on the same (end-of-task) inputs",
)
def cka_drift(probe: TaskProbe) -> list[float]:
    if probe.probe_x is None:  # no probe set (criterion.probe_images=0): not recorded
        return []
    return [1.0 - linear_cka(a, b) for a, b in probe.gram_pairs]


@register_statistic("fisher_importance", "task", "the block's share of sum F * W^2 over all blocks")
def fisher_importance(probe: TaskProbe) -> list[float]:
    vals = [
        float((f * torch.cat([w.reshape(-1) for w in ws]) ** 2).sum())
        for f, ws in zip(probe.fisher, probe.end_weights)
    ]
    total = sum(vals)
    return [v / total if total > 0 else 0.0 for v in vals]
