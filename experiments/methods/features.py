"""Linear probe and nearest-centroid (prototype) classifiers on the collective model's penultimate features."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch

from experiments.methods.common import TaskResult, gather, init_seed, my_share, net_digest, test_images
from experiments.methods.registry import Job, MethodContext, register_method
from experiments.pipeline.context import RunContext
from experiments.pipeline.schema import Positive
from learngene_core.backbones.base import BlockNet
from learngene_core.data.loaders import predict
from learngene_core.data.target_tasks import TargetTask


def _features(ctx: RunContext, net: BlockNet, task: TargetTask) -> tuple[torch.Tensor, torch.Tensor]:
    net = net.to(ctx.device)
    train = predict(
        net, ctx.image_set.x_train[task.train_idx], ctx.augment, 500, ctx.device, features=True
    ).cpu()
    test = predict(net, test_images(ctx, task), ctx.augment, 500, ctx.device, features=True).cpu()
    return train, test


def prototype_predict(
    train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, ways: int, metric: str
) -> torch.Tensor:
    """Nearest class mean: squared Euclidean distance, or cosine similarity of L2-normalised features."""
    if metric == "cosine":
        train = torch.nn.functional.normalize(train, dim=1)
        test = torch.nn.functional.normalize(test, dim=1)
    centroids = torch.stack([train[y == c].mean(0) for c in range(ways)])
    if metric == "cosine":
        return (test @ torch.nn.functional.normalize(centroids, dim=1).T).argmax(1)
    return torch.cdist(test, centroids).argmin(1)


def run_prototype(
    ctx: RunContext, net: BlockNet, tasks: list[TargetTask], metric: str
) -> tuple[list[TaskResult], dict]:
    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        train, test = _features(ctx, net, t)
        pred = prototype_predict(train, t.train_y, test, t.ways, metric)
        acc = float((pred == t.test_y).float().mean())
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    frozen = net.num_parameters() - sum(p.numel() for p in net.head.parameters())
    return gather(results), {"parameters": frozen, "inherited_parameters": frozen}


def run_linear_probe(
    ctx: RunContext, net: BlockNet, tasks: list[TargetTask], max_iter: int = 2000
) -> tuple[list[TaskResult], dict]:
    """Multinomial logistic regression (scikit-learn, L2, standardised features) on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        train, test = _features(ctx, net, t)
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=init_seed(t) % 2**31)
        )
        clf.fit(train.numpy(), t.train_y.numpy())
        acc = float(np.mean(clf.predict(test.numpy()) == t.test_y.numpy()))
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    feat = net.head.in_features
    frozen = net.num_parameters() - sum(p.numel() for p in net.head.parameters())
    return gather(results), {
        "parameters": frozen + feat * tasks[0].ways + tasks[0].ways,
        "inherited_parameters": frozen,
    }


@register_method("linear_probe", "linear probe on collective features")
def linear_probe(m: MethodContext, max_iter: Positive) -> list[Job]:
    """``max_iter``: iterations of the logistic regression's solver."""
    net = m.collective
    return [Job(identity={"job": "linear_probe", "collective": net_digest(net)},
                compute=lambda tasks: run_linear_probe(m.run, net, tasks, max_iter))]  # fmt: skip


@register_method(
    "prototype",
    "prototype (nearest centroid) on collective features",
)
def prototype(m: MethodContext, metric: Literal["euclidean", "cosine"]) -> list[Job]:
    net = m.collective
    return [Job(identity={"job": "prototype", "collective": net_digest(net)},
                compute=lambda tasks: run_prototype(m.run, net, tasks, metric))]  # fmt: skip
