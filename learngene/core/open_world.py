"""Open-world recognition: known (seen base classes) versus unknown (open-world classes) images.

Scores (higher = more likely known): maximum softmax probability (MSP, Hendrycks & Gimpel 2017) and
the negative free energy logsumexp(logits) (Liu et al. 2020). Reported: AUROC with known as the
positive class, and FPR at 95 % TPR (the fraction of unknowns scored at least as high as the
threshold that keeps 95 % of the knowns).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

SCORES = ("msp", "energy")


def scores_from_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = logits.float()
    return {"msp": logits.softmax(-1).max(-1).values, "energy": torch.logsumexp(logits, -1)}


def fpr_at_tpr(known: torch.Tensor, unknown: torch.Tensor, tpr: float = 0.95) -> float:
    preds = torch.cat([known, unknown]).double()
    target = torch.cat([torch.ones_like(known), torch.zeros_like(unknown)]).long()
    fpr, tprs, _ = binary_roc(preds, target)
    idx = torch.nonzero(tprs >= tpr - 1e-12)[0, 0]
    return float(fpr[idx])


def open_world_metrics(known_logits: torch.Tensor, unknown_logits: torch.Tensor) -> dict[str, float]:
    if len(known_logits) == 0 or len(unknown_logits) == 0:
        return {}
    k, u = scores_from_logits(known_logits), scores_from_logits(unknown_logits)
    out = {}
    for name in SCORES:
        preds = torch.cat([k[name], u[name]]).double()
        target = torch.cat([torch.ones(len(k[name])), torch.zeros(len(u[name]))]).long()
        out[f"auroc_{name}"] = float(binary_auroc(preds, target))
        out[f"fpr95_{name}"] = fpr_at_tpr(k[name], u[name])
    return out
