"""Class splits, the collective task stream, target tasks, batch augmentation and the in-memory loaders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_image_set

from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.loaders import TaskBatchLoader, TensorBatchLoader
from learngene_core.data.splits import groups_from_codes, groups_from_names, validate_groups
from learngene_core.data.target_tasks import make_episodes, make_target_task_grid, make_target_tasks
from learngene_core.data.task_stream import head_order, make_task_stream, train_subset
from learngene_core.errors import DataError

BASE = list(range(10, 30))  # 20 base classes (not starting at 0, so index/value mix-ups show)
OPEN_WORLD = list(range(40, 48))

# ---------------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------------


def test_groups_from_names_and_codes():
    names = ["a", "b", "c", "d", "e"]
    assert groups_from_names(names, ["d"], ["b", "e"], "t") == {
        "base": [0, 2],
        "open_world": [3],
        "novel": [1, 4],
    }
    with pytest.raises(DataError, match="'zz'"):
        groups_from_names(names, [], ["zz"], "t")
    assert groups_from_codes([2, 0, 1, 0]) == {"base": [1, 3], "open_world": [2], "novel": [0]}


def test_validate_groups_rejects_overlap_range_and_empty():
    with pytest.raises(DataError, match="both"):
        validate_groups({"base": [0, 1], "open_world": [1], "novel": [2]}, 3)
    with pytest.raises(DataError, match="outside"):
        validate_groups({"base": [0, 1], "open_world": [], "novel": [3]}, 3)
    with pytest.raises(DataError, match="'base' is empty"):
        validate_groups({"base": [], "open_world": [], "novel": [0]}, 3)
    with pytest.raises(DataError, match="lack 'open_world'"):
        validate_groups({"base": [0], "novel": [1]}, 3)


# ---------------------------------------------------------------------------------------------------
# collective task stream
# ---------------------------------------------------------------------------------------------------


def test_task_stream_is_seeded():
    a = make_task_stream(BASE, n_tasks=8, classes_per_task=5, seed=3)
    b = make_task_stream(BASE, n_tasks=8, classes_per_task=5, seed=3)
    c = make_task_stream(BASE, n_tasks=8, classes_per_task=5, seed=4)
    assert a == b
    assert [t.classes for t in a] != [t.classes for t in c]
    assert [t.index for t in a] == list(range(8))
    # a longer stream starts with the same tasks (task t does not depend on n_tasks)
    assert make_task_stream(BASE, n_tasks=12, classes_per_task=5, seed=3)[:8] == a


def test_task_stream_classes_distinct_and_from_base():
    tasks = make_task_stream(BASE, n_tasks=30, classes_per_task=5, seed=0, open_world=OPEN_WORLD)
    for t in tasks:
        assert len(t.classes) == 5 == len(set(t.classes))
        assert set(t.classes) <= set(BASE)
        assert all(isinstance(c, int) for c in t.classes)
    seen = [c for t in tasks for c in t.classes]
    assert len(set(seen)) < len(seen)  # replacement=True (the paper): classes recur across tasks
    order = head_order(tasks)
    assert len(order) == len(set(seen)) and order[:5] == list(tasks[0].classes)


def test_task_stream_without_replacement():
    tasks = make_task_stream(BASE, n_tasks=4, classes_per_task=5, seed=1, replacement=False)
    seen = [c for t in tasks for c in t.classes]
    assert len(seen) == len(set(seen)) == 20 and set(seen) == set(BASE)
    with pytest.raises(DataError) as err:
        make_task_stream(BASE, n_tasks=5, classes_per_task=5, seed=1, replacement=False)
    msg = str(err.value)
    assert "replacement" in msg and "25" in msg and "20" in msg


def test_task_stream_too_many_classes_per_task():
    with pytest.raises(DataError, match="at most 20"):
        make_task_stream(BASE, n_tasks=2, classes_per_task=21, seed=0)
    with pytest.raises(DataError, match="n_tasks"):
        make_task_stream(BASE, n_tasks=0, classes_per_task=5, seed=0)


@pytest.mark.parametrize("replacement", [True, False])
def test_open_world_enters_late(replacement):
    enters = 3
    n_tasks = 5 if not replacement else 12
    tasks = make_task_stream(
        BASE, n_tasks=n_tasks, classes_per_task=5, seed=0, replacement=replacement,
        open_world=OPEN_WORLD, open_world_enters_at=enters,
    )  # fmt: skip
    for t in tasks[:enters]:
        assert not set(t.classes) & set(OPEN_WORLD), f"open-world class in task {t.index} before {enters}"
    later = {c for t in tasks[enters:] for c in t.classes}
    assert later & set(OPEN_WORLD)
    assert later <= set(BASE) | set(OPEN_WORLD)
    if not replacement:
        seen = [c for t in tasks for c in t.classes]
        assert len(seen) == len(set(seen))


def test_train_subset():
    idx = {c: np.arange(c * 100, c * 100 + 30 + c) for c in range(4)}
    assert train_subset(idx, None, seed=0) is idx
    a = train_subset(idx, 10, seed=0)
    assert a.keys() == idx.keys()
    for c, sub in a.items():
        assert len(sub) == 10 and len(set(sub.tolist())) == 10
        assert set(sub.tolist()) <= set(idx[c].tolist()) and list(sub) == sorted(sub)
    b = train_subset(idx, 10, seed=0)
    assert all(np.array_equal(a[c], b[c]) for c in idx)
    other = train_subset(idx, 10, seed=1)
    assert any(not np.array_equal(a[c], other[c]) for c in idx)
    with pytest.raises(DataError) as err:
        train_subset(idx, 31, seed=0)
    assert "31" in str(err.value) and "at most 30" in str(err.value)


# ---------------------------------------------------------------------------------------------------
# target tasks
# ---------------------------------------------------------------------------------------------------

NOVEL = list(range(10, 17))


@pytest.fixture(scope="module")
def fs_set():
    """17 classes: base 0-7, open-world 8-9, novel 10-16; 30 train and 6 test images per class."""
    groups = {"base": list(range(8)), "open_world": [8, 9], "novel": NOVEL}
    return make_image_set(num_classes=17, per_class_train=30, per_class_test=6, size=12, groups=groups)


def _same(a, b) -> bool:
    return (
        a.classes == b.classes
        and torch.equal(a.train_idx, b.train_idx)
        and torch.equal(a.train_y, b.train_y)
        and torch.equal(a.test_idx, b.test_idx)
        and torch.equal(a.test_y, b.test_y)
    )


def test_target_tasks_are_seeded(fs_set):
    a = make_target_tasks(fs_set, n_tasks=4, ways=5, shots=10, seed=7)
    b = make_target_tasks(fs_set, n_tasks=4, ways=5, shots=10, seed=7)
    c = make_target_tasks(fs_set, n_tasks=4, ways=5, shots=10, seed=8)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not all(_same(x, y) for x, y in zip(a, c))
    assert [t.key for t in a] == [f"seed7-task{i}" for i in range(4)]
    assert len({t.classes for t in a}) > 1  # tasks of one seed differ from each other


def test_target_task_contents_paper_mode(fs_set):
    for t in make_target_tasks(fs_set, n_tasks=3, ways=5, shots=10, seed=0):
        assert t.ways == 5 and len(set(t.classes)) == 5 and set(t.classes) <= set(NOVEL)
        assert len(t.train_idx) == 50 and len(set(t.train_idx.tolist())) == 50
        assert torch.bincount(t.train_y, minlength=5).tolist() == [10] * 5
        classes = torch.tensor(t.classes)
        assert torch.equal(fs_set.y_train[t.train_idx], classes[t.train_y])  # local label i <-> classes[i]
        assert t.test_split == "test"
        expected = torch.nonzero(torch.isin(fs_set.y_test, classes)).flatten()
        assert sorted(t.test_idx.tolist()) == expected.tolist()  # all test images of these classes
        assert torch.equal(fs_set.y_test[t.test_idx], classes[t.test_y])


def test_shots_do_not_change_classes_and_are_nested(fs_set):
    t10 = make_target_tasks(fs_set, n_tasks=4, ways=5, shots=10, seed=2)
    t20 = make_target_tasks(fs_set, n_tasks=4, ways=5, shots=20, seed=2)
    for a, b in zip(t10, t20):
        assert a.classes == b.classes
        assert torch.equal(a.test_idx, b.test_idx)
        for label in range(5):
            s10 = a.train_idx[a.train_y == label].tolist()
            s20 = b.train_idx[b.train_y == label].tolist()
            assert len(s10) == 10 and len(s20) == 20
            assert set(s10) <= set(s20)
            assert s10 == s20[:10]  # the first K of one fixed per-class permutation


def test_episodic_support_and_query_disjoint(fs_set):
    tasks = make_target_tasks(fs_set, n_tasks=3, ways=4, shots=5, seed=0, protocol="episodic", queries=15)
    for t in tasks:
        assert t.test_split == "train"
        assert not set(t.train_idx.tolist()) & set(t.test_idx.tolist())
        assert torch.bincount(t.test_y, minlength=4).tolist() == [15] * 4
        classes = torch.tensor(t.classes)
        assert torch.equal(fs_set.y_train[t.test_idx], classes[t.test_y])
        assert torch.equal(fs_set.y_train[t.train_idx], classes[t.train_y])
    episodes = make_episodes(fs_set, n_episodes=3, ways=4, shots=5, queries=15, seed=0, group="base")
    assert all(set(e.classes) <= set(range(8)) for e in episodes)


def test_target_task_errors(fs_set):
    with pytest.raises(DataError) as err:
        make_target_tasks(fs_set, n_tasks=1, ways=8, shots=5, seed=0)
    assert "ways=8" in str(err.value) and "at most 7" in str(err.value)
    with pytest.raises(DataError) as err:
        make_target_tasks(fs_set, n_tasks=1, ways=5, shots=31, seed=0)
    msg = str(err.value)
    assert any(f"'c{c}'" in msg for c in NOVEL) and "has 30" in msg and "shots <= 30" in msg
    with pytest.raises(DataError) as err:
        make_target_tasks(fs_set, n_tasks=1, ways=5, shots=20, seed=0, protocol="episodic", queries=15)
    assert "shots <= 15" in str(err.value)
    with pytest.raises(DataError, match="at least 2"):
        make_target_tasks(fs_set, n_tasks=1, ways=1, shots=5, seed=0)
    with pytest.raises(DataError, match="shots=0"):
        make_target_tasks(fs_set, n_tasks=1, ways=5, shots=0, seed=0)
    with pytest.raises(DataError, match="episodic"):
        make_target_tasks(fs_set, n_tasks=1, ways=5, shots=5, seed=0, protocol="transductive")


def test_target_task_grid_covers_seeds(fs_set):
    grid = make_target_task_grid(fs_set, n_tasks=3, ways=5, shots=10, seeds=[0, 1, 2])
    assert [(t.seed, t.index) for t in grid] == [(s, i) for s in (0, 1, 2) for i in range(3)]
    assert len({t.key for t in grid}) == 9
    for s in (0, 1, 2):
        alone = make_target_tasks(fs_set, n_tasks=3, ways=5, shots=10, seed=s)
        assert all(_same(x, y) for x, y in zip(grid[3 * s : 3 * s + 3], alone))


# ---------------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------------

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _batch(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        1, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _to_uint8(aug: BatchAugment, out: torch.Tensor) -> torch.Tensor:
    return ((out * aug.std + aug.mean) * 255).round().to(torch.uint8)


def test_train_output_type_range_and_determinism():
    aug = BatchAugment(MEAN, STD, crop_padding=4, flip=True)
    x = _batch()
    out = aug.train(x, torch.Generator().manual_seed(5))
    assert out.dtype == torch.float32 and out.shape == x.shape and torch.isfinite(out).all()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    assert ((out >= lo - 1e-5) & (out <= hi + 1e-5)).all()
    assert (out == lo).any()  # zero padding shows up as the normalised value of 0 (x has no zeros)
    again = aug.train(x, torch.Generator().manual_seed(5))
    assert torch.equal(out, again)
    other = aug.train(x, torch.Generator().manual_seed(6))
    assert not torch.equal(out, other)
    assert x.dtype == torch.uint8 and torch.equal(x, _batch())  # input untouched


def test_train_is_crop_then_flip_of_each_image():
    aug = BatchAugment(MEAN, STD, crop_padding=2, flip=True)
    x = _batch(n=32, size=8)
    out = _to_uint8(aug, aug.train(x, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flipped = 0
    for i in range(len(x)):
        crops = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        if any(torch.equal(out[i], c) for c in crops):
            continue
        assert any(torch.equal(out[i], c.flip(-1)) for c in crops), f"image {i} is no crop/flip of its input"
        flipped += 1
    assert 0 < flipped < len(x)


def test_eval_is_deterministic_and_draws_no_random_numbers():
    aug = BatchAugment(MEAN, STD)
    x = _batch()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b = aug.eval(x), aug.eval(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(a, expected, atol=1e-6)


def test_no_flip_no_padding_train_equals_eval():
    aug = BatchAugment(MEAN, STD, crop_padding=0, flip=False)
    x = _batch()
    assert torch.equal(aug.train(x, torch.Generator().manual_seed(1)), aug.eval(x))


def test_augment_rejects_bad_settings():
    with pytest.raises(ValueError, match="crop_padding"):
        BatchAugment(crop_padding=-1)
    with pytest.raises(ValueError, match="std"):
        BatchAugment(mean=(0.5, 0.5, 0.5), std=(0.2, 0.0, 0.2))
    aug = BatchAugment(mean=MEAN, std=STD, crop_padding=0, flip=False)
    assert aug.crop_padding == 0 and not aug.flip


def test_channel_statistics_of_uint8_images():
    from learngene_core.data.statistics import channel_stats

    x = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    x[:, 0] = 255  # channel 0: all ones; channel 1: half 0, half 255
    x[:2, 1] = 255
    mean, std = channel_stats(x, chunk=3)
    assert mean == pytest.approx([1.0, 0.5]) and std == pytest.approx([1e-3, 0.5])


# ---------------------------------------------------------------------------------------------------
# loaders
# ---------------------------------------------------------------------------------------------------


def _ids_data(n: int, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels encode their own index, and labels equal to the index."""
    x = (torch.arange(n) % 251).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return x, torch.arange(n)


@pytest.mark.parametrize("train", [True, False])
def test_tensor_loader_covers_every_sample_once(train):
    x, y = _ids_data(203)
    aug = BatchAugment(MEAN, STD, crop_padding=0, flip=False)
    loader = TensorBatchLoader(x, y, batch_size=64, augment=aug, train=train, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert [len(b[1]) for b in batches] == [64, 64, 64, 11]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(203))
    if train:
        assert seen.tolist() != list(range(203))  # shuffled
        second = torch.cat([b[1] for b in loader])
        assert sorted(second.tolist()) == list(range(203)) and not torch.equal(
            seen, second
        )  # new epoch order
    else:
        assert seen.tolist() == list(range(203))  # storage order
    for xb, yb in batches:  # images and labels stay paired
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 4, 4)
        assert torch.equal(_to_uint8(aug, xb)[:, 0, 0, 0], (yb % 251).to(torch.uint8))


def test_tensor_loader_same_seed_same_batches():
    x, y = _ids_data(100, size=8)
    aug = BatchAugment(MEAN, STD)
    a = list(TensorBatchLoader(x, y, 32, aug, train=True, seed=4))
    b = list(TensorBatchLoader(x, y, 32, aug, train=True, seed=4))
    c = list(TensorBatchLoader(x, y, 32, aug, train=True, seed=5))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])


def test_tensor_loader_drop_last():
    x, y = _ids_data(203)
    loader = TensorBatchLoader(x, y, 64, BatchAugment(MEAN, STD), train=True, seed=0, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and all(len(b[1]) == 64 for b in batches)
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatchLoader(x, y, 0, BatchAugment(MEAN, STD), train=True)


@pytest.mark.parametrize(("n", "train"), [(200, True), (200, False), (201, True), (201, False)])
def test_tensor_loader_ranks_get_disjoint_shards(n, train):
    x, y = _ids_data(n)
    aug = BatchAugment(MEAN, STD)
    shards = []
    for rank in range(2):
        loader = TensorBatchLoader(x, y, 16, aug, train=train, seed=3, rank=rank, world=2)
        labels = [b[1] for b in loader]
        assert len(labels) == len(loader) == 7  # ceil(ceil(n / 2) / 16)
        shards.append(torch.cat(labels).tolist())
    assert len(shards[0]) == len(shards[1]) == (n + 1) // 2
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    overlap = set(shards[0]) & set(shards[1])
    if n % 2 == 0:
        assert not overlap and len(set(shards[0])) == n // 2
    else:
        assert len(overlap) == 1  # one sample repeated to pad, as DistributedSampler does


def test_task_batch_loader_one_task_equals_first_of_three():
    x, _ = _ids_data(300, size=8)
    x = x + torch.randint(0, 4, x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(1)
    idx = torch.stack([torch.randperm(300, generator=gen)[:40] for _ in range(3)])
    y = torch.randint(0, 5, (3, 40), generator=gen)
    aug = BatchAugment(MEAN, STD, crop_padding=2, flip=True)
    seeds = [11, 22, 33]
    one = list(TaskBatchLoader(x, idx[:1], y[:1], batch_size=16, augment=aug, seeds=seeds[:1]))
    three = list(TaskBatchLoader(x, idx, y, batch_size=16, augment=aug, seeds=seeds))
    assert len(one) == len(three) == 3
    assert [len(b[1]) for b in one] == [14, 13, 13]  # even batches: 40 images at 16 -> 3 batches
    for (x1, y1), (x3, y3) in zip(one, three):
        assert x1.shape[1] == 1 and x3.shape[1] == 3 and x3.shape[2:] == (3, 8, 8) and y3.shape[1] == 3
        assert torch.equal(x1[:, 0], x3[:, 0]) and torch.equal(y1[:, 0], y3[:, 0])
    assert not torch.equal(one[0][0][:, 0], three[0][0][:, 1])
    # T = 1 is exactly the one-by-one loader over that task's images
    alone = list(TensorBatchLoader(x[idx[0]], y[0], 16, aug, train=True, seed=seeds[0], batching="even"))
    assert len(alone) == len(one)
    for (x1, y1), (xa, ya) in zip(one, alone):
        assert torch.equal(x1[:, 0], xa) and torch.equal(y1[:, 0], ya)
    with pytest.raises(ValueError, match=r"\(T, N\)"):
        TaskBatchLoader(x, idx, y[:, :30], batch_size=16, augment=aug, seeds=seeds)


@pytest.mark.parametrize("n, sizes", [(100, [25, 25, 25, 25]), (50, [25, 25]), (25, [25]), (5, [5]),
                                      (70, [24, 23, 23])])  # fmt: skip
def test_target_task_batches_are_even_and_cover_every_image_once(n, sizes):
    """Stage 3 at batch 32: 20-shot 5-way (100 images) gives 4 x 25, not 32 32 32 4, so BatchNorm never sees
    a 4-image batch; 10-shot (50) 2 x 25. Each image once per epoch, every epoch, and the same steps."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(n, generator=gen) for _ in range(2)])
    y = idx.clone()  # label = image id, to check coverage
    loader = TaskBatchLoader(x, idx, y, batch_size=32, augment=BatchAugment(), seeds=[3, 4])
    assert len(loader) == math.ceil(n / 32)
    for _ in range(2):  # two epochs, each a fresh permutation
        batches = [b[1] for b in loader]
        assert [len(b) for b in batches] == sizes
        assert min(len(b) for b in batches) >= min(n, 32) / 2
        for t in range(2):
            seen = torch.cat([b[:, t] for b in batches])
            assert sorted(seen.tolist()) == list(range(n))
    ragged = TaskBatchLoader(
        x, idx, y, batch_size=32, augment=BatchAugment(), seeds=[3, 4], batching="ragged"
    )
    assert len(ragged) == len(loader) and sum(len(b[1]) for b in ragged) == n
    if n == 100:
        assert [len(b[1]) for b in ragged] == [32, 32, 32, 4]  # the original cut
    with pytest.raises(ValueError, match="batching"):
        TaskBatchLoader(x, idx, y, batch_size=32, augment=BatchAugment(), seeds=[3, 4], batching="odd")


def test_random_crop_equals_per_image_slicing_of_the_padded_image():
    """The batched gather crop is exactly torchvision-style RandomCrop(padding) done image by image."""
    import torch.nn.functional as F

    from learngene_core.data.augmentation import BatchAugment

    aug = BatchAugment(crop_padding=3, flip=False)
    x = torch.randint(0, 256, (6, 3, 10, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = aug.random_crop(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    dy = torch.randint(0, 7, (6,), generator=g)
    dx = torch.randint(0, 7, (6,), generator=g)
    padded = F.pad(x, (3, 3, 3, 3))
    for i in range(6):
        ref = padded[i, :, dy[i] : dy[i] + 10, dx[i] : dx[i] + 12]
        assert torch.equal(out[i], ref)


def test_validation_tasks_never_use_a_test_query_under_the_episodic_protocol(tmp_path):
    """target.protocol=episodic takes the test queries from the novel training images, where the validation
    tasks (default group: novel) draw from too: the window chosen on validation must not have seen them."""
    from conftest import compose

    from experiments.pipeline.context import RunContext
    from experiments.pipeline.plan import target_tasks, validation_tasks

    cfg = compose(["target.protocol=episodic", "target.queries=10", "target.validation.queries=10",
                   "budget.target_tasks=3"], tmp_path)  # fmt: skip
    image_set = RunContext(cfg, tmp_path).image_set
    queries = {int(i) for s in cfg.target.shots for t in target_tasks(cfg, image_set, s) for i in t.test_idx}
    for shots in cfg.target.shots:
        tasks = validation_tasks(cfg, image_set, shots)
        assert tasks and all(t.test_split == "train" for t in tasks)
        used = {int(i) for t in tasks for i in (*t.train_idx, *t.test_idx)}
        assert not used & queries, sorted(used & queries)[:5]
