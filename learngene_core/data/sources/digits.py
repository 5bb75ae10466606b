"""scikit-learn's bundled handwritten digits (1797 real 8x8 images, no download) for the offline quickstart.

Images are scaled from 0..16 to 0..255, replicated to 3 channels and upsampled to the network's input
size. The train/test split is fixed: for each class, a seeded permutation puts 80 % in train and 20 % in
test. Class groups: base 0-4, open-world 5, novel 6-9 (splits.DIGITS_GROUPS).
"""

from __future__ import annotations

import numpy as np
import torch

from learngene_core.data.image_set import ImageSet, resize_uint8, to_channels
from learngene_core.data.splits import DIGITS_GROUPS, SplitFunction, split_function

SPLIT_SEED = 20220101
TRAIN_FRACTION = 0.8


def load_digits(
    image_size: int = 32,
    channels: int = 3,
    split: str | SplitFunction = "default",
    split_file: str | None = None,
) -> ImageSet:
    """``split``: "default" (base 0-4, open-world 5, novel 6-9) or another split name or function."""
    split_groups = split_function(split, split_file)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(TRAIN_FRACTION * len(idx)))
        train_idx.extend(idx[:cut].tolist())
        test_idx.extend(idx[cut:].tolist())
    x = torch.from_numpy(images)[:, None]
    x = to_channels(resize_uint8(x, image_size), channels)
    y = torch.from_numpy(labels)
    tr, te = torch.tensor(sorted(train_idx)), torch.tensor(sorted(test_idx))
    return ImageSet(
        name="digits",
        x_train=x[tr].contiguous(),
        y_train=y[tr],
        x_test=x[te].contiguous(),
        y_test=y[te],
        class_names=[str(c) for c in range(10)],
        groups=split_groups([str(c) for c in range(10)])
        if split_groups
        else {k: list(v) for k, v in DIGITS_GROUPS.items()},
        info={"source": "digits"},
    )
