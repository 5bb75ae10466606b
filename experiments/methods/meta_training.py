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
from experiments.pipeline.context import RunContext
from learngene_core.backbones.base import BlockNet, load_state_checked
from learngene_core.data.target_tasks import make_episodes
from learngene_core.errors import CheckpointError
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_torch_save
from learngene_core.utils.seeding import derive_seed


def digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def meta_train(ctx: RunContext, name: str, identity: dict, net: BlockNet, module, datamodule) -> float:
    """Meta-train ``module`` once (rank 0; cached for resumes); every rank then loads the weights."""
    key = digest(identity)
    path = ctx.path("individual", f"{name}-{key}.pt")
    state = None
    if dist.is_rank_zero():
        state = cached_state(path)
        if state is None:
            trainer = ctx.make_trainer(1, logger=False, single_device=True)
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            state = {"state_dict": net.cpu().state_dict(), "train_time_s": time.perf_counter() - start,
                     "identity": identity}  # fmt: skip
            atomic_torch_save(state, path)
    dist.barrier()
    if state is None:
        state = cached_state(path)
    load_state_checked(net, state["state_dict"], str(path))
    return float(state["train_time_s"])


def cached_state(path) -> dict | None:
    """The cached meta-trained state, or None when absent; a damaged file is an error naming it."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} (meta-trained weights) is damaged ({type(err).__name__}); delete it and rerun: it is retrained"
        ) from None


def episodes_datamodule(ctx: RunContext, name: str, n: int, ways: int, shots: int, queries: int,
                        meta_batch: int = 1) -> EpisodesDataModule:  # fmt: skip
    seed = ctx.cfg.seed
    eps = make_episodes(
        ctx.image_set, n, ways, shots, queries, derive_seed(seed, f"{name}-episodes"), group="base"
    )
    return EpisodesDataModule(ctx.image_set, eps, ctx.augment, derive_seed(seed, f"{name}-aug"), meta_batch,
                              ctx.cfg.data.on_device)  # fmt: skip


def seeded_net(spec, seed: int, name: str) -> BlockNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, f"{name}-init"))
        return BlockNet(spec)
