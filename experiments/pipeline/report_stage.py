"""Stage 4: results.json and results.md, the judgement table, the collective model's metrics, plots.

Per method and shot count: mean and 95 % interval over collective seeds x target tasks x seeds, and the
paired difference to scratch over the same (collective seed, seed, task) triples: mean, 95 % t interval,
Wilcoxon signed-rank p. Per inherited window: the paired gain (inherited minus the same network from
scratch) and, per criterion statistic, its window score; each statistic is judged by the rank
correlation between its scores and the gains and by the gain of the window it picks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from experiments.methods.registry import get_method, method_names
from experiments.pipeline import run_files
from experiments.pipeline.context import RunContext, is_wandb
from experiments.pipeline.run_files import VALIDATION
from learngene_core.errors import CheckpointError
from learngene_core.metrics.stats import mean_ci95, paired_over_tasks, spearman, two_level_mean
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("learngene")
CI_TEXT = (
    "The unit is the target task: results of one computation per collective seed are averaged per task first, "
    "so n is the number of target tasks (never tasks x collective seeds). With one collective seed (or a method "
    "that does not depend on the ancestor: scratch, the meta-learners) the 95% interval is Student t over the "
    "tasks; with several it is a two-level estimate (collective seed x target task random effects, Satterthwaite "
    "degrees of freedom) whose between-seed part widens it when the ancestors differ; between_seed_sd is the "
    "spread of the per-seed means"
)
PAIRED_TEXT = (
    "paired: method minus scratch on the same target tasks (same classes, shots, seeds), the task as the unit as "
    "for the accuracies: mean, 95% interval, p = two-sided t test of the same estimate; p_wilcoxon = two-sided "
    "Wilcoxon signed-rank test over the per-task mean differences. A pair of computations that several collective "
    "seeds share counts once. Pairing removes each task's own difficulty"
)


def label(method: str) -> str:
    try:
        return get_method(method).label
    except KeyError:
        return method


@dataclass
class Gathered:
    """The results of some entries: keyed for pairing, and once per distinct computation for summaries."""

    by_task: dict = field(default_factory=dict)  # (collective seed, seed, task) -> accuracy, for pairing
    source: dict = field(default_factory=dict)  # collective seed -> the computation its accuracies come from
    unique: dict = field(default_factory=dict)  # (computation, seed, task) -> accuracy, each result once
    info: dict = field(default_factory=dict)
    times: list[float] = field(default_factory=list)


def gather_entries(raw: dict, entries: list[dict]) -> Gathered:
    """A computation shared by several collective seeds (scratch, the meta-learners) appears once in the summary
    (its n and interval are those of its own tasks); for the paired differences it is keyed per collective seed,
    and ``_paired`` counts each distinct pair of computations once."""
    g = Gathered()
    for e in entries:
        comp = raw["computations"].get(e["computation"])
        if comp is None:
            raise CheckpointError(
                f"stage-3 results: entry of {e['method']} points at computation {e['computation']} which is "
                f"missing; the results file is damaged: move individual/results_raw.json away and rerun stage 3"
            )
        fresh = not any(k[0] == e["computation"] for k in g.unique)
        g.source[e["collective_seed"]] = e["computation"]
        for t in comp["tasks"]:
            g.by_task[(e["collective_seed"], t["seed"], t["task"])] = t["acc"]
            g.unique[(e["computation"], t["seed"], t["task"])] = t["acc"]
            if fresh:
                g.times.append(t["train_time_s"])
        g.info = g.info or dict(comp["info"])
        for k in ("meta_train_time_s", "converged", "convergence"):
            if k in comp["info"]:
                g.info[k] = comp["info"][k]
    return g


def _grid(rows: dict) -> list[list[float]]:
    """Rows (one per distinct computation, or pair of them) of values keyed by target task, as a grid over the
    tasks every row has, rows in key order (empty when no task is common to all)."""
    tasks = sorted(set.intersection(*(set(r) for r in rows.values()))) if rows else []
    return [[r[t] for t in tasks] for _, r in sorted(rows.items())] if tasks else []


def _summary(g: Gathered) -> dict:
    """Mean accuracy and its interval with the target task as the unit (:func:`two_level_mean` over one row per
    distinct computation); ``accuracies`` lists every distinct result."""
    rows: dict[str, dict] = {}
    for (comp, seed, task), acc in g.unique.items():
        rows.setdefault(comp, {})[(seed, task)] = acc
    est = two_level_mean(_grid(rows))
    return {**est, "accuracies": [g.unique[k] for k in sorted(g.unique)],
            "parameters": g.info.get("parameters"), "inherited_parameters": g.info.get("inherited_parameters"),
            "train_time_s": sum(g.times) / len(g.times) if g.times else None}  # fmt: skip


def _add_pairs(rows: dict, g: Gathered, ref: Gathered, seeds: set | None = None) -> None:
    """Add ``g`` minus ``ref`` per target task to ``rows``, one row per distinct pair of computations."""
    for k in sorted(set(g.by_task) & set(ref.by_task)):
        cs, seed, task = k
        if seeds is None or cs in seeds:
            rows.setdefault((g.source[cs], ref.source[cs]), {})[(seed, task)] = g.by_task[k] - ref.by_task[k]


def _paired_rows(rows: dict, vs: str) -> dict | None:
    """:func:`paired_over_tasks` over the tasks every row has."""
    grid = _grid(rows)
    return {"vs": vs, **paired_over_tasks(grid)} if grid else None


def _paired(g: Gathered, ref: Gathered | None, vs: str = "scratch") -> dict | None:
    """Paired difference with the target task as its unit (:func:`paired_over_tasks`): one row of differences per
    distinct pair of computations (a reference shared by every collective seed is not repeated per seed; a pair
    that every seed shares, such as ProtoNet and scratch, is one row), over the tasks every row has."""
    if ref is None:
        return None
    rows: dict = {}
    _add_pairs(rows, g, ref)
    return _paired_rows(rows, vs)


def method_rows(raw: dict, entries: list[dict], methods: list[str]) -> list[dict]:
    by_method: dict[str, list[dict]] = {}
    for e in entries:
        if e["method"] not in ("judgement", "descendants"):  # multi-arm: their own sections
            by_method.setdefault(e["method"], []).append(e)
    scratch = gather_entries(raw, by_method["scratch"]) if "scratch" in by_method else None
    rows = []
    for m in [m for m in methods if m in by_method] + [m for m in by_method if m not in methods]:
        g = gather_entries(raw, by_method[m])
        row = {"method": m, "label": label(m), **_summary(g),
               "paired": _paired(g, scratch) if m != "scratch" else _paired(g, g)}  # fmt: skip
        for k in ("meta_train_time_s", "converged", "convergence", "first_order"):
            if k in g.info:
                row[k] = g.info[k]
        rows.append(row)
    return rows


def judgement_arms(raw: dict, entries: list[dict]) -> dict[str, tuple[dict, Gathered, Gathered]]:
    """Per window (in block order): its description, and the gathered inherited and scratch arms."""
    arms: dict[str, dict[str, list[dict]]] = {}
    windows: dict[str, dict] = {}
    for e in entries:
        if e["method"] == "judgement":
            kind, name = e["arm"].split(":", 1)
            arms.setdefault(name, {}).setdefault(kind, []).append(e)
            windows[name] = e["window"]
    return {
        name: (
            w,
            gather_entries(raw, arms[name].get("inherit", [])),
            gather_entries(raw, arms[name].get("scratch", [])),
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


def collective_summary(metrics: dict[int, dict]) -> dict:
    per_seed = {}
    for cs, m in metrics.items():
        cil, til = m.get("class_incremental", {}), m.get("task_incremental", {})
        ow = (m.get("open_world") or [{}])[-1]
        per_seed[str(cs)] = {
            "mode": m.get("mode", "continual"),
            "class_il_final_average_accuracy": cil.get("final_average_accuracy"),
            "class_il_chance": (cil.get("chance") or [None])[-1],
            "class_il_backward_transfer": cil.get("backward_transfer"),
            "class_il_forgetting": cil.get("forgetting"),
            "task_il_final_average_accuracy": til.get("final_average_accuracy"),
            "task_il_chance": til.get("chance"),
            "task_il_backward_transfer": til.get("backward_transfer"),
            "task_il_forgetting": til.get("forgetting"),
            "open_world_last": ow,
            "parameters": [m["parameters"][0], m["parameters"][-1]] if m.get("parameters") else None,
            "final_widths": m.get("final_widths"),
        }
    keys = [
        k for k in next(iter(per_seed.values()), {}) if k.endswith(("accuracy", "transfer", "forgetting"))
    ]
    mean = {}
    for k in keys:
        vals = [v[k] for v in per_seed.values() if v[k] is not None]
        if vals:
            m, ci = mean_ci95(vals)
            mean[k] = {"mean": m, "ci95": ci, "n": len(vals)}
    return {"per_seed": per_seed, "mean_over_seeds": mean}


def build_results(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    raw_path = run_files.raw_results_path(ctx.out)
    if not raw_path.exists() and ctx.source != ctx.out:
        raw_path = run_files.raw_results_path(ctx.source)
    if not raw_path.exists():
        raise CheckpointError(
            f"nothing to report: {raw_path} does not exist. Run the individual stage first (stage=[...,individual,"
            f"report]) or point from_run at a run directory whose individual stage finished"
            if cfg.get("from_run") is None
            else f"nothing to report: {raw_path} does not exist; the report reads this run's own stage-3 results: "
            f"run stage=[individual,report] with from_run={cfg.from_run}"
        )
    raw = run_files.read_raw_results(raw_path)
    # only this configuration's plan: entries of other methods, shot counts or collective seeds that an earlier
    # invocation left in the same file are not this run's results
    plan_methods, plan_shots = set(cfg.methods), {int(x) for x in cfg.individual.shots}
    plan_seeds = set(ctx.collective_seeds)
    entries = [e for e in raw["entries"].values()
               if e["method"] in plan_methods and e["shots"] in plan_shots and e["collective_seed"] in plan_seeds]  # fmt: skip
    seeds = sorted({e["collective_seed"] for e in entries})
    lg_infos = {}
    for cs in seeds:
        p = ctx.learngene_dir(cs) / "learngene.json"
        if p.exists():
            lg_infos[cs] = run_files.read_json_file(p, "learngene record")
    metrics = {}
    for cs in seeds:
        p = ctx.collective_dir(cs) / "metrics.json"
        if p.exists():
            metrics[cs] = run_files.read_json_file(p, "collective metrics")
    icfg = cfg.individual
    methods = list(cfg.methods)
    from experiments.pipeline.descendants_report import descendants_table

    tables, judgement, descendants = {}, {}, {}
    for shots in sorted({e["shots"] for e in entries}):
        es = [e for e in entries if e["shots"] == shots and e.get("split") is None]
        held_out = [e for e in entries if e["shots"] == shots and e.get("split") == VALIDATION]
        tables[str(shots)] = method_rows(raw, es, methods)
        j = judgement_table(raw, es, lg_infos, held_out)
        if j:
            judgement[str(shots)] = j
        if d := descendants_table(raw, es):
            descendants[str(shots)] = d
    first = next(iter(lg_infos.values()), {})
    return {
        "experiment": cfg.exp_name,
        "budget": cfg.budget.name,
        "seed": cfg.seed,
        "collective_seeds": seeds,
        "collective_mode": cfg.collective.get("mode", "continual"),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "protocol": {
            "ways": icfg.ways,
            "shots": [int(s) for s in tables],
            "target_tasks_per_seed": icfg.n_tasks,
            "seeds": list(icfg.seeds),
            "mode": icfg.protocol,
            "epochs": icfg.epochs,
            "batch_size": icfg.batch_size,
            "lr": icfg.lr,
        },  # fmt: skip
        "confidence_interval": CI_TEXT,
        "paired_definition": PAIRED_TEXT,
        "learngene": {
            "statistic": first.get("statistic"),
            "paper_choice": first.get("paper_choice"),
            "selected": {str(cs): i["selected"]["blocks"] for cs, i in lg_infos.items()},
            "forced_by_config": any(i["selected"].get("forced_by_config") for i in lg_infos.values()),
            "is_paper_choice": {str(cs): i["is_paper_choice"] for cs, i in lg_infos.items()},
        },
        "tables": tables,
        "judgement": judgement,
        "descendants": descendants,
        "judgement_note": (
            "gain = inherited minus the same window's network from scratch (paired); spearman < 0 means windows "
            "with a lower (better) criterion score gained more"
        ),
        "collective": collective_summary(metrics),
    }


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


def judgement_markdown(shots: str, j: dict) -> list[str]:
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
            "No validation tasks (individual.validation.n_tasks=0): no window or statistic is chosen; the "
            "largest gain in the table above is a maximum over windows on the test tasks, biased upwards.",
        ]
    return lines


def to_markdown(res: dict) -> str:
    p = res["protocol"]
    cs = res["collective_seeds"]
    lines = [f"# Results: {res['experiment']} (budget {res['budget']}, seed {res['seed']}, collective seeds {cs}, "
             f"{res['collective_mode']} ancestor)", "",
             f"{p['ways']}-way target tasks of novel classes, {p['target_tasks_per_seed']} tasks x {len(p['seeds'])} "
             f"seeds per shot count x {len(cs)} collective seed(s) ({p['mode']} protocol), {p['epochs']} epochs. "
             "Accuracy in %: mean ± 95 % CI with the target task as the unit (n = tasks; with several collective "
             "seeds a two-level interval, see results.json `confidence_interval`). `vs scratch`: the paired difference "
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
    for shots, rows in res["tables"].items():
        lines += [f"## {shots}-shot", "", "| method | accuracy | vs scratch | n | parameters | inherited | train s/task |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            note = " (not converged)" if r.get("converged") is False else ""
            t = "n/a" if r["train_time_s"] is None else f"{r['train_time_s']:.2f}"
            lines.append(f"| {r['label']}{note} | {_acc(r)} | {_paired_text(r['paired']) if r['method'] != 'scratch' else '—'} "
                         f"| {r['n']} | {_m(r['parameters'])} | {_m(r['inherited_parameters'])} | {t} |")  # fmt: skip
        j = res["judgement"].get(shots)
        if j:
            lines += judgement_markdown(shots, j)
        if d := res.get("descendants", {}).get(shots):
            from experiments.pipeline.descendants_report import descendants_markdown

            lines += descendants_markdown(shots, d)
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
    difference to scratch, and the window and statistic chosen on the validation tasks; the full tables
    (judgement per window, statistics, collective model) are in results.md."""
    width = 100
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
    for shots, rows in res["tables"].items():
        lines += ["", f"{shots}-shot{'':27s} {'accuracy':>13s}  {'vs scratch (95% CI, p, n)':<36s}"]
        for r in rows:
            name = r["method"] + (" (not converged)" if r.get("converged") is False else "")
            vs = _paired_text(r["paired"]) if r["method"] != "scratch" else "reference"
            lines.append(f"  {name[:32]:32s} {_acc(r):>13s}  {vs}"[:width])
        c = (res["judgement"].get(shots) or {}).get("chosen_on_validation")
        if c:
            lines.append(
                f"  chosen on validation: window {c['window']}, test gain {_paired_text(c['window_test_gain'])}"[
                    :width
                ]
            )
            if c["statistic"]:
                lines.append(f"  statistic {c['statistic']}: test gain of its picks "
                             f"{_paired_text(c['statistic_test_gain'])}"[:width])  # fmt: skip
    lines += ["", "full tables (every window, every statistic, the collective model):", f"  {results_md}"]
    return "\n".join(lines)


def run_report(ctx: RunContext) -> dict:
    res = build_results(ctx)
    if dist.is_rank_zero():
        atomic_write_json(ctx.path("results.json"), res)
        atomic_write_text(ctx.path("results.md"), to_markdown(res))
        from experiments.pipeline.plots import plot_accuracy_matrices, plot_judgement

        for cs in res["collective_seeds"]:
            p = ctx.collective_dir(cs) / "metrics.json"
            metrics = run_files.read_json_file(p, "collective metrics") if p.exists() else {}
            if {"class_incremental", "task_incremental"} <= set(metrics):
                plot_accuracy_matrices(metrics, ctx.path("plots", f"seed_{cs}", "accuracy_matrix.png"))
        ways = res["protocol"]["ways"]
        for shots, j in res["judgement"].items():
            plot_judgement(
                j["rows"], ctx.path("plots", f"judgement_{shots}shot.png"), f"judgement, {shots}-shot", ways
            )
        from experiments.pipeline.descendants_report import plot_descendants

        for shots, d in res.get("descendants", {}).items():
            plot_descendants(
                d["rows"], ctx.path("plots", f"descendants_{shots}shot.png"), f"descendants, {shots}-shot"
            )
        log_tables(ctx, res)
    dist.barrier()
    return res


def scalars(res: dict) -> dict[str, float]:
    """``individual/test/acc/<method>/<K>shot``, ``individual/test/acc/<method>`` (the mean over the run's
    shot counts), ``individual/test/paired_diff/<method>/<K>shot`` (descendants:
    ``.../descendants/<shape>/<strategy>/<K>shot``) and the judgement's Spearman values."""
    out: dict[str, float] = {}
    by_method: dict[str, list[float]] = {}
    for shots, rows in res["tables"].items():
        for r in rows:
            out[f"individual/test/acc/{r['method']}/{shots}shot"] = r["mean"]
            by_method.setdefault(r["method"], []).append(r["mean"])
            if r["paired"] and r["method"] != "scratch":
                out[f"individual/test/paired_diff/{r['method']}/{shots}shot"] = r["paired"]["mean_diff"]
    out |= {f"individual/test/acc/{m}": sum(v) / len(v) for m, v in by_method.items()}
    for shots, j in res["judgement"].items():
        for stat, v in j["statistics"].items():
            if v["spearman_score_vs_gain"] is not None:
                out[f"learngene/judgement/spearman/{stat}/{shots}shot"] = v["spearman_score_vs_gain"]
    for shots, d in res.get("descendants", {}).items():
        for r in d["rows"]:
            if r["gain"]:
                name = f"individual/test/paired_diff/descendants/{r['shape']}/{r['strategy']}/{shots}shot"
                out[name] = r["gain"]["mean_diff"]
    return out


def log_tables(ctx: RunContext, res: dict) -> None:
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


__all__ = ["build_results", "method_names", "run_report", "scalars", "terminal_summary", "to_markdown"]
