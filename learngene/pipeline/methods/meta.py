"""Meta-learning baselines trained on the base classes: ProtoNet and MAML (torch.func).

Both use the individual network's architecture (random init), are meta-trained once per run on seeded
episodes of base classes (cached in ``individual/<name>.pt``, so a resumed run does not retrain), and
are then evaluated on exactly the target tasks and shots of every other method.
"""

from __future__ import annotations

import logging
import time

import torch

from learngene.core.artifact import Learngene
from learngene.core.convnet import ConvNet, load_state_checked
from learngene.datamodules.episodes import EpisodeLoader
from learngene.datamodules.target_tasks import TargetTask, make_episodes
from learngene.lightning_modules.maml_module import MamlModule
from learngene.lightning_modules.protonet_module import ProtoNetModule, proto_logits
from learngene.pipeline.context import RunContext
from learngene.pipeline.methods.common import TaskResult, gather, my_share, test_images
from learngene.pipeline.methods.inherit import spec_for
from learngene.utils import dist
from learngene.utils.io import atomic_torch_save
from learngene.utils.seeding import derive_seed

log = logging.getLogger("learngene")


def _meta_train(ctx: RunContext, name: str, net: ConvNet, module, make_loader) -> float:
    """Meta-train once (rank 0; cached in individual/<name>.pt for resumes); every rank then loads it."""
    path = ctx.path("individual", f"{name}.pt")
    state = None
    if dist.is_rank_zero():
        state = _current_cache(path, ctx.stage3_digest)
        if state is None:
            trainer = ctx.make_trainer(1, logger=False, single_device=True)
            start = time.perf_counter()
            trainer.fit(module, train_dataloaders=make_loader())
            state = {"state_dict": net.cpu().state_dict(), "train_time_s": time.perf_counter() - start,
                     "digest": ctx.stage3_digest}  # fmt: skip
            atomic_torch_save(state, path)
    dist.barrier()
    if state is None:
        state = torch.load(path, map_location="cpu", weights_only=True)
    load_state_checked(net, state["state_dict"], str(path))
    return float(state["train_time_s"])


def _current_cache(path, digest: str | None) -> dict | None:
    """The cached meta-trained state if it was trained for this stage-3 configuration, else None."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("digest") == digest else None


def _episodes(ctx: RunContext, name: str, n: int, ways: int, shots: int, queries: int):
    x = ctx.image_set.x_train.to(ctx.device) if ctx.cfg.data.on_device else ctx.image_set.x_train
    eps = make_episodes(ctx.image_set, n, ways, shots, queries, derive_seed(ctx.cfg.seed, name), group="base")
    return x, eps


def run_protonet(ctx: RunContext, lg: Learngene, tasks: list[TargetTask]) -> tuple[list[TaskResult], dict]:
    p = ctx.cfg.baselines.protonet
    spec, _ = spec_for(ctx, lg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(ctx.cfg.seed, "protonet-init"))
        net = ConvNet(spec)
    module = ProtoNetModule(net, p.ways, p.lr)

    def loader():
        x, eps = _episodes(ctx, "protonet-episodes", p.episodes, p.ways, p.shots, p.queries)
        return EpisodeLoader(x, eps, ctx.augment, derive_seed(ctx.cfg.seed, "protonet-aug"))

    meta_time = _meta_train(ctx, "protonet", net, module, loader)
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
    return gather(results), {
        "parameters": n,
        "inherited_parameters": 0,
        "meta_train_time_s": round(meta_time, 2),
    }


def run_maml(ctx: RunContext, lg: Learngene, tasks: list[TargetTask]) -> tuple[list[TaskResult], dict]:
    m = ctx.cfg.baselines.maml
    ways = ctx.cfg.individual.ways
    spec, _ = spec_for(ctx, lg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(ctx.cfg.seed, "maml-init"))
        net = ConvNet(spec)
    module = MamlModule(net, m.inner_lr, m.inner_steps, m.first_order, m.lr)

    def loader():
        x, eps = _episodes(ctx, "maml-episodes", m.iterations * m.meta_batch, ways, m.shots, m.queries)
        return EpisodeLoader(x, eps, ctx.augment, derive_seed(ctx.cfg.seed, "maml-aug"), m.meta_batch)

    meta_time = _meta_train(ctx, "maml", net, module, loader)
    module.net = net.to(ctx.device)
    results = []
    for t in my_share(tasks):
        start = time.perf_counter()
        xs = ctx.augment.eval(ctx.image_set.x_train[t.train_idx].to(ctx.device))
        x_test = ctx.augment.eval(test_images(ctx, t).to(ctx.device))
        pred = module.predict_task(xs, t.train_y.to(ctx.device), x_test, m.test_steps).cpu()
        acc = float((pred == t.test_y).float().mean())
        results.append(TaskResult(t.seed, t.index, list(t.classes), acc, time.perf_counter() - start))
    info = {"parameters": net.num_parameters(), "inherited_parameters": 0, "meta_train_time_s": round(meta_time, 2),
            "first_order": bool(m.first_order)}  # fmt: skip
    return gather(results), info
