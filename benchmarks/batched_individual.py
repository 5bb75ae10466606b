"""Batched against one-by-one individual training: the target tasks of one method trained as one stack
versus one Trainer per task, through the pipeline's own code path (``run_inherit``).

Both use the same tasks, seeds, initialisations, batches and augmentation, and the stack must reproduce
one-by-one accuracies exactly. Prints wall time of each and the speed-ups (goal >= 3x on CPU).

    .venv/bin/python benchmarks/batched_individual.py                 # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_NPZ, ROOT, machine, print_machine, write_json  # noqa: E402

from experiments.methods.inherit import run_inherit  # noqa: E402
from experiments.pipeline.context import RunContext  # noqa: E402
from experiments.pipeline.runner import quiet_libraries  # noqa: E402
from learngene_core.artifact import extract_learngene  # noqa: E402
from learngene_core.backbones.base import BlockNet  # noqa: E402
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, vgg_spec  # noqa: E402
from learngene_core.data.target_tasks import make_target_task_grid  # noqa: E402
from learngene_core.growth import parse_schedule, scale_width, widen  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=5, help="target tasks per seed")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--npz", default=str(DEFAULT_NPZ))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    quiet_libraries()
    data_overrides = (
        ["data=npz", f"data.path={args.npz}"] if Path(args.npz).is_file() else ["+exp=quickstart"]
    )
    overrides = [*data_overrides, "logger=none", f"budget.width_mult={args.width_mult}",
                 f"budget.individual_epochs={args.epochs}", "trainer.accelerator=cpu"]  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "experiments" / "configs"), version_base="1.3"):
        cfg = compose(config_name="run", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/learngene-bench"
    ctx = RunContext(cfg, "/tmp/learngene-bench")
    torch.manual_seed(0)
    m = args.width_mult
    collective = BlockNet(
        vgg_spec([scale_width(w, m) for w in PAPER_WIDTHS], hidden=[scale_width(1024, m)] * 2)
    )
    for e in parse_schedule(PAPER_SCHEDULE, m):
        widen(collective, e["block"], e["units"])
    learngene = extract_learngene(collective, 10, 3)
    tasks = make_target_task_grid(
        ctx.image_set, args.tasks, cfg.target.ways, args.shots, list(range(args.seeds))
    )
    results, seconds = {}, {}
    variants = {"one_by_one": False, "batched_loop": True}
    for name, batched in variants.items():
        with open_dict(cfg):
            cfg.individual.batched = batched
        start = time.perf_counter()
        results[name], info = run_inherit(ctx, learngene, tasks, inherit=True, name="bench")
        seconds[name] = time.perf_counter() - start
    acc = {k: np.array([r.acc for r in v]) for k, v in results.items()}
    info_m = machine()
    print_machine(info_m)
    print(f"{len(tasks)} target tasks ({cfg.target.ways}-way {args.shots}-shot), {args.epochs} epochs, "
          f"individual network {info['parameters'] / 1e6:.2f}M parameters ({ctx.image_set.name})")  # fmt: skip
    for name in variants:
        speed = seconds["one_by_one"] / seconds[name]
        diff = np.abs(acc[name] - acc["one_by_one"]).max()
        print(f"{name:16s}: {seconds[name]:7.1f} s ({seconds[name] / len(tasks):.2f} s/task)  speed-up {speed:.2f}x  "
              f"mean acc {acc[name].mean():.4f}  max |acc - one-by-one| {diff:.4f}")  # fmt: skip
    print("goal: batched >= 3x one-by-one on CPU; loop stacking must match one-by-one exactly")
    result = {"machine": info_m, "args": vars(args), "seconds": seconds,
              "speedup": {k: seconds["one_by_one"] / v for k, v in seconds.items()},
              "max_accuracy_difference": {k: float(np.abs(v - acc["one_by_one"]).max()) for k, v in acc.items()},
              "accuracies": {k: v.tolist() for k, v in acc.items()}}  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
