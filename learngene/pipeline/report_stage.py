"""Stage 4: results.json and results.md (mean, 95 % CI, n, parameters, time per method), the judgement
table with its Spearman correlation, the collective model's continual and open-world metrics, plots."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from learngene.core.stats import mean_ci95, spearman
from learngene.pipeline.context import RunContext
from learngene.pipeline.individual_stage import RAW
from learngene.utils import dist
from learngene.utils.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger("learngene")
METHOD_LABELS = {
    "learngene": "learngene (inherit selected blocks)",
    "scratch": "scratch (same network, random init)",
    "finetune": "fine-tune whole collective model",
    "linear_probe": "linear probe on collective features",
    "prototype": "prototype (nearest centroid) on collective features",
    "protonet": "ProtoNet (meta-trained on base classes)",
    "maml": "MAML (meta-trained on base classes)",
}


def summarise(entry: dict) -> dict:
    accs = [t["acc"] for t in entry["tasks"]]
    mean, ci = mean_ci95(accs)
    return {
        "method": entry["method"],
        "mean": mean,
        "ci95": ci,
        "n": len(accs),
        "parameters": entry.get("parameters"),
        "inherited_parameters": entry.get("inherited_parameters"),
        "train_time_s": sum(t["train_time_s"] for t in entry["tasks"]) / len(accs),
        "accuracies": accs,
        **({"meta_train_time_s": entry["meta_train_time_s"]} if "meta_train_time_s" in entry else {}),
    }


def build_results(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    raw = read_json(ctx.path(*RAW)) if ctx.path(*RAW).exists() else {"entries": {}}
    lg_info_path = (
        ctx.path("learngene.json")
        if ctx.path("learngene.json").exists()
        else ctx.source_path("learngene.json")
    )
    lg_info = read_json(lg_info_path) if lg_info_path.exists() else {}
    metrics_path = ctx.source_path("collective", "metrics.json")
    collective = read_json(metrics_path) if metrics_path.exists() else {}
    # the settings the individual stage actually ran with (recorded with its results), else this config's
    recorded = raw.get("fingerprint", {}).get("config", {}).get("individual")
    icfg = OmegaConf.create(recorded) if recorded else cfg.individual
    tables, judgement = {}, {}
    window_scores = {w["start"]: w["score"] for w in lg_info.get("scores", {}).get("windows", [])}
    selected = lg_info.get("selected", {}).get("start")
    for shots in icfg.shots:
        rows, jrows = [], []
        for _key, entry in raw["entries"].items():
            if entry["shots"] != shots:
                continue
            if entry["method"] == "judgement":
                s = summarise(entry)
                start = entry["window"]["start"]
                jrows.append({"window": "-".join(entry["window"]["blocks"][:1] + entry["window"]["blocks"][-1:]),
                              "start": start, "score": window_scores.get(start), "selected": start == selected,
                              **{k: s[k] for k in ("mean", "ci95", "n", "parameters", "inherited_parameters")}})  # fmt: skip
            else:
                rows.append(summarise(entry))
        order = list(METHOD_LABELS)
        rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else 99)
        jrows.sort(key=lambda r: r["start"])
        tables[str(shots)] = rows
        if jrows:
            scored = [r for r in jrows if r["score"] is not None]
            judgement[str(shots)] = {
                "rows": jrows,
                "spearman_score_vs_accuracy": spearman(
                    [r["score"] for r in scored], [r["mean"] for r in scored]
                ),
                "best_window": max(jrows, key=lambda r: r["mean"])["window"],
            }
    return {
        "experiment": cfg.exp_name,
        "budget": cfg.budget.name,
        "seed": cfg.seed,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "protocol": {
            "ways": icfg.ways,
            "shots": list(icfg.shots),
            "target_tasks_per_seed": icfg.n_tasks,
            "seeds": list(icfg.seeds),
            "mode": icfg.protocol,
            "epochs": icfg.epochs,
            "batch_size": icfg.batch_size,
            "lr": icfg.lr,
        },  # fmt: skip
        "confidence_interval": "95% Student-t interval over all target tasks x seeds: t(0.975, n-1) * sd / sqrt(n)",
        "learngene": {
            k: lg_info.get(k) for k in ("selected", "paper_choice", "is_paper_choice", "statistic")
        },
        "tables": tables,
        "judgement": judgement,
        "judgement_note": "spearman < 0 means windows with a lower (better) criterion score reached higher accuracy",
        "collective": {
            k: collective.get(k)
            for k in (
                "final_average_accuracy",
                "backward_transfer",
                "forgetting",
                "average_accuracy",
                "parameters",
                "final_widths",
            )
        }  # fmt: skip
        | {
            "open_world_last": (collective.get("open_world") or [{}])[-1],
            "accuracy_matrix": collective.get("accuracy_matrix"),
        },
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _m(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.2f}M"


def to_markdown(res: dict) -> str:
    lines = [f"# Results: {res['experiment']} (budget {res['budget']}, seed {res['seed']})", ""]
    p = res["protocol"]
    lines += [
        f"{p['ways']}-way target tasks of novel classes, {p['target_tasks_per_seed']} tasks x {len(p['seeds'])} seeds "
        f"per shot count ({p['mode']} protocol), {p['epochs']} epochs. Accuracy in %: mean ± 95 % CI "
        f"(Student t over tasks x seeds).", "",
    ]  # fmt: skip
    lg = res["learngene"]
    if lg.get("selected"):
        lines += [f"Learngene: {', '.join(lg['selected']['blocks'])} chosen by `{lg['statistic']}` "
                  f"({'the paper' + chr(39) + 's choice' if lg['is_paper_choice'] else 'not the paper' + chr(39) + 's choice ' + ', '.join(lg['paper_choice'])}).", ""]  # fmt: skip
    for shots, rows in res["tables"].items():
        lines += [f"## {shots}-shot", "", "| method | accuracy | n | parameters | inherited | train s/task |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            ci = f" ± {_pct(r['ci95'])}" if r["ci95"] is not None else ""
            lines.append(f"| {METHOD_LABELS.get(r['method'], r['method'])} | {_pct(r['mean'])}{ci} | {r['n']} | "
                         f"{_m(r['parameters'])} | {_m(r['inherited_parameters'])} | {r['train_time_s']:.2f} |")  # fmt: skip
        j = res["judgement"].get(shots)
        if j:
            rho = j["spearman_score_vs_accuracy"]
            lines += ["", f"Judgement ({shots}-shot): every window of consecutive blocks inherited; Spearman(score, "
                      f"accuracy) = {'n/a' if rho is None else f'{rho:.2f}'} (negative = criterion ranks well); "
                      f"best window: {j['best_window']}.", "", "| window | criterion score | accuracy | parameters |",
                      "| --- | --- | --- | --- |"]  # fmt: skip
            for r in j["rows"]:
                ci = f" ± {_pct(r['ci95'])}" if r["ci95"] is not None else ""
                mark = " **(selected)**" if r["selected"] else ""
                score = "n/a" if r["score"] is None else f"{r['score']:.4g}"
                lines.append(
                    f"| {r['window']}{mark} | {score} | {_pct(r['mean'])}{ci} | {_m(r['parameters'])} |"
                )
        lines.append("")
    c = res["collective"]
    if c.get("average_accuracy"):
        ow = c.get("open_world_last") or {}
        lines += ["## Collective model", "",
                  f"- average accuracy after the last task: {_pct(c['final_average_accuracy'])} %",
                  f"- backward transfer: {_pct(c['backward_transfer'])} points; forgetting: {_pct(c['forgetting'])} points",
                  f"- parameters: {_m(c['parameters'][0])} -> {_m(c['parameters'][-1])}",
                  f"- open world after the last task: AUROC msp {ow.get('auroc_msp', float('nan')):.3f}, "
                  f"energy {ow.get('auroc_energy', float('nan')):.3f}; FPR@95TPR msp {ow.get('fpr95_msp', float('nan')):.3f}",
                  ""]  # fmt: skip
    return "\n".join(lines)


def run_report(ctx: RunContext) -> dict:
    res = build_results(ctx)
    if dist.is_rank_zero():
        atomic_write_json(ctx.path("results.json"), res)
        atomic_write_text(ctx.path("results.md"), to_markdown(res))
        from learngene.pipeline.plots import plot_accuracy_matrix, plot_judgement

        if res["collective"].get("accuracy_matrix"):
            plot_accuracy_matrix(
                res["collective"]["accuracy_matrix"], ctx.path("plots", "accuracy_matrix.png")
            )
        for shots, j in res["judgement"].items():
            if all(r["score"] is not None for r in j["rows"]):
                plot_judgement(
                    j["rows"], ctx.path("plots", f"judgement_{shots}shot.png"), f"judgement, {shots}-shot"
                )
        log_tables(ctx, res)
    dist.barrier()
    return res


def log_tables(ctx: RunContext, res: dict) -> None:
    """Scalars ``individual/test/acc/<method>/<K>shot`` and ``individual/test/acc/<method>`` (the mean over the
    run's shot counts, one number per method for sweeps over shots), plus a W&B table and the plots."""
    scalars: dict[str, float] = {}
    by_method: dict[str, list[float]] = {}
    for shots, rows in res["tables"].items():
        for r in rows:
            scalars[f"individual/test/acc/{r['method']}/{shots}shot"] = r["mean"]
            by_method.setdefault(r["method"], []).append(r["mean"])
    scalars |= {f"individual/test/acc/{m}": sum(v) / len(v) for m, v in by_method.items()}
    for shots, j in res["judgement"].items():
        if j["spearman_score_vs_accuracy"] is not None:
            scalars[f"learngene/judgement/spearman/{shots}shot"] = j["spearman_score_vs_accuracy"]
    ctx.log_metrics(scalars)
    for lg in ctx.loggers:
        if type(lg).__name__ == "WandbLogger":
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
            lg.log_table(key="results", columns=cols, data=data)
            for png in sorted(Path(ctx.path("plots")).glob("*.png")):
                lg.log_image(key=f"plots/{png.stem}", images=[str(png)])
