"""One place for the criterion's statistics: a name -> function registry.

Two kinds of statistic:

- ``step``: ``fn(grad, weight, tau) -> 0-d tensor``, computed after every backward pass for every
  block (its watched weights flattened and concatenated) and linear layer, averaged over the steps of
  an epoch (recorded per epoch);
- ``task``: ``fn(probe) -> list[float]`` (one value per block), computed once at the end of each task
  from a :class:`~learngene_core.criterion.learning.TaskProbe` (the block weights at the start and end
  of the task, representations of a fixed probe set, a Fisher estimate).

``normalise="first_task"`` divides each layer's per-task values by its value on the first task
(scale-free across layers). The selection rule picks the window with the lowest, most stable values,
so every statistic is oriented "low = settled". Registering a statistic is one decorated function::

    @register_statistic("my_stat", kind="task", description="...")
    def my_stat(probe): return [...]

Every registered statistic is recorded in every run; ``criterion.statistic`` selects by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("step", "task")
NORMALISATIONS = (None, "first_task")


@dataclass(frozen=True)
class Statistic:
    name: str
    kind: str
    fn: Callable
    description: str
    normalise: str | None = None
    paper: bool = False  # the paper's own statistic


STATISTICS: dict[str, Statistic] = {}


def register_statistic(
    name: str, kind: str, description: str, normalise: str | None = None, paper: bool = False
) -> Callable[[Callable], Callable]:
    if kind not in KINDS:
        raise ValueError(f"statistic kind {kind!r}; valid: {list(KINDS)}")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r}; valid: {list(NORMALISATIONS)}")

    def deco(fn: Callable) -> Callable:
        STATISTICS[name] = Statistic(name, kind, fn, description, normalise, paper)
        return fn

    return deco


def unregister_statistic(name: str) -> None:
    STATISTICS.pop(name, None)


def statistics(kind: str | None = None) -> list[Statistic]:
    """The registered statistics (of one kind), in registration order."""
    load_builtin()
    return [s for s in STATISTICS.values() if kind is None or s.kind == kind]


def statistic_names() -> list[str]:
    return [s.name for s in statistics()]


def get_statistic(name: str) -> Statistic:
    load_builtin()
    if name not in STATISTICS:
        raise KeyError(f"statistic {name!r} is not registered; registered: {sorted(STATISTICS)}")
    return STATISTICS[name]


def load_builtin() -> None:
    """Import the modules that register the built-in statistics."""
    from learngene_core.criterion import gradient, learning  # noqa: F401
