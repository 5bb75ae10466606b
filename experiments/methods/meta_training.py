"""Meta-training shared by the meta-learning baselines (ProtoNet, MAML): trained once on seeded episodes of
base classes, on rank 0, and cached in ``individual/<method>-<digest>.pt`` (the digest of everything that
determines the weights), so a resumed run -- or another collective seed with the same individual
architecture -- does not train again.
"""

from __future__ import annotations

import hashlib
import json
import time

import torch

from datamodules.episodes import EpisodesDataModule
from experiments.methods.registry import hashed_identity
from experiments.pipeline.context import RunContext
from learngene_core.backbones.base import BlockNet, load_state_checked
from learngene_core.data.target_tasks import make_episodes
from learngene_core.metrics.convergence import convergence
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_torch_save, atomic_write_json, read_torch
from learngene_core.utils.seeding import derive_seed


def digest(identity: dict) -> str:
    blob = json.dumps(hashed_identity(identity), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def meta_train(ctx: RunContext, name: str, identity: dict, net: BlockNet, module, datamodule) -> dict:
    """Meta-train ``module`` once (rank 0; cached for resumes); every rank then loads the weights.

    Returns the meta-training time and the convergence verdict on its loss curve (also written, with the
    curve, to ``individual/<name>-<digest>.json`` and plotted in ``plots/<name>_meta_loss.png``)."""
    key = digest(identity)
    path = ctx.path("individual", f"{name}-{key}.pt")
    state = None
    if dist.is_rank_zero():
        state = cached_state(path)
        if state is None:
            trainer = ctx.make_trainer(1, logger=False, single_device=True, label=f"{name} meta-training")
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            curve = torch.stack(module.loss_curve).float().cpu().tolist() if module.loss_curve else []
            state = {"state_dict": net.cpu().state_dict(), "train_time_s": time.perf_counter() - start,
                     "identity": identity, "loss_curve": curve}  # fmt: skip
            atomic_torch_save(state, path)
            verdict = convergence(curve)
            atomic_write_json(path.with_suffix(".json"), {"loss_curve": curve, **verdict})
            from experiments.pipeline.plots import plot_loss_curve

            plot_loss_curve(
                curve, ctx.path("plots", f"{name}_meta_loss.png"), f"{name} meta-training", verdict
            )
    dist.barrier()
    if state is None:
        state = cached_state(path)
    load_state_checked(net, state["state_dict"], str(path))
    verdict = convergence(state.get("loss_curve", []))
    return {"meta_train_time_s": round(float(state["train_time_s"]), 2), "converged": verdict["converged"],
            "convergence": {k: v for k, v in verdict.items() if k != "rule"}}  # fmt: skip


def cached_state(path) -> dict | None:
    """The cached meta-trained state, or None when absent; a damaged file is an error naming it."""
    if not path.exists():
        return None
    return read_torch(path, missing="", damaged="these meta-trained weights are unusable: delete the file and rerun "
                      "(they are retrained)")  # fmt: skip


def episodes_datamodule(ctx: RunContext, datamodule, name: str, n: int, ways: int, shots: int, queries: int,
                        meta_batch: int = 1) -> EpisodesDataModule:  # fmt: skip
    """``n`` seeded episodes of base classes, batched by ``datamodule`` (the method's partial EpisodesDataModule)."""
    seed = ctx.individual.seed
    eps = make_episodes(
        ctx.image_set, n, ways, shots, queries, derive_seed(seed, f"{name}-episodes"), group="base"
    )
    return datamodule(image_set=ctx.image_set, episodes=eps, augment=ctx.augment,
                      seed=derive_seed(seed, f"{name}-aug"), meta_batch=meta_batch)  # fmt: skip


def episode_limits(key: str, ways: int, ways_key: str, shots: int, queries: int, base) -> None:
    """Meta-training episodes (``ways`` x (``shots`` + ``queries``)) against the base classes the data has."""
    from experiments.pipeline.config_schema import fail

    if ways > base.count:
        fail(
            ways_key,
            ways,
            f"meta-training episodes draw from the {base.count} base classes; use at most {base.count}",
        )
    if shots + queries > base.least_images:
        fail(f"{key}.queries", queries, f"{shots} shots ({key}.shots) + {queries} queries need {shots + queries} "
             f"training images per base class but {base.least_name!r} has {base.least_images}; use {key}.queries <= "
             f"{max(1, base.least_images - shots)}")  # fmt: skip


def seeded_net(spec, seed: int, name: str) -> BlockNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, f"{name}-init"))
        return BlockNet(spec)
