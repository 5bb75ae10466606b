"""What a collective run is made of: its task stream, its first network, its head size, its fingerprint."""

from __future__ import annotations

import hashlib
import json

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.sequential_tasks import SequentialTasksDataModule
from experiments.pipeline import run_files
from learngene_core.backbones.base import BlockNet
from learngene_core.data.image_set import ImageSet
from learngene_core.data.task_stream import StreamTask, joint_phases, make_task_stream
from learngene_core.utils.seeding import derive_seed

# keys of the collective node that do not change stage 1's results (a resumed run may differ in them)
NOT_RESULT_KEYS = ("keep_checkpoints", "eval_batch_size", "seeds")


def fingerprint(cfg, seed: int) -> dict:
    """The config that determines stage 1's results for collective seed ``seed``; a resume must match it."""
    keep = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model", "collective")}
    for k in NOT_RESULT_KEYS:
        keep["collective"].pop(k, None)
    keep["data"].pop("on_device", None)
    keep["seed"] = seed
    keep["criterion"] = {k: cfg.criterion[k] for k in ("tau", "probe_images", "fisher_samples")}
    keep["trainer"] = run_files.trainer_numerics(cfg)
    keep["compute"] = OmegaConf.to_container(cfg.compute, resolve=True)
    keep["gradient_every_n_steps"] = OmegaConf.select(cfg, "callbacks.criterion_stats.every_n_steps")
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"digest": digest, "config": keep}


def make_stream(cfg, image_set: ImageSet, seed: int) -> list[StreamTask]:
    """The continual task stream; in ``joint`` mode, the joint phases with the same number of sample-steps."""
    c = cfg.collective
    joint = c.mode == "joint"
    stream = make_task_stream(
        image_set.groups["base"], c.n_tasks, c.classes_per_task, seed, c.replacement or joint,
        open_world=image_set.groups["open_world"], open_world_enters_at=c.open_world_enters_at,
    )  # fmt: skip
    if not joint:
        return stream
    dm = SequentialTasksDataModule(
        image_set, stream, train_per_class=c.train_per_class, seed=seed, on_device=False
    )
    return joint_phases(stream, image_set.groups["base"], [dm.task_size(t.index) for t in stream])


def make_datamodule(
    cfg, image_set: ImageSet, stream: list[StreamTask], augment, seed: int
) -> SequentialTasksDataModule:
    c = cfg.collective
    return SequentialTasksDataModule(
        image_set, stream, c.batch_size, augment, c.labels, c.train_per_class, seed, cfg.data.on_device
    )


def initial_net(cfg, image_set: ImageSet, head: int, seed: int) -> BlockNet:
    """The backbone ``model.net`` builds, seeded, for this data (input size, channels) and head size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "collective-init"))
        return instantiate(cfg.model.net)(
            input_size=cfg.data.image_size, in_channels=image_set.channels, num_classes=head
        )


def head_size(cfg, dm: SequentialTasksDataModule, t: int) -> int:
    if cfg.collective.labels == "relative":
        return len(dm.image_set.groups["base"])  # the original's shared 64-way head
    if cfg.collective.head == "fixed":
        return len(dm.order)
    return len(dm.classes_seen(t))


def probe_images(image_set: ImageSet, n: int, seed: int) -> torch.Tensor:
    """A fixed set of ``n`` base-class test images (uint8) for the representation statistics."""
    base = torch.as_tensor(image_set.groups["base"])
    candidates = torch.nonzero(torch.isin(image_set.y_test, base)).flatten()
    g = torch.Generator().manual_seed(derive_seed(seed, "probe"))
    pick = candidates[torch.randperm(len(candidates), generator=g)[:n]].sort().values
    return image_set.x_test[pick]
