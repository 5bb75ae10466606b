"""MAML (Finn et al. 2017) with torch.func.functional_call, trained episodically on the base classes.

Why not learn2learn: it is unmaintained, its 0.2.0 sdist does not build on Python 3.11+ without
regenerating its Cython sources, it imports the retired ``gym`` and installs a top-level ``tests``
package. MAML needs only a functional forward with explicit fast weights, which torch provides.

Inner loop: ``inner_steps`` SGD steps on the support set from the shared initialisation; outer loss:
cross-entropy of the adapted weights on the query set. ``first_order`` drops the second derivatives
(FOMAML). BatchNorm uses batch statistics throughout, as the reference implementation does: while
adapting, and at test time on the whole query set of a task at once (transductive batch statistics;
the running statistics are never used). ``loss_curve`` keeps every meta-training step's loss.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.func import functional_call

from learngene_core.backbones.base import BlockNet
from learngene_core.utils.finite import FiniteLossGuard
from lightning_modules import OptimizerFactory


def adapt(net: BlockNet, params: dict, buffers: dict, xs: torch.Tensor, ys: torch.Tensor, steps: int, lr: float,
          create_graph: bool) -> dict:  # fmt: skip
    fast = dict(params)
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(net, (fast, buffers), (xs,)).float(), ys)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph, allow_unused=True)
        fast = {
            k: (p - lr * (g if create_graph else g.detach())) if g is not None else p
            for (k, p), g in zip(fast.items(), grads)
        }
    return fast


class MamlModule(L.LightningModule):
    def __init__(self, net: BlockNet, optimizer: OptimizerFactory, inner_lr: float = 0.01, inner_steps: int = 5,
                 first_order: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.net, self.optimizer_factory = net, optimizer
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order
        self.guard = FiniteLossGuard("maml meta-training")
        self.loss_curve: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        params = dict(self.net.named_parameters())
        buffers = dict(self.net.named_buffers())
        losses = []
        for xs, ys, xq, yq in batch:
            fast = adapt(
                self.net, params, buffers, xs, ys, self.inner_steps, self.inner_lr, not self.first_order
            )
            losses.append(F.cross_entropy(functional_call(self.net, (fast, buffers), (xq,)).float(), yq))
        loss = torch.stack(losses).mean()
        self.guard.check(loss, self.current_epoch, self.global_step)
        self.loss_curve.append(loss.detach())
        self.log("maml/train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.net.parameters())

    @torch.no_grad()
    def predict_task(
        self, xs: torch.Tensor, ys: torch.Tensor, x_test: torch.Tensor, steps: int
    ) -> torch.Tensor:
        """Adapt a copy of the initialisation on the support set, then predict the whole query set ``x_test``
        in one batch with batch statistics (the reference protocol: transductive BatchNorm)."""
        self.net.train()
        params = {k: v.detach() for k, v in self.net.named_parameters()}
        buffers = {k: v.detach().clone() for k, v in self.net.named_buffers()}
        with torch.enable_grad():
            params = {k: v.requires_grad_(True) for k, v in params.items()}
            fast = adapt(self.net, params, buffers, xs, ys, steps, self.inner_lr, create_graph=False)
        out = functional_call(self.net, ({k: v.detach() for k, v in fast.items()}, buffers), (x_test,))
        return out.argmax(1)
