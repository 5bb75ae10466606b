"""Has a training loss flattened? A plain test on the loss curve, for baselines trained on a budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def convergence(curve: Sequence[float], window: float = 0.1, tolerance: float = 0.05) -> dict:
    """Compare the mean loss of the last ``window`` of the curve with the window before it.

    Converged when the loss fell by less than ``tolerance`` (relative) between the two windows. A curve
    too short for two windows of at least 2 points is reported as not converged."""
    x = np.asarray(curve, dtype=float)
    w = max(2, int(round(window * len(x))))
    if len(x) < 2 * w:
        return {"converged": False, "reason": f"{len(x)} steps are too few to judge", "steps": len(x)}
    last, before = float(x[-w:].mean()), float(x[-2 * w : -w].mean())
    drop = (before - last) / abs(before) if before else 0.0
    return {
        "converged": bool(drop < tolerance),
        "relative_drop_last_window": drop,
        "loss_last_window": last,
        "loss_window_before": before,
        "window_steps": w,
        "steps": len(x),
        "rule": f"converged when the mean loss of the last {window:.0%} of steps is less than {tolerance:.0%} "
        f"below the {window:.0%} before",
    }
