"""`plainrnn train` never replaces a run: another config in the same directory is refused in one line
naming the difference, this config's finished run is refused with the way to lengthen it, a cut run
resumes, and --resume --steps cannot shorten a run. Every refusal leaves every file as it was."""
import hashlib
import json
from pathlib import Path
from unittest import mock

import pytest

from plainrnn.cli import main

RUN = "adding-T20-relu-identity-sgd-lr0.001-s0"


def _train(tmp_path, *extra):
    return main(["train", "--task", "adding", "--seq-len", "20", "--steps", "40", "--eval-every", "20",
                 "--hidden", "16", "--out", str(tmp_path / "runs"), "--quiet", *extra])


def _fingerprint(run_dir: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_another_config_into_the_same_directory_is_refused_and_nothing_changes(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run_dir = tmp_path / "runs" / RUN
    before = _fingerprint(run_dir)
    capsys.readouterr()
    assert _train(tmp_path, "--hidden", "32") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"plainrnn train: error: {run_dir} holds the results of another config (hidden 16 → 32); give this "
                   "run another --name or --out to keep both")
    assert _fingerprint(run_dir) == before
    assert _train(tmp_path, "--hidden", "32", "--name", "wider") == 0  # asked for: beside it
    assert json.loads((tmp_path / "runs" / "wider" / "config.json").read_text())["hidden"] == 32
    assert _fingerprint(run_dir) == before


def test_the_same_config_again_is_refused_with_the_way_to_lengthen_it(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run_dir = tmp_path / "runs" / RUN
    before = _fingerprint(run_dir)
    capsys.readouterr()
    assert _train(tmp_path) == 2
    assert capsys.readouterr().err.strip() == (
        f"plainrnn train: error: {run_dir} already holds this config's finished run; give this run another --name, "
        f"or lengthen that one: plainrnn train --resume {run_dir} --steps N")
    assert _fingerprint(run_dir) == before


def test_a_cut_run_resumes_when_the_same_command_runs_again(tmp_path, capsys):
    """Cut at its second evaluation (a crash: checkpoint of step 20 kept, no summary); the same command
    resumes it from there and ends with the metrics of a run that was never cut."""
    from plainrnn.train import loop
    real, calls = loop.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    with mock.patch("plainrnn.train.loop.evaluate", side_effect=evaluate_then_die):
        assert _train(tmp_path) == 130
    run_dir = tmp_path / "runs" / RUN
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoint.pt").exists()
    capsys.readouterr()
    assert _train(tmp_path) == 0
    assert f"{run_dir}: resuming this config's run from step 20" in capsys.readouterr().err
    resumed = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert _train(tmp_path, "--name", "whole") == 0
    whole = [json.loads(line) for line in (tmp_path / "runs" / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == [20, 40]
    assert [r["test_metric"] for r in resumed] == [r["test_metric"] for r in whole]


def test_more_steps_lengthen_a_finished_run_and_fewer_are_refused(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run_dir = tmp_path / "runs" / RUN
    assert _train(tmp_path, "--steps", "60") == 0  # the same config, longer: continues from step 40
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [20, 40, 60]
    before = _fingerprint(run_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", "30", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"plainrnn train: error: --steps 30 is below what {run_dir} already ran (step 60); --steps lengthens a "
        "run, it cannot shorten one")
    assert _fingerprint(run_dir) == before


def test_the_library_refuses_a_fresh_start_over_a_run_too(tmp_path):
    from plainrnn.train import RunConfig, train
    from plainrnn.train.rundir import RunDirTaken
    cfg = RunConfig(task="adding", seq_len=20, steps=20, eval_every=20, hidden=16, out=str(tmp_path))
    train(cfg, progress=False)
    with pytest.raises(RunDirTaken, match="already holds this config's finished run"):
        train(cfg, progress=False)


@pytest.mark.parametrize("name", ["../../escaped", "/abs/run", "..", ".hidden", "a/b"])
def test_a_name_that_leaves_the_output_folder_is_refused(tmp_path, capsys, name):
    assert _train(tmp_path, "--name", name) == 2
    assert capsys.readouterr().err.strip() == (
        f"plainrnn train: error: name must be a folder name inside out ({tmp_path / 'runs'}), without '/', '\\' or a "
        f"leading '.', got {name!r}")
    assert not any(tmp_path.rglob("config.json"))
