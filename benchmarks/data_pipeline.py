"""Training-data throughput: this suite's in-memory uint8 pipeline against the original per-image PIL one.

Both pipelines serve the *same* images, with the same augmentation (random crop 32 with 4 px zero
padding, horizontal flip, normalise) and batch size 64:

- **PIL** (what the paper's public code does): ``torchvision.datasets.ImageFolder`` over a folder of
  PNG/JPEG files, ``transforms.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
  Normalize(...)])``, ``DataLoader(batch_size=64, shuffle=True, num_workers=2)``. Every epoch opens,
  decodes and transforms every image again, one at a time, in worker processes (restarted each epoch,
  as in the original code, which does not use persistent workers).
- **ours**: the folder decoded once into a uint8 tensor by the suite's image-folder source (its decode
  cache is what a second run reads), then ``TensorBatchLoader`` with ``BatchAugment``: one index
  operation and a few tensor ops per batch, in the main process.

The script writes a temporary image folder (images taken from ``../shared/data/cifar100.npz`` when
present, synthetic ones otherwise), streams a fixed number of samples through each pipeline and prints
both throughputs (samples / s), their ratio and the machine. ``--json PATH`` also writes the figures.

    .venv/bin/python benchmarks/data_pipeline.py                 # about a minute on 2 CPU cores
    .venv/bin/python benchmarks/data_pipeline.py --samples 50000 --num-workers 4 --json bench.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "cifar100.npz"
MEAN = (0.5071, 0.4865, 0.4409)  # CIFAR-100's statistics, as in data/cifar100.yaml (no effect on throughput)
STD = (0.2673, 0.2564, 0.2762)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=5000, help="training images in the folder (default 5000)")
    p.add_argument("--samples", type=int, default=40000, help="samples streamed through each pipeline")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers of the PIL pipeline")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="file format of the image folder")
    p.add_argument(
        "--npz", type=Path, default=DEFAULT_NPZ, help="source of real images (synthetic if absent)"
    )
    p.add_argument("--device", default="cpu", help="device of our pipeline (the PIL one is CPU-only)")
    p.add_argument(
        "--threads", default="auto",
        help="torch intra-op thread counts to measure our pipeline with, comma-separated (e.g. 1,2); "
        "'auto' (default): torch's own choice, and 1 as well when that differs. PIL workers always use 1",
    )  # fmt: skip
    p.add_argument(
        "--workdir", type=Path, default=None, help="keep the image folder here (default: a temp dir)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def source_images(npz: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n HWC uint8 32x32 images with labels: a class-balanced draw from the npz, or synthetic ones."""
    rng = np.random.default_rng(seed)
    if npz.is_file():
        with np.load(npz) as f:
            x, y = f["x_train"], f["y_train"].astype(np.int64)
        classes = np.unique(y)
        per = int(np.ceil(n / len(classes)))
        pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in classes])[:n]
        pick.sort()
        return x[pick], y[pick], f"{npz.name} (real CIFAR-100)"
    y = np.arange(n) % 100
    base = rng.integers(0, 256, (100, 1, 1, 3))
    x = np.clip(base[y] + rng.normal(0, 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return x, y, "synthetic (npz not found)"


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, fmt: str) -> None:
    """root/train/<class>/<i>.<fmt> for every image, plus one test image per class (the source needs test/)."""
    from PIL import Image

    classes = sorted(set(y.tolist()))
    for split in ("train", "test"):
        for c in classes:
            (root / split / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
    kw = {"quality": 95} if fmt == "jpg" else {}
    for i, (img, c) in enumerate(zip(x, y)):
        Image.fromarray(img).save(root / "train" / f"class{c:03d}" / f"{i:06d}.{fmt}", **kw)
    for c in classes:
        Image.fromarray(x[np.flatnonzero(y == c)[0]]).save(
            root / "test" / f"class{c:03d}" / f"test.{fmt}", **kw
        )


def stream(batches, samples: int) -> tuple[int, float]:
    """Pull batches from an (endless) iterator until ``samples`` samples have been seen; (count, seconds)."""
    n, t0 = 0, time.perf_counter()
    for xb, _ in batches:
        n += len(xb)
        if n >= samples:
            break
    return n, time.perf_counter() - t0


def epochs(make_iterable):
    while True:
        yield from make_iterable()


def bench_pil(folder: Path, args) -> dict:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
         transforms.Normalize(MEAN, STD)]
    )  # fmt: skip
    ds = datasets.ImageFolder(str(folder / "train"), transform=tf)
    torch.manual_seed(args.seed)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
    stream(iter(loader), 2 * args.batch_size)  # warm-up: imports, page cache, first worker start
    n, secs = stream(epochs(lambda: iter(loader)), args.samples)
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32)
    return {"samples": n, "seconds": secs, "samples_per_s": n / secs, "images": len(ds)}


def load_ours(folder: Path, args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The folder decoded into uint8 by the suite's image-folder source (then once more from its cache)."""
    from learngene_core.data.sources.imagefolder import load_imagefolder

    def split(names):
        return {"base": list(range(len(names) - 1)), "open_world": [], "novel": [len(names) - 1]}

    cache = folder.parent / "cache"
    t0 = time.perf_counter()
    load_imagefolder(folder, image_size=32, cache_dir=cache, split=split)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    image_set = load_imagefolder(folder, image_size=32, cache_dir=cache, split=split)
    cached_s = time.perf_counter() - t0
    return image_set.x_train, image_set.y_train, {"decode_once_s": decode_s, "cached_load_s": cached_s}


def bench_ours(x: torch.Tensor, y: torch.Tensor, threads: int, args) -> dict:
    from learngene_core.data.augmentation import BatchAugment
    from learngene_core.data.loaders import TensorBatchLoader

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = torch.device(args.device)
        x, y = x.to(device), y.to(device)
        aug = BatchAugment(MEAN, STD, crop_padding=4, flip=True)
        loader = TensorBatchLoader(x, y, args.batch_size, aug, train=True, seed=args.seed)
        stream(iter(loader), 2 * args.batch_size)  # warm-up

        def synced():
            for xb, yb in loader:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                yield xb, yb

        n, secs = stream(epochs(synced), args.samples)
        xb, _ = next(iter(loader))
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "samples": n, "seconds": secs, "samples_per_s": n / secs, "images": len(x)}


def machine() -> dict:
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def thread_counts(spec: str) -> list[int]:
    if spec == "auto":
        default = torch.get_num_threads()
        return [default] if default == 1 else [default, 1]
    return [int(t) for t in spec.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    threads = thread_counts(args.threads)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sys.path.insert(0, str(ROOT))
    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.mkdtemp(prefix="learngene-bench-")
        work = Path(tmp)
    folder = work / "images"
    try:
        x, y, origin = source_images(args.npz, args.images, args.seed)
        t0 = time.perf_counter()
        if folder.exists():
            shutil.rmtree(folder)
        shutil.rmtree(work / "cache", ignore_errors=True)
        write_folder(folder, x, y, args.format)
        write_s = time.perf_counter() - t0
        x_ours, y_ours, load_times = load_ours(folder, args)
        ours = [bench_ours(x_ours, y_ours, t, args) for t in threads]
        pil = bench_pil(folder, args)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for o in ours:
        o["ratio_over_pil"] = o["samples_per_s"] / pil["samples_per_s"]
    result = {
        "machine": {**machine(), "load_average_1min_before": load_before},
        "setup": {
            "images": int(len(x)), "classes": int(len(set(y.tolist()))), "image_source": origin,
            "format": args.format, "samples": args.samples, "batch_size": args.batch_size,
            "pil_num_workers": args.num_workers, "ours_device": args.device, "folder_write_s": write_s,
            "augmentation": "RandomCrop(32, padding=4) + horizontal flip + normalise",
        },
        "pil": pil,
        "ours": ours,
        "ours_load": load_times,
        # headline: our pipeline with torch's default thread count (the first entry unless --threads says otherwise)
        "ratio_ours_over_pil": ours[0]["ratio_over_pil"],
    }  # fmt: skip
    report(result, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return result


def report(result: dict, args) -> None:
    m, s, pil = result["machine"], result["setup"], result["pil"]
    print(f"data pipeline throughput, {m['date']}")
    print(
        f"machine: {m['cpu_count']} CPUs ({m['cpu_affinity']} usable), {m['processor']}, torch {m['torch']}, "
        f"torchvision {m['torchvision']}, python {m['python']}"
    )
    print(
        f"data: {s['images']} {s['format'].upper()} images of {s['classes']} classes from {s['image_source']}; "
        f"{s['samples']} samples per pipeline, batch {s['batch_size']}, {s['augmentation']}"
    )
    print(
        f"PIL   ImageFolder + transforms + DataLoader(num_workers={s['pil_num_workers']}):  "
        f"{pil['samples_per_s']:>9,.0f} samples/s  ({pil['samples']} in {pil['seconds']:.2f} s)"
    )
    for o in result["ours"]:
        print(
            f"ours  uint8 + TensorBatchLoader + BatchAugment ({s['ours_device']}, {o['threads']} torch thread"
            f"{'s' if o['threads'] != 1 else ''}):  {o['samples_per_s']:>9,.0f} samples/s  ({o['samples']} in "
            f"{o['seconds']:.2f} s)  ratio ours / PIL {o['ratio_over_pil']:.1f}x"
        )
    lt = result["ours_load"]
    print(
        f"ours  one-time decode of the folder into uint8: {lt['decode_once_s']:.2f} s "
        f"(a later run reads the decode cache: {lt['cached_load_s']:.2f} s)"
    )
    print(f"ratio ours / PIL: {result['ratio_ours_over_pil']:.1f}x")
    before, after = m["load_average_1min_before"], m["load_average_1min"]
    if m["cpu_count"] and before is not None and max(before, after) > 0.5 * m["cpu_count"]:
        print(
            f"note: the machine was busy (1-min load average {before:.1f} before, {after:.1f} after, "
            f"{m['cpu_count']} CPUs); other processes skew these figures"
        )


if __name__ == "__main__":
    main()
