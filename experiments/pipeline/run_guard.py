"""What keeps a run directory consistent: one process per directory, a writable output before any work,
and an interrupted run (SIGTERM, Ctrl-C) that says how to resume and exits non-zero."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from learngene_core.errors import ConfigError

LOCK_NAME = ".learngene.lock"


class RunInterrupted(BaseException):
    """The run was stopped by a signal; everything finished so far is saved.

    A ``BaseException``, like ``KeyboardInterrupt``: the signal handler raises it wherever the main thread happens
    to be, and an ``except Exception`` there (``inspect``'s signature probing inside Lightning's ``self.log``, for
    one) would otherwise swallow it or turn it into an unrelated error that exits with status 1."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame
        self.exit_code = 128 + int(getattr(signal, signame))
        self.message = f"the run was stopped by {signame}"

    def with_context(self, stage: str, out: Path) -> RunInterrupted:
        self.message = (
            f"the run was stopped by {self.signame} during stage {stage}; everything finished before is saved in "
            f"{out}: rerun the same command (same paths.output_dir) to resume"
        )
        return self


def check_output_dir(out: Path) -> None:
    """The output directory exists (or can be created) and accepts files, before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"paths.output_dir={out} cannot be created ({err.strerror or err}); choose a writable folder"
        ) from None
    if not out.is_dir():
        raise ConfigError(f"paths.output_dir={out} is not a folder; choose a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"paths.output_dir={out} is not writable ({err.strerror or err}); choose a writable folder"
        ) from None


class RunLock:
    """An exclusive lock on a run directory for as long as this process runs the pipeline there.

    A second process started on the same directory (the same command twice, or another seed with the same
    ``hydra.run.dir``) is refused with one line naming the holder. The lock is an ``flock`` on
    ``<run>/.learngene.lock``, so it is released when the holder exits, however it exits."""

    def __init__(self, out: Path, command: str | None = None) -> None:
        self.path = Path(out) / LOCK_NAME
        self.command = command or " ".join(sys.argv)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is in use by another run ({holder}); wait for it to finish or give this run "
                f"its own paths.output_dir"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": self.command}  # fmt: skip
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class StopOnSignal:
    """Turn SIGTERM (SLURM pre-emption, ``kill``) and SIGINT (Ctrl-C) into :class:`RunInterrupted` while the
    pipeline runs.

    Lightning's own handling would end ``fit`` with status 0 on SIGTERM and ``sys.exit(1)`` on a
    ``KeyboardInterrupt``; raising our own exception first keeps a stopped run from looking finished (or failed)
    to ``run && next`` or a job array, and lets the entry point say how to resume. ``sigint=False`` leaves Ctrl-C
    to Lightning, whose KeyboardInterrupt path also kills the data-parallel worker processes (the runner passes it
    for multi-process runs); a signal the process was started ignoring (``nohup``, a background job) stays
    ignored."""

    def __init__(self, sigint: bool = True) -> None:
        self.signals = (signal.SIGTERM, signal.SIGINT) if sigint else (signal.SIGTERM,)

    def __enter__(self) -> StopOnSignal:
        def handler(signum, frame):
            raise RunInterrupted(signal.Signals(signum).name)

        self.previous: dict[int, object] = {}
        try:
            for signum in self.signals:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:
                    continue
                self.previous[signum] = (
                    signal.SIG_DFL if previous is None else previous
                )  # None: set outside Python
                signal.signal(signum, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
