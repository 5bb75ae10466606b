"""Continual metrics, open-world metrics and the report's statistics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learngene_core.metrics.continual import (
    average_accuracy,
    backward_transfer,
    continual_summary,
    forgetting,
)
from learngene_core.metrics.open_world import fpr_at_tpr, open_world_metrics
from learngene_core.metrics.stats import mean_ci95, spearman

R = [[0.9], [0.6, 0.8], [0.5, 0.7, 0.95]]


def test_continual_metrics_against_hand_computation():
    assert average_accuracy(R, 0) == pytest.approx(0.9)
    assert average_accuracy(R, 1) == pytest.approx(0.7)
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    # BWT = ((0.5 - 0.9) + (0.7 - 0.8)) / 2
    assert backward_transfer(R) == pytest.approx(-0.25)
    # forgetting: task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: max(0.8) - 0.7 = 0.1
    assert forgetting(R) == pytest.approx(0.25)
    s = continual_summary(R)
    assert s["average_accuracy"] == pytest.approx([0.9, 0.7, 0.7166666])
    assert "R[i][j]" in s["definitions"]["accuracy_matrix"]
    assert backward_transfer([[0.5]]) is None and forgetting([[0.5]]) is None


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    R2 = [[0.5], [0.9, 0.6], [0.4, 0.6, 0.8]]
    assert forgetting(R2) == pytest.approx(((0.9 - 0.4) + (0.6 - 0.6)) / 2)
    assert backward_transfer(R2) == pytest.approx(((0.4 - 0.5) + (0.6 - 0.6)) / 2)


def test_open_world_auroc_and_fpr_against_hand_computation():
    known = torch.tensor([0.9, 0.8, 0.7, 0.6])
    unknown = torch.tensor([0.75, 0.5])
    # pairs known > unknown: 0.9,0.8 beat both (4), 0.7 beats 0.5 (1), 0.6 beats 0.5 (1): 6 of 8
    from torchmetrics.functional.classification import binary_auroc

    preds = torch.cat([known, unknown])
    target = torch.tensor([1, 1, 1, 1, 0, 0])
    assert float(binary_auroc(preds, target)) == pytest.approx(6 / 8)
    # 95 % TPR needs all four knowns: threshold 0.6 -> unknowns >= 0.6: one of two
    assert fpr_at_tpr(known, unknown) == pytest.approx(0.5)


def test_open_world_metrics_from_logits():
    known = torch.tensor([[5.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    unknown = torch.tensor([[0.1, 0.0, 0.05], [0.0, 0.2, 0.1]])
    m = open_world_metrics(known, unknown)
    assert m["auroc_msp"] == 1.0 and m["auroc_energy"] == 1.0 and m["fpr95_msp"] == 0.0
    assert open_world_metrics(known, unknown[:0]) == {}


def test_confidence_interval_against_hand_computation():
    values = [0.40, 0.50, 0.55, 0.45, 0.60]
    mean, half = mean_ci95(values)
    sd = math.sqrt(sum((v - 0.5) ** 2 for v in values) / 4)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(2.776445105 * sd / math.sqrt(5), rel=1e-6)  # t(0.975, 4)
    assert mean_ci95([0.3]) == (0.3, None)
    with pytest.raises(ValueError):
        mean_ci95([])


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_open_world_metrics_do_not_saturate_on_large_or_confident_scores():
    from learngene_core.metrics.open_world import auroc

    # energies around 40: a sigmoid would map all of them to 1.0 and report chance
    assert auroc(torch.tensor([40.0, 41.0, 42.0]), torch.tensor([37.5, 38.0, 39.0])) == 1.0
    # very confident logits: float32 softmax would give MSP == 1.0 for all of them
    known = torch.tensor([[60.0, 0.0], [50.0, 0.0]])
    unknown = torch.tensor([[45.0, 0.0], [30.0, 0.0]])
    m = open_world_metrics(known, unknown)
    assert m["auroc_msp"] == 1.0 and m["auroc_energy"] == 1.0
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])) == 0.5  # ties count half


def test_finite_loss_guard_names_the_first_bad_step_also_when_deferred():
    from learngene_core.errors import NonFiniteLossError
    from learngene_core.utils.finite import FiniteLossGuard

    eager = FiniteLossGuard("collective task 2")
    eager.check(torch.tensor(1.0), 0, 0)
    with pytest.raises(NonFiniteLossError, match="collective task 2, epoch 1, step 7"):
        eager.check(torch.tensor(float("nan")), 1, 7)
    deferred = FiniteLossGuard("individual", every=100, defer=True)  # as on a GPU: no host sync per step
    for step, value in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0]):
        deferred.check(torch.tensor(value), 0, step + 1)
    with pytest.raises(NonFiniteLossError, match="individual, epoch 0, step 3"):
        deferred.flush()


def test_convergence_verdict_on_flat_and_falling_curves():
    from learngene_core.metrics.convergence import convergence

    assert convergence([1.0] * 50 + [0.5] * 50)["converged"]  # flat at the end
    falling = convergence(list(np.linspace(2.0, 0.5, 100)))
    assert not falling["converged"] and falling["relative_drop_last_window"] > 0.05
    assert not convergence([1.0, 0.9])["converged"]  # too short to judge


def test_paired_difference_matches_a_hand_computation():
    from learngene_core.metrics.stats import paired_difference

    a, b = [0.5, 0.6, 0.7, 0.9], [0.4, 0.6, 0.5, 0.6]
    p = paired_difference(a, b)
    d = np.array(a) - np.array(b)
    assert p["mean_diff"] == pytest.approx(d.mean()) and p["n"] == 4
    assert p["ci95"] == pytest.approx(3.182446 * d.std(ddof=1) / 2, rel=1e-5)
    assert 0 < p["p_wilcoxon"] <= 1
    assert paired_difference([0.5, 0.5], [0.5, 0.5])["p_wilcoxon"] is None
