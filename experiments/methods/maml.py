"""MAML (Finn et al. 2017) on the individual network, meta-trained on episodes of base classes
(``target.ways``-way), adapted on the K shots of each target task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from experiments.methods.common import TaskResult, gather, my_share, test_images
from experiments.methods.inherit import spec_for
from experiments.methods.meta_training import episode_limits, episodes_datamodule, meta_train, seeded_net
from experiments.methods.registry import Job, MethodContext, register_method
from experiments.pipeline.schema import Positive, Rate


def run_maml(m: MethodContext, c: Maml, spec, identity: dict, tasks) -> tuple[list[TaskResult], dict]:
    ctx = m.run
    ways = ctx.individual.ways
    net = seeded_net(spec, ctx.individual.seed, "maml")
    module = c.module(net=net, optimizer=c.optimizer, inner_lr=c.inner_lr, inner_steps=c.inner_steps,
                      first_order=c.first_order)  # fmt: skip
    dm = episodes_datamodule(ctx, c.datamodule, "maml", c.iterations * c.meta_batch, ways, c.shots, c.queries,
                             c.meta_batch)  # fmt: skip
    meta = meta_train(ctx, "maml", m.job_identity(identity), net, module, dm)
    module.net = net.to(ctx.device)
    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        xs = ctx.augment.eval(ctx.image_set.x_train[t.train_idx].to(ctx.device))
        x_test = ctx.augment.eval(test_images(ctx, t).to(ctx.device))
        pred = module.predict_task(xs, t.train_y.to(ctx.device), x_test, c.test_steps).cpu()
        acc = float((pred == t.test_y).float().mean())
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    info = {
        "parameters": net.num_parameters(),
        "inherited_parameters": 0,
        "first_order": bool(c.first_order),
        **meta,
    }
    return gather(results), info


@register_method(
    "maml",
    "MAML (meta-trained on base classes)",
    identity_excludes=(
        "datamodule",
    ),  # it batches the episodes, which the identity holds (seed, shots, ways)
    data_limits=lambda key, p, cfg, base: episode_limits(  # MAML meta-trains target.ways-way episodes
        key, cfg.target.ways, "target.ways", p.shots, p.queries, base
    ),
)
@dataclass
class Maml:
    iterations: Positive  # outer steps
    meta_batch: Positive  # episodes per outer step
    shots: Positive
    queries: Positive
    inner_lr: Rate
    inner_steps: Positive
    test_steps: Positive
    first_order: bool
    lr: Rate  # the optimizer's (interpolated there)
    optimizer: Any  # partial optimizer: params -> Optimizer
    module: Any  # partial MamlModule
    datamodule: (
        Any  # partial EpisodesDataModule: (image_set, episodes, augment, seed, meta_batch) -> DataModule
    )

    def __call__(self, m: MethodContext) -> list[Job]:
        spec, _ = spec_for(m.run, m.learngene)
        identity = {"job": "maml", "spec": spec.to_dict(), "seed": m.run.individual.seed,
                    "ways": m.run.individual.ways}  # fmt: skip
        return [Job(identity=identity, compute=lambda tasks: run_maml(m, self, spec, identity, tasks))]
