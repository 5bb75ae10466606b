"""Pick a data source and a class split from the ``data`` config node."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from learngene.datamodules.image_set import ImageSet
from learngene.datamodules.splits import cifar_fs_groups, groups_from_names, ravi_groups
from learngene.errors import ConfigError, DataError

SOURCES = ("digits", "cifar100", "npz", "imagefolder")
SPLITS = ("default", "cifar_fs", "ravi", "from_file")


def _split_from_file(path: str | None) -> Callable[[list[str]], dict[str, list[int]]]:
    if not path:
        raise ConfigError(
            "data.split=from_file needs data.split_file: a JSON file {open_world: [...], novel: [...]}"
        )
    p = Path(path).expanduser()
    try:
        spec = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"data.split_file={p} is not a readable JSON file ({err})") from None
    if not isinstance(spec, dict) or "novel" not in spec:
        raise DataError(f"data.split_file={p} must hold {{'open_world': [names], 'novel': [names]}}")
    return lambda names: groups_from_names(names, spec.get("open_world", []), spec["novel"], f"from_file:{p}")


def split_function(
    split: str, split_file: str | None = None
) -> Callable[[list[str]], dict[str, list[int]]] | None:
    """The class-group function for ``data.split``; None means the source's own default."""
    if split == "default":
        return None
    if split == "cifar_fs":
        return cifar_fs_groups
    if split == "ravi":
        return ravi_groups
    if split == "from_file":
        return _split_from_file(split_file)
    raise ConfigError(f"data.split={split!r} is not a split; valid: {list(SPLITS)}")


def load_image_set(data: Mapping[str, Any]) -> ImageSet:
    """Load the data source the ``data`` config node describes (see experiments/configs/data/)."""
    source = data.get("source")
    size = int(data.get("image_size") or 32)
    groups = split_function(data.get("split", "default"), data.get("split_file"))
    if source == "digits":
        from learngene.datamodules.sources.digits import load_digits

        image_set = load_digits(image_size=size)
        if groups is not None:
            image_set.set_groups(groups(image_set.class_names))
        return image_set
    if source == "cifar100":
        from learngene.datamodules.sources.cifar100 import load_cifar100

        image_set = load_cifar100(
            data["root"], download=bool(data.get("download", True)),
            verify_checksum=bool(data.get("verify_checksum", True)), image_size=size,
        )  # fmt: skip
        if groups is not None:
            image_set.set_groups(groups(image_set.class_names))
        return image_set
    if source == "npz":
        from learngene.datamodules.sources.npz import load_npz

        return load_npz(data["path"], image_size=size, split_groups=groups)
    if source == "imagefolder":
        from learngene.datamodules.sources.imagefolder import load_imagefolder

        return load_imagefolder(
            data["path"], image_size=size, cache_dir=data.get("cache_dir"), split_groups=groups or ravi_groups
        )
    raise ConfigError(f"data.source={source!r} is not a data source; valid: {list(SOURCES)}")
