"""EWC stays correct while the network grows (the original's EWC term was always zero)."""

from __future__ import annotations

import copy

import torch

from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import vgg_spec
from learngene_core.ewc import EWC, fisher_diagonal
from learngene_core.growth import grow_head, widen


def small_net(seed: int = 0) -> BlockNet:
    torch.manual_seed(seed)
    return BlockNet(
        vgg_spec([6, 8, 8], pool_after=[1, 2, 3], input_size=8, hidden=[12], num_classes=4, dropout=0.0)
    )


def batches(n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return [(x[:12], y[:12]), (x[12:], y[12:])]


def test_penalty_is_exactly_zero_after_widening_at_the_anchor():
    net = small_net()
    ewc = EWC(lam=10.0)
    ewc.consolidate(net, batches())
    assert ewc.penalty(net).item() == 0.0
    for block, units in [(0, 3), (1, 5), (2, 4)]:  # the last one widens the linear layer's column groups
        wmap = widen(net, block, units, torch.Generator().manual_seed(block), noise=0.05)
        ewc.widen(wmap)
        assert ewc.penalty(net).item() == 0.0
    assert ewc.fisher["blocks.2.conv.weight"].shape == net.blocks[2].conv.weight.shape
    assert ewc.fisher["fcs.0.weight"].shape == net.fcs[0].weight.shape


def test_penalty_grows_away_from_the_anchor_and_its_gradient_pulls_back():
    net = small_net()
    ewc = EWC(lam=5.0)
    ewc.consolidate(net, batches())
    ewc.widen(widen(net, 1, 4, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = ewc.penalty(net).item()
    assert before > 0
    dist_before = sum(float(((p.detach() - ewc.anchor[n]) ** 2).sum()) for n, p in net.named_parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        ewc.penalty(net).backward()
        opt.step()
    assert ewc.penalty(net).item() < before
    dist_after = sum(float(((p.detach() - ewc.anchor[n]) ** 2).sum()) for n, p in net.named_parameters())
    assert dist_after < dist_before


def test_widened_fisher_equals_the_fisher_of_the_widened_network():
    net = small_net()
    data = batches(16)
    f_before = fisher_diagonal(net, data, max_samples=16)
    ewc = EWC(lam=1.0)
    ewc.fisher = dict(f_before)
    ewc.anchor = {n: p.detach().clone() for n, p in net.named_parameters()}
    wmap = widen(net, 1, 5, torch.Generator().manual_seed(2))
    ewc.widen(wmap)
    f_after = fisher_diagonal(net, data, max_samples=16)
    for name, value in f_after.items():
        torch.testing.assert_close(ewc.fisher[name], value, rtol=1e-4, atol=1e-10)


def test_head_growth_gives_new_rows_zero_fisher_and_keeps_old_values():
    net = small_net()
    ewc = EWC(lam=1.0)
    ewc.consolidate(net, batches())
    old = ewc.fisher["head.weight"].clone()
    grow_head(net, 3)
    ewc.sync_new_parameters(net)
    f = ewc.fisher["head.weight"]
    assert f.shape == (7, 12)
    torch.testing.assert_close(f[:4], old)
    assert float(f[4:].abs().sum()) == 0.0
    assert ewc.penalty(net).item() == 0.0


def test_online_fisher_accumulates_with_gamma_and_sampled_mode_runs():
    net = small_net()
    ewc = EWC(lam=1.0, gamma=0.5)
    ewc.consolidate(net, batches())
    f1 = ewc.fisher["head.weight"].clone()
    ewc.consolidate(net, batches())
    torch.testing.assert_close(ewc.fisher["head.weight"], 1.5 * f1)
    sampled = fisher_diagonal(net, batches(), mode="sampled", generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in sampled.values())


def test_collective_module_loss_includes_the_penalty():
    from lightning_modules.collective_module import CollectiveModule

    net = small_net()
    ewc = EWC(lam=100.0)
    ewc.consolidate(net, batches())
    moved = copy.deepcopy(net)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.1)
    x, y = batches()[0]
    module = CollectiveModule(moved, optimizer=torch.optim.SGD, ewc=ewc)
    module.log = lambda *a, **k: None
    loss = module.training_step((x, y), 0)
    ce = torch.nn.functional.cross_entropy(moved(x), y)
    assert float((loss - ce).detach()) > 0
    torch.testing.assert_close(loss - ce, ewc.penalty(moved))


def test_widened_fisher_under_growth_noise_is_exact_except_for_the_copies_own_parameters():
    """With symmetry-breaking noise (zero-sum on the copies' outgoing weights) the anchors, the consumers'
    Fisher and every untouched parameter's Fisher stay exact, but the widened block's own parameters get the
    noise-free F / k^2: the noise changes the gradient back-propagated to each copy (which is what separates
    the copies), and the stored diagonal cannot give that term. docs/method.md states the error: about
    proportional to the noise, within 3 % / 25 % / 65 % (relative L1, per tensor) at noise 0.01 / 0.1 / 0.5."""
    bounds = {0.0: 1e-4, 0.01: 0.03, 0.1: 0.25, 0.5: 0.65}
    worst = {}
    for noise, bound in bounds.items():
        for seed, (block, units) in enumerate([(0, 3), (1, 5), (2, 4)]):
            net = small_net(seed)
            data = batches(64, seed)
            ewc = EWC(lam=1.0)
            ewc.fisher = fisher_diagonal(net, data, max_samples=64)
            ewc.anchor = {n: p.detach().clone() for n, p in net.named_parameters()}
            wmap = widen(net, block, units, torch.Generator().manual_seed(seed), noise=noise)
            ewc.widen(wmap)
            assert ewc.penalty(net).item() == 0.0
            own = {k for m in wmap.maps for k in m.own}
            for name, value in fisher_diagonal(net, data, max_samples=64).items():
                if name in own:
                    err = float((ewc.fisher[name] - value).abs().sum() / value.abs().sum())
                    worst[noise] = max(worst.get(noise, 0.0), err)
                    assert err <= bound, (noise, name, err)
                else:  # consumers and untouched parameters: exact at any noise
                    torch.testing.assert_close(ewc.fisher[name], value, rtol=1e-4, atol=1e-10)
    assert worst[0.0] < 1e-4 and worst[0.01] > 1e-3 and worst[0.5] > 0.1  # exact only without noise
