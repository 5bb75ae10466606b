"""The individual network, the learngene artifact and batched (stacked) training."""

from __future__ import annotations

import copy
import functools

import lightning as L
import pytest
import torch

from learngene_core.artifact import extract_learngene, load_learngene, save_learngene
from learngene_core.backbones.base import BlockNet
from learngene_core.backbones.vgg import PAPER_SCHEDULE, PAPER_WIDTHS, vgg_spec
from learngene_core.data.augmentation import BatchAugment
from learngene_core.data.loaders import TaskBatchLoader
from learngene_core.errors import CheckpointError
from learngene_core.growth import parse_schedule, widen
from learngene_core.individual import build_individual, individual_spec, inherited_parameters
from learngene_core.stacked import stack_nets
from lightning_modules.individual_module import IndividualModule


def paper_collective() -> BlockNet:
    torch.manual_seed(0)
    net = BlockNet(vgg_spec(PAPER_WIDTHS))
    for e in parse_schedule(PAPER_SCHEDULE):
        widen(net, e["block"], e["units"])
    return net


def small_collective(seed: int = 0) -> BlockNet:
    torch.manual_seed(seed)
    return BlockNet(
        vgg_spec([8, 8, 12, 12, 16, 16], pool_after=[2, 4, 6], input_size=16, hidden=[32, 32], num_classes=5)
    )


def test_paper_individual_network_shape_and_parameter_counts():
    learngene = extract_learngene(paper_collective(), 10, 3)
    spec, n_lower = individual_spec(learngene, ways=5)
    net = build_individual(learngene, spec, n_lower, seed=0)
    assert [(b.conv.in_channels, b.conv.out_channels, b.pools) for b in net.blocks] == [
        (3, 64, 1), (64, 128, 1), (128, 256, 1), (256, 512, 0), (512, 512, 0), (512, 512, 0), (512, 512, 0)
    ]  # fmt: skip
    assert net.num_parameters() == 11_788_293
    assert inherited_parameters(net, n_lower) == 7_082_496 == learngene.num_parameters()
    assert net.fcs[0].in_features == 512 * 2 * 2
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_content_digest_ignores_provenance_but_not_tensors(tmp_path):
    net = small_collective()
    learngene = extract_learngene(net, 2, 3, meta={"code_version": "aaaa", "collective_task": 3})
    save_learngene(learngene, tmp_path / "learngene.pt")
    reloaded = load_learngene(tmp_path / "learngene.pt", 16, 3)
    reloaded.meta["code_version"] = "bbbb"  # a new commit re-extracting the same window
    assert reloaded.content_digest() == learngene.content_digest()
    reloaded.state[1]["conv.weight"][0, 0, 0, 0] += 1e-3
    assert reloaded.content_digest() != learngene.content_digest()
    assert extract_learngene(net, 1, 3, meta=learngene.meta).content_digest() != learngene.content_digest()


def test_inherited_tensors_equal_the_artifact_and_every_task_starts_fresh(tmp_path):
    collective = small_collective()
    learngene = extract_learngene(collective, 3, 3)
    save_learngene(learngene, tmp_path / "learngene.pt")
    learngene = load_learngene(tmp_path / "learngene.pt", input_size=16, image_channels=3)
    spec, n_lower = individual_spec(learngene, ways=3, hidden=[16, 16], base_width=8)
    first = build_individual(learngene, spec, n_lower, seed=1)
    for j, st in enumerate(learngene.state):
        for key, value in first.blocks[n_lower + j].state_dict().items():
            assert torch.equal(value, st[key]), key
    with torch.no_grad():  # "train" the first task's network
        for p in first.parameters():
            p.add_(1.0)
    second = build_individual(learngene, spec, n_lower, seed=2)
    for j, st in enumerate(learngene.state):
        assert torch.equal(second.blocks[n_lower + j].conv.weight, st["conv.weight"])
    # same seed -> same random layers; scratch has the same architecture but random inherited blocks
    again = build_individual(learngene, spec, n_lower, seed=2)
    assert torch.equal(again.blocks[0].conv.weight, second.blocks[0].conv.weight)
    scratch = build_individual(learngene, spec, n_lower, seed=2, inherit=False)
    assert not torch.equal(scratch.blocks[n_lower].conv.weight, learngene.state[0]["conv.weight"])
    assert scratch.num_parameters() == second.num_parameters()


def test_lower_stack_pools_match_mode_uses_the_collective_resolution():
    learngene = extract_learngene(
        small_collective(), 4, 2
    )  # blocks 5-6: the collective pooled twice before them
    spec, n_lower = individual_spec(learngene, ways=3, base_width=8, lower_pools="match")
    assert sum(b.pools for b in spec.blocks[:n_lower]) == learngene.pools_before == 2
    spec_p, _ = individual_spec(learngene, ways=3, base_width=8, lower_pools="paper")
    assert [b.out_channels for b in spec_p.blocks[:n_lower]] == [8, 12]


def test_artifact_errors_are_clear(tmp_path):
    learngene = extract_learngene(small_collective(), 1, 3)
    path = save_learngene(learngene, tmp_path / "learngene.pt")
    with pytest.raises(CheckpointError, match="16 px.*32 px"):
        load_learngene(path, input_size=32)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a learngene of this suite"):
        load_learngene(tmp_path / "other.pt")
    bad = learngene.to_dict()
    bad["state"][1]["conv.weight"] = torch.zeros(5, 8, 3, 3)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'conv.weight' has shape"):
        load_learngene(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_learngene(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_learngene(tmp_path / "junk.pt")


def _train(nets, idx, y, seeds, x, epochs=3, dropout_seeds=None, freeze=()):
    stacked = stack_nets(nets)
    if dropout_seeds:
        stacked.set_dropout_generators([torch.Generator().manual_seed(s) for s in dropout_seeds])
    sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)
    module = IndividualModule(
        stacked, optimizer=sgd, inherited_blocks=list(freeze), freeze_inherited=bool(freeze)
    )
    module.log = lambda *a, **k: None
    loader = TaskBatchLoader(x, idx, y, batch_size=4, augment=BatchAugment(), seeds=seeds)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    return stacked.to_nets()


def _images_with_flat_regions(g: torch.Generator) -> torch.Tensor:
    """uint8 images with constant patches, like real photos: exact ties inside max-pool windows."""
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    x[:, :, :6, :6] = 128
    x[::2, :, 8:, 8:] = 0
    return x


def _setup(which: str, g: torch.Generator):
    if which == "individual":
        learngene = extract_learngene(small_collective(), 2, 3)
        spec, n_lower = individual_spec(learngene, ways=3, hidden=[16, 16], base_width=8)
        return [lambda s=s: build_individual(learngene, spec, n_lower, seed=s) for s in range(3)], None
    base = small_collective()  # the collective network with dropout and a new head (fine-tuning)
    base.head = torch.nn.Linear(32, 3)
    return [lambda: copy.deepcopy(base) for _ in range(3)], [5, 6, 7]


@pytest.mark.parametrize("which", ["individual", "finetune"])
def test_batched_training_is_bitwise_one_by_one_training(which):
    """Training T tasks as one stacked model gives exactly what training each alone gives (same seeds)."""
    g = torch.Generator().manual_seed(0)
    x = _images_with_flat_regions(g)
    idx = torch.stack([torch.randperm(40, generator=g)[:10] for _ in range(3)])
    y = torch.randint(0, 3, (3, 10), generator=g)
    seeds = [11, 22, 33]
    make, drop = _setup(which, g)
    batched = _train([m() for m in make], idx, y, seeds, x, epochs=6, dropout_seeds=drop)
    for t in range(3):
        alone = _train([make[t]()], idx[t : t + 1], y[t : t + 1], [seeds[t]], x, epochs=6,
                       dropout_seeds=drop and [drop[t]])[0]  # fmt: skip
        for (k, a), b in zip(batched[t].state_dict().items(), alone.state_dict().values()):
            assert torch.equal(a, b), f"task {t} {k}"


def test_frozen_inherited_blocks_do_not_change():
    learngene = extract_learngene(small_collective(), 2, 3)
    spec, n_lower = individual_spec(learngene, ways=3, hidden=[16, 16], base_width=8)
    net = build_individual(learngene, spec, n_lower, seed=0)
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    idx, y = torch.arange(12)[None], torch.randint(0, 3, (1, 12))
    trained = _train([net], idx, y, [1], x, epochs=2, freeze=range(n_lower, len(spec.blocks)))[0]
    for j in range(n_lower, len(spec.blocks)):
        assert torch.equal(trained.blocks[j].conv.weight, net.blocks[j].conv.weight)
        assert torch.equal(trained.blocks[j].bn.running_mean, net.blocks[j].bn.running_mean)
    assert not torch.equal(trained.blocks[0].conv.weight, net.blocks[0].conv.weight)
