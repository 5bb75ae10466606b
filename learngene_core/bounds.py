"""Bounds a configuration value must respect, declared in a type: ``Annotated[int, Range(ge=0, le=64)]``.

Plain data (no Hydra, no Lightning), so the core's own signatures can carry them; the suite's config check
(experiments/pipeline/config_schema.py) reads them from dataclass fields and from ``_target_`` signatures alike.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Bounds of a number, or of every entry of a list (``min_len``: the list's least length)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_len: int | None = None


@dataclass(frozen=True)
class Supplied:
    """On a builder node (``_partial_: true``): the arguments its caller supplies at call time, which the node
    must not set (they would be overwritten)."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", tuple(names))
