"""The report's tables (stage 4, part 2 of 3): results.md and the end-of-run terminal summary, from the results
dict of ``analysis.py``."""

from __future__ import annotations

from pathlib import Path

from experiments.pipeline.report.sections import ReportSection, sections_for


def _sections(res: dict) -> dict[str, ReportSection]:
    """The sections the results hold, in the results' own order (the run's ``methods`` order)."""
    return {name: s for name, s in sections_for(list(res)).items() if name in res}


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _m(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.2f}M"


def _acc(s: dict | None) -> str:
    if not s:
        return "n/a"
    return _pct(s["mean"]) + (f" ± {_pct(s['ci95'])}" if s.get("ci95") is not None else "")


def _paired_text(p: dict | None) -> str:
    if not p:
        return "n/a"
    ci = f" ± {_pct(p['ci95'])}" if p.get("ci95") is not None else ""
    pv = "n/a" if p.get("p") is None else f"{p['p']:.2g}"
    seeds = f" x {p['collective_seeds']} cs" if p.get("collective_seeds", 1) > 1 else ""
    return f"{_pct(p['mean_diff'], signed=True)}{ci} (p {pv}, n {p['n']}{seeds})"


def to_markdown(res: dict) -> str:
    p, ref = res["protocol"], res["reference"]
    cs = res["collective_seeds"]
    lines = [f"# Results: {res['experiment']} (budget {res['budget']}, seed {res['seed']}, collective seeds {cs}, "
             f"{res['collective_mode']} ancestor)", "",
             f"{p['ways']}-way target tasks of novel classes, {p['target_tasks_per_seed']} tasks x {len(p['seeds'])} "
             f"seeds per shot count x {len(cs)} collective seed(s) ({p['mode']} protocol), {p['epochs']} epochs. "
             "Accuracy in %: mean ± 95 % CI with the target task as the unit (n = tasks; with several collective "
             f"seeds a two-level interval, see results.json `confidence_interval`). `vs {ref}`: the paired difference "
             "on the same tasks (mean ± 95 % CI, t-test p, n tasks x collective seeds).", ""]  # fmt: skip
    chosen = res["learngene"]
    if chosen.get("selected"):
        sel = "; ".join(f"seed {s}: {', '.join(b)}" for s, b in chosen["selected"].items())
        how = ("forced by `criterion.window`" if chosen.get("forced_by_config")
               else f"chosen by `{chosen['statistic']}`")  # fmt: skip
        lines += [
            f"Learngene {how}: {sel} (the paper's choice: {', '.join(chosen['paper_choice'] or [])}).",
            "",
        ]
    sections = _sections(res)
    for shots, rows in res["tables"].items():
        lines += [f"## {shots}-shot", "", f"| method | accuracy | vs {ref} | n | parameters | inherited | train s/task |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            note = " (not converged)" if r.get("converged") is False else ""
            t = "n/a" if r["train_time_s"] is None else f"{r['train_time_s']:.2f}"
            lines.append(f"| {r['label']}{note} | {_acc(r)} | {_paired_text(r['paired']) if r['method'] != ref else '—'} "
                         f"| {r['n']} | {_m(r['parameters'])} | {_m(r['inherited_parameters'])} | {t} |")  # fmt: skip
        for name, section in sections.items():
            if t := res[name].get(shots):
                lines += section.markdown(shots, t)
        lines.append("")
    c = res["collective"]
    if c.get("per_seed"):
        lines += ["## Collective model", "",
                  "| collective seed | class-IL avg acc (chance) | class-IL BWT | task-IL avg acc (chance) | task-IL BWT "
                  "| open-world AUROC msp / energy | parameters |", "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for s, v in c["per_seed"].items():
            ow = v["open_world_last"] or {}
            params = " -> ".join(_m(x) for x in v["parameters"]) if v["parameters"] else "n/a"
            lines.append(
                f"| {s} | {_pct(v['class_il_final_average_accuracy'])} ({_pct(v['class_il_chance'])}) "
                f"| {_pct(v['class_il_backward_transfer'], True)} | {_pct(v['task_il_final_average_accuracy'])} "
                f"({_pct(v['task_il_chance'])}) | {_pct(v['task_il_backward_transfer'], True)} "
                f"| {ow.get('auroc_msp', float('nan')):.3f} / {ow.get('auroc_energy', float('nan')):.3f} | {params} |"
            )
        lines += ["", "Class-IL: argmax over every class seen so far; task-IL: argmax within the task's own classes. "
                  "BWT in points (negative = forgetting).", ""]  # fmt: skip
    return "\n".join(lines)


def terminal_summary(res: dict, results_md: str | Path) -> str:
    """The end-of-run summary for a terminal of 100 columns: per shot count each method's accuracy and paired
    difference to the reference method, and each section's own lines (the judgement: the window and statistic
    chosen on the validation tasks); the full tables
    (judgement per window, statistics, collective model) are in results.md."""
    width, ref = 100, res["reference"]
    lines = [f"{res['experiment']}: budget {res['budget']}, {res['collective_mode']} ancestor, collective seeds "
             f"{res['collective_seeds']}"[:width]]  # fmt: skip
    chosen = res["learngene"]
    if chosen.get("selected"):
        how = (
            "forced by criterion.window"
            if chosen.get("forced_by_config")
            else f"chosen by {chosen['statistic']}"
        )
        picks = "; ".join(f"{'-'.join([b[0], b[-1]])}" for b in chosen["selected"].values())
        lines.append(f"learngene {how}: {picks}"[:width])
    sections = _sections(res)
    for shots, rows in res["tables"].items():
        lines += ["", f"{shots}-shot{'':27s} {'accuracy':>13s}  {f'vs {ref} (95% CI, p, n)':<36s}"]
        for r in rows:
            name = r["method"] + (" (not converged)" if r.get("converged") is False else "")
            vs = _paired_text(r["paired"]) if r["method"] != ref else "reference"
            lines.append(f"  {name[:32]:32s} {_acc(r):>13s}  {vs}"[:width])
        for name, section in sections.items():
            if t := res[name].get(shots):
                lines += [line[:width] for line in section.terminal(t)]
    lines += ["", "full tables (every window, every statistic, the collective model):", f"  {results_md}"]
    return "\n".join(lines)
