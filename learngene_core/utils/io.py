"""Atomic writes: a crashed or killed run never leaves a half-written artifact behind.

Every file is written to a temporary sibling and moved into place with ``os.replace`` (atomic on POSIX),
with the permissions a plain ``open`` would give (0666 minus the umask: ``mkstemp`` alone would leave
0600, unreadable for collaborators on shared storage). A failed write (disk full, read-only folder) is an
:class:`~learngene_core.errors.OutputError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from learngene_core.errors import OutputError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | Path, write) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise OutputError(
            f"cannot write {path} ({err.strerror or err}); free space or make the folder writable (or choose "
            f"another paths.output_dir), then rerun the same command: finished work is kept"
        ) from err
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: str | None) -> None:
    if tmp and os.path.exists(tmp):
        os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return _atomic(path, lambda f: torch.save(obj, f))


def read_torch(path: str | Path, missing: str, damaged: str) -> Any:
    """``torch.load`` (CPU, weights only) of a file this suite wrote; a missing or unreadable file is a
    :class:`~learngene_core.errors.CheckpointError` naming it, followed by ``missing`` / ``damaged`` (what to do)."""
    from learngene_core.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is damaged or cut off ({type(err).__name__}: {err}); {damaged}"
        ) from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, set | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
