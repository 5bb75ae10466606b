"""The growing network: parameter counts, function-preserving widening and deepening, head growth."""

from __future__ import annotations

import copy

import pytest
import torch

from learngene_core.backbones.base import BlockNet, build_net, load_state_checked
from learngene_core.backbones.resnet12 import resnet12
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, deepen, vgg_spec
from learngene_core.errors import CheckpointError
from learngene_core.growth import distinct_units, grow_head, parse_schedule, widen


def randomise_bn(net: BlockNet, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def grow_all(net: BlockNet, noise: float = 0.0, seed: int = 1) -> list:
    g = torch.Generator().manual_seed(seed)
    return [widen(net, e["block"], e["units"], g, noise) for e in parse_schedule(PAPER_SCHEDULE)]


@pytest.mark.parametrize(
    ("size", "classes", "before", "after"),
    [(32, 64, 5_109_888, 16_363_648), (84, 100, 5_933_220, 17_973_412)],
)
def test_parameter_counts_match_the_paper(size, classes, before, after):
    net = BlockNet(vgg_spec(PAPER_WIDTHS, input_size=size, num_classes=classes))
    assert net.num_parameters() == before
    grow_all(net)
    assert net.widths == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert net.num_parameters() == after


@pytest.fixture(scope="module")
def paper_net_and_input():
    torch.manual_seed(0)
    net = BlockNet(vgg_spec(PAPER_WIDTHS, num_classes=64, dropout=0.0))
    randomise_bn(net)
    return net, torch.randn(8, 3, 32, 32)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_full_schedule_preserves_eval_and_train_outputs(paper_net_and_input, noise):
    base, x = paper_net_and_input
    base.eval()
    y_eval = base(x)
    train_ref = copy.deepcopy(base).train()
    y_train = train_ref(x)
    net = copy.deepcopy(base)
    maps = grow_all(net, noise)
    net.eval()
    assert rel_err(net(x), y_eval) < 1e-4
    grown_train = copy.deepcopy(net).train()
    assert rel_err(grown_train(x), y_train) < 1e-4
    if noise:  # noise really changed the incoming weights, yet the function is the same
        assert all(n.abs().max() > 0 for m in maps for n in m.noise)


def test_widening_copies_unit_tensors_and_divides_next_layer():
    torch.manual_seed(0)
    net = BlockNet(
        vgg_spec([8, 8, 8], pool_after=[1, 2, 3], input_size=8, hidden=[16], num_classes=3, dropout=0)
    )
    randomise_bn(net)
    old = copy.deepcopy(net)
    wmap = widen(net, 1, 5, torch.Generator().manual_seed(3)).maps[-1]
    b_old, b_new = old.blocks[1], net.blocks[1]
    for j, src in enumerate(wmap.src.tolist()):
        for name in ("running_mean", "running_var", "weight", "bias"):
            assert getattr(b_new.bn, name)[j] == getattr(b_old.bn, name)[src]
        assert torch.equal(b_new.conv.weight[j], b_old.conv.weight[src])
        assert b_new.conv.bias[j] == b_old.conv.bias[src]
        k = int(wmap.counts[src])
        torch.testing.assert_close(net.blocks[2].conv.weight[:, j], old.blocks[2].conv.weight[:, src] / k)
    assert int(wmap.counts.sum()) == 13


def test_widening_the_last_conv_widens_linear_column_groups():
    torch.manual_seed(0)
    net = BlockNet(vgg_spec([4, 6], pool_after=[1], input_size=8, hidden=[10], num_classes=3, dropout=0))
    randomise_bn(net)
    x = torch.randn(5, 3, 8, 8)
    net.eval()
    y = net(x)
    wmap = widen(net, 1, 3, torch.Generator().manual_seed(0)).maps[-1]
    assert wmap.consumers == [("fcs.0.weight", 16)]  # 4x4 spatial positions per channel
    assert net.fcs[0].in_features == 9 * 16
    assert rel_err(net(x), y) < 1e-5


def test_head_growth_keeps_old_logits(paper_net_and_input):
    base, x = paper_net_and_input
    net = copy.deepcopy(base).eval()
    y = net(x)
    grow_head(net, 7, torch.Generator().manual_seed(0))
    out = net(x)
    assert out.shape == (8, 71)
    torch.testing.assert_close(out[:, :64], y)


def test_deepening_is_identity_in_eval_mode_and_calibrated_train_mode(paper_net_and_input):
    base, x = paper_net_and_input
    ref = copy.deepcopy(base).eval()
    y_eval = ref(x)
    y_train = copy.deepcopy(base).train()(x)
    net = copy.deepcopy(base)
    name = deepen(net, 6)
    assert name == "conv7+1" and net.block_names[7] == "conv7+1" and len(net.blocks) == 14
    assert rel_err(net.eval()(x), y_eval) < 1e-5
    cal = copy.deepcopy(base)
    deepen(cal, 6, calibration=x)
    assert rel_err(copy.deepcopy(cal).eval()(x), y_eval) < 1e-4
    assert rel_err(copy.deepcopy(cal).train()(x), y_train) < 1e-4


def test_loading_a_checkpoint_into_other_shapes_names_the_tensor():
    small = BlockNet(vgg_spec([8, 8], pool_after=[1, 2], input_size=8, hidden=[16], num_classes=3))
    big = copy.deepcopy(small)
    widen(big, 0, 4)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.conv\.weight.*\(12, 3, 3, 3\).*\(8, 3, 3, 3\)"):
        load_state_checked(small, big.state_dict(), "task_03.pt")
    load_state_checked(big, copy.deepcopy(big).state_dict(), "ok")  # same shapes load


@pytest.mark.slow
def test_compiled_collective_module_matches_eager_across_a_widening():
    """``trainer.compile=true``: each task's module compiles afresh and computes what the eager network does."""
    from lightning_modules.collective_module import CollectiveModule

    torch.manual_seed(0)
    net = BlockNet(
        vgg_spec([4, 4, 6, 6, 8, 8], pool_after=[2, 4, 6], input_size=16, hidden=[16, 16], num_classes=3)
    )
    net.eval()
    x = torch.randn(4, 3, 16, 16)
    for task in range(2):
        if task:
            widen(net, 2, 3, generator=torch.Generator().manual_seed(0))
        module = CollectiveModule(net, optimizer=torch.optim.SGD, task=task, compile=True)
        module.eval()
        with torch.no_grad():
            assert rel_err(module(x), net(x)) < 1e-4


def _sgd_steps(net, x, y, steps=3, lr=0.05):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_copies_separate_in_training_only_with_symmetry_breaking_noise(noise):
    """Without noise a copied filter and its source get identical gradients forever (growth adds no capacity);
    with the zero-sum noise on their outgoing weights every copy differs from its source after a few steps."""
    torch.manual_seed(0)
    net = BlockNet(
        vgg_spec([8, 8, 8], pool_after=[1, 2, 3], input_size=16, hidden=[16], num_classes=4, dropout=0)
    )
    w = widen(net, 1, 8, torch.Generator().manual_seed(1), noise=noise)
    assert distinct_units(net.blocks[1].unit_weights()) == 8  # right after widening: exact copies
    x, y = torch.randn(16, 3, 16, 16), torch.arange(16) % 4
    _sgd_steps(net, x, y)
    src = w.maps[-1].src
    copies = [j for j in range(8, 16)]
    rows = net.blocks[1].unit_weights()
    differ = [not torch.equal(rows[j], rows[int(src[j])]) for j in copies]
    if noise:
        assert all(differ) and net.distinct_filters()[1] == 16
    else:
        assert not any(differ) and net.distinct_filters()[1] == 8


def test_the_default_growth_noise_breaks_symmetry():
    from tests.conftest import compose

    assert compose([]).model.growth.noise > 0
    assert compose(["model=resnet12"]).model.growth.noise > 0


def test_resnet12_widening_preserves_eval_and_train_outputs_and_separates_copies():
    torch.manual_seed(0)
    net = resnet12(input_size=32, in_channels=3, num_classes=5, widths=[8, 12, 16, 20])
    randomise_bn(net)
    x = torch.randn(6, 3, 32, 32)
    net.eval()
    y_eval = net(x)
    y_train = copy.deepcopy(net).train()(x)
    before = net.num_parameters()
    widenings = [widen(net, b, 4 + b, torch.Generator().manual_seed(b), noise=0.01) for b in range(4)]
    assert net.widths == [12, 17, 22, 27] and net.num_parameters() > before
    assert all(len(w.maps) == 3 for w in widenings)  # conv1, conv2 and the block output (conv3 + shortcut)
    assert rel_err(net.eval()(x), y_eval) < 1e-4
    assert rel_err(copy.deepcopy(net).train()(x), y_train) < 1e-4
    rebuilt = build_net(net.spec.to_dict())  # the spec round-trips through its dict form
    load_state_checked(rebuilt, net.state_dict(), "round trip")
    assert rel_err(rebuilt.eval()(x), y_eval) < 1e-4
    assert net.distinct_filters() == [8, 12, 16, 20]  # copies are exact right after widening
    _sgd_steps(net, x, torch.arange(6) % 5)
    assert net.distinct_filters() == net.widths


def test_resnet12_cannot_deepen_and_names_why():
    net = resnet12(input_size=32, in_channels=3, num_classes=5, widths=[8, 8, 8, 8])
    with pytest.raises(ValueError, match="resnet12"):
        deepen(net, 1)
