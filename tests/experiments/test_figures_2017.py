"""The 2017 paper's Figs. 2 and 3 as `plainrnn report --plots` draws them from recorded runs."""
import json

import numpy as np
import pytest

from plainrnn.experiments import report as report_module
from plainrnn.experiments.plots import gradient_image, plot_gradient_heatmaps, plot_spectrum_panels
from plainrnn.train import RunConfig


def test_the_gradient_image_puts_time_down_the_rows_and_normalizes_each_update_over_t():
    records = [dict(step=1, norms=[1.0, 2.0, 4.0]), dict(step=11, norms=[3.0, 3.0, 0.3]), dict(step=21, norms=[0, 0, 0])]
    image = gradient_image(records)
    assert image.shape == (3, 3)  # [time step, update]
    np.testing.assert_allclose(image[:, 0], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(image[:, 1], [1.0, 1.0, 0.1])
    np.testing.assert_array_equal(image[:, 2], [0, 0, 0])  # an update with no gradient stays 0, not nan


def _spectral_run(root, margin, seed, test, grad_rows=None):
    run = root / f"margin-{margin}-s{seed}"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(RunConfig(task="copy", model="spectral", margin=margin, seed=seed).to_dict()))
    (run / "summary.json").write_text(json.dumps(dict(test_metric=test, metric="copy_accuracy", lower_is_better=False,
                                                      diverged=False, wall_s=1.0)))
    (run / "metrics.jsonl").write_text("".join(json.dumps(dict(step=s, test_metric=test, sv_min=1 - seed / 10, sv_max=1.1,
                                                               sv_mean=1.0 + seed / 100, sv_std=0.01)) + "\n"
                                               for s in (10, 20)))
    if grad_rows is not None:
        (run / "grad_norms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in grad_rows))
    return run


def test_report_draws_a_spectrum_panel_and_a_heat_map_per_setting_from_its_median_run(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(report_module, "plot_spectrum_panels", lambda curves, path, **kw: drawn.setdefault(path.name, curves))
    monkeypatch.setattr(report_module, "plot_gradient_heatmaps", lambda grads, path, **kw: drawn.setdefault(path.name, grads))
    for margin in (0.0, 1.0):
        for seed, test in enumerate((0.2, 0.5, 0.9)):  # seed 1 is each setting's median run
            _spectral_run(tmp_path, margin, seed, test + margin / 100, [dict(step=1, norms=[seed, 1.0])])
    report_module.report([str(tmp_path)], plots_dir=str(tmp_path / "plots"))
    assert set(drawn) == {"copy_spectra.png", "copy_gradient_heatmaps.png"}
    assert list(drawn["copy_spectra.png"]) == ["margin=0.0", "margin=1.0"]
    assert all(r["sv_mean"] == 1.01 for records in drawn["copy_spectra.png"].values() for r in records)
    assert drawn["copy_gradient_heatmaps.png"]["margin=1.0"] == [dict(step=1, norms=[1, 1.0])]


def test_runs_without_spectra_or_gradient_norms_get_neither_figure(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(report_module, "plot_spectrum_panels", lambda *a, **kw: drawn.append("spectra"))
    monkeypatch.setattr(report_module, "plot_gradient_heatmaps", lambda *a, **kw: drawn.append("heat maps"))
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(RunConfig(task="adding").to_dict()))
    (run / "summary.json").write_text(json.dumps(dict(test_metric=0.1, metric="mse", diverged=False, wall_s=1.0)))
    (run / "metrics.jsonl").write_text(json.dumps(dict(step=10, test_metric=0.1)) + "\n")
    report_module.report([str(tmp_path)], plots_dir=str(tmp_path / "plots"))
    assert drawn == []


def test_the_figures_are_written_and_say_what_is_missing(tmp_path):
    for seed in range(2):
        _spectral_run(tmp_path, 0.1, seed, 0.5)
    curves = {f"seed {s}": report_module.read_metrics(tmp_path / f"margin-0.1-s{s}") for s in range(2)}
    assert plot_spectrum_panels(curves, tmp_path / "a.png").stat().st_size > 0
    grads = {"m=0": [dict(step=s, norms=[1.0, 0.5, 0.25]) for s in (1, 11, 21)]}
    assert plot_gradient_heatmaps(grads, tmp_path / "b.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no singular-value records"):
        plot_spectrum_panels({"x": [dict(step=1, test_metric=0.1)]}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="no gradient-norm records"):
        plot_gradient_heatmaps({"x": []}, tmp_path / "d.png")


def test_learning_curves_read_epochs_on_the_top_axis_when_asked(tmp_path, monkeypatch):
    from plainrnn.experiments import plots
    seen = {}

    def keep(fig, ax, path, xlabel, ylabel, title):
        seen["axes"] = [a for a in fig.axes if a is not ax] + [a for a in ax.child_axes]
        seen["ax"], seen["fig"] = ax, fig
        return path
    monkeypatch.setattr(plots, "_finish", keep)
    curves = {"a": [dict(step=s, test_metric=0.1 * s) for s in (550, 1100, 2200)]}
    plots.plot_learning_curves(curves, tmp_path / "x.png", epoch_steps=1100)
    (top,) = seen["axes"]
    assert top.get_xlabel() == "epoch (1,100 steps)"
    seen["ax"].set_xlim(0, 2200)
    seen["fig"].canvas.draw()
    assert top.get_xlim() == pytest.approx((0.0, 2.0))  # step 2200 is epoch 2
    plots.plot_learning_curves(curves, tmp_path / "y.png")
    assert seen["axes"] == []


def test_learning_curves_cut_only_a_curve_that_exploded_a_decade_above_the_starts(tmp_path, monkeypatch):
    """The top of a log axis sits a decade above the median starting value only when some curve goes
    there; calm curves (PTB's bpc from 3.1 to 2.6) keep matplotlib's own tight axis."""
    import matplotlib.pyplot as plt

    from plainrnn.experiments.plots import plot_learning_curves
    tops = []
    monkeypatch.setattr(plt, "close", lambda fig=None: tops.append(fig.axes[0].get_ylim()[1]))
    calm = {"a": [dict(step=s, test_metric=v) for s, v in [(1, 3.1), (2, 2.8), (3, 2.6)]]}
    plot_learning_curves(calm, tmp_path / "calm.png")
    exploded = dict(calm, b=[dict(step=s, test_metric=v) for s, v in [(1, 3.0), (2, 50.0), (3, 1e6)]])
    plot_learning_curves(exploded, tmp_path / "exploded.png")
    assert tops[0] < 4 and tops[1] == pytest.approx(10 * 3.1)
