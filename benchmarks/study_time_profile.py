"""Where a run's time goes: wall time by stage, by collective seed and by stage-3 method, and the samples/s of
every kind of fit, read from a finished run directory (``timings.json``, the collective manifests and
``individual/results_raw.json``; nothing is re-run). Beside each wall time, the process's CPU seconds where the run
recorded them: a pause (SIGSTOP) or other jobs on the same cores inflate wall time but not CPU time, so a
one-thread run's CPU seconds are its compute, a clean profile even on a shared machine ("n/a": an older run).

    .venv/bin/python benchmarks/study_time_profile.py outputs/cifar_fewshot/runs/<time> [--json FILE]

Stage 1, per collective seed: the time in ``fit`` (training) and outside it (growth, evaluation after each
task, task statistics, checkpoints), and the training samples/s. Stage 3, per method (the judgement split into
its inherited and scratch arms, and test and validation tasks): computations run, wall time, time in training,
the rest (building, evaluation, per-fit start-up), and the training samples/s (shots x ways x epochs per task
over its training time). Computations that a shared cache (``individual.cache_dir``) served were not run by
this run and are counted apart. Run it on two run directories (e.g. ``trainer=cpu`` and ``trainer=cpu_fast``)
to compare them side by side: the last column then gives each row's time ratio to the first run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def profile(run: Path) -> dict:
    """Seconds by stage, stage-1 fits per collective seed and stage-3 computations per method."""
    run = Path(run)
    if not (run / "timings.json").is_file():
        raise SystemExit(
            f"error: {run / 'timings.json'} does not exist; give a run directory (outputs/.../runs/<time>)"
        )
    timings_file = _read(run / "timings.json")
    timings, cpu_stages = timings_file.get("total_s", {}), timings_file.get("total_cpu_s", {})
    cfg = _read(run / "results.json")
    protocol = cfg.get("protocol", {})
    collective = {}
    for manifest in sorted((run / "collective").glob("seed_*/manifest.json")):
        tasks = _read(manifest).get("tasks", [])
        fit = sum(t.get("fit_time_s") or 0 for t in tasks)
        total = sum(t.get("time_s") or 0 for t in tasks)
        samples = sum(t.get("samples") or 0 for t in tasks)
        cpu = [t.get("cpu_time_s") for t in tasks]
        collective[manifest.parent.name] = {"tasks": len(tasks), "total_s": total, "fit_s": fit,
                                            "outside_fit_s": total - fit,
                                            "cpu_s": sum(cpu) if cpu and None not in cpu else None,
                                            "samples_per_s": samples / fit if fit else None}  # fmt: skip
    raw = _read(run / "individual" / "results_raw.json")
    ways, epochs = protocol.get("ways"), protocol.get("epochs")
    if ways is None:  # no report yet: the run's config, as stage 2 recorded it
        lg = next(iter(sorted((run / "learngene").glob("seed_*/learngene.json"))), None)
        config = _read(lg).get("provenance", {}).get("config", {}) if lg else {}
        icfg = config.get("individual", {})  # before the split, ways was here too
        ways, epochs = config.get("target", icfg).get("ways"), icfg.get("epochs")
    methods: dict[str, dict] = defaultdict(lambda: {"computations": 0, "cached": 0, "wall_s": 0.0, "train_s": 0.0,
                                                    "cpu_s": 0.0, "samples": 0})  # fmt: skip
    seen = set()
    for key, e in raw.get("entries", {}).items():
        if e["computation"] in seen:
            continue
        seen.add(e["computation"])
        comp = raw["computations"][e["computation"]]
        name = e["method"]
        if e.get("arm"):
            name += "/" + e["arm"].split(":")[0]
        if e.get("split"):
            name += f" ({e['split']})"
        row = methods[name]
        if comp.get("first_entry") != key and comp.get("first_entry") not in raw["entries"]:
            row["cached"] += 1
            continue
        row["computations"] += 1
        row["wall_s"] += comp.get("wall_time_s") or 0.0
        row["cpu_s"] = (
            None if row["cpu_s"] is None or "cpu_time_s" not in comp else row["cpu_s"] + comp["cpu_time_s"]
        )
        train = sum(t.get("train_time_s") or 0.0 for t in comp["tasks"])
        # meta-trained weights are shared by the shot counts (trained once, then loaded): a computation whose wall
        # time is shorter than the meta-training loaded them, and its record repeats the time it took (weights
        # meta-trained in an interrupted invocation are counted nowhere: their time is not in any wall time either)
        meta = comp["info"].get("meta_train_time_s") or 0.0
        row["train_s"] += train + (meta if meta <= (comp.get("wall_time_s") or 0.0) else 0.0)
        if ways and epochs and e["method"] not in ("linear_probe", "prototype", "protonet", "maml"):
            row["samples"] += len(comp["tasks"]) * e["shots"] * ways * epochs
    for row in methods.values():
        row["other_s"] = row["wall_s"] - row["train_s"]
        row["samples_per_s"] = row["samples"] / row["train_s"] if row["samples"] and row["train_s"] else None
    return {"run": str(run), "stages_s": timings, "stages_cpu_s": cpu_stages, "collective": collective,
            "individual": dict(methods)}  # fmt: skip


def _fmt(x, spec: str = ".0f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_profiles(profiles: list[dict]) -> None:
    first = profiles[0]
    for p in profiles:
        print(f"\n== {p['run']}")
        total = sum(p["stages_s"].values())
        print(f"{'stage':40s} {'seconds':>9s} {'share':>6s} {'CPU s':>9s}"
              + ("  ratio to first" if len(profiles) > 1 else ""))  # fmt: skip
        for stage, s in p["stages_s"].items():
            ratio = s / first["stages_s"][stage] if first["stages_s"].get(stage) else None
            extra = f"  {_fmt(ratio, '.2f')}" if len(profiles) > 1 else ""
            cpu = _fmt(p.get("stages_cpu_s", {}).get(stage), "9.0f")
            print(f"{stage:40s} {s:9.0f} {100 * s / total if total else 0:5.1f}% {cpu:>9s}{extra}")
        print(f"\n{'collective seed':20s} {'tasks':>5s} {'total s':>9s} {'fit s':>9s} {'outside fit s':>14s} "
              f"{'samples/s':>10s} {'CPU s':>9s}")  # fmt: skip
        for seed, c in p["collective"].items():
            print(f"{seed:20s} {c['tasks']:5d} {c['total_s']:9.0f} {c['fit_s']:9.0f} {c['outside_fit_s']:14.0f} "
                  f"{_fmt(c['samples_per_s'], '10.1f')} {_fmt(c.get('cpu_s'), '9.0f'):>9s}")  # fmt: skip
        print(f"\n{'stage-3 method / arm':40s} {'runs':>5s} {'cached':>6s} {'wall s':>8s} {'train s':>8s} {'other s':>8s} "
              f"{'samples/s':>10s} {'CPU s':>8s}" + ("  ratio to first" if len(profiles) > 1 else ""))  # fmt: skip
        for name, r in sorted(p["individual"].items(), key=lambda kv: -kv[1]["wall_s"]):
            ref = first["individual"].get(name, {}).get("wall_s")
            extra = f"  {_fmt(r['wall_s'] / ref if ref else None, '.2f')}" if len(profiles) > 1 else ""
            print(f"{name:40s} {r['computations']:5d} {r['cached']:6d} {r['wall_s']:8.0f} {r['train_s']:8.0f} "
                  f"{r['other_s']:8.0f} {_fmt(r['samples_per_s'], '10.1f')} {_fmt(r.get('cpu_s'), '8.0f'):>8s}{extra}")  # fmt: skip


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run directories (the first is the reference)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    profiles = [profile(r) for r in args.runs]
    print_profiles(profiles)
    write_json(args.json, {"profiles": profiles})
    return profiles


if __name__ == "__main__":
    main()
