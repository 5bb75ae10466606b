"""Read every file of earlier runs that the selected stages will read, before any work."""

from __future__ import annotations

from experiments.pipeline import run_files


def check_earlier_outputs(ctx) -> None:
    """Read every file of earlier runs that the selected stages will read, so that a damaged one (garbage,
    cut-off JSON, a truncated checkpoint) stops the run now, with one line naming it, not after hours."""
    from learngene_core.artifact import load_learngene
    from learngene_core.criterion.records import read_rows

    stages = set(ctx.cfg.stage)
    for seed in ctx.collective_seeds:
        dirs = [ctx.collective_dir(seed, own=True)] if "collective" in stages else []
        if stages & {"learngene", "individual", "report"} and "collective" not in stages:
            dirs.append(ctx.collective_dir(seed))
        for d in dirs:
            run_files.read_manifest(d / "manifest.json")
            if (d / "metrics.json").exists():
                run_files.read_json_file(d / "metrics.json", "collective metrics")
            if (d / "gradient_stats.csv").exists() and stages & {"collective", "learngene"}:
                read_rows(d / "gradient_stats.csv")
        lg_dir = ctx.learngene_dir(seed)
        if "individual" in stages and "learngene" not in stages:
            load_learngene(lg_dir / "learngene.pt")
        if "report" in stages and "learngene" not in stages and (lg_dir / "learngene.json").exists():
            run_files.read_json_file(lg_dir / "learngene.json", "learngene record")
    if stages & {"individual", "report"}:
        for root in {ctx.out, ctx.reads_from}:
            run_files.read_raw_results(run_files.raw_results_path(root))
