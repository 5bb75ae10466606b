"""Parity of two finished runs of one configuration that differ only in numerics (``trainer=cpu`` vs
``trainer=cpu_fast``): per method, the paired difference on the same target tasks (second run minus first, the
target task as the unit, 95 % interval, t-test and Wilcoxon p), each run's accuracy; the collective model's
final accuracies; the window each run's criterion picked, with its window scores. Nothing is re-run.

    .venv/bin/python benchmarks/precision_parity.py RUN_FP32 RUN_FAST [--json FILE]

A difference whose interval holds 0 is within the noise of these tasks; the table says how wide that noise is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from learngene_core.metrics.stats import mean_ci95, paired_over_tasks  # noqa: E402


def _read(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist; {what}")
    return json.loads(path.read_text())


def per_task(run: Path) -> dict[tuple[str, int, int], dict]:
    """(method/arm@shots/seed<cs>[/split], seed, task) -> accuracy, from individual/results_raw.json."""
    raw = _read(run / "individual" / "results_raw.json", "give a run directory whose stage 3 has run")
    out: dict = {}
    for key, e in raw["entries"].items():
        for t in raw["computations"][e["computation"]]["tasks"]:
            out.setdefault(key, {})[(t["seed"], t["task"])] = t["acc"]
    return out


def compare(a: Path, b: Path) -> dict:
    ta, tb = per_task(a), per_task(b)
    rows = {}
    for key in sorted(set(ta) & set(tb)):
        common = sorted(set(ta[key]) & set(tb[key]))
        if not common:
            continue
        xa, xb = [ta[key][k] for k in common], [tb[key][k] for k in common]
        rows[key] = {"first": mean_ci95(xa)[0], "second": mean_ci95(xb)[0],
                     "difference": paired_over_tasks([[y - x for x, y in zip(xa, xb)]]),
                     "max_abs_task_difference": max(abs(y - x) for x, y in zip(xa, xb))}  # fmt: skip
    collective, windows = {}, {}
    for run, name in ((a, "first"), (b, "second")):
        for m in sorted((run / "collective").glob("seed_*/metrics.json")):
            cil = json.loads(m.read_text()).get("class_incremental", {})
            collective.setdefault(m.parent.name, {})[name] = cil.get("final_average_accuracy")
        for lg in sorted((run / "learngene").glob("seed_*/learngene.json")):
            info = json.loads(lg.read_text())
            windows.setdefault(lg.parent.name, {})[name] = {
                "blocks": info["selected"]["blocks"], "statistic": info.get("statistic"),
                "window_scores": info.get("all_statistics", {}).get(info.get("statistic"), {}).get("window_scores"),
            }  # fmt: skip
    return {"first": str(a), "second": str(b), "methods": rows, "collective_final_accuracy": collective,
            "selected_window": windows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path, help="the reference run (fp32)")
    ap.add_argument("second", type=Path, help="the run compared with it (the fast path)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = compare(args.first, args.second)
    print(f"first: {res['first']}\nsecond: {res['second']}\n")
    print(
        f"{'entry':44s} {'first':>6s} {'second':>6s}  {'second - first (95% CI, p, n)':<34s} {'max |task diff|':>15s}"
    )
    for key, r in res["methods"].items():
        d = r["difference"]
        ci = "n/a" if d["ci95"] is None else f"{100 * d['ci95']:.1f}"
        p = "n/a" if d["p"] is None else f"{d['p']:.2g}"
        diff = f"{100 * d['mean_diff']:+.1f} ± {ci} (p {p}, n {d['n']})"
        line = f"{key[:44]:44s} {100 * r['first']:6.1f} {100 * r['second']:6.1f}  {diff:<34s}"
        print(f"{line} {100 * r['max_abs_task_difference']:15.1f}")
    for seed, c in res["collective_final_accuracy"].items():
        print(
            f"collective {seed}: class-IL final average accuracy first {c.get('first')}, second {c.get('second')}"
        )
    for seed, w in res["selected_window"].items():
        f, s = w.get("first", {}), w.get("second", {})
        verdict = ("only in one run" if None in (f.get("blocks"), s.get("blocks"))
                   else "same" if f.get("blocks") == s.get("blocks") else "DIFFERENT")  # fmt: skip
        print(f"window {seed}: first {f.get('blocks')}, second {s.get('blocks')} ({verdict})")
    write_json(args.json, res)


if __name__ == "__main__":
    main()
