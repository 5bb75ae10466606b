"""Open-world recognition: known (seen base classes) versus unknown (open-world classes) images.

Scores (higher = more likely known): maximum softmax probability (MSP, Hendrycks & Gimpel 2017) and
the negative free energy logsumexp(logits) (Liu et al. 2020). Reported: AUROC with known as the
positive class, and FPR at 95 % TPR (the fraction of unknowns scored at least as high as the
threshold that keeps 95 % of the knowns).

Both metrics depend only on the order of the scores, so they are computed (with torchmetrics) on the
scores' average ranks scaled into [0, 1]: torchmetrics would otherwise squash scores outside [0, 1]
with a sigmoid, which saturates for large energies and ties distinct scores. MSP is ranked through its
logarithm, computed in float64 without cancellation, so confident predictions are not rounded to 1.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

SCORES = ("msp", "energy")


def scores_from_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Order-preserving scores in float64: log MSP = -log1p(sum_{j != max} exp(z_j - z_max)), computed
    without cancellation (so confident predictions stay distinct), and logsumexp (negative energy)."""
    z = logits.double()
    top = z.max(-1, keepdim=True).values
    rest = torch.exp(z - top).sort(-1).values[..., :-1].sum(-1)  # every term but the max's exp(0) = 1
    return {"msp": -torch.log1p(rest), "energy": torch.logsumexp(z, -1)}


def _ranks01(known: torch.Tensor, unknown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average ranks (ties share their mean rank) of all scores, scaled into [0, 1]."""
    from scipy.stats import rankdata

    both = torch.cat([known, unknown]).double().cpu().numpy()
    r = torch.from_numpy(rankdata(both, method="average")).double()
    r = (r - 1) / max(1, len(r) - 1)
    return r[: len(known)], r[len(known) :]


def _target(n_known: int, n_unknown: int) -> torch.Tensor:
    return torch.cat([torch.ones(n_known), torch.zeros(n_unknown)]).long()


def auroc(known: torch.Tensor, unknown: torch.Tensor) -> float:
    k, u = _ranks01(known, unknown)
    return float(binary_auroc(torch.cat([k, u]), _target(len(k), len(u))))


def fpr_at_tpr(known: torch.Tensor, unknown: torch.Tensor, tpr: float = 0.95) -> float:
    k, u = _ranks01(known, unknown)
    fpr, tprs, _ = binary_roc(torch.cat([k, u]), _target(len(k), len(u)))
    idx = torch.nonzero(tprs >= tpr - 1e-12)[0, 0]
    return float(fpr[idx])


def open_world_metrics(known_logits: torch.Tensor, unknown_logits: torch.Tensor) -> dict[str, float]:
    if len(known_logits) == 0 or len(unknown_logits) == 0:
        return {}
    k, u = scores_from_logits(known_logits), scores_from_logits(unknown_logits)
    out = {}
    for name in SCORES:
        out[f"auroc_{name}"] = auroc(k[name], u[name])
        out[f"fpr95_{name}"] = fpr_at_tpr(k[name], u[name])
    return out
