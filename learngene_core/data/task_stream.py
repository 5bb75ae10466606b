"""The collective model's task stream (stage 1): a seeded sequence of C-class tasks from the base group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learngene_core.errors import DataError


@dataclass(frozen=True)
class StreamTask:
    index: int
    classes: tuple[int, ...]  # dataset class indices, in the order they are drawn
    samples: int | None = None  # a joint phase: this many training images drawn from all ``classes``


def joint_phases(stream: Sequence[StreamTask], base: Sequence[int], sizes: Sequence[int]) -> list[StreamTask]:
    """The joint ancestor's schedule: as many phases as ``stream`` has tasks, each over all ``base`` classes
    with exactly as many training images as the matching task (``sizes``), so both ancestors see the same
    number of sample-steps and grow at the same points."""
    return [
        StreamTask(index=t.index, classes=tuple(int(c) for c in base), samples=int(n))
        for t, n in zip(stream, sizes)
    ]


def make_task_stream(
    base: Sequence[int],
    n_tasks: int,
    classes_per_task: int,
    seed: int,
    replacement: bool = True,
    open_world: Sequence[int] = (),
    open_world_enters_at: int | None = None,
) -> list[StreamTask]:
    """Draw ``n_tasks`` tasks of ``classes_per_task`` distinct classes each.

    ``replacement=True`` (the paper): classes may recur across tasks. ``False``: every class appears in at
    most one task, which needs ``n_tasks * classes_per_task`` classes. With ``open_world_enters_at=t`` the
    open-world classes join the pool from task t on (they are unknowns before, and learned after).
    """
    if n_tasks < 1:
        raise DataError(f"n_tasks={n_tasks}; it must be >= 1")
    rng = np.random.default_rng([seed, 1])
    tasks: list[StreamTask] = []
    unused: list[int] = []
    for t in range(n_tasks):
        pool = list(base)
        if open_world_enters_at is not None and t >= open_world_enters_at:
            pool += list(open_world)
        if classes_per_task > len(pool):
            raise DataError(
                f"classes_per_task={classes_per_task} but task {t} can draw from only {len(pool)} "
                f"classes; use at most {len(pool)}"
            )
        if replacement:
            chosen = rng.choice(pool, size=classes_per_task, replace=False)
        else:
            if t == 0 or (open_world_enters_at is not None and t == open_world_enters_at):
                used = {c for task in tasks for c in task.classes}
                unused = [c for c in pool if c not in used]
            if classes_per_task > len(unused):
                need = n_tasks * classes_per_task
                raise DataError(
                    f"replacement=False needs {need} distinct classes for {n_tasks} tasks of "
                    f"{classes_per_task}, but only {len(pool)} are available; draw with replacement or fewer tasks"
                )
            picks = rng.choice(len(unused), size=classes_per_task, replace=False)
            chosen = [unused[i] for i in picks]
            unused = [c for i, c in enumerate(unused) if i not in set(picks.tolist())]
        tasks.append(StreamTask(index=t, classes=tuple(int(c) for c in chosen)))
    return tasks


def train_subset(
    indices_by_class: dict[int, np.ndarray], per_class: int | None, seed: int
) -> dict[int, np.ndarray]:
    """The M training images used per class (all when ``per_class`` is None), fixed for the whole run."""
    if per_class is None:
        return indices_by_class
    out = {}
    for c, idx in indices_by_class.items():
        if per_class > len(idx):
            raise DataError(
                f"per_class={per_class} but class {c} has only {len(idx)} training images; "
                f"use at most {min(len(v) for v in indices_by_class.values())} or None (all)"
            )
        perm = np.random.default_rng([seed, 2, c]).permutation(len(idx))
        out[c] = np.sort(np.asarray(idx)[perm[:per_class]])
    return out


def head_order(tasks: Sequence[StreamTask]) -> list[int]:
    """Global labels: dataset classes in order of first appearance in the stream (the growing head's rows)."""
    order: list[int] = []
    for task in tasks:
        for c in task.classes:
            if c not in order:
                order.append(c)
    return order
