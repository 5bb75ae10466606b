"""The record step: after task t, the checkpoint, the manifest entry and metrics.json (atomically, rank 0),
then the metrics to the loggers."""

from __future__ import annotations

import logging
from pathlib import Path

from experiments.pipeline import run_files
from learngene_core.backbones.base import BlockNet
from learngene_core.ewc import EWC
from learngene_core.metrics.continual import continual_summary
from learngene_core.utils.io import atomic_write_json

log = logging.getLogger("learngene")

OPEN_WORLD_DEFINITION = (
    "known = test images of the base classes seen so far, unknown = test images of the open-world classes "
    "not yet learned; scores: max softmax probability (msp) and logsumexp of the logits (energy); "
    "AUROC with known as positive; fpr95 = false-positive rate at 95% true-positive rate"
)

# what a "task" is in the modes other than continual (metrics.json: mode_note)
MODE_NOTES = {
    "joint": (
        "joint ancestor: one seeded stream over all base-class training images (every pass a fresh "
        "permutation), one optimizer and LR schedule for the whole run, as many sample-steps as the continual "
        "stream; a 'task' is one of n_tasks equal consecutive chunks of the run's optimizer steps (checkpoint, "
        "evaluation and per-task criterion statistics at its end), and an 'epoch' of a task is a near-equal "
        "slice of its chunk, not a pass over the data"
    ),
    "joint_phases": (
        "joint phases: task t is a phase over all base classes on a seeded subset of as many training images "
        "as continual task t has, for the same epochs, with a fresh optimizer per phase"
    ),
}


class CollectiveHistory:
    """The per-task metrics of one collective run, rebuilt from metrics.json on resume."""

    def __init__(self, metrics: dict, done: int) -> None:
        def rows(key: str) -> list[list[float]]:
            return [r[: i + 1] for i, r in enumerate(metrics.get(key, {}).get("accuracy_matrix", []))][:done]

        self.class_il = rows("class_incremental")
        self.task_il = rows("task_incremental")
        self.outputs: list[int] = metrics.get("class_incremental", {}).get("outputs", [])[:done]
        self.open_world: list[dict] = metrics.get("open_world", [])[:done]
        self.params: list[int] = metrics.get("parameters", [])[:done]
        if not (len(self.class_il) == len(self.task_il) == len(self.open_world) == len(self.params) == done):
            from learngene_core.errors import CheckpointError

            raise CheckpointError(
                f"collective metrics.json holds {len(self.class_il)} tasks but the manifest {done}; the run "
                f"directory is inconsistent: delete it and rerun stage 1"
            )

    def add(self, evaluation, params: int) -> None:
        self.class_il.append(evaluation.class_il)
        self.task_il.append(evaluation.task_il)
        self.outputs.append(evaluation.outputs)
        self.open_world.append(evaluation.open_world)
        self.params.append(params)

    def metrics(self, net: BlockNet, mode: str, task_classes: int) -> dict:
        """``task_classes``: the classes of one task (a joint phase has every base class)."""

        def full(R):
            T = len(R)
            summary = continual_summary(R)
            summary["accuracy_matrix"] = [[R[i][j] if j <= i else None for j in range(T)] for i in range(T)]
            return summary

        cil = full(self.class_il)
        cil["outputs"] = self.outputs
        cil["chance"] = [1.0 / n for n in self.outputs]
        cil["definition"] = (
            "class-incremental: argmax over every head output (every class seen so far with global labels); "
            "chance = 1 / outputs"
        )
        til = full(self.task_il)
        til["chance"] = 1.0 / task_classes
        til["definition"] = "task-incremental: argmax over the head rows of the evaluated task's own classes"
        note = {"mode_note": MODE_NOTES[mode]} if mode in MODE_NOTES else {}
        return {
            "mode": mode,
            **note,
            "class_incremental": cil,
            "task_incremental": til,
            "open_world": self.open_world,
            "open_world_definition": OPEN_WORLD_DEFINITION,
            "parameters": self.params,
            "final_widths": net.widths,
        }


def record_task(out: Path, t: int, net: BlockNet, ewc: EWC | None, order: list[int], manifest: dict,
                entry: dict, history: CollectiveHistory, mode: str, optimizer: dict | None = None) -> None:  # fmt: skip
    """Checkpoint, metrics and manifest of task ``t`` (rank 0; the manifest last, so it never names a
    checkpoint that is not there). ``optimizer``: the joint run's optimizer and scheduler state."""
    ckpt = out / f"task_{t:02d}.pt"
    run_files.save_checkpoint(ckpt, t, net, ewc, order, optimizer)
    manifest["tasks"].append({**entry, "checkpoint": ckpt.name, "widths": net.widths,
                              "distinct_filters": net.distinct_filters(),
                              "nearest_filter_distance": net.nearest_filter_distances(), "block_names": net.block_names,
                              "head_size": net.head.out_features})  # fmt: skip
    atomic_write_json(out / "metrics.json", history.metrics(net, mode, len(entry["classes"])))
    run_files.write_manifest(out / "manifest.json", manifest)


def prune_checkpoints(out: Path, manifest: dict, keep: str, keep_task: int | None) -> None:
    if keep != "last":
        return
    for e in manifest["tasks"][:-1]:
        if e["task"] != keep_task:
            p = out / e["checkpoint"]
            if p.exists():
                p.unlink()
