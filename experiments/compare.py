"""Gather finished runs into one comparison: the paired gain of learngene over scratch against the ancestor's
training compute, for the continual and the joint ancestor.

    python experiments/compare.py outputs/budget_scaling/multiruns/<time> [more run dirs ...] [--out DIR]

Reads only run directories (``results.json`` and ``collective/seed_*/manifest.json``), found anywhere below
the given paths, so the runs may come from a Hydra multirun, a SLURM array or a W&B sweep. Writes
``comparison.json``, ``comparison.md`` and ``plots/gain_vs_budget.png`` into ``--out`` (default: the
first path). Compute is the ancestor's training sample-steps (images processed, summed over its tasks),
averaged over its collective seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.pipeline import run_files  # noqa: E402
from learngene_core.errors import LearngeneError  # noqa: E402
from learngene_core.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

REFERENCES = ("linear_probe", "protonet")


def find_runs(paths: list[Path]) -> list[Path]:
    runs = []
    for p in paths:
        if not p.exists():
            raise LearngeneError(f"{p} does not exist; give run directories or folders that hold them")
        runs += sorted(
            {r.parent for r in p.rglob("results.json")} | ({p} if (p / "results.json").exists() else set())
        )
    return sorted(set(runs))


def run_summary(run: Path) -> dict:
    res = run_files.read_json_file(run / "results.json", "results")
    manifests = [run_files.read_manifest(run_files.collective_dir(run, s) / "manifest.json")
                 for s in res.get("collective_seeds", [])]  # fmt: skip
    manifests = [m for m in manifests if m]
    if not manifests:
        raise LearngeneError(
            f"{run}: results.json but no collective manifest (collective/seed_<s>/manifest.json)"
        )
    samples = [sum(e.get("samples", 0) for e in m["tasks"]) for m in manifests]
    params = [m["tasks"][-1].get("parameters") for m in manifests]
    collective_cfg = manifests[0]["fingerprint"]["config"]["collective"]
    out = {
        "run": str(run),
        "mode": manifests[0].get("mode", "continual"),
        **_layout(run, res),
        "epochs_per_task": collective_cfg.get("epochs"),
        "n_tasks": manifests[0]["n_tasks"],
        "collective_seeds": res.get("collective_seeds"),
        "compute_samples": sum(samples) / len(samples),
        "collective_parameters": params[0],
        "shots": {},
    }
    for shots, rows in res["tables"].items():
        by = {r["method"]: r for r in rows}
        entry = {}
        for m in ("learngene", *REFERENCES):
            if m in by and by[m].get("paired"):
                entry[m] = {"accuracy": by[m]["mean"], "accuracy_ci95": by[m]["ci95"], **by[m]["paired"]}
        if "scratch" in by:
            entry["scratch"] = {"accuracy": by["scratch"]["mean"], "accuracy_ci95": by["scratch"]["ci95"]}
        j = res.get("judgement", {}).get(shots)
        if j:
            c = j.get("chosen_on_validation") or {}
            entry["chosen_window"] = ({"window": c["window"], "validation_gain": c["window_validation_gain"],
                                       "test": c["window_test_gain"]} if c else None)  # fmt: skip
            entry["chosen_statistic"] = ({"statistic": c["statistic"], "test": c["statistic_test_gain"]}
                                         if c.get("statistic") else None)  # fmt: skip
            entry["statistics"] = {s: {"spearman": v["spearman_score_vs_gain"], "picked_gain": v["picked_gain"],
                                       "picked": v["picked"]} for s, v in j["statistics"].items()}  # fmt: skip
        out["shots"][shots] = entry
    return out


def _layout(run: Path, res: dict) -> dict:
    """The individual network's lower pools and the trainer's precision: from results.json, or for runs written
    before it held them, from the run's Hydra config (``.hydra/config.yaml``); None where neither says."""
    p = res.get("protocol", {})
    found = {"lower_pools": p.get("lower_pools"), "precision": p.get("precision")}
    hydra = run / ".hydra" / "config.yaml"
    if None in found.values() and hydra.is_file():
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(hydra)
        # individual.lower_pools: the key before the individual node was split
        pools = OmegaConf.select(cfg, "individual_net.lower_pools") or OmegaConf.select(
            cfg, "individual.lower_pools"
        )
        found["lower_pools"] = found["lower_pools"] or pools
        precision = OmegaConf.select(cfg, "trainer.precision")
        found["precision"] = found["precision"] or (None if precision is None else str(precision))
    return found


def _pp(x: float | None, signed: bool = True) -> str:
    return "n/a" if x is None else (f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}")


def _ci(p: dict | None) -> str:
    return "n/a" if not p else f"{_pp(p['mean_diff'])} ± {_pp(p['ci95'], False)}"


def to_markdown(comp: dict) -> str:
    lines = ["# Learngene gain against the ancestor's budget", "",
             "Paired gain = learngene minus scratch on the same target tasks (mean ± 95 % CI, points; the target task "
             "is the unit, two-level over collective seeds; t-test p). Compute = the ancestor's training sample-steps. "
             "Linear probe and ProtoNet: their own paired difference to scratch, as reference lines. Window and "
             "statistic: chosen on the held-out validation tasks, their gain measured on the test tasks.", ""]  # fmt: skip
    for shots in comp["shots"]:
        lines += [f"## {shots}-shot", "",
                  "| ancestor | epochs/task | compute (samples) | collective seeds | lower pools | precision | learngene "
                  "| scratch | gain vs scratch | p | linear probe vs scratch | ProtoNet vs scratch "
                  "| window chosen on validation: test gain | statistic chosen on validation: test gain of its picks |",
                  "| --- " * 14 + "|"]  # fmt: skip
        for r in comp["runs"]:
            e = r["shots"].get(shots)
            if not e or "learngene" not in e:
                continue
            row = e["learngene"]
            refs = [_ci(e.get(m)) for m in REFERENCES]
            cw, cs_ = e.get("chosen_window"), e.get("chosen_statistic")
            best = f"{cw['window']}: {_ci(cw['test'])}" if cw else "n/a"
            stat = f"{cs_['statistic']}: {_ci(cs_['test'])}" if cs_ else "n/a"
            p = "n/a" if row.get("p") is None else f"{row['p']:.2g}"
            scratch = _pp(e["scratch"]["accuracy"], False) if "scratch" in e else "n/a"
            lines.append(
                f"| {r['mode']} | {r['epochs_per_task']} | {r['compute_samples']:.3g} | {len(r['collective_seeds'])} "
                f"| {r.get('lower_pools') or 'n/a'} | {r.get('precision') or 'n/a'} | {_pp(row['accuracy'], False)} "
                f"| {scratch} | {_pp(row['mean_diff'])} ± {_pp(row['ci95'], False)} "
                f"| {p} | {refs[0]} | {refs[1]} | {best} | {stat} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(comp: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = list(comp["shots"])
    fig, axes = plt.subplots(
        1, len(shots), figsize=(5.5 * len(shots), 4), squeeze=False, layout="constrained"
    )
    colors = {"continual": "tab:blue", "joint": "tab:orange"}
    # one line per ancestor and layout: a lower_pools=match or fp32 run is not drawn on its twin's line
    series = sorted({(r["mode"], r.get("lower_pools"), r.get("precision")) for r in comp["runs"]}, key=str)
    for ax, s in zip(axes[0], shots):
        for k, (mode, pools, precision) in enumerate(series):
            color, marker, ls = colors.get(mode, "tab:gray"), "os^vD"[k % 5], "-" if k % 2 == 0 else ":"
            runs = sorted((r for r in comp["runs"] if (r["mode"], r.get("lower_pools"), r.get("precision"))
                           == (mode, pools, precision) and "learngene" in r["shots"].get(s, {})),
                          key=lambda r: r["compute_samples"])  # fmt: skip
            if not runs:
                continue
            name = f"{mode} ancestor" + "".join(f", {v}" for v in (pools, precision) if v)
            x = [r["compute_samples"] for r in runs]
            y = [100 * r["shots"][s]["learngene"]["mean_diff"] for r in runs]
            e = [100 * (r["shots"][s]["learngene"]["ci95"] or 0) for r in runs]
            ax.errorbar(
                x, y, yerr=e, color=color, marker=marker, ls=ls, capsize=3, label=f"learngene, {name}"
            )
            lp = [
                100 * r["shots"][s]["linear_probe"]["mean_diff"]
                for r in runs
                if "linear_probe" in r["shots"][s]
            ]
            if len(lp) == len(x):
                ax.plot(x, lp, color=color, ls="--", lw=1, marker="x", label=f"linear probe, {name}")
        pn = [
            100 * r["shots"][s]["protonet"]["mean_diff"]
            for r in comp["runs"]
            if "protonet" in r["shots"].get(s, {})
        ]
        if pn:
            ax.axhline(sum(pn) / len(pn), color="tab:green", ls=":", label="ProtoNet (no ancestor)")
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("ancestor training compute (sample-steps)")
        ax.set_ylabel("paired gain over scratch (points, 95% CI)")
        ax.set_title(f"{s}-shot")
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(paths: list[Path], out: Path) -> dict:
    runs = [run_summary(r) for r in find_runs(paths)]
    if not runs:
        raise LearngeneError(f"no finished runs (results.json) under {[str(p) for p in paths]}")
    runs.sort(key=lambda r: (r["mode"], r["compute_samples"]))
    shots = sorted({s for r in runs for s in r["shots"]}, key=int)
    comp = {"runs": runs, "shots": shots, "compute_unit": "ancestor training sample-steps (images x epochs)"}
    atomic_write_json(out / "comparison.json", comp)
    atomic_write_text(out / "comparison.md", to_markdown(comp))
    plot(comp, out / "plots" / "gain_vs_budget.png")
    return comp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, or folders holding them")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the first path)")
    args = parser.parse_args(argv)
    try:
        comp = compare(args.paths, args.out or args.paths[0])
    except LearngeneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(to_markdown(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
