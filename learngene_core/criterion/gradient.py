"""The step statistics: computed from a layer's gradient after every backward pass, on the device.

For a layer with weight W and gradient G = dL/dW (read before weight decay is applied):

- ``paper_signed_frac``: #{G > tau} / |W| -- the paper's statistic as its public code computes it (only
  positive entries count; tau 5e-10 on CIFAR, 5e-4 on ImageNet). With cross-entropy on logits almost
  every non-zero entry exceeds tau = 5e-10, so this is about half the fraction of non-zero entries:
  its signal is exact zeros, which are structural (corner taps on 2x2 maps, dead ReLU channels) and
  present before any learning. Kept for faithfulness, named as the paper's.
- ``abs_frac``: #{|G| > tau} / |W| -- the absolute-value form;
- ``mean_abs``: mean |G| -- carries the gradient's scale;
- ``rel_norm``: ||G|| / ||W|| -- invariant to rescaling the loss and the layer together.

The statistics of "how a layer's learning settles" (free of gradient scale and structural zeros) are
task statistics: :mod:`learngene_core.criterion.learning`.
"""

from __future__ import annotations

import torch

from learngene_core.criterion.registry import register_statistic


@register_statistic(
    "paper_signed_frac",
    "step",
    "the paper's statistic: fraction of gradient entries > tau (signed, as its public code)",
)
def paper_signed_frac(g: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    return (g > tau).sum().float() / g.numel()


@register_statistic("abs_frac", "step", "fraction of gradient entries with |g| > tau")
def abs_frac(g: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    return (g.abs() > tau).sum().float() / g.numel()


@register_statistic("mean_abs", "step", "mean |g| (scale-carrying)")
def mean_abs(g: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    return g.abs().sum() / g.numel()


@register_statistic("rel_norm", "step", "||g|| / ||W||")
def rel_norm(g: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.linalg.vector_norm(g) / torch.linalg.vector_norm(w).clamp_min(1e-12)


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One float32 vector of several tensors (a view when there is only one contiguous tensor)."""
    if len(tensors) == 1:
        return tensors[0].detach().float().reshape(-1)
    return torch.cat([t.detach().float().reshape(-1) for t in tensors])


def step_statistics(
    stats: list, grads: list[torch.Tensor | None], weights: list[torch.Tensor], tau: float
) -> torch.Tensor:
    """The step statistics ``stats`` of one layer (its weights and their gradients) as one float32 vector
    on the gradient's device; a layer without gradients (frozen, unused) gives zeros."""
    if any(g is None for g in grads):
        return torch.zeros(len(stats), device=weights[0].device)
    g, w = flat(grads), flat(weights)
    return torch.stack([s.fn(g, w, tau).float() for s in stats])
