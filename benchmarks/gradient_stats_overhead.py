"""Overhead of the criterion-statistics callback: the same collective task trained with and without it.

The callback is measured whole, as the pipeline uses it: every registered step statistic after each
backward pass, and the task statistics once at the end of the fit (weight_change; cka_drift on a
``--probe-images`` probe set of base-class test images, 256 as in ``criterion.probe_images``;
fisher_importance from ``--fisher-samples`` training images, 64 as in ``criterion.fisher_samples``),
with its rows appended to a CSV file. Prints step throughput of both and the overhead in percent
(goal: at most 10 %). Alternating repeats, best time of each.

    .venv/bin/python benchmarks/gradient_stats_overhead.py
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_set, machine, print_machine, write_json  # noqa: E402

from callbacks.criterion_stats import CriterionStatsCallback  # noqa: E402
from callbacks.task_inputs import TaskInputs  # noqa: E402
from experiments.pipeline.collective.setup import probe_images  # noqa: E402
from learngene_core.backbones.base import BlockNet  # noqa: E402
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, vgg_spec  # noqa: E402
from learngene_core.criterion.registry import statistics  # noqa: E402
from learngene_core.data.augmentation import BatchAugment  # noqa: E402
from learngene_core.data.loaders import TensorBatchLoader  # noqa: E402
from learngene_core.growth import parse_schedule, scale_width, widen  # noqa: E402
from lightning_modules.collective_module import CollectiveModule  # noqa: E402

TAU = 5e-10  # criterion.tau (the public code's threshold on CIFAR)


def run(net, x, y, probe_x, args, with_stats: bool) -> float:
    """One fit of the task; with the callback as the collective stage builds it (CollectiveSettings.callbacks)."""
    optimizer = functools.partial(torch.optim.SGD, lr=0.001, momentum=0.9, weight_decay=5e-4)
    module = CollectiveModule(net, optimizer=optimizer)
    module.log = lambda *a, **k: None
    augment = BatchAugment()
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = []
        if with_stats:
            # the pipeline's Fisher batches: the task's training images, eval-normalised, storage order
            fisher = functools.partial(TensorBatchLoader, x, y, 64, augment, train=False)
            inputs = TaskInputs(
                task=0,
                stats_csv=Path(tmp) / "gradient_stats.csv",
                tau=TAU,
                probe_x=augment.eval(probe_x),
                fisher_batches=fisher,
                fisher_samples=args.fisher_samples,
            )
            callbacks.append(CriterionStatsCallback(inputs))  # fmt: skip
        trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.device, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)  # fmt: skip
        loader = TensorBatchLoader(x, y, 64, augment, train=True, seed=0)
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=loader)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if with_stats:
            recorded = {r["statistic"] for r in callbacks[0].rows}
            expected = {s.name for s in statistics("step")} | {s.name for s in statistics("task")}
            if recorded != expected:
                raise RuntimeError(f"callback recorded {sorted(recorded)}, expected {sorted(expected)}")
    return seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument(
        "--grown", action="store_true", help="measure on the network after the full growth schedule"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--probe-images", type=int, default=256, help="cka_drift probe set (criterion.probe_images)"
    )
    p.add_argument(
        "--fisher-samples", type=int, default=64, help="fisher_importance images (criterion.fisher_samples)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.fisher_samples < 1:
        p.error(f"--fisher-samples={args.fisher_samples}: fisher_importance needs at least 1 image")
    data = image_set()
    x, y = data.x_train[: args.images].to(args.device), (data.y_train[: args.images] % 5).to(args.device)
    probe_x = probe_images(data, args.probe_images, 0).to(args.device)
    torch.manual_seed(0)
    base = BlockNet(vgg_spec([scale_width(w, args.width_mult) for w in PAPER_WIDTHS], num_classes=5,
                            hidden=[scale_width(1024, args.width_mult)] * 2))  # fmt: skip
    if args.grown:
        for e in parse_schedule(PAPER_SCHEDULE, args.width_mult):
            widen(base, e["block"], e["units"])
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for flag in (False, True):
            times[flag].append(run(copy.deepcopy(base), x, y, probe_x, args, flag))
    best = {k: min(v) for k, v in times.items()}
    overhead = best[True] / best[False] - 1
    info = machine()
    print_machine(info)
    print(f"{args.images} images x {args.epochs} epochs, width x{args.width_mult}{' grown' if args.grown else ''}, "
          f"{base.num_parameters() / 1e6:.2f}M parameters, device {args.device}")  # fmt: skip
    print(f"callback: step statistics every step; task statistics at the end ({len(probe_x)} probe images, "
          f"{args.fisher_samples} Fisher samples)")  # fmt: skip
    print(f"without callback: {args.images * args.epochs / best[False]:8.1f} samples/s")
    print(f"with callback   : {args.images * args.epochs / best[True]:8.1f} samples/s")
    print(f"overhead: {100 * overhead:+.1f} % (goal <= 10 %)")
    result = {"machine": info, "args": vars(args), "seconds": {"without": best[False], "with": best[True]},
              "overhead": overhead}  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
