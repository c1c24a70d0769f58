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


def test_ctrl_c_on_a_sweep_stops_the_queue_checkpoints_the_running_trial_and_prints_the_table(tmp_path):
    """SIGINT to the sweep's process once its first trial has evaluated: no queued trial trains to its
    end, the running one checkpoints, the table of what finished is printed, and the exit status is 130."""
    import os
    import signal
    import subprocess
    import sys
    import time
    (tmp_path / "long.yaml").write_text("task: adding\nseq_len: 8\nsteps: 1000000\neval_every: 200\nhidden: 4\n"
                                        f"out: {tmp_path / 'runs'}\n")
    process = subprocess.Popen([sys.executable, "-m", "plainrnn.cli", "sweep", str(tmp_path / "long.yaml"),
                                "--grid", "lr=1e-3,1e-2,1e-4", "--workers", "1", "--name", "s", "--quiet"],
                               env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               # Ctrl-C as a terminal delivers it: a suite started in the background
                               # (`make test &`, nohup) ignores SIGINT, and its children inherit that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = tmp_path / "runs" / "s" / "lr-1e-3-s0" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()  # never left training behind the suite
    assert process.returncode == 130, err
    assert "interrupted: 3 trial(s) not run or stopped at a checkpoint; the same command continues them" in err
    assert "| setting |" in out and "Traceback" not in err
    assert (metrics.parent / "checkpoint.pt").exists() and not (metrics.parent / "summary.json").exists()
    assert not (tmp_path / "runs" / "s" / "lr-1e-4-s0").exists()  # the queued trial never started


def test_a_full_disk_is_one_line_and_the_run_resumes_to_the_numbers_of_one_never_stopped(tmp_path, capsys):
    """ENOSPC from the metrics writer at the second evaluation: one line naming the file and what to do,
    the checkpoint of the first evaluation intact; --resume then ends with an uninterrupted run's metrics."""
    import errno
    from plainrnn.train import loop
    real, calls = loop.MetricsLog.write, []

    def full_at_the_second(self, record):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real(self, record)
    with mock.patch.object(loop.MetricsLog, "write", full_at_the_second):
        assert _train(tmp_path) == 2
    run_dir = tmp_path / "runs" / RUN
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"plainrnn train: error: {run_dir / 'metrics.jsonl'}: No space left on device; free some space, "
                   "then continue with --resume RUN_DIR (the last checkpoint is intact)"]
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert _train(tmp_path, "--name", "whole") == 0
    rows = lambda d: [{k: v for k, v in json.loads(line).items() if k != "wall_s"}  # noqa: E731
                      for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(run_dir) == rows(tmp_path / "runs" / "whole")


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys):
    import errno
    with mock.patch("plainrnn.train.lock.Path.mkdir",
                    side_effect=OSError(errno.EACCES, "Permission denied", str(tmp_path / "runs"))):
        assert _train(tmp_path) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"plainrnn train: error: {tmp_path / 'runs'}: Permission denied; choose a folder you can write (--out, "
        "--data-dir)"]


def test_extending_a_finished_run_on_a_full_disk_keeps_its_summary_and_report_skips_it_until_done(tmp_path, capsys):
    """The extension's first write fails (ENOSPC): the finished run's summary, metrics and checkpoint are
    all still there, byte for byte; report says in one line that the run is being extended; the same
    --resume then ends the longer run with its own summary."""
    import errno
    from plainrnn.train import loop
    assert _train(tmp_path) == 0
    run_dir = tmp_path / "runs" / RUN
    kept = {name: digest for name, digest in _fingerprint(run_dir).items() if not name.startswith("config")}
    with mock.patch.object(loop.MetricsLog, "write",
                           side_effect=OSError(errno.ENOSPC, "No space left on device", str(run_dir / "metrics.jsonl"))):
        assert main(["train", "--resume", str(run_dir), "--steps", "80", "--quiet"]) == 2
    after = _fingerprint(run_dir)
    assert {name: after.get(name) for name in kept} == kept
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs")]) == 2  # its only run is being extended: no table
    assert capsys.readouterr().err.splitlines()[0] == (
        f"skipping {run_dir}: being extended (its summary covers step 40 of 80)")
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 80


def test_train_and_sweep_say_where_they_write_resolved(tmp_path, capsys, monkeypatch):
    """A relative out (a shared config's `out: ../x`) is printed resolved before anything trains."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", "--task", "adding", "--seq-len", "6", "--hidden", "4", "--steps", "2", "--eval-every", "2",
                 "--out", "../elsewhere"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f"run directory: {tmp_path / 'elsewhere' / 'adding-T6-relu-identity-sgd-lr0.001-s0'}")
    assert main(["sweep", "--set", "task=adding", "--set", "seq_len=6", "--set", "hidden=4", "--set", "steps=2",
                 "--set", "eval_every=2", "--set", "out=../swept", "--grid", "lr=1e-2", "--workers", "1"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == f"sweep directory: {tmp_path / 'swept' / 'sweep'}"
