"""Check the whole configuration before any work starts.

Each problem is reported as one line naming the key, the bad value and what is valid, e.g.
``collective.epochs=0: must be an integer >= 1``. :func:`check_config` needs only the config;
:func:`check_against_data` (data-dependent limits) runs once the data is loaded, still before any training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from experiments.pipeline import STAGES, run_files
from experiments.pipeline.config_schema import check_known_keys, check_targets
from learngene_core.criterion.selection import WEIGHTINGS
from learngene_core.data.loaders import BATCHINGS
from learngene_core.data.splits import SPLITS
from learngene_core.data.target_tasks import PROTOCOLS
from learngene_core.descendants import check_shapes_config, check_strategies_config
from learngene_core.errors import ConfigError
from learngene_core.individual import LOWER_POOLS

PRECISIONS = ("64-true", "64", "32-true", "32", "16-true", "16-mixed", "16", "bf16-true", "bf16-mixed", "bf16",
              "transformer-engine", "transformer-engine-float16")  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
MODES = ("continual", "joint", "joint_phases")


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"{key} is required but not set; pass {key}=VALUE on the command line") from None
    except Exception as err:  # interpolation errors
        raise ConfigError(f"{key} cannot be resolved: {err}") from None


_problems: list[str] | None = None  # while collecting (see ``all_problems``): the problems found so far


def _fail(key: str, value: Any, valid: str) -> None:
    message = f"{key}={value!r}: {valid}"
    if _problems is None:
        raise ConfigError(message)
    if not any(p.startswith(f"{key}=") for p in _problems):  # one problem per key
        _problems.append(message)


@contextlib.contextmanager
def all_problems() -> Iterator[None]:
    """Run independent checks and report every problem they find in one ConfigError (one line each), instead
    of one per run. An error a check raises because of an earlier bad value ends the collection early."""
    global _problems
    outer, _problems = _problems, []
    found = _problems
    try:
        yield
    except ConfigError as err:
        found.append(str(err))
    except (TypeError, ValueError, AttributeError, KeyError):
        if not found:  # not a consequence of a problem already found
            raise
    finally:
        _problems = outer
    if len(found) == 1:
        raise ConfigError(found[0])
    if found:
        raise ConfigError(
            f"{len(found)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in found)
        )


def int_range(
    lo: int | None = None, hi: int | None = None, none_ok: bool = False
) -> Callable[[str, Any], None]:
    def check(key: str, v: Any) -> None:
        if v is None and none_ok:
            return
        bounds = " and ".join(
            s for s in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if s
        )
        what = f"must be an integer{' ' + bounds if bounds else ''}{' or null' if none_ok else ''}"
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(key, v, what)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(key, v, what)

    return check


def real_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
               none_ok: bool = False) -> Callable[[str, Any], None]:  # fmt: skip
    def check(key: str, v: Any) -> None:
        if v is None and none_ok:
            return
        lo_s = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
        hi_s = f"{'<' if hi_open else '<='} {hi}" if hi is not None else ""
        what = "must be a number " + " and ".join(s for s in (lo_s, hi_s) if s)
        if isinstance(v, bool) or not isinstance(v, int | float):
            _fail(key, v, what)
        if lo is not None and (v <= lo if lo_open else v < lo):
            _fail(key, v, what)
        if hi is not None and (v >= hi if hi_open else v > hi):
            _fail(key, v, what)

    return check


def one_of(options: Sequence[Any], none_ok: bool = False) -> Callable[[str, Any], None]:
    def check(key: str, v: Any) -> None:
        if v is None and none_ok:
            return
        if v not in options:
            _fail(key, v, f"valid values are {list(options)}{' or null' if none_ok else ''}")

    return check


def is_bool(key: str, v: Any) -> None:
    if not isinstance(v, bool):
        _fail(key, v, "must be true or false")


def int_list(lo: int = 1, min_len: int = 1) -> Callable[[str, Any], None]:
    def check(key: str, v: Any) -> None:
        if not isinstance(v, list | ListConfig) or len(v) < min_len:
            _fail(key, v, f"must be a list of at least {min_len} integers >= {lo}")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int) or x < lo:
                _fail(key, list(v), f"every entry must be an integer >= {lo}")

    return check


RULES: dict[str, Callable[[str, Any], None]] = {
    "seed": int_range(0),
    "data.image_size": int_range(8, 1024),
    "data.split": one_of(SPLITS),
    "data.on_device": is_bool,
    "data.augment.crop_padding": int_range(0, 64),
    "data.augment.flip": is_bool,
    "model.width_mult": real_range(0, lo_open=True),
    "model.growth.enabled": is_bool,
    "model.growth.noise": real_range(0),
    "collective.mode": one_of(MODES),
    "collective.joint_growth": is_bool,
    "collective.seeds": int_list(0),
    "collective.n_tasks": int_range(1),
    "collective.classes_per_task": int_range(2),
    "collective.replacement": is_bool,
    "collective.train_per_class": int_range(1, none_ok=True),
    "collective.labels": one_of(("global", "relative")),
    "collective.head": one_of(("growing", "fixed")),
    "collective.epochs": int_range(1),
    "collective.batch_size": int_range(1),
    "collective.lr": real_range(0, lo_open=True),
    "collective.momentum": real_range(0, 1, hi_open=True),
    "collective.weight_decay": real_range(0),
    "collective.eval_batch_size": int_range(1),
    "collective.open_world_enters_at": int_range(1, none_ok=True),
    "collective.keep_checkpoints": one_of(("all", "last")),
    "collective.ewc.enabled": is_bool,
    "collective.ewc.lam": real_range(0),
    "collective.ewc.gamma": real_range(0, 1, lo_open=True),
    "collective.ewc.fisher": one_of(("empirical", "sampled")),
    "collective.ewc.fisher_samples": int_range(1),
    "criterion.tau": real_range(0),
    "criterion.k": int_range(1),
    "criterion.warmup_tasks": int_range(0),
    "criterion.task_weighting": one_of(WEIGHTINGS),
    "criterion.epoch_aggregate": one_of(("mean", "last")),
    "criterion.stability": real_range(0),
    "criterion.after_task": int_range(0, none_ok=True),
    "criterion.window": int_range(0, none_ok=True),
    "criterion.probe_images": int_range(0),
    "criterion.fisher_samples": int_range(1),
    "individual.ways": int_range(2),
    "individual.shots": int_list(1),
    "individual.n_tasks": int_range(1),
    "individual.seeds": int_list(0),
    "individual.protocol": one_of(PROTOCOLS),
    "individual.queries": int_range(1),
    "individual.epochs": int_range(1),
    "individual.batch_size": int_range(1),
    "individual.batching": one_of(BATCHINGS),
    "individual.lr": real_range(0, lo_open=True),
    "individual.momentum": real_range(0, 1, hi_open=True),
    "individual.weight_decay": real_range(0),
    "individual.hidden": int_list(1, 0),
    "individual.base_width": int_range(1),
    "individual.pool_to": int_range(1),
    "individual.lower_pools": one_of(LOWER_POOLS),
    "individual.freeze_inherited": is_bool,
    "individual.inherited_lr": real_range(0, none_ok=True),
    "individual.batched": is_bool,
    "individual.task_batch": int_range(1, none_ok=True),
    "individual.validation.n_tasks": int_range(0),
    "individual.validation.seeds": int_list(0),
    "individual.validation.group": one_of(("novel", "open_world")),
    "individual.validation.queries": int_range(1),
    "trainer.accelerator": one_of(ACCELERATORS),
    "trainer.precision": lambda key, v: one_of(PRECISIONS)(key, str(v)),
    "trainer.num_nodes": int_range(1),
    "trainer.sync_batchnorm": is_bool,
    "compute.channels_last": is_bool,
    "compute.compile": is_bool,
}
METHOD_RULES: dict[str, dict[str, Callable[[str, Any], None]]] = {
    "prototype": {"metric": one_of(("euclidean", "cosine"))},
    "linear_probe": {"max_iter": int_range(1)},
    "protonet": {"episodes": int_range(1), "ways": int_range(2), "shots": int_range(1), "queries": int_range(1),
                 "lr": real_range(0, lo_open=True)},
    "maml": {"iterations": int_range(1), "meta_batch": int_range(1), "shots": int_range(1), "queries": int_range(1),
             "inner_lr": real_range(0, lo_open=True), "inner_steps": int_range(1), "test_steps": int_range(1),
             "first_order": is_bool, "lr": real_range(0, lo_open=True)},
    "descendants": {"shapes": check_shapes_config, "strategies": check_strategies_config},
}  # fmt: skip


def check_stages(cfg: DictConfig) -> list[str]:
    stages = list(_get(cfg, "stage") or [])
    if not stages:
        _fail("stage", stages, f"must list at least one of {list(STAGES)}")
    for s in stages:
        if s not in STAGES:
            _fail("stage", stages, f"{s!r} is not a stage; valid stages are {list(STAGES)}")
    order = [STAGES.index(s) for s in stages]
    if order != sorted(order) or len(set(order)) != len(order):
        _fail("stage", stages, f"stages must appear once each in pipeline order {list(STAGES)}")
    return stages


def check_methods(cfg: DictConfig, stages: list[str]) -> None:
    from experiments.methods.registry import get_method, method_names
    from experiments.pipeline.config_schema import suggest

    registered = method_names()
    methods = list((_get(cfg, "methods") or {}).keys())
    for m in methods:
        if m not in registered:
            _fail("methods", methods, f"{m!r} is not a registered method; registered: {registered}")
        keys = get_method(m).config_keys
        node = _get(cfg, f"methods.{m}") or {}
        for k in node if keys is not None else ():
            if k not in keys:
                raise ConfigError(f"methods.{m}.{k} is not a key of method {m!r}{suggest(str(k), keys)}; its keys: "
                                  f"{sorted(keys)}")  # fmt: skip
        for key, rule in METHOD_RULES.get(m, {}).items():
            rule(f"methods.{m}.{key}", _get(cfg, f"methods.{m}.{key}"))
    if not methods and "individual" in stages:
        _fail("methods", methods, f"the individual stage needs at least one of {registered}")


def probe_network(cfg: DictConfig):
    """The collective backbone ``model.net`` builds at the configured image size (3 channels, 2 classes)."""
    from hydra.utils import instantiate

    try:
        factory = instantiate(cfg.model.net)
    except Exception as err:
        raise ConfigError(f"model.net cannot be built ({type(err).__name__}: {err})") from None
    try:
        return factory(input_size=int(cfg.data.image_size), in_channels=3, num_classes=2)
    except ValueError as err:
        raise ConfigError(f"data.image_size={cfg.data.image_size}: {err}") from None
    except Exception as err:
        raise ConfigError(f"model.net={OmegaConf.to_container(cfg.model.net)} cannot be built "
                          f"({type(err).__name__}: {err})") from None  # fmt: skip


def check_model(cfg: DictConfig) -> None:
    net = probe_network(cfg)
    n = len(net.blocks) + sum(  # blocks after growth (deepening inserts blocks)
        1
        for e in (_get(cfg, "model.growth.schedule") or [])
        if isinstance(e, DictConfig | dict) and e.get("op") == "deepen"
    )
    k = _get(cfg, "criterion.k")
    if k > n:
        _fail("criterion.k", k, f"must be at most the number of blocks of model.net ({n})")
    window = _get(cfg, "criterion.window")
    if window is not None and window > n - k:
        _fail("criterion.window", window, f"a window of k={k} blocks starts at 0..{n - k}")
    block_type = type(net.blocks[0])
    can_deepen = block_type.can_deepen
    # as the schedule unfolds: a deepening entry adds a block for the entries after it
    blocks = len(net.blocks)
    for i, entry in enumerate(_get(cfg, "model.growth.schedule") or []):
        e = OmegaConf.to_container(entry) if isinstance(entry, DictConfig | ListConfig) else entry
        if isinstance(e, dict):
            ok = e.get("op") == "deepen" and isinstance(e.get("after"), int) and 0 <= e["after"] < blocks
            ok = ok and can_deepen
            blocks += int(ok)
        else:
            ok = isinstance(e, list) and len(e) == 2 and 0 <= int(e[0]) < blocks and int(e[1]) >= 1
        if not ok:
            deepen = " or {op: deepen, after: i}" if can_deepen else " (this backbone cannot deepen)"
            _fail(
                f"model.growth.schedule[{i}]",
                e,
                f"entries are [block index 0..{blocks - 1}, units >= 1]{deepen}",
            )


def check_lr_schedule(cfg: DictConfig) -> None:
    """``collective.lr_schedule``: null or a ``_target_`` node whose factory builds a scheduler (tried on a dummy
    optimizer, so a bad value is refused before any work)."""
    node = _get(cfg, "collective.lr_schedule")
    if node is None:
        return
    if not isinstance(node, DictConfig) or "_target_" not in node:
        _fail("collective.lr_schedule", node, "null (the mode's default) or a node with _target_ and _partial_: "
              "true, e.g. {_target_: lightning_modules.lr_schedules.warmup_cosine, _partial_: true, warmup: 0.05}")  # fmt: skip
    import torch

    from lightning_modules.lr_schedules import schedule_factory

    try:
        factory = schedule_factory(node, str(_get(cfg, "collective.mode")))
        if factory is not None:
            factory(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 100)
    except Exception as err:
        raise ConfigError(
            f"collective.lr_schedule={OmegaConf.to_container(node)} cannot build a scheduler "
            f"({type(err).__name__}: {err})"
        ) from None


def _devices(devices: Any) -> int:
    if isinstance(devices, int):
        return max(1, devices)
    if isinstance(devices, list | ListConfig):
        return max(1, len(devices))
    return 1  # "auto" or a string: Lightning decides; the data module checks again at fit time


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming every invalid value of the per-key rules at once, then the first
    cross-key problem (config-only checks; data checks come later)."""
    check_known_keys(cfg)
    with all_problems():
        for key, rule in RULES.items():
            rule(key, _get(cfg, key))
    check_targets(cfg)
    for key in [f"data.{k}" for k in _get(cfg, "data") if k != "source"]:
        _get(cfg, key)  # a missing data.path is named here
    for key in [f"data.source.{k}" for k in (_get(cfg, "data.source") or {})]:
        _get(cfg, key)
    stages = check_stages(cfg)
    check_methods(cfg, stages)
    from learngene_core.criterion.registry import statistic_names

    one_of(statistic_names())("criterion.statistic", _get(cfg, "criterion.statistic"))
    check_model(cfg)
    if _get(cfg, "collective.labels") == "relative" and _get(cfg, "collective.head") == "growing":
        _fail(
            "collective.head",
            "growing",
            "task-relative labels use one shared head; set collective.head=fixed",
        )
    check_lr_schedule(cfg)
    if _get(cfg, "collective.mode") != "continual" and _get(cfg, "collective.labels") == "relative":
        _fail(
            "collective.labels", "relative", "the joint ancestor learns all base classes at once: use global"
        )
    enters = _get(cfg, "collective.open_world_enters_at")
    if _get(cfg, "collective.mode") != "continual" and enters is not None:
        _fail("collective.open_world_enters_at", enters,
              "the joint ancestor trains on the base classes only; use null with collective.mode=joint")  # fmt: skip
    wandb = OmegaConf.select(cfg, "logger.wandb")
    if wandb is not None:
        one_of(("online", "offline", "disabled"))("logger.wandb.mode", _get(cfg, "logger.wandb.mode"))
    accelerator = _get(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("trainer.accelerator", accelerator, "no CUDA device is available here; use trainer=cpu (or "
                  "trainer.accelerator=cpu), or run on a machine with a GPU")  # fmt: skip
    if (
        str(_get(cfg, "trainer.precision")).startswith("bf16")
        and not _on_cuda(accelerator)
        and not cpu_has_bf16()
    ):
        _fail("trainer.precision", _get(cfg, "trainer.precision"), "this CPU has no native bf16 (AVX512-BF16 or AMX), "
              "so bf16 would be emulated and several times slower than fp32; use trainer=cpu (32-true)")  # fmt: skip
    from_run = _get(cfg, "from_run")
    if from_run is not None and ("LEARNGENE_FROM_RUN" in str(from_run) or "${" in str(from_run)):
        _fail("from_run", from_run, "the environment variable LEARNGENE_FROM_RUN is not set (the W&B sweep reads the "
              "finished run from it): export LEARNGENE_FROM_RUN=<a finished run directory> before starting the agent")  # fmt: skip
    if from_run is not None and not Path(str(from_run)).is_dir():
        _fail("from_run", from_run, "must be the output directory of an earlier run (it does not exist)")
    if from_run is not None and "collective" in stages:
        _fail(
            "from_run",
            from_run,
            "reuses an earlier collective run, so 'collective' cannot be in stage as well",
        )
    if _get(cfg, "trainer.precision") == "16-mixed" and "criterion_stats" in (_get(cfg, "callbacks") or {}):
        _fail("trainer.precision", "16-mixed", "scales the loss, so the gradient statistics would read scaled "
              "gradients; use bf16-mixed or 32-true (or callbacks=none)")  # fmt: skip
    if (
        "learngene" in stages
        and "collective" in stages
        and "criterion_stats" not in (_get(cfg, "callbacks") or {})
    ):
        _fail("callbacks", list((_get(cfg, "callbacks") or {}).keys()),
              "the learngene stage reads the criterion statistics: keep callbacks.criterion_stats")  # fmt: skip
    world = int(_get(cfg, "trainer.num_nodes")) * _devices(_get(cfg, "trainer.devices"))
    if world > 1 and _get(cfg, "collective.batch_size") % world:
        b = _get(cfg, "collective.batch_size")
        _fail("collective.batch_size", b, f"is the global batch, split over {world} processes: use a multiple of {world} "
              f"(e.g. {b - b % world or world})")  # fmt: skip
    out = Path(str(_get(cfg, "paths.output_dir")))
    if stages == ["report"]:
        raw = run_files.raw_results_path(Path(str(from_run)) if from_run is not None else out)
        if not raw.exists():
            _fail("stage", stages, f"the report needs stage-3 results and {raw} does not exist: run the individual stage "
                  "first, or set from_run to a run directory whose individual stage finished")  # fmt: skip
    seeds = [int(s) for s in _get(cfg, "collective.seeds")]
    if stages[0] != "report" and (from_run is not None or "collective" not in stages):
        source = Path(str(from_run)) if from_run is not None else out
        missing = [s for s in seeds if not (run_files.collective_dir(source, s) / "manifest.json").exists()]
        if missing and from_run is not None:
            _fail("from_run", from_run, f"holds no collective run for collective seeds {missing} (collective/seed_<s>/"
                  f"manifest.json); set collective.seeds to the seeds it has")  # fmt: skip
        if missing:
            _fail("stage", stages, f"stages after 'collective' need its outputs (none for collective seeds {missing} "
                  f"under {out}): add 'collective', or set from_run=DIR of a finished run")  # fmt: skip
    for key in ("data.mean", "data.std"):
        v = _get(cfg, key)
        if v == "auto":
            continue
        if not isinstance(v, ListConfig | list) or not v or any(isinstance(x, bool) or not isinstance(x, int | float)
                                                               for x in v):  # fmt: skip
            _fail(key, v, "must be 'auto' (computed from the training images) or one number per channel")
        if key == "data.std" and any(x <= 0 for x in v):
            _fail(key, list(v), "every value must be > 0")
    mean, std = _get(cfg, "data.mean"), _get(cfg, "data.std")
    if mean != "auto" and std != "auto" and len(mean) != len(std):
        _fail("data.std", list(std), f"needs one value per channel, like data.mean {list(mean)}")


def _on_cuda(accelerator: str) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's own test: AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_data_limits(cfg: DictConfig, image_set) -> None:
    """Every limit the data sets on the config, checked before any work, each naming its key and a valid value;
    every limit exceeded is reported, in one message."""
    with all_problems():
        _check_data_limits(cfg, image_set)


def _check_data_limits(cfg: DictConfig, image_set) -> None:
    c, icfg = cfg.collective, cfg.individual
    groups = {g: list(v) for g, v in image_set.groups.items()}
    base, novel = len(groups["base"]), len(groups["novel"])
    train = {cls: len(v) for cls, v in image_set.indices_by_class("train").items()}
    test = {cls: len(v) for cls, v in image_set.indices_by_class("test").items()}
    name = image_set.class_names
    pool = base + (len(groups["open_world"]) if c.open_world_enters_at is not None else 0)
    if c.classes_per_task > base:
        _fail(
            "collective.classes_per_task",
            c.classes_per_task,
            f"there are {base} base classes; use at most {base}",
        )
    if not c.replacement and c.mode == "continual" and c.n_tasks * c.classes_per_task > pool:
        _fail("collective.n_tasks", c.n_tasks, f"with collective.replacement=false every task needs "
                   f"{c.classes_per_task} unused classes of {pool}; use at most {pool // c.classes_per_task} tasks or "
                   "collective.replacement=true")  # fmt: skip
    base_min = min(train[k] for k in groups["base"])
    if c.train_per_class is not None and c.train_per_class > base_min:
        _fail("collective.train_per_class", c.train_per_class,
                   f"a base class has only {base_min} training images; use at most {base_min} or null")  # fmt: skip
    if icfg.ways > novel:
        _fail("individual.ways", icfg.ways, f"the novel group has {novel} classes; use at most {novel}")
    novel_min_c = min(groups["novel"], key=lambda k: train[k])
    novel_min = train[novel_min_c]
    extra = icfg.queries if icfg.protocol == "episodic" else 0
    for shots in icfg.shots:
        if shots + extra > novel_min:
            what = f"{shots} shots + {extra} queries (individual.queries)" if extra else f"{shots} shots"
            _fail("individual.shots", list(icfg.shots), f"{what} need {shots + extra} training images per class "
                       f"but novel class {name[novel_min_c]!r} has {novel_min}; use individual.shots <= "
                       f"{novel_min - extra}")  # fmt: skip
    if icfg.protocol == "paper":
        empty = [name[k] for k in groups["novel"] if test.get(k, 0) == 0]
        if empty:
            _fail("individual.protocol", "paper", f"novel classes {empty[:3]} have no test images; use "
                       "individual.protocol=episodic (queries from the training images)")  # fmt: skip
    check_validation_limits(icfg, groups, train, name)
    base_min_c = min(groups["base"], key=lambda k: train[k])
    episodic = {
        "protonet": ("methods.protonet", lambda m: m.ways),
        "maml": ("methods.maml", lambda m: icfg.ways),
    }
    for method, (key, ways_of) in episodic.items():
        if method not in cfg.methods:
            continue
        m = cfg.methods[method]
        ways = ways_of(m)
        if ways > base:
            what = (
                f"{key}.ways" if method == "protonet" else "individual.ways (MAML meta-trains that many ways)"
            )
            _fail(what.split(" ")[0], ways, f"meta-training episodes draw from the {base} base classes; use at most "
                       f"{base}")  # fmt: skip
        if m.shots + m.queries > base_min:
            _fail(f"{key}.queries", m.queries, f"{m.shots} shots ({key}.shots) + {m.queries} queries need "
                       f"{m.shots + m.queries} training images per base class but {name[base_min_c]!r} has {base_min}; "
                       f"use {key}.queries <= {max(1, base_min - m.shots)}")  # fmt: skip


def check_validation_limits(icfg: DictConfig, groups: dict, train: dict, name: list) -> None:
    """The held-out validation tasks (individual.validation): enough classes and training images, other seeds."""
    v = icfg.validation
    if v.n_tasks == 0:
        return
    if set(v.seeds) & set(icfg.seeds):
        _fail("individual.validation.seeds", list(v.seeds), f"must not share a seed with individual.seeds "
              f"{list(icfg.seeds)}: validation tasks would repeat test tasks")  # fmt: skip
    pool = groups[v.group]
    if icfg.ways > len(pool):
        _fail("individual.validation.group", v.group, f"{icfg.ways}-way validation tasks need {icfg.ways} classes but "
              f"the {v.group} group has {len(pool)}; use another group or individual.validation.n_tasks=0")  # fmt: skip
    least = min(pool, key=lambda k: train[k])
    for shots in icfg.shots:
        if shots + v.queries > train[least]:
            _fail("individual.validation.queries", v.queries, f"{shots} shots + {v.queries} queries need "
                  f"{shots + v.queries} training images per class but {v.group} class {name[least]!r} has "
                  f"{train[least]}; use individual.validation.queries <= {max(1, train[least] - shots)}")  # fmt: skip


def check_against_data(ctx) -> list[str]:
    """Checks that need the data (ways vs classes, shots vs images, ...); returns a summary of the protocol."""
    from experiments.pipeline.plan import make_stream, target_tasks

    cfg, image_set = ctx.cfg, ctx.image_set
    if image_set.image_size != cfg.data.image_size:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size} but the source produced {image_set.image_size} px images"
        )
    check_data_limits(cfg, image_set)
    ctx.normalisation  # noqa: B018 -- data.mean / data.std against the channels, before any work
    lines = [
        f"normalisation: mean {ctx.normalisation[0]}, std {ctx.normalisation[1]} ({image_set.channels} channels)"
    ]
    for seed in ctx.collective_seeds:
        stream = make_stream(cfg, image_set, seed)
        shown = ", ".join(str(list(t.classes)) for t in stream[:4])
        what = {"joint": "joint tasks (equal chunks of one stream over all base images)",
                "joint_phases": "joint phases over all base classes"}.get(cfg.collective.mode, "tasks")  # fmt: skip
        lines.append(f"collective stream (seed {seed}): {len(stream)} {what} of {len(stream[0].classes)} classes: "
                     f"{shown[:300]}{' ...' if len(stream) > 4 else ''}")  # fmt: skip
    for shots in cfg.individual.shots:
        tasks = target_tasks(cfg, image_set, shots)
        lines.append(f"target tasks, {shots}-shot: {len(tasks)} ({cfg.individual.n_tasks} per seed x seeds "
                     f"{list(cfg.individual.seeds)}), e.g. classes {[list(t.classes) for t in tasks[:3]]}")  # fmt: skip
    return lines


def check_existing_outputs(ctx) -> None:
    """Read every file of earlier runs that the selected stages will read, so that a damaged one (garbage,
    cut-off JSON, a truncated checkpoint) stops the run now, with one line naming it, not after hours."""
    from learngene_core.artifact import load_learngene
    from learngene_core.criterion.records import read_rows

    stages = set(ctx.cfg.stage)
    for seed in ctx.collective_seeds:
        dirs = [ctx.collective_dir(seed, own=True)] if "collective" in stages else []
        if stages & {"learngene", "individual", "report"} and "collective" not in stages:
            dirs.append(ctx.collective_dir(seed))
        for d in dirs:
            run_files.read_manifest(d / "manifest.json")
            if (d / "metrics.json").exists():
                run_files.read_json_file(d / "metrics.json", "collective metrics")
            if (d / "gradient_stats.csv").exists() and stages & {"collective", "learngene"}:
                read_rows(d / "gradient_stats.csv")
        lg_dir = ctx.learngene_dir(seed)
        if "individual" in stages and "learngene" not in stages:
            load_learngene(lg_dir / "learngene.pt")
        if "report" in stages and "learngene" not in stages and (lg_dir / "learngene.json").exists():
            run_files.read_json_file(lg_dir / "learngene.json", "learngene record")
    if stages & {"individual", "report"}:
        for root in {ctx.out, ctx.source}:
            run_files.read_raw_results(run_files.raw_results_path(root))
