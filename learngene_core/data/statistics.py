"""Per-channel normalisation statistics computed from the training images (``data.mean: auto``)."""

from __future__ import annotations

import torch


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per channel of uint8 images (N, C, H, W), on the 0..1 scale."""
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(
            f"channel statistics need a non-empty (N, C, H, W) batch, got shape {tuple(x.shape)}"
        )
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    count = 0
    for part in x.split(chunk):
        v = part.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += v.sum(1)
        squares += (v * v).sum(1)
        count += v.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
