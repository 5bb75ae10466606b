"""torch.compile under growth: compile afresh per task, or keep one compiled network and accept recompiles.

Growth changes parameter shapes before every task, so a compiled network must recompile. Two ways:

- ``reset``: ``torch._dynamo.reset()`` then ``torch.compile`` before each task (static shapes, one full
  compilation per task);
- ``recompile``: keep dynamo's cache across tasks (what a new ``torch.compile`` wrapper around the same
  grown network does); dynamo recompiles on the guard failure, marks the changed dimensions dynamic,
  and after ``recompile_limit`` recompilations of one frame silently falls back to eager.

Both are compared with eager on the same grown networks (the paper's schedule, scaled), same batches and
same SGD, timing each task's first step (compilation) and its later steps separately. Each strategy runs
in its own process with an empty inductor cache, so none profits from another's compiled kernels. The
script prints
the totals, their ratios to eager, how many graphs each strategy compiled, and whether the per-step
losses agree with eager.

    .venv/bin/python benchmarks/compile_strategy.py                  # several minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_machine, write_json  # noqa: E402

from learngene_core.backbones.base import BlockNet  # noqa: E402
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, vgg_spec  # noqa: E402
from learngene_core.growth import parse_schedule, scale_width, widen  # noqa: E402

STRATEGIES = ("eager", "reset", "recompile")


def run(strategy: str, base: BlockNet, batches, args) -> dict:
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = copy.deepcopy(base)
    schedule = parse_schedule(PAPER_SCHEDULE, args.width_mult)
    gen = torch.Generator().manual_seed(args.seed)
    per_task, losses = [], []
    for task in range(args.tasks):
        if task > 0:
            e = schedule[task - 1]
            widen(net, e["block"], e["units"], generator=gen)
        if strategy == "reset":
            torch._dynamo.reset()
        fwd = net if strategy == "eager" else torch.compile(net)
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        net.train()
        times = []
        for x, y in batches:
            start = time.perf_counter()
            loss = F.cross_entropy(fwd(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            times.append(time.perf_counter() - start)
        per_task.append({"first_step_s": times[0], "later_steps_s": sum(times[1:]), "steps": len(times)})
        print(
            f"  {strategy:9s} task {task:2d}: first step {times[0]:7.2f}s, later steps {sum(times[1:]):6.2f}s"
        )
    return {
        "per_task": per_task,
        "total_s": sum(t["first_step_s"] + t["later_steps_s"] for t in per_task),
        "first_steps_s": sum(t["first_step_s"] for t in per_task),
        "later_steps_s": sum(t["later_steps_s"] for t in per_task),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "losses": losses,
    }


def run_isolated(strategy: str, argv) -> dict:
    """One strategy in a child process with a fresh inductor cache directory."""
    argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--json" in argv:
        i = argv.index("--json")
        del argv[i : i + 2]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}
        subprocess.run([sys.executable, __file__, *argv, "--only", strategy, "--json", str(out)], env=env,
                       check=True)  # fmt: skip
        return json.loads(out.read_text())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=6, help="tasks (growth steps + 1) of the paper's schedule")
    p.add_argument("--steps", type=int, default=20, help="training steps per task")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # one strategy, in a child process
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    base = BlockNet(vgg_spec([scale_width(w, args.width_mult) for w in PAPER_WIDTHS], num_classes=5,
                            hidden=[scale_width(1024, args.width_mult)] * 2, dropout=0.0))  # fmt: skip
    batches = [(torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 5, (args.batch_size,)))
               for _ in range(args.steps)]  # fmt: skip
    if args.only:
        write_json(args.json, run(args.only, base, batches, args))
        return {}
    info = machine()
    print_machine(info)
    print(f"{args.tasks} tasks x {args.steps} steps, batch {args.batch_size}, width x{args.width_mult}")
    results = {s: run_isolated(s, argv) for s in args.strategies.split(",")}
    eager = results.get("eager")
    print(
        f"{'strategy':10s} {'total s':>9s} {'compile-step s':>15s} {'later steps s':>14s} {'graphs':>7s}  vs eager"
    )
    for name, r in results.items():
        ratio = f"{eager['total_s'] / r['total_s']:.2f}x faster" if eager else ""
        later = f" (later steps {eager['later_steps_s'] / r['later_steps_s']:.2f}x)" if eager else ""
        print(f"{name:10s} {r['total_s']:9.1f} {r['first_steps_s']:15.1f} {r['later_steps_s']:14.1f} "
              f"{r['unique_graphs']:7d}  {ratio}{later}")  # fmt: skip
        if eager and name != "eager":
            diff = max(abs(a - b) for a, b in zip(r["losses"], eager["losses"]))
            r["max_loss_diff_vs_eager"] = diff
            print(f"{'':10s} max |loss - eager loss| over {len(r['losses'])} steps: {diff:.2e}")
    payload = {"machine": info, "args": vars(args),
               "results": {k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in results.items()}}  # fmt: skip
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
