"""The judgement's section of the report: per window, the inherited network's paired gain over the same window's
network from scratch on the test tasks (and on the validation tasks), each criterion statistic's window scores, the
rank correlation between scores and gains and the gain of the window each statistic picks; the window and the
statistic are chosen on the validation tasks and reported with their gains on the test tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.methods.registry import split_arm
from experiments.pipeline.report.analysis import (
    Gathered,
    _add_pairs,
    _paired,
    _paired_rows,
    _summary,
    gather_entries,
)
from experiments.pipeline.report.sections import ReportSection, SectionInput
from experiments.pipeline.report.tables import _acc, _m, _paired_text, _pct
from learngene_core.metrics.stats import spearman

NOTE = (
    "gain = inherited minus the same window's network from scratch (paired); spearman < 0 means windows "
    "with a lower (better) criterion score gained more"
)


def judgement_arms(raw: dict, entries: list[dict]) -> dict[str, tuple[dict, Gathered, Gathered]]:
    """Per window (in block order): its description, and the gathered inherited and scratch arms."""
    arms: dict[str, dict[bool, list[dict]]] = {}
    windows: dict[str, dict] = {}
    for e in entries:
        inherited, name = split_arm(e["arm"])
        arms.setdefault(name, {}).setdefault(inherited, []).append(e)
        windows[name] = e["window"]
    return {
        name: (
            w,
            gather_entries(raw, arms[name].get(True, [])),
            gather_entries(raw, arms[name].get(False, [])),
        )
        for name, w in sorted(windows.items(), key=lambda kv: kv[1]["start"])
    }


def _picks_gain(arms: dict, picks: dict[int, str]) -> dict | None:
    """The paired gain of a statistic's picks: in each collective seed, the window it picked there."""
    rows: dict = {}
    for cs, window in picks.items():
        if window in arms:
            _, gi, gs = arms[window]
            _add_pairs(rows, gi, gs, {cs})
    return _paired_rows(rows, "the window's scratch")


def judgement_table(
    raw: dict, entries: list[dict], lg_infos: dict[int, dict], validation: list[dict] | None = None
) -> dict | None:
    """Per window: the paired gain on the test tasks. Chosen *before looking at them*: the window with the
    largest paired gain on the held-out validation tasks, and the statistic whose picks gain most there; each
    choice is then reported with its gain on the test tasks only (a maximum over windows taken on the test tasks
    themselves would be biased upwards)."""
    arms = judgement_arms(raw, entries)
    if not arms:
        return None
    val_arms = judgement_arms(raw, validation or [])
    rows = []
    for name, (w, gi, gs) in arms.items():
        selected = {
            cs for cs, info in lg_infos.items() if info.get("selected", {}).get("start") == w["start"]
        }
        val_gain = _paired(*val_arms[name][1:], vs="the window's scratch") if name in val_arms else None
        rows.append({
            "window": name, "start": w["start"], "blocks": w["blocks"], "selected_in_seeds": sorted(selected),
            "parameters": gi.info.get("parameters"), "inherited_parameters": gi.info.get("inherited_parameters"),
            "inherit": _summary(gi) if gi.by_task else None,
            "scratch": _summary(gs) if gs.by_task else None,
            "gain": _paired(gi, gs, vs="the window's scratch") if gi.by_task and gs.by_task else None,
            "validation_gain": val_gain,
            "scores": window_scores(lg_infos, w["start"]),
        })  # fmt: skip
    stats = {}
    for stat in sorted({s for r in rows for s in r["scores"]}):
        picks = {cs: info["all_statistics"][stat]["picked"] for cs, info in lg_infos.items()
                 if stat in info.get("all_statistics", {})}  # fmt: skip
        labels = {cs: f"{p['blocks'][0]}-{p['blocks'][-1]}" for cs, p in picks.items()}
        test_pts = [
            (r["scores"][stat], r["gain"]["mean_diff"]) for r in rows if r["gain"] and stat in r["scores"]
        ]
        val_pts = [(r["scores"][stat], r["validation_gain"]["mean_diff"])
                   for r in rows if r["validation_gain"] and stat in r["scores"]]  # fmt: skip
        stats[stat] = {
            "spearman_score_vs_gain": spearman(*zip(*test_pts)) if test_pts else None,
            "spearman_score_vs_validation_gain": spearman(*zip(*val_pts)) if val_pts else None,
            "picked": {str(cs): lbl for cs, lbl in labels.items()},
            "picked_gain": _picks_gain(arms, labels),
            "picked_validation_gain": _picks_gain(val_arms, labels),
        }
    return {"rows": rows, "statistics": stats, "chosen_on_validation": choose_on_validation(rows, stats)}


def choose_on_validation(rows: list[dict], stats: dict) -> dict | None:
    """The window and the statistic chosen on the validation tasks, with their gains on the test tasks."""
    scored = [r for r in rows if r["validation_gain"]]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["validation_gain"]["mean_diff"])
    ranked = sorted((s for s, v in stats.items() if v["picked_validation_gain"]),
                    key=lambda s: stats[s]["picked_validation_gain"]["mean_diff"], reverse=True)  # fmt: skip
    stat = ranked[0] if ranked else None
    return {
        "window": best["window"],
        "window_validation_gain": best["validation_gain"]["mean_diff"],
        "window_test_gain": best["gain"],
        "statistic": stat,
        "statistic_validation_gain": stats[stat]["picked_validation_gain"]["mean_diff"] if stat else None,
        "statistic_test_gain": stats[stat]["picked_gain"] if stat else None,
    }


def window_scores(lg_infos: dict[int, dict], start: int) -> dict[str, float]:
    """Per statistic, the window's score averaged over collective seeds."""
    out: dict[str, list[float]] = {}
    for info in lg_infos.values():
        for stat, s in info.get("all_statistics", {}).items():
            if start < len(s["window_scores"]):
                out.setdefault(stat, []).append(s["window_scores"][start])
    return {k: float(np.mean(v)) for k, v in out.items()}


def markdown(shots: str, j: dict) -> list[str]:
    stats = list(j["statistics"])
    lines = ["", f"Judgement ({shots}-shot): every window inherited and trained from scratch on the test tasks; gain = "
             "inherited minus scratch, paired; validation gain on the held-out validation tasks. Criterion scores "
             "(lower = learngene), averaged over collective seeds:", "",
             "| window | parameters | inherited | scratch | gain | validation gain | " + " | ".join(stats) + " |",
             "| --- " * (6 + len(stats)) + "|"]  # fmt: skip
    for r in j["rows"]:
        mark = " **(selected)**" if r["selected_in_seeds"] else ""
        scores = " | ".join(f"{r['scores'][s]:.4g}" if s in r["scores"] else "n/a" for s in stats)
        val = _pct(r["validation_gain"]["mean_diff"], signed=True) if r.get("validation_gain") else "n/a"
        lines.append(f"| {r['window']}{mark} | {_m(r['parameters'])} | {_acc(r['inherit'])} | {_acc(r['scratch'])} "
                     f"| {_paired_text(r['gain'])} | {val} | {scores} |")  # fmt: skip
    lines += ["", "| statistic | Spearman(score, gain) | Spearman on validation | picks (per collective seed) "
              "| gain of its picks (test) | on validation |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for s, v in j["statistics"].items():
        rho = lambda x: "n/a" if x is None else f"{x:+.2f}"  # noqa: E731
        picks = ", ".join(f"{k}: {w}" for k, w in v["picked"].items())
        val = v["picked_validation_gain"]
        lines.append(f"| {s} | {rho(v['spearman_score_vs_gain'])} | {rho(v['spearman_score_vs_validation_gain'])} "
                     f"| {picks} | {_paired_text(v['picked_gain'])} "
                     f"| {_pct(val['mean_diff'], signed=True) if val else 'n/a'} |")  # fmt: skip
    c = j.get("chosen_on_validation")
    if c:
        stat = (
            f"the statistic whose picks gain most there, `{c['statistic']}` "
            f"({_pct(c['statistic_validation_gain'], signed=True)} on validation), gains "
            f"{_paired_text(c['statistic_test_gain'])} on the test tasks"
            if c["statistic"]
            else "no statistic"
        )
        lines += ["", f"Chosen on the validation tasks, then measured on the test tasks: the window **{c['window']}** "
                  f"({_pct(c['window_validation_gain'], signed=True)} on validation) gains "
                  f"{_paired_text(c['window_test_gain'])} on the test tasks; {stat}. Negative Spearman = lower "
                  "scores, larger gains."]  # fmt: skip
    else:
        lines += [
            "",
            "No validation tasks (target.validation.n_tasks=0): no window or statistic is chosen; the "
            "largest gain in the table above is a maximum over windows on the test tasks, biased upwards.",
        ]
    return lines


def table(inp: SectionInput) -> dict | None:
    return judgement_table(inp.raw, inp.entries, inp.learngenes, inp.validation)


def terminal(j: dict) -> list[str]:
    """The window and the statistic chosen on the validation tasks, with their test gains."""
    c = j.get("chosen_on_validation")
    if not c:
        return []
    lines = [f"  chosen on validation: window {c['window']}, test gain {_paired_text(c['window_test_gain'])}"]
    if c["statistic"]:
        lines.append(
            f"  statistic {c['statistic']}: test gain of its picks {_paired_text(c['statistic_test_gain'])}"
        )
    return lines


def plot(j: dict, path: Path, title: str, protocol: dict) -> Path:
    from experiments.pipeline.plots import plot_judgement

    return plot_judgement(j["rows"], path, title, protocol["ways"])


def scalars(shots: str, j: dict) -> dict[str, float]:
    """``learngene/judgement/spearman/<statistic>/<K>shot``: each statistic's rank correlation on the test tasks."""
    return {f"learngene/judgement/spearman/{stat}/{shots}shot": v["spearman_score_vs_gain"]
            for stat, v in j["statistics"].items() if v["spearman_score_vs_gain"] is not None}  # fmt: skip


SECTION = ReportSection(
    table=table, markdown=markdown, terminal=terminal, plot=plot, scalars=scalars, note=NOTE
)
