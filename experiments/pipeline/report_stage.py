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
from learngene_core.errors import CheckpointError
from learngene_core.metrics.stats import mean_ci95, paired_difference, spearman
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("learngene")
CI_TEXT = (
    "95% Student-t interval t(0.975, n-1) * sd / sqrt(n) over the method's distinct results: collective seeds x "
    "target tasks x seeds for methods that depend on the ancestor, target tasks x seeds for those that do not "
    "(scratch, the meta-learners). The target tasks are the same for every collective seed, so this interval "
    "treats task difficulty as independent across collective seeds; the paired difference removes it"
)
PAIRED_TEXT = (
    "paired: method minus scratch on the same (collective seed, seed, task); mean, 95% Student-t interval of the "
    "differences, two-sided Wilcoxon signed-rank p. Pairing removes each task's own difficulty"
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


def _summary(g: Gathered) -> dict:
    vals = [g.unique[k] for k in sorted(g.unique)]
    mean, ci = mean_ci95(vals)
    return {"mean": mean, "ci95": ci, "n": len(vals), "accuracies": vals,
            "parameters": g.info.get("parameters"), "inherited_parameters": g.info.get("inherited_parameters"),
            "train_time_s": sum(g.times) / len(g.times) if g.times else None}  # fmt: skip


def _paired(g: Gathered, ref: Gathered | None) -> dict | None:
    """Paired difference on the tasks both have. A pair of computations that several collective seeds share
    (ProtoNet and scratch do not depend on the learngene) counts once: repeating it would narrow the interval."""
    if ref is None:
        return None
    pairs = {}
    for k in sorted(set(g.by_task) & set(ref.by_task)):
        cs, seed, task = k
        pairs.setdefault((g.source[cs], ref.source[cs], seed, task), (g.by_task[k], ref.by_task[k]))
    if not pairs:
        return None
    a, b = zip(*pairs.values())
    return {"vs": "scratch", **paired_difference(list(a), list(b))}


def method_rows(raw: dict, entries: list[dict], methods: list[str]) -> list[dict]:
    by_method: dict[str, list[dict]] = {}
    for e in entries:
        if e["method"] != "judgement":
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


def judgement_table(raw: dict, entries: list[dict], lg_infos: dict[int, dict]) -> dict | None:
    arms: dict[str, dict[str, list[dict]]] = {}
    windows: dict[str, dict] = {}
    for e in entries:
        if e["method"] == "judgement":
            kind, name = e["arm"].split(":", 1)
            arms.setdefault(name, {}).setdefault(kind, []).append(e)
            windows[name] = e["window"]
    if not arms:
        return None
    rows = []
    gains_by_seed: dict[str, dict[int, float]] = {}
    for name, w in sorted(windows.items(), key=lambda kv: kv[1]["start"]):
        gi = gather_entries(raw, arms[name].get("inherit", []))
        gs = gather_entries(raw, arms[name].get("scratch", []))
        inh, scr = gi.by_task, gs.by_task
        gain = _paired(gi, gs) if inh and scr else None
        per_seed = {}
        for cs in sorted({k[0] for k in inh}):
            ks = [k for k in inh if k[0] == cs and k in scr]
            if ks:
                per_seed[cs] = float(np.mean([inh[k] - scr[k] for k in ks]))
        gains_by_seed[name] = per_seed
        selected = {
            cs for cs, info in lg_infos.items() if info.get("selected", {}).get("start") == w["start"]
        }
        rows.append({
            "window": name, "start": w["start"], "blocks": w["blocks"], "selected_in_seeds": sorted(selected),
            "parameters": gi.info.get("parameters"), "inherited_parameters": gi.info.get("inherited_parameters"),
            "inherit": _summary(gi) if inh else None,
            "scratch": _summary(gs) if scr else None,
            "gain": gain,
            "scores": window_scores(lg_infos, w["start"]),
        })  # fmt: skip
    scored = [r for r in rows if r["gain"] is not None]
    best = max(scored, key=lambda r: r["gain"]["mean_diff"])["window"] if scored else None
    stats = {}
    for stat in sorted({s for r in rows for s in r["scores"]}):
        pts = [(r["scores"][stat], r["gain"]["mean_diff"]) for r in scored if stat in r["scores"]]
        picks = {cs: info["all_statistics"][stat]["picked"] for cs, info in lg_infos.items()
                 if stat in info.get("all_statistics", {})}  # fmt: skip
        pick_labels = {cs: f"{p['blocks'][0]}-{p['blocks'][-1]}" for cs, p in picks.items()}
        pick_gains = [gains_by_seed.get(lbl, {}).get(cs) for cs, lbl in pick_labels.items()]
        pick_gains = [g for g in pick_gains if g is not None]
        stats[stat] = {
            "spearman_score_vs_gain": spearman([p[0] for p in pts], [p[1] for p in pts]) if pts else None,
            "picked": {str(cs): lbl for cs, lbl in pick_labels.items()},
            "picked_gain": float(np.mean(pick_gains)) if pick_gains else None,
            "picks_best": bool(pick_labels) and all(lbl == best for lbl in pick_labels.values()),
        }
    ranked = sorted((s for s in stats if stats[s]["picked_gain"] is not None),
                    key=lambda s: stats[s]["picked_gain"], reverse=True)  # fmt: skip
    return {"rows": rows, "best_window": best, "statistics": stats,
            "best_statistic": ranked[0] if ranked else None,
            "statistics_picking_best": [s for s in stats if stats[s]["picks_best"]]}  # fmt: skip


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
    tables, judgement = {}, {}
    for shots in sorted({e["shots"] for e in entries}):
        es = [e for e in entries if e["shots"] == shots]
        tables[str(shots)] = method_rows(raw, es, methods)
        j = judgement_table(raw, es, lg_infos)
        if j:
            judgement[str(shots)] = j
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
            "is_paper_choice": {str(cs): i["is_paper_choice"] for cs, i in lg_infos.items()},
        },
        "tables": tables,
        "judgement": judgement,
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
    pv = "n/a" if p.get("p_wilcoxon") is None else f"{p['p_wilcoxon']:.3g}"
    return f"{_pct(p['mean_diff'], signed=True)}{ci} (p {pv})"


def to_markdown(res: dict) -> str:
    p = res["protocol"]
    cs = res["collective_seeds"]
    lines = [f"# Results: {res['experiment']} (budget {res['budget']}, seed {res['seed']}, collective seeds {cs}, "
             f"{res['collective_mode']} ancestor)", "",
             f"{p['ways']}-way target tasks of novel classes, {p['target_tasks_per_seed']} tasks x {len(p['seeds'])} "
             f"seeds per shot count x {len(cs)} collective seed(s) ({p['mode']} protocol), {p['epochs']} epochs. "
             "Accuracy in %: mean ± 95 % CI (Student t over collective seeds x tasks x seeds). `vs scratch`: the "
             "paired difference on the same tasks (mean ± 95 % CI, Wilcoxon signed-rank p).", ""]  # fmt: skip
    chosen = res["learngene"]
    if chosen.get("selected"):
        sel = "; ".join(f"seed {s}: {', '.join(b)}" for s, b in chosen["selected"].items())
        lines += [f"Learngene chosen by `{chosen['statistic']}`: {sel} (the paper's choice: "
                  f"{', '.join(chosen['paper_choice'] or [])}).", ""]  # fmt: skip
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
            stats = list(j["statistics"])
            lines += ["", f"Judgement ({shots}-shot): every window inherited and trained from scratch; gain = inherited "
                      f"minus scratch, paired. Best window: **{j['best_window']}**. Criterion scores (lower = "
                      "learngene), averaged over collective seeds:", "",
                      "| window | parameters | inherited | scratch | gain | " + " | ".join(stats) + " |",
                      "| --- " * (5 + len(stats)) + "|"]  # fmt: skip
            for r in j["rows"]:
                mark = " **(selected)**" if r["selected_in_seeds"] else ""
                scores = " | ".join(f"{r['scores'][s]:.4g}" if s in r["scores"] else "n/a" for s in stats)
                lines.append(f"| {r['window']}{mark} | {_m(r['parameters'])} | {_acc(r['inherit'])} | {_acc(r['scratch'])} "
                             f"| {_paired_text(r['gain'])} | {scores} |")  # fmt: skip
            lines += ["", "| statistic | Spearman(score, gain) | picks (per collective seed) | gain of its picks |",
                      "| --- | --- | --- | --- |"]  # fmt: skip
            for s, v in j["statistics"].items():
                rho = "n/a" if v["spearman_score_vs_gain"] is None else f"{v['spearman_score_vs_gain']:+.2f}"
                picks = ", ".join(f"{k}: {w}" for k, w in v["picked"].items())
                lines.append(f"| {s} | {rho} | {picks} | {_pct(v['picked_gain'], signed=True)} |")
            best = j["statistics_picking_best"]
            lines += ["", f"Statistics that pick the best window ({j['best_window']}): "
                      f"{', '.join(best) if best else 'none'}; the best gain from a statistic's picks: "
                      f"{j['best_statistic'] or 'n/a'}. Negative Spearman = lower scores, larger gains."]  # fmt: skip
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
        log_tables(ctx, res)
    dist.barrier()
    return res


def scalars(res: dict) -> dict[str, float]:
    """``individual/test/acc/<method>/<K>shot``, ``individual/test/acc/<method>`` (the mean over the run's
    shot counts), ``individual/test/paired_diff/<method>/<K>shot`` and the judgement's Spearman values."""
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


__all__ = ["build_results", "method_names", "run_report", "scalars", "to_markdown"]
