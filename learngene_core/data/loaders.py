"""In-memory batch loaders: uint8 tensors (on the training device when asked), augmented per batch.

Lightning accepts any iterable with ``__len__`` as a dataloader. These replace the DataLoader +
per-image PIL transforms of the original code: one index operation and a handful of tensor ops per
batch, on the device the model trains on. Randomness (shuffling, crops, flips) comes from explicit
generators, so a task's stream is reproducible and independent of everything else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from learngene_core.data.augmentation import BatchAugment


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


BATCHINGS = ("even", "ragged")


def batch_bounds(n: int, batch_size: int, batching: str = "even") -> list[tuple[int, int]]:
    """(start, stop) of every batch of an epoch over ``n`` images, each image once.

    ``even``: ceil(n / batch_size) batches whose sizes differ by at most one (100 images at 32: 25 25 25 25;
    50 at 32: 25 25), so BatchNorm never normalises over a handful of images; the number of steps is the
    same as ``ragged``. ``ragged``: full batches and a remainder (100 at 32: 32 32 32 4)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if batching not in BATCHINGS:
        raise ValueError(f"batching={batching!r}; valid: {list(BATCHINGS)}")
    steps = math.ceil(n / batch_size)
    if batching == "ragged":
        return [(i * batch_size, min(n, (i + 1) * batch_size)) for i in range(steps)]
    q, r = divmod(n, steps) if steps else (0, 0)
    starts = [i * q + min(i, r) for i in range(steps + 1)]  # the first r batches take one image more
    return list(zip(starts[:-1], starts[1:]))


class TensorBatchLoader:
    """Batches of (images, labels) from one uint8 tensor.

    ``train=True``: a fresh permutation per epoch and random augmentation; ``False``: storage order,
    deterministic normalisation only. Under data parallelism (``world > 1``) every rank draws the same
    permutation and takes every ``world``-th sample from ``rank`` on (padded by wrapping, as
    DistributedSampler does), so ranks see disjoint data and the same number of batches. ``batching``: how an
    epoch is cut into batches when ``drop_last`` is off (:func:`batch_bounds`; the collective stage keeps
    ``ragged``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        augment: BatchAugment,
        train: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
        batching: str = "ragged",
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.augment, self.is_train = batch_size, augment, train
        self.drop_last, self.rank, self.world = drop_last, rank, world
        n = self._per_rank()
        self.bounds = (
            [(i * batch_size, (i + 1) * batch_size) for i in range(n // batch_size)]
            if drop_last and batch_size >= 1
            else batch_bounds(n, batch_size, batching)
        )
        self.shuffle_gen = torch.Generator().manual_seed(int(seed))
        self.aug_gen = _device_generator(x.device, seed + 1) if train else None

    def _per_rank(self) -> int:
        return math.ceil(len(self.x) / self.world)

    def __len__(self) -> int:
        return len(self.bounds)

    def _order(self) -> torch.Tensor:
        n = len(self.x)
        idx = torch.randperm(n, generator=self.shuffle_gen) if self.is_train else torch.arange(n)
        if self.world > 1:
            total = self._per_rank() * self.world
            if total > n:
                idx = torch.cat([idx, idx[: total - n]])
            idx = idx[self.rank :: self.world]
        return idx.to(self.x.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._order()
        for start, stop in self.bounds:
            b = idx[start:stop]
            xb = self.x.index_select(0, b)
            xb = self.augment.train(xb, self.aug_gen) if self.is_train else self.augment.eval(xb)
            yield xb, self.y.index_select(0, b)


class TaskBatchLoader:
    """Batches for T target tasks trained at once: x (B, T, C, H, W), y (B, T).

    Every task has the same number of training images, so all take the same steps. Task t shuffles and
    augments with its own generators, seeded from ``seeds[t]``; with T = 1 this is exactly the loader a
    one-by-one run uses, which is what makes batched and one-by-one training give the same results.
    ``batching``: how an epoch is cut into batches (see :func:`batch_bounds`; default ``even``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        augment: BatchAugment,
        seeds: Sequence[int],
        batching: str = "even",
    ) -> None:
        if idx.ndim != 2 or idx.shape != y.shape:
            raise ValueError(f"idx {tuple(idx.shape)} and y {tuple(y.shape)} must both be (T, N)")
        self.x, self.idx, self.y = x, idx.to(x.device), y.to(x.device)
        self.batch_size, self.augment = batch_size, augment
        self.bounds = batch_bounds(idx.shape[1], batch_size, batching)
        self.shuffle_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.aug_gens = [_device_generator(x.device, int(s) + 1) for s in seeds]

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.idx.shape[1]
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.shuffle_gens]).to(self.x.device)
        order = torch.gather(self.idx, 1, perms)
        labels = torch.gather(self.y, 1, perms)
        for start, stop in self.bounds:
            sl = slice(start, stop)
            xs = [
                self.augment.train(self.x.index_select(0, order[t, sl]), g)
                for t, g in enumerate(self.aug_gens)
            ]
            yield torch.stack(xs, 1), labels[:, sl].T.contiguous()


@torch.no_grad()
def predict(
    net: torch.nn.Module,
    x: torch.Tensor,
    augment: BatchAugment,
    batch_size: int = 512,
    device=None,
    features: bool = False,
) -> torch.Tensor:
    """Logits (or ``features``) of uint8 images in eval mode, in order; no randomness."""
    device = device or next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    for xb in x.split(batch_size):
        xb = augment.eval(xb.to(device, non_blocking=True))
        out.append((net.features(xb) if features else net(xb)).float())
    net.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
