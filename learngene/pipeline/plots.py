"""Figures: gradient heatmap (layers x tasks), window scores, accuracy matrix, accuracy per window."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_gradient_heatmap(stats: dict[str, tuple], path: Path, main: str) -> Path:
    """One panel per statistic: rows = conv blocks, columns = tasks (the paper's appendix figure)."""
    names = [main] + [s for s in stats if s != main]
    names = [s for s in names if s in stats]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        S, tasks, layers = stats[name]
        if S.size == 0:
            ax.set_visible(False)
            continue
        im = ax.imshow(np.asarray(S).T, aspect="auto", cmap="viridis", origin="upper")
        ax.set_title(f"{name}{' (criterion)' if name == main else ''}")
        ax.set_xlabel("task")
        ax.set_ylabel("conv block")
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        step = max(1, len(tasks) // 10)
        ax.set_xticks(range(0, len(tasks), step), [str(t) for t in tasks[::step]])
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_window_scores(result, chosen: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [result.window_label(s) for s in range(len(result.window_scores))]
    colors = ["tab:red" if s == chosen else "tab:blue" for s in range(len(labels))]
    ax.bar(range(len(labels)), result.window_scores, color=colors)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("criterion score (lower = learngene)")
    ax.set_title("window scores (red: selected)")
    return _save(fig, path)


def plot_accuracy_matrix(R: list[list[float | None]], path: Path) -> Path:
    T = len(R)
    M = np.full((T, T), np.nan)
    for i in range(T):
        for j in range(T):
            if R[i][j] is not None:
                M[i, j] = R[i][j]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="magma")
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title("collective accuracy matrix R[i][j]")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_judgement(rows: list[dict], path: Path, title: str) -> Path:
    fig, ax1 = plt.subplots(figsize=(7, 3.4))
    labels = [r["window"] for r in rows]
    acc = [r["mean"] for r in rows]
    err = [r["ci95"] or 0 for r in rows]
    colors = ["tab:red" if r.get("selected") else "tab:blue" for r in rows]
    ax1.bar(range(len(rows)), acc, yerr=err, color=colors, capsize=2)
    ax1.set_ylabel("accuracy (mean, 95% CI)")
    ax1.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=8)
    ax2 = ax1.twinx()
    ax2.plot(range(len(rows)), [r["score"] for r in rows], "k.-", label="criterion score")
    ax2.set_ylabel("criterion score")
    ax1.set_title(title)
    return _save(fig, path)
