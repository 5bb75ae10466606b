"""CriterionStatsCallback: every registered criterion statistic, gathered while the collective model trains.

Step statistics (:mod:`learngene_core.criterion.gradient` and any registered later) are computed once per
optimizer step (``on_before_optimizer_step``: the gradient the step applies, accumulated over
``accumulate_grad_batches`` micro-batches, all-reduced under DDP, unscaled under AMP, before clipping and
before the optimizer's weight decay, so every process computes identical numbers; the epoch means are also
averaged across processes once per epoch) for every block and linear layer and summed on the
device, with no host synchronisation per step. At the end of each epoch the per-epoch means R_l(t, e)
are moved to the host once and appended to ``gradient_stats.csv`` (rank 0). Task statistics
(:mod:`learngene_core.criterion.learning`) are computed once, at the end of the task, from a
:class:`~learngene_core.criterion.learning.TaskProbe` that snapshots the blocks at the start. Layers are
named ("conv7", "fc1", "head"), and names survive widening.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from callbacks.task_inputs import TaskInputs
from learngene_core.criterion.gradient import step_statistics
from learngene_core.criterion.learning import TaskProbe
from learngene_core.criterion.records import TASK_EPOCH, append_rows
from learngene_core.criterion.registry import statistics


def named_layers(net) -> list[tuple[str, str, list[torch.Tensor]]]:
    """(name, layer type, watched weights) of every block and linear layer, in network order."""
    out = [(b.name, "conv", b.criterion_weights()) for b in net.blocks]
    out += [(f"fc{i + 1}", "linear", [fc.weight]) for i, fc in enumerate(net.fcs)]
    out.append(("head", "linear", [net.head.weight]))
    return out


class CriterionStatsCallback(L.Callback):
    def __init__(self, task_inputs: TaskInputs, every_n_steps: int = 1, task_statistics: bool = True) -> None:
        """``task_inputs``: the task, the CSV, the threshold and the probe images of this task (the stage gives
        them); ``every_n_steps``: step statistics on every n-th step; ``task_statistics``: also the task-end
        statistics (cka_drift, weight_change, fisher_importance, ...)."""
        super().__init__()
        i = task_inputs
        self.csv_path = Path(i.stats_csv) if i.stats_csv else None
        self.tau, self.task, self.every = float(i.tau), int(i.task), max(1, int(every_n_steps))
        self.step_stats = statistics("step", i.statistic_options)
        self.task_stats = statistics("task", i.statistic_options) if task_statistics else []
        self.probe_args = (i.probe_x, i.fisher_batches, i.fisher_samples, i.classes)
        self.probe: TaskProbe | None = None
        self.rows: list[dict] = []  # this task's rows
        self._sums: torch.Tensor | None = None
        self._count = 0
        self._names: list[tuple[str, str]] = []
        self.rank_disagreement = 0.0  # max relative gap between a rank's epoch means and the cross-rank mean

    # -- task statistics ----------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.task_stats:
            probe_x, fisher_batches, samples, classes = self.probe_args
            self.probe = TaskProbe(pl_module.net, probe_x, fisher_batches, samples, classes)
            self.probe.begin()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.probe is None:
            return
        self.probe.end()
        names = [b.name for b in pl_module.net.blocks]
        new = []
        for stat in self.task_stats:
            values = stat.fn(self.probe)
            new += [
                {"task": self.task, "epoch": TASK_EPOCH, "layer": n, "layer_type": "conv", "statistic": stat.name,
                 "value": float(v)}
                for n, v in zip(names, values)
            ]  # fmt: skip
        self._emit(trainer, new)

    # -- step statistics ----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sums, self._count = None, 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if trainer.global_step % self.every or not self.step_stats:
            return
        layers = named_layers(pl_module.net)
        stats = torch.stack(
            [step_statistics(self.step_stats, [w.grad for w in ws], ws, self.tau) for _, _, ws in layers]
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
            # DDP gradients are all-reduced before the step, so every rank normally holds the same numbers; the
            # mean over ranks is a safeguard, and rank_disagreement says how far they were apart.
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
                "layer_type": layer_type,
                "statistic": s.name,
                "value": row[j],
            }
            for (name, layer_type), row in zip(self._names, means)
            for j, s in enumerate(self.step_stats)
        ]
        self._emit(trainer, new)

    def _emit(self, trainer: L.Trainer, new: list[dict]) -> None:
        """Rows to ``gradient_stats.csv`` and, as ``criterion/<statistic>/<layer>``, to every logger."""
        self.rows.extend(new)
        if not trainer.is_global_zero:
            return
        if self.csv_path is not None:
            append_rows(self.csv_path, new)
        loggers = getattr(trainer, "loggers", None) or []
        if loggers:
            metrics = {f"criterion/{r['statistic']}/{r['layer']}": r["value"] for r in new}
            step = trainer.fit_loop.epoch_loop._batches_that_stepped
            for logger in loggers:
                logger.log_metrics(metrics, step=step)
