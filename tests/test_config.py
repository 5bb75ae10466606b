"""Config composition (experiments x budgets x data sources) and the up-front config check."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, compose

from experiments.pipeline.config_check import check_config
from learngene_core.errors import ConfigError


@pytest.mark.parametrize("exp", [None, "cifar_fewshot", "miniimagenet_fewshot"])
@pytest.mark.parametrize("budget", [None, "small", "paper", "quickstart"])
def test_every_experiment_and_budget_composes_and_checks(exp, budget, tmp_path):
    overrides = []
    if exp:
        overrides.append(f"+exp={exp}")
    if budget:
        overrides.append(f"budget={budget}")
    if exp == "miniimagenet_fewshot":
        overrides.append(f"data.path={tmp_path}")
    if exp is None and budget == "paper":  # the paper's numbers come from a paper experiment
        with pytest.raises(ConfigError, match=r"budget=paper .* add \+exp=cifar_fewshot"):
            check_config(compose(overrides, tmp_path, resolve=False))
        return
    cfg = compose(overrides, tmp_path)
    check_config(cfg)
    if budget:
        assert cfg.budget.name == budget


def test_paper_budget_values_of_the_cifar_experiment(tmp_path):
    cfg = compose(["+exp=cifar_fewshot"], tmp_path)
    assert cfg.data.source._target_.endswith("load_cifar100") and cfg.budget.name == "paper"
    assert (cfg.collective.n_tasks, cfg.collective.epochs, cfg.collective.batch_size) == (21, 100, 64)
    assert cfg.collective.lr == 0.001 and cfg.collective.classes_per_task == 5
    assert cfg.model.width_mult == 1.0 and len(cfg.model.growth.schedule) == 20
    assert cfg.collective.optimizer.lr == 0.001 and cfg.collective.optimizer.momentum == 0.9
    assert (cfg.target.n_tasks, cfg.individual.epochs, cfg.individual.lr, cfg.individual.batch_size) == (
        5,
        30,
        0.005,
        32,
    )
    assert list(cfg.target.shots) == [10, 20] and cfg.target.ways == 5
    assert cfg.criterion.tau == 5e-10


def test_budget_and_data_overrides_win_over_the_experiment(tmp_path):
    cfg = compose(["+exp=miniimagenet_fewshot", "budget=small", "data=npz", "data.path=x.npz"], tmp_path)
    assert cfg.data.source._target_.endswith("load_npz") and cfg.data.source.path == "x.npz"
    assert cfg.target.n_tasks == 5 and cfg.collective.epochs == cfg.budget.collective_epochs
    assert compose(["+exp=miniimagenet_fewshot", f"data.path={tmp_path}"], tmp_path).target.n_tasks == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("collective.epochs=0", r"collective.epochs=0: must be an integer >= 1"),
        ("criterion.statistic=magic", r"criterion.statistic='magic': valid values are \['paper_signed_frac'"),
        ("stage=[individual,collective]", r"stage=.*pipeline order"),
        ("stage=[collective,train]", r"'train' is not a stage"),
        (
            "+methods.learngene.x=1",
            r"methods.learngene.x is not a parameter of experiments.methods.inherit.learngene; valid: \[\]",
        ),
        ("+methods.protonet.episodez=3", r"methods.protonet.episodez .*did you mean 'episodes'"),
        ("individual.lr=-1", r"individual.lr=-1: must be a number > 0"),
        ("model.growth.schedule=[[20,64]]", r"model.growth.schedule\[0\]"),
        ("collective.labels=relative", r"collective.head='growing'"),
        ("criterion.k=14", r"criterion.k=14"),
        ("from_run=/nonexistent/run", r"from_run='/nonexistent/run'"),
        ("data.std=[0.1,0.0,0.1]", r"data.std"),
    ],
)
def test_invalid_values_are_named_with_what_is_valid(override, message, tmp_path):
    cfg = compose([override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_no_experiment_named_is_the_quickstart_and_the_data_file_sets_only_data(tmp_path):
    """run.py and compose select +exp=quickstart when no experiment and no other data is named; the digits data file changes no
    collective or individual key, so a paper experiment on digits stays 5-way at the paper's lr (and is refused
    by the data limits) instead of quietly becoming the quickstart."""
    from experiments.pipeline.default_experiment import with_default_experiment

    q = "+exp=quickstart"
    assert with_default_experiment(["budget=small"]) == [q, "budget=small"]
    assert with_default_experiment(["-m", "k=2,3"]) == [
        "-m",
        q,
        "k=2,3",
    ]  # next to the overrides, not before -m
    assert with_default_experiment(["-i", "defaults"]) == [q, "-i", "defaults"]
    assert with_default_experiment(["data=digits", "k=1"]) == [q, "data=digits", "k=1"]
    for left_alone in (["+exp=cifar_fewshot"], ["+exp=[quickstart,descendants]"], ["exp=[a,b]"],
                       ["data=npz", "data.path=x.npz"], ["-cp", "/run/.hydra", "-cn", "config"], ["-cn", "other"]):  # fmt: skip
        assert with_default_experiment(left_alone) == left_alone
    plain_npz = compose(
        ["data=npz"], tmp_path
    )  # another data set: run.yaml's own settings, not the quickstart's
    assert (plain_npz.collective.classes_per_task, plain_npz.collective.lr, plain_npz.target.ways) == (
        5,
        0.001,
        5,
    )
    quick = compose([], tmp_path)
    assert (quick.exp_name, quick.collective.classes_per_task, quick.collective.lr, quick.target.ways) == (
        "quickstart", 3, 0.01, 3)  # fmt: skip
    paper_on_digits = compose(["+exp=cifar_fewshot", "data=digits"], tmp_path)
    assert (paper_on_digits.collective.lr, paper_on_digits.target.ways) == (0.001, 5)
    cli = subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), "--cfg", "job"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert cli.returncode == 0 and "exp_name: quickstart" in cli.stdout, cli.stderr[-2000:]


def test_the_paper_budget_comes_from_the_experiment_file(tmp_path):
    """budget=paper reads an experiment's own numbers (paper_budget); without one it is one clear line."""
    cfg = compose(["+exp=miniimagenet_fewshot", "data.path=/nowhere"], tmp_path)
    assert (cfg.budget.target_tasks, cfg.target.n_tasks, cfg.collective.epochs) == (10, 10, 100)
    assert compose(["+exp=cifar_fewshot"], tmp_path).target.n_tasks == 5
    assert "paper_budget" not in compose([], tmp_path)  # the quickstart has no paper numbers
    with pytest.raises(
        ConfigError, match=r"^budget=paper .*add \+exp=cifar_fewshot or \+exp=miniimagenet_fewshot"
    ):
        check_config(compose(["budget=paper"], tmp_path, resolve=False))


def test_missing_npz_path_is_reported(tmp_path):
    cfg = compose(["data=npz"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.path is required"):
        check_config(cfg)


def test_an_unregistered_method_is_named(tmp_path):
    cfg = compose(["methods=[learngene]"], tmp_path)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.methods.knn = {}
    with pytest.raises(ConfigError, match=r"'knn' is not a registered method"):
        check_config(cfg)


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger", "callbacks", "methods"])
def test_every_swappable_part_is_built_from_a_target(group):
    """Every config file of a swappable group names what it builds with ``_target_`` (the file that
    deliberately builds nothing -- logger=none, callbacks=none -- and judgement/learngene/... aside)."""
    folder = ROOT / "experiments" / "configs" / group
    plain = {"none.yaml", "many.yaml", "cpu.yaml", "ddp.yaml", "gpu.yaml", "cpu_fast.yaml"} | (
        {"learngene.yaml", "scratch.yaml", "judgement.yaml", "finetune.yaml", "linear_probe.yaml", "prototype.yaml"}
        if group == "methods" else set()
    )  # fmt: skip
    files = sorted(folder.glob("*.yaml"))
    assert files
    for f in files:
        if f.name not in plain:
            assert "_target_:" in f.read_text(), f
    run = (ROOT / "experiments" / "configs" / "run.yaml").read_text()
    assert run.count("_target_:") >= 4  # the per-task optimizers and LightningModules of both stages


def test_trainer_flags_pass_through_and_unknown_ones_are_refused(tmp_path):
    from experiments.pipeline.context import RunContext

    cfg = compose(["+trainer.gradient_clip_val=0.5", "trainer.accelerator=cpu"], tmp_path)
    check_config(cfg)
    trainer = RunContext(cfg, tmp_path).make_trainer(1)
    assert trainer.gradient_clip_val == 0.5
    with pytest.raises(ConfigError, match=r"trainer.gradient_clip_vall is not a parameter of .*Trainer.*did you mean "
                       r"'gradient_clip_val'"):  # fmt: skip
        check_config(compose(["+trainer.gradient_clip_vall=0.5"], tmp_path))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+collective.epochz=3", r"collective.epochz is not a key the suite reads.*did you mean 'epochs'"),
        ("+criterion.stat=x", r"criterion.stat is not a key"),
        ("+model.net.widthz=[1]", r"model.net.widthz is not a parameter of .*vgg"),
        (
            "+collective.optimizer.momentun=0.5",
            r"collective.optimizer.momentun is not a parameter of torch.optim.SGD",
        ),
        ("+whatever=1", r"whatever is not a key the suite reads"),
        # a key of another node (the target tasks' keys were under individual before it was split by concern)
        (
            "+individual.shots=[5]",
            r"^individual.shots is now target.shots: the individual node was split",
        ),
        ("+individual.hidden=[8]", r"^individual.hidden is now individual_net.hidden"),
        (
            "+callbacks.nope._target_=lightning.pytorch.callbacks.Nope",
            r"callbacks.nope._target_=.*cannot be imported",
        ),
    ],
)
def test_keys_the_suite_would_ignore_are_refused(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_config(compose([override], tmp_path))


def test_a_lightning_callback_from_the_command_line_is_used(tmp_path):
    from callbacks.task_inputs import TaskInputs
    from experiments.pipeline.context import RunContext

    cfg = compose(
        ["+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor"], tmp_path
    )
    check_config(cfg)
    cbs = RunContext(cfg, tmp_path).collective.callbacks(TaskInputs(task=0, stats_csv=tmp_path / "g.csv"))
    assert [type(c).__name__ for c in cbs] == ["CriterionStatsCallback", "LearningRateMonitor"]


def test_optimized_metric_names_the_sweep_objective(tmp_path):
    from experiments.pipeline.runner import sweep_objective

    cfg = compose(["target.shots=[5,10]"], tmp_path)
    assert cfg.optimized_metric == "individual/test/acc/learngene/5shot"
    result = {"tables": {"5": [{"method": "learngene", "mean": 0.4, "paired": None}],
                         "10": [{"method": "learngene", "mean": 0.6, "paired": None}]}, "judgement": {},
              "reference": "scratch"}  # fmt: skip
    assert sweep_objective(result, cfg.optimized_metric) == 0.4
    assert sweep_objective(result, "individual/test/acc/learngene") == pytest.approx(0.5)


def test_later_stage_without_collective_outputs_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="from_run"):
        check_config(compose(["stage=[learngene]"], tmp_path))


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_cli_reports_an_unknown_experiment_and_a_bad_value(tmp_path):
    unknown = run_cli("+exp=imagenet_full", f"hydra.run.dir={tmp_path}/a")
    assert unknown.returncode != 0
    assert "exp/imagenet_full" in unknown.stderr and "cifar_fewshot" in unknown.stderr
    bad = run_cli("collective.epochs=0", f"hydra.run.dir={tmp_path}/b")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: collective.epochs=0: must be an integer >= 1"
    assert "Traceback" not in bad.stderr


def test_a_key_of_the_split_individual_node_says_where_it_is_now(tmp_path):
    """individual held the target tasks and the network's shape too; an old command line is told the new key, by
    run.py before Hydra (which would say only "not in struct") and by the schema check for a '+' override."""
    from experiments.pipeline.config_schema import moved_override

    assert moved_override(["+exp=quickstart", "individual.ways=3"]).startswith(
        "individual.ways is now target.ways:"
    )
    assert moved_override(["+individual.validation.n_tasks=0"]).startswith(
        "individual.validation.n_tasks is now target.validation.n_tasks:"
    )
    assert moved_override(["individual.lower_pools=match"]).startswith(
        "individual.lower_pools is now individual_net"
    )
    assert (
        moved_override(["individual.lr=0.1", "collective.seeds=[0]", "-m", "+collective.hidden=[8]"]) is None
    )
    with pytest.raises(ConfigError, match=r"^individual.ways is now target.ways"):
        compose(["individual.ways=3"], tmp_path)  # the tests' compose prepares a command line as run.py does
    old = run_cli("individual.shots=[5]", f"hydra.run.dir={tmp_path}")
    assert old.returncode == 2
    assert (
        old.stderr.strip()
        .splitlines()[-1]
        .startswith("error: individual.shots is now target.shots: the individual")
    )
    with pytest.raises(
        ConfigError, match=r"collective.hidden is not a key the suite reads, so it would be ignored \(keys of"
    ):
        check_config(compose(["+collective.hidden=[8]"], tmp_path))  # no hint where none applies
    from omegaconf import open_dict

    cfg = compose([], tmp_path)
    with open_dict(cfg):  # as an experiment file written before the split would set it
        cfg.individual.shots = [5]
    with pytest.raises(
        ConfigError, match=r"^individual.shots is not a key the suite reads.*did you mean target.shots"
    ):
        check_config(cfg)


def test_from_run_cannot_be_combined_with_training_stage_one(tmp_path):
    with pytest.raises(ConfigError, match="'collective' cannot be in stage"):
        check_config(compose([f"from_run={tmp_path}"], tmp_path))


def test_fp16_loss_scaling_is_refused_while_gradient_statistics_are_gathered(tmp_path):
    for fp16 in ("16-mixed", "16", "16-true"):  # Lightning turns "16" into 16-mixed
        with pytest.raises(
            ConfigError, match=rf"trainer.precision='?{fp16}'?: fp16 .* use bf16-mixed or 32-true"
        ):
            check_config(compose([f"trainer.precision={fp16}"], tmp_path))
    check_config(compose(["trainer.precision=16-mixed", "callbacks=none", "stage=[collective]"], tmp_path))


def test_paths_output_dir_is_where_the_run_writes(tmp_path):
    out = tmp_path / "chosen"
    bad = run_cli(f"paths.output_dir={out}", "collective.epochs=0")
    assert bad.returncode == 2
    assert (out / ".hydra" / "config.yaml").is_file()  # Hydra's own files follow paths.output_dir too


DEEPENS_BEFORE_TASK_2 = "model.growth.schedule=[[0,8],{op:deepen,after:12},[13,8]]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["collective.mode=joint", "collective.open_world_enters_at=2"],
            r"collective.open_world_enters_at=2: the joint",
        ),
        (["trainer.devices=2", "collective.batch_size=63"], r"collective.batch_size=63: is the global batch"),
        (["trainer.precision=8"], r"trainer.precision=8: valid values are \[64, 32, 16, .*'bf16-mixed'"),
        (
            ["model.growth.schedule=[[13,8],{op:deepen,after:12}]"],
            r"model.growth.schedule\[0\]=\[13, 8\]: .*0..12",
        ),
        (
            ["model=resnet12", "criterion.k=2", "model.growth.schedule=[{op:deepen,after:1}]"],
            r"model.growth.schedule\[0\]=.*\(this backbone cannot deepen\)",
        ),
        (  # the learngene after task 1 comes from 13 blocks: the deepening entry applies before task 2
            [DEEPENS_BEFORE_TASK_2, "criterion.after_task=1", "criterion.window=11"],
            r"criterion.window=11: a window of k=3 blocks of the network after task 1 \(criterion.after_task\) "
            r"starts at 0..10",
        ),
        (
            [DEEPENS_BEFORE_TASK_2, "criterion.after_task=1", "criterion.k=14"],
            r"criterion.k=14: .* task 1 .*\(13\)",
        ),
    ],
)
def test_more_combinations_that_are_refused(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_config(compose(overrides, tmp_path))


def test_the_number_of_training_processes_is_read_one_way_for_every_devices_form(monkeypatch):
    """The batch-split check and the Ctrl-C handling share it: devices x nodes, "auto" and -1 counting GPUs."""
    import torch
    from omegaconf import OmegaConf

    from experiments.pipeline.plan import trainer_processes

    def n(**t):
        return trainer_processes(OmegaConf.create(t))

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [n(devices=1), n(devices=2, num_nodes=3), n(devices=[0, 2]), n(devices="0,1,3"), n(devices="2")] == [
        1, 6, 2, 3, 2]  # fmt: skip
    assert [n(devices="auto", accelerator="gpu"), n(devices=-1, accelerator="auto"), n(devices="auto",
            accelerator="cpu"), n(devices="auto", accelerator="cpu", num_nodes=2)] == [4, 4, 1, 2]  # fmt: skip
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert n(devices="auto", accelerator="auto") == 1
    for bad in (True, None, 1.5, "--1", "two", [0, "x"]):
        with pytest.raises(
            ConfigError, match=r"^trainer.devices=.*: must be a number of devices, -1 or 'auto'"
        ):
            n(devices=bad)
    with pytest.raises(ConfigError, match=r"^trainer.devices=1.5: must be a number of devices"):
        check_config(compose(["trainer.devices=1.5"]))  # one line, not a traceback
    with pytest.raises(
        ConfigError, match=r"collective.batch_size=63: is the global batch, split over 2 processes"
    ):
        check_config(compose(["trainer.devices=[0,1]", "collective.batch_size=63"]))


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "collective.mode=joint",
            "collective.replacement=false",
        ],  # replacement does not apply to joint phases
        [
            "model.growth.schedule=[{op:deepen,after:12},[13,8]]"
        ],  # a block that exists once the schedule deepened
        ["trainer.precision=32"],
        ["trainer.precision=bf16"],
        ["model=resnet12", "criterion.k=2"],
        [DEEPENS_BEFORE_TASK_2, "criterion.after_task=2", "criterion.window=11"],  # 14 blocks after task 2
        [DEEPENS_BEFORE_TASK_2, "collective.mode=joint", "criterion.after_task=1", "criterion.window=11"],
    ],
)
def test_valid_combinations_are_accepted(overrides, tmp_path, monkeypatch):
    import experiments.pipeline.config_check as config_check

    monkeypatch.setattr(config_check, "cpu_has_bf16", lambda: True)  # bf16 is valid where the CPU has it
    check_config(compose(overrides, tmp_path))


def test_resnet12_grows_to_the_standard_widths(tmp_path):
    from learngene_core.growth import parse_schedule

    cfg = compose(["model=resnet12", "budget.width_mult=1.0"], tmp_path)
    widths = list(cfg.model.net.widths)
    for e in parse_schedule(cfg.model.growth.schedule):
        widths[e["block"]] += e["units"]
    assert widths == [64, 160, 320, 640]


def test_every_data_limit_exceeded_is_named_in_one_message(tmp_path):
    """A dataset with 15 training images per class: the shots, the ProtoNet queries and the MAML queries are
    all too large, and one run says so for all three (not three reruns, one per problem)."""
    from conftest import make_image_set

    from experiments.pipeline.config_check import check_data_limits

    image_set = make_image_set(num_classes=12, per_class_train=15)
    cfg = compose(["target.shots=[10,20]", "target.ways=3", "collective.classes_per_task=3"], tmp_path)
    with pytest.raises(ConfigError) as err:
        check_data_limits(cfg, image_set)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{len(lines) - 1} problems in the configuration:"
    keys = [line.split("=")[0].strip() for line in lines[1:]]
    assert {"target.shots", "methods.protonet.queries", "methods.maml.queries"} <= set(keys)
    assert len(keys) == len(set(keys))  # one line per key


def test_a_bad_value_and_a_data_limit_are_named_in_one_message(tmp_path):
    """The config's problems and, where the data loads, the limits it exceeds: one rerun, not one per kind."""
    from experiments.pipeline.runner import run_pipeline

    with pytest.raises(ConfigError) as err:
        run_pipeline(
            compose(["collective.epochs=0", "target.ways=5", "target.validation.n_tasks=0"], tmp_path),
            tmp_path,
        )
    assert str(err.value).splitlines() == [
        "2 problems in the configuration:",
        "  collective.epochs=0: must be an integer >= 1",
        "  target.ways=5: the novel group has 4 classes; use at most 4",
    ]
    with pytest.raises(ConfigError) as err:  # no data to check against: the config's problems alone
        run_pipeline(compose(["data=npz", "collective.epochs=0"], tmp_path), tmp_path)
    assert str(err.value).startswith("2 problems") and "data.path is required" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written before the config holds


def test_the_data_is_not_loaded_for_the_limits_with_bad_data_values_or_a_download(tmp_path, monkeypatch):
    """A problem under data. (a size that would resize every image) or target. (limits from bad values): the
    config's problems alone, the data untouched; a source that can download is asked not to."""
    import experiments.pipeline.objects as objects
    from experiments.pipeline.runner import run_pipeline
    from learngene_core.errors import DataError

    calls = []

    def build(node, key, *args, **kwargs):
        calls.append(kwargs)
        raise DataError("no files here")

    monkeypatch.setattr(objects, "build", build)
    for bad in ("data.image_size=5000", "target.validation.group=base"):
        with pytest.raises(ConfigError) as err:
            run_pipeline(compose([bad, "collective.epochs=0", "target.ways=5"], tmp_path), tmp_path)
        assert str(err.value).startswith("2 problems") and "target.ways=5" not in str(err.value)
    assert calls == []
    with pytest.raises(ConfigError, match=r"^collective.epochs=0: must be an integer >= 1$"):
        run_pipeline(
            compose(["data=cifar100", f"data.root={tmp_path}", "collective.epochs=0"], tmp_path), tmp_path
        )
    assert calls == [{"download": False}]


def test_every_bad_value_of_the_per_key_rules_is_named_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_config(compose(["collective.epochs=0", "individual.lr=-1", "criterion.k=0"], tmp_path))
    message = str(err.value)
    assert message.startswith("3 problems in the configuration:")
    for key in ("collective.epochs=0", "individual.lr=-1", "criterion.k=0"):
        assert key in message
    with pytest.raises(ConfigError, match=r"^collective.epochs=0: must be an integer >= 1$"):  # one: one line
        check_config(compose(["collective.epochs=0"], tmp_path))
