"""Fine-tune the whole collective model with a new head on each target task (same budget as the individual)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from experiments.methods.common import TaskResult, init_seed, net_digest, train_and_evaluate
from experiments.methods.registry import Job, MethodContext, register_method
from experiments.pipeline.context import RunContext
from learngene_core.backbones.base import BlockNet
from learngene_core.data.target_tasks import TargetTask


def run_finetune(
    ctx: RunContext, collective: BlockNet, tasks: list[TargetTask]
) -> tuple[list[TaskResult], dict]:
    ways = ctx.individual.ways
    base = copy.deepcopy(collective).cpu()

    def build(task: TargetTask) -> BlockNet:
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


@register_method("finetune", "fine-tune whole collective model")
def finetune(m: MethodContext) -> list[Job]:
    net = m.collective
    return [Job(identity={"job": "finetune", "collective": net_digest(net)},
                compute=lambda tasks: run_finetune(m.run, net, tasks))]  # fmt: skip
