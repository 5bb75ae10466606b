"""The descendants section of the report: per shot count, one row per (shape, strategy) with the descendant's
parameters, its scratch accuracy, the paired gain of inheriting (target-task unit, as every paired number of the
report: ``analysis._paired``) and training time; and a plot of paired gain against parameters, one line per
strategy."""

from __future__ import annotations

from pathlib import Path

from experiments.methods.registry import arm_name, split_arm
from experiments.pipeline.report.analysis import _paired, _summary, gather_entries
from experiments.pipeline.report.sections import ReportSection, SectionInput
from experiments.pipeline.report.tables import _acc, _m, _paired_text


def descendants_table(raw: dict, entries: list[dict]) -> dict | None:
    """Rows in the configured shape order: shape, strategy, parameters, inherited and scratch accuracy, gain."""
    arms: dict[str, list[dict]] = {}
    for e in entries:
        arms.setdefault(e["arm"], []).append(e)
    if not arms:
        return None
    rows = []
    for arm, es in arms.items():
        inherited, _ = split_arm(arm)
        if not inherited:
            continue
        d = es[0]["descendant"]
        gi = gather_entries(raw, es)
        gs = gather_entries(raw, arms.get(arm_name(False, d["shape"]), []))
        inherit, scratch = _summary(gi), (_summary(gs) if gs.by_task else None)
        rows.append({
            "arm": arm, "shape": d["shape"], "width": d["width"], "depth": d["depth"], "blocks": d["blocks"],
            "strategy": d["strategy"], "order": d["order"], "parameters": gi.info.get("parameters"),
            "inherited_parameters": gi.info.get("inherited_parameters"), "inherit": inherit, "scratch": scratch,
            "gain": _paired(gi, gs, vs="the same descendant from scratch") if gs.by_task else None,
            "train_time_s": inherit["train_time_s"], "scratch_train_time_s": scratch["train_time_s"] if scratch else None,
        })  # fmt: skip
    rows.sort(key=lambda r: (r["order"], r["strategy"]))
    return {"rows": rows, "note": "gain = the learngene-initialised descendant minus the same descendant from "
            "scratch (same target tasks, same init seeds for the non-inherited parts), paired"}  # fmt: skip


def descendants_markdown(shots: str, d: dict) -> list[str]:
    lines = ["", f"Descendants ({shots}-shot): one learngene adapted to several shapes (width multiplier w, depth d = "
             "blocks of the individual network); gain = inherited minus the same descendant from scratch, paired.", "",
             "| shape | blocks | strategy | parameters | inherited | scratch | inherited acc | gain | train s/task |",
             "| --- " * 9 + "|"]  # fmt: skip
    for r in d["rows"]:
        t = "n/a" if r["train_time_s"] is None else f"{r['train_time_s']:.2f}"
        lines.append(f"| {r['shape']} | {r['blocks']} | {r['strategy']} | {_m(r['parameters'])} "
                     f"| {_m(r['inherited_parameters'])} | {_acc(r['scratch'])} | {_acc(r['inherit'])} "
                     f"| {_paired_text(r['gain'])} | {t} |")  # fmt: skip
    return lines


def descendants_terminal(d: dict) -> list[str]:
    """One line per arm under the shot count's rows: shape, strategy, parameters and the paired gain."""
    lines = ["  descendants, gain over the same descendant from scratch (95% CI, p, n):"]
    for r in d["rows"]:
        gain = _paired_text(r["gain"]) if r["gain"] else "n/a (no scratch arm)"
        lines.append(f"    {r['shape']:8s} {r['strategy']:14s} {_m(r['parameters']):>7s}  {gain}"[:98])
    return lines


def plot_descendants(rows: list[dict], path: Path, title: str) -> Path:
    """Left: paired gain (95 % CI) against the descendant's parameters, one line per strategy: the arms whose
    strategy uses it (a combination such as widen+repeat is on both lines), each line starting from the paper's
    shape (strategy ``none``) where the run has it. Right: the accuracies behind those gains, the scratch
    descendant per size (black) beside the inherited one per strategy."""
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    from experiments.pipeline.plots import _save, plt

    fig, (ax, acc) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    anchor = [r for r in rows if r["strategy"] == "none" and r["gain"]]
    names = sorted({n for r in rows for n in r["strategy"].split("+") if n != "none"}) or ["none"]
    for i, name in enumerate(names):
        members = [r for r in rows if name in r["strategy"].split("+") and r["gain"]]
        pts = sorted(anchor + members, key=lambda r: r["parameters"])
        if not pts:
            continue
        x = [r["parameters"] / 1e6 * (1 + 0.01 * i) for r in pts]  # offset: the error bars do not hide
        bars = ax.errorbar(x, [100 * r["gain"]["mean_diff"] for r in pts],
                           yerr=[100 * (r["gain"]["ci95"] or 0) for r in pts], marker="o", capsize=3, label=name)  # fmt: skip
        acc.errorbar(x, [100 * r["inherit"]["mean"] for r in pts], yerr=[100 * (r["inherit"]["ci95"] or 0) for r in pts],
                     marker="o", capsize=3, color=bars[0].get_color(), label=f"{name} (inherited)")  # fmt: skip
    scratch = sorted({r["shape"]: r for r in rows if r["scratch"]}.values(), key=lambda r: r["parameters"])
    if scratch:
        acc.errorbar([r["parameters"] / 1e6 for r in scratch], [100 * r["scratch"]["mean"] for r in scratch],
                     yerr=[100 * (r["scratch"]["ci95"] or 0) for r in scratch], marker="s", capsize=3, color="k",
                     ls="--", label="scratch")  # fmt: skip
    ax.axhline(0, color="k", lw=1)
    sizes = [r["parameters"] for r in rows if r["parameters"]]
    wide = bool(sizes) and max(sizes) > 4 * min(sizes)  # over ~a decade: label only the 2s and 5s between

    def minor(x: float, _pos: int) -> str:
        return f"{x:g}" if not wide or f"{x:.0e}"[0] in "25" else ""

    for a in (ax, acc):
        a.set_xscale("log")
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(FuncFormatter(minor))
        a.set_xlabel("descendant parameters (M, log scale)")
    ax.set_ylabel("paired gain over scratch\n(points, 95% CI)")
    acc.set_ylabel("accuracy (%, 95% CI)")
    ax.set_title(title)
    acc.set_title(f"{title}: accuracy")
    ax.legend(fontsize=8, title="strategy (from the paper's shape)")
    acc.legend(fontsize=8)
    return _save(fig, path)


def table(inp: SectionInput) -> dict | None:
    return descendants_table(inp.raw, inp.entries)


def plot(d: dict, path: Path, title: str, protocol: dict) -> Path:
    return plot_descendants(d["rows"], path, title)


def scalars(shots: str, d: dict) -> dict[str, float]:
    """``individual/test/paired_diff/descendants/<shape>/<strategy>/<K>shot``: each arm's paired gain."""
    return {f"individual/test/paired_diff/descendants/{r['shape']}/{r['strategy']}/{shots}shot": r["gain"]["mean_diff"]
            for r in d["rows"] if r["gain"]}  # fmt: skip


SECTION = ReportSection(
    table=table, markdown=descendants_markdown, terminal=descendants_terminal, plot=plot, scalars=scalars
)
