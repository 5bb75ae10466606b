"""Target tasks of novel classes (stage 3), identical for every method of a run.

Two modes:

- ``paper``: N-way tasks with K training images per class, tested on *all* test images of those classes.
- ``episodic``: N-way K-shot Q-query episodes (LibFewShot style): support and query both from the
  training split of the novel classes, disjoint.

Determinism: a task is a pure function of (seed, task index). Its classes do not depend on K, and the
K shots of a class are the first K of a per-class permutation, so the 10 shots are a subset of the
20 shots and a 10-shot and a 20-shot run differ only in shots (the original code drew other classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from learngene_core.data.image_set import ImageSet
from learngene_core.errors import DataError

PROTOCOLS = ("paper", "episodic")


@dataclass(frozen=True)
class TargetTask:
    seed: int
    index: int
    shots: int
    classes: tuple[int, ...]  # dataset class indices; the local label of classes[i] is i
    train_idx: torch.Tensor  # into image_set.x_train
    train_y: torch.Tensor  # local labels 0..ways-1
    test_split: str  # "test" (paper) or "train" (episodic queries)
    test_idx: torch.Tensor
    test_y: torch.Tensor

    @property
    def key(self) -> str:
        return f"seed{self.seed}-task{self.index}"

    @property
    def ways(self) -> int:
        return len(self.classes)


def _by_class(y: torch.Tensor) -> dict[int, np.ndarray]:
    y = y.numpy()
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(int(y.max()) + 2))
    return {c: order[bounds[c] : bounds[c + 1]] for c in range(int(y.max()) + 1)}


def make_target_tasks(
    image_set: ImageSet,
    n_tasks: int,
    ways: int,
    shots: int,
    seed: int,
    protocol: str = "paper",
    queries: int = 15,
    group: str = "novel",
    exclude: np.ndarray | None = None,
) -> list[TargetTask]:
    """``n_tasks`` seeded ``ways``-way ``shots``-shot tasks of ``group``'s classes; ``exclude``: training-image
    indices never drawn (e.g. other tasks' query images)."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol {protocol!r}; valid: {list(PROTOCOLS)}")
    pool = list(image_set.groups[group])
    if ways > len(pool):
        raise DataError(f"ways={ways} but the {group} group has {len(pool)} classes; use at most {len(pool)}")
    if ways < 2:
        raise DataError(f"ways={ways}; a classification task needs at least 2 classes")
    if shots < 1:
        raise DataError(f"shots={shots}; it must be >= 1")
    train_by_class = _by_class(image_set.y_train)
    test_by_class = _by_class(image_set.y_test)
    tasks = []
    for i in range(n_tasks):
        rng = np.random.default_rng([seed, 3, i])
        classes = tuple(int(c) for c in rng.choice(pool, size=ways, replace=False))
        tr, tr_y, te, te_y = [], [], [], []
        for label, c in enumerate(classes):
            idx = train_by_class.get(c, np.array([], dtype=np.int64))
            if exclude is not None and len(exclude):
                idx = idx[~np.isin(idx, exclude)]
            need = shots + (queries if protocol == "episodic" else 0)
            if need > len(idx):
                what = f"{shots} shots + {queries} queries" if protocol == "episodic" else f"{shots} shots"
                raise DataError(
                    f"{what} need {need} training images but class {image_set.class_names[c]!r} has {len(idx)}; "
                    f"use shots <= {len(idx) - (queries if protocol == 'episodic' else 0)}"
                )
            perm = idx[np.random.default_rng([seed, 4, i, c]).permutation(len(idx))]
            tr.append(perm[:shots])
            tr_y += [label] * shots
            if protocol == "paper":
                t_idx = test_by_class.get(c, np.array([], dtype=np.int64))
                if len(t_idx) == 0:
                    raise DataError(
                        f"class {image_set.class_names[c]!r} has no test images; a target task needs some"
                    )
            else:
                t_idx = perm[len(perm) - queries :]
            te.append(np.sort(t_idx))
            te_y += [label] * len(t_idx)
        tasks.append(
            TargetTask(
                seed=seed,
                index=i,
                shots=shots,
                classes=classes,
                train_idx=torch.from_numpy(np.concatenate(tr)).long(),
                train_y=torch.tensor(tr_y),
                test_split="test" if protocol == "paper" else "train",
                test_idx=torch.from_numpy(np.concatenate(te)).long(),
                test_y=torch.tensor(te_y),
            )  # fmt: skip
        )
    return tasks


def make_target_task_grid(
    image_set: ImageSet, n_tasks: int, ways: int, shots: int, seeds: Sequence[int], **kw
) -> list[TargetTask]:
    """All target tasks of a run for one shot count: ``n_tasks`` per seed, seeds in order."""
    return [t for s in seeds for t in make_target_tasks(image_set, n_tasks, ways, shots, int(s), **kw)]


def make_episodes(
    image_set: ImageSet, n_episodes: int, ways: int, shots: int, queries: int, seed: int, group: str
) -> list[TargetTask]:
    """A fixed, seeded set of N-way K-shot Q-query episodes from ``group`` (e.g. base for meta-training)."""
    return make_target_tasks(
        image_set, n_episodes, ways, shots, seed, protocol="episodic", queries=queries, group=group
    )
