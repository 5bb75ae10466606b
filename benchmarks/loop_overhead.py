"""Lightning loop overhead: one collective task through CollectiveModule + Trainer against a plain PyTorch
loop with the same network, data, optimizer and seed.

Both runs start from the same weights, draw the same batches (same TensorBatchLoader seed) and apply the
same SGD; the script prints throughput of each, their ratio (Lightning / plain; goal >= 0.95 on CPU)
and whether the per-step losses agree to 5 decimals. Each variant runs ``--repeats`` times, alternating,
and the best time of each is compared.

    .venv/bin/python benchmarks/loop_overhead.py                  # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import image_set, machine, print_machine, write_json  # noqa: E402

from learngene_core.backbones.base import BlockNet  # noqa: E402
from learngene_core.backbones.vgg import PAPER_WIDTHS, vgg_spec  # noqa: E402
from learngene_core.data.augmentation import BatchAugment  # noqa: E402
from learngene_core.data.loaders import TensorBatchLoader  # noqa: E402
from learngene_core.growth import scale_width  # noqa: E402
from lightning_modules.collective_module import CollectiveModule  # noqa: E402


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())


def lightning_run(net, x, y, args) -> tuple[float, list[float]]:
    optimizer = functools.partial(torch.optim.SGD, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    module = CollectiveModule(net, optimizer=optimizer)
    module.log = lambda *a, **k: None  # the plain loop logs nothing either
    rec = LossRecorder()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[rec])  # fmt: skip
    loader = TensorBatchLoader(x, y, args.batch_size, BatchAugment(), train=True, seed=args.seed)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start, [float(v) for v in rec.losses]


def plain_run(net, x, y, args) -> tuple[float, list[float]]:
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loader = TensorBatchLoader(x, y, args.batch_size, BatchAugment(), train=True, seed=args.seed)
    losses = []
    net.train()
    start = time.perf_counter()
    for _ in range(args.epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(net(xb).float(), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    return time.perf_counter() - start, [float(v) for v in losses]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images-per-class", type=int, default=200)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    data = image_set()
    idx = torch.cat(
        [torch.nonzero(data.y_train == c).flatten()[: args.images_per_class] for c in range(args.classes)]
    )
    x, y = data.x_train[idx], data.y_train[idx]
    torch.manual_seed(args.seed)
    base = BlockNet(vgg_spec([scale_width(w, args.width_mult) for w in PAPER_WIDTHS], num_classes=args.classes,
                            hidden=[scale_width(1024, args.width_mult)] * 2, dropout=0.0))  # fmt: skip
    times = {"lightning": [], "plain": []}
    losses = {}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain_run), ("lightning", lightning_run)):
            t, losses[name] = fn(copy.deepcopy(base), x, y, args)
            times[name].append(t)
    samples = len(x) * args.epochs
    thr = {k: samples / min(v) for k, v in times.items()}
    same = len(losses["plain"]) == len(losses["lightning"]) and np.allclose(
        np.round(losses["plain"], 5), np.round(losses["lightning"], 5), atol=1e-5
    )
    max_diff = float(np.max(np.abs(np.array(losses["plain"]) - np.array(losses["lightning"]))))
    info = machine()
    print_machine(info)
    print(
        f"one task: {len(x)} images x {args.epochs} epochs, batch {args.batch_size}, width x{args.width_mult}"
    )
    print(f"plain PyTorch loop : {thr['plain']:8.1f} samples/s (best of {args.repeats})")
    print(f"Lightning Trainer  : {thr['lightning']:8.1f} samples/s (best of {args.repeats})")
    print(f"ratio Lightning / plain: {thr['lightning'] / thr['plain']:.3f} (goal >= 0.95)")
    print(
        f"per-step losses equal to 5 decimals: {same} (max |diff| {max_diff:.2e}, {len(losses['plain'])} steps)"
    )
    result = {"machine": info, "args": vars(args), "throughput": thr, "ratio": thr["lightning"] / thr["plain"],
              "losses_equal_5_decimals": bool(same), "max_loss_diff": max_diff}  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
