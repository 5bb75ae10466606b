"""Stage 3 on a CPU: how its wall time depends on the numerics and on how the cores are used.

The same stage-3 work (the methods and target tasks of one finished run's learngene, read with ``from_run``)
run side by side in one invocation, each layout into its own fresh output directory (no cache):

- ``fp32, 1 process``: ``trainer=cpu``, torch using every core (the suite's default path);
- ``cpu_fast, 1 process``: ``trainer=cpu_fast`` (bf16 autocast with channels-last), every core;
- ``cpu_fast, N processes``: the same under ``torchrun --nproc_per_node=N`` (``trainer.strategy=ddp``), one
  thread each: stage 3 shards the target tasks across the processes (docs/scale.md), so no core idles while
  a tiny 5-way task trains.

Prints each layout's stage-3 wall time and its ratio to fp32, and how far each layout's per-task accuracies
lie from the others' (the two cpu_fast layouts differ only in thread count and sharding; fp32 differs by its
numerics). On a CPU without native bf16 the cpu_fast rows are skipped (the suite refuses cpu_fast there).

    .venv/bin/python benchmarks/stage3_layout.py RUN_DIR [OVERRIDE ...]
    # e.g. the joint ancestor of the CIFAR-100 study, learngene and scratch on 6 target tasks per shot count:
    .venv/bin/python benchmarks/stage3_layout.py outputs/study_small/joint +exp=cifar_fewshot budget=small \
        data=npz data.path=../shared/data/cifar100.npz collective.mode=joint 'collective.seeds=[0]' \
        'methods=[learngene,scratch]' budget.target_tasks=2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, print_machine, run_py, write_json  # noqa: E402

from learngene_core.utils.native_bf16 import cpu_has_bf16  # noqa: E402


def layouts(processes: int) -> dict[str, tuple[list[str], int]]:
    """name -> (overrides, processes)."""
    out = {"fp32, 1 process": (["trainer=cpu"], 1)}
    if cpu_has_bf16():
        out["cpu_fast, 1 process"] = (["trainer=cpu_fast"], 1)
        if processes > 1:
            out[f"cpu_fast, {processes} processes"] = (
                ["trainer=cpu_fast", "trainer.strategy=ddp", f"trainer.devices={processes}"],
                processes,
            )
    return out


def run_layout(from_run: Path, overrides: list[str], processes: int, out: Path) -> float:
    """Stage 3 (and the report) of ``from_run`` in one layout; returns its wall time in seconds."""
    cmd = run_py([*overrides, f"from_run={from_run}", "stage=[individual,report]", f"paths.output_dir={out}",
                  "logger=none"], processes)  # fmt: skip
    env = dict(os.environ)
    if processes > 1:
        env["OMP_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def accuracies(run: Path) -> dict[str, list[float]]:
    """method@shots -> per-task accuracies (tasks x collective seeds), from results.json (one row per method)."""
    res = json.loads((run / "results.json").read_text())
    return {f"{r['method']}@{s}": r["accuracies"] for s, rows in res["tables"].items() for r in rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("from_run", type=Path, help="a run directory whose stages 1 and 2 finished")
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides the run was made with (and the work to time)"
    )
    p.add_argument(
        "--processes", type=int, default=2,
        help="processes of the sharded layout (it must divide collective.batch_size, as in any multi-process run)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("/tmp/learngene-stage3-layout"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not (args.from_run / "learngene").is_dir():
        raise SystemExit(
            f"{args.from_run}: not a run directory with a learngene stage (learngene/ is missing)"
        )
    info = machine()
    print_machine(info)
    seconds, accs = {}, {}
    for name, (overrides, n) in layouts(args.processes).items():
        out = args.out / name.replace(", ", "_").replace(" ", "_")
        if out.exists():
            shutil.rmtree(out)
        seconds[name] = run_layout(args.from_run.resolve(), [*args.overrides, *overrides], n, out)
        accs[name] = accuracies(out)
    base = next(iter(seconds))
    print(f"stage 3 of {args.from_run} ({', '.join(args.overrides) or 'as configured'}):")
    for name, s in seconds.items():
        print(f"  {name:28s} {s:8.1f} s   {seconds[base] / s:5.2f}x fp32")
    names = list(accs)
    gaps = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = max(abs(x - y) for k in accs[a] for x, y in zip(accs[a][k], accs[b][k]))
            gaps[f"{a} vs {b}"] = gap
            print(f"  per-task accuracies, {a} vs {b}: largest difference {100 * gap:.2f} points")
    result = {"machine": info, "from_run": str(args.from_run), "overrides": args.overrides, "seconds": seconds,
              "ratio_to_fp32": {k: seconds[base] / v for k, v in seconds.items()}, "largest_accuracy_gap": gaps}  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
