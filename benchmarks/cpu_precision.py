"""The fast CPU path against fp32: one collective task through CollectiveModule + Trainer in four numerics.

fp32 (``trainer=cpu``), channels-last, bf16 autocast (``precision=bf16-mixed``), and bf16 with channels-last
(``trainer=cpu_fast``), side by side in one run on the same network, data, optimizer and seed. Prints the
samples/s of each and its ratio to fp32, and how far each one's per-step losses lie from fp32's (bf16 rounds
differently: the losses agree to about two decimals, not bitwise). Alternating repeats, best time of each.
On a CPU without native bf16 the bf16 rows are skipped (the suite refuses ``trainer=cpu_fast`` there).

    .venv/bin/python benchmarks/cpu_precision.py                 # about two minutes on 2 idle CPU cores
    ONEDNN_MAX_CPU_ISA=AVX512_CORE .venv/bin/python benchmarks/cpu_precision.py --emulated-bf16
                                        # an AVX-512 CPU without bf16 instructions: what emulated bf16 costs
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_set, machine, print_machine, write_json  # noqa: E402

from learngene_core.backbones.base import BlockNet  # noqa: E402
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, vgg_spec  # noqa: E402
from learngene_core.data.augmentation import BatchAugment  # noqa: E402
from learngene_core.data.loaders import TensorBatchLoader  # noqa: E402
from learngene_core.growth import parse_schedule, scale_width, widen  # noqa: E402
from learngene_core.utils.native_bf16 import bf16_blocking_cap, cpu_has_bf16  # noqa: E402
from lightning_modules.collective_module import CollectiveModule  # noqa: E402

VARIANTS = {  # name -> (Trainer precision, channels-last)
    "fp32": ("32-true", False),
    "fp32 channels-last": ("32-true", True),
    "bf16": ("bf16-mixed", False),
    "bf16 channels-last (cpu_fast)": ("bf16-mixed", True),
}


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach().float())


def run(net, x, y, args, precision: str, channels_last: bool) -> tuple[float, list[float]]:
    optimizer = functools.partial(torch.optim.SGD, lr=0.001, momentum=0.9, weight_decay=5e-4)
    module = CollectiveModule(net, optimizer=optimizer, channels_last=channels_last)
    module.log = lambda *a, **k: None
    rec = LossRecorder()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[rec])  # fmt: skip
    loader = TensorBatchLoader(
        x, y, args.batch_size, BatchAugment(channels_last=channels_last), train=True, seed=0
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start, [float(v) for v in rec.losses]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1280)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--no-grow", action="store_true", help="measure the network before growth")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--emulated-bf16", action="store_true", help="run the bf16 variants without native bf16 too "
                   "(to measure what emulation costs, e.g. under ONEDNN_MAX_CPU_ISA=AVX512_CORE)")  # fmt: skip
    args = p.parse_args(argv)
    data = image_set()
    x, y = data.x_train[: args.images], data.y_train[: args.images] % 5
    torch.manual_seed(0)
    base = BlockNet(vgg_spec([scale_width(w, args.width_mult) for w in PAPER_WIDTHS], num_classes=5,
                             hidden=[scale_width(1024, args.width_mult)] * 2))  # fmt: skip
    if not args.no_grow:
        for e in parse_schedule(PAPER_SCHEDULE, args.width_mult):
            widen(base, e["block"], e["units"])
    bf16 = cpu_has_bf16()
    variants = {
        k: v for k, v in VARIANTS.items() if bf16 or args.emulated_bf16 or not v[0].startswith("bf16")
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    losses: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, (precision, cl) in variants.items():
            seconds, losses[name] = run(copy.deepcopy(base), x, y, args, precision, cl)
            times[name].append(seconds)
    info = machine()
    print_machine(info)
    print(f"{args.images} images x {args.epochs} epochs, batch {args.batch_size}, width x{args.width_mult}"
          f"{'' if args.no_grow else ' grown'}, {base.num_parameters() / 1e6:.2f}M parameters, native bf16: {bf16}"
          f"{f', oneDNN capped below bf16: {bf16_blocking_cap()}' if bf16_blocking_cap() else ''}")  # fmt: skip
    ref = args.images * args.epochs / min(times["fp32"])
    result = {"machine": info, "args": vars(args), "native_bf16": bf16, "variants": {}}
    for name in variants:
        rate = args.images * args.epochs / min(times[name])
        gap = max(abs(a - b) for a, b in zip(losses[name], losses["fp32"]))
        print(
            f"{name:32s} {rate:8.1f} samples/s  ratio to fp32 {rate / ref:5.2f}  max |loss - fp32 loss| {gap:.4f}"
        )
        result["variants"][name] = {"samples_per_s": rate, "ratio": rate / ref, "max_loss_gap": gap}
    if not bf16 and not args.emulated_bf16:
        print("bf16 variants skipped: this CPU has no native bf16 (AVX512-BF16 or AMX)")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
