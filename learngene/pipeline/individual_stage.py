"""Stage 3: the individual model and every baseline, on the same target tasks, seeds and budget.

Results are written per (method, shots) to ``individual/results_raw.json`` as soon as they are done,
so a killed run resumes with the next unfinished method.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

from omegaconf import OmegaConf

from learngene.core.artifact import extract_learngene, load_learngene
from learngene.datamodules.target_tasks import make_target_task_grid
from learngene.pipeline.collective_stage import final_checkpoint
from learngene.pipeline.context import RunContext
from learngene.pipeline.methods.common import TaskResult
from learngene.utils import dist
from learngene.utils.io import atomic_write_json, read_json

log = logging.getLogger("learngene")
RAW = ("individual", "results_raw.json")


def learngene_path(ctx: RunContext):
    """This run's learngene if the learngene stage ran here, else the one of ``from_run``."""
    own = ctx.path("learngene.pt")
    return own if own.exists() else ctx.source_path("learngene.pt")


def target_tasks(ctx: RunContext, shots: int):
    icfg = ctx.cfg.individual
    return make_target_task_grid(
        ctx.image_set,
        icfg.n_tasks,
        icfg.ways,
        shots,
        list(icfg.seeds),
        protocol=icfg.protocol,
        queries=icfg.queries,
    )


def fingerprint(ctx: RunContext, lg_digest: str) -> dict:
    """What determines stage 3's numbers (not which methods run, nor whether tasks are batched)."""
    cfg = ctx.cfg
    keep = {
        "individual": OmegaConf.to_container(cfg.individual, resolve=True),
        "baselines": OmegaConf.to_container(cfg.baselines, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "seed": cfg.seed,
        "width_mult": cfg.model.width_mult,
        "learngene_digest": lg_digest,
    }
    for key in ("batched", "task_batch", "stacking"):
        keep["individual"].pop(key)
    keep["baselines"].pop("methods")
    keep["data"].pop("on_device")
    return {"digest": hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16],
            "config": keep}  # fmt: skip


def load_raw(ctx: RunContext, fp: dict) -> dict:
    """Finished entries of this configuration; results of another configuration are set aside, not reused."""
    raw_path = ctx.path(*RAW)
    if not raw_path.exists():
        return {"fingerprint": fp, "entries": {}}
    raw = read_json(raw_path)
    if raw.get("fingerprint", {}).get("digest") == fp["digest"]:
        return raw
    old = raw.get("fingerprint", {}).get("config", {})
    differ = sorted(k for k in fp["config"] if fp["config"][k] != old.get(k))
    stale = raw_path.with_name(
        f"results_raw.stale-{raw.get('fingerprint', {}).get('digest', 'unknown')}.json"
    )
    if dist.is_rank_zero():
        raw_path.replace(stale)
    dist.barrier()
    log.warning("individual: earlier results in %s were computed with other settings (%s); moved to %s and "
                "recomputing", raw_path, ", ".join(differ) or "unknown", stale.name)  # fmt: skip
    return {"fingerprint": fp, "entries": {}}


def run_individual(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    raw_path = ctx.path(*RAW)
    lg = load_learngene(learngene_path(ctx), cfg.data.image_size, ctx.image_set.channels)
    fp = fingerprint(ctx, lg.content_digest())
    ctx.stage3_digest = fp["digest"]
    raw = load_raw(ctx, fp)
    methods = list(cfg.baselines.methods)
    collective = None
    if {"judgement", "finetune", "linear_probe", "prototype"} & set(methods):
        collective, _, _ = final_checkpoint(ctx.source, lg.meta.get("collective_task"))
    jobs = []
    for shots in cfg.individual.shots:
        for method in methods:
            if method == "judgement":
                for start in range(len(collective.blocks) - lg_k(lg) + 1):
                    jobs.append((method, shots, start))
            else:
                jobs.append((method, shots, None))
    from rich.progress import Progress

    with Progress(disable=not dist.is_rank_zero()) as progress:
        bar = progress.add_task("individual", total=len(jobs))
        for method, shots, window in jobs:
            key = entry_key(method, shots, collective, window, lg_k(lg))
            if key in raw["entries"]:
                progress.advance(bar)
                continue
            tasks = target_tasks(ctx, shots)
            t0 = time.perf_counter()
            if method == "judgement" and window == lg.window_start and lg_key(lg, shots) in raw["entries"]:
                entry = dict(raw["entries"][lg_key(lg, shots)])  # the same model, tasks and seeds: reuse
                entry.update(method="judgement", reused_from="learngene")
            else:
                results, info = run_method(ctx, method, tasks, lg, collective, window)
                entry = {"method": method, "shots": shots, **info, "tasks": [r.to_dict() for r in results]}
            if window is not None:
                entry["window"] = {
                    "start": window,
                    "blocks": collective.block_names[window : window + lg_k(lg)],
                }
            entry["wall_time_s"] = round(time.perf_counter() - t0, 2)
            raw["entries"][key] = entry
            if dist.is_rank_zero():
                atomic_write_json(raw_path, raw)
            accs = [r["acc"] for r in entry["tasks"]]
            log.info("individual %s: mean acc %.3f over %d tasks (%.0fs)", key, sum(accs) / len(accs), len(accs),
                     entry["wall_time_s"])  # fmt: skip
            progress.advance(bar)
    dist.barrier()
    return raw


def lg_k(lg) -> int:
    return len(lg.blocks)


def lg_key(lg, shots: int) -> str:
    return f"learngene@{shots}"


def entry_key(method: str, shots: int, collective, window: int | None, k: int) -> str:
    if method == "judgement":
        return f"judgement:{collective.block_names[window]}-{collective.block_names[window + k - 1]}@{shots}"
    return f"{method}@{shots}"


def run_method(ctx: RunContext, method: str, tasks, lg, collective, window) -> tuple[list[TaskResult], dict]:
    from learngene.pipeline.methods import features, finetune, inherit, meta

    if method == "learngene":
        return inherit.run_inherit(ctx, lg, tasks, inherit=True, name="learngene")
    if method == "scratch":
        return inherit.run_inherit(ctx, lg, tasks, inherit=False, name="scratch")
    if method == "judgement":
        return inherit.run_inherit(
            ctx, extract_learngene(collective, window, lg_k(lg)), tasks, True, "judgement"
        )
    if method == "finetune":
        return finetune.run_finetune(ctx, collective, tasks)
    if method == "linear_probe":
        return features.run_linear_probe(ctx, collective, tasks)
    if method == "prototype":
        return features.run_prototype(ctx, collective, tasks)
    if method == "protonet":
        return meta.run_protonet(ctx, lg, tasks)
    if method == "maml":
        return meta.run_maml(ctx, lg, tasks)
    raise ValueError(f"unknown method {method!r}")
