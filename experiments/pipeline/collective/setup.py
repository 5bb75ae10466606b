"""What a collective run is made of: its first network, its head size, its fingerprint."""

from __future__ import annotations

import hashlib
import json

import torch
from omegaconf import OmegaConf

from datamodules.sequential_tasks import SequentialTasksDataModule
from experiments.pipeline import run_files
from experiments.pipeline.collective.settings import CollectiveSettings
from experiments.pipeline.plan import joint_plan
from learngene_core.backbones.base import BlockNet, build_net
from learngene_core.data.image_set import ImageSet
from learngene_core.data.task_stream import StreamTask
from learngene_core.utils.seeding import derive_seed
from lightning_modules.lr_schedules import resolved_node

# builder nodes added after runs had recorded their fingerprints: left out while they build the default class
DEFAULT_EWC = "learngene_core.ewc.EWC"
DEFAULT_STREAM = "datamodules.sequential_tasks.SequentialTasksDataModule"
DEFAULT_JOINT = "datamodules.joint_stream.JointDataModule"
# keys of the collective node that do not change stage 1's results (a resumed run may differ in them)
NOT_RESULT_KEYS = ("keep_checkpoints", "eval_batch_size", "seeds")


def fingerprint(cfg, seed: int) -> dict:
    """The config that determines stage 1's results for collective seed ``seed``; a resume must match it."""
    keep = {"data": run_files.data_identity(cfg)}
    keep |= {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "collective")}
    for k in NOT_RESULT_KEYS:
        keep["collective"].pop(k, None)
    # keys added with the joint ancestor: left out where they change nothing, so earlier continual runs resume
    if keep["collective"].get("lr_schedule", 0) is None:
        if keep["collective"].get("mode") == "joint":  # the default it stands for
            keep["collective"]["lr_schedule"] = resolved_node(None, "joint")
        else:
            keep["collective"].pop("lr_schedule")
    if keep["collective"].get("mode") != "joint":
        keep["collective"].pop("joint_growth", None)
    built = {m: {k: v for k, v in node.items() if k != "on_device"}
             for m, node in (keep["collective"].get("datamodule") or {}).items()}  # fmt: skip
    if built == _default_datamodules(keep["collective"]):
        keep["collective"].pop("datamodule")  # the default, built from keys the fingerprint holds
    ewc = keep["collective"].get("ewc") or {}
    if ewc.get("penalty") == {"_target_": DEFAULT_EWC, "lam": ewc.get("lam"), "gamma": ewc.get("gamma")}:
        ewc.pop("penalty")  # the default, built from lam and gamma, which the fingerprint holds
    keep["seed"] = seed
    keep["criterion"] = {k: cfg.criterion[k] for k in ("tau", "probe_images", "fisher_samples")}
    options = {k: v for k, v in OmegaConf.to_container(cfg.criterion.get("options") or OmegaConf.create({}),
                                                       resolve=True).items() if v}  # fmt: skip
    if options:  # left out when nothing is set, so runs from before the key resume
        keep["criterion"]["options"] = options
    keep["trainer"] = run_files.trainer_numerics(cfg)
    keep["compute"] = OmegaConf.to_container(cfg.compute, resolve=True)
    keep["gradient_every_n_steps"] = OmegaConf.select(cfg, "callbacks.criterion_stats.every_n_steps")
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"digest": digest, "config": keep}


def make_datamodule(ctx, stream: list[StreamTask], seed: int) -> SequentialTasksDataModule:
    """The mode's stream DataModule (``collective.datamodule.<mode>``), completed with the data, the stream, the
    augmentation and the seed (and in joint mode with the joint plan)."""
    s = ctx.collective
    plan = {"plan": joint_plan(ctx.cfg, ctx.image_set, seed)} if s.mode == "joint" else {}
    return s.datamodule(image_set=ctx.image_set, stream=stream, augment=ctx.augment, seed=seed, **plan)


def _default_datamodules(c: dict) -> dict:
    """``collective.datamodule`` as shipped, for the collective settings ``c`` (``on_device`` left out)."""
    per = {"_partial_": True, "train_per_class": c.get("train_per_class")}
    seq = {"_target_": DEFAULT_STREAM, **per, "batch_size": c.get("batch_size"), "labels": c.get("labels")}
    return {"continual": seq, "joint_phases": seq, "joint": {"_target_": DEFAULT_JOINT, **per}}


def initial_net(s: CollectiveSettings, in_channels: int, head: int, seed: int) -> BlockNet:
    """The backbone ``model.net`` builds, seeded, for this data (input size, channels) and head size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "collective-init"))
        return s.net(input_size=s.input_size, in_channels=in_channels, num_classes=head)


def final_net(
    s: CollectiveSettings, in_channels: int, head: int, seed: int, schedule: list[dict]
) -> BlockNet:
    """The architecture the growth ``schedule`` ends at (the continual run's last: pass its first n_tasks - 1
    entries), freshly initialised (seeded): the joint ancestor without growth (``collective.joint_growth=false``)
    trains it from the start."""
    from experiments.pipeline.collective.grow import apply_growth

    net = initial_net(s, in_channels, head, seed)
    if not schedule:
        return net
    for i, step in enumerate(schedule):
        apply_growth(net, step, None, derive_seed(seed, "grow", i + 1), 0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "collective-init-final"))
        return build_net(net.spec)


def head_size(s: CollectiveSettings, dm: SequentialTasksDataModule, t: int) -> int:
    if s.labels == "relative":
        return len(dm.image_set.groups["base"])  # the original's shared 64-way head
    if s.head == "fixed":
        return len(dm.order)
    return len(dm.classes_seen(t))


def probe_images(image_set: ImageSet, n: int, seed: int) -> torch.Tensor:
    """A fixed set of ``n`` base-class test images (uint8) for the representation statistics."""
    base = torch.as_tensor(image_set.groups["base"])
    candidates = torch.nonzero(torch.isin(image_set.y_test, base)).flatten()
    g = torch.Generator().manual_seed(derive_seed(seed, "probe"))
    pick = candidates[torch.randperm(len(candidates), generator=g)[:n]].sort().values
    return image_set.x_test[pick]
