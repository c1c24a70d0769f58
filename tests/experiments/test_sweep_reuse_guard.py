"""A sweep rerun never deletes results of another config: it refuses up front, naming the run and the
difference; a rerun with more steps extends its finished runs from their checkpoints, to the numbers
of runs made that long in one go."""
import dataclasses
import json
import subprocess
import sys
from unittest import mock

import pytest

from plainrnn.experiments.sweep import build_trials, parse_grid, run_sweep, trial_state
from plainrnn.train.config import load_config, parse_overrides

SMALL = ["task=adding", "seq_len=6", "hidden=4", "eval_every=2"]


def _base(out, *extra):
    return load_config(None, parse_overrides(SMALL + [f"out={out}", *extra]))


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_rerun_with_another_config_refuses_before_touching_anything(tmp_path):
    grid = parse_grid(["lr=1e-2,1e-3"])
    run_sweep(_base(tmp_path, "steps=4"), grid, workers=1, name="s", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(ValueError, match=r"^\S+/s/lr-1e-2-s0 holds the results of another config \(clip None → 1\.0\) "
                                         r"\(and 1 more trial\(s\)\); give this sweep its own folder"):
        run_sweep(_base(tmp_path, "steps=4", "clip=1"), grid, workers=1, name="s", progress=False)
    with pytest.raises(ValueError, match=r"another config \(steps 4 → 2\)"):  # fewer steps is another config too
        run_sweep(_base(tmp_path, "steps=2"), grid, workers=1, name="s", progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file() and p.name != ".lock"} == before
    # where a run is kept is not what it computes: the same sweep from another spelling of its folder
    same = run_sweep(_base(f"{tmp_path}/.", "steps=4", "tensorboard=true"), grid, workers=1, name="s", progress=False)
    assert [r["status"] for r in same["results"]] == ["reused", "reused"]


def test_more_steps_extend_the_finished_runs_to_the_numbers_of_runs_made_that_long(tmp_path):
    grid = parse_grid(["lr=1e-2,1e-3"])
    run_sweep(_base(tmp_path / "a", "steps=4"), grid, workers=1, name="s", progress=False)
    longer = _base(tmp_path / "a", "steps=8")
    assert [trial_state(t["config"]) for t in build_trials(longer, grid, 1, tmp_path / "a" / "s")] == ["resumable"] * 2
    res = run_sweep(longer, grid, workers=1, name="s", progress=False)
    assert [r["status"] for r in res["results"]] == ["resumed", "resumed"]
    whole = run_sweep(_base(tmp_path / "b", "steps=8"), grid, workers=1, name="s", progress=False)
    for name in ("lr-1e-2-s0", "lr-1e-3-s0"):
        extended, direct = _metrics(tmp_path / "a" / "s" / name), _metrics(tmp_path / "b" / "s" / name)
        strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
        assert strip(extended) == strip(direct) and [r["step"] for r in extended] == [2, 4, 6, 8]
    assert [r["median_test"] for r in res["rows"]] == [r["median_test"] for r in whole["rows"]]


def test_an_extension_cut_short_is_resumable_not_done_with_the_shorter_runs_summary(tmp_path):
    grid = parse_grid(["lr=1e-2"])
    run_sweep(_base(tmp_path, "steps=4"), grid, workers=1, name="s", progress=False)
    longer = _base(tmp_path, "steps=8")
    (trial,) = build_trials(longer, grid, 1, tmp_path / "s")
    with mock.patch("plainrnn.train.loop.evaluate", side_effect=KeyboardInterrupt):  # killed at its next evaluation
        with pytest.raises(KeyboardInterrupt):
            from plainrnn.experiments.sweep import run_trial
            run_trial(trial["config"])
    assert not (tmp_path / "s" / "lr-1e-2-s0" / "summary.json").exists()
    assert trial_state(trial["config"]) == "resumable"


def test_a_diverged_run_stays_done_when_more_steps_are_asked(tmp_path):
    grid = parse_grid(["lr=1e12"])
    first = run_sweep(_base(tmp_path, "steps=4"), grid, workers=1, name="s", progress=False)
    assert first["results"][0]["diverged"]
    (trial,) = build_trials(_base(tmp_path, "steps=8"), grid, 1, tmp_path / "s")
    assert trial_state(trial["config"]) == "done"


def test_list_shows_a_conflict_and_the_cli_refuses_in_one_line(tmp_path):
    cli = [sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--only", "margin=0.1", "--set", "steps=2",
           "--set", "eval_every=2", "--set", "seq_len=6", "--set", "hidden=4", "--set", f"out={tmp_path}"]
    subprocess.run(cli, capture_output=True, text=True, check=True)
    listed = subprocess.run(cli + ["--set", "lr=1e-3", "--list"], capture_output=True, text=True, check=True).stdout
    assert "conflict   margin=0.1  seed 0  (" in listed and "holds the results of another config (lr 0.0001 → 0.001))" in listed
    out = subprocess.run(cli + ["--set", "lr=1e-3"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("plainrnn reproduce: error: ") and "give this sweep its own folder" in out.stderr
