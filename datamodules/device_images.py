"""The training images of a DataModule, held on the Trainer's device when ``on_device`` (moved once)."""

from __future__ import annotations

import lightning as L
import torch


class DeviceImages:
    def __init__(self, x: torch.Tensor, on_device: bool) -> None:
        self.cpu, self.on_device = x, on_device
        self.x, self.device = x, torch.device("cpu")

    def setup(self, trainer: L.Trainer | None) -> torch.Tensor:
        device = (
            trainer.strategy.root_device if (trainer is not None and self.on_device) else torch.device("cpu")
        )
        if device != self.device:
            self.x, self.device = self.cpu.to(device), device
        return self.x
