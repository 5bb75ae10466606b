"""Class groups (base / open_world / novel) for every supported dataset.

- CIFAR-100: the CIFAR-FS split (Bertinetto et al. 2019): 64 base, 16 open-world (CIFAR-FS validation),
  20 novel (CIFAR-FS test), matched by fine-label name.
- mini-ImageNet / ImageNet100: the Ravi & Larochelle split (64 meta-train, 16 meta-val, 20 meta-test),
  matched by WordNet id.
- digits (scikit-learn, 10 classes): base 0-4, open-world 5, novel 6-9. Documented in docs/data.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from learngene_core.errors import DataError

GROUPS = ("base", "open_world", "novel")

CIFAR_FS_NOVEL = (
    "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain", "poppy",
    "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman", "worm",
)  # fmt: skip
CIFAR_FS_OPEN_WORLD = (
    "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp",
    "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor",
)  # fmt: skip

RAVI_OPEN_WORLD = (
    "n01855672", "n02091244", "n02114548", "n02138441", "n02174001", "n02950826", "n02971356", "n02981792",
    "n03075370", "n03417042", "n03535780", "n03584254", "n03770439", "n03773504", "n03980874", "n09256479",
)  # fmt: skip
RAVI_NOVEL = (
    "n01930112", "n01981276", "n02099601", "n02110063", "n02110341", "n02116738", "n02129165", "n02219486",
    "n02443484", "n02871525", "n03127925", "n03146219", "n03272010", "n03544143", "n03775546", "n04146614",
    "n04149813", "n04418357", "n04522168", "n07613480",
)  # fmt: skip
RAVI_BASE = (
    "n01532829", "n01558993", "n01704323", "n01749939", "n01770081", "n01843383", "n01910747", "n02074367",
    "n02089867", "n02091831", "n02101006", "n02105505", "n02108089", "n02108551", "n02108915", "n02111277",
    "n02113712", "n02120079", "n02165456", "n02457408", "n02606052", "n02687172", "n02747177", "n02795169",
    "n02823428", "n02966193", "n03017168", "n03047690", "n03062245", "n03207743", "n03220513", "n03337140",
    "n03347037", "n03400231", "n03476684", "n03527444", "n03676483", "n03838899", "n03854065", "n03888605",
    "n03908618", "n03924679", "n03998194", "n04067472", "n04243546", "n04251144", "n04258138", "n04275548",
    "n04296562", "n04389033", "n04435653", "n04443257", "n04509417", "n04515003", "n04596742", "n04604644",
    "n04612504", "n06794110", "n07584110", "n07697537", "n07747607", "n09246464", "n13054560", "n13133613",
)  # fmt: skip

DIGITS_GROUPS = {"base": (0, 1, 2, 3, 4), "open_world": (5,), "novel": (6, 7, 8, 9)}

SPLITS = ("default", "cifar_fs", "ravi", "from_file")
SplitFunction = Callable[[list[str]], dict[str, list[int]]]


def groups_from_names(
    class_names: Sequence[str], open_world: Sequence[str], novel: Sequence[str], split_name: str
) -> dict[str, list[int]]:
    """Assign class indices to groups by name: the named open-world and novel classes, base = the rest."""
    index = {name: i for i, name in enumerate(class_names)}
    missing = [n for n in (*open_world, *novel) if n not in index]
    if missing:
        raise DataError(
            f"split '{split_name}': classes {missing[:5]}{' ...' if len(missing) > 5 else ''} are not in the "
            f"dataset's {len(class_names)} classes; use a dataset with these classes or data.split=from_file"
        )
    ow = sorted(index[n] for n in open_world)
    nv = sorted(index[n] for n in novel)
    taken = set(ow) | set(nv)
    base = [i for i in range(len(class_names)) if i not in taken]
    return {"base": base, "open_world": ow, "novel": nv}


def groups_from_codes(codes: Sequence[int]) -> dict[str, list[int]]:
    """Groups from a per-class code array (0 = base, 1 = open_world, 2 = novel), as stored in the npz."""
    bad = sorted({int(c) for c in codes} - {0, 1, 2})
    if bad:
        raise DataError(f"split codes {bad} are invalid; valid codes are 0 (base), 1 (open_world), 2 (novel)")
    return {g: [i for i, c in enumerate(codes) if int(c) == k] for k, g in enumerate(GROUPS)}


def cifar_fs_groups(class_names: Sequence[str]) -> dict[str, list[int]]:
    return groups_from_names(class_names, CIFAR_FS_OPEN_WORLD, CIFAR_FS_NOVEL, "cifar_fs")


def ravi_groups(class_names: Sequence[str]) -> dict[str, list[int]]:
    return groups_from_names(class_names, RAVI_OPEN_WORLD, RAVI_NOVEL, "ravi")


def validate_groups(groups: dict[str, list[int]], num_classes: int) -> None:
    """Groups must be disjoint, in range, and the base and novel groups non-empty."""
    seen: dict[int, str] = {}
    for g in GROUPS:
        if g not in groups:
            raise DataError(f"class groups lack '{g}'; valid groups are {list(GROUPS)}")
        for c in groups[g]:
            if not 0 <= c < num_classes:
                raise DataError(f"class index {c} in group '{g}' is outside 0..{num_classes - 1}")
            if c in seen:
                raise DataError(f"class {c} is in both '{seen[c]}' and '{g}'; class groups must be disjoint")
            seen[c] = g
    for g in ("base", "novel"):
        if not groups[g]:
            raise DataError(f"class group '{g}' is empty; it needs at least one class")


def split_from_file(path: str | Path | None) -> SplitFunction:
    """Groups named in a JSON file ``{"open_world": [names], "novel": [names]}`` (base = the rest)."""
    if not path:
        raise DataError("split 'from_file' needs a split file: a JSON file {open_world: [...], novel: [...]}")
    p = Path(path).expanduser()
    try:
        spec = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"split file {p} is not a readable JSON file ({err})") from None
    if not isinstance(spec, dict) or "novel" not in spec:
        raise DataError(f"split file {p} must hold {{'open_world': [names], 'novel': [names]}}")
    return lambda names: groups_from_names(names, spec.get("open_world", []), spec["novel"], f"from_file:{p}")


def split_function(split: str | SplitFunction, split_file: str | Path | None = None) -> SplitFunction | None:
    """The class-group function for a split name (or a callable, returned as is); None: the source's own."""
    if callable(split):
        return split
    if split == "default":
        return None
    if split == "cifar_fs":
        return cifar_fs_groups
    if split == "ravi":
        return ravi_groups
    if split == "from_file":
        return split_from_file(split_file)
    raise DataError(
        f"split {split!r} is not a split; valid: {list(SPLITS)} (or a function of the class names)"
    )
