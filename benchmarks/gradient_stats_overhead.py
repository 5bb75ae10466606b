"""Overhead of the gradient-statistics callback: the same collective task trained with and without it.

Prints step throughput of both and the overhead in percent (goal: at most 10 %). Alternating repeats,
best time of each.

    .venv/bin/python benchmarks/gradient_stats_overhead.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_set, machine, print_machine, write_json  # noqa: E402
from callbacks.gradient_stats import GradientStatsCallback  # noqa: E402

from learngene_core.backbones.vgg import BlockNet, scale_width, vgg_spec  # noqa: E402
from learngene_core.data.augmentation import BatchAugment  # noqa: E402
from learngene_core.data.loaders import TensorBatchLoader  # noqa: E402
from learngene_core.growth import PAPER_SCHEDULE, PAPER_WIDTHS, parse_schedule, widen  # noqa: E402
from lightning_modules.collective_module import CollectiveModule  # noqa: E402


def run(net, x, y, args, with_stats: bool) -> float:
    module = CollectiveModule(net, lr=0.001)
    module.log = lambda *a, **k: None
    callbacks = [GradientStatsCallback(None, tau=5e-10, task=0)] if with_stats else []
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.device, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)  # fmt: skip
    loader = TensorBatchLoader(x.to(args.device), y.to(args.device), 64, BatchAugment(), train=True, seed=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument(
        "--grown", action="store_true", help="measure on the network after the full growth schedule"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = image_set()
    x, y = data.x_train[: args.images], data.y_train[: args.images] % 5
    torch.manual_seed(0)
    base = BlockNet(vgg_spec([scale_width(w, args.width_mult) for w in PAPER_WIDTHS], num_classes=5,
                            hidden=[scale_width(1024, args.width_mult)] * 2))  # fmt: skip
    if args.grown:
        for e in parse_schedule(PAPER_SCHEDULE, args.width_mult):
            widen(base, e["block"], e["units"])
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for flag in (False, True):
            times[flag].append(run(copy.deepcopy(base), x, y, args, flag))
    best = {k: min(v) for k, v in times.items()}
    overhead = best[True] / best[False] - 1
    info = machine()
    print_machine(info)
    print(f"{args.images} images x {args.epochs} epochs, width x{args.width_mult}{' grown' if args.grown else ''}, "
          f"{base.num_parameters() / 1e6:.2f}M parameters, device {args.device}")  # fmt: skip
    print(f"without callback: {args.images * args.epochs / best[False]:8.1f} samples/s")
    print(f"with callback   : {args.images * args.epochs / best[True]:8.1f} samples/s")
    print(f"overhead: {100 * overhead:+.1f} % (goal <= 10 %)")
    result = {"machine": info, "args": vars(args), "seconds": {"without": best[False], "with": best[True]},
              "overhead": overhead}  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
