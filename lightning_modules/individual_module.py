"""IndividualModule: trains T target tasks at once (T = 1 for one-by-one) on their K shots.

The optimizer is created once per fit, i.e. once per task group (the original re-created it every
epoch, resetting momentum, while its scratch baseline kept its optimizer). Every task starts from a
network built fresh by the caller (the original never reset between target tasks). The loss is the
sum over tasks of each task's mean cross-entropy, so each task's gradients are exactly those of
training it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F

from learngene_core.stacked import LoopedNets
from learngene_core.utils.finite import FiniteLossGuard
from lightning_modules import OptimizerFactory


class IndividualModule(L.LightningModule):
    def __init__(
        self,
        net: LoopedNets,
        optimizer: OptimizerFactory,
        inherited_blocks: Sequence[int] = (),
        inherited_lr: float | None = None,
        freeze_inherited: bool = False,
        name: str = "individual",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.inherited_blocks = list(inherited_blocks)
        self.inherited_lr = inherited_lr
        self.guard = FiniteLossGuard(name)
        if freeze_inherited and self.inherited_blocks:
            net.freeze_blocks(self.inherited_blocks)
        self.__dict__["_forward"] = torch.compile(net) if compile else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_forward"](x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, T, C, H, W), (B, T)
        logits = self(x).float()
        # the sum of each task's mean loss: task t's gradients are exactly those of training it alone
        loss = sum(F.cross_entropy(logits[:, t], y[:, t]) for t in range(logits.shape[1]))
        self.guard.check(loss, self.current_epoch, self.global_step)
        self.log(
            "individual/train/loss", loss / self.net.tasks, on_step=False, on_epoch=True, batch_size=y.numel()
        )
        return loss

    def on_train_epoch_end(self) -> None:
        self.guard.flush()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        inherited = {id(p) for i in self.inherited_blocks for p in self.net.block_parameters(i)}
        own = [p for p in self.net.parameters() if p.requires_grad and id(p) not in inherited]
        inh = [p for p in self.net.parameters() if p.requires_grad and id(p) in inherited]
        groups = [{"params": own}]
        if inh:
            groups.append(
                {"params": inh, **({"lr": self.inherited_lr} if self.inherited_lr is not None else {})}
            )
        return self.optimizer_factory(groups)
