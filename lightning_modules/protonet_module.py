"""ProtoNet (Snell et al. 2017): episodic training of an embedding on the base classes.

The embedding is the block part of a :class:`~learngene_core.backbones.base.BlockNet` (``conv_features``:
the blocks, the adaptive pool, flattened), so it has the individual network's architecture. Class
prototypes are the mean support embeddings; logits are negative squared Euclidean distances.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from learngene_core.backbones.base import BlockNet
from learngene_core.utils.finite import FiniteLossGuard
from lightning_modules import OptimizerFactory


def proto_logits(support: torch.Tensor, ys: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    protos = torch.stack([support[ys == c].mean(0) for c in range(ways)])
    return -(torch.cdist(query, protos) ** 2)


class ProtoNetModule(L.LightningModule):
    def __init__(self, net: BlockNet, ways: int, optimizer: OptimizerFactory) -> None:
        super().__init__()
        self.net, self.ways, self.optimizer_factory = net, ways, optimizer
        self.guard = FiniteLossGuard("protonet meta-training")
        self.loss_curve: list[torch.Tensor] = []  # every meta-training step's loss

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.conv_features(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        losses = []
        for xs, ys, xq, yq in batch:
            emb = self.embed(torch.cat([xs, xq])).float()
            logits = proto_logits(emb[: len(xs)], ys, emb[len(xs) :], self.ways)
            losses.append(F.cross_entropy(logits, yq))
        loss = torch.stack(losses).mean()
        self.guard.check(loss, self.current_epoch, self.global_step)
        self.loss_curve.append(loss.detach())
        self.log("protonet/train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for n, p in self.net.named_parameters() if n.startswith("blocks.")]
        return self.optimizer_factory(params)
