"""The typed schema of the suite's configuration: one dataclass per plain node, stored in Hydra's ConfigStore.

Each key is declared once, here, with its type: the core's own choice lists as enums, bounds as
``Annotated[int, Range(ge=1)]``, ``Optional`` for keys that may be null, ``Any`` for nodes built from their
``_target_`` (those are checked against the target's own signature). The values live in the YAML files; the
schema says only which keys exist and what a valid value is. :mod:`experiments.pipeline.config_schema` checks a
composed config against it (every problem in one message, one line each); a ``_target_`` node (a stage-3
method, a data source, the Trainer) is checked against its target's signature, typed the same way.

Stored as ``schema/run``, so that OmegaConf's own structured merge can check the shipped YAML against the same
types (tests/test_config_schema.py), with ``data`` opened to the source's own keys.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from datamodules.sequential_tasks import LABELS
from experiments.pipeline.plan import HEADS, JOINT_MODES, VALIDATION_GROUPS
from experiments.pipeline.run_files import KEEP_CHECKPOINTS
from learngene_core.bounds import Range, Supplied
from learngene_core.criterion.records import EPOCH_AGGREGATES
from learngene_core.criterion.selection import WEIGHTINGS
from learngene_core.data.loaders import BATCHINGS
from learngene_core.data.splits import SPLITS
from learngene_core.data.target_tasks import PROTOCOLS
from learngene_core.errors import ConfigError
from learngene_core.ewc import FISHER_MODES
from learngene_core.individual import LOWER_POOLS

__all__ = ["Range", "Supplied"]  # re-exported: extensions declare bounds with them


def choices(name: str, values: tuple) -> type[Enum]:
    """An enum whose members are the core's own list of valid values (not retyped here)."""
    return Enum(name, {str(v): v for v in values}, type=str)


# -- checks of one key's value that a type cannot say: fn(key, value) raises ConfigError -------------------


def _invalid(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={value!r}: {valid}")


def stage_list(key: str, value: Any) -> None:
    from experiments.pipeline import STAGES

    stages = list(value or [])
    bad = [s for s in stages if s not in STAGES]
    if not stages:
        _invalid(key, stages, f"must list at least one of {list(STAGES)}")
    if bad:
        _invalid(key, stages, f"{bad[0]!r} is not a stage; valid stages are {list(STAGES)}")
    order = [STAGES.index(s) for s in stages]
    if order != sorted(set(order)):
        _invalid(key, stages, f"stages must appear once each in pipeline order {list(STAGES)}")


def per_channel(key: str, value: Any) -> None:
    """``data.mean`` / ``data.std``: 'auto' or one number per channel (std > 0)."""
    if value == "auto":
        return
    if not isinstance(value, ListConfig | list) or not value or any(
            isinstance(x, bool) or not isinstance(x, int | float) for x in value):  # fmt: skip
        _invalid(key, value, "must be 'auto' (computed from the training images) or one number per channel")
    if key.endswith("std") and any(x <= 0 for x in value):
        _invalid(key, list(value), "every value must be > 0")


def statistic_modules(key: str, value: Any) -> None:
    """``criterion.modules``: modules that register statistics of their own, imported here (before the statistic's
    name and options are checked against the registry, and before any stage records statistics)."""
    from learngene_core.criterion.registry import load_modules

    if value is None:
        return
    if not isinstance(value, ListConfig | list) or not all(isinstance(m, str) for m in value):
        _invalid(key, value, "must be a list of importable module names, e.g. [my_package.my_statistics]")
    failed = []
    for name in value:
        try:
            load_modules([name])
        except Exception as err:
            failed.append(f"{name!r} ({type(err).__name__}: {err})")
    if failed:
        _invalid(key, list(value), f"cannot import {', '.join(failed)}; a module of your own must be importable "
                 "(e.g. PYTHONPATH=. python experiments/run.py ...)")  # fmt: skip


def registered_statistic(key: str, value: Any) -> None:
    from learngene_core.criterion.registry import statistic_names

    if value not in statistic_names():
        _invalid(key, value, f"valid values are {statistic_names()}")


def statistic_options(key: str, value: Any) -> None:
    """``criterion.options``: {statistic: {option: value}}; a statistic's options are its function's keyword-only
    parameters (learngene_core/criterion/registry.py), each value checked against the parameter's annotation."""
    from experiments.pipeline.config_schema import check_node, hints_of, problem, suggest
    from learngene_core.criterion.registry import get_statistic, statistic_names

    if value is None:
        return
    if not isinstance(value, DictConfig):
        _invalid(key, value, "must be a mapping {statistic: {option: value}}")
    for name, node in value.items():
        full = f"{key}.{name}"
        if name not in statistic_names():
            problem(full, f"{full}: {name!r} is not a registered statistic{suggest(str(name), statistic_names())}; "
                          f"registered: {statistic_names()}")  # fmt: skip
            continue
        stat = get_statistic(str(name))
        hints = hints_of(stat.fn)
        options = {n: hints.get(n, Any) for n in stat.options()}
        if not isinstance(node, DictConfig):
            problem(full, f"{full}={node!r}: must be a mapping of {name}'s options {sorted(options)}")
            continue

        def unknown(k: str, valid: set, full: str = full, name: str = name) -> str:
            return f"{full}.{k} is not an option of statistic {name}{suggest(k, valid)}; options: {sorted(valid)}"

        check_node(node, full, options, unknown)


def scheduler_node(key: str, node: Any) -> None:
    """null (the mode's default) or a ``_target_`` node whose factory builds a scheduler (tried on a dummy
    optimizer, so a bad value is refused before any work)."""
    if node is None:
        return
    if not isinstance(node, DictConfig) or "_target_" not in node:
        _invalid(key, node, "null (the mode's default) or a node with _target_ and _partial_: true, e.g. "
                 "{_target_: lightning_modules.lr_schedules.warmup_cosine, _partial_: true, warmup: 0.05}")  # fmt: skip
    import torch

    from lightning_modules.lr_schedules import schedule_factory

    try:
        factory = schedule_factory(node, "continual")  # the mode only picks the default for null
        if factory is not None:
            factory(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 100)
    except Exception as err:
        _invalid(key, OmegaConf.to_container(node), f"cannot build a scheduler ({type(err).__name__}: {err})")


MODES = ("continual", *JOINT_MODES)
Mode = choices("Mode", MODES)
Labels = choices("Labels", LABELS)
Head = choices("Head", HEADS)
Keep = choices("Keep", KEEP_CHECKPOINTS)
Fisher = choices("Fisher", FISHER_MODES)
Weighting = choices("Weighting", WEIGHTINGS)
Aggregate = choices("Aggregate", EPOCH_AGGREGATES)
Protocol = choices("Protocol", PROTOCOLS)
Batching = choices("Batching", BATCHINGS)
LowerPools = choices("LowerPools", LOWER_POOLS)
Split = choices("Split", SPLITS)
Group = choices("Group", VALIDATION_GROUPS)

Positive = Annotated[int, Range(ge=1)]
Count = Annotated[int, Range(ge=0)]
Rate = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Momentum = Annotated[float, Range(ge=0, lt=1)]
Seeds = Annotated[list[int], Range(ge=0, min_len=1)]


@dataclass
class Paths:
    root_dir: str
    data_dir: str
    log_dir: str
    output_dir: str | None


@dataclass
class Compute:
    channels_last: bool
    compile: bool


@dataclass
class PaperBudget:  # an experiment's numbers for budget=paper (only paper experiments set them)
    collective_tasks: Positive
    collective_epochs: Positive
    target_tasks: Positive
    seeds: Seeds
    individual_epochs: Positive


@dataclass
class Budget:  # its values reach the checked keys through interpolation (collective.epochs, ...)
    name: str
    collective_tasks: int
    collective_epochs: int
    train_per_class: int | None
    width_mult: float
    target_tasks: int
    seeds: list[int]
    individual_epochs: int
    fisher_samples: int
    meta_episodes: int
    maml_iterations: int
    maml_first_order: bool


@dataclass
class EWC:
    enabled: bool
    lam: NonNegative
    gamma: Annotated[float, Range(gt=0, le=1)]
    fisher: Fisher
    fisher_samples: Positive
    penalty: Any  # the EWC object (a _target_ node built from lam and gamma)


StreamBatches = Annotated[Any, Supplied("image_set", "stream", "augment", "seed", "plan")]


@dataclass
class StreamDataModules:  # one builder per collective.mode
    continual: StreamBatches
    joint_phases: StreamBatches
    joint: StreamBatches


@dataclass
class Collective:
    mode: Mode
    joint_growth: bool
    lr_schedule: Annotated[Any, scheduler_node]  # null or a scheduler factory
    seeds: Seeds
    n_tasks: Positive
    classes_per_task: Annotated[int, Range(ge=2)]
    replacement: bool
    train_per_class: Positive | None
    labels: Labels
    head: Head
    epochs: Positive
    batch_size: Positive
    lr: Rate
    momentum: Momentum
    weight_decay: NonNegative
    optimizer: Any
    module: Any
    datamodule: StreamDataModules
    eval_batch_size: Positive
    open_world_enters_at: Positive | None
    keep_checkpoints: Keep
    ewc: EWC


@dataclass
class Criterion:
    modules: Annotated[Any, statistic_modules]  # first: what they register is checked below
    statistic: Annotated[str, registered_statistic]  # the registry is open: checked against it, not an enum
    tau: NonNegative
    k: Positive
    warmup_tasks: Count
    task_weighting: Weighting
    epoch_aggregate: Aggregate
    stability: NonNegative
    rule: Annotated[
        Any, Supplied("stats", "block_names", "k")
    ]  # the selection rule, built from the keys above
    after_task: Count | None
    window: Count | None
    probe_images: Count
    fisher_samples: Positive
    options: Annotated[Any, statistic_options]  # per statistic, its options (checked against its signature)


@dataclass
class Validation:
    n_tasks: Count
    seeds: Seeds
    group: Group
    queries: Positive


@dataclass
class Target:  # the target tasks
    ways: Annotated[int, Range(ge=2)]
    shots: Annotated[list[int], Range(ge=1, min_len=1)]
    n_tasks: Positive
    seeds: Seeds
    protocol: Protocol
    queries: Positive
    validation: Validation


@dataclass
class IndividualNet:  # the individual network's shape
    hidden: Annotated[list[int], Range(ge=1, min_len=0)]
    base_width: Positive
    pool_to: Positive
    lower_pools: LowerPools


@dataclass
class Individual:  # stage 3: training on a target task, and how the stage runs
    epochs: Positive
    batch_size: Positive
    batching: Batching
    lr: Rate
    momentum: Momentum
    weight_decay: NonNegative
    optimizer: Any
    module: Any
    datamodule: Annotated[Any, Supplied("image_set", "tasks", "augment", "seeds")]
    freeze_inherited: bool
    inherited_lr: NonNegative | None
    batched: bool
    task_batch: Positive | None
    cache_dir: str | None


@dataclass
class Growth:
    enabled: bool
    schedule: Any  # [block, units] pairs and {op: deepen, after: i}: checked against the backbone
    noise: NonNegative


@dataclass
class Model:
    net: Any
    width_mult: Rate
    growth: Growth


@dataclass
class Data:
    """The keys every source shares. A source's own keys (``data.path``, ``data.root``, ...: the keys its node
    interpolates) are allowed besides these, and typed by its parameters (``data.source``'s signature)."""

    source: Any
    image_size: Annotated[int, Range(ge=8, le=1024)]
    split: Split
    split_file: str | None
    mean: Annotated[Any, per_channel]
    std: Annotated[Any, per_channel]
    augment: Annotated[Any, Supplied("mean", "std", "channels_last")]  # a partial BatchAugment
    on_device: bool


@dataclass
class Run:
    paths: Paths
    data: Data
    model: Model
    trainer: Any  # _target_ nodes: checked against their targets' signatures
    logger: Any
    callbacks: Any
    methods: Any  # each method's node against the options it registered
    budget: Budget
    exp_name: str
    seed: Count
    stage: Annotated[list[str], stage_list]
    from_run: str | None
    optimized_metric: str
    compute: Compute
    paper_budget: PaperBudget
    collective: Collective
    criterion: Criterion
    target: Target
    individual_net: IndividualNet
    individual: Individual


def store() -> None:
    """Register the schema in Hydra's ConfigStore (``schema/run``), once per process."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="run", node=Run)


store()
