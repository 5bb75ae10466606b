"""The criterion: step and task statistics, the statistics callback, the records file and the selection rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from callbacks.criterion_stats import CriterionStatsCallback
from callbacks.task_inputs import TaskInputs
from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import vgg_spec
from learngene_core.criterion.gradient import step_statistics
from learngene_core.criterion.learning import TaskProbe, linear_cka
from learngene_core.criterion.records import TASK_EPOCH, append_rows, read_rows, task_matrix, truncate_rows
from learngene_core.criterion.registry import get_statistic, statistics
from learngene_core.criterion.selection import select_window
from learngene_core.errors import CheckpointError


def test_statistics_of_a_hand_made_gradient_match_their_definitions():
    g = torch.tensor([[3e-10, -7e-10], [1e-11, 0.0], [-2e-9, 6e-10]])
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    stats = statistics("step")
    s = dict(zip([x.name for x in stats], step_statistics(stats, [g], [w], tau=5e-10).tolist()))
    assert s["paper_signed_frac"] == pytest.approx(1 / 6)  # only 6e-10 is > tau (signed, as the public code)
    assert s["abs_frac"] == pytest.approx(3 / 6)  # 7e-10, 2e-9, 6e-10
    assert s["mean_abs"] == pytest.approx((3e-10 + 7e-10 + 1e-11 + 2e-9 + 6e-10) / 6)
    assert s["rel_norm"] == pytest.approx(float(g.norm()) / 5.0, rel=1e-5)


def test_a_statistic_s_options_reach_its_function_and_an_option_needs_a_default(tmp_path):
    from learngene_core.criterion.registry import register_statistic, unregister_statistic

    @register_statistic("scaled_mean_abs", "step", "mean |g| times `scale`")
    def scaled_mean_abs(grad, weight, tau, *, scale: float = 1.0):
        return scale * grad.abs().mean()

    try:
        g, w = torch.tensor([1.0, -3.0]), torch.ones(2)
        assert step_statistics(statistics("step"), [g], [w], tau=0.5)[-1] == pytest.approx(2.0)
        bound = statistics("step", {"scaled_mean_abs": {"scale": 10.0}})
        assert step_statistics(bound, [g], [w], tau=0.5)[-1] == pytest.approx(20.0)
        net, trainer = _tiny_net(), _Trainer()  # and through the callback's task inputs
        cb = CriterionStatsCallback(TaskInputs(task=0, stats_csv=tmp_path / "g.csv", tau=1e-8,
                                               statistic_options={"scaled_mean_abs": {"scale": 10.0}}),
                                    task_statistics=False)  # fmt: skip
        _run_epoch(cb, net, trainer, steps=2, lr=0.05)
        rows = read_rows(tmp_path / "g.csv")
        value = {(r["layer"], r["statistic"]): r["value"] for r in rows}
        assert value["conv1", "scaled_mean_abs"] == pytest.approx(10 * value["conv1", "mean_abs"], rel=1e-5)
        with pytest.raises(ValueError, match=r"has no option \['scael'\]; options: \['scale'\]"):
            statistics("step", {"scaled_mean_abs": {"scael": 2.0}})
    finally:
        unregister_statistic("scaled_mean_abs")
    with pytest.raises(ValueError, match=r"keyword-only parameters \['scale'\] need a default"):
        register_statistic("no_default", "step", "x")(lambda grad, weight, tau, *, scale: grad.sum())


def test_several_weights_of_a_block_are_one_statistic():
    g1, g2 = torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.0, 0.0])
    w1, w2 = torch.ones(2), torch.ones(3)
    stats = [get_statistic("abs_frac"), get_statistic("rel_norm")]
    frac, rel = step_statistics(stats, [g1, g2], [w1, w2], tau=0.5).tolist()
    assert frac == pytest.approx(3 / 5)
    assert rel == pytest.approx(float(torch.cat([g1, g2]).norm() / torch.cat([w1, w2]).norm()))


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
    with pytest.raises(ValueError, match="k=5"):
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


def _tiny_net(size: int = 8, widths=(4, 6, 6)):
    torch.manual_seed(0)
    return BlockNet(
        vgg_spec(list(widths), pool_after=[1, 2, 3], input_size=size, hidden=[8], num_classes=3, dropout=0)
    )


def _batch(size: int = 8, n: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 3


def _run_epoch(cb, net, trainer, steps=2, lr=0.0):
    """One epoch of ``steps`` SGD steps on a fixed batch; returns each step's step statistics (per layer)."""
    cb.on_train_epoch_start(trainer, _Module(net))
    x, y = _batch(net.input_size)
    per_step = []
    for _ in range(steps):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        cb.on_before_optimizer_step(trainer, _Module(net), None)
        per_step.append(
            {
                b.name: step_statistics(cb.step_stats, [b.conv.weight.grad], [b.conv.weight], cb.tau)
                for b in net.blocks
            }
        )
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        trainer.global_step += 1
    cb.on_train_epoch_end(trainer, _Module(net))
    return per_step


def test_callback_records_the_mean_of_its_per_step_statistics_and_keeps_names_across_widening(tmp_path):
    net, trainer = _tiny_net(), _Trainer()
    csv = tmp_path / "gradient_stats.csv"
    cb = CriterionStatsCallback(TaskInputs(task=0, stats_csv=csv, tau=1e-8), task_statistics=False)
    steps = _run_epoch(cb, net, trainer, steps=3, lr=0.05)
    rows = read_rows(csv)
    names = [s.name for s in cb.step_stats]
    for block in ("conv1", "conv2", "conv3"):
        expect = torch.stack([s[block] for s in steps]).mean(0)
        got = [next(r["value"] for r in rows if r["layer"] == block and r["statistic"] == n) for n in names]
        assert got == pytest.approx(expect.tolist(), rel=1e-5)
    # the steps differ (the weights moved), so a per-epoch value that just copied one step would fail above
    assert not torch.equal(steps[0]["conv1"], steps[-1]["conv1"])
    net.widen(1, 3)  # conv2 grows from 6 to 9 units: still "conv2"
    cb2 = CriterionStatsCallback(TaskInputs(task=1, stats_csv=csv, tau=1e-8), task_statistics=False)
    _run_epoch(cb2, net, trainer)
    rows = read_rows(csv)
    layers = ["conv1", "conv2", "conv3", "fc1", "head"]
    assert {r["layer"] for r in rows} == set(layers)
    assert len(rows) == 2 * len(layers) * len(names)
    S, tasks, blocks = task_matrix(rows, "abs_frac", "conv")
    assert tasks == [0, 1] and blocks == ["conv1", "conv2", "conv3"] and S.shape == (2, 3)
    truncate_rows(csv, 1)
    assert {r["task"] for r in read_rows(csv)} == {0}


def _train_task(net, probe_x, freeze: tuple[int, ...] = (), steps: int = 6, lr: float = 0.2):
    """A task of plain SGD with the task statistics recorded around it; returns {statistic: values}."""
    for i in freeze:
        for p in net.blocks[i].parameters():
            p.requires_grad_(False)
    x, y = _batch(net.input_size, 12)
    probe = TaskProbe(net, probe_x, fisher_batches=lambda: [(x, y)], fisher_samples=12)
    probe.begin()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    probe.end()
    return {s.name: s.fn(probe) for s in statistics("task")}


def test_learning_statistics_are_zero_for_a_block_that_did_not_learn_and_positive_otherwise():
    net = _tiny_net(16, (8, 8, 8))
    probe_x = _batch(16, 32)[0]
    values = _train_task(net, probe_x, freeze=(1,))
    wc, drift, fisher = values["weight_change"], values["cka_drift"], values["fisher_importance"]
    assert wc[1] == 0.0 and wc[0] > 1e-3 and wc[2] > 1e-3
    # block 2's input is a frozen block's output, but block 1's own representation moves only through block 0
    assert drift[0] > 1e-4 and drift[2] > 1e-4
    assert sum(fisher) == pytest.approx(1.0) and all(f >= 0 for f in fisher)


def test_learning_statistics_measure_learning_not_architecture():
    """At 32 px the deepest blocks run on 2x2 maps, whose corner taps see one pixel: the paper's statistic already
    ranks them apart before any learning. A task that changes nothing leaves every learning statistic at zero."""
    torch.manual_seed(0)
    net = BlockNet(vgg_spec([8] * 13, input_size=32, hidden=[16], num_classes=3, dropout=0))
    x, y = _batch(32, 16)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    stats = [get_statistic("paper_signed_frac")]
    paper = [
        float(step_statistics(stats, [b.conv.weight.grad], [b.conv.weight], 5e-10)[0]) for b in net.blocks
    ]
    assert max(paper) - min(paper) > 0.05  # structural zeros, before any task was learned
    net.eval()  # with lr 0 and BatchNorm statistics kept, nothing is learned
    values = _train_task(net, x, steps=3, lr=0.0)
    assert values["weight_change"] == [0.0] * 13
    assert values["cka_drift"] == pytest.approx([0.0] * 13, abs=1e-9)


def test_linear_cka_is_one_for_the_same_geometry_and_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(20, 5, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))

    def gram(a):
        a = a - a.mean(0)
        return a @ a.T

    assert linear_cka(gram(f), gram(3.0 * f @ q)) == pytest.approx(1.0)
    assert linear_cka(gram(f), gram(torch.randn(20, 5, generator=g, dtype=torch.float64))) < 0.9


def test_callback_records_task_statistics_once_per_task(tmp_path):
    net, trainer = _tiny_net(16, (8, 8, 8)), _Trainer()
    x, y = _batch(16, 12)
    csv = tmp_path / "gradient_stats.csv"
    cb = CriterionStatsCallback(
        TaskInputs(
            task=0, stats_csv=csv, tau=1e-8, probe_x=x, fisher_batches=lambda: [(x, y)], fisher_samples=12
        )
    )
    cb.on_train_start(trainer, _Module(net))
    _run_epoch(cb, net, trainer, steps=2, lr=0.1)
    cb.on_train_end(trainer, _Module(net))
    rows = [r for r in read_rows(csv) if r["epoch"] == TASK_EPOCH]
    assert {r["statistic"] for r in rows} == {s.name for s in statistics("task")}
    assert len(rows) == 3 * len(statistics("task"))
    S, _, _ = task_matrix(read_rows(csv), "weight_change", normalise="first_task")
    assert S.tolist() == [[1.0, 1.0, 1.0]]


def test_a_torn_last_line_is_dropped_and_other_damage_named(tmp_path, caplog):
    csv = tmp_path / "gradient_stats.csv"
    rows = [
        {"task": 0, "epoch": 0, "layer": "conv1", "layer_type": "conv", "statistic": "abs_frac", "value": 0.5}
    ]
    append_rows(csv, rows * 2)
    with open(csv, "a") as f:
        f.write("0,1,conv1,conv,abs_fr")  # a kill in the middle of a write
    assert len(read_rows(csv)) == 2
    assert "torn last line" in caplog.text
    truncate_rows(csv, 5)
    assert csv.read_text().endswith("\n") and len(read_rows(csv)) == 2
    for empty in ("", "task,ep"):  # killed before or while writing the header: nothing recorded yet
        csv.write_text(empty)
        assert read_rows(csv) == []
        truncate_rows(csv, 0)
    csv.write_text("garbage\n")
    with pytest.raises(CheckpointError, match="gradient_stats.csv"):
        read_rows(csv)
    csv.write_text("task,epoch,layer,layer_type,statistic,value\n0,x,conv1,conv,abs_frac,1\n")
    with pytest.raises(CheckpointError, match="line 2"):
        read_rows(csv)


def test_a_gradient_stats_file_from_before_layer_type_is_read_and_resumed(tmp_path):
    """The layer column was called ``kind``: such a file is read as ``layer_type``, and the resume's truncation
    rewrites it with today's header, so rows appended afterwards match it."""
    csv = tmp_path / "gradient_stats.csv"
    csv.write_text(
        "task,epoch,layer,kind,statistic,value\n0,0,conv1,conv,abs_frac,0.5\n1,0,conv1,conv,abs_frac,0.7\n"
    )
    assert [r["layer_type"] for r in read_rows(csv)] == ["conv", "conv"]
    truncate_rows(csv, 1)
    append_rows(csv, [{"task": 1, "epoch": 0, "layer": "conv1", "layer_type": "conv", "statistic": "abs_frac",
                       "value": 0.25}])  # fmt: skip
    assert csv.read_text().splitlines()[0] == "task,epoch,layer,layer_type,statistic,value"
    assert task_matrix(read_rows(csv), "abs_frac")[0][:, 0].tolist() == [0.5, 0.25]


def test_task_matrix_last_epoch_mean_and_normalisation():
    rows = [
        {"task": t, "epoch": e, "layer": "conv1", "layer_type": "conv", "statistic": "abs_frac", "value": v}
        for t, e, v in [(0, 0, 0.2), (0, 1, 0.4), (1, 0, 0.1), (1, 1, 0.2)]
    ]
    assert task_matrix(rows, "abs_frac", aggregate="mean")[0][:, 0] == pytest.approx([0.3, 0.15])
    assert task_matrix(rows, "abs_frac", aggregate="last")[0][:, 0] == pytest.approx([0.4, 0.2])
    assert task_matrix(rows, "abs_frac", normalise="first_task")[0][:, 0] == pytest.approx([1.0, 0.5])


def test_step_statistics_read_the_accumulated_gradient_once_per_optimizer_step(tmp_path):
    """With accumulate_grad_batches=2 the callback records the gradient each optimizer step applies (both
    micro-batches summed), once per step; reading after every backward recorded half-accumulated gradients too."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from callbacks.criterion_stats import CriterionStatsCallback
    from callbacks.task_inputs import TaskInputs
    from learngene_core.criterion.records import read_rows

    class Module(L.LightningModule):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    class Reference(L.Callback):
        def __init__(self, stats):
            self.stats, self.seen = stats, []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            ws = pl_module.net.blocks[1].criterion_weights()
            self.seen.append(step_statistics(self.stats, [w.grad for w in ws], ws, 5e-10))

    torch.manual_seed(0)
    net = BlockNet(
        vgg_spec([4, 6, 6], pool_after=[1, 2, 3], input_size=8, hidden=[8], num_classes=3, dropout=0)
    )
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(24, 3, 8, 8, generator=g), torch.arange(24) % 3)
    csv = tmp_path / "stats.csv"
    cb = CriterionStatsCallback(TaskInputs(task=0, stats_csv=csv, tau=5e-10), task_statistics=False)
    ref = Reference(cb.step_stats)
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=2, callbacks=[cb, ref], logger=False,
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                        accelerator="cpu")  # fmt: skip
    trainer.fit(Module(net), DataLoader(data, batch_size=6))
    assert len(ref.seen) == 2  # 4 micro-batches, 2 optimizer steps
    expected = torch.stack(ref.seen).mean(0)
    rows = {(r["layer"], r["statistic"]): r["value"] for r in read_rows(csv)}
    for j, stat in enumerate(cb.step_stats):
        assert rows[(net.blocks[1].name, stat.name)] == pytest.approx(float(expected[j]), rel=1e-6), stat.name


def test_first_task_normalisation_keeps_a_block_inserted_by_deepening():
    """weight_change is normalised by each block's first task; a block deepening inserts before task 2 is
    normalised by its own first task (task 2) instead of becoming NaN everywhere and dropping the statistic."""
    from learngene_core.criterion.records import task_matrix

    rows = [{"task": t, "epoch": 0, "layer": layer, "layer_type": "conv", "statistic": "weight_change", "value": v}
            for t, vals in enumerate([(2.0, None, 4.0), (1.0, None, 2.0), (1.0, 3.0, 1.0), (0.5, 1.5, 1.0)])
            for layer, v in zip(("conv1", "conv2+1", "conv2"), vals) if v is not None]  # fmt: skip
    S, tasks, layers = task_matrix(rows, "weight_change", layer_order=["conv1", "conv2+1", "conv2"],
                                   normalise="first_task")  # fmt: skip
    assert tasks == [0, 1, 2, 3] and layers == ["conv1", "conv2+1", "conv2"]
    np.testing.assert_allclose(S[:, 0], [1.0, 0.5, 0.5, 0.25])
    np.testing.assert_allclose(S[:, 2], [1.0, 0.5, 0.25, 0.25])
    assert np.isnan(S[:2, 1]).all() and np.allclose(S[2:, 1], [1.0, 0.5])
