"""Every registered criterion statistic on tiny known cases, checked by value.

Task statistics measure one block each: changing one block moves only that block's values (the others stay
exactly 0); widening a block does not by itself raise its weight change; fisher_importance equals a
per-sample hand computation; the Fisher images cover every class of the task.
"""

from __future__ import annotations

import copy

import pytest
import torch

from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import vgg_spec
from learngene_core.criterion.gradient import step_statistics
from learngene_core.criterion.learning import TaskProbe, linear_cka
from learngene_core.criterion.registry import get_statistic, statistics
from learngene_core.ewc import stratified_order


def _net(widths=(4, 6, 6), size: int = 8, seed: int = 0) -> BlockNet:
    torch.manual_seed(seed)
    net = BlockNet(
        vgg_spec(list(widths), pool_after=[1, 2, 3], input_size=size, hidden=[8], num_classes=3, dropout=0)
    )
    with torch.no_grad():  # non-trivial BatchNorm running statistics, used in eval mode
        for b in net.blocks:
            b.bn.running_mean.uniform_(-0.2, 0.2)
            b.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _data(n: int = 12, size: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 3


def _probe(net, x, y) -> TaskProbe:
    probe = TaskProbe(net, x, fisher_batches=lambda: [(x, y)], fisher_samples=len(x))
    probe.begin()
    return probe


def _values(probe: TaskProbe) -> dict[str, list[float]]:
    probe.end()
    return {s.name: s.fn(probe) for s in statistics("task")}


def _perturb(block, scale: float = 0.3, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(block.conv.weight.shape, generator=g) * scale * float(block.conv.weight.detach().std())
    with torch.no_grad():
        block.conv.weight += d
    return d


@pytest.mark.parametrize("changed", [0, 1])
def test_changing_one_block_moves_only_that_blocks_statistics(changed):
    """The blocks above a changed block see changed inputs, but are themselves unchanged: they score exactly 0.
    (The full-forward cka_drift gave every block above the changed one a positive drift.)"""
    net = _net()
    x, y = _data()
    probe = _probe(net, x, y)
    start = copy.deepcopy(net.blocks[changed])
    w0 = net.blocks[changed].conv.weight.detach().clone()
    d = _perturb(net.blocks[changed])
    v = _values(probe)
    for i in range(3):
        if i == changed:
            assert v["weight_change"][i] == pytest.approx(float(d.norm() / w0.norm()), rel=1e-6)
            assert v["cka_drift"][i] > 1e-3
        else:
            assert v["weight_change"][i] == 0.0
            assert v["cka_drift"][i] == pytest.approx(0.0, abs=1e-12)
    # the changed block's drift by hand: its start copy and its end version on the same (end-of-task) inputs
    with torch.no_grad():
        h = x
        for b in net.blocks[:changed]:
            h = b(h)

        def gram(f):
            f = f.flatten(1).double()
            f = f - f.mean(0)
            return f @ f.T

        k, l_ = gram(start.eval()(h)), gram(net.blocks[changed](h))
    expected = 1.0 - float((k * l_).sum() / (k.norm() * l_.norm()))
    assert v["cka_drift"][changed] == pytest.approx(expected, rel=1e-9)


def test_a_frozen_block_scores_zero_on_every_task_statistic():
    """Block 1 frozen (no gradient, BatchNorm on its running statistics) while the others train."""
    net = _net()
    x, y = _data()
    blk = net.blocks[1]
    blk.frozen = True
    for p in blk.parameters():
        p.requires_grad_(False)
    probe = _probe(net, x, y)
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.2)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    v = _values(probe)
    assert v["weight_change"][1] == 0.0 and v["weight_change"][0] > 1e-3 and v["weight_change"][2] > 1e-3
    assert v["cka_drift"][1] == pytest.approx(0.0, abs=1e-12)  # its input moved, the block did not
    assert v["cka_drift"][0] > 1e-4 and v["cka_drift"][2] > 1e-4
    assert v["fisher_importance"][1] == 0.0 and sum(v["fisher_importance"]) == pytest.approx(1.0)


def _widened(net: BlockNet, block: int, n_new: int, seed: int = 3):
    w = copy.deepcopy(net)
    wmap = w.widen(block, n_new, torch.Generator().manual_seed(seed), noise=0.5).maps[-1]
    return w, wmap.src, wmap.counts


def _zero_sum(shape, groups: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Random values that sum to zero over each group of indices along ``dim``."""
    a = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).movedim(dim, 0)
    n = int(groups.max()) + 1
    mean = torch.zeros(n, *a.shape[1:]).index_add_(0, groups, a) / torch.bincount(groups, minlength=n).view(
        -1, *([1] * (a.ndim - 1))
    )
    return (a - mean[groups]).movedim(0, dim)


def test_widening_alone_does_not_raise_weight_change():
    """The same learning step in an unwidened network and in a copy of it widened before the task gives the
    same weight_change for the widened block and its consumer: each copy moves as its unit would, each copy's
    column in the consumer as the unit's column would (SGD gives it the unit's whole gradient), and the copies
    also move apart symmetrically (which growth makes possible). The plain norm ratio (the old statistic)
    scored both higher."""
    net = _net(widths=(4, 4, 6))
    x, y = _data()
    wide, src, counts = _widened(net, 1, 4)
    assert wide.blocks[1].out_channels == 8 and int(counts.max()) > 1
    pu, pw = _probe(net, x, y), _probe(wide, x, y)
    g = torch.Generator().manual_seed(4)
    d1 = torch.randn(net.blocks[1].conv.weight.shape, generator=g) * 0.05
    d2 = torch.randn(net.blocks[2].conv.weight.shape, generator=g) * 0.05
    with torch.no_grad():
        net.blocks[1].conv.weight += d1
        net.blocks[2].conv.weight += d2
        # the widened block: every copy moves like its source would, plus a zero-sum separation of the copies
        wide.blocks[1].conv.weight += d1[src] + _zero_sum(wide.blocks[1].conv.weight.shape, src, 0, 5) * 0.2
        # its consumer: each column of a unit's copies changes as the unit's column, plus a zero-sum separation
        wide.blocks[2].conv.weight += (
            d2[:, src] + _zero_sum(wide.blocks[2].conv.weight.shape, src, 1, 6) * 0.2
        )
    vu, vw = _values(pu)["weight_change"], _values(pw)["weight_change"]
    assert vu[0] == vw[0] == 0.0
    assert vw[1] == pytest.approx(vu[1], rel=1e-5) and vw[2] == pytest.approx(vu[2], rel=1e-5)
    old = [float((e - s).norm() / s.norm()) for s, e in zip(
        [w[0] for w in pw.start_weights], [w[0] for w in pw.end_weights])]  # fmt: skip
    assert old[1] > 1.5 * vu[1] and old[2] > 1.5 * vu[2]  # the plain ratio counts growth as learning


def test_weight_change_of_copies_moving_apart_only_is_zero_and_training_a_widened_block_is_not_inflated():
    net = _net(widths=(4, 4, 6))
    x, y = _data()
    wide, src, _ = _widened(net, 1, 4)
    probe = _probe(wide, x, y)
    with torch.no_grad():
        wide.blocks[1].conv.weight += _zero_sum(wide.blocks[1].conv.weight.shape, src, 0, 7) * 0.3
    assert _values(probe)["weight_change"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)

    # equal training: the unwidened and the widened network (the same function) trained alike on the same data
    def train(n):
        p = _probe(n, x, y)
        n.train()
        opt = torch.optim.SGD(n.parameters(), lr=0.1)
        for _ in range(10):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(n(x), y).backward()
            opt.step()
        n.eval()
        return _values(p)["weight_change"]

    net = _net(widths=(4, 4, 6))
    wide, _, _ = _widened(net, 1, 4)
    with torch.no_grad():
        assert torch.allclose(net(x), wide(x), atol=1e-5)
    vu, vw = train(net), train(wide)
    assert vw[1] <= vu[1] * 1.05 and vw[2] <= vu[2] * 1.05  # the widened block and its consumer


def test_fisher_importance_equals_a_per_sample_hand_computation():
    net = _net()
    x, y = _data(n=9)
    probe = _probe(net, x, y)
    v = _values(probe)["fisher_importance"]
    weights = [b.conv.weight for b in net.blocks]
    fisher = [torch.zeros_like(w) for w in weights]
    for i in range(len(x)):  # one sample at a time, eval mode, log-likelihood of the true label
        loss = torch.nn.functional.cross_entropy(net(x[i : i + 1]), y[i : i + 1])
        for f, g in zip(fisher, torch.autograd.grad(loss, weights)):
            f += g**2 / len(x)
    vals = [float((f * w.detach() ** 2).sum()) for f, w in zip(fisher, weights)]
    assert v == pytest.approx([val / sum(vals) for val in vals], rel=1e-4)


def test_fisher_samples_are_stratified_over_the_tasks_classes_and_seeded():
    y = torch.arange(5).repeat_interleave(40)  # stored grouped by class, as a task's images are
    order = stratified_order(y, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(len(y)))
    assert set(y[order[:5]].tolist()) == set(range(5))
    counts = torch.bincount(y[order[:23]], minlength=5)
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(order, stratified_order(y, torch.Generator().manual_seed(0)))
    assert not torch.equal(order, stratified_order(y, torch.Generator().manual_seed(1)))
    within = [order[y[order] == c] for c in range(5)]
    assert not all(torch.equal(w, w.sort().values) for w in within)  # each class's images in a random order


def test_the_fisher_batches_of_a_task_cover_every_class(image_set):
    from datamodules.sequential_tasks import SequentialTasksDataModule
    from learngene_core.data.task_stream import make_task_stream

    stream = make_task_stream(image_set.groups["base"], 2, 3, seed=0)
    dm = SequentialTasksDataModule(image_set, stream, batch_size=16, seed=5, on_device=False)
    for t, task in enumerate(stream):
        _, first = next(iter(dm.fisher_batches(t, batch_size=6)))  # what a 6-sample Fisher estimate reads
        assert set(first.tolist()) == {dm.label(c, task) for c in task.classes}
        ys = torch.cat([yb for _, yb in dm.fisher_batches(t, batch_size=4, samples=6)])
        assert torch.equal(ys, first)  # ``samples`` keeps the same draw
        assert torch.equal(ys, torch.cat([yb for _, yb in dm.fisher_batches(t, batch_size=4, samples=6)]))


def test_step_statistics_on_a_hand_made_layer():
    g = torch.tensor([[2e-3, -4e-3, 0.0], [1e-12, 6e-4, -6e-4]])
    w = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    names = ["paper_signed_frac", "abs_frac", "mean_abs", "rel_norm"]
    stats = [get_statistic(n) for n in names]
    got = dict(zip(names, step_statistics(stats, [g], [w], tau=5e-4).tolist()))
    assert got["paper_signed_frac"] == pytest.approx(2 / 6)  # 2e-3, 6e-4
    assert got["abs_frac"] == pytest.approx(4 / 6)  # 2e-3, 4e-3, 6e-4, 6e-4
    assert got["mean_abs"] == pytest.approx((2e-3 + 4e-3 + 1e-12 + 6e-4 + 6e-4) / 6)
    norm = (2e-3**2 + 4e-3**2 + 1e-24 + 2 * 6e-4**2) ** 0.5
    assert got["rel_norm"] == pytest.approx(norm / 3.0)  # ||W|| = 3
    assert step_statistics(stats, [None], [w], tau=5e-4).tolist() == [0.0] * 4  # a frozen layer


def test_linear_cka_by_hand():
    k = torch.tensor([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0]], dtype=torch.float64)
    l_ = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    # <K, L> = 2 + 1 + 1 + 2 = 6, ||K|| = sqrt(6 * 1 + 3 * 4) = sqrt(18), ||L|| = 2
    assert linear_cka(k, l_) == pytest.approx(6 / (18**0.5 * 2))
