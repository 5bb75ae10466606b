"""The joint ancestor's sample schedule (``collective.mode=joint``): one seeded stream over all base images.

Every pass (epoch) is a fresh seeded permutation of the N base-class training images; the passes are
concatenated and cut after ``total`` samples (the continual stream's sample-steps, so the last pass may be
fractional) into global batches of ``batch_size`` that may straddle two passes (only the very last batch
can be smaller). The optimizer steps are split into ``n_tasks`` equal consecutive chunks, the joint run's
"tasks" (checkpoints, evaluation and per-task criterion statistics at their ends); each chunk is split
into at most ``epochs`` near-equal Lightning epochs (the criterion's per-epoch rows). Pure and
deterministic: a resumed run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from learngene_core.errors import DataError


@dataclass(frozen=True)
class JointPlan:
    n_images: int  # N: base-class training images in one pass
    total: int  # sample-steps of the whole run
    batch_size: int  # the global batch
    n_tasks: int  # chunks ("tasks")
    epochs: int  # Lightning epochs per chunk (fewer if a chunk has fewer steps)
    seed: int
    _passes: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_images < 1 or self.total < 1 or self.batch_size < 1 or self.n_tasks < 1 or self.epochs < 1:
            raise DataError(f"a joint plan needs positive sizes, got {self}")
        if self.steps < self.n_tasks:
            raise DataError(
                f"the joint run has {self.steps} optimizer steps ({self.total} samples in batches of "
                f"{self.batch_size}) for {self.n_tasks} tasks; every task needs at least one step: use fewer "
                "collective.n_tasks, more collective.epochs or a smaller collective.batch_size"
            )

    # -- sizes --------------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """Optimizer steps of the whole run."""
        return math.ceil(self.total / self.batch_size)

    @property
    def passes(self) -> float:
        """Passes over the base images (fractional when ``total`` is not a multiple of N)."""
        return self.total / self.n_images

    def chunk(self, t: int) -> range:
        """The optimizer steps of task ``t`` (0-based, global step indices)."""
        if not 0 <= t < self.n_tasks:
            raise IndexError(f"task {t} is outside the joint run's {self.n_tasks} tasks")
        return range(t * self.steps // self.n_tasks, (t + 1) * self.steps // self.n_tasks)

    def epoch_steps(self, t: int) -> list[range]:
        """Task ``t``'s steps split into near-equal Lightning epochs (none empty)."""
        steps = self.chunk(t)
        n = min(self.epochs, len(steps))
        return [
            range(steps.start + e * len(steps) // n, steps.start + (e + 1) * len(steps) // n)
            for e in range(n)
        ]

    def step_samples(self, step: int) -> range:
        """The sample positions (0..total-1 along the concatenated passes) of optimizer step ``step``."""
        return range(step * self.batch_size, min((step + 1) * self.batch_size, self.total))

    def samples_in(self, steps: range) -> int:
        if not len(steps):
            return 0
        return self.step_samples(steps[-1]).stop - self.step_samples(steps[0]).start

    # -- order --------------------------------------------------------------------------------------
    def permutation(self, p: int) -> np.ndarray:
        """Pass ``p``'s order of the N images (seeded by the run seed and the pass)."""
        if p not in self._passes:
            if len(self._passes) > 4:
                self._passes.clear()
            self._passes[p] = np.random.default_rng([self.seed, 7, p]).permutation(self.n_images)
        return self._passes[p]

    def images(self, positions: range) -> np.ndarray:
        """Image indices (0..N-1, into the base pool) at sample positions ``positions``."""
        out, pos = [], positions.start
        while pos < positions.stop:
            p, off = divmod(pos, self.n_images)
            take = min(positions.stop - pos, self.n_images - off)
            out.append(self.permutation(p)[off : off + take])
            pos += take
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def batch(self, step: int) -> np.ndarray:
        return self.images(self.step_samples(step))
