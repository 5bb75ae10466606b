"""Stage 3: the individual model and every method, on the same target tasks, seeds and budget, for every
collective seed's learngene.

Each method plans :class:`~experiments.methods.registry.Job` s; a job's *computation* is keyed by what
determines its numbers (its identity plus the shared stage-3 settings), so equal computations run once:
the selected window's judgement arm is the learngene run, every scratch network is shared by all
collective seeds (it does not depend on stage 1), ProtoNet and MAML train once. Results go to
``individual/results_raw.json`` as soon as each computation is done, so a killed run resumes with the
next one; with ``individual.cache_dir`` finished computations are also shared between runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from experiments.methods.registry import MethodContext, get_method, hashed_identity
from experiments.pipeline import run_files
from experiments.pipeline.console import stage_progress
from experiments.pipeline.context import RunContext
from experiments.pipeline.objects import build
from experiments.pipeline.plan import target_tasks, validation_tasks
from experiments.pipeline.run_files import VALIDATION
from learngene_core.artifact import Learngene, load_learngene
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json

log = logging.getLogger("learngene")
# keys of the stage-3 nodes that do not change the numbers (how tasks are grouped for training, where caches live;
# the shot count is part of every key on its own, so runs with other shot lists share their common computations;
# validation tasks add their own settings to their keys)
NOT_RESULT_KEYS = ("batched", "task_batch", "cache_dir", "shots", "validation")
# the nodes whose values every computation depends on, merged into one mapping (one node before they were split:
# merged, they keep the keys of computations finished before)
SETTINGS_NODES = ("target", "individual_net", "individual")


DEFAULT_DATAMODULE = "datamodules.target_tasks.TargetTasksDataModule"


def shared_settings(ctx: RunContext) -> dict:
    """The stage-3 settings every computation depends on: the individual training, the data, the Trainer's
    numerics (precision, clipping, accumulation, determinism) and the speed options that change rounding."""
    cfg = ctx.cfg
    nodes = [OmegaConf.to_container(cfg[node], resolve=True) for node in SETTINGS_NODES]
    icfg = {k: v for node in nodes for k, v in node.items()}
    assert len(icfg) == sum(map(len, nodes)), f"a key in two of {SETTINGS_NODES}: the merge would drop one"
    for key in NOT_RESULT_KEYS:
        icfg.pop(key, None)
    default_dm = {"_target_": DEFAULT_DATAMODULE, "_partial_": True, "batch_size": icfg["batch_size"],
                  "batching": icfg["batching"]}  # fmt: skip
    if {k: v for k, v in icfg.get("datamodule", {}).items() if k != "on_device"} == default_dm:
        # the default, built from the keys above (as computations were keyed before it)
        icfg.pop("datamodule")
    return {"individual": icfg, "data": run_files.data_identity(cfg), "width_mult": cfg.model.width_mult,
            "trainer": run_files.trainer_numerics(cfg),
            "compute": OmegaConf.to_container(cfg.compute, resolve=True)}  # fmt: skip


def computation_key(identity: dict, shots: int, settings: dict) -> str:
    blob = json.dumps(
        {"identity": hashed_identity(identity), "shots": shots, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def entry_key(method: str, shots: int, seed: int, arm: str | None) -> str:
    return f"{method}{'/' + arm if arm else ''}@{shots}/seed{seed}"


class ComputationCache:
    """Finished computations: this run's results_raw.json, and optionally a folder shared between runs."""

    def __init__(self, raw: dict, shared: Path | None) -> None:
        self.raw, self.shared = raw, shared

    def get(self, key: str) -> dict | None:
        """A finished computation; under data parallelism rank 0 looks it up and every rank gets its answer, so
        that no rank skips a computation the others run (their result gathering would fall out of step)."""
        if key in self.raw["computations"]:
            return self.raw["computations"][key]
        comp = None
        if dist.is_rank_zero() and self.shared is not None and (self.shared / f"{key}.json").exists():
            comp = run_files.read_json_file(self.shared / f"{key}.json", "shared stage-3 result")
        comp = dist.broadcast_object(comp)
        if comp is not None:
            self.raw["computations"][key] = comp
        return comp

    def put(self, key: str, comp: dict) -> None:
        self.raw["computations"][key] = comp
        if self.shared is not None and dist.is_rank_zero():
            atomic_write_json(self.shared / f"{key}.json", comp)


def load_learngenes(ctx: RunContext) -> dict[int, Learngene]:
    return {
        seed: load_learngene(
            ctx.learngene_dir(seed) / "learngene.pt", ctx.cfg.data.image_size, ctx.image_set.channels
        )
        for seed in ctx.collective_seeds
    }


def run_individual(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    raw_path = run_files.raw_results_path(ctx.out)
    raw = run_files.read_raw_results(raw_path)
    shared = Path(str(cfg.individual.cache_dir)).expanduser() if cfg.individual.get("cache_dir") else None
    cache = ComputationCache(raw, shared)
    learngenes = load_learngenes(ctx)
    settings = shared_settings(ctx)
    planners = {
        name: build(node, f"methods.{name}") for name, node in cfg.methods.items()
    }  # each from _target_
    plan = []
    for shots in cfg.target.shots:
        for seed, learngene in learngenes.items():
            for name, planner in planners.items():
                method = get_method(name)
                m = MethodContext(ctx, seed, learngene, int(shots), method.config_identity(cfg.methods[name]))
                for job in planner(m):
                    identity = m.job_identity(job.identity)
                    plan.append((name, int(shots), seed, job, identity, None))
                    if method.validation and cfg.target.validation.n_tasks > 0:
                        plan.append((name, int(shots), seed, job, identity, VALIDATION))
    with stage_progress(disable=not dist.is_rank_zero()) as progress:
        ctx.progress = progress
        bar = progress.add_task("individual", total=len(plan), rate="")
        validation = OmegaConf.to_container(cfg.target.validation, resolve=True)
        for name, shots, seed, job, identity, split in plan:
            key = entry_key(name, shots, seed, job.arm) + (f"/{split}" if split else "")
            if split is not None:
                identity = {**identity, "split": split, split: validation}
            ckey = computation_key(identity, shots, settings)
            progress.update(bar, description=f"individual {key}")
            ctx.progress_label = key
            comp = cache.get(ckey)
            if comp is None:
                tasks = (target_tasks(cfg, ctx.image_set, shots) if split is None
                         else validation_tasks(cfg, ctx.image_set, shots))  # fmt: skip
                t0, cpu0 = time.perf_counter(), time.process_time()
                results, info = job.compute(tasks)
                comp = {"info": info, "tasks": [r.to_dict() for r in results],
                        "wall_time_s": round(time.perf_counter() - t0, 2),
                        "cpu_time_s": round(time.process_time() - cpu0, 2), "first_entry": key}  # fmt: skip
                cache.put(ckey, comp)
                accs = [r["acc"] for r in comp["tasks"]]
                log.info("individual %s: mean acc %.3f over %d tasks (%.0fs)", key, sum(accs) / len(accs), len(accs),
                         comp["wall_time_s"])  # fmt: skip
            raw["entries"][key] = {"method": name, "shots": shots, "collective_seed": seed, "arm": job.arm,
                                   "computation": ckey, **job.extra, **({"split": split} if split else {})}  # fmt: skip
            if dist.is_rank_zero():
                atomic_write_json(raw_path, raw)
            progress.advance(bar)
    ctx.progress = None
    dist.barrier()
    return raw
