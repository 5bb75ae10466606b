"""CIFAR-100 through torchvision: download with checksum into ``root``, then read the python-pickle layout.

torchvision provides the download URL, the archive and file checksums and the extraction; the pickle
files are read here so that a copy the tests write themselves (same layout, other bytes) loads through
the same code with ``verify_checksum=False``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR100
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from learngene_core.data.image_set import ImageSet, resize_uint8
from learngene_core.data.splits import SplitFunction, cifar_fs_groups, split_function
from learngene_core.errors import DataError


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise DataError(
            f"CIFAR-100 file {path} is unreadable ({err}); delete it and download again"
        ) from None


def _ensure_present(root: Path, download: bool) -> Path:
    folder = root / CIFAR100.base_folder
    needed = [folder / name for name, _ in (*CIFAR100.train_list, *CIFAR100.test_list)] + [
        folder / CIFAR100.meta["filename"]
    ]
    if all(p.is_file() for p in needed):
        return folder
    if not download:
        raise DataError(
            f"CIFAR-100 not found under {root} (expected {folder}/train, test, meta); give the folder "
            f"that holds cifar-100-python/ as the root, or allow the download"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(
            CIFAR100.url, str(root), filename=CIFAR100.filename, md5=CIFAR100.tgz_md5
        )
    except Exception as err:  # urllib, socket, checksum and tar errors all mean the same thing here
        raise DataError(
            f"CIFAR-100 is not under {root} and downloading it failed ({type(err).__name__}: {err}); "
            f"on a machine without internet copy cifar-100-python/ (or cifar-100-python.tar.gz) into {root} "
            f"or give a root folder that has it"
        ) from None
    return folder


def load_cifar100(
    root: str | Path,
    download: bool = True,
    verify_checksum: bool = True,
    image_size: int | None = None,
    split: str | SplitFunction = "default",
    split_file: str | Path | None = None,
) -> ImageSet:
    """CIFAR-100 with the CIFAR-FS split by default (``split``: another split name or function)."""
    split_groups = split_function(split, split_file) or cifar_fs_groups
    root = Path(root).expanduser()
    folder = _ensure_present(root, download)
    if verify_checksum:
        for name, md5 in (*CIFAR100.train_list, *CIFAR100.test_list):
            if not check_integrity(str(folder / name), md5):
                raise DataError(
                    f"CIFAR-100 file {folder / name} fails its md5 checksum; delete {folder} and download again "
                    f"(or skip the checksum for a deliberately modified copy)"
                )
    meta = _read_pickle(folder / CIFAR100.meta["filename"])
    class_names = list(meta[CIFAR100.meta["key"]])
    splits = {}
    for split, files in (("train", CIFAR100.train_list), ("test", CIFAR100.test_list)):
        xs, ys = [], []
        for name, _ in files:
            entry = _read_pickle(folder / name)
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry["fine_labels"])
        x = torch.from_numpy(np.concatenate(xs))
        splits[split] = (
            resize_uint8(x, image_size) if image_size else x,
            torch.tensor(ys, dtype=torch.int64),
        )
    return ImageSet(
        name="cifar100",
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        class_names=class_names,
        groups=split_groups(class_names),
        info={"source": "cifar100", "root": str(root)},
    )
