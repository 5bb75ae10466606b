"""CollectiveModule: trains the growing collective network on one task of the stream.

Cross-entropy on logits (the original put a Softmax before CrossEntropyLoss, a double softmax that
also shrank the gradients the criterion measures), SGD with a fresh optimizer per task (one Trainer
per task; the optimizer comes from the config as a partial, ``collective.optimizer``), an optional EWC
penalty, an optional LR schedule stepped every optimizer step (``collective.lr_schedule``; in joint mode
the run's one optimizer and schedule are handed to every task's module). With task-relative labels only
the first C head outputs are used (the original fed labels 0..4 into a shared head).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from learngene_core.backbones.base import BlockNet
from learngene_core.ewc import EWC
from learngene_core.utils.finite import FiniteLossGuard
from lightning_modules import OptimizerFactory


class CollectiveModule(L.LightningModule):
    def __init__(
        self,
        net: BlockNet,
        optimizer: OptimizerFactory,
        task: int = 0,
        ewc: EWC | None = None,
        relative_classes: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        lr_schedule=None,
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule  # (optimizer, total_steps) -> LR scheduler | None, stepped every step
        self.ewc = ewc
        self.relative_classes = relative_classes
        self.guard = FiniteLossGuard(f"collective task {task}")
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # compiled once per task, from scratch: growth changes shapes, and keeping dynamo's cache would pile
        # up recompiles of the same frame until ``recompile_limit`` (8), after which dynamo silently runs
        # eager -- the paper's schedule widens 11 distinct layers (benchmarks/compile_strategy.py). The
        # compiled callable stays out of the module tree so state dicts and callbacks see the plain network.
        if compile:
            from torch import _dynamo

            _dynamo.reset()
        self.__dict__["_forward"] = torch.compile(self.net) if compile else self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.__dict__["_forward"](x)
        return logits[:, : self.relative_classes] if self.relative_classes else logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + self.ewc.penalty(self.net) if (self.ewc and self.ewc.active) else ce
        self.guard.check(loss, self.current_epoch, self.global_step)
        self.log("collective/train/loss", ce, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("collective/task", float(self.task), on_step=False, on_epoch=True, batch_size=len(y))
        if self.ewc and self.ewc.active:
            self.log("collective/train/ewc", loss - ce, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        self.guard.flush()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.net.parameters())
        scheduler = (
            self.lr_schedule(optimizer, int(self.trainer.estimated_stepping_batches))
            if self.lr_schedule
            else None
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
