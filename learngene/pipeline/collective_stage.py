"""Stage 1: the collective model learns the task stream and grows, task by task.

For each task: grow (except before the first), build a fresh Trainer (new parameter shapes mean a
new optimizer and a new DDP wrapper), fit, consolidate EWC, evaluate, checkpoint. After each task the
checkpoint, ``collective/metrics.json`` and ``collective/manifest.json`` are written atomically; a run
that is killed resumes at the first unfinished task, rebuilding the architecture from the manifest's
last checkpoint before loading its weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from learngene.callbacks.gradient_stats import GradientStatsCallback, truncate_rows
from learngene.core.continual_metrics import continual_summary
from learngene.core.convnet import ConvNet, ConvNetSpec, load_state_checked, scale_width, vgg_spec
from learngene.core.ewc import EWC
from learngene.core.open_world import open_world_metrics
from learngene.core.widening import deepen, grow_head, parse_schedule, widen
from learngene.datamodules.loaders import predict
from learngene.datamodules.sequential_tasks import SequentialTasksDataModule
from learngene.datamodules.task_stream import make_task_stream
from learngene.errors import CheckpointError
from learngene.lightning_modules.collective_module import CollectiveModule
from learngene.pipeline.context import RunContext
from learngene.utils import dist
from learngene.utils.io import atomic_torch_save, atomic_write_json, read_json
from learngene.utils.seeding import derive_seed

log = logging.getLogger("learngene")
MANIFEST_FORMAT = "learngene-suite/collective-manifest"
CHECKPOINT_FORMAT = "learngene-suite/collective-checkpoint"


def fingerprint(cfg) -> dict:
    """The config that determines stage 1's results; a resumed run must match it."""
    keep = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model", "collective")}
    keep["collective"].pop("keep_checkpoints", None)
    keep["collective"].pop("eval_batch_size", None)
    keep["data"].pop("on_device", None)
    keep["seed"] = cfg.seed
    keep["tau"] = cfg.criterion.tau
    keep["gradient_every_n_steps"] = cfg.callbacks.gradient_stats.every_n_steps
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"digest": digest, "config": keep}


def make_stream(cfg, image_set):
    c = cfg.collective
    return make_task_stream(
        image_set.groups["base"], c.n_tasks, c.classes_per_task, cfg.seed, c.replacement,
        open_world=image_set.groups["open_world"], open_world_enters_at=c.open_world_enters_at,
    )  # fmt: skip


def initial_net(cfg, image_set, head_size: int) -> ConvNet:
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "collective-init"))
        return ConvNet(
            vgg_spec(
                [scale_width(w, m.width_mult) for w in m.widths],
                pool_after=list(m.pool_after),
                input_size=cfg.data.image_size,
                in_channels=image_set.channels,
                hidden=[scale_width(h, m.width_mult) for h in m.hidden],
                num_classes=head_size,
                dropout=m.dropout,
            )
        )


def head_size(cfg, dm: SequentialTasksDataModule, t: int) -> int:
    if cfg.collective.labels == "relative":
        return len(dm.image_set.groups["base"])  # the original's shared 64-way head
    if cfg.collective.head == "fixed":
        return len(dm.order)
    return len(dm.classes_seen(t))


def save_checkpoint(path: Path, t: int, net: ConvNet, ewc: EWC | None, order: list[int]) -> None:
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "task": t,
            "spec": net.spec.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "ewc": ewc.state_dict() if ewc else None,
            "head_order": order,
        },
        path,
    )


def load_checkpoint(path: Path) -> tuple[ConvNet, dict]:
    """Rebuild the network a checkpoint was written by and load its weights (shape-checked)."""
    if not path.is_file():
        raise CheckpointError(
            f"collective checkpoint {path} is missing; the run directory is incomplete (never falling back to a "
            f"random network). Re-run stage 1 or point from_run at a complete run"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a collective checkpoint of this suite")
    net = ConvNet(ConvNetSpec.from_dict(ckpt["spec"]))
    load_state_checked(net, ckpt["state_dict"], str(path))
    return net, ckpt


def read_manifest(path: Path) -> dict | None:
    if not path.exists():
        return None
    m = read_json(path)
    if m.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path} is not a collective manifest of this suite")
    return m


def final_checkpoint(ctx_source: Path, after_task: int | None = None) -> tuple[ConvNet, dict, dict]:
    """The collective network after ``after_task`` (default: the last finished task) of a run directory."""
    manifest = read_manifest(ctx_source / "collective" / "manifest.json")
    if manifest is None or not manifest["tasks"]:
        raise CheckpointError(
            f"no finished collective run under {ctx_source} (collective/manifest.json missing or empty); run "
            f"stage=collective first or set from_run to a finished run directory"
        )
    entries = {e["task"]: e for e in manifest["tasks"]}
    t = max(entries) if after_task is None else after_task
    if t not in entries:
        raise CheckpointError(
            f"criterion.after_task={t}, but the collective run finished tasks 0..{max(entries)}"
        )
    net, ckpt = load_checkpoint(ctx_source / entries[t]["checkpoint"])
    return net, ckpt, manifest


@torch.no_grad()
def evaluate(net: ConvNet, dm: SequentialTasksDataModule, t: int, relative: int | None, augment, device,
             batch_size: int) -> tuple[list[float], dict]:  # fmt: skip
    """Accuracy on the test images of every task j <= t, and open-world metrics (one forward per class)."""
    seen = dm.classes_seen(t)
    known_x = dm.known_images(t)
    logits = predict(net, known_x, augment, batch_size, device)
    if relative:
        logits = logits[:, :relative]
    by_class, start = {}, 0
    for c in seen:
        n = len(dm.test_idx[c])
        by_class[c] = logits[start : start + n]
        start += n
    row = []
    for j in range(t + 1):
        task = dm.stream[j]
        lg = torch.cat([by_class[c] for c in task.classes])
        y = torch.cat([torch.full((len(by_class[c]),), dm.label(c, task)) for c in task.classes])
        row.append(float((lg.argmax(1).cpu() == y).float().mean()))
    unknown = dm.unknown_images(t)
    ow = {}
    if len(unknown):
        u = predict(net, unknown, augment, batch_size, device)
        ow = open_world_metrics(logits.cpu(), (u[:, :relative] if relative else u).cpu())
    return row, ow


def run_collective(ctx: RunContext) -> ConvNet:
    cfg = ctx.cfg
    c = cfg.collective
    out = ctx.path("collective")
    image_set = ctx.image_set
    stream = make_stream(cfg, image_set)
    dm = SequentialTasksDataModule(
        image_set,
        stream,
        c.batch_size,
        ctx.augment,
        c.labels,
        c.train_per_class,
        cfg.seed,
        cfg.data.on_device,
    )
    fp = fingerprint(cfg)
    schedule = (
        parse_schedule(cfg.model.growth.schedule, cfg.model.width_mult) if cfg.model.growth.enabled else []
    )
    relative = c.classes_per_task if c.labels == "relative" else None
    csv_path = ctx.path("gradient_stats.csv")
    manifest_path = out / "manifest.json"
    manifest = read_manifest(manifest_path)
    ewc = EWC(c.ewc.lam, c.ewc.gamma) if c.ewc.enabled else None
    if manifest is not None:
        if manifest["fingerprint"]["digest"] != fp["digest"]:
            differ = sorted(
                k for k in fp["config"] if fp["config"][k] != manifest["fingerprint"]["config"].get(k)
            )
            raise CheckpointError(
                f"{out} holds a collective run with another configuration (differs in: {differ}); use a new output "
                f"directory (hydra.run.dir=...) or the original settings to resume"
            )
        done = manifest["tasks"]
    else:
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "fingerprint": fp, "n_tasks": c.n_tasks,
            "stream": [list(task.classes) for task in stream], "class_names": image_set.class_names,
            "head_order": dm.order, "labels": c.labels, "tau": cfg.criterion.tau, "tasks": [],
        }  # fmt: skip
        done = []
    metrics_path = out / "metrics.json"
    old_metrics = read_json(metrics_path) if (done and metrics_path.exists()) else {}
    R: list[list[float]] = [r[: i + 1] for i, r in enumerate(old_metrics.get("accuracy_matrix", []))][
        : len(done)
    ]
    open_world: list[dict] = old_metrics.get("open_world", [])[: len(done)]
    params: list[int] = old_metrics.get("parameters", [])[: len(done)]
    if done:
        net, ckpt = load_checkpoint(ctx.path(done[-1]["checkpoint"]))
        if ewc and ckpt.get("ewc"):
            ewc.load_state_dict(ckpt["ewc"])
        start = done[-1]["task"] + 1
        log.info("collective: resuming at task %d of %d (%s)", start, c.n_tasks, manifest_path)
    else:
        net, start = initial_net(cfg, image_set, head_size(cfg, dm, 0)), 0
    if dist.is_rank_zero():
        truncate_rows(csv_path, start)
    dist.barrier()
    device = ctx.device
    from rich.progress import Progress

    with Progress(transient=False, disable=not dist.is_rank_zero()) as progress:
        bar = progress.add_task("collective", total=c.n_tasks, completed=start)
        for t in range(start, c.n_tasks):
            t0 = time.perf_counter()
            L.seed_everything(derive_seed(cfg.seed, "collective-task", t), workers=True, verbose=False)
            growth = None
            if t > 0 and t - 1 < len(schedule):
                growth = apply_growth(
                    net, schedule[t - 1], ewc, derive_seed(cfg.seed, "grow", t), cfg.model.growth.noise
                )
            if c.labels == "global" and c.head == "growing":
                n_new = head_size(cfg, dm, t) - net.head.out_features
                if n_new > 0:
                    grow_head(net, n_new, torch.Generator().manual_seed(derive_seed(cfg.seed, "head", t)))
                    if ewc:
                        ewc.sync_new_parameters(net)
            dm.set_task(t)
            module = CollectiveModule(
                net,
                t,
                c.lr,
                c.momentum,
                c.weight_decay,
                ewc,
                relative,
                channels_last=cfg.trainer.channels_last,
                compile=cfg.trainer.compile,
            )
            callbacks: list = []
            if cfg.callbacks.gradient_stats.enabled:
                callbacks.append(
                    GradientStatsCallback(
                        csv_path, cfg.criterion.tau, t, cfg.callbacks.gradient_stats.every_n_steps
                    )
                )
            trainer = ctx.make_trainer(c.epochs, callbacks, logger=ctx.loggers or False)
            trainer.fit(module, datamodule=dm)
            net = module.net.to("cpu")
            if ewc:
                ewc.consolidate(
                    net.to(device), dm.fisher_batches(t), c.ewc.fisher_samples, c.ewc.fisher,
                    generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "fisher", t)), classes=relative,
                )  # fmt: skip
            row, ow = evaluate(net.to(device), dm, t, relative, ctx.augment, device, c.eval_batch_size)
            net = net.to("cpu")
            R.append(row)
            open_world.append({"task": t, **ow})
            params.append(net.num_parameters())
            elapsed = time.perf_counter() - t0
            ckpt_rel = f"collective/task_{t:02d}.pt"
            if dist.is_rank_zero():
                save_checkpoint(ctx.path(ckpt_rel), t, net, ewc, dm.order)
                manifest["tasks"].append({
                    "task": t, "classes": list(stream[t].classes), "widths": net.widths,
                    "block_names": net.block_names, "head_size": net.head.out_features, "growth": growth,
                    "checkpoint": ckpt_rel, "parameters": params[-1], "time_s": round(elapsed, 2),
                    "processes": trainer.world_size,
                    "gradient_stats_rank_disagreement": callbacks[0].rank_disagreement if callbacks else None,
                })  # fmt: skip
                write_metrics(metrics_path, R, open_world, params, net)
                atomic_write_json(manifest_path, manifest)
                prune_checkpoints(ctx, manifest, cfg)
            dist.barrier()
            summary = {"collective/test/avg_acc": sum(row) / len(row), "collective/test/acc_current": row[-1],
                       "collective/params": params[-1],
                       **{f"collective/open_world/{k}": v for k, v in ow.items()}}  # fmt: skip
            ctx.log_metrics(summary, step=t, step_key="collective/task")
            log.info(
                "collective task %d/%d classes=%s acc(current)=%.3f avg=%.3f auroc_msp=%s params=%.2fM (%.0fs)",
                t + 1, c.n_tasks, list(stream[t].classes), row[-1], sum(row) / len(row),
                f"{ow['auroc_msp']:.3f}" if "auroc_msp" in ow else "n/a", params[-1] / 1e6, elapsed,
            )  # fmt: skip
            progress.advance(bar)
    return net


def apply_growth(net: ConvNet, step: dict, ewc: EWC | None, seed: int, noise: float) -> dict:
    g = torch.Generator().manual_seed(seed)
    if step["op"] == "deepen":
        n_before = len(net.blocks)
        name = deepen(net, step["after"])
        if ewc:
            after = step["after"]
            renamed = {}
            for key in list(ewc.anchor):
                parts = key.split(".")
                if parts[0] == "blocks" and int(parts[1]) > after:
                    renamed[key] = ".".join(["blocks", str(int(parts[1]) + 1), *parts[2:]])
            ewc.sync_new_parameters(net, renamed)
        return {"op": "deepen", "after": step["after"], "name": name, "blocks": [n_before, len(net.blocks)]}
    wmap = widen(net, step["block"], step["units"], g, noise)
    if ewc:
        ewc.widen(wmap)
    return {"op": "widen", "block": wmap.block_name, "from": wmap.old_width, "to": wmap.new_width}


def write_metrics(path: Path, R, open_world, params, net: ConvNet) -> None:
    T = len(R)
    full = [[R[i][j] if j <= i else None for j in range(T)] for i in range(T)]
    summary = continual_summary(R)
    summary["accuracy_matrix"] = full
    summary["open_world"] = open_world
    summary["parameters"] = params
    summary["final_widths"] = net.widths
    summary["open_world_definition"] = (
        "known = test images of the base classes seen so far, unknown = test images of the open-world classes "
        "not yet learned; scores: max softmax probability (msp) and logsumexp of the logits (energy); "
        "AUROC with known as positive; fpr95 = false-positive rate at 95% true-positive rate"
    )
    atomic_write_json(path, summary)


def prune_checkpoints(ctx: RunContext, manifest: dict, cfg) -> None:
    if cfg.collective.keep_checkpoints != "last":
        return
    keep_task = cfg.criterion.after_task
    for e in manifest["tasks"][:-1]:
        if e["task"] != keep_task:
            p = ctx.path(e["checkpoint"])
            if p.exists():
                p.unlink()
