"""Linear probe and nearest-centroid (prototype) classifiers on the collective model's penultimate features."""

from __future__ import annotations

import time

import numpy as np
import torch

from learngene.core.convnet import ConvNet
from learngene.datamodules.loaders import predict
from learngene.datamodules.target_tasks import TargetTask
from learngene.pipeline.context import RunContext
from learngene.pipeline.methods.common import TaskResult, gather, init_seed, my_share, test_images


def _features(ctx: RunContext, net: ConvNet, task: TargetTask) -> tuple[torch.Tensor, torch.Tensor]:
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


def run_prototype(ctx: RunContext, net: ConvNet, tasks: list[TargetTask]) -> tuple[list[TaskResult], dict]:
    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        train, test = _features(ctx, net, t)
        pred = prototype_predict(train, t.train_y, test, t.ways, ctx.cfg.baselines.prototype_metric)
        acc = float((pred == t.test_y).float().mean())
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    return gather(results), {"parameters": net.num_parameters() - sum(p.numel() for p in net.head.parameters()),
                             "inherited_parameters": net.num_parameters() - sum(p.numel() for p in net.head.parameters())}  # fmt: skip


def run_linear_probe(ctx: RunContext, net: ConvNet, tasks: list[TargetTask]) -> tuple[list[TaskResult], dict]:
    """Multinomial logistic regression (scikit-learn, L2, standardised features) on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        train, test = _features(ctx, net, t)
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, random_state=init_seed(t) % 2**31)
        )
        clf.fit(train.numpy(), t.train_y.numpy())
        acc = float(np.mean(clf.predict(test.numpy()) == t.test_y.numpy()))
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    feat = net.fcs[-1].out_features if len(net.fcs) else net.head.in_features
    frozen = net.num_parameters() - sum(p.numel() for p in net.head.parameters())
    return gather(results), {
        "parameters": frozen + feat * tasks[0].ways + tasks[0].ways,
        "inherited_parameters": frozen,
    }
