"""The run directory's files and their formats, in one place (every stage reads and writes through here).

Layout (``<run>`` is ``paths.output_dir``, by default Hydra's run directory)::

    collective/seed_<s>/manifest.json      per collective seed s: stream, per task widths, distinct
                       task_XX.pt          filters, checkpoint, time, samples; config fingerprint
                       metrics.json        class-IL and task-IL accuracy matrices, BWT, forgetting, open world
                       gradient_stats.csv  every criterion statistic per task, epoch and layer
    learngene/seed_<s>/learngene.pt|json   the selected blocks; every statistic's window scores; provenance
    individual/results_raw.json            per (collective seed, method, shots): per-task accuracies
    individual/<method>-<digest>.pt        meta-trained weights (ProtoNet, MAML), reused on resume
    results.json, results.md, plots/, timings.json, logs/

Every JSON and checkpoint is written atomically; a damaged file is reported with its path and what to
do (:class:`~learngene_core.errors.CheckpointError`), never with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from learngene_core.backbones.base import BlockNet, build_net, load_state_checked
from learngene_core.errors import CheckpointError
from learngene_core.ewc import EWC
from learngene_core.utils.io import atomic_torch_save, atomic_write_json, read_torch

MANIFEST_FORMAT = "learngene-suite/collective-manifest"
MANIFEST_VERSION = 2
CHECKPOINT_FORMAT = "learngene-suite/collective-checkpoint"
# collective.keep_checkpoints: every task's checkpoint, or only the last task's (and the learngene's source task's)
KEEP_CHECKPOINTS = ("all", "last")
RAW_FORMAT = "learngene-suite/individual-results"
# the split mark of stage-3 entries on the held-out validation tasks (entries on the test tasks have none)
VALIDATION = "validation"


# trainer.* keys that do not change a stage's numbers (the device count: a requeue on other nodes resumes;
# stage 3 trains on one device per process)
TRAINER_NOT_RESULT_KEYS = ("devices", "num_nodes", "strategy", "sync_batchnorm", "enable_progress_bar",
                           "enable_checkpointing", "enable_model_summary", "log_every_n_steps", "num_sanity_val_steps")  # fmt: skip


DEFAULT_AUGMENT = "learngene_core.data.augmentation.BatchAugment"


def data_identity(cfg: DictConfig) -> dict:
    """``cfg.data`` as results depend on it: part of stage 1's fingerprint and of every stage-3 computation key.
    ``on_device`` (where the images live) is left out, and the default augmentation is keyed as runs recorded it
    before it had a ``_target_``, so earlier runs still resume and earlier computations are still found."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("on_device", None)
    augment = data.get("augment") or {}
    if augment.get("_target_") == DEFAULT_AUGMENT:
        data["augment"] = {k: v for k, v in augment.items() if not k.startswith("_")}
    return data


def trainer_numerics(cfg: DictConfig) -> dict:
    """The Trainer settings results depend on (precision, clipping, accumulation, determinism), as a dict:
    part of stage 1's fingerprint and of every stage-3 computation key."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in TRAINER_NOT_RESULT_KEYS:
        trainer.pop(key, None)
    return trainer


# -- paths ------------------------------------------------------------------------------------------
def collective_dir(root: Path, seed: int) -> Path:
    return Path(root) / "collective" / f"seed_{seed}"


def learngene_dir(root: Path, seed: int) -> Path:
    return Path(root) / "learngene" / f"seed_{seed}"


def raw_results_path(root: Path) -> Path:
    return Path(root) / "individual" / "results_raw.json"


# -- JSON -------------------------------------------------------------------------------------------
def read_json_file(path: Path, what: str, expect: type = dict) -> dict | list:
    """Read a JSON file this suite wrote; damage (garbage, cut-off JSON, wrong type) is a one-line error."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} ({what}) is damaged and cannot be read ({type(err).__name__}: {err}); delete it (or the run "
            f"directory) and rerun the stage that writes it"
        ) from None
    if not isinstance(data, expect):
        raise CheckpointError(
            f"{path} ({what}) holds a {type(data).__name__}, not the {expect.__name__} this suite writes; delete it "
            f"and rerun the stage that writes it"
        )
    return data


# -- manifest ---------------------------------------------------------------------------------------
def read_manifest(path: Path) -> dict | None:
    if not path.exists():
        return None
    m = read_json_file(path, "collective manifest")
    if m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("tasks"), list):
        raise CheckpointError(
            f"{path} is not a collective manifest of this suite (format {m.get('format')!r}); delete the run "
            f"directory's collective/ folder and rerun stage 1"
        )
    for i, e in enumerate(m["tasks"]):
        if not isinstance(e, dict) or not {"task", "checkpoint", "widths"} <= set(e):
            raise CheckpointError(
                f"{path}: task entry {i} is damaged ({e!r:.80}); delete the file and rerun stage 1"
            )
    return m


def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_json(path, manifest)


def finished(manifest: dict) -> bool:
    return len(manifest["tasks"]) >= int(manifest["n_tasks"])


# -- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: Path, t: int, net: BlockNet, ewc: EWC | None, order: list[int],
                    optimizer: dict | None = None) -> None:  # fmt: skip
    """``optimizer``: the joint run's optimizer and scheduler state (what resuming it exactly needs)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "task": t,
        "spec": net.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "ewc": ewc.state_dict() if ewc else None,
        "head_order": order,
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: Path, expect_task: int | None = None) -> tuple[BlockNet, dict]:
    """Rebuild the network a checkpoint was written by and load its weights (shape-checked)."""
    ckpt = read_torch(
        path,
        missing="this collective checkpoint is missing, so the run directory is incomplete (never falling back to a "
        "random network): rerun stage 1 or point from_run at a complete run",
        damaged="it is not a readable checkpoint: delete it and rerun the collective stage (it resumes from the task "
        "before)",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a collective checkpoint of this suite")
    if expect_task is not None and ckpt.get("task") != expect_task:
        raise CheckpointError(
            f"{path} holds task {ckpt.get('task')} but the manifest lists it for task {expect_task}; the run "
            f"directory is inconsistent (files copied between runs?): rerun stage 1 in a new directory"
        )
    try:
        net = build_net(ckpt["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its network spec is unreadable ({err})") from None
    load_state_checked(net, ckpt["state_dict"], str(path))
    return net, ckpt


# -- stage-3 results --------------------------------------------------------------------------------
def read_raw_results(path: Path) -> dict:
    if not path.exists():
        return {"format": RAW_FORMAT, "computations": {}, "entries": {}}
    raw = read_json_file(path, "stage-3 results")
    if raw.get("format") != RAW_FORMAT or not isinstance(raw.get("entries"), dict):
        raise CheckpointError(
            f"{path} is not a stage-3 results file of this suite (format {raw.get('format')!r}); move it away and "
            f"rerun the individual stage"
        )
    raw.setdefault("computations", {})
    return raw


def final_checkpoint(collective: Path, after_task: int | None = None) -> tuple[BlockNet, dict, dict]:
    """The collective network after ``after_task`` (default: the last task of a *finished* run) of one
    collective seed's directory. An unfinished run is refused unless ``after_task`` names a finished task."""
    manifest = read_manifest(collective / "manifest.json")
    if manifest is None or not manifest["tasks"]:
        raise CheckpointError(
            f"no finished collective run under {collective} (manifest.json missing or empty); run "
            f"stage=collective first or set from_run to a finished run directory"
        )
    entries = {e["task"]: e for e in manifest["tasks"]}
    last = max(entries)
    if after_task is None and not finished(manifest):
        raise CheckpointError(
            f"the collective run under {collective} is unfinished ({len(entries)} of {manifest['n_tasks']} tasks); "
            f"rerun stage 1 with the same output directory to finish it, or set criterion.after_task <= {last} "
            f"to take the learngene from a finished task"
        )
    t = last if after_task is None else after_task
    if t not in entries:
        raise CheckpointError(f"criterion.after_task={t}, but the collective run finished tasks 0..{last}")
    net, ckpt = load_checkpoint(collective / entries[t]["checkpoint"], expect_task=t)
    return net, ckpt, manifest
