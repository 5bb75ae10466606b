"""ProtoNet (Snell et al. 2017): an embedding with the individual network's blocks, meta-trained on
episodes of base classes; class prototypes from the K shots of each target task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from experiments.methods.common import TaskResult, gather, my_share, test_images
from experiments.methods.inherit import spec_for
from experiments.methods.meta_training import episode_limits, episodes_datamodule, meta_train, seeded_net
from experiments.methods.registry import Job, MethodContext, register_method
from experiments.pipeline.schema import Positive, Range, Rate
from lightning_modules.protonet_module import proto_logits


def run_protonet(m: MethodContext, p: ProtoNet, spec, identity: dict, tasks) -> tuple[list[TaskResult], dict]:
    ctx = m.run
    net = seeded_net(spec, ctx.individual.seed, "protonet")
    module = p.module(net=net, ways=p.ways, optimizer=p.optimizer)
    dm = episodes_datamodule(ctx, p.datamodule, "protonet", p.episodes, p.ways, p.shots, p.queries)
    meta = meta_train(ctx, "protonet", m.job_identity(identity), net, module, dm)
    net = net.to(ctx.device).eval()
    results = []
    with torch.no_grad():
        for t in my_share(tasks):
            start = time.perf_counter()
            xs = ctx.augment.eval(ctx.image_set.x_train[t.train_idx].to(ctx.device))
            support = net.conv_features(xs).float()
            preds = []
            for xb in test_images(ctx, t).split(500):
                q = net.conv_features(ctx.augment.eval(xb.to(ctx.device))).float()
                preds.append(proto_logits(support, t.train_y.to(ctx.device), q, t.ways).argmax(1).cpu())
            acc = float((torch.cat(preds) == t.test_y).float().mean())
            results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    n = sum(p.numel() for name, p in net.named_parameters() if name.startswith("blocks."))
    return gather(results), {"parameters": n, "inherited_parameters": 0, **meta}


@register_method(
    "protonet",
    "ProtoNet (meta-trained on base classes)",
    identity_excludes=(
        "datamodule",
    ),  # it batches the episodes, which the identity holds (seed, shots, ways)
    data_limits=lambda key, p, cfg, base: episode_limits(
        key, p.ways, f"{key}.ways", p.shots, p.queries, base
    ),
)
@dataclass
class ProtoNet:
    episodes: Positive  # meta-training episodes
    ways: Annotated[int, Range(ge=2)]
    shots: Positive
    queries: Positive
    lr: Rate  # the optimizer's (interpolated there)
    optimizer: Any  # partial optimizer: params -> Optimizer
    module: Any  # partial ProtoNetModule: (net, ways, optimizer) -> LightningModule
    datamodule: (
        Any  # partial EpisodesDataModule: (image_set, episodes, augment, seed, meta_batch) -> DataModule
    )

    def __call__(self, m: MethodContext) -> list[Job]:
        spec, _ = spec_for(m.run, m.learngene)
        identity = {"job": "protonet", "spec": spec.to_dict(), "seed": m.run.individual.seed}
        return [Job(identity=identity, compute=lambda tasks: run_protonet(m, self, spec, identity, tasks))]
