"""Continual-learning metrics from the accuracy matrix, as Avalanche and Mammoth report them.

R[i][j] is the accuracy on the test images of task j after training task i (j <= i; later entries are
None). With T tasks:

- average accuracy after task i:  A_i = (1 / (i + 1)) * sum_{j <= i} R[i][j]
- backward transfer (Lopez-Paz & Ranzato 2017): BWT = (1 / (T - 1)) * sum_{j < T-1} (R[T-1][j] - R[j][j])
  (negative = forgetting)
- forgetting (Chaudhry et al. 2018): F = (1 / (T - 1)) * sum_{j < T-1} max_{l in [j, T-2]} (R[l][j] - R[T-1][j])
"""

from __future__ import annotations

from collections.abc import Sequence


def average_accuracy(R: Sequence[Sequence[float | None]], i: int | None = None) -> float:
    i = len(R) - 1 if i is None else i
    row = [R[i][j] for j in range(i + 1)]
    return sum(row) / len(row)


def backward_transfer(R: Sequence[Sequence[float | None]]) -> float | None:
    T = len(R)
    if T < 2:
        return None
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def forgetting(R: Sequence[Sequence[float | None]]) -> float | None:
    T = len(R)
    if T < 2:
        return None
    return sum(max(R[i][j] for i in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)


def continual_summary(R: Sequence[Sequence[float | None]]) -> dict:
    return {
        "accuracy_matrix": [list(r) for r in R],
        "average_accuracy": [average_accuracy(R, i) for i in range(len(R))],
        "final_average_accuracy": average_accuracy(R) if R else None,
        "backward_transfer": backward_transfer(R),
        "forgetting": forgetting(R),
        "definitions": {
            "accuracy_matrix": "R[i][j]: accuracy on task j's test images after training task i (j <= i)",
            "average_accuracy": "A_i = mean_{j<=i} R[i][j]",
            "backward_transfer": "BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]); negative means forgetting",
            "forgetting": "F = mean_{j<T-1} max_{l in [j,T-2]} (R[l][j] - R[T-1][j])",
        },
    }
