"""Fine-tune the whole collective model with a new head on each target task (same budget as the individual)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from learngene.core.convnet import ConvNet
from learngene.datamodules.target_tasks import TargetTask
from learngene.pipeline.context import RunContext
from learngene.pipeline.methods.common import TaskResult, init_seed, train_and_evaluate


def run_finetune(
    ctx: RunContext, collective: ConvNet, tasks: list[TargetTask]
) -> tuple[list[TaskResult], dict]:
    ways = ctx.cfg.individual.ways
    base = copy.deepcopy(collective).cpu()

    def build(task: TargetTask) -> ConvNet:
        net = copy.deepcopy(base)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed(task))
            net.head = nn.Linear(net.head.in_features, ways)
        return net

    results = train_and_evaluate(ctx, build, tasks, name="finetune")
    probe = build(tasks[0])
    n = probe.num_parameters()
    return results, {
        "parameters": n,
        "inherited_parameters": n - sum(p.numel() for p in probe.head.parameters()),
    }
