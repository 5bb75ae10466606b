"""One place for the criterion's statistics: a name -> function registry.

Two cadences of statistic:

- ``step``: ``fn(grad, weight, tau) -> 0-d tensor``, computed after every backward pass for every
  block (its watched weights flattened and concatenated) and linear layer, averaged over the steps of
  an epoch (recorded per epoch);
- ``task``: ``fn(probe) -> list[float]`` (one value per block), computed once at the end of each task
  from a :class:`~learngene_core.criterion.learning.TaskProbe` (the block weights at the start and end
  of the task, representations of a fixed probe set, a Fisher estimate).

``normalise="first_task"`` divides each layer's per-task values by its value on the first task
(scale-free across layers). The selection rule picks the window with the lowest, most stable values,
so every statistic is oriented "low = settled". Registering a statistic is one decorated function::

    @register_statistic("my_stat", cadence="task", description="...")
    def my_stat(probe): return [...]

A statistic's own options are its function's keyword-only parameters, each with a default and a type annotation
(``def my_stat(probe, *, power: float = 1.0)``); a run sets them as ``+criterion.options.my_stat.power=2``, and the
config check refuses an unknown option or a value that does not fit its annotation, as for the suite's own keys.
Every registered statistic is recorded in every run; ``criterion.statistic`` selects by name. A statistic outside
this package is registered by importing its module: ``criterion.modules=[my_package.my_statistics]``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CADENCES = ("step", "task")  # when a statistic is computed: every step, or once per task
NORMALISATIONS = (None, "first_task")


@dataclass(frozen=True)
class Statistic:
    name: str
    cadence: str  # one of CADENCES
    fn: Callable
    description: str
    normalise: str | None = None

    def options(self) -> dict[str, inspect.Parameter]:
        """The statistic's own options: its function's keyword-only parameters."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p for p in params if p.kind is p.KEYWORD_ONLY}

    def with_options(self, options: Mapping[str, Any] | None) -> Statistic:
        """This statistic with ``options`` bound (the others keep their defaults)."""
        if not options:
            return self
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise ValueError(
                f"statistic {self.name!r} has no option {unknown}; options: {sorted(self.options())}"
            )
        return dataclasses.replace(self, fn=functools.partial(self.fn, **dict(options)))


STATISTICS: dict[str, Statistic] = {}


def register_statistic(
    name: str, cadence: str, description: str, normalise: str | None = None
) -> Callable[[Callable], Callable]:
    if cadence not in CADENCES:
        raise ValueError(f"statistic cadence {cadence!r}; valid: {list(CADENCES)}")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r}; valid: {list(NORMALISATIONS)}")

    def deco(fn: Callable) -> Callable:
        stat = Statistic(name, cadence, fn, description, normalise)
        bare = [n for n, p in stat.options().items() if p.default is p.empty]
        if bare:
            raise ValueError(
                f"statistic {name!r}: keyword-only parameters {bare} need a default (options are optional)"
            )
        STATISTICS[name] = stat
        return fn

    return deco


def unregister_statistic(name: str) -> None:
    STATISTICS.pop(name, None)


def statistics(cadence: str | None = None, options: Mapping[str, Mapping] | None = None) -> list[Statistic]:
    """The registered statistics (of one cadence), in registration order; ``options``: statistic name -> its options
    (``criterion.options``), bound into each function."""
    load_builtin()
    options = options or {}
    return [
        s.with_options(options.get(s.name))
        for s in STATISTICS.values()
        if cadence is None or s.cadence == cadence
    ]


def statistic_names() -> list[str]:
    return [s.name for s in statistics()]


def get_statistic(name: str) -> Statistic:
    load_builtin()
    if name not in STATISTICS:
        raise KeyError(f"statistic {name!r} is not registered; registered: {sorted(STATISTICS)}")
    return STATISTICS[name]


@functools.cache
def load_builtin() -> None:
    """Import every module of this package (a module registers its statistics when imported): a new built-in
    statistic is a decorated function in any of them, or in a new module beside them."""
    import learngene_core.criterion as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def load_modules(modules: Sequence[str]) -> None:
    """Import modules outside this package that register statistics of their own (``criterion.modules``)."""
    for name in modules:
        importlib.import_module(name)
