"""Learning-curve figures (matplotlib, no screen needed)."""
from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib
import matplotlib.lines

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..train.rundir import RunDir  # noqa: E402


def _save(fig, path, tight: bool = True) -> Path:
    """Writes ``fig`` to ``path`` (its folder made as needed) and frees it."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _finish(fig, ax, path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Many settings make a tall legend: below the axes it never hides a curve.
    labels = ax.get_legend_handles_labels()[1]
    if len(labels) > 4:
        ncol = 2 if max(map(len, labels)) <= 40 else 1
        rows = -(-len(labels) // ncol)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)
        fig.set_size_inches(fig.get_size_inches()[0], fig.get_size_inches()[1] + 0.2 * rows)
    else:
        ax.legend(fontsize="small")
    return _save(fig, path)


def read_metrics(run_dir) -> list[dict]:
    """A run's metrics records (a torn last line, a write cut by a kill, left out)."""
    return RunDir(run_dir).metrics()


def plot_learning_curves(curves: dict[str, list[dict]], path, *, metric: str = "test_metric", ylabel: str = "test MSE",
                         title: str = "", baseline: float | None = None, log_y: bool = True,
                         epoch_steps: int | None = None) -> Path:
    """One line per label: ``metric`` against step. ``curves`` maps label → metrics records. With
    ``epoch_steps`` (training steps per epoch) the top axis reads epochs, as the papers' figures do.

    A curve that exploded (values far above where every curve started) is drawn up to the top edge,
    which is set by the starting values, so that it does not squash the others against the floor; a
    divergence is a dotted vertical line. Beyond ten curves the line style changes as well as the colour."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colours = plt.get_cmap("tab10").colors
    styles = ("-", "--", ":", "-.")
    starts = []
    for i, (label, records) in enumerate(curves.items()):
        points = [(r["step"], r[metric]) for r in records if metric in r]
        if points:
            ax.plot(*zip(*points), marker=".", label=label, color=colours[i % 10], ls=styles[(i // 10) % 4])
            starts.append(points[0][1])
        diverged = [r for r in records if r.get("diverged")]
        if diverged:
            ax.axvline(diverged[0]["step"], ls=":", color=colours[i % 10])
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="black", lw=1, label=f"baseline {baseline:.3g}")
        starts.append(baseline)
    if log_y:
        ax.set_yscale("log")
    finite = sorted(v for v in starts if v == v and abs(v) != float("inf") and (v > 0 or not log_y))
    if finite and log_y:  # at most a decade above the median starting value: only a curve that exploded is cut
        ax.set_ylim(top=min(ax.get_ylim()[1], 10 * finite[len(finite) // 2]))
    if epoch_steps:
        top = ax.secondary_xaxis("top", functions=(lambda step: step / epoch_steps, lambda epoch: epoch * epoch_steps))
        top.set_xlabel(f"epoch ({epoch_steps:,} steps)")
    return _finish(fig, ax, path, "training step", ylabel, title)


def _spectrum_rows(records: list[dict]) -> list[dict]:
    rows = [r for r in records if "sv_mean" in r]
    if not rows:
        raise ValueError("no singular-value records (sv_min, sv_max, sv_mean, sv_std) in these metrics")
    return rows


def _draw_spectrum(ax, rows: list[dict], legend: bool = True) -> None:
    steps = [r["step"] for r in rows]
    mean = [r["sv_mean"] for r in rows]
    std = [r["sv_std"] for r in rows]
    ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.3,
                    color="tab:green", label="mean ± std" if legend else None)
    ax.plot(steps, mean, color="tab:green", label="mean" if legend else None)
    ax.plot(steps, [r["sv_min"] for r in rows], color="tab:red", ls="--", label="min" if legend else None)
    ax.plot(steps, [r["sv_max"] for r in rows], color="tab:blue", ls="--", label="max" if legend else None)


def plot_spectrum(records: list[dict], path, title: str = "Singular values of W during training") -> Path:
    """Like the 2017 paper's Fig. 3: min, mean ± std and max of W's singular values against step
    (from the ``sv_*`` fields that recurrent runs with a square W write to metrics.jsonl)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    _draw_spectrum(ax, _spectrum_rows(records))
    return _finish(fig, ax, path, "training step", "singular value", title)


def _panels(n: int, title: str, share: bool = True):
    """A grid of n panels, three to a row (the 2017 paper's six-panel figures), and the axes in order."""
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), dpi=120, sharex=share, sharey=share,
                             squeeze=False)
    fig.suptitle(title)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_spectrum_panels(curves: dict[str, list[dict]], path, title: str = "singular values of W") -> Path:
    """The 2017 paper's Fig. 3: one panel per setting, min (red), mean ± std (green) and max (blue) of
    W's singular values against the training step, on shared axes."""
    rows = {label: _spectrum_rows(records) for label, records in curves.items() if any("sv_mean" in r for r in records)}
    if not rows:
        raise ValueError("no singular-value records (sv_min, sv_max, sv_mean, sv_std) in these runs")
    fig, axes = _panels(len(rows), title)
    for ax, (label, records) in zip(axes, rows.items()):
        _draw_spectrum(ax, records, legend=ax is axes[0])
        ax.set_title(label, fontsize="small")
        ax.grid(alpha=0.3)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("singular value")
    axes[0].legend(fontsize="x-small")
    return _save(fig, path)


def gradient_image(records: list[dict]):
    """‖∂L/∂h_t‖ as an image, time step t down the rows and recorded update across the columns, each
    column divided by its largest entry: the 2017 paper's Fig. 2 "normalized across the time
    dimension" (how the norm is spread over t at each update, whatever its scale)."""
    import numpy as np
    norms = np.array([r["norms"] for r in records], dtype=float).T  # [T, updates]
    peak = norms.max(axis=0, keepdims=True)
    return np.divide(norms, peak, out=np.zeros_like(norms), where=peak > 0)


def plot_gradient_heatmaps(grads: dict[str, list[dict]], path, title: str = "‖∂L/∂h_t‖, normalized over t") -> Path:
    """The 2017 paper's Fig. 2: one heat map per setting, updates along the abscissa, time steps along
    the ordinate (records as grad_norms.jsonl holds them: {"step": s, "norms": [...]})."""
    if not grads or not all(grads.values()):
        raise ValueError(f"no gradient-norm records ({RunDir.GRAD_NORMS}) in these runs")
    fig, axes = _panels(len(grads), title)
    for ax, (label, records) in zip(axes, grads.items()):
        image = gradient_image(records)
        shown = ax.imshow(image, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                          extent=(records[0]["step"], records[-1]["step"], 1, image.shape[0]))
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("update")
    axes[0].set_ylabel("time step t")
    fig.colorbar(shown, ax=axes, shrink=0.8)  # a colorbar spanning the panels: no tight_layout
    return _save(fig, path, tight=False)


def plot_hidden_gradients(records: list[dict], path, title: str = "‖∂L/∂h_t‖ over time steps") -> Path:
    """Like the 2017 paper's Fig. 2: one curve of ‖∂L_T/∂h_t‖ against t per recorded training step
    (records as written to grad_norms.jsonl: {"step": s, "norms": [...]})."""
    if not records:
        raise ValueError("no gradient-norm records")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(records):
        ax.plot(range(1, len(r["norms"]) + 1), r["norms"], color=cmap(i / max(1, len(records) - 1)),
                label=f"step {r['step']}" if i in (0, len(records) - 1) else None)
    ax.set_yscale("log")
    return _finish(fig, ax, path, "time step t", "‖∂L/∂h_t‖", title)


def plot_mlp_panels(curves: dict[str, list[dict]], path, title: str = "") -> Path:
    """The 2015 paper's Fig. 2/3 layout: training cross-entropy, training error and test error against
    epochs, one line per label (records need ``epoch``, ``train_eval_loss``, ``train_eval_metric`` and
    ``test_metric`` = accuracy). Labels that differ only by "unbalanced"/"balanced" share a colour;
    the unbalanced one is dashed with hollow markers, so that a curve lying on its twin stays visible.

    The axes are scaled to the runs that did not diverge; a diverged run is drawn up to its last
    evaluation and ends in a cross at the top edge, at the epoch where it diverged (as the paper's
    figures show SGD from the unbalanced init leaving the plot)."""
    panels = (("train_eval_loss", "training cross-entropy", lambda v: v),
              ("train_eval_metric", "training error", lambda v: 1.0 - v),
              ("test_metric", "test error", lambda v: 1.0 - v))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), dpi=120)
    colours = plt.get_cmap("tab10").colors
    families: dict[str, int] = {}
    per_step = next((r["epoch"] / r["step"] for records in curves.values() for r in records
                     if r.get("epoch") and r.get("step")), None)
    for ax, (key, ylabel, transform) in zip(axes, panels):
        calm = [transform(r[key]) for records in curves.values() if not any(r.get("diverged") for r in records)
                for r in records if key in r]
        calm = [v for v in calm if v == v and 0 < v < float("inf")]
        top = 3 * max(calm) if calm else None
        for label, records in curves.items():
            family = label.replace("unbalanced", "").replace("balanced", "")
            colour = colours[families.setdefault(family, len(families)) % 10]
            unbalanced = "unbalanced" in label
            style = dict(color=colour, ls="--" if unbalanced else "-", marker="o",
                         mfc="none" if unbalanced else colour, ms=6 if unbalanced else 3)
            points = [(r["epoch"], transform(r[key])) for r in records if key in r and "epoch" in r]
            if top is not None:
                points = [(x, min(y, top)) for x, y in points]
            ax.plot(*(zip(*points) if points else ([], [])), label=label, **style)
            diverged = next((r for r in records if r.get("diverged")), None)
            if diverged is not None and top is not None and per_step is not None:
                ax.plot([diverged["step"] * per_step], [top], marker="x", color=colour, ms=10, mew=2)
        ax.set_yscale("log")
        if top is not None:
            ax.set_ylim(bottom=min(calm) / 2, top=top)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[2].get_legend_handles_labels()
    if any(any(r.get("diverged") for r in records) for records in curves.values()):
        handles.append(matplotlib.lines.Line2D([], [], color="grey", marker="x", ls="", ms=8, mew=2))
        labels.append("diverged (at its epoch, top edge)")
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05 + 0.045 * ((len(labels) + 2) // 3), 1, 1))  # room for the legend below
    return _save(fig, path, tight=False)


def plot_column_panels(panels: dict[str, dict[str, list[list[dict]]]], path, *, ylabel: str = "test MSE",
                       threshold: float | None = None, baseline: float | None = None, title: str = "") -> Path:
    """A table of settings × one config key as a figure (the 2016 paper's Table 2: the methods against T):
    one panel per column value, each setting in its own colour, the same in every panel, one thin line per
    seed (``panels`` maps panel title → setting → the seeds' metrics records). The reach ``threshold``
    and the ``baseline`` are dashed lines, so a reader sees which seeds solved a cell and when.

    The log axis reaches a decade above the median starting value: a seed that exploded leaves through
    the top edge, and where it diverged is a cross on that edge."""
    settings = list(dict.fromkeys(s for rows in panels.values() for s in rows))
    colours = plt.get_cmap("tab10").colors
    styles = ("-", "--", ":", "-.")
    starts = [runs[0]["test_metric"] for rows in panels.values() for seeds in rows.values() for runs in seeds
              if runs and "test_metric" in runs[0]]
    starts = [v for v in starts if v == v and 0 < v < float("inf")] + ([baseline] if baseline else [])
    top = 10 * statistics.median(starts) if starts else None
    fig, axes = _panels(len(panels), title, share=True)
    for ax, (panel, rows) in zip(axes, panels.items()):
        for setting, seeds in rows.items():
            i = settings.index(setting)
            style = dict(color=colours[i % 10], ls=styles[(i // 10) % 4], lw=1, alpha=0.85)
            for records in seeds:
                points = [(r["step"], r["test_metric"]) for r in records
                          if "test_metric" in r and r["test_metric"] == r["test_metric"] and r["test_metric"] > 0]
                if top is not None:
                    points = [(x, min(y, top)) for x, y in points]
                ax.plot(*(zip(*points) if points else ([], [])), **style)
                diverged = next((r for r in records if r.get("diverged")), None)
                if diverged is not None and top is not None:
                    ax.plot([diverged["step"]], [top], marker="x", color=style["color"], ms=8, mew=2, clip_on=False)
        if threshold is not None:
            ax.axhline(threshold, ls="--", color="black", lw=0.8)
        if baseline is not None:
            ax.axhline(baseline, ls=":", color="grey", lw=1)
        ax.set_yscale("log")
        if top is not None:
            ax.set_ylim(top=top)
        ax.set_title(panel, fontsize="small")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    handles = [matplotlib.lines.Line2D([], [], color=colours[i % 10], ls=styles[(i // 10) % 4]) for i in range(len(settings))]
    labels = list(settings)
    if threshold is not None:
        handles.append(matplotlib.lines.Line2D([], [], color="black", ls="--", lw=0.8))
        labels.append(f"reach {threshold:g}")
    if baseline is not None:
        handles.append(matplotlib.lines.Line2D([], [], color="grey", ls=":"))
        labels.append(f"baseline {baseline:.3g}")
    if any(r.get("diverged") for rows in panels.values() for seeds in rows.values() for runs in seeds for r in runs):
        handles.append(matplotlib.lines.Line2D([], [], color="grey", marker="x", ls="", ms=8, mew=2))
        labels.append("diverged (at its step, top edge)")
    ncol = 2 if max(map(len, labels)) <= 60 and len(axes) > 1 else 1
    legend_rows = -(-len(labels) // ncol)
    width, height = fig.get_size_inches()
    room = 0.17 * legend_rows + 0.1  # inches below the panels, for the legend (x-small rows)
    fig.set_size_inches(width, height + room)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize="x-small", frameon=False)
    fig.tight_layout(rect=(0, room / (height + room), 1, 1))
    return _save(fig, path, tight=False)


def run_figures(run_dir) -> list[Path]:
    """The figures a finished run gets: spectrum.png for a recurrent model with a square W (Fig. 3 of the
    2017 paper), grad_norms.png when ‖∂L/∂h_t‖ was recorded (Fig. 2). Returns the files written."""
    run_dir = Path(run_dir)
    written = []
    records = read_metrics(run_dir)
    if any("sv_mean" in r for r in records):
        written.append(plot_spectrum(records, run_dir / "spectrum.png"))
    if RunDir(run_dir).has_grad_norms():
        rows = RunDir(run_dir).grad_norms()
        if rows:
            written.append(plot_hidden_gradients(rows, run_dir / "grad_norms.png"))
    return written
