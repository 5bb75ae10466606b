"""The report's numbers (stage 4, part 1 of 3): every method's accuracy and its paired difference to the reference
method, each multi-arm method's own section, and the collective model's metrics, as the results dict.

Per method and shot count: mean and 95 % interval with the target task as the unit, and the paired difference to
the reference (the method registered ``reference=True``, scratch) over the same target tasks: mean, 95 % interval,
t-test and Wilcoxon p. Multi-arm methods (the judgement, the descendants) build their own section
(:mod:`experiments.pipeline.report.sections`). Tables: ``tables.py``; plots, W&B and the sweep's scalar:
``publish.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from experiments.methods.registry import get_method, reference_method
from experiments.pipeline import run_files
from experiments.pipeline.context import RunContext
from experiments.pipeline.report.sections import SectionInput, sections_for
from experiments.pipeline.run_files import VALIDATION
from learngene_core.errors import CheckpointError
from learngene_core.metrics.stats import mean_ci95, paired_over_tasks, two_level_mean

log = logging.getLogger("learngene")
CI_TEXT = (
    "The unit is the target task: results of one computation per collective seed are averaged per task first, "
    "so n is the number of target tasks (never tasks x collective seeds). With one collective seed (or a method "
    "that does not depend on the ancestor: {reference}, the meta-learners) the 95% interval is Student t over the "
    "tasks; with several it is a two-level estimate (collective seed x target task random effects, Satterthwaite "
    "degrees of freedom) whose between-seed part widens it when the ancestors differ; between_seed_sd is the "
    "spread of the per-seed means. With 2 collective seeds that part has one degree of freedom and the interval "
    "covers about 90 % when the ancestors differ (simulated; 3 seeds: 94 %)"
)
PAIRED_TEXT = (
    "paired: method minus {reference} on the same target tasks (same classes, shots, seeds), the task as the unit as "
    "for the accuracies: mean, 95% interval, p = two-sided t test of the same estimate; p_wilcoxon = two-sided "
    "Wilcoxon signed-rank test over the per-task differences, given only for one ancestor (with several it would "
    "treat them as fixed and is left out). A pair of computations that several collective "
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
    # collective seed -> the computation its accuracies come from
    computation: dict = field(default_factory=dict)
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
        g.computation[e["collective_seed"]] = e["computation"]
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
            rows.setdefault((g.computation[cs], ref.computation[cs]), {})[(seed, task)] = (
                g.by_task[k] - ref.by_task[k]
            )


def _paired_rows(rows: dict, vs: str) -> dict | None:
    """:func:`paired_over_tasks` over the tasks every row has."""
    grid = _grid(rows)
    return {"vs": vs, **paired_over_tasks(grid)} if grid else None


def _paired(g: Gathered, ref: Gathered | None, vs: str) -> dict | None:
    """Paired difference with the target task as its unit (:func:`paired_over_tasks`): one row of differences per
    distinct pair of computations (a reference shared by every collective seed is not repeated per seed; a pair
    that every seed shares, such as ProtoNet and scratch, is one row), over the tasks every row has."""
    if ref is None:
        return None
    rows: dict = {}
    _add_pairs(rows, g, ref)
    return _paired_rows(rows, vs)


def method_rows(
    raw: dict, entries: list[dict], methods: list[str], reference: str | None, sectioned: set[str]
) -> list[dict]:
    """One row per single-arm method (multi-arm methods have their own sections), in ``methods`` order; each with its
    paired difference to ``reference`` (the reference's own row: to itself)."""
    by_method: dict[str, list[dict]] = {}
    for e in entries:
        if e["method"] not in sectioned:
            by_method.setdefault(e["method"], []).append(e)
    ref = gather_entries(raw, by_method[reference]) if reference in by_method else None
    rows = []
    for m in [m for m in methods if m in by_method] + [m for m in by_method if m not in methods]:
        g = gather_entries(raw, by_method[m])
        row = {"method": m, "label": label(m), **_summary(g),
               "paired": _paired(g, ref, reference) if m != reference else _paired(g, g, reference)}  # fmt: skip
        for k in ("meta_train_time_s", "converged", "convergence", "first_order"):
            if k in g.info:
                row[k] = g.info[k]
        rows.append(row)
    return rows


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


@dataclass(frozen=True)
class ReportPlan:
    """What the report takes from the config: the run's identity and the plan whose results it reports."""

    experiment: str
    budget: str
    seed: int
    collective_mode: str
    from_run: str | None
    methods: tuple[str, ...]
    shots: frozenset[int]
    data: dict
    protocol: dict  # ways, target tasks per seed, task seeds, protocol, epochs, batch size, lr, lower pools,
    # the trainer's precision

    @classmethod
    def from_config(cls, cfg) -> ReportPlan:
        i, t = cfg.individual, cfg.target
        return cls(
            experiment=cfg.exp_name, budget=cfg.budget.name, seed=cfg.seed,
            collective_mode=cfg.collective.get("mode", "continual"),
            from_run=None if cfg.get("from_run") is None else str(cfg.from_run), methods=tuple(cfg.methods),
            shots=frozenset(int(x) for x in t.shots), data=OmegaConf.to_container(cfg.data, resolve=True),
            protocol={"ways": t.ways, "target_tasks_per_seed": t.n_tasks, "seeds": list(t.seeds),
                      "mode": t.protocol, "epochs": i.epochs, "batch_size": i.batch_size, "lr": i.lr,
                      "lower_pools": cfg.individual_net.lower_pools, "precision": str(cfg.trainer.precision)},
        )  # fmt: skip


def build_results(ctx: RunContext, plan: ReportPlan) -> dict:
    raw_path = run_files.raw_results_path(ctx.out)
    if not raw_path.exists() and ctx.reads_from != ctx.out:
        raw_path = run_files.raw_results_path(ctx.reads_from)
    if not raw_path.exists():
        raise CheckpointError(
            f"nothing to report: {raw_path} does not exist. Run the individual stage first (stage=[...,individual,"
            f"report]) or point from_run at a run directory whose individual stage finished"
            if plan.from_run is None
            else f"nothing to report: {raw_path} does not exist; the report reads this run's own stage-3 results: "
            f"run stage=[individual,report] with from_run={plan.from_run}"
        )
    raw = run_files.read_raw_results(raw_path)
    # only this configuration's plan: entries of other methods, shot counts or collective seeds that an earlier
    # invocation left in the same file are not this run's results
    plan_methods, plan_shots = set(plan.methods), plan.shots
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
    methods = list(plan.methods)
    reference = reference_method()
    sections = sections_for(methods)
    tables: dict[str, list] = {}
    section_tables: dict[str, dict] = {name: {} for name in sections}
    for shots in sorted({e["shots"] for e in entries}):
        es = [e for e in entries if e["shots"] == shots and e.get("split") is None]
        held_out = [e for e in entries if e["shots"] == shots and e.get("split") == VALIDATION]
        tables[str(shots)] = method_rows(raw, es, methods, reference, set(sections))
        for name, section in sections.items():
            inp = SectionInput(raw, [e for e in es if e["method"] == name],
                               [e for e in held_out if e["method"] == name], lg_infos)  # fmt: skip
            if inp.entries and (t := section.table(inp)):
                section_tables[name][str(shots)] = t
    first = next(iter(lg_infos.values()), {})
    return {
        "experiment": plan.experiment,
        "budget": plan.budget,
        "seed": plan.seed,
        "collective_seeds": seeds,
        "collective_mode": plan.collective_mode,
        "data": plan.data,
        "protocol": {
            "ways": plan.protocol["ways"],
            "shots": [int(s) for s in tables],
            **{k: v for k, v in plan.protocol.items() if k != "ways"},
        },
        "confidence_interval": CI_TEXT.format(reference=reference),
        "paired_definition": PAIRED_TEXT.format(reference=reference),
        "reference": reference,
        "learngene": {
            "statistic": first.get("statistic"),
            "paper_choice": first.get("paper_choice"),
            "selected": {str(cs): i["selected"]["blocks"] for cs, i in lg_infos.items()},
            "forced_by_config": any(i["selected"].get("forced_by_config") for i in lg_infos.values()),
            "is_paper_choice": {str(cs): i["is_paper_choice"] for cs, i in lg_infos.items()},
        },
        "tables": tables,
        **section_tables,
        **{f"{name}_note": section.note for name, section in sections.items() if section.note},
        "collective": collective_summary(metrics),
    }
