"""Few-shot statistics: mean with a 95 % confidence interval (Student t), Spearman rank correlation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_ci95(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95 % confidence interval: t_{0.975, n-1} * s / sqrt(n).

    ``s`` is the sample standard deviation (ddof=1). With one value the interval is undefined (None).
    """
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values to average")
    mean = float(x.mean())
    if x.size == 1:
        return mean, None
    half = float(t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, half


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (None when undefined: fewer than 3 points or a constant input)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired comparison of ``a`` against ``b`` (same tasks, same order): mean of a - b, its 95 % Student-t
    interval half-width, the two-sided Wilcoxon signed-rank p-value (None when every difference is 0 or
    n < 2) and n."""
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length (got {x.size} and {y.size})")
    d = x - y
    mean, half = mean_ci95(d)
    p = None
    if d.size >= 2 and np.any(d != 0):
        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return {"mean_diff": mean, "ci95": half, "p_wilcoxon": p, "n": int(d.size)}
