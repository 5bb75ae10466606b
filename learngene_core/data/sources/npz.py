"""An ``.npz`` arrays file in the format of shared/data/README.md (mini-ImageNet 32 px and alike)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from learngene_core.data.image_set import ImageSet, resize_uint8
from learngene_core.data.splits import SplitFunction, groups_from_codes, split_function
from learngene_core.errors import DataError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def _chw(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if x.dtype != np.uint8:
        raise DataError(f"{path}: '{key}' has dtype {x.dtype}; it must be uint8 images")
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] == x.shape[2] and x.shape[3] != x.shape[2]:
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W), any channel count
    elif x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise DataError(
            f"{path}: '{key}' has shape {x.shape}; expected square images (N, H, W, C), (N, C, H, W) or (N, H, W)"
        )
    return torch.from_numpy(np.ascontiguousarray(x))


def load_npz(
    path: str | Path,
    image_size: int | None = None,
    split: str | SplitFunction = "default",
    split_file: str | Path | None = None,
) -> ImageSet:
    """Load an npz with x_train, y_train, x_test, y_test, class_names and (optionally) split.

    ``split``: "default" uses the file's per-class ``split`` codes; another split name (or a function of
    the class names) assigns the groups instead.
    """
    split_groups = split_function(split, split_file)
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"npz file not found: {path}; give the path of an existing .npz (e.g. ../shared/data/cifar100.npz)"
        )
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not an .npz archive (a zip of .npy arrays, as numpy.savez writes); give the path of one, "
            f"e.g. ../shared/data/cifar100.npz"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in REQUIRED_KEYS if k not in f.files]
            if missing:
                raise DataError(
                    f"{path}: missing keys {missing}; an npz needs {list(REQUIRED_KEYS)} (+ 'split')"
                )
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise DataError(
                f"{path}: x_{split} has {nx} images but y_{split} has {ny} labels; lengths must match"
            )
    class_names = [str(c) for c in arrays["class_names"].tolist()]
    if split_groups is not None:
        groups = split_groups(class_names)
    elif "split" in arrays:
        codes = arrays["split"].tolist()
        if len(codes) != len(class_names):
            raise DataError(
                f"{path}: 'split' has {len(codes)} entries for {len(class_names)} classes; must match"
            )
        groups = groups_from_codes(codes)
    else:
        raise DataError(
            f"{path}: no 'split' key; add one (0 base, 1 open_world, 2 novel per class) or choose a named split"
        )
    x_train = _chw(arrays["x_train"], "x_train", path)
    x_test = _chw(arrays["x_test"], "x_test", path)
    if image_size:
        x_train, x_test = resize_uint8(x_train, image_size), resize_uint8(x_test, image_size)
    return ImageSet(
        name=path.stem,
        x_train=x_train,
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=x_test,
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        class_names=class_names,
        groups=groups,
        info={"source": "npz", "path": str(path)},
    )
