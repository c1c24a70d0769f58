"""Learning-curve figures (matplotlib, no screen needed)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curves(curves: dict[str, list[dict]], path, *, metric: str = "test_metric", ylabel: str = "test MSE",
                         title: str = "", baseline: float | None = None, log_y: bool = True) -> Path:
    """One line per label: ``metric`` against step. ``curves`` maps label → metrics records."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, records in curves.items():
        points = [(r["step"], r[metric]) for r in records if metric in r]
        if points:
            ax.plot(*zip(*points), marker=".", label=label)
        diverged = [r for r in records if r.get("diverged")]
        if diverged:
            ax.axvline(diverged[0]["step"], ls=":", color="grey")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="black", lw=1, label=f"baseline {baseline:.3g}")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
