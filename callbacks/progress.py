"""EpochProgress: what a person watching a run sees while a Trainer fits -- the current task or method,
epochs done, samples per second and the time left -- in a rich progress row, and as a log line per epoch
when the output is not a terminal (SLURM logs, ``tee``), so a long task is never silent."""

from __future__ import annotations

import logging
import time

import lightning as L

log = logging.getLogger("learngene")


class EpochProgress(L.Callback):
    def __init__(self, progress, description: str, samples_per_epoch: int | None = None,
                 log_epochs: bool = False) -> None:  # fmt: skip
        """``progress``: a rich Progress (or None: log lines only); ``log_epochs``: an INFO line per epoch."""
        super().__init__()
        self.progress, self.description = progress, description
        self.samples = samples_per_epoch
        self.log_epochs = log_epochs
        self.row = None
        self._t0 = self._start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        if self.progress is not None and trainer.is_global_zero:
            self.row = self.progress.add_task(f"  {self.description}", total=trainer.max_epochs, rate="")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._t0
        rate = f"{self.samples / seconds:,.0f} samples/s" if self.samples and seconds > 0 else ""
        loss = next((float(v) for k, v in trainer.callback_metrics.items() if k.endswith("train/loss")), None)
        if self.row is not None:
            self.progress.update(self.row, advance=1, rate=rate)
        if self.log_epochs:
            done, total = trainer.current_epoch + 1, trainer.max_epochs
            elapsed = time.perf_counter() - self._start
            eta = elapsed / done * (total - done)
            log.info("%s epoch %d/%d%s%s, %.0fs left in this fit", self.description, done, total,
                     f" loss {loss:.4f}" if loss is not None else "", f", {rate}" if rate else "", eta)  # fmt: skip

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.row is not None:
            self.progress.remove_task(self.row)
            self.row = None
