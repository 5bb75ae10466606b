"""The meta-learning baselines' protocols."""

from __future__ import annotations

import functools

import torch

from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import vgg_spec
from lightning_modules.maml_module import MamlModule


def test_maml_predicts_with_transductive_batch_statistics():
    """The reference protocol: BatchNorm uses the query set's batch statistics at test time, never the running
    statistics, so corrupting the running statistics changes nothing."""
    torch.manual_seed(0)
    net = BlockNet(vgg_spec([8, 8], pool_after=[1, 2], input_size=8, hidden=[16], num_classes=3, dropout=0))
    module = MamlModule(
        net, optimizer=functools.partial(torch.optim.Adam, lr=1e-3), inner_lr=0.1, inner_steps=2
    )
    xs, ys = torch.randn(6, 3, 8, 8), torch.arange(6) % 3
    xq = torch.randn(20, 3, 8, 8)
    before = module.predict_task(xs, ys, xq, steps=3)
    with torch.no_grad():
        for b in net.blocks:
            b.bn.running_mean.fill_(100.0)
            b.bn.running_var.fill_(1e-4)
    after = module.predict_task(xs, ys, xq, steps=3)
    assert torch.equal(before, after)
    # and the statistics are the query set's: a query set of one other image changes the prediction inputs
    assert module.predict_task(xs, ys, xq[:1], steps=3).shape == (1,)
