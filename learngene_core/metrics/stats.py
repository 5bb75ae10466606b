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


# Accuracies are ratios of counts stored as floats: two tasks that differ by the same number of correct answers give
# differences equal only up to float rounding (2/75 - 0/75 vs 3/75 - 1/75), and a zero difference may come out
# as 1e-8. The signed-rank test must see those as ties and zeros, so magnitudes closer than this are made equal
# (and magnitudes below it zero) before ranking: far below the resolution of any accuracy (1 / queries), far above
# float32's rounding. Rounding to a fixed number of decimals would not do: two equal values on either side of a
# rounding boundary would still be split.
TIE_TOLERANCE = 1e-6


def snap_ties(differences: np.ndarray, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """``differences`` with magnitudes within ``tol`` of the previous (sorted) one made equal, and those within
    ``tol`` of 0 made 0; signs are kept."""
    d = np.asarray(differences, dtype=float)
    mag = np.abs(d)
    order = np.argsort(mag, kind="stable")
    snapped, previous = mag.copy(), 0.0
    for i in order:
        if mag[i] - previous <= tol:
            snapped[i] = previous
        else:
            previous = mag[i]
    return np.sign(d) * snapped


def wilcoxon_p(differences: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of ``differences`` (ties and zeros as such, :func:`snap_ties`);
    None when fewer than 2 or all are 0."""
    from scipy.stats import wilcoxon

    d = snap_ties(differences)
    if d.size < 2 or not np.any(d != 0):
        return None
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired comparison of ``a`` against ``b`` (same tasks, same order): mean of a - b, its 95 % Student-t
    interval half-width, the two-sided Wilcoxon signed-rank p-value (None when every difference is 0 or
    n < 2) and n."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length (got {x.size} and {y.size})")
    d = x - y
    mean, half = mean_ci95(d)
    return {"mean_diff": mean, "ci95": half, "p_wilcoxon": wilcoxon_p(d), "n": int(d.size)}


def two_level_mean(values: np.ndarray | Sequence[Sequence[float]]) -> dict:
    """Mean and 95 % interval of a complete (collective seeds x target tasks) grid whose unit is the target task.

    ``values[s, t]``: the result on target task ``t`` with the ancestor of collective seed ``s`` (one row per
    *distinct* computation: a computation that every collective seed shares is one row, never repeated). The
    estimate is the mean of the per-task means (``n`` is the number of tasks, never tasks x seeds). With one
    row the interval is Student t over tasks. With several it is a two-level (crossed random-effects) estimate,
    ``v[s, t] = mu + a_s + b_t + e_st`` with the seed effect ``a_s`` common to every task, so that an ancestor
    that is better or worse by chance widens the interval instead of counting once per task: from the two-way
    ANOVA mean squares (seeds ``MS_A``, tasks ``MS_B``, residual ``MS_E``), ``Var(mean) = (max(MS_A, MS_E) +
    MS_B - MS_E) / (S T)`` (the seed variance truncated at 0: never narrower than the interval over per-task
    means), with Satterthwaite degrees of freedom. ``p``: the two-sided t test of mean 0 with the same standard
    error and df (consistent with the interval); ``between_seed_sd``: the spread of the per-seed means."""
    from scipy.stats import t as student_t

    d = np.asarray(values, dtype=float)
    if d.ndim != 2 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"a complete finite (collective seeds x tasks) grid is needed, got shape {d.shape}")
    S, T = d.shape
    per_task = d.mean(0)
    mean = float(per_task.mean())
    out = {"mean": mean, "ci95": None, "df": None, "p": None, "n": int(T), "unit": "target task",
           "collective_seeds": int(S), "between_seed_sd": float(d.mean(1).std(ddof=1)) if S > 1 else None,
           "estimate": "t over target tasks" if S == 1 else
           "two-level: collective seed x target task random effects, Satterthwaite df"}  # fmt: skip
    if T < 2:
        return out
    ms_b = S * float(per_task.var(ddof=1))
    var, df = ms_b / (S * T), float(T - 1)
    if S > 1:
        ms_a = T * float(d.mean(1).var(ddof=1))
        resid = d - d.mean(1, keepdims=True) - per_task[None, :] + mean
        ms_e = float((resid**2).sum()) / ((S - 1) * (T - 1))
        if ms_a > ms_e:  # evidence of a seed effect (else: the interval over per-task means)
            var = (ms_a + ms_b - ms_e) / (S * T)
            den = ms_a**2 / (S - 1) + ms_b**2 / (T - 1) + ms_e**2 / ((S - 1) * (T - 1))
            df = (ms_a + ms_b - ms_e) ** 2 / den
    se = math.sqrt(max(var, 0.0))
    out["df"] = float(df)
    out["ci95"] = float(student_t.ppf(0.975, df) * se)
    if se > 0:
        out["p"] = float(2 * student_t.sf(abs(mean) / se, df))
    return out


def paired_over_tasks(diffs: np.ndarray | Sequence[Sequence[float]]) -> dict:
    """Paired differences (method minus reference, ``diffs[s, t]`` as in :func:`two_level_mean`, one row per
    distinct pair of computations) with the target task as the unit: ``mean_diff``, its two-level 95 % interval
    and t-test ``p``, and ``p_wilcoxon``, the two-sided Wilcoxon signed-rank test over the per-task differences.
    With several rows (ancestors) it is None: a rank test over per-task means would treat the ancestors as fixed
    and reject far too often when they differ (25-75 % under no true gain in simulation), so ``p`` is the test."""
    est = two_level_mean(diffs)
    d = np.asarray(diffs, dtype=float)
    p_w = wilcoxon_p(d[0]) if d.ndim == 2 and d.shape[0] == 1 else None
    return {"mean_diff": est.pop("mean"), **est, "p_wilcoxon": p_w}
