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
    assert [r.status for r in same["results"]] == ["reused", "reused"]


def test_more_steps_extend_the_finished_runs_to_the_numbers_of_runs_made_that_long(tmp_path):
    grid = parse_grid(["lr=1e-2,1e-3"])
    run_sweep(_base(tmp_path / "a", "steps=4"), grid, workers=1, name="s", progress=False)
    longer = _base(tmp_path / "a", "steps=8")
    assert [trial_state(t.config) for t in build_trials(longer, grid, 1, tmp_path / "a" / "s")] == ["resumable"] * 2
    res = run_sweep(longer, grid, workers=1, name="s", progress=False)
    assert [r.status for r in res["results"]] == ["resumed", "resumed"]
    whole = run_sweep(_base(tmp_path / "b", "steps=8"), grid, workers=1, name="s", progress=False)
    for name in ("lr-1e-2-s0", "lr-1e-3-s0"):
        extended, direct = _metrics(tmp_path / "a" / "s" / name), _metrics(tmp_path / "b" / "s" / name)
        strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
        assert strip(extended) == strip(direct) and [r["step"] for r in extended] == [2, 4, 6, 8]
    assert [r["median_test"] for r in res["rows"]] == [r["median_test"] for r in whole["rows"]]


def test_an_extension_cut_short_is_resumable_not_done_with_the_shorter_runs_summary(tmp_path):
    """The finished 4-step run's summary stays until the 8-step run writes its own (nothing of a finished
    run is removed before its replacement is complete), yet the trial reads as resumable, not done."""
    grid = parse_grid(["lr=1e-2"])
    run_sweep(_base(tmp_path, "steps=4"), grid, workers=1, name="s", progress=False)
    before = (tmp_path / "s" / "lr-1e-2-s0" / "summary.json").read_bytes()
    longer = _base(tmp_path, "steps=8")
    (trial,) = build_trials(longer, grid, 1, tmp_path / "s")
    with mock.patch("plainrnn.train.loop.evaluate", side_effect=KeyboardInterrupt):  # killed at its next evaluation
        with pytest.raises(KeyboardInterrupt):
            from plainrnn.experiments.sweep import run_trial
            run_trial(trial.config)
    assert (tmp_path / "s" / "lr-1e-2-s0" / "summary.json").read_bytes() == before
    assert trial_state(trial.config) == "resumable"
    resumed = run_trial(trial.config)
    assert resumed.status == "resumed" and resumed.steps == 8
    assert json.loads((tmp_path / "s" / "lr-1e-2-s0" / "summary.json").read_text())["steps"] == 8


def test_a_diverged_run_stays_done_when_more_steps_are_asked(tmp_path):
    grid = parse_grid(["lr=1e12"])
    first = run_sweep(_base(tmp_path, "steps=4"), grid, workers=1, name="s", progress=False)
    assert first["results"][0].diverged
    (trial,) = build_trials(_base(tmp_path, "steps=8"), grid, 1, tmp_path / "s")
    assert trial_state(trial.config) == "done"


def test_list_shows_a_conflict_and_the_cli_refuses_in_one_line(tmp_path):
    cli = [sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--only", "margin=0.1", "--set", "steps=2",
           "--set", "eval_every=2", "--set", "seq_len=6", "--set", "hidden=4", "--set", f"out={tmp_path}"]
    subprocess.run(cli, capture_output=True, text=True, check=True)
    listed = subprocess.run(cli + ["--set", "lr=1e-3", "--list"], capture_output=True, text=True, check=True).stdout
    assert "conflict   margin=0.1  seed 0  (" in listed and "holds the results of another config (lr 0.0001 → 0.001))" in listed
    out = subprocess.run(cli + ["--set", "lr=1e-3"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("plainrnn reproduce: error: ") and "give this sweep its own folder" in out.stderr


def test_extend_from_continues_another_sweeps_shorter_runs_to_the_numbers_of_a_run_made_that_long(tmp_path):
    """The full budget from the cpu budget's runs: each new trial whose run in the other folder differs
    only by fewer steps (and another eval_every) starts from that run's checkpoint, exactly; the other
    folder is left as it was; a run of another config there is not taken."""
    from plainrnn.experiments.sweep import earlier_run, extend_from
    grid = parse_grid(["lr=1e-2,1e-3"])
    run_sweep(_base(tmp_path / "cpu", "steps=4"), grid, workers=1, name="s", progress=False)
    run_sweep(_base(tmp_path / "other", "steps=4", "clip=1"), grid, workers=1, name="s", progress=False)
    cpu_files = {p: p.read_bytes() for p in (tmp_path / "cpu").rglob("*") if p.is_file() and p.name != ".lock"}
    full = _base(tmp_path / "full", "steps=8", "eval_every=4")
    res = run_sweep(full, grid, workers=1, name="s", progress=False, extend=tmp_path / "cpu" / "s")
    assert len(res["extended"]) == 2 and [r.status for r in res["results"]] == ["resumed", "resumed"]
    whole = run_sweep(_base(tmp_path / "whole", "steps=8", "eval_every=4"), grid, workers=1, name="s", progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    for name in ("lr-1e-2-s0", "lr-1e-3-s0"):
        extended, direct = _metrics(tmp_path / "full" / "s" / name), _metrics(tmp_path / "whole" / "s" / name)
        assert [r["step"] for r in extended] == [2, 4, 8]  # the cpu run's evaluations, then the full one's
        assert strip(extended)[1:] == strip(direct)  # steps 4 and 8: the numbers of the run made whole
        assert strip(extended)[:2] == strip(_metrics(tmp_path / "cpu" / "s" / name))
    assert {p: p.read_bytes() for p in (tmp_path / "cpu").rglob("*") if p.is_file() and p.name != ".lock"} == cpu_files
    # another config (clip), the same length at another eval_every, or a longer source: not this trial's run
    (trial,) = build_trials(_base(tmp_path / "x", "steps=8"), parse_grid(["lr=1e-2"]), 1, tmp_path / "x" / "s")
    assert earlier_run(trial.config, tmp_path / "other" / "s") is None
    assert earlier_run(trial.config, tmp_path / "full" / "s") is None
    assert earlier_run(trial.config, tmp_path / "cpu" / "s") == tmp_path / "cpu" / "s" / "lr-1e-2-s0"
    (short,) = build_trials(_base(tmp_path / "y", "steps=2"), parse_grid(["lr=1e-2"]), 1, tmp_path / "y" / "s")
    assert extend_from([short], tmp_path / "cpu" / "s") == []


def test_extend_from_takes_the_same_trial_of_another_grid_as_it_is_and_the_longest_of_several(tmp_path):
    """A table that shares cells with a study (the same config under another folder name) takes the
    study's runs as they are, done; from several folders the longest run is continued."""
    from plainrnn.experiments.sweep import earlier_run
    study = run_sweep(_base(tmp_path / "study", "steps=4"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s",
                      progress=False)
    table_grid = [dict(lr="1e-2", seq_len=6), dict(lr="1e-2", seq_len=8)]  # another grid: other folder names
    table = run_sweep(_base(tmp_path / "table", "steps=4"), table_grid, workers=1, name="s", progress=False,
                      extend=[tmp_path / "study" / "s"])
    assert [r.status for r in table["results"]] == ["reused", "ok"] and len(table["extended"]) == 1
    taken = tmp_path / "table" / "s" / "lr-1e-2_seq_len-6-s0"
    assert _metrics(taken) == _metrics(tmp_path / "study" / "s" / "lr-1e-2-s0")
    assert json.loads((taken / "summary.json").read_text())["run_dir"] == str(taken)
    assert table["rows"][0]["median_test"] == study["rows"][0]["median_test"]
    run_sweep(_base(tmp_path / "longer", "steps=6"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False)
    (trial,) = build_trials(_base(tmp_path / "x", "steps=8"), parse_grid(["lr=1e-2"]), 1, tmp_path / "x" / "s")
    both = [tmp_path / "study" / "s", tmp_path / "longer" / "s"]
    assert earlier_run(trial.config, both) == tmp_path / "longer" / "s" / "lr-1e-2-s0"
    assert earlier_run(trial.config, both[::-1]) == tmp_path / "longer" / "s" / "lr-1e-2-s0"


def test_extend_from_takes_a_diverged_shorter_run_as_done(tmp_path):
    """More steps cannot undo a divergence: the trial is done with the shorter run's summary."""
    grid = parse_grid(["lr=1e3"])
    short = run_sweep(_base(tmp_path / "cpu", "steps=4", "diverge_above=1.5"), grid, workers=1, name="s", progress=False)
    assert short["results"][0].diverged
    res = run_sweep(_base(tmp_path / "full", "steps=8", "diverge_above=1.5"), grid, workers=1, name="s",
                    progress=False, extend=tmp_path / "cpu" / "s")
    (result,) = res["results"]
    assert result.status == "reused" and result.diverged
    assert result.run_dir == str(tmp_path / "full" / "s" / "lr-1e3-s0")
    # published (no checkpoint) it is the trial's end all the same
    (tmp_path / "cpu" / "s" / "lr-1e3-s0" / "checkpoint.pt").unlink(missing_ok=True)
    again = run_sweep(_base(tmp_path / "new", "steps=8", "diverge_above=1.5"), grid, workers=1, name="s",
                      progress=False, extend=tmp_path / "cpu" / "s")
    assert [(r.status, r.diverged) for r in again["results"]] == [("reused", True)]


def test_reproduce_list_says_which_run_a_trial_takes_and_that_a_diverged_one_needs_no_checkpoint(tmp_path, capsys):
    """`reproduce --list --extend-from DIR` names the run each new trial would take: a shorter run that
    diverged (published: no checkpoint) is taken as the trial's end, at the step it diverged."""
    from plainrnn.cli import main
    from plainrnn.experiments.recipes import RECIPES
    sets = ["--seeds", "1", "--set", "eval_every=2", "--set", "seq_len=6", "--set", "hidden=4",
            "--only", "margin=0", "--only", "margin=1"]
    base = load_config(None, {**RECIPES["orth-copy"]["base"], "steps": 4, "eval_every": 2, "seq_len": 6, "hidden": 4,
                              "out": str(tmp_path / "short")})
    trials = {t.setting: t.config for t in build_trials(base, RECIPES["orth-copy"]["grid"], 1, tmp_path / "pub")}
    for margin, summary in (("0", dict(diverged=True, diverged_step=3, steps=3)), ("1", dict(diverged=False, steps=4))):
        run = tmp_path / "pub" / f"margin-{margin}-s{base.seed}"  # published: config, summary, metrics
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(trials[f"margin={margin}"]))
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "metrics.jsonl").write_text(json.dumps(dict(step=2, test_metric=0.5)) + "\n")
    argv = ["reproduce", "orth-copy", *sets, "--set", "steps=8", "--set", f"out={tmp_path / 'full'}",
            "--extend-from", str(tmp_path / "pub"), "--list"]
    assert main(argv) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == f"new        margin=0  seed {base.seed}  (takes {tmp_path / 'pub' / f'margin-0-s{base.seed}'}: " \
                        "it diverged, at step 3)"
    assert listed[1] == f"new        margin=1  seed {base.seed}"  # finished, no checkpoint: cannot go on


def test_extend_from_a_folder_that_is_not_there_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"^--extend-from \S+: no such folder"):
        run_sweep(_base(tmp_path, "steps=2"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False,
                  extend=tmp_path / "nope")
    assert not (tmp_path / "s").exists()


def test_extend_from_continues_a_run_stopped_before_its_end_to_the_numbers_of_a_run_made_whole(tmp_path):
    """A probe cut short (no summary, its checkpoint kept) is the trial's beginning: a sweep continues it,
    leaves the probe as it was, and ends on the numbers of the run made in one go."""
    from machine_lost import train_until_the_machine_goes
    from plainrnn.experiments.sweep import earlier_run
    grid = parse_grid(["lr=1e-2"])
    (probe,) = build_trials(_base(tmp_path / "probe", "steps=8"), grid, 1, tmp_path / "probe" / "s")
    train_until_the_machine_goes(probe.config)  # the machine goes at the run's second evaluation
    stopped = tmp_path / "probe" / "s" / "lr-1e-2-s0"
    assert not (stopped / "summary.json").exists() and [r["step"] for r in _metrics(stopped)] == [2]
    probe_files = {p: p.read_bytes() for p in (tmp_path / "probe").rglob("*") if p.is_file() and p.name != ".lock"}
    table_grid = [dict(lr="1e-2", seq_len=6)]  # another grid: another folder name for the same trial
    (trial,) = build_trials(_base(tmp_path / "t", "steps=8"), table_grid, 1, tmp_path / "t" / "s")
    assert earlier_run(trial.config, tmp_path / "probe" / "s") == stopped
    res = run_sweep(_base(tmp_path / "t", "steps=8"), table_grid, workers=1, name="s", progress=False,
                    extend=tmp_path / "probe" / "s")
    assert len(res["extended"]) == 1 and [r.status for r in res["results"]] == ["resumed"]
    whole = run_sweep(_base(tmp_path / "whole", "steps=8"), grid, workers=1, name="s", progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    continued = _metrics(tmp_path / "t" / "s" / "lr-1e-2_seq_len-6-s0")
    assert strip(continued) == strip(_metrics(tmp_path / "whole" / "s" / "lr-1e-2-s0"))
    assert res["rows"][0]["median_test"] == whole["rows"][0]["median_test"]
    assert {p: p.read_bytes() for p in (tmp_path / "probe").rglob("*") if p.is_file() and p.name != ".lock"} == probe_files
    # a stopped run of more steps than the trial's is not its beginning
    (shorter,) = build_trials(_base(tmp_path / "u", "steps=4"), grid, 1, tmp_path / "u" / "s")
    assert earlier_run(shorter.config, tmp_path / "probe" / "s") is None


def test_extend_from_a_published_folder_takes_its_finished_runs_on_a_new_machine(tmp_path):
    """results/ keeps config.yaml, summary.json and metrics.jsonl of each finished run, no config.json
    and no checkpoint. On a new machine, `--extend-from results/<table>` takes those runs as done, so that
    only the missing cells train; a published run shorter than the trial (no checkpoint to go on from)
    is not taken."""
    import shutil
    run_sweep(_base(tmp_path / "made", "steps=4"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s",
              progress=False)
    published = tmp_path / "results"
    for run_dir in (p for p in (tmp_path / "made" / "s").iterdir() if p.is_dir()):
        (published / run_dir.name).mkdir(parents=True)
        for name in ("config.yaml", "summary.json", "metrics.jsonl"):
            shutil.copy2(run_dir / name, published / run_dir.name / name)
    again = run_sweep(_base(tmp_path / "new", "steps=4"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s",
                      progress=False, extend=published)
    assert [r.status for r in again["results"]] == ["reused", "reused"]
    assert _metrics(tmp_path / "new" / "s" / "lr-1e-2-s0") == _metrics(published / "lr-1e-2-s0")
    (longer,) = build_trials(_base(tmp_path / "x", "steps=8"), parse_grid(["lr=1e-2"]), 1, tmp_path / "x" / "s")
    from plainrnn.experiments.sweep import earlier_run
    assert earlier_run(longer.config, published) is None
    # a run published with its checkpoint (a cell cut at a session's end) is continued from it
    shutil.copy2(tmp_path / "made" / "s" / "lr-1e-2-s0" / "checkpoint.pt", published / "lr-1e-2-s0" / "checkpoint.pt")
    assert earlier_run(longer.config, published) == published / "lr-1e-2-s0"
    res = run_sweep(_base(tmp_path / "x", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False,
                    extend=published)
    whole = run_sweep(_base(tmp_path / "whole", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s",
                      progress=False)
    assert [r.status for r in res["results"]] == ["resumed"]
    assert res["rows"][0]["median_test"] == whole["rows"][0]["median_test"]
