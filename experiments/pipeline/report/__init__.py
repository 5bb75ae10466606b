"""Stage 4, the report, in three parts: the numbers (``analysis``: results.json), the tables (``tables``: results.md
and the terminal summary) and publishing (``publish``: plots, logged scalars, W&B). Multi-arm methods add their own
section (``sections``)."""

from __future__ import annotations

from experiments.pipeline.console import console
from experiments.pipeline.context import RunContext
from experiments.pipeline.report.analysis import ReportPlan, build_results
from experiments.pipeline.report.publish import log_results, scalars, write_plots
from experiments.pipeline.report.tables import terminal_summary, to_markdown
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json, atomic_write_text


def run_report(ctx: RunContext) -> dict:
    """results.json, results.md, the plots, the loggers' scalars and the terminal summary (rank 0); returns the
    results dict."""
    res = build_results(ctx, ReportPlan.from_config(ctx.cfg))
    if dist.is_rank_zero():
        atomic_write_json(ctx.path("results.json"), res)
        atomic_write_text(ctx.path("results.md"), to_markdown(res))
        write_plots(ctx, res)
        log_results(ctx, res)
        console.print(terminal_summary(res, ctx.path("results.md")), width=100, markup=False, highlight=False)
    dist.barrier()
    return res


__all__ = ["ReportPlan", "build_results", "run_report", "scalars", "terminal_summary", "to_markdown"]
