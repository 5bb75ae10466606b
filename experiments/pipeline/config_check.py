"""Check the whole configuration before any work starts.

Each problem is reported as one line naming the key, the bad value and what is valid, e.g.
``collective.epochs=0: must be an integer >= 1``. :func:`check_config` needs only the config;
:func:`check_against_data` (data-dependent limits) runs once the data is loaded, still before any training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.pipeline import run_files
from experiments.pipeline.config_schema import (
    all_problems,
    check_typed,
    check_value,
    fail,
    get,
    one_error,
    problem,
    problem_lines,
)
from experiments.pipeline.plan import trainer_processes
from learngene_core.bounds import Range
from learngene_core.errors import ConfigError
from learngene_core.utils import dist
from learngene_core.utils.native_bf16 import cpu_has_bf16, why_not_native

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def probe_network(cfg: DictConfig):
    """The collective backbone ``model.net`` builds at the configured image size (3 channels, 2 classes)."""
    from hydra.utils import instantiate

    try:
        factory = instantiate(cfg.model.net)
    except Exception as err:
        return problem("model.net", f"model.net cannot be built ({type(err).__name__}: {err})")
    try:
        return factory(input_size=int(cfg.data.image_size), in_channels=3, num_classes=2)
    except ValueError as err:
        problem("data.image_size", f"data.image_size={cfg.data.image_size}: {err}")
    except Exception as err:
        problem("model.net", f"model.net={OmegaConf.to_container(cfg.model.net)} cannot be built "
                f"({type(err).__name__}: {err})")  # fmt: skip


def check_model(cfg: DictConfig) -> None:
    """``criterion.k``, ``criterion.window`` and the growth schedule against the backbone's blocks."""
    net = probe_network(cfg)
    if net is None:
        return
    # the blocks of the network the learngene is taken from: deepening entries insert blocks, entry i before task
    # i + 1, so criterion.after_task sees those before it (a joint ancestor without growth has them all from the start)
    schedule, after = list(get(cfg, "model.growth.schedule") or []), get(cfg, "criterion.after_task")
    grows_per_task = get(cfg, "collective.mode") == "continual" or get(cfg, "collective.joint_growth")
    applied = schedule[:after] if after is not None and grows_per_task else schedule
    n = len(net.blocks) + sum(
        1 for e in applied if isinstance(e, DictConfig | dict) and e.get("op") == "deepen"
    )
    source = f"the network after task {after} (criterion.after_task)" if applied != schedule else "model.net"
    k = get(cfg, "criterion.k")
    if k > n:
        fail("criterion.k", k, f"must be at most the number of blocks of {source} ({n})")
    window = get(cfg, "criterion.window")
    if window is not None and window > n - k:
        fail("criterion.window", window, f"a window of k={k} blocks of {source} starts at 0..{n - k}")
    block_type = type(net.blocks[0])
    can_deepen = block_type.can_deepen
    # as the schedule unfolds: a deepening entry adds a block for the entries after it
    blocks = len(net.blocks)
    for i, entry in enumerate(get(cfg, "model.growth.schedule") or []):
        e = OmegaConf.to_container(entry) if isinstance(entry, DictConfig | ListConfig) else entry
        if isinstance(e, dict):
            ok = e.get("op") == "deepen" and isinstance(e.get("after"), int) and 0 <= e["after"] < blocks
            ok = ok and can_deepen
            blocks += int(ok)
        else:
            ok = isinstance(e, list) and len(e) == 2 and 0 <= int(e[0]) < blocks and int(e[1]) >= 1
        if not ok:
            deepen = " or {op: deepen, after: i}" if can_deepen else " (this backbone cannot deepen)"
            fail(
                f"model.growth.schedule[{i}]",
                e,
                f"entries are [block index 0..{blocks - 1}, units >= 1]{deepen}",
            )


def check_config(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` naming every problem of the config (one line each): the typed schema
    (keys, types, bounds, choices; config_schema.py), then the rules across keys. Data limits come later."""
    if OmegaConf.select(cfg, "budget.name") == "paper" and OmegaConf.select(cfg, "paper_budget") is None:
        choices = " or ".join(f"+exp={name}" for name in paper_experiments())
        raise ConfigError(f"budget=paper runs the numbers a paper experiment gives (paper_budget) and none is "
                          f"selected: add {choices}, or use budget=small")  # fmt: skip
    with all_problems():
        check_typed(cfg)
        stages = list(get(cfg, "stage") or [])
        if not get(cfg, "methods") and "individual" in stages:
            from experiments.methods.registry import method_names

            fail("methods", [], f"the individual stage needs at least one of {method_names()}")
        _check_modes(cfg)
        _check_compute(cfg, stages)
        _check_runs(cfg, stages)
        mean, std = get(cfg, "data.mean"), get(cfg, "data.std")
        if isinstance(mean, ListConfig) and isinstance(std, ListConfig) and len(mean) != len(std):
            fail("data.std", list(std), f"needs one value per channel, like data.mean {list(mean)}")
        check_model(cfg)  # last: it builds the backbone, which a bad value found above may stop


def paper_experiments() -> list[str]:
    """The experiment files that give the paper budget's numbers (a top-level ``paper_budget`` node)."""
    exp_dir = Path(__file__).resolve().parents[1] / "configs" / "exp"
    return sorted(p.stem for p in exp_dir.glob("*.yaml") if re.search(r"^paper_budget:", p.read_text(), re.M))


def _check_modes(cfg: DictConfig) -> None:
    """Task labels, head and the joint ancestor's limits."""
    if get(cfg, "collective.labels") == "relative" and get(cfg, "collective.head") == "growing":
        fail(
            "collective.head",
            "growing",
            "task-relative labels use one shared head; set collective.head=fixed",
        )
    if get(cfg, "collective.mode") != "continual" and get(cfg, "collective.labels") == "relative":
        fail(
            "collective.labels", "relative", "the joint ancestor learns all base classes at once: use global"
        )
    enters = get(cfg, "collective.open_world_enters_at")
    if get(cfg, "collective.mode") != "continual" and enters is not None:
        fail("collective.open_world_enters_at", enters,
             "the joint ancestor trains on the base classes only; use null with collective.mode=joint")  # fmt: skip


def _check_compute(cfg: DictConfig, stages: list[str]) -> None:
    """The accelerator, the precision and the number of processes against this machine and the callbacks."""
    if OmegaConf.select(cfg, "logger.wandb") is not None:
        check_value(
            "logger.wandb.mode", get(cfg, "logger.wandb.mode"), Literal["online", "offline", "disabled"]
        )
    accelerator, precision = get(cfg, "trainer.accelerator"), str(get(cfg, "trainer.precision"))
    check_value("trainer.accelerator", accelerator, Literal[ACCELERATORS])
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("trainer.accelerator", accelerator, "no CUDA device is available here; use trainer=cpu (or "
                 "trainer.accelerator=cpu), or run on a machine with a GPU")  # fmt: skip
    if precision.startswith("bf16") and not _on_cuda(accelerator) and not cpu_has_bf16():
        why = why_not_native()
        fail("trainer.precision", precision, f"{why}, so bf16 would be emulated, far slower than fp32 (0.48x under "
             "AVX-512 emulation, docs/benchmarks.md); use trainer=cpu (32-true)")  # fmt: skip
    callbacks = list((get(cfg, "callbacks") or {}).keys())
    fp16 = ("16", "16-mixed", "16-true")  # Lightning's fp16 spellings ("16" means 16-mixed)
    if precision in fp16 and "criterion_stats" in callbacks:
        fail("trainer.precision", precision, "fp16 (loss-scaled, or fp16 weights) cannot carry the tiny gradients "
             "the criterion statistics count (tau ~ 5e-10, below fp16's smallest number); use bf16-mixed or 32-true "
             "(or callbacks=none)")  # fmt: skip
    if {"learngene", "collective"} <= set(stages) and "criterion_stats" not in callbacks:
        fail(
            "callbacks",
            callbacks,
            "the learngene stage reads the criterion statistics: keep callbacks.criterion_stats",
        )
    check_value("trainer.num_nodes", get(cfg, "trainer.num_nodes"), Annotated[int, Range(ge=1)])
    try:
        world = trainer_processes(get(cfg, "trainer"))
    except ConfigError as err:
        problem("trainer.devices", str(err))
        world = 1
    b = get(cfg, "collective.batch_size")
    if world > 1 and b % world:
        fail("collective.batch_size", b, f"is the global batch, split over {world} processes: use a multiple of "
             f"{world} (e.g. {b - b % world or world})")  # fmt: skip


def _check_runs(cfg: DictConfig, stages: list[str]) -> None:
    """``from_run`` and the earlier outputs that the selected stages read."""
    from_run = get(cfg, "from_run")
    if from_run is not None and ("LEARNGENE_FROM_RUN" in str(from_run) or "${" in str(from_run)):
        fail("from_run", from_run, "the environment variable LEARNGENE_FROM_RUN is not set (the W&B sweep reads the "
             "finished run from it): export LEARNGENE_FROM_RUN=<a finished run directory> before starting the agent")  # fmt: skip
    elif from_run is not None and not Path(str(from_run)).is_dir():
        fail("from_run", from_run, "must be the output directory of an earlier run (it does not exist)")
    elif from_run is not None and "collective" in stages:
        fail(
            "from_run",
            from_run,
            "reuses an earlier collective run, so 'collective' cannot be in stage as well",
        )
    out = Path(str(get(cfg, "paths.output_dir")))
    reads_from = Path(str(from_run)) if from_run is not None else out
    if stages == ["report"] and not run_files.raw_results_path(reads_from).exists():
        fail("stage", stages, f"the report needs stage-3 results and {run_files.raw_results_path(reads_from)} does not "
             "exist: run the individual stage first, or set from_run to a run directory whose individual stage "
             "finished")  # fmt: skip
    if stages and stages[0] != "report" and (from_run is not None or "collective" not in stages):
        seeds = [int(s) for s in get(cfg, "collective.seeds")]
        missing = [
            s for s in seeds if not (run_files.collective_dir(reads_from, s) / "manifest.json").exists()
        ]
        if missing and from_run is not None:
            fail("from_run", from_run, f"holds no collective run for collective seeds {missing} (collective/seed_<s>/"
                 f"manifest.json); set collective.seeds to the seeds it has")  # fmt: skip
        elif missing:
            fail("stage", stages, f"stages after 'collective' need its outputs (none for collective seeds {missing} "
                 f"under {out}): add 'collective', or set from_run=DIR of a finished run")  # fmt: skip


def _on_cuda(accelerator: str) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def check_data_limits(cfg: DictConfig, image_set) -> None:
    """Every limit the data sets on the config, checked before any work, each naming its key and a valid value;
    every limit exceeded is reported, in one message."""
    with all_problems():
        _check_data_limits(cfg, image_set)


def _check_data_limits(cfg: DictConfig, image_set) -> None:
    c, tcfg = cfg.collective, cfg.target
    groups = {g: list(v) for g, v in image_set.groups.items()}
    base, novel = len(groups["base"]), len(groups["novel"])
    train = {cls: len(v) for cls, v in image_set.indices_by_class("train").items()}
    test = {cls: len(v) for cls, v in image_set.indices_by_class("test").items()}
    name = image_set.class_names
    pool = base + (len(groups["open_world"]) if c.open_world_enters_at is not None else 0)
    if c.classes_per_task > base:
        fail(
            "collective.classes_per_task",
            c.classes_per_task,
            f"there are {base} base classes; use at most {base}",
        )
    if not c.replacement and c.mode == "continual" and c.n_tasks * c.classes_per_task > pool:
        fail("collective.n_tasks", c.n_tasks, f"with collective.replacement=false every task needs "
                   f"{c.classes_per_task} unused classes of {pool}; use at most {pool // c.classes_per_task} tasks or "
                   "collective.replacement=true")  # fmt: skip
    base_min = min(train[k] for k in groups["base"])
    if c.train_per_class is not None and c.train_per_class > base_min:
        fail("collective.train_per_class", c.train_per_class,
                   f"a base class has only {base_min} training images; use at most {base_min} or null")  # fmt: skip
    if tcfg.ways > novel:
        fail("target.ways", tcfg.ways, f"the novel group has {novel} classes; use at most {novel}")
    novel_min_c = min(groups["novel"], key=lambda k: train[k])
    novel_min = train[novel_min_c]
    extra = tcfg.queries if tcfg.protocol == "episodic" else 0
    for shots in tcfg.shots:
        if shots + extra > novel_min:
            what = f"{shots} shots + {extra} queries (target.queries)" if extra else f"{shots} shots"
            fail("target.shots", list(tcfg.shots), f"{what} need {shots + extra} training images per class "
                       f"but novel class {name[novel_min_c]!r} has {novel_min}; use target.shots <= "
                       f"{novel_min - extra}")  # fmt: skip
    if tcfg.protocol == "paper":
        empty = [name[k] for k in groups["novel"] if test.get(k, 0) == 0]
        if empty:
            fail("target.protocol", "paper", f"novel classes {empty[:3]} have no test images; use "
                       "target.protocol=episodic (queries from the training images)")  # fmt: skip
    check_validation_limits(tcfg, groups, train, name)
    from experiments.methods.registry import BaseClasses, get_method

    least = min(groups["base"], key=lambda k: train[k])
    for m, node in (OmegaConf.select(cfg, "methods") or {}).items():  # none: a collective-only run
        if get_method(m).data_limits is not None:
            get_method(m).data_limits(f"methods.{m}", node, cfg, BaseClasses(base, train[least], name[least]))


def check_validation_limits(tcfg: DictConfig, groups: dict, train: dict, name: list) -> None:
    """The held-out validation tasks (target.validation): enough classes and training images, other seeds."""
    v = tcfg.validation
    if v.n_tasks == 0:
        return
    if set(v.seeds) & set(tcfg.seeds):
        fail("target.validation.seeds", list(v.seeds), f"must not share a seed with target.seeds "
              f"{list(tcfg.seeds)}: validation tasks would repeat test tasks")  # fmt: skip
    pool = groups[v.group]
    if tcfg.ways > len(pool):
        fail("target.validation.group", v.group, f"{tcfg.ways}-way validation tasks need {tcfg.ways} classes but "
              f"the {v.group} group has {len(pool)}; use another group or target.validation.n_tasks=0")  # fmt: skip
    least = min(pool, key=lambda k: train[k])
    for shots in tcfg.shots:
        if shots + v.queries > train[least]:
            fail("target.validation.queries", v.queries, f"{shots} shots + {v.queries} queries need "
                  f"{shots + v.queries} training images per class but {v.group} class {name[least]!r} has "
                  f"{train[least]}; use target.validation.queries <= {max(1, train[least] - shots)}")  # fmt: skip


def with_data_limits(err: ConfigError, cfg: DictConfig) -> ConfigError:
    """The config's problems (``err``) and the data limits it exceeds too, in one error: a new data set takes one
    rerun to learn everything, not one for the keys and one for the limits. Only where the data and the target
    tasks are configured soundly (no problem under ``data.`` or ``target.``: the data would be loaded at a bad size,
    or the limits computed from bad values), on rank 0, from files already there (no download)."""
    from experiments.pipeline.objects import build

    lines = problem_lines(err)
    if any(line.startswith(("data.", "target.")) for line in lines) or not dist.is_rank_zero():
        return err
    offline = {"download": False} if "download" in cfg.data.source else {}
    try:
        image_set = build(cfg.data.source, "data.source", **offline)
    except Exception:  # the data does not load from what is there: err alone
        return err
    try:
        check_data_limits(cfg, image_set)
    except ConfigError as limits:
        return one_error(list(dict.fromkeys(lines + problem_lines(limits))))
    except Exception:  # a value the config check refused stops the limits: err says why
        pass
    return err


def check_against_data(ctx) -> None:
    """Checks that need the data (ways vs classes, shots vs images, normalisation vs channels), before any work."""
    cfg, image_set = ctx.cfg, ctx.image_set
    if image_set.image_size != cfg.data.image_size:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size} but the source produced {image_set.image_size} px images"
        )
    check_data_limits(cfg, image_set)
    ctx.normalisation  # noqa: B018 -- data.mean / data.std against the channels
    ctx.augment  # noqa: B018 -- data.augment builds (crop_padding >= 0)
