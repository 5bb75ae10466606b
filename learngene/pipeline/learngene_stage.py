"""Stage 2: apply the selection rule to the gathered gradient statistics and write the learngene artifact."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from learngene.callbacks.gradient_stats import read_rows, task_matrix
from learngene.core.artifact import extract_learngene, save_learngene
from learngene.core.selection import SelectionResult, select_window
from learngene.errors import CheckpointError
from learngene.pipeline.collective_stage import final_checkpoint
from learngene.pipeline.context import RunContext
from learngene.utils import dist
from learngene.utils.io import atomic_write_json

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
    from learngene import __version__

    return f"learngene-suite {__version__}"


def criterion_statistics(ctx: RunContext, block_names: list[str], statistic: str | None = None):
    """Per-task statistic matrix (tasks x conv blocks) from the run's gradient_stats.csv."""
    cr = ctx.cfg.criterion
    csv_path = ctx.source_path("gradient_stats.csv")
    rows = read_rows(csv_path)
    if not rows:
        raise CheckpointError(
            f"no gradient statistics in {csv_path}; the collective stage must run with "
            f"callbacks.gradient_stats.enabled=true"
        )
    S, tasks, layers = task_matrix(rows, statistic or cr.statistic, "conv", cr.epoch_aggregate, block_names)
    if cr.after_task is not None:
        keep = [i for i, t in enumerate(tasks) if t <= cr.after_task]
        S, tasks = S[keep], [tasks[i] for i in keep]
    complete = ~np.isnan(S).any(axis=1)
    return S[complete], [t for t, ok in zip(tasks, complete) if ok], layers


def run_learngene(ctx: RunContext) -> SelectionResult:
    cfg = ctx.cfg
    cr = cfg.criterion
    net, ckpt, manifest = final_checkpoint(ctx.source, cr.after_task)
    S, tasks, layers = criterion_statistics(ctx, net.block_names)
    result = select_window(S, layers, cr.k, cr.warmup_tasks, cr.task_weighting, cr.stability)
    start = result.start if cr.window is None else int(cr.window)
    lg = extract_learngene(net, start, cr.k)
    forced = cr.window is not None and cr.window != result.start
    info = {
        "selected": {"start": start, "blocks": lg.names, "widths": [b.out_channels for b in lg.blocks],
                     "parameters": lg.num_parameters(), "forced_by_config": forced,
                     "rule_choice": result.names},
        "paper_choice": net.block_names[-cr.k:],
        "is_paper_choice": lg.names == net.block_names[-cr.k:],
        "statistic": cr.statistic,
        "tau": manifest.get("tau"),
        "rule": {k: OmegaConf.to_container(cr, resolve=True)[k] for k in
                 ("k", "warmup_tasks", "task_weighting", "epoch_aggregate", "stability")},
        "scores": result.to_dict(),
        "task_statistics": {"tasks": tasks, "layers": layers, "values": S.tolist()},
        "provenance": {
            "code_version": code_version(),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "dataset": manifest["fingerprint"]["config"]["data"],
            "class_sequence": manifest["stream"],
            "class_names": manifest.get("class_names"),
            "seed": cfg.seed,
            "collective_run": str(ctx.source),
            "collective_task": ckpt["task"],
            "collective_widths": net.widths,
        },
    }  # fmt: skip
    lg.meta = {"selected": info["selected"], "statistic": cr.statistic, "seed": cfg.seed,
               "collective_task": ckpt["task"], "code_version": info["provenance"]["code_version"]}  # fmt: skip
    if dist.is_rank_zero():
        save_learngene(lg, ctx.path("learngene.pt"))
        atomic_write_json(ctx.path("learngene.json"), info)
        from learngene.pipeline.plots import plot_gradient_heatmap, plot_window_scores

        all_stats = {
            s: criterion_statistics(ctx, net.block_names, s) for s in ("signed_frac", "abs_frac", "rel_norm")
        }
        plot_gradient_heatmap(all_stats, ctx.path("plots", "gradient_heatmap.png"), cr.statistic)
        plot_window_scores(result, start, ctx.path("plots", "window_scores.png"))
    dist.barrier()
    log.info(
        "learngene: rule selects %s (score %.4g) from %s over tasks %s; paper's choice %s: %s",
        "-".join(result.names), result.window_scores[result.start], cr.statistic,
        [tasks[i] for i in result.tasks_used],
        "-".join(net.block_names[-cr.k:]), "yes" if info["is_paper_choice"] else "no",
    )  # fmt: skip
    ctx.log_metrics(
        {"learngene/window_start": start, "learngene/is_paper_choice": float(info["is_paper_choice"])}
    )
    return result
