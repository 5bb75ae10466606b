"""A whole study (both ancestors, every stage and method, one shared stage-3 cache) the old way and the fast way.

The same configuration run twice, side by side in one invocation, each into fresh output directories:

- ``fp32, one run after another``: ``trainer=cpu`` (fp32), torch using every core, the ancestors one after the
  other (the suite's default path, and how the study ran when the speed issue was filed);
- ``cpu_fast, a core per process``: ``trainer=cpu_fast`` (bf16 autocast with channels-last). Stages 1 and 2 of
  the ancestors in parallel, one process pinned to each core with one thread (at most one per core at a time);
  then the stage 3 of each ancestor in turn under ``torchrun --nproc_per_node=N`` (``trainer.strategy=ddp``,
  one thread per process: stage 3 shards the target tasks, docs/scale.md), so no core idles while a tiny
  5-way task trains and the shared computations (scratch per window, the meta-learners) are still computed once.

Prints each layout's wall time (and of each phase), its ratio to fp32, each run's seconds by stage, and the
mean accuracy of every method in both layouts (equal results here mean equal in distribution: bf16 and the
thread count both change per-task numbers; docs/benchmarks.md has the paired parity table). On a CPU without
native bf16 the fast layout is skipped (the suite refuses cpu_fast there). Each run's profile by stage and
method: ``benchmarks/study_time_profile.py OUT/fp32/<ancestor> OUT/cpu_fast/<ancestor>``.

    .venv/bin/python benchmarks/study_layout.py [--ancestors joint continual] [--out DIR] OVERRIDE ...
    # the CIFAR-100 study at budget=small, scaled down (docs/benchmarks.md gives the command of its figures):
    .venv/bin/python benchmarks/study_layout.py +exp=cifar_fewshot budget=small data=npz \
        data.path=../shared/data/cifar100.npz budget.target_tasks=1 'budget.seeds=[0]' ...
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


def _start(cmd: list[str], threads: int | None, core: int | None, log: Path) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ)
    if threads is None:
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, preexec_fn=pin
    )
    return proc, log


def _wait(procs: list[tuple[subprocess.Popen, Path]]) -> None:
    for proc, log in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(proc.args)}\nexited {proc.returncode}; its output: {log}\n"
                             + log.read_text()[-3000:])  # fmt: skip


def run_fp32(ancestors: list[str], overrides: list[str], out: Path) -> dict[str, float]:
    """Every ancestor's whole run, one after another, fp32 with every core."""
    phases = {}
    for a in ancestors:
        start = time.perf_counter()
        cmd = run_py([*overrides, "trainer=cpu", f"collective.mode={a}", f"paths.output_dir={out / a}",
                      f"individual.cache_dir={out / 'cache'}"])  # fmt: skip
        _wait([_start(cmd, None, None, out / f"{a}.log")])
        phases[f"{a} (all stages)"] = time.perf_counter() - start
    return phases


def run_fast(ancestors: list[str], overrides: list[str], out: Path, processes: int) -> dict[str, float]:
    """Stages 1 and 2 of the ancestors in parallel, a core each; then stage 3 of each, sharded over the cores."""
    cores = sorted(os.sched_getaffinity(0))
    common = [*overrides, "trainer=cpu_fast", f"individual.cache_dir={out / 'cache'}"]
    phases = {}
    start = time.perf_counter()
    for i in range(0, len(ancestors), len(cores)):
        batch = ancestors[i : i + len(cores)]
        _wait([_start(run_py([*common, f"collective.mode={a}", f"paths.output_dir={out / a}",
                              "stage=[collective,learngene]"]), 1, core, out / f"{a}.stage12.log")
               for core, a in zip(cores, batch)])  # fmt: skip
    phases["stages 1-2, ancestors in parallel"] = time.perf_counter() - start
    for a in ancestors:
        start = time.perf_counter()
        cmd = run_py([*common, f"collective.mode={a}", f"paths.output_dir={out / a}", "stage=[individual,report]",
                      "trainer.strategy=ddp", f"trainer.devices={processes}"], processes)  # fmt: skip
        _wait([_start(cmd, 1, None, out / f"{a}.stage3.log")])
        phases[f"{a} stage 3, {processes} processes"] = time.perf_counter() - start
    return phases


def mean_accuracies(run: Path) -> dict[str, float]:
    """method@shots -> mean accuracy (results.json)."""
    res = json.loads((run / "results.json").read_text())
    return {f"{r['method']}@{s}": r["mean"] for s, rows in res["tables"].items() for r in rows}


def stage_seconds(run: Path) -> dict[str, float]:
    return json.loads((run / "timings.json").read_text()).get("total_s", {})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the study (both layouts get the same)")
    p.add_argument("--ancestors", nargs="+", default=["joint", "continual"], choices=["joint", "continual"])
    p.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                   help="stage-3 processes of the fast layout (default: the cores this process may use)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("/tmp/learngene-study-layout"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    info = machine()
    print_machine(info)
    layouts = {"fp32, one run after another": lambda o: run_fp32(args.ancestors, args.overrides, o)}
    if cpu_has_bf16():
        layouts["cpu_fast, a core per process"] = lambda o: run_fast(
            args.ancestors, args.overrides, o, args.processes
        )
    else:
        print("this CPU has no native bf16: the cpu_fast layout is skipped (the suite refuses it here)")
    result: dict = {"machine": info, "overrides": args.overrides, "ancestors": args.ancestors, "layouts": {}}
    for name, run in layouts.items():
        out = args.out / name.split(",")[0]
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        start = time.perf_counter()
        phases = run(out)
        result["layouts"][name] = {
            "seconds": time.perf_counter() - start, "phases_s": phases, "dir": str(out),
            "stages_s": {a: stage_seconds(out / a) for a in args.ancestors},
            "accuracy": {a: mean_accuracies(out / a) for a in args.ancestors},
        }  # fmt: skip
    names = list(result["layouts"])
    base = result["layouts"][names[0]]["seconds"]
    print(f"the study ({', '.join(args.ancestors)}; {' '.join(args.overrides) or 'as configured'}):")
    for name, r in result["layouts"].items():
        r["ratio_to_fp32"] = base / r["seconds"]
        print(f"  {name:32s} {r['seconds']:8.1f} s   {r['ratio_to_fp32']:5.2f}x fp32")
        for phase, s in r["phases_s"].items():
            print(f"    {phase:40s} {s:8.1f} s")
        for a, stages in r["stages_s"].items():
            print(f"    {a} by stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    print("mean accuracy (%) per method, " + " | ".join(names) + ":")
    for a in args.ancestors:
        for key in result["layouts"][names[0]]["accuracy"][a]:
            row = [100 * result["layouts"][n]["accuracy"][a].get(key, float("nan")) for n in names]
            print(f"  {a:9s} {key:28s} " + " | ".join(f"{v:5.1f}" for v in row))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
