"""ContinuingStep: every task of the collective stage has a Trainer of its own, whose step counter starts at 0;
loggers (CSV, W&B, TensorBoard) would then draw each task's losses over the last one's. This callback starts
each Trainer's logging step where the previous task's ended, so the step keeps rising across tasks (the
task index is logged next to it as ``collective/task``)."""

from __future__ import annotations

import lightning as L


class ContinuingStep(L.Callback):
    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.offset = int(offset)
        self.end = int(offset)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.fit_loop.epoch_loop._batches_that_stepped = self.offset  # the step loggers plot against

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = int(trainer.fit_loop.epoch_loop._batches_that_stepped)
