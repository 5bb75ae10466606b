"""A multi-arm method's own part of the report: it names a :class:`ReportSection` where it is registered
(``register_method(..., section="module:ATTR")``), and the report builds, prints, plots and logs it without naming
the method. The results dict holds each section's tables per shot count under the method's name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments.methods.registry import METHODS, load_builtin


@dataclass
class SectionInput:
    """What a section's table is built from, for one shot count."""

    raw: dict  # individual/results_raw.json
    entries: list[dict]  # the method's entries on the test tasks
    validation: list[dict]  # its entries on the held-out validation tasks (empty unless it runs there)
    learngenes: dict[int, dict]  # learngene.json per collective seed


def _no_lines(table: dict) -> list[str]:
    return []


def _no_scalars(shots: str, table: dict) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class ReportSection:
    table: Callable[
        [SectionInput], dict | None
    ]  # the numbers (results.json), None when there is nothing to show
    markdown: Callable[[str, dict], list[str]]  # (shots, table) -> results.md lines
    terminal: Callable[[dict], list[str]] = _no_lines  # lines under the shot count's rows, <= 98 columns
    plot: Callable[[dict, Path, str, dict], Path] | None = None  # (table, path, title, protocol) -> the PNG
    scalars: Callable[[str, dict], dict[str, float]] = _no_scalars  # (shots, table) -> logged scalars
    note: str | None = None  # stored beside the tables as results["<method>_note"]


def load_section(target: str) -> ReportSection:
    module, _, attr = target.partition(":")
    section = getattr(importlib.import_module(module), attr)
    if not isinstance(section, ReportSection):
        raise TypeError(f"{target} is a {type(section).__name__}, not a ReportSection")
    return section


def sections_for(methods: list[str]) -> dict[str, ReportSection]:
    """Every registered method's section (the run's ``methods`` first, in their order): each has its key in the
    results, empty when the method did not run."""
    load_builtin()
    names = [m for m in methods if m in METHODS] + [m for m in METHODS if m not in methods]
    return {n: load_section(METHODS[n].section) for n in names if METHODS[n].section}
