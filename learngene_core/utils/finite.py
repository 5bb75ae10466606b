"""Stop on a non-finite loss, naming where it happened.

On CPU the check is a plain comparison every step. On an accelerator it is kept on the device (no
host synchronisation per step): the first bad step is recorded in a device tensor and read back every
``every`` steps and at the end of each epoch; the error still names the exact step.
"""

from __future__ import annotations

import torch

from learngene_core.errors import NonFiniteLossError


class FiniteLossGuard:
    def __init__(self, where: str, every: int = 50, defer: bool | None = None) -> None:
        """``defer``: keep the check on the device (default: on accelerators only)."""
        self.where, self.every, self.defer = where, every, defer
        self._first_bad: torch.Tensor | None = None
        self._epoch_of_bad: torch.Tensor | None = None

    def check(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        if not (self.defer if self.defer is not None else loss.device.type != "cpu"):
            if not torch.isfinite(loss):
                self._raise(float(loss.detach()), epoch, step)
            return
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._epoch_of_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)
        # torch.full launches a fill kernel; torch.tensor(step, device=...) would copy from the host and block
        self._first_bad = torch.where(
            bad, torch.full((), step, dtype=torch.long, device=loss.device), self._first_bad
        )
        self._epoch_of_bad = torch.where(
            bad, torch.full((), epoch, dtype=torch.long, device=loss.device), self._epoch_of_bad
        )
        if step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if self._first_bad is not None and int(self._first_bad) >= 0:
            self._raise(float("nan"), int(self._epoch_of_bad), int(self._first_bad))

    def _raise(self, value: float, epoch: int, step: int) -> None:
        raise NonFiniteLossError(
            f"non-finite loss ({value}) in {self.where}, epoch {epoch}, step {step}; the run stopped instead of "
            f"training on NaNs. Lower the learning rate, check the data normalisation, or set a smaller ewc.lam"
        )
