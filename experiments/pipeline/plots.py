"""Figures: criterion heatmaps (blocks x tasks, one panel per recorded statistic), window scores, the
accuracy matrices (class-IL and task-IL, values in the cells), the judgement (paired gain per window)."""

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


def _task_ticks(ax, tasks: list[int], axis: str = "x") -> None:
    step = max(1, len(tasks) // 12)
    pos = list(range(0, len(tasks), step))
    (ax.set_xticks if axis == "x" else ax.set_yticks)(pos, [str(tasks[i]) for i in pos])


def plot_gradient_heatmap(stats: dict[str, tuple], path: Path, main: str) -> Path:
    """One panel per statistic (the criterion's first): rows = blocks, columns = tasks, each with its own
    colour bar below the panel (so no bar overprints the next panel's labels)."""
    names = [main] + [s for s in stats if s != main]
    names = [s for s in names if s in stats and np.asarray(stats[s][0]).size]
    cols = min(4, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.4 * cols, 4.8 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        S, tasks, layers = stats[name]
        im = ax.imshow(np.asarray(S).T, aspect="auto", cmap="viridis", origin="upper")
        ax.set_title(f"{name}{' (criterion)' if name == main else ''}", fontsize=10)
        ax.set_xlabel("task")
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        _task_ticks(ax, list(tasks))
        fig.colorbar(im, ax=ax, location="bottom", shrink=0.8, pad=0.02)
    return _save(fig, path)


def plot_window_scores(result, chosen: int, path: Path, statistic: str = "") -> Path:
    """Bars of every window's score; the axis spans the scores' own range (not from 0), so small
    differences between windows stay visible."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    scores = np.asarray(result.window_scores, dtype=float)
    labels = [result.window_label(s) for s in range(len(scores))]
    colors = ["tab:red" if s == chosen else "tab:blue" for s in range(len(labels))]
    lo, hi = float(scores.min()), float(scores.max())
    pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1e-3
    ax.bar(range(len(labels)), scores - (lo - pad), bottom=lo - pad, color=colors)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"score of {statistic} (lower = learngene)" if statistic else "criterion score")
    ax.set_title("window scores (red: selected)")
    return _save(fig, path)


def _matrix_panel(fig, ax, R, title: str) -> None:
    T = len(R)
    M = np.full((T, T), np.nan)
    for i in range(T):
        for j in range(T):
            if R[i][j] is not None:
                M[i, j] = R[i][j]
    im = ax.imshow(M, vmin=0, vmax=1, cmap="magma")
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title, fontsize=10)
    _task_ticks(ax, list(range(T)), "x")
    _task_ticks(ax, list(range(T)), "y")
    if T <= 12:
        for i in range(T):
            for j in range(i + 1):
                ax.text(j, i, f"{100 * M[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if M[i, j] < 0.6 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)


def plot_accuracy_matrices(metrics: dict, path: Path) -> Path:
    """Class-IL and task-IL accuracy matrices R[i][j] side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4), layout="constrained")
    cil, til = metrics["class_incremental"], metrics["task_incremental"]
    _matrix_panel(fig, axes[0], cil["accuracy_matrix"], "class-incremental accuracy R[i][j]")
    _matrix_panel(fig, axes[1], til["accuracy_matrix"], "task-incremental accuracy R[i][j]")
    return _save(fig, path)


def plot_judgement(rows: list[dict], path: Path, title: str, ways: int) -> Path:
    """Per window: inherited and scratch accuracy (95 % CI, clipped to [0, 100]) and the paired gain."""
    rows = [r for r in rows if r["inherit"] and r["scratch"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True, layout="constrained")
    x = np.arange(len(rows))
    for arm, off, color in (("inherit", -0.2, "tab:blue"), ("scratch", 0.2, "tab:gray")):
        mean = np.array([100 * r[arm]["mean"] for r in rows])
        ci = np.array([100 * (r[arm]["ci95"] or 0) for r in rows])
        lo, hi = np.clip(mean - ci, 0, 100), np.clip(mean + ci, 0, 100)
        ax1.bar(x + off, mean, width=0.4, color=color, label=arm, yerr=[mean - lo, hi - mean], capsize=2)
    ax1.axhline(100.0 / ways, color="k", ls=":", lw=1, label=f"chance ({100 / ways:.0f}%)")
    ax1.set_ylim(0, 100)
    ax1.set_ylabel("accuracy % (95% CI)")
    ax1.legend(fontsize=8, ncol=3)
    ax1.set_title(title)
    gain = np.array([100 * r["gain"]["mean_diff"] for r in rows])
    gci = np.array([100 * (r["gain"]["ci95"] or 0) for r in rows])
    lo, hi = np.clip(gain - gci, -100, 100), np.clip(gain + gci, -100, 100)  # a difference of accuracies
    colors = ["tab:red" if r["selected_in_seeds"] else "tab:blue" for r in rows]
    ax2.bar(x, gain, yerr=[gain - lo, hi - gain], color=colors, capsize=2)
    val = [
        (i, 100 * r["validation_gain"]["mean_diff"]) for i, r in enumerate(rows) if r.get("validation_gain")
    ]
    if val:
        ax2.scatter(*zip(*val), color="k", marker="D", s=14, zorder=3, label="gain on the validation tasks")
    ax2.axhline(0, color="k", lw=1, label="scratch (no gain)")
    ax2.set_ylabel("paired gain over scratch\n(points, 95% CI; red: selected)")
    ax2.set_xticks(x, [r["window"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax2.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_curve(curve: list[float], path: Path, title: str, verdict: dict) -> Path:
    """A meta-learner's training loss per step, with a moving average and the convergence verdict."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    y = np.asarray(curve, dtype=float)
    ax.plot(y, lw=0.6, alpha=0.5, label="loss per step")
    w = max(1, len(y) // 20)
    if len(y) >= w:
        ax.plot(
            np.arange(w - 1, len(y)),
            np.convolve(y, np.ones(w) / w, mode="valid"),
            lw=1.5,
            label=f"mean of {w}",
        )
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: {'converged' if verdict.get('converged') else 'NOT converged'}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
