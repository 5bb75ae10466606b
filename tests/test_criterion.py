"""The gradient statistic, the statistics callback and the selection rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learngene.callbacks.gradient_stats import GradientStatsCallback, read_rows, task_matrix, truncate_rows
from learngene.core.gradient_stats import STATISTICS, layer_statistics
from learngene.core.selection import select_window


def test_statistics_of_a_hand_made_gradient_match_their_definitions():
    g = torch.tensor([[3e-10, -7e-10], [1e-11, 0.0], [-2e-9, 6e-10]])
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    s = dict(zip(STATISTICS, layer_statistics(g, w, tau=5e-10).tolist()))
    assert s["signed_frac"] == pytest.approx(1 / 6)  # only 6e-10 is > tau (signed, as the public code)
    assert s["abs_frac"] == pytest.approx(3 / 6)  # 7e-10, 2e-9, 6e-10
    assert s["mean_abs"] == pytest.approx((3e-10 + 7e-10 + 1e-11 + 2e-9 + 6e-10) / 6)
    assert s["rel_norm"] == pytest.approx(float(g.norm()) / 5.0, rel=1e-5)


def test_selection_finds_a_planted_stable_low_window():
    rng = np.random.default_rng(0)
    stats = rng.uniform(0.3, 0.6, size=(10, 13))
    stats[:, 4:7] = 0.01 + rng.uniform(0, 0.001, size=(10, 3))  # blocks 5-7 barely change and are stable
    names = [f"conv{i + 1}" for i in range(13)]
    res = select_window(stats, names, k=3, warmup=1)
    assert res.start == 4 and res.names == ["conv5", "conv6", "conv7"]
    assert not res.tie
    assert len(res.window_scores) == 11
    assert res.tasks_used == list(range(1, 10))


def test_selection_prefers_stable_over_merely_low_on_average():
    tasks = 8
    stats = np.full((tasks, 6), 0.5)
    stats[:, 0:2] = np.where(np.arange(tasks)[:, None] % 2 == 0, 0.0, 0.3)  # low mean (0.15) but jumpy
    stats[:, 3:5] = 0.2  # a little higher but perfectly stable
    res = select_window(stats, list("abcdef"), k=2, warmup=0, stability=1.0)
    assert res.names == ["d", "e"]
    res0 = select_window(stats, list("abcdef"), k=2, warmup=0, stability=0.0)
    assert res0.names == ["a", "b"]


def test_zero_gradient_layers_are_selected():
    stats = np.full((5, 13), 0.45)
    stats[:, 10:] = 0.0  # the paper's finding: deep layers' statistic settles at zero
    assert select_window(stats, [f"conv{i}" for i in range(1, 14)], k=3).names == [
        "conv11",
        "conv12",
        "conv13",
    ]


def test_uniform_statistics_tie_break_to_the_deepest_window():
    res = select_window(np.full((4, 13), 0.25), [f"conv{i}" for i in range(1, 14)], k=3)
    assert res.tie and res.start == 10


def test_selection_rejects_bad_input():
    with pytest.raises(ValueError, match="criterion.k"):
        select_window(np.zeros((3, 4)), list("abcd"), k=5)
    with pytest.raises(ValueError, match="NaN"):
        select_window(np.array([[np.nan, 1.0]]), ["a", "b"], k=1)
    with pytest.raises(ValueError, match="do not match"):
        select_window(np.zeros((3, 4)), list("abc"), k=1)


def test_weighting_last_uses_only_the_last_task():
    stats = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert select_window(stats, ["a", "b"], k=1, warmup=0, weighting="last").names == ["b"]


class _Trainer:
    def __init__(self):
        self.global_step, self.current_epoch, self.is_global_zero, self.world_size = 0, 0, True, 1


class _Module:
    def __init__(self, net):
        self.net = net


def _tiny_net():
    from learngene.core.convnet import ConvNet, vgg_spec

    torch.manual_seed(0)
    return ConvNet(
        vgg_spec([4, 6, 6], pool_after=[1, 2, 3], input_size=8, hidden=[8], num_classes=3, dropout=0)
    )


def _run_epoch(cb, net, trainer, steps=2):
    cb.on_train_epoch_start(trainer, _Module(net))
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(steps):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        cb.on_after_backward(trainer, _Module(net))
        trainer.global_step += 1
    cb.on_train_epoch_end(trainer, _Module(net))


def test_callback_writes_rows_and_keeps_layer_identity_across_widening(tmp_path):
    from learngene.core.widening import widen

    net, trainer = _tiny_net(), _Trainer()
    csv = tmp_path / "gradient_stats.csv"
    cb = GradientStatsCallback(csv, tau=1e-8, task=0)
    _run_epoch(cb, net, trainer)
    widen(net, 1, 3)  # conv2 grows from 6 to 9 units: still "conv2"
    cb2 = GradientStatsCallback(csv, tau=1e-8, task=1)
    _run_epoch(cb2, net, trainer)
    rows = read_rows(csv)
    layers = ["conv1", "conv2", "conv3", "fc1", "head"]
    assert {r["layer"] for r in rows} == set(layers)
    assert len(rows) == 2 * len(layers) * len(STATISTICS)
    S, tasks, names = task_matrix(rows, "abs_frac", "conv")
    assert tasks == [0, 1] and names == ["conv1", "conv2", "conv3"] and S.shape == (2, 3)
    assert np.all((S >= 0) & (S <= 1))
    # the per-epoch value is the mean of the per-step statistics
    g = net.blocks[0].conv.weight.grad
    assert layer_statistics(g, net.blocks[0].conv.weight, 1e-8).shape == (4,)
    truncate_rows(csv, 1)
    assert {r["task"] for r in read_rows(csv)} == {0}


def test_task_matrix_last_epoch_and_mean():
    rows = [
        {"task": 0, "epoch": e, "layer": "conv1", "kind": "conv", "statistic": "abs_frac", "value": v}
        for e, v in [(0, 0.2), (1, 0.4)]
    ]
    assert task_matrix(rows, "abs_frac", aggregate="mean")[0][0, 0] == pytest.approx(0.3)
    assert task_matrix(rows, "abs_frac", aggregate="last")[0][0, 0] == pytest.approx(0.4)
