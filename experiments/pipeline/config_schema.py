"""Which keys the suite reads, so that a key it would ignore is an error instead of a silent no-op.

Two kinds of node:

- plain nodes (``collective``, ``criterion``, ...): every key must be one the suite reads
  (:data:`KNOWN`); a typo such as ``+collective.epochz=3`` is refused with the closest known key;
- object nodes (any node with ``_target_``: the data source, the backbone, the Trainer, loggers,
  callbacks, optimizers, LightningModules): the target must be importable and every key must be a
  parameter of it (unless it takes ``**kwargs``), so ``+trainer.gradient_clip_val=0.5`` reaches the
  Trainer and ``+trainer.gradient_clip_vall=0.5`` is refused before any work.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from learngene_core.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

KNOWN: dict[str, set[str]] = {
    "": {"paths", "data", "model", "trainer", "logger", "callbacks", "methods", "budget", "exp_name", "seed",
         "stage", "from_run", "optimized_metric", "compute", "protocol", "collective", "criterion", "individual"},
    "paths": {"root_dir", "data_dir", "log_dir", "output_dir"},
    "compute": {"channels_last", "compile"},
    "protocol": {"collective_tasks", "collective_epochs", "target_tasks", "seeds", "individual_epochs"},
    "budget": {"name", "collective_tasks", "collective_epochs", "train_per_class", "width_mult", "target_tasks",
               "seeds", "individual_epochs", "fisher_samples", "meta_episodes", "maml_iterations", "maml_first_order"},
    "collective": {"mode", "seeds", "n_tasks", "classes_per_task", "replacement", "train_per_class", "labels", "head",
                   "epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer", "module", "eval_batch_size",
                   "open_world_enters_at", "keep_checkpoints", "ewc", "joint_growth", "lr_schedule"},
    "collective.ewc": {"enabled", "lam", "gamma", "fisher", "fisher_samples"},
    "criterion": {"statistic", "tau", "k", "warmup_tasks", "task_weighting", "epoch_aggregate", "stability",
                  "after_task", "window", "probe_images", "fisher_samples"},
    "individual": {"ways", "shots", "n_tasks", "seeds", "protocol", "queries", "epochs", "batch_size", "batching", "lr",
                   "base_width",
                   "momentum", "weight_decay", "optimizer", "module", "hidden", "pool_to", "lower_pools",
                   "freeze_inherited", "inherited_lr", "batched", "task_batch", "cache_dir", "validation"},
    "individual.validation": {"n_tasks", "seeds", "group", "queries"},
    "model": {"net", "width_mult", "growth"},
    "model.growth": {"enabled", "schedule", "noise"},
    "data": {"source", "image_size", "split", "split_file", "mean", "std", "augment", "on_device", "path", "root",
             "download", "verify_checksum", "cache_dir"},
    "data.augment": {"crop_padding", "flip"},
}  # fmt: skip


def suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys under plain nodes that the suite does not read (data keys a source interpolates are fine)."""
    for node, known in KNOWN.items():
        sub = cfg if node == "" else OmegaConf.select(cfg, node)
        if not isinstance(sub, DictConfig):
            continue
        allowed = set(known)
        if node == "data":
            allowed |= _interpolated_keys(cfg, "data.source", "data.")
        for key in sub:
            if key not in allowed:
                full = f"{node}.{key}" if node else key
                raise ConfigError(
                    f"{full} is not a key the suite reads, so it would be ignored{suggest(str(key), allowed)} "
                    f"(keys of {node or 'the top level'}: {sorted(allowed)})"
                )


def _interpolated_keys(cfg: DictConfig, node: str, prefix: str) -> set[str]:
    """Keys ``prefix<key>`` that the values of ``node`` interpolate (a new data source's own settings)."""
    sub = OmegaConf.select(cfg, node)
    if not isinstance(sub, DictConfig):
        return set()
    out = set()
    for key in sub:
        raw = OmegaConf.to_container(sub, resolve=False).get(key)
        if isinstance(raw, str) and "${" + prefix in raw:
            for part in raw.split("${" + prefix)[1:]:
                out.add(part.split("}")[0].split(".")[0])
    return out


def locate(path: str, key: str):
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as err:  # ImportError, AttributeError, ValueError
        raise ConfigError(
            f"{key}._target_={path!r} cannot be imported ({type(err).__name__}: {err}); name an importable "
            f"callable (module.function or module.Class)"
        ) from None


def check_target_node(node: DictConfig, key: str) -> None:
    target = node.get("_target_")
    obj = locate(str(target), key)
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for k in node:
        if k in HYDRA_KEYS:
            continue
        if k not in names:
            raise ConfigError(
                f"{key}.{k} is not a parameter of {target}{suggest(str(k), names)}; valid: {sorted(names)}"
            )


def check_targets(node: Any, key: str = "") -> None:
    """Every ``_target_`` node under ``node``: importable, and every key one of its parameters."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_target_node(node, key)
        for k in node:
            if k == "hydra":
                continue
            if OmegaConf.is_missing(node, k):
                continue
            try:
                child = node[k]
            except Exception:  # unresolvable interpolation: reported by the value checks
                continue
            check_targets(child, f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            if isinstance(item, DictConfig | ListConfig):
                check_targets(item, f"{key}[{i}]")
