"""Stage 1: the collective model learns the task stream and grows, task by task, once per collective seed.

For each task: grow (except before the first), fit with a fresh Trainer (new parameter shapes mean a
new optimizer and a new DDP wrapper), consolidate EWC, evaluate, record. After each task the
checkpoint, ``metrics.json`` and ``manifest.json`` of ``collective/seed_<s>/`` are written atomically;
a run that is killed resumes at the first unfinished task, rebuilding the architecture from the
manifest's last checkpoint before loading its weights. Each task's randomness is seeded from
(collective seed, task), so a resumed run ends where an uninterrupted one does.

``collective.mode=joint`` runs the same loop over the chunks of one sample stream (datamodules/joint_stream.py)
with one optimizer and LR schedule for the whole run (collective/joint.py), saved in every checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from datamodules.joint_stream import JointDataModule
from datamodules.sequential_tasks import SequentialTasksDataModule
from experiments.pipeline import run_files
from experiments.pipeline.collective.evaluate import evaluate
from experiments.pipeline.collective.fit import fit_task
from experiments.pipeline.collective.grow import grow
from experiments.pipeline.collective.joint import RunOptimizer
from experiments.pipeline.collective.record import (
    MODE_NOTES,
    CollectiveHistory,
    prune_checkpoints,
    record_task,
)
from experiments.pipeline.collective.setup import (
    final_net,
    fingerprint,
    head_size,
    initial_net,
    make_datamodule,
    probe_images,
)
from experiments.pipeline.console import stage_progress
from experiments.pipeline.context import RunContext
from experiments.pipeline.plan import make_stream
from learngene_core.backbones.base import BlockNet
from learngene_core.criterion.records import truncate_rows
from learngene_core.data.task_stream import StreamTask
from learngene_core.errors import CheckpointError
from learngene_core.ewc import EWC
from learngene_core.utils import dist
from learngene_core.utils.seeding import derive_seed

log = logging.getLogger("learngene")


def run_collective(ctx: RunContext) -> None:
    for seed in ctx.collective_seeds:
        run_collective_seed(ctx, seed)


def _start_manifest(ctx: RunContext, seed: int, fp: dict, stream, dm) -> dict:
    s = ctx.collective
    manifest = {
        "format": run_files.MANIFEST_FORMAT, "version": run_files.MANIFEST_VERSION, "fingerprint": fp,
        "collective_seed": seed, "mode": s.mode, "n_tasks": s.n_tasks,
        "stream": [list(task.classes) for task in stream], "class_names": ctx.image_set.class_names,
        "head_order": dm.order, "labels": s.labels, "tau": s.tau, "tasks": [],
    }  # fmt: skip
    if isinstance(dm, JointDataModule):
        plan = dm.plan
        manifest["joint"] = {
            "images_per_pass": plan.n_images, "total_samples": plan.total, "passes": plan.passes,
            "batch_size": plan.batch_size, "optimizer_steps": plan.steps,
            "task_steps": [[plan.chunk(t).start, plan.chunk(t).stop] for t in range(plan.n_tasks)],
            "growth": s.joint_growth, "lr_schedule": s.lr_schedule_node,
            "note": MODE_NOTES["joint"],
        }  # fmt: skip
    return manifest


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_fingerprint(out, manifest: dict, fp: dict) -> None:
    if manifest["fingerprint"]["digest"] == fp["digest"]:
        return
    new, old = _leaves(fp["config"]), _leaves(manifest["fingerprint"]["config"])
    differ = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
    raise CheckpointError(
        f"{out} holds a collective run with another configuration (differs in: {differ}); use a new output "
        f"directory (paths.output_dir=... or hydra.run.dir=...) or the original settings to resume"
    )


@dataclass
class SeedRun:
    """One collective seed's run: what is fixed for the run, and the state after its last finished task."""

    seed: int
    out: Path
    stream: list[StreamTask]
    dm: SequentialTasksDataModule
    schedule: list  # the growth schedule still to apply (empty: the architecture is fixed)
    relative: int | None  # relative labels: classes per task; None: global labels
    csv_path: Path
    manifest: dict
    ewc: EWC | None
    history: CollectiveHistory
    probe_x: torch.Tensor | None
    net: BlockNet
    run_opt: RunOptimizer | None  # joint: the run's one optimizer and schedule
    start: int  # the first task still to run
    step: int  # the logging step the last finished task ended at


def run_collective_seed(ctx: RunContext, seed: int) -> BlockNet:
    """Resume (or start) collective seed ``seed`` and run its remaining tasks; returns the final network."""
    seed_run = resume_or_start(ctx, seed)
    n_tasks = ctx.collective.n_tasks
    with stage_progress(disable=not dist.is_rank_zero()) as progress:
        ctx.progress = progress
        bar = progress.add_task(f"collective seed {seed}", total=n_tasks, completed=seed_run.start, rate="")
        for t in range(seed_run.start, n_tasks):
            run_task(ctx, seed_run, t)
            progress.advance(bar)
    ctx.progress = None
    return seed_run.net


def resume_or_start(ctx: RunContext, seed: int) -> SeedRun:
    """The seed's stream, data and growth schedule; its network, EWC, history and optimizer from the manifest's last
    checkpoint when tasks are done (the configuration must match the one they were run with), else the first
    network (the final architecture in joint mode without growth)."""
    s = ctx.collective
    out = ctx.collective_dir(seed, own=True)
    image_set = ctx.image_set
    stream = make_stream(ctx.cfg, image_set, seed)
    dm = make_datamodule(ctx, stream, seed)
    fp = fingerprint(ctx.cfg, seed)
    schedule = list(s.schedule)
    joint = isinstance(dm, JointDataModule)
    # joint without growth: the final architecture from the start, nothing grown between its tasks
    fixed_arch = joint and not s.joint_growth
    csv_path = out / "gradient_stats.csv"
    manifest = run_files.read_manifest(out / "manifest.json")
    ewc = s.ewc() if s.ewc is not None else None
    if manifest is not None:
        _check_fingerprint(out, manifest, fp)
    else:
        manifest = _start_manifest(ctx, seed, fp, stream, dm)
    done = manifest["tasks"]
    metrics_path = out / "metrics.json"
    old_metrics = (
        run_files.read_json_file(metrics_path, "collective metrics")
        if (done and metrics_path.exists())
        else {}
    )
    history = CollectiveHistory(old_metrics, len(done))
    run_opt = None
    if done:
        path = out / done[-1]["checkpoint"]
        net, ckpt = run_files.load_checkpoint(path, expect_task=done[-1]["task"])
        if ewc and ckpt.get("ewc"):
            ewc.load_state_dict(ckpt["ewc"])
        start = done[-1]["task"] + 1
        if joint:
            run_opt = RunOptimizer(s.optimizer, s.lr_schedule, net, dm.plan.steps)
            run_opt.load_state_dict(ckpt.get("optimizer"), str(path))
        if start < s.n_tasks:
            log.info("collective seed %d: resuming at task %d of %d (%s)", seed, start, s.n_tasks, out)
    else:
        if fixed_arch:
            net = final_net(s, image_set.channels, head_size(s, dm, 0), seed, schedule[: s.n_tasks - 1])
        else:
            net = initial_net(s, image_set.channels, head_size(s, dm, 0), seed)
        start = 0
        run_opt = RunOptimizer(s.optimizer, s.lr_schedule, net, dm.plan.steps) if joint else None
    if dist.is_rank_zero():
        truncate_rows(csv_path, start)
    dist.barrier()
    probe_x = probe_images(image_set, s.probe_images, seed) if s.probe_images else None
    return SeedRun(
        seed=seed, out=out, stream=stream, dm=dm, schedule=[] if fixed_arch else schedule,
        relative=s.relative, csv_path=csv_path, manifest=manifest,
        ewc=ewc, history=history, probe_x=probe_x, net=net, run_opt=run_opt, start=start,
        step=done[-1].get("step_end", 0) if done else 0,
    )  # fmt: skip


def run_task(ctx: RunContext, seed_run: SeedRun, t: int) -> None:
    """Task ``t``: seed its randomness from (collective seed, task), grow, fit, consolidate EWC, evaluate, and
    record it (checkpoint, metrics, manifest, written atomically); ``seed_run`` then holds the state after it."""
    s, dm, seed = ctx.collective, seed_run.dm, seed_run.seed
    device = ctx.device
    t0, cpu0 = time.perf_counter(), time.process_time()
    L.seed_everything(derive_seed(seed, "collective-task", t), workers=True, verbose=False)
    head = head_size(s, dm, t) if (s.labels == "global" and s.head == "growing") else None
    growth = grow(seed_run.net, t, seed_run.schedule, seed_run.ewc, seed, s.growth_noise, head)
    if seed_run.run_opt is not None and growth is not None:
        seed_run.run_opt.rebuild(seed_run.net)
    label = f"collective seed {seed} task {t + 1}/{s.n_tasks}"
    fitted = fit_task(
        ctx,
        seed_run.net,
        t,
        dm,
        seed_run.ewc,
        seed_run.csv_path,
        seed_run.probe_x,
        seed_run.step,
        label,
        seed_run.run_opt,
    )
    net, seed_run.step = fitted.net, fitted.step_end
    if seed_run.ewc:
        seed_run.ewc.consolidate(
            net.to(device), dm.fisher_batches(t, samples=s.ewc_fisher_samples), s.ewc_fisher_samples, s.ewc_fisher,
            generator=torch.Generator().manual_seed(derive_seed(seed, "fisher", t)), classes=seed_run.relative,
        )  # fmt: skip
    ev = evaluate(net.to(device), dm, t, seed_run.relative, ctx.augment, device, s.eval_batch_size)
    seed_run.net = net = net.to("cpu")
    history = seed_run.history
    history.add(ev, net.num_parameters())
    elapsed = time.perf_counter() - t0
    if dist.is_rank_zero():
        entry = {"task": t, "classes": list(seed_run.stream[t].classes), "growth": growth, "parameters": history.params[-1],
                 "time_s": round(elapsed, 2), "cpu_time_s": round(time.process_time() - cpu0, 2),
                 "fit_time_s": round(fitted.seconds, 2),
                 "samples": fitted.samples, "processes": fitted.processes, "step_end": fitted.step_end,
                 "gradient_stats_rank_disagreement": fitted.rank_disagreement}  # fmt: skip
        if isinstance(dm, JointDataModule):
            entry["optimizer_steps"] = [dm.plan.chunk(t).start, dm.plan.chunk(t).stop]
        record_task(seed_run.out, t, net, seed_run.ewc, dm.order, seed_run.manifest, entry, history, seed_run.manifest["mode"],
                    seed_run.run_opt.state_dict() if seed_run.run_opt is not None else None)  # fmt: skip
        prune_checkpoints(seed_run.out, seed_run.manifest, s.keep_checkpoints, s.after_task)
    dist.barrier()
    row, trow, ow = ev.class_il, ev.task_il, ev.open_world
    summary = {"collective/test/avg_acc": sum(row) / len(row), "collective/test/acc_current": row[-1],
               "collective/test/task_il_avg_acc": sum(trow) / len(trow), "collective/params": history.params[-1],
               "collective/seed": seed, **{f"collective/open_world/{k}": v for k, v in ow.items()}}  # fmt: skip
    ctx.log_metrics(summary, step=t, step_key="collective/task")
    log.info(
        "collective seed %d task %d/%d classes=%s acc(current)=%.3f class-IL avg=%.3f task-IL avg=%.3f "
        "auroc_msp=%s params=%.2fM (%.0fs)",
        seed, t + 1, s.n_tasks, list(seed_run.stream[t].classes), row[-1], sum(row) / len(row), sum(trow) / len(trow),
        f"{ow['auroc_msp']:.3f}" if "auroc_msp" in ow else "n/a", history.params[-1] / 1e6, elapsed,
    )  # fmt: skip
