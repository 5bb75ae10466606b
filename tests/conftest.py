"""Shared fixtures: a small real-format image set, Hydra config composition, paths to the offline data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "experiments" / "configs"
# the offline CIFAR-100 copy (CIFAR-FS split) next to the checkout, or wherever LEARNGENE_CIFAR_NPZ points
CIFAR_NPZ = Path(os.environ.get("LEARNGENE_CIFAR_NPZ", ROOT.parent / "shared" / "data" / "cifar100.npz"))

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def cifar_npz() -> Path:
    """The real CIFAR-100 arrays with the CIFAR-FS split (shared/data); tests using it skip where it is absent."""
    if not CIFAR_NPZ.is_file():
        pytest.skip(
            f"{CIFAR_NPZ} not present (offline CIFAR-100 copy; set LEARNGENE_CIFAR_NPZ to point at one)"
        )
    return CIFAR_NPZ


def make_image_set(num_classes: int = 12, per_class_train: int = 24, per_class_test: int = 8, size: int = 32,
                   groups: dict | None = None, seed: int = 0):  # fmt: skip
    """A small ImageSet whose classes are separable (class-dependent colour blobs plus noise)."""
    from learngene_core.data.image_set import ImageSet

    g = torch.Generator().manual_seed(seed)

    def images(n_per: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for c in range(num_classes):
            base = torch.rand(3, 1, 1, generator=g) * 200
            x = base + torch.randn(n_per, 3, size, size, generator=g) * 25
            patch = max(1, size // 4)
            r = (c * 5) % max(1, size - patch)
            x[:, :, r : r + patch, r : r + patch] += 60
            xs.append(x.clamp(0, 255).to(torch.uint8))
            ys.append(torch.full((n_per,), c))
        return torch.cat(xs), torch.cat(ys)

    x_train, y_train = images(per_class_train)
    x_test, y_test = images(per_class_test)
    if groups is None:
        n_ow = max(1, num_classes // 6)
        n_novel = max(3, num_classes // 4)
        base = num_classes - n_ow - n_novel
        groups = {"base": list(range(base)), "open_world": list(range(base, base + n_ow)),
                  "novel": list(range(base + n_ow, num_classes))}  # fmt: skip
    return ImageSet(
        "synthetic", x_train, y_train, x_test, y_test, [f"c{i}" for i in range(num_classes)], groups
    )


@pytest.fixture
def image_set():
    return make_image_set()


def compose(overrides: list[str] | None = None, output_dir: str | Path | None = None, resolve: bool = False):
    """Compose the suite's config as run.py would, with ``paths.output_dir`` set (no Hydra run dir); ``resolve``:
    interpolations resolved (run.py checks the config unresolved, which resolve=False gives)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from experiments.pipeline.default_experiment import prepare_command_line

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="run", overrides=prepare_command_line(list(overrides or [])))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir or "/tmp/learngene-test")
    if resolve:
        OmegaConf.resolve(cfg)
    return cfg


# overrides that make a whole pipeline run in seconds on 2 CPU cores (digits, tiny widths and budgets)
TINY = [
    "logger=none",
    "budget.collective_tasks=3",
    "budget.collective_epochs=1",
    "budget.width_mult=0.0625",
    "budget.target_tasks=2",
    "budget.seeds=[0]",
    "budget.individual_epochs=2",
    "budget.meta_episodes=4",
    "budget.maml_iterations=2",
    "budget.fisher_samples=16",
    "target.shots=[5]",
    "individual_net.hidden=[64,64]",
    "model.net.hidden=[64,64]",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny collective + learngene run directory, for tests that reuse stage 1 (from_run)."""
    from experiments.pipeline.runner import run_pipeline

    out = tmp_path_factory.mktemp("finished_run")
    run_pipeline(compose([*TINY, "stage=[collective,learngene]"], out), out)
    return out


def kill_collective_after_task(monkeypatch, task: int):
    """Make stage 1 stop as Ctrl-C does right after task ``task`` is recorded; returns the function that undoes it."""
    import experiments.pipeline.collective as collective_stage

    real_prune = collective_stage.prune_checkpoints

    def killed(out, manifest, keep, keep_task):
        real_prune(out, manifest, keep, keep_task)
        if manifest["tasks"][-1]["task"] == task:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(collective_stage, "prune_checkpoints", killed)
    return lambda: monkeypatch.setattr(collective_stage, "prune_checkpoints", real_prune)
