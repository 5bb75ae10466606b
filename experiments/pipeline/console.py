"""One rich console for the whole run: stage progress bars, per-epoch rows, and log lines printed above them."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
if not console.is_terminal:  # a log file or a pipe: no 80-column wrapping of long log lines
    console = Console(width=200)


def route_logging_through_rich() -> None:
    """Replace the root logger's console handlers (Hydra's) with one printing through the shared console, so
    log lines do not run into the progress bars; file handlers (Hydra's run log) stay."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h) is logging.StreamHandler:  # Hydra's console handler (subclasses: files, test capture)
            root.removeHandler(h)
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def stage_progress(disable: bool = False) -> Progress:
    """A progress display: a row per stage (tasks or methods done, ETA) and a row per running fit (epochs)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
        console=console,
        transient=False,
        disable=disable,
    )


def log_epochs() -> bool:
    """Per-epoch log lines when nobody sees a live bar (output to a file or a pipe)."""
    return not console.is_terminal
