"""An image-folder tree ``root/{train,test}/<class>/*.{jpg,jpeg,png}``, decoded once and cached.

Images are decoded with torchvision.io, converted to RGB and resized to ``image_size`` (84 px for the
paper's ImageNet100). The decoded uint8 tensors are cached in ``cache_dir`` under a key made of the
file list, sizes and modification times, so a second run reads one file instead of decoding again.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from learngene_core.data.image_set import ImageSet
from learngene_core.data.splits import SplitFunction, split_function
from learngene_core.errors import DataError
from learngene_core.utils.io import atomic_torch_save

EXTENSIONS = (".jpg", ".jpeg", ".png")


def _list_split(root: Path, split: str) -> dict[str, list[Path]]:
    folder = root / split
    if not folder.is_dir():
        raise DataError(
            f"image folder {root} has no '{split}/' subfolder; expected {root}/{split}/<class>/*.jpg"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image folder {folder} has no class subfolders; expected {folder}/<class>/*.jpg")
    files = {}
    for c in classes:
        imgs = sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in EXTENSIONS)
        if not imgs:
            raise DataError(f"class folder {folder / c} holds no {'/'.join(EXTENSIONS)} images")
        files[c] = imgs
    return files


def _decode(path: Path, size: int) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2 import functional as F

    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as err:
        raise DataError(f"cannot decode image {path} ({err}); remove or replace the file") from None
    if img.shape[-2:] != (size, size):
        img = F.resize(img, [size, size], antialias=True)
    return img


def _cache_key(files: dict[str, dict[str, list[Path]]], size: int) -> str:
    h = hashlib.sha1(f"size={size}".encode())
    for split in ("train", "test"):
        for c, paths in files[split].items():
            for p in paths:
                st = p.stat()
                h.update(f"{split}/{c}/{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_imagefolder(
    root: str | Path,
    image_size: int = 84,
    cache_dir: str | Path | None = None,
    split: str | SplitFunction = "ravi",
    split_file: str | Path | None = None,
    num_threads: int = 8,
) -> ImageSet:
    """``split``: a split name (``ravi``: mini-ImageNet WordNet ids) or a function of the class names."""
    split_groups = split_function(split, split_file)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"image folder not found: {root}; give a folder with train/<class>/ and test/<class>/"
        )
    files = {s: _list_split(root, s) for s in ("train", "test")}
    if list(files["train"]) != list(files["test"]):
        only = sorted(set(files["train"]) ^ set(files["test"]))
        raise DataError(
            f"image folder {root}: train/ and test/ must hold the same classes; differing: {only[:5]}"
        )
    class_names = list(files["train"])
    cache_dir = Path(cache_dir).expanduser() if cache_dir else root / ".learngene-cache"
    cache_file = cache_dir / f"{root.name}-{image_size}px-{_cache_key(files, image_size)}.pt"
    tensors = None
    if cache_file.is_file():
        try:
            tensors = torch.load(cache_file, weights_only=True)
        except Exception:
            tensors = None  # a corrupt cache is rebuilt below
    if tensors is None:
        tensors = {}
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            for split in ("train", "test"):
                paths = [p for c in class_names for p in files[split][c]]
                labels = [i for i, c in enumerate(class_names) for _ in files[split][c]]
                images = list(pool.map(lambda p: _decode(p, image_size), paths))
                tensors[f"x_{split}"] = torch.stack(images)
                tensors[f"y_{split}"] = torch.tensor(labels, dtype=torch.int64)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(tensors, cache_file)
        except OSError as err:
            print(
                f"warning: could not write decode cache {cache_file} ({err}); choose another cache folder",
                flush=True,
            )
    if split_groups is None:
        raise DataError("an image folder needs a named class split: ravi, cifar_fs or from_file")
    return ImageSet(
        name=root.name,
        class_names=class_names,
        groups=split_groups(class_names),
        info={"source": "imagefolder", "path": str(root), "cache": str(cache_file), "pid": os.getpid()},
        **tensors,
    )
