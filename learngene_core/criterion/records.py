"""The criterion's records: ``gradient_stats.csv`` (one row per task, epoch, layer and statistic).

Step statistics are written per epoch (their per-epoch means R_l(t, e)); task statistics once per task,
with ``epoch`` = -1. Rows are appended as whole lines with one write each and fsynced, so a killed
run leaves at most one torn last line; :func:`read_rows` drops such a line (and says so) instead of
failing, and :func:`truncate_rows` rewrites the file atomically on resume.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import numpy as np

from learngene_core.errors import CheckpointError, OutputError

# layer_type: conv (a block) | linear; LEGACY_FIELDS: the header before layer_type was named (it was "kind")
CSV_FIELDS = ("task", "epoch", "layer", "layer_type", "statistic", "value")
LEGACY_FIELDS = ("task", "epoch", "layer", "kind", "statistic", "value")
TASK_EPOCH = -1  # the epoch column of task statistics
EPOCH_AGGREGATES = ("mean", "last")  # a task's value: the mean of its epochs' values, or its last epoch's
log = logging.getLogger("learngene")


def _lines(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writerows(rows)
    return buf.getvalue()


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append whole rows in one write (header first for a new file), flushed to disk."""
    path = Path(path)
    text = _lines(rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", newline="") as f:
            if f.tell() == 0:
                text = ",".join(CSV_FIELDS) + "\n" + text
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputError(f"cannot append to {path} ({err.strerror or err}); free space or make it writable, then "
                          f"rerun the same command to resume") from err  # fmt: skip


def read_rows(path: str | Path) -> list[dict]:
    """Every complete row; a torn last line (a run killed mid-write) is dropped with a warning. Any other
    damage is a :class:`CheckpointError` naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    headers = (",".join(CSV_FIELDS), ",".join(LEGACY_FIELDS))
    if not text.strip() or (not text.endswith("\n") and any(h.startswith(text) for h in headers)):
        return []  # killed before (or while) writing the header: nothing was recorded
    lines = text.split("\n")
    torn = not text.endswith("\n") and lines[-1] != ""
    if torn:
        log.warning(
            "%s: dropping a torn last line (the run was killed while writing it): %r", path, lines[-1]
        )
        lines = lines[:-1]
    if lines and lines[0].strip() == headers[1]:  # a file from before: truncate_rows rewrites it on resume
        lines = [",".join(CSV_FIELDS), *lines[1:]]
    if not lines or lines[0].strip() != headers[0]:
        raise CheckpointError(
            f"{path} is not a gradient statistics file (header {lines[0][:60]!r} instead of "
            f"{','.join(CSV_FIELDS)!r}); delete it and rerun the collective stage"
        )
    out = []
    for n, r in enumerate(csv.DictReader(lines[1:], fieldnames=CSV_FIELDS), start=2):
        if None in r.values() or None in r:
            raise CheckpointError(f"{path}: line {n} is damaged ({r}); delete the file and rerun stage 1")
        try:
            out.append({**r, "task": int(r["task"]), "epoch": int(r["epoch"]), "value": float(r["value"])})
        except ValueError:
            raise CheckpointError(
                f"{path}: line {n} is damaged ({dict(r)}); delete the file and rerun the collective stage"
            ) from None
    return out


def truncate_rows(path: str | Path, first_unfinished_task: int) -> None:
    """Drop rows of tasks >= ``first_unfinished_task`` (a partial task is re-run on resume)."""
    from learngene_core.utils.io import atomic_write_text

    path = Path(path)
    if not path.exists():
        return
    rows = [r for r in read_rows(path) if r["task"] < first_unfinished_task]
    atomic_write_text(path, ",".join(CSV_FIELDS) + "\n" + _lines(rows))


def task_matrix(
    rows: list[dict],
    statistic: str,
    layer_type: str = "conv",
    aggregate: str = "mean",
    layer_order=None,
    normalise: str | None = None,
):
    """Per-task statistic S[t, l] from the rows: mean over epochs (or the ``last`` epoch).

    Layers follow ``layer_order`` (e.g. the final network's block names) or their first appearance; a
    layer absent from a task (a block inserted later by deepening) is NaN there. ``normalise=
    "first_task"`` divides each layer's values by its value on the first task it was recorded in."""
    if aggregate not in EPOCH_AGGREGATES:
        raise ValueError(f"epoch aggregate {aggregate!r}; valid: {list(EPOCH_AGGREGATES)}")
    rows = [r for r in rows if r["statistic"] == statistic and r["layer_type"] == layer_type]
    if not rows:
        return np.zeros((0, 0)), [], []
    tasks = sorted({r["task"] for r in rows})
    layers: list[str] = list(layer_order) if layer_order else []
    for r in rows:
        if r["layer"] not in layers and not layer_order:
            layers.append(r["layer"])
    t_index = {t: i for i, t in enumerate(tasks)}
    l_index = {name: i for i, name in enumerate(layers)}
    last = {}
    for r in rows:
        last[r["task"]] = max(last.get(r["task"], r["epoch"]), r["epoch"])
    sums = np.zeros((len(tasks), len(layers)))
    counts = np.zeros((len(tasks), len(layers)))
    for r in rows:
        li = l_index.get(r["layer"])
        if li is None or (aggregate == "last" and r["epoch"] != last[r["task"]]):
            continue
        ti = t_index[r["task"]]
        sums[ti, li] += r["value"]
        counts[ti, li] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        if normalise == "first_task" and len(out):
            # each layer by its first recorded task (a block inserted by deepening starts later than the others)
            recorded = ~np.isnan(out)
            first = out[recorded.argmax(0), np.arange(out.shape[1])]
            first = np.where(recorded.any(0) & (first != 0), first, np.nan)
            out = out / first
    return out, tasks, layers
