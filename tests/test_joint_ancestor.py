"""The joint ancestor (``collective.mode=joint``): one seeded stream over all base images, one optimizer and
LR schedule for the whole run, the continual stream's sample-steps, resumable exactly; on the digits quickstart."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import TINY, compose, kill_collective_after_task

from experiments.pipeline.collective.joint import RunOptimizer
from experiments.pipeline.collective.setup import initial_net, make_datamodule
from experiments.pipeline.context import RunContext
from experiments.pipeline.plan import continual_task_sizes, make_stream
from experiments.pipeline.run_guard import RunInterrupted
from experiments.pipeline.runner import run_pipeline
from learngene_core.criterion.records import read_rows
from learngene_core.data.task_stream import make_task_stream
from learngene_core.errors import ConfigError
from lightning_modules.lr_schedules import warmup_cosine_factor

C0 = "collective/seed_0"
JOINT = [*TINY, "collective.mode=joint", "trainer.deterministic=true"]
LRS: list[tuple[int, int, float]] = []  # (task, id of the optimizer, lr) per optimizer step


class LrRecorder(L.Callback):
    """Records the lr every training step uses (joined to the collective Trainers via the config)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        opt = trainer.optimizers[0]
        LRS.append((pl_module.task, id(opt), opt.param_groups[0]["lr"]))


def _joint_dm(overrides=()):
    cfg = compose([*JOINT, *overrides])
    ctx = RunContext(cfg, "/tmp/unused")
    stream = make_stream(cfg, ctx.image_set, 0)
    return cfg, ctx, make_datamodule(ctx, stream, 0)


@pytest.mark.parametrize("per_class", [None, 7])
def test_the_plans_task_sizes_are_the_continual_datamodules(per_class):
    from datamodules.sequential_tasks import SequentialTasksDataModule

    cfg = compose([*TINY, f"collective.train_per_class={'null' if per_class is None else per_class}"])
    image_set = RunContext(cfg, "/tmp/unused").image_set
    stream = make_task_stream(image_set.groups["base"], 4, cfg.collective.classes_per_task, 3, True)
    dm = SequentialTasksDataModule(image_set, stream, train_per_class=per_class, seed=3, on_device=False)
    assert continual_task_sizes(cfg, image_set, stream, 3) == [dm.task_size(t) for t in range(4)]


def test_loader_yields_the_planned_sample_steps_and_covers_every_base_image_once_per_pass():
    cfg, ctx, dm = _joint_dm(["budget.collective_epochs=3"])
    plan, image_set = dm.plan, ctx.image_set
    # as many sample-steps as the continual stream: n_tasks x its task sizes x epochs
    cont = make_task_stream(
        image_set.groups["base"], cfg.collective.n_tasks, cfg.collective.classes_per_task, 0
    )
    assert plan.total == sum(continual_task_sizes(cfg, image_set, cont, 0)) * 3
    base = set(image_set.groups["base"])
    base_idx = sorted(int(i) for i, y in enumerate(image_set.y_train.tolist()) if y in base)
    assert plan.n_images == len(base_idx) and plan.passes > 2  # a fractional last pass

    seen, labels, steps = [], [], 0
    for t in range(cfg.collective.n_tasks):
        dm.set_task(t)
        assert len(plan.epoch_steps(t)) == dm.fit_epochs(t) == 3
        chunk_samples = 0
        for e in range(dm.fit_epochs(t)):
            dm.trainer = SimpleNamespace(current_epoch=e, global_rank=0, world_size=1)
            loader = dm.train_dataloader()
            assert len(loader) == len(plan.epoch_steps(t)[e])
            for x, y in loader:
                assert x.dtype == torch.float32 and len(x) == len(y) <= 64
                idx = dm.batch_indices(steps)
                seen += idx.tolist()
                labels += y.tolist()
                chunk_samples += len(y)
                steps += 1
        assert chunk_samples == dm.fit_samples(t) == dm.stream[t].samples
    dm.trainer = None
    assert steps == plan.steps and len(seen) == plan.total  # exactly the planned sample-steps
    n = plan.n_images
    for p in range(plan.total // n):  # every full pass: each base training image exactly once
        assert sorted(seen[p * n : (p + 1) * n]) == base_idx
    assert len(set(seen[(plan.total // n) * n :])) == plan.total % n  # the partial last pass: no repeats
    # labels are the global head rows of the images' classes
    head = {c: i for i, c in enumerate(dm.order)}
    assert labels == [head[int(image_set.y_train[i])] for i in seen]
    # the tasks are equal consecutive chunks of the steps
    sizes = [len(plan.chunk(t)) for t in range(plan.n_tasks)]
    assert (
        max(sizes) - min(sizes) <= 1
        and plan.chunk(0).start == 0
        and plan.chunk(plan.n_tasks - 1).stop == plan.steps
    )


def test_data_parallel_ranks_split_each_global_batch():
    _, _, dm = _joint_dm()
    dm.set_task(1)
    per_rank = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(current_epoch=0, global_rank=rank, world_size=2)
        per_rank.append(dm.train_dataloader().batches)
    dm.trainer = None
    steps = dm.plan.epoch_steps(1)[0]
    assert len(per_rank[0]) == len(per_rank[1]) == len(steps)
    for s, a, b in zip(
        steps, *per_rank
    ):  # the loaders' index batches before sharding; shard them as each rank does
        full = dm.batch_indices(s)
        assert torch.equal(a, full) and torch.equal(b, full)
    dm.trainer = SimpleNamespace(current_epoch=0, global_rank=1, world_size=2)
    loader = dm.train_dataloader()
    odd = torch.tensor([0, 1, 2], dtype=torch.long)
    loader.batches = [odd]
    x, y = next(iter(loader))  # rank 1 of a 3-image batch: image 1 and the wrapped image 0 (padding)
    dm.trainer = None
    assert len(y) == 2


def test_warmup_cosine_factor():
    total = 100
    f = [warmup_cosine_factor(s, total, 0.05, 0.0) for s in range(total)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and f[5] == pytest.approx(1.0)
    assert f[-1] == pytest.approx(0.0, abs=1e-12) and all(a >= b for a, b in zip(f[5:], f[6:]))


def test_growth_keeps_unchanged_parameters_state_and_the_schedule_position():
    cfg = compose([*JOINT, "collective.joint_growth=true"])
    ctx = RunContext(cfg, "/tmp/unused")
    s = ctx.collective
    net = initial_net(s, ctx.image_set.channels, 5, 0)
    run = RunOptimizer(s.optimizer, s.lr_schedule, net, 50)
    for _ in range(3):
        run.optimizer.zero_grad()
        net(torch.randn(4, 3, 32, 32)).sum().backward()
        run.optimizer.step()
        run.scheduler.step()
    lr = run.optimizer.param_groups[0]["lr"]
    before = {n: run.optimizer.state[p]["momentum_buffer"].clone() for n, p in net.named_parameters()}
    net.widen(2, 4, torch.Generator().manual_seed(0), 0.5)
    run.rebuild(net)
    assert run.scheduler.last_epoch == 3 and run.optimizer.param_groups[0]["lr"] == lr
    for n, p in net.named_parameters():
        if before[n].shape == p.shape:
            assert torch.equal(run.optimizer.state[p]["momentum_buffer"], before[n]), n
        else:
            assert p not in run.optimizer.state, n


@pytest.mark.parametrize(
    "override, message",
    [
        ("collective.mode=jointly", r"collective.mode='jointly'"),
        ("collective.joint_growth=maybe", r"collective.joint_growth='maybe'"),
        ("collective.lr_schedule=cosine", r"collective.lr_schedule='cosine': null .* or a node"),
        ("+collective.lr_schedule={_target_:lightning_modules.lr_schedules.warmup_cosine,_partial_:true,warmup:2}",
         r"collective.lr_schedule=.*cannot build a scheduler \(ValueError: warmup=2"),
    ],
)  # fmt: skip
def test_bad_joint_settings_are_refused_in_one_line(tmp_path, override, message):
    from experiments.pipeline.config_check import check_config

    cfg = compose([*JOINT, override.lstrip("+")], tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        check_config(cfg)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """The quickstart pipeline end to end with the joint ancestor (every stage; two methods)."""
    out = tmp_path_factory.mktemp("joint")
    LRS.clear()
    cfg = compose(
        [*JOINT, "methods=[learngene,scratch]", "+callbacks.lr._target_=test_joint_ancestor.LrRecorder"], out
    )
    result = run_pipeline(cfg, out)
    return out, result, list(LRS)


def test_quickstart_pipeline_runs_end_to_end_with_the_joint_ancestor(joint_run):
    out, result, _ = joint_run
    manifest = json.loads((out / C0 / "manifest.json").read_text())
    joint = manifest["joint"]
    assert manifest["mode"] == "joint" and len(manifest["tasks"]) == 3
    assert sum(e["samples"] for e in manifest["tasks"]) == joint["total_samples"]
    assert [e["optimizer_steps"] for e in manifest["tasks"]] == joint["task_steps"]
    # growth off: the continual run's final architecture from the start, the head over all base classes
    assert len({tuple(e["widths"]) for e in manifest["tasks"]}) == 1 and all(
        e["growth"] is None for e in manifest["tasks"]
    )
    assert manifest["tasks"][0]["head_size"] == 5
    metrics = json.loads((out / C0 / "metrics.json").read_text())
    assert "chunk" in metrics["mode_note"] and len(metrics["class_incremental"]["accuracy_matrix"]) == 3
    rows = read_rows(out / C0 / "gradient_stats.csv")
    assert {r["task"] for r in rows} == {0, 1, 2}  # criterion statistics per task (and per epoch)
    for t in range(3):
        assert (out / C0 / f"task_{t:02d}.pt").is_file()
    assert (out / "learngene" / "seed_0" / "learngene.pt").is_file()
    assert result["collective_mode"] == "joint" and result["tables"]["5"][0]["method"] == "learngene"
    assert result["collective"]["per_seed"]["0"]["task_il_chance"] == pytest.approx(1 / 5)


def test_one_optimizer_and_the_schedule_run_over_the_whole_run(joint_run):
    out, _, lrs = joint_run
    manifest = json.loads((out / C0 / "manifest.json").read_text())
    total = manifest["joint"]["optimizer_steps"]
    assert len(lrs) == total and [t for t, _, _ in lrs] == sorted(t for t, _, _ in lrs)
    assert len({o for _, o, _ in lrs}) == 1  # one optimizer object for every task
    expected = [0.01 * warmup_cosine_factor(s, total, 0.05, 0.0) for s in range(total)]
    assert [lr for _, _, lr in lrs] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    state = torch.load(out / C0 / "task_02.pt", weights_only=False)["optimizer"]
    assert state["scheduler"]["last_epoch"] == total and state["optimizer"]["state"]  # momentum saved


def test_killed_joint_run_resumes_exactly(joint_run, tmp_path, monkeypatch):
    straight = joint_run[0]
    resumed = tmp_path / "resumed"
    cfg = [*JOINT, "stage=[collective]", "methods=[learngene,scratch]"]
    undo_kill = kill_collective_after_task(monkeypatch, 1)
    with pytest.raises(RunInterrupted):
        run_pipeline(compose(cfg, resumed), resumed)
    assert not (resumed / C0 / "task_02.pt").exists()
    undo_kill()
    run_pipeline(compose(cfg, resumed), resumed)
    a = torch.load(straight / C0 / "task_02.pt", weights_only=False)
    b = torch.load(resumed / C0 / "task_02.pt", weights_only=False)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer"]["optimizer"]["state"], b["optimizer"]["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(
        torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa
    )
    assert a["optimizer"]["scheduler"] == b["optimizer"]["scheduler"]
    ma = json.loads((straight / C0 / "metrics.json").read_text())
    mb = json.loads((resumed / C0 / "metrics.json").read_text())
    for kind in ("class_incremental", "task_incremental", "open_world", "parameters"):
        assert ma[kind] == mb[kind], kind
    key = lambda r: (r["task"], r["epoch"], r["layer"], r["statistic"])  # noqa: E731
    va = {key(r): r["value"] for r in read_rows(straight / C0 / "gradient_stats.csv")}
    vb = {key(r): r["value"] for r in read_rows(resumed / C0 / "gradient_stats.csv")}
    assert va == vb and np.isfinite(list(va.values())).all()


def test_continual_fingerprint_is_unchanged_by_the_joint_keys_and_joint_records_its_schedule():
    from experiments.pipeline.collective.setup import fingerprint

    cont = fingerprint(compose(TINY), 0)["config"]["collective"]
    assert "lr_schedule" not in cont and "joint_growth" not in cont  # earlier continual runs still resume
    joint = fingerprint(compose(JOINT), 0)["config"]["collective"]
    assert joint["lr_schedule"]["_target_"].endswith("warmup_cosine") and joint["joint_growth"] is False


def test_continual_modules_can_run_a_schedule_over_each_task(tmp_path):
    """A non-constant ``collective.lr_schedule`` in continual mode: a fresh schedule over each task's steps."""
    from functools import partial

    from learngene_core.backbones.vgg import vgg
    from lightning_modules.collective_module import CollectiveModule
    from lightning_modules.lr_schedules import warmup_cosine

    torch.manual_seed(0)
    net = vgg(32, 3, 3, widths=[4, 4], pool_after=[1, 2], hidden=[8, 8])
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))) for _ in range(5)]
    data = type(
        "Loader", (), {"__iter__": lambda self: iter(batches), "__len__": lambda self: len(batches)}
    )()
    LRS.clear()
    module = CollectiveModule(
        net, partial(torch.optim.SGD, lr=0.1), lr_schedule=partial(warmup_cosine, warmup=0.4)
    )
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[LrRecorder()],
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, train_dataloaders=data)
    assert [lr for _, _, lr in LRS] == pytest.approx(
        [0.1 * warmup_cosine_factor(s, 10, 0.4) for s in range(10)]
    )
