"""Data sources: CIFAR-100 (python-pickle layout), image folders, npz arrays, digits, and the registry.

Every source is exercised on a small copy the test writes itself in the real on-disk layout, so the
same code paths run as on the real data; the real mini-ImageNet npz is used when it is present.
"""

from __future__ import annotations

import json
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learngene_core.data.sources import cifar100 as cifar_mod
from learngene_core.data.sources import imagefolder as folder_mod
from learngene_core.data.sources.cifar100 import load_cifar100
from learngene_core.data.sources.digits import load_digits
from learngene_core.data.sources.imagefolder import load_imagefolder
from learngene_core.data.sources.npz import load_npz
from learngene_core.data.splits import (
    CIFAR_FS_NOVEL,
    CIFAR_FS_OPEN_WORLD,
    cifar_fs_groups,
    groups_from_names,
)
from learngene_core.errors import ConfigError, DataError


def source_from_config(data: str, **values):
    """The ImageSet that the data config ``data`` (with ``data.<key>=value`` overrides) builds, as the pipeline does."""
    from experiments.pipeline.objects import build
    from tests.conftest import compose

    overrides = [f"data={data}"] + [f"data.{k}={'null' if v is None else v}" for k, v in values.items()]
    return build(compose(overrides).data.source, "data.source")


# ---------------------------------------------------------------------------------------------------
# CIFAR-100
# ---------------------------------------------------------------------------------------------------

# The 100 CIFAR-100 fine label names, in the order of the real meta file (label index = position).
CIFAR100_FINE_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

# LEARNGENE.md, "Data protocol": the CIFAR-FS split by name (written out here, independent of splits.py)
SPEC_NOVEL = {
    "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain", "poppy",
    "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman", "worm",
}  # fmt: skip
SPEC_OPEN_WORLD = {
    "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp",
    "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor",
}  # fmt: skip


def _cifar_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Rows of 3072 bytes (R plane, G plane, B plane) whose channels are distinguishable."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, :1024] //= 4  # R plane in 0..63
    data[:, 2048:] = data[:, 2048:] // 4 + 192  # B plane in 192..255
    labels = [i % 100 for i in range(n)]
    return data, labels


def write_fake_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """A copy of CIFAR-100 in torchvision's python-pickle layout: root/cifar-100-python/{train,test,meta}."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        data, labels = _cifar_images(n, seed)
        entry = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": labels,
            "coarse_labels": [lab // 5 for lab in labels],
            "data": data,
        }
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {"fine_label_names": CIFAR100_FINE_NAMES, "coarse_label_names": [f"s{i}" for i in range(20)]}, f
        )
    return folder


def test_cifar100_names_list_is_the_real_one():
    assert len(CIFAR100_FINE_NAMES) == 100 == len(set(CIFAR100_FINE_NAMES))
    assert sorted(CIFAR100_FINE_NAMES) == CIFAR100_FINE_NAMES  # the real meta file is alphabetical
    assert set(CIFAR100_FINE_NAMES) >= SPEC_NOVEL | SPEC_OPEN_WORLD


def test_cifar100_loads_pickle_layout(tmp_path):
    write_fake_cifar100(tmp_path)
    s = load_cifar100(tmp_path, download=False, verify_checksum=False)
    assert s.x_train.shape == (200, 3, 32, 32) and s.x_test.shape == (100, 3, 32, 32)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64 and s.y_test.dtype == torch.int64
    assert s.class_names == CIFAR100_FINE_NAMES
    data, labels = _cifar_images(200, 0)
    assert s.y_train.tolist() == labels
    # pixel layout: row = R plane, G plane, B plane, each row-major 32x32
    assert torch.equal(s.x_train, torch.from_numpy(data.reshape(-1, 3, 32, 32)))
    assert int(s.x_train[:, 0].max()) < 64 and int(s.x_train[:, 2].min()) >= 192
    test_data, test_labels = _cifar_images(100, 1)
    assert s.y_test.tolist() == test_labels
    assert torch.equal(s.x_test, torch.from_numpy(test_data.reshape(-1, 3, 32, 32)))


def test_cifar100_groups_are_exactly_cifar_fs(tmp_path):
    write_fake_cifar100(tmp_path)
    s = load_cifar100(tmp_path, download=False, verify_checksum=False)
    names = {g: {s.class_names[i] for i in idx} for g, idx in s.groups.items()}
    assert names["novel"] == SPEC_NOVEL and len(s.groups["novel"]) == 20
    assert names["open_world"] == SPEC_OPEN_WORLD and len(s.groups["open_world"]) == 16
    assert names["base"] == set(CIFAR100_FINE_NAMES) - SPEC_NOVEL - SPEC_OPEN_WORLD
    assert len(s.groups["base"]) == 64
    all_idx = s.groups["base"] + s.groups["open_world"] + s.groups["novel"]
    assert sorted(all_idx) == list(range(100))  # disjoint and complete
    for idx in s.groups.values():
        assert idx == sorted(idx)
    # splits.py agrees with the spec
    assert set(CIFAR_FS_NOVEL) == SPEC_NOVEL and set(CIFAR_FS_OPEN_WORLD) == SPEC_OPEN_WORLD


def test_cifar100_through_registry_with_resize(tmp_path):
    write_fake_cifar100(tmp_path)
    s = source_from_config(
        "cifar100", root=tmp_path, download=False, verify_checksum=False, image_size=16, split="cifar_fs"
    )
    assert s.x_train.shape == (200, 3, 16, 16) and s.x_train.dtype == torch.uint8
    assert len(s.groups["novel"]) == 20 and len(s.groups["open_world"]) == 16


def test_cifar100_checksum_mismatch(tmp_path):
    folder = write_fake_cifar100(tmp_path)
    with pytest.raises(DataError, match="checksum") as err:
        load_cifar100(tmp_path, download=False, verify_checksum=True)
    assert str(folder) in str(err.value)


def test_cifar100_missing_copy_without_download(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_cifar100(root, download=False, verify_checksum=False)
    assert str(root) in str(err.value) and "root" in str(err.value)
    # through the pipeline, the message names the config keys that set the source's parameters
    from experiments.pipeline.context import RunContext
    from tests.conftest import compose

    cfg = compose(["data=cifar100", f"data.root={root}", "data.download=false"], tmp_path)
    with pytest.raises(DataError, match=r"in the config: root is data.root, download is data.download"):
        _ = RunContext(cfg, tmp_path).image_set


def test_cifar100_partial_copy_counts_as_missing(tmp_path):
    folder = write_fake_cifar100(tmp_path)
    (folder / "test").unlink()
    with pytest.raises(DataError, match="not found"):
        load_cifar100(tmp_path, download=False, verify_checksum=False)


def test_cifar100_failed_download_is_a_data_error(tmp_path, monkeypatch):
    calls = []

    def no_network(url, download_root, **kw):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar_mod, "download_and_extract_archive", no_network)
    root = tmp_path / "cifar"
    with pytest.raises(DataError) as err:
        load_cifar100(root, download=True, verify_checksum=True)
    msg = str(err.value)
    assert calls, "the download was not attempted"
    assert str(root) in msg
    assert "cifar-100-python" in msg and "root" in msg  # says how to point at a copy
    assert "\n" not in msg  # one line
    assert err.value.__suppress_context__  # no chained urllib traceback


def test_cifar100_present_copy_is_not_downloaded(tmp_path, monkeypatch):
    write_fake_cifar100(tmp_path)

    def boom(*a, **kw):
        raise AssertionError("download attempted although the copy is present")

    monkeypatch.setattr(cifar_mod, "download_and_extract_archive", boom)
    s = load_cifar100(tmp_path, download=True, verify_checksum=False)
    assert len(s.x_train) == 200


def test_cifar100_unreadable_pickle(tmp_path):
    folder = write_fake_cifar100(tmp_path)
    (folder / "meta").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="unreadable"):
        load_cifar100(tmp_path, download=False, verify_checksum=False)


# ---------------------------------------------------------------------------------------------------
# image folder
# ---------------------------------------------------------------------------------------------------

FOLDER_CLASSES = ["ant", "bee", "cat", "dog", "eel"]  # sorted: the expected class order
SIZES = [(40, 30), (30, 40), (16, 16), (50, 20)]


def _colour(c: int) -> tuple[int, int, int]:
    return (20 + 50 * c, 230 - 40 * c, 60 + 30 * c)


def write_image_folder(root: Path, n_train: int = 3, n_test: int = 2) -> Path:
    """root/{train,test}/<class>/ with PNG and JPEG files of various sizes; each class a solid colour."""
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(FOLDER_CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                w, h = SIZES[(c + i) % len(SIZES)]
                img = Image.new("RGB", (w, h), _colour(c))
                ext = "png" if i % 2 == 0 else "jpg"
                img.save(d / f"{i:03d}.{ext}", quality=95) if ext == "jpg" else img.save(d / f"{i:03d}.{ext}")
            (d / "notes.txt").write_text("not an image; must be ignored")
    return root


def _split(names):
    return groups_from_names(names, ["cat"], ["dog", "eel"], "test")


def _mean_colour(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(dim=(-2, -1))


def test_imagefolder_loads_and_resizes(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    s = load_imagefolder(root, image_size=16, cache_dir=tmp_path / "cache", split=_split)
    assert s.class_names == FOLDER_CLASSES
    assert s.x_train.shape == (15, 3, 16, 16) and s.x_test.shape == (10, 3, 16, 16)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64
    assert s.y_train.tolist() == [c for c in range(5) for _ in range(3)]
    assert s.y_test.tolist() == [c for c in range(5) for _ in range(2)]
    assert s.groups == {"base": [0, 1], "open_world": [2], "novel": [3, 4]}
    # every image carries its class's colour (labels line up with images; png and jpg both decoded as RGB)
    for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)):
        expected = torch.tensor([_colour(int(c)) for c in y], dtype=torch.float32)
        assert torch.allclose(_mean_colour(x), expected, atol=3.0)


def test_imagefolder_grayscale_and_rgba_become_rgb(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    Image.new("L", (20, 24), 77).save(root / "train" / "ant" / "010.png")
    Image.new("RGBA", (24, 20), (10, 200, 30, 128)).save(root / "train" / "bee" / "010.png")
    s = load_imagefolder(root, image_size=16, cache_dir=tmp_path / "cache", split=_split)
    assert s.x_train.shape == (17, 3, 16, 16)
    gray = s.x_train[3]  # ant: 000.png 001.jpg 002.png 010.png
    assert s.y_train[3] == 0 and torch.all(gray == 77)
    rgba = s.x_train[7]  # bee: 000 001 002 010
    assert s.y_train[7] == 1 and _mean_colour(rgba).round().tolist() == [10.0, 200.0, 30.0]


def test_imagefolder_second_load_reads_cache(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "tree")
    first = load_imagefolder(root, image_size=16, split=_split)
    cache = Path(first.info["cache"])
    assert cache.is_file() and cache.parent == root / ".learngene-cache"

    def no_decode(path, size):
        raise AssertionError(f"decoded {path} although a valid cache exists")

    monkeypatch.setattr(folder_mod, "_decode", no_decode)
    second = load_imagefolder(root, image_size=16, split=_split)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test, second.x_test)
    assert torch.equal(first.y_train, second.y_train) and torch.equal(first.y_test, second.y_test)
    assert second.class_names == first.class_names


def _counting_decode(monkeypatch) -> list:
    real_decode = folder_mod._decode
    decoded = []

    def counting(path, size):
        decoded.append(path)
        return real_decode(path, size)

    monkeypatch.setattr(folder_mod, "_decode", counting)
    return decoded


def test_imagefolder_changed_file_invalidates_cache(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "tree")
    cache_dir = tmp_path / "cache"
    target = root / "train" / "bee" / "000.png"
    # uncompressed PNGs of equal size: the file length stays the same, only content and mtime change
    Image.new("RGB", (40, 30), (1, 2, 3)).save(target, compress_level=0)
    st = target.stat()
    decoded = _counting_decode(monkeypatch)
    first = load_imagefolder(root, image_size=16, cache_dir=cache_dir, split=_split)
    assert len(decoded) == 25

    decoded.clear()
    Image.new("RGB", (40, 30), (255, 0, 255)).save(target, compress_level=0)
    assert target.stat().st_size == st.st_size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = load_imagefolder(root, image_size=16, cache_dir=cache_dir, split=_split)
    assert len(decoded) == 25  # the stale cache was not used
    assert second.info["cache"] != first.info["cache"]
    assert _mean_colour(second.x_train[3]).round().tolist() == [255.0, 0.0, 255.0]
    assert torch.equal(second.x_train[:3], first.x_train[:3])

    decoded.clear()  # a changed length with the mtime put back is also noticed
    Image.new("RGB", (40, 31), (0, 255, 0)).save(target, compress_level=0)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = load_imagefolder(root, image_size=16, cache_dir=cache_dir, split=_split)
    assert len(decoded) == 25
    assert _mean_colour(third.x_train[3]).round().tolist() == [0.0, 255.0, 0.0]

    decoded.clear()  # another image size is another cache entry
    fourth = load_imagefolder(root, image_size=8, cache_dir=cache_dir, split=_split)
    assert len(decoded) == 25 and fourth.x_train.shape == (15, 3, 8, 8)

    decoded.clear()  # an added file is noticed too
    Image.new("RGB", (20, 20), _colour(0)).save(root / "test" / "ant" / "100.png")
    fifth = load_imagefolder(root, image_size=16, cache_dir=cache_dir, split=_split)
    assert len(decoded) == 26 and fifth.x_test.shape == (11, 3, 16, 16)


def test_imagefolder_corrupt_cache_is_rebuilt(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    first = load_imagefolder(root, image_size=16, split=_split)
    Path(first.info["cache"]).write_bytes(b"garbage")
    second = load_imagefolder(root, image_size=16, split=_split)
    assert torch.equal(first.x_train, second.x_train)


def test_imagefolder_split_from_file_via_registry(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"open_world": ["ant"], "novel": ["cat", "eel"]}))
    cfg = {"path": root, "image_size": 16, "cache_dir": tmp_path / "cache"}
    s = source_from_config("imagefolder", **cfg, split="from_file", split_file=split_file)
    assert s.groups == {"base": [1, 3], "open_world": [0], "novel": [2, 4]}
    assert s.x_train.shape == (15, 3, 16, 16)
    # the imagefolder default split is Ravi's wnids, which these classes are not: a clear error
    with pytest.raises(DataError, match="from_file"):
        source_from_config("imagefolder", **cfg, split="ravi")


def test_imagefolder_missing_root(tmp_path):
    root = tmp_path / "absent"
    with pytest.raises(DataError) as err:
        load_imagefolder(root, image_size=16, split=_split)
    assert str(root) in str(err.value)


def test_imagefolder_missing_test_folder(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    for p in sorted((root / "test").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (root / "test").rmdir()
    with pytest.raises(DataError, match="test/"):
        load_imagefolder(root, image_size=16, split=_split)


def test_imagefolder_class_mismatch(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    (root / "test" / "eel").rename(root / "test" / "fox")
    with pytest.raises(DataError, match="same classes") as err:
        load_imagefolder(root, image_size=16, split=_split)
    assert "eel" in str(err.value) and "fox" in str(err.value)


def test_imagefolder_empty_class_folder(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    empty = root / "train" / "fox"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        load_imagefolder(root, image_size=16, split=_split)
    assert str(empty) in str(err.value)


def test_imagefolder_undecodable_file(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    bad = root / "test" / "cat" / "999.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"definitely not a jpeg" * 10)
    with pytest.raises(DataError, match="cannot decode") as err:
        load_imagefolder(root, image_size=16, cache_dir=tmp_path / "cache", split=_split)
    assert str(bad) in str(err.value)
    assert not any((tmp_path / "cache").glob("*.pt"))  # no half-built cache left behind


def test_imagefolder_needs_a_split(tmp_path):
    root = write_image_folder(tmp_path / "tree")
    with pytest.raises(DataError, match="split"):
        load_imagefolder(root, image_size=16, cache_dir=tmp_path / "cache", split=None)


# ---------------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------------

NPZ_CODES = [0, 2, 0, 1, 0, 2]


def npz_arrays(n_classes: int = 6, per_train: int = 4, per_test: int = 2, size: int = 8) -> dict:
    """Arrays in the format of shared/data/README.md: HWC uint8, int16 labels, names, split codes."""
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(n_classes), per_train).astype(np.int16)
    y_test = np.repeat(np.arange(n_classes), per_test).astype(np.int16)
    return {
        "x_train": rng.integers(0, 256, (len(y_train), size, size, 3), dtype=np.uint8),
        "y_train": y_train,
        "x_test": rng.integers(0, 256, (len(y_test), size, size, 3), dtype=np.uint8),
        "y_test": y_test,
        "class_names": np.array([f"n{i:08d}" for i in range(n_classes)]),
        "split": np.array(NPZ_CODES[:n_classes], dtype=np.int8),
        "split_names": np.array(["base", "open_world", "novel"]),
    }


def write_npz(path: Path, **changes) -> Path:
    arrays = npz_arrays()
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez_compressed(path, **arrays)
    return path


def test_npz_loads_and_converts_to_chw(tmp_path):
    path = write_npz(tmp_path / "small.npz")
    a = npz_arrays()
    s = load_npz(path)
    assert s.x_train.shape == (24, 3, 8, 8) and s.x_test.shape == (12, 3, 8, 8)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64 and s.y_test.dtype == torch.int64
    assert torch.equal(s.x_train, torch.from_numpy(a["x_train"]).permute(0, 3, 1, 2))
    assert torch.equal(s.x_test, torch.from_numpy(a["x_test"]).permute(0, 3, 1, 2))
    assert s.y_train.tolist() == a["y_train"].tolist() and s.y_test.tolist() == a["y_test"].tolist()
    assert s.class_names == [f"n{i:08d}" for i in range(6)]
    assert s.groups == {"base": [0, 2, 4], "open_world": [3], "novel": [1, 5]}


def test_npz_resize_and_registry_split_override(tmp_path):
    path = write_npz(tmp_path / "small.npz")
    s = load_npz(path, image_size=16)
    assert s.x_train.shape == (24, 3, 16, 16) and s.x_train.dtype == torch.uint8
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"open_world": ["n00000000"], "novel": ["n00000004", "n00000005"]}))
    s2 = source_from_config("npz", path=path, image_size=8, split="from_file", split_file=split_file)
    assert s2.groups == {"base": [1, 2, 3], "open_world": [0], "novel": [4, 5]}


def test_npz_grayscale_nhw(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
    s = load_npz(write_npz(tmp_path / "g.npz", x_train=gray, x_test=gray[:12]))
    assert s.x_train.shape == (24, 1, 8, 8)
    assert torch.equal(s.x_train[:, 0], torch.from_numpy(gray))


def test_npz_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(DataError) as err:
        load_npz(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("key", ["x_train", "y_test", "class_names"])
def test_npz_missing_key_is_named(tmp_path, key):
    path = write_npz(tmp_path / "m.npz", **{key: None})
    with pytest.raises(DataError, match="missing keys") as err:
        load_npz(path)
    assert repr(key) in str(err.value)


def test_npz_missing_split_key(tmp_path):
    path = write_npz(tmp_path / "m.npz", split=None)
    with pytest.raises(DataError, match="'split'"):
        load_npz(path)
    # an explicit split function makes it loadable
    s = load_npz(path, split=lambda names: groups_from_names(names, [], names[:2], "explicit"))
    assert s.groups["novel"] == [0, 1]


def test_npz_mismatched_lengths(tmp_path):
    path = write_npz(tmp_path / "m.npz", y_train=np.zeros(23, dtype=np.int16))
    with pytest.raises(DataError, match="x_train has 24 images but y_train has 23"):
        load_npz(path)


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        ([0, 2, 0, 1, 0, 5], r"split codes \[5\]"),
        ([0, 2, 0, 1, 0, -1], r"split codes \[-1\]"),
        ([0, 2, 0, 1, 0], "5 entries for 6 classes"),
        ([0, 0, 0, 1, 0, 1], "'novel' is empty"),
    ],
)
def test_npz_bad_split_codes(tmp_path, codes, match):
    path = write_npz(tmp_path / "m.npz", split=np.array(codes, dtype=np.int8))
    with pytest.raises(DataError, match=match):
        load_npz(path)


def test_npz_labels_out_of_range_and_wrong_dtype(tmp_path):
    y = np.repeat(np.arange(6), 4).astype(np.int16)
    y[0] = 6
    with pytest.raises(DataError, match="6 class names"):
        load_npz(write_npz(tmp_path / "a.npz", y_train=y))
    x = np.zeros((24, 8, 8, 3), dtype=np.float32)
    with pytest.raises(DataError, match="uint8"):
        load_npz(write_npz(tmp_path / "b.npz", x_train=x))


def test_npz_not_an_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_npz(path)
    text = tmp_path / "notes.npz"
    text.write_text("x_train,y_train\n1,2\n")  # a text file renamed .npz: no hint about pickles
    with pytest.raises(DataError, match=r"not an \.npz archive") as err:
        load_npz(text)
    assert "pickle" not in str(err.value)


def test_real_cifar100_npz_has_the_cifar_fs_split(cifar_npz):
    s = load_npz(cifar_npz)
    assert s.x_train.shape == (50000, 3, 32, 32) and s.x_test.shape == (10000, 3, 32, 32)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64
    assert s.class_names == CIFAR100_FINE_NAMES
    assert [len(s.groups[g]) for g in ("base", "open_world", "novel")] == [64, 16, 20]
    names = {g: {s.class_names[i] for i in idx} for g, idx in s.groups.items()}
    assert names["novel"] == SPEC_NOVEL and names["open_world"] == SPEC_OPEN_WORLD
    assert s.groups == cifar_fs_groups(s.class_names)  # the file's codes and splits.py agree
    assert torch.bincount(s.y_train, minlength=100).tolist() == [500] * 100
    assert torch.bincount(s.y_test, minlength=100).tolist() == [100] * 100


# ---------------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=32)


def test_digits_shapes_and_groups(digits):
    s = digits
    assert s.class_names == [str(i) for i in range(10)]
    assert s.x_train.shape[1:] == (3, 32, 32) and s.x_test.shape[1:] == (3, 32, 32)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64
    assert len(s.x_train) + len(s.x_test) == 1797
    assert s.groups == {"base": [0, 1, 2, 3, 4], "open_world": [5], "novel": [6, 7, 8, 9]}
    assert set(s.y_train.tolist()) == set(range(10)) == set(s.y_test.tolist())
    # about 80 / 20 per class
    for c in range(10):
        n_tr, n_te = int((s.y_train == c).sum()), int((s.y_test == c).sum())
        assert abs(n_tr / (n_tr + n_te) - 0.8) < 0.02
    # grayscale replicated to 3 channels, real content (not blank)
    assert torch.equal(s.x_train[:, 0], s.x_train[:, 1]) and torch.equal(s.x_train[:, 0], s.x_train[:, 2])
    assert int(s.x_train.max()) > 200 and int(s.x_train.min()) == 0


def test_digits_deterministic(digits):
    again = load_digits(image_size=32)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(digits, k), getattr(again, k))
    small = load_digits(image_size=8)
    assert small.x_train.shape[1:] == (3, 8, 8) and torch.equal(small.y_train, digits.y_train)


# ---------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------


def test_a_data_source_that_cannot_be_imported_is_named(tmp_path):
    from experiments.pipeline.config_check import check_config
    from tests.conftest import compose

    cfg = compose(["data.source._target_=learngene_core.data.sources.mnist.load_mnist"], tmp_path)
    with pytest.raises(ConfigError, match=r"data\.source\._target_=.*mnist.*cannot be imported"):
        check_config(cfg)


def test_split_from_file_needs_a_split_file():
    with pytest.raises(DataError, match="split file"):
        load_digits(split="from_file")
    with pytest.raises(DataError, match="split file"):
        source_from_config("digits", split="from_file", split_file=None)


def test_unknown_split_and_bad_split_file(tmp_path):
    with pytest.raises(DataError, match="from_file"):
        load_digits(split="random")
    bad = tmp_path / "split.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="split file"):
        load_digits(split="from_file", split_file=bad)
    bad.write_text(json.dumps({"open_world": ["5"]}))  # no 'novel'
    with pytest.raises(DataError, match="novel"):
        load_digits(split="from_file", split_file=bad)


def test_registry_digits_with_split_file(tmp_path):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"open_world": ["0"], "novel": ["7", "8", "9"]}))
    s = source_from_config("digits", image_size=16, split="from_file", split_file=split_file)
    assert s.groups == {"base": [1, 2, 3, 4, 5, 6], "open_world": [0], "novel": [7, 8, 9]}
    assert s.x_train.shape[1:] == (3, 16, 16)
