"""Check the whole configuration before any work starts.

Each problem is reported as one line naming the key, the bad value and what is valid, e.g.
``collective.epochs=0: must be an integer >= 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from learngene.core.gradient_stats import STATISTICS
from learngene.core.individual import LOWER_POOLS
from learngene.core.selection import WEIGHTINGS
from learngene.datamodules.sources.registry import SOURCES, SPLITS
from learngene.datamodules.target_tasks import PROTOCOLS
from learngene.errors import ConfigError
from learngene.pipeline import STAGES

METHODS = ("learngene", "scratch", "judgement", "finetune", "linear_probe", "prototype", "protonet", "maml")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"{key} is required but not set; pass {key}=VALUE on the command line") from None
    except Exception as err:  # interpolation errors
        raise ConfigError(f"{key} cannot be resolved: {err}") from None


def _fail(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={value!r}: {valid}")


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
    "data.source": one_of(SOURCES),
    "data.image_size": int_range(8, 1024),
    "data.split": one_of(SPLITS),
    "data.on_device": is_bool,
    "data.augment.crop_padding": int_range(0, 64),
    "data.augment.flip": is_bool,
    "model.hidden": int_list(1),
    "model.pool_after": int_list(1, 0),
    "model.dropout": real_range(0, 1, hi_open=True),
    "model.width_mult": real_range(0, lo_open=True),
    "model.growth.enabled": is_bool,
    "model.growth.noise": real_range(0),
    "model.widths": int_list(1),
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
    "criterion.statistic": one_of(STATISTICS),
    "criterion.tau": real_range(0),
    "criterion.k": int_range(1),
    "criterion.warmup_tasks": int_range(0),
    "criterion.task_weighting": one_of(WEIGHTINGS),
    "criterion.epoch_aggregate": one_of(("mean", "last")),
    "criterion.stability": real_range(0),
    "criterion.after_task": int_range(0, none_ok=True),
    "criterion.window": int_range(0, none_ok=True),
    "individual.ways": int_range(2),
    "individual.shots": int_list(1),
    "individual.n_tasks": int_range(1),
    "individual.seeds": int_list(0),
    "individual.protocol": one_of(PROTOCOLS),
    "individual.queries": int_range(1),
    "individual.epochs": int_range(1),
    "individual.batch_size": int_range(1),
    "individual.lr": real_range(0, lo_open=True),
    "individual.momentum": real_range(0, 1, hi_open=True),
    "individual.weight_decay": real_range(0),
    "individual.hidden": int_list(1),
    "individual.pool_to": int_range(1),
    "individual.lower_pools": one_of(LOWER_POOLS),
    "individual.freeze_inherited": is_bool,
    "individual.inherited_lr": real_range(0, none_ok=True),
    "individual.batched": is_bool,
    "individual.task_batch": int_range(1, none_ok=True),
    "individual.stacking": one_of(("auto", "loop", "grouped")),
    "baselines.prototype_metric": one_of(("euclidean", "cosine")),
    "baselines.protonet.episodes": int_range(1),
    "baselines.protonet.ways": int_range(2),
    "baselines.protonet.shots": int_range(1),
    "baselines.protonet.queries": int_range(1),
    "baselines.protonet.lr": real_range(0, lo_open=True),
    "baselines.maml.iterations": int_range(1),
    "baselines.maml.meta_batch": int_range(1),
    "baselines.maml.shots": int_range(1),
    "baselines.maml.queries": int_range(1),
    "baselines.maml.inner_lr": real_range(0, lo_open=True),
    "baselines.maml.inner_steps": int_range(1),
    "baselines.maml.test_steps": int_range(1),
    "baselines.maml.first_order": is_bool,
    "baselines.maml.lr": real_range(0, lo_open=True),
    "trainer.accelerator": one_of(ACCELERATORS),
    "trainer.precision": one_of(PRECISIONS),
    "trainer.num_nodes": int_range(1),
    "trainer.channels_last": is_bool,
    "trainer.sync_batchnorm": is_bool,
    "trainer.compile": is_bool,
    "logger.kind": one_of(("none", "csv", "wandb")),
    "callbacks.gradient_stats.enabled": is_bool,
    "callbacks.gradient_stats.every_n_steps": int_range(1),
}


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first invalid value (config-only checks; data checks come later)."""
    for key, rule in RULES.items():
        rule(key, _get(cfg, key))
    source = _get(cfg, "data.source")
    if source in ("npz", "imagefolder"):
        _get(cfg, "data.path")
    elif source == "cifar100":
        _get(cfg, "data.root")
    stages = list(_get(cfg, "stage") or [])
    if not stages:
        _fail("stage", stages, f"must list at least one of {list(STAGES)}")
    for s in stages:
        if s not in STAGES:
            _fail("stage", stages, f"{s!r} is not a stage; valid stages are {list(STAGES)}")
    order = [STAGES.index(s) for s in stages]
    if order != sorted(order) or len(set(order)) != len(order):
        _fail("stage", stages, f"stages must appear once each in pipeline order {list(STAGES)}")
    methods = list(_get(cfg, "baselines.methods") or [])
    for m in methods:
        if m not in METHODS:
            _fail("baselines.methods", methods, f"{m!r} is not a method; valid methods are {list(METHODS)}")
    if not methods and "individual" in stages:
        _fail("baselines.methods", methods, f"the individual stage needs at least one of {list(METHODS)}")
    widths = list(_get(cfg, "model.widths"))
    for p in _get(cfg, "model.pool_after"):
        if p > len(widths):
            _fail(
                "model.pool_after",
                list(_get(cfg, "model.pool_after")),
                f"entries must be block numbers 1..{len(widths)}",
            )
    k = _get(cfg, "criterion.k")
    if k > len(widths):
        _fail("criterion.k", k, f"must be at most the number of conv blocks ({len(widths)})")
    window = _get(cfg, "criterion.window")
    if window is not None and window > len(widths) - k:
        _fail("criterion.window", window, f"a window of k={k} blocks starts at 0..{len(widths) - k}")
    for i, entry in enumerate(_get(cfg, "model.growth.schedule") or []):
        e = OmegaConf.to_container(entry) if isinstance(entry, DictConfig | ListConfig) else entry
        if isinstance(e, dict):
            ok = e.get("op") == "deepen" and isinstance(e.get("after"), int) and 0 <= e["after"] < len(widths)
        else:
            ok = isinstance(e, list) and len(e) == 2 and 0 <= int(e[0]) < len(widths) and int(e[1]) >= 1
        if not ok:
            _fail(
                f"model.growth.schedule[{i}]",
                e,
                f"entries are [conv index 0..{len(widths) - 1}, units >= 1] or {{op: deepen, after: i}}",
            )
    if _get(cfg, "collective.labels") == "relative" and _get(cfg, "collective.head") == "growing":
        _fail(
            "collective.head",
            "growing",
            "task-relative labels use one shared head; set collective.head=fixed",
        )
    if _get(cfg, "logger.kind") == "wandb":
        one_of(("online", "offline", "disabled"))("logger.mode", _get(cfg, "logger.mode"))
    from_run = _get(cfg, "from_run")
    if from_run is not None and not Path(str(from_run)).is_dir():
        _fail("from_run", from_run, "must be the output directory of an earlier run (it does not exist)")
    if from_run is not None and "collective" in stages:
        _fail(
            "from_run",
            from_run,
            "reuses an earlier collective run, so 'collective' cannot be in stage as well",
        )
    if _get(cfg, "trainer.precision") == "16-mixed" and _get(cfg, "callbacks.gradient_stats.enabled"):
        _fail(
            "trainer.precision",
            "16-mixed",
            "scales the loss, so the gradient statistics would read scaled "
            "gradients; use bf16-mixed or 32-true (or callbacks.gradient_stats.enabled=false)",
        )
    if from_run is None and "collective" not in stages and stages[0] != "report":
        out = Path(str(_get(cfg, "paths.output_dir")))
        if not (out / "collective" / "manifest.json").exists():
            _fail(
                "stage",
                stages,
                "stages after 'collective' need its outputs: add 'collective', or set from_run=DIR of a finished run",
            )
    mean, std = _get(cfg, "data.mean"), _get(cfg, "data.std")
    if len(mean) != len(std) or any(s <= 0 for s in std):
        _fail("data.std", list(std), f"needs one positive value per channel, like data.mean {list(mean)}")
