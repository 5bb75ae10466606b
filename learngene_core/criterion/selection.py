"""The decision rule: which window of k consecutive conv blocks is the learngene.

Input: a per-task statistic S[t, l] for every conv block l (in network order), e.g. the per-task mean
of the paper's gradient statistic. For each block, over the tasks after ``warmup`` (weights w_t,
normalised to sum 1):

    level_l  = sum_t w_t S[t, l]                      (low: the layer has stopped changing)
    spread_l = sqrt(sum_t w_t (S[t, l] - level_l)^2)  (low: it is stable from task to task)
    score_l  = level_l + stability * spread_l

A window's score is the mean of its blocks' scores; the lowest score wins. Ties (within ``rtol``) go to
the deepest window, i.e. towards the paper's choice (the last blocks), so that a flat statistic
reproduces the paper's default rather than an arbitrary one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

WEIGHTINGS = ("uniform", "linear", "last")


@dataclass
class SelectionResult:
    start: int  # 0-based index of the window's first block
    k: int
    block_names: list[str]
    window_scores: list[float]  # one per window start 0..L-k
    layer_scores: list[float]
    tasks_used: list[int]
    tie: bool  # more than one window shared the best score

    @property
    def blocks(self) -> list[int]:
        return list(range(self.start, self.start + self.k))

    @property
    def names(self) -> list[str]:
        return self.block_names[self.start : self.start + self.k]

    def window_label(self, start: int) -> str:
        return f"{self.block_names[start]}-{self.block_names[start + self.k - 1]}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["selected"] = self.names
        d["windows"] = [
            {"start": s, "blocks": self.block_names[s : s + self.k], "score": sc}
            for s, sc in enumerate(self.window_scores)
        ]
        return d


def task_weights(n: int, weighting: str) -> np.ndarray:
    if weighting == "uniform":
        w = np.ones(n)
    elif weighting == "linear":
        w = np.arange(1, n + 1, dtype=float)
    elif weighting == "last":
        w = np.zeros(n)
        w[-1] = 1.0
    else:
        raise ValueError(f"task weighting {weighting!r}; valid: {list(WEIGHTINGS)}")
    return w / w.sum()


def select_window(
    stats: np.ndarray | Sequence[Sequence[float]],
    block_names: Sequence[str],
    k: int = 3,
    warmup: int = 1,
    weighting: str = "uniform",
    stability: float = 1.0,
    rtol: float = 1e-9,
) -> SelectionResult:
    """Choose the window of ``k`` consecutive blocks with the lowest, most stable statistic.

    ``stats``: (tasks, blocks). Tasks before ``warmup`` are skipped when later tasks exist.
    """
    s = np.asarray(stats, dtype=float)
    if s.ndim != 2 or s.shape[1] != len(block_names):
        raise ValueError(f"statistics of shape {s.shape} do not match {len(block_names)} blocks")
    n_tasks, n_blocks = s.shape
    if not 1 <= k <= n_blocks:
        raise ValueError(f"k={k}; a window must hold between 1 and all {n_blocks} blocks")
    if n_tasks == 0:
        raise ValueError("no per-task statistics to select from; the collective stage recorded none")
    if not np.isfinite(s).all():
        raise ValueError(
            "the gradient statistics contain NaN or inf; check the collective run for a diverged task"
        )
    used = list(range(warmup, n_tasks)) if n_tasks > warmup else list(range(n_tasks))
    sub = s[used]
    w = task_weights(len(used), weighting)[:, None]
    level = (w * sub).sum(0)
    spread = np.sqrt((w * (sub - level) ** 2).sum(0))
    layer = level + stability * spread
    windows = np.array([layer[i : i + k].mean() for i in range(n_blocks - k + 1)])
    best = windows.min()
    tol = rtol * max(abs(best), 1e-300)
    candidates = np.flatnonzero(windows <= best + tol)
    start = int(candidates.max())
    return SelectionResult(
        start=start,
        k=k,
        block_names=list(block_names),
        window_scores=windows.tolist(),
        layer_scores=layer.tolist(),
        tasks_used=used,
        tie=len(candidates) > 1,
    )
