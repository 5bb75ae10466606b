"""Stage 2: apply the selection rule to the recorded criterion statistics and write the learngene artifact.

Per collective seed: the statistic named by ``criterion.statistic`` picks the window; every other
recorded statistic's scores and pick are stored next to it (``learngene.json``: ``all_statistics``), so
the report can judge each statistic against the paired gains of every window.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from experiments.pipeline import run_files
from experiments.pipeline.context import RunContext, is_wandb
from experiments.pipeline.objects import build
from learngene_core.artifact import extract_learngene, save_learngene
from learngene_core.criterion.records import read_rows, task_matrix
from learngene_core.criterion.registry import STATISTICS, load_builtin
from learngene_core.criterion.selection import SelectionResult
from learngene_core.errors import CheckpointError
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json

log = logging.getLogger("learngene")


def code_version() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)  # fmt: skip
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from learngene_core import __version__

    return f"learngene-suite {__version__}"


def statistic_matrix(rows: list[dict], name: str, block_names: list[str], cr) -> tuple[np.ndarray, list[int]]:
    """Per-task values (tasks x blocks) of one statistic: complete tasks only, up to ``after_task``."""
    load_builtin()
    stat = STATISTICS.get(name)
    normalise = stat.normalise if stat else None
    S, tasks, _ = task_matrix(rows, name, "conv", cr.epoch_aggregate, block_names, normalise)
    if cr.after_task is not None and len(tasks):
        keep = [i for i, t in enumerate(tasks) if t <= cr.after_task]
        S, tasks = S[keep], [tasks[i] for i in keep]
    if not len(tasks):
        return S, tasks
    complete = ~np.isnan(S).any(axis=1)
    return S[complete], [t for t, ok in zip(tasks, complete) if ok]


def recorded_statistics(rows: list[dict]) -> list[str]:
    """Statistic names recorded for blocks, in registry order (then any others, as found)."""
    load_builtin()
    found = list(dict.fromkeys(r["statistic"] for r in rows if r["layer_type"] == "conv"))
    return [n for n in STATISTICS if n in found] + [n for n in found if n not in STATISTICS]


def run_learngene(ctx: RunContext) -> None:
    for seed in ctx.collective_seeds:
        run_learngene_seed(ctx, seed)


def run_learngene_seed(ctx: RunContext, seed: int) -> SelectionResult:
    cfg = ctx.cfg
    cr = cfg.criterion
    source = ctx.collective_dir(seed)
    net, ckpt, manifest = run_files.final_checkpoint(source, cr.after_task)
    csv_path = source / "gradient_stats.csv"
    rows = read_rows(csv_path)
    if not rows:
        raise CheckpointError(
            f"no criterion statistics in {csv_path}; the collective stage must run with the criterion_stats "
            f"callback (callbacks=default)"
        )
    names = recorded_statistics(rows)
    if cr.statistic not in names:
        raise CheckpointError(
            f"criterion.statistic={cr.statistic!r} was not recorded in {csv_path}; recorded: {names}"
        )
    k = int(cr.k)
    # (stats, block names, k) -> the window
    select: Callable[..., SelectionResult] = build(cr.rule, "criterion.rule")
    by_stat = {}
    for name in names:
        S, tasks = statistic_matrix(rows, name, net.block_names, cr)
        if len(tasks) and np.isfinite(S).all():
            by_stat[name] = (S, tasks, select(S, net.block_names, k=k))
    if cr.statistic not in by_stat:
        raise CheckpointError(
            f"{csv_path}: statistic {cr.statistic!r} has no complete, finite task to select from"
        )
    S, tasks, result = by_stat[cr.statistic]
    start = result.start if cr.window is None else int(cr.window)
    learngene = extract_learngene(net, start, k)
    forced = cr.window is not None  # the window was set by criterion.window, not chosen by the statistic
    stat_info = {
        name: {
            "description": STATISTICS[name].description if name in STATISTICS else None,
            "cadence": STATISTICS[name].cadence if name in STATISTICS else None,
            "normalise": STATISTICS[name].normalise if name in STATISTICS else None,
            "picked": {"start": r.start, "blocks": r.names},
            "window_scores": r.window_scores,
            "layer_scores": r.layer_scores,
            "task_statistics": {"tasks": t_, "values": S_.tolist()},
        }
        for name, (S_, t_, r) in by_stat.items()
    }
    info = {
        "collective_seed": seed,
        "selected": {"start": start, "blocks": learngene.names, "widths": [b.out_channels for b in learngene.blocks],
                     "parameters": learngene.num_parameters(), "forced_by_config": forced,
                     "chosen_by": "criterion.window" if forced else cr.statistic, "rule_choice": result.names},
        "paper_choice": net.block_names[-k:],
        "is_paper_choice": learngene.names == net.block_names[-k:],
        "statistic": cr.statistic,
        "tau": manifest.get("tau"),
        "mode": manifest.get("mode", "continual"),
        "rule": {key: OmegaConf.to_container(cr, resolve=True)[key] for key in
                 ("k", "warmup_tasks", "task_weighting", "epoch_aggregate", "stability")},
        "rule_built": {k: v for k, v in OmegaConf.to_container(cr.rule, resolve=True).items() if k != "_partial_"},
        "scores": result.to_dict(),
        "all_statistics": stat_info,
        "block_names": net.block_names,
        "provenance": {
            "code_version": code_version(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "dataset": manifest["fingerprint"]["config"]["data"],
            "class_sequence": manifest["stream"],
            "class_names": manifest.get("class_names"),
            "seed": cfg.seed,
            "collective_seed": seed,
            "collective_run": str(source),
            "collective_task": ckpt["task"],
            "collective_widths": net.widths,
        },
    }  # fmt: skip
    learngene.meta = {"selected": info["selected"], "statistic": cr.statistic, "seed": cfg.seed,
                      "collective_seed": seed, "collective_task": ckpt["task"],
                      "code_version": info["provenance"]["code_version"]}  # fmt: skip
    out = ctx.learngene_dir(seed, own=True)
    if dist.is_rank_zero():
        save_learngene(learngene, out / "learngene.pt")
        atomic_write_json(out / "learngene.json", info)
        from experiments.pipeline.plots import plot_gradient_heatmap, plot_window_scores

        plots = ctx.path("plots", f"seed_{seed}")
        plot_gradient_heatmap({n: (v[0], v[1], net.block_names) for n, v in by_stat.items()},
                              plots / "gradient_heatmap.png", cr.statistic)  # fmt: skip
        plot_window_scores(result, start, plots / "window_scores.png", cr.statistic)
        for logger in ctx.loggers:
            if is_wandb(logger):
                from experiments.pipeline.wandb_logging import log_learngene_artifact

                log_learngene_artifact(logger, [out / "learngene.pt", out / "learngene.json"],
                                       f"learngene-{cfg.exp_name}-seed{seed}", info["selected"])  # fmt: skip
    dist.barrier()
    forced_note = f"criterion.window forces {'-'.join(info['selected']['blocks'])}; " if forced else ""
    log.info(
        "learngene seed %d: %srule selects %s (score %.4g) from %s over tasks %s; the rule's pick is the paper's "
        "choice (%s): %s",
        seed, forced_note, "-".join(result.names), result.window_scores[result.start], cr.statistic,
        [tasks[i] for i in result.tasks_used], "-".join(net.block_names[-k:]),
        "yes" if result.start == len(net.block_names) - k else "no",
    )  # fmt: skip
    ctx.log_metrics(
        {
            "learngene/window_start": start,
            "learngene/is_paper_choice": float(info["is_paper_choice"]),
            "learngene/collective_seed": seed,
        }  # fmt: skip
    )
    return result
