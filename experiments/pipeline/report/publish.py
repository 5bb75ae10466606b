"""The report's publishing (stage 4, part 3 of 3): plots, the scalars every logger gets (one of them is the number a
Hydra sweep optimises, ``optimized_metric``), W&B tables and images."""

from __future__ import annotations

from pathlib import Path

from experiments.pipeline import run_files
from experiments.pipeline.context import RunContext, is_wandb
from experiments.pipeline.report.tables import _sections


def write_plots(ctx: RunContext, res: dict) -> None:
    """Per collective seed its accuracy matrices; per section and shot count the section's plot."""
    from experiments.pipeline.plots import plot_accuracy_matrices

    for cs in res["collective_seeds"]:
        p = ctx.collective_dir(cs) / "metrics.json"
        metrics = run_files.read_json_file(p, "collective metrics") if p.exists() else {}
        if {"class_incremental", "task_incremental"} <= set(metrics):
            plot_accuracy_matrices(metrics, ctx.path("plots", f"seed_{cs}", "accuracy_matrix.png"))
    for name, section in _sections(res).items():
        for shots, t in res[name].items() if section.plot else ():
            section.plot(
                t, ctx.path("plots", f"{name}_{shots}shot.png"), f"{name}, {shots}-shot", res["protocol"]
            )


def scalars(res: dict) -> dict[str, float]:
    """``individual/test/acc/<method>/<K>shot``, ``individual/test/acc/<method>`` (the mean over the run's
    shot counts), ``individual/test/paired_diff/<method>/<K>shot`` and each section's own (the judgement's
    Spearman values, the descendants' paired gains)."""
    out: dict[str, float] = {}
    by_method: dict[str, list[float]] = {}
    for shots, rows in res["tables"].items():
        for r in rows:
            out[f"individual/test/acc/{r['method']}/{shots}shot"] = r["mean"]
            by_method.setdefault(r["method"], []).append(r["mean"])
            if r["paired"] and r["method"] != res["reference"]:
                out[f"individual/test/paired_diff/{r['method']}/{shots}shot"] = r["paired"]["mean_diff"]
    out |= {f"individual/test/acc/{m}": sum(v) / len(v) for m, v in by_method.items()}
    for name, section in _sections(res).items():
        for shots, t in res[name].items():
            out |= section.scalars(shots, t)
    return out


def log_results(ctx: RunContext, res: dict) -> None:
    """Every logger gets :func:`scalars`; W&B also the methods table and every plot."""
    ctx.log_metrics(scalars(res))
    for logger in ctx.loggers:
        if is_wandb(logger):
            cols = [
                "shots",
                "method",
                "mean",
                "ci95",
                "n",
                "parameters",
                "inherited_parameters",
                "train_time_s",
            ]
            data = [[shots] + [r[c] for c in cols[1:]] for shots, rows in res["tables"].items() for r in rows]
            logger.log_table(key="results", columns=cols, data=data)
            for png in sorted(Path(ctx.path("plots")).rglob("*.png")):
                logger.log_image(
                    key=f"plots/{png.relative_to(ctx.path('plots')).with_suffix('')}", images=[str(png)]
                )
