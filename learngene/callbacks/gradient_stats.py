"""GradientStatsCallback: the learngene criterion's statistics, gathered while the collective model trains.

After every backward pass (``on_after_backward``: gradients complete, before the optimizer applies
weight decay, and under DDP already all-reduced, so every process computes identical numbers; the epoch
means are also averaged across processes once per epoch) the
statistics of :mod:`learngene.core.gradient_stats` are computed for every conv block and linear layer
and summed on the device; no host synchronisation per step. At the end of each epoch the per-epoch
means R_l(t, e) are moved to the host once, kept in memory and appended to ``gradient_stats.csv``
(rank 0 only), so an interrupted run keeps what it gathered. Layers are named ("conv7", "fc1", "head"),
and names survive widening.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch

from learngene.core.gradient_stats import STATISTICS, layer_statistics

CSV_FIELDS = ("task", "epoch", "layer", "kind", "statistic", "value")


def named_layers(net) -> list[tuple[str, str, torch.nn.Parameter]]:
    """(name, kind, weight) of every conv block and linear layer, in network order."""
    out = [(b.name, "conv", b.conv.weight) for b in net.blocks]
    out += [(f"fc{i + 1}", "linear", fc.weight) for i, fc in enumerate(net.fcs)]
    out.append(("head", "linear", net.head.weight))
    return out


class GradientStatsCallback(L.Callback):
    def __init__(self, csv_path: str | Path | None, tau: float, task: int, every_n_steps: int = 1) -> None:
        super().__init__()
        self.csv_path = Path(csv_path) if csv_path else None
        self.tau, self.task, self.every = float(tau), int(task), max(1, int(every_n_steps))
        self.rows: list[dict] = []  # this task's per-epoch means
        self._sums: torch.Tensor | None = None
        self._count = 0
        self._names: list[tuple[str, str]] = []
        self.rank_disagreement = 0.0  # max relative gap between a rank's epoch means and the cross-rank mean

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sums, self._count = None, 0

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step % self.every:
            return
        layers = named_layers(pl_module.net)
        stats = torch.stack(
            [
                layer_statistics(w.grad, w, self.tau)
                if w.grad is not None
                else torch.zeros(len(STATISTICS), device=w.device)
                for _, _, w in layers
            ]
        )
        if self._sums is None:
            self._sums = torch.zeros_like(stats)
            self._names = [(n, k) for n, k, _ in layers]
        self._sums += stats
        self._count += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._sums is None or self._count == 0:
            return
        means = self._sums / self._count
        if trainer.world_size > 1:
            # DDP gradients are already all-reduced, so every rank normally holds the same numbers; the
            # mean over ranks also covers steps where a strategy skipped the gradient sync (accumulation).
            local = means
            means = trainer.strategy.reduce(local.clone(), reduce_op="mean")
            gap = (local - means).abs().max() / means.abs().max().clamp_min(1e-30)
            gap = float(trainer.strategy.reduce(gap, reduce_op="max"))
            self.rank_disagreement = max(self.rank_disagreement, gap)
        means = means.cpu().tolist()
        epoch = trainer.current_epoch
        new = [
            {
                "task": self.task,
                "epoch": epoch,
                "layer": name,
                "kind": kind,
                "statistic": stat,
                "value": row[j],
            }
            for (name, kind), row in zip(self._names, means)
            for j, stat in enumerate(STATISTICS)
        ]
        self.rows.extend(new)
        if self.csv_path is not None and trainer.is_global_zero:
            append_rows(self.csv_path, new)


def append_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            w.writeheader()
        w.writerows(rows)
        f.flush()


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {**r, "task": int(r["task"]), "epoch": int(r["epoch"]), "value": float(r["value"])}
            for r in csv.DictReader(f)
        ]


def truncate_rows(path: str | Path, first_unfinished_task: int) -> None:
    """Drop rows of tasks >= ``first_unfinished_task`` (a partial task is re-run on resume)."""
    from learngene.utils.io import atomic_write_text

    path = Path(path)
    rows = [r for r in read_rows(path) if r["task"] < first_unfinished_task]
    lines = [",".join(CSV_FIELDS)] + [",".join(str(r[k]) for k in CSV_FIELDS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def task_matrix(
    rows: list[dict], statistic: str, kind: str = "conv", aggregate: str = "mean", layer_order=None
):
    """Per-task statistic S[t, l] from per-epoch rows: mean over epochs (or the ``last`` epoch).

    Layers follow ``layer_order`` (e.g. the final network's block names) or their first appearance; a
    layer absent from a task (a block inserted later by deepening) is NaN there.
    """
    import numpy as np

    if aggregate not in ("mean", "last"):
        raise ValueError(f"criterion.epoch_aggregate={aggregate!r}; valid: ['mean', 'last']")
    rows = [r for r in rows if r["statistic"] == statistic and r["kind"] == kind]
    if not rows:
        return np.zeros((0, 0)), [], []
    tasks = sorted({r["task"] for r in rows})
    layers: list[str] = list(layer_order) if layer_order else []
    for r in rows:
        if r["layer"] not in layers and not layer_order:
            layers.append(r["layer"])
    out = np.full((len(tasks), len(layers)), np.nan)
    for ti, t in enumerate(tasks):
        sub = [r for r in rows if r["task"] == t]
        last = max(r["epoch"] for r in sub)
        for li, name in enumerate(layers):
            vals = [
                r["value"] for r in sub if r["layer"] == name and (aggregate == "mean" or r["epoch"] == last)
            ]
            if vals:
                out[ti, li] = sum(vals) / len(vals)
    return out, tasks, layers
