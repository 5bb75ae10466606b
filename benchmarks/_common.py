"""Shared bits of the benchmark scripts: machine description, data, JSON output.

Importing this module puts the repository root on ``sys.path``, so that a script run as
``.venv/bin/python benchmarks/<name>.py`` can import ``callbacks``, ``lightning_modules``, ``datamodules``
and ``experiments`` (top-level folders of the checkout, not installed packages).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "cifar100.npz"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_py(args: list[str], processes: int = 1) -> list[str]:
    """The command of ``experiments/run.py ARGS``: plain, or under ``torchrun`` with ``processes`` processes on
    this machine (the caller adds ``trainer.strategy=ddp trainer.devices=N`` and the threads per process)."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*launcher, str(ROOT / "experiments" / "run.py"), *args]


def machine() -> dict:
    info = {
        "date": dt.date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    with contextlib.suppress(OSError):
        info["load_average_1min"] = os.getloadavg()[0]
    return info


def image_set(npz: Path | None = None):
    """Real CIFAR-100 where present, else scikit-learn's digits (both real images)."""
    from learngene_core.data.sources.digits import load_digits
    from learngene_core.data.sources.npz import load_npz

    npz = npz or DEFAULT_NPZ
    return load_npz(npz) if Path(npz).is_file() else load_digits(32)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")


def print_machine(info: dict) -> None:
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if info.get("load_average_1min", 0) > (info["cpu_count"] or 1) * 0.5:
        print(
            f"warning: load average {info['load_average_1min']:.1f} -- other work is running; figures are skewed"
        )
