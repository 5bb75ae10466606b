"""The gradient criterion's statistics, computed on device without host synchronisation.

For a layer with weight W and gradient G = dL/dW (read before weight decay is applied):

- ``signed_frac``: #{G > tau} / |W| -- the paper's statistic as its public code computes it (only
  positive entries count);
- ``abs_frac``: #{|G| > tau} / |W| -- the absolute-value form;
- ``mean_abs``: mean |G| -- a scale-carrying companion;
- ``rel_norm``: ||G|| / ||W|| -- scale-free (invariant to rescaling the loss and the layer together).
"""

from __future__ import annotations

import torch

STATISTICS = ("signed_frac", "abs_frac", "mean_abs", "rel_norm")


def layer_statistics(grad: torch.Tensor, weight: torch.Tensor, tau: float) -> torch.Tensor:
    """The four statistics of one layer, as a float32 tensor on the gradient's device (order: STATISTICS)."""
    g = grad.detach().float()
    a = g.abs()
    n = g.numel()
    return torch.stack(
        [
            (g > tau).sum().float() / n,
            (a > tau).sum().float() / n,
            a.sum() / n,
            torch.linalg.vector_norm(g) / torch.linalg.vector_norm(weight.detach().float()).clamp_min(1e-12),
        ]
    )


def model_statistics(layers: list[tuple[torch.Tensor, torch.Tensor | None]], tau: float) -> torch.Tensor:
    """Stack statistics of (weight, grad) pairs into (n_layers, 4); a missing gradient counts as zeros."""
    rows = []
    for weight, grad in layers:
        if grad is None:
            rows.append(torch.zeros(len(STATISTICS), device=weight.device))
        else:
            rows.append(layer_statistics(grad, weight, tau))
    return torch.stack(rows)
