"""One place for the stage-3 methods: a name -> :class:`Method` registry the pipeline, the config check
and the report all read.

A method is one decorated function that plans its work for one (collective seed, shot count)::

    @register_method("my_method", label="my method (what it is)", needs_collective=True)
    def my_method(m: MethodContext) -> list[Job]:
        return [Job(identity={"kind": "my_method", ...}, run=lambda: ...)]

plus one config file ``experiments/configs/methods/my_method.yaml`` holding ``my_method: {...}`` (its
own node, ``m.cfg``), selected with ``methods=[...,my_method]``. A :class:`Job` says what determines
its numbers (``identity``: equal identities are computed once, across collective seeds and reruns)
and how to compute them (``run(tasks) -> (per-task results, info)``). Methods with several arms
(the judgement: every window, inherited and from scratch) return several jobs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig


@dataclass
class Job:
    identity: dict  # everything (besides the shared stage-3 settings) that determines the results
    run: Callable[[list], tuple[list, dict]]  # tasks -> (per-task TaskResults, info such as parameters)
    arm: str | None = None  # e.g. "inherit:conv1-conv3" for one arm of a multi-arm method
    extra: dict = field(default_factory=dict)  # stored with the entry (e.g. the window)


@dataclass
class MethodContext:
    run: Any  # the RunContext
    cfg: DictConfig  # the method's own config node
    collective_seed: int
    learngene: Any  # the Learngene of this collective seed
    shots: int

    @cached_property
    def collective(self):
        """The collective network the learngene was taken from (loaded on first use)."""
        from experiments.pipeline import run_files

        net, _, _ = run_files.final_checkpoint(
            self.run.collective_dir(self.collective_seed), self.learngene.meta.get("collective_task")
        )
        return net


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    plan: Callable[[MethodContext], list[Job]]
    needs_collective: bool = False  # reads the collective network itself (not only the learngene)
    config_keys: tuple[str, ...] | None = ()  # the keys of its config node (None: not checked)
    validation: bool = (
        False  # its jobs also run on the held-out validation tasks (the report chooses among its arms)
    )


METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    label: str,
    needs_collective: bool = False,
    config_keys: tuple[str, ...] | None = (),
    validation: bool = False,
) -> Callable[[Callable], Callable]:
    """``config_keys``: the keys its config node may hold (others are refused as typos); None: any.
    ``validation``: its jobs also run on the held-out validation tasks (``individual.validation``), where the
    report chooses among its arms before looking at the test tasks."""

    def deco(fn: Callable[[MethodContext], list[Job]]) -> Callable:
        METHODS[name] = Method(name, label, fn, needs_collective, config_keys, validation)
        return fn

    return deco


def unregister_method(name: str) -> None:
    METHODS.pop(name, None)


def load_builtin() -> None:
    """Import every module of this package (each registers its methods)."""
    import experiments.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("registry", "common"):
            importlib.import_module(f"experiments.methods.{info.name}")


def get_method(name: str) -> Method:
    load_builtin()
    if name not in METHODS:
        raise KeyError(f"method {name!r} is not registered; registered: {sorted(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    load_builtin()
    return list(METHODS)
