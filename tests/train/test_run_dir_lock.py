"""One writer per run directory: a second process training into a run directory that another one
holds gets RunDirBusy before it touches a file; a sweep skips such a trial; a killed holder frees it."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from plainrnn.experiments.sweep import parse_grid, run_sweep, trial_holder, build_trials
from plainrnn.train import RunConfig, train
from plainrnn.train.config import load_config, parse_overrides
from plainrnn.train.rundir import RunDirBusy, hold_run_dir, run_dir_holder


def _holder(run_dir):
    """Another process that holds ``run_dir`` until it is killed; returns once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from plainrnn.train.rundir import hold_run_dir
        with hold_run_dir({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_run_directory_refuses_a_second_trainer_until_its_holder_dies(tmp_path):
    cfg = RunConfig(task="adding", seq_len=5, hidden=4, steps=4, eval_every=2, out=str(tmp_path))
    run_dir = tmp_path / cfg.run_name()
    proc = _holder(run_dir)
    try:
        assert run_dir_holder(run_dir) == str(proc.pid)
        with pytest.raises(RunDirBusy, match=rf"^{run_dir} is being trained by another process \(pid {proc.pid}\)"):
            train(cfg, progress=False)
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: the system drops the lock
        proc.wait()
    assert run_dir_holder(run_dir) is None
    assert train(cfg, progress=False)["steps"] == 4


def _holder_seen_from_another_process(run_dir):
    code = f"from plainrnn.train.rundir import run_dir_holder; print(run_dir_holder({str(run_dir)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_lock_is_reentrant_within_a_process_and_free_after_it(tmp_path):
    with hold_run_dir(tmp_path / "r") as held:
        with hold_run_dir(tmp_path / "r"):  # a sweep's trial holds it around train(), which takes it too
            assert _holder_seen_from_another_process(held) == str(os.getpid())
        # leaving the inner hold must not release the outer one
        assert _holder_seen_from_another_process(held) == str(os.getpid())
    assert _holder_seen_from_another_process(tmp_path / "r") == "None"
    assert run_dir_holder(tmp_path / "r") is None
    assert run_dir_holder(tmp_path / "never-made") is None and not (tmp_path / "never-made").exists()


def test_a_sweep_leaves_a_trial_that_another_process_trains_to_it(tmp_path):
    base = load_config(None, parse_overrides(["seq_len=5", "hidden=4", "steps=4", "eval_every=2", f"out={tmp_path}"]))
    grid = parse_grid(["lr=1e-2,1e-3"])
    trials = build_trials(base, grid, 1, tmp_path / "s")
    busy_config = trials[1].config
    proc = _holder(tmp_path / "s" / RunConfig(**busy_config).run_name())
    try:
        assert trial_holder(busy_config) == str(proc.pid) and trial_holder(trials[0].config) is None
        res = run_sweep(base, grid, seeds=1, workers=1, name="s", progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [r.status for r in res["results"]] == ["ok", "busy"]
    assert [r["setting"] for r in res["rows"]] == ["lr=1e-2"]  # not a failure, not in the table yet
    assert [json.loads(line)["status"] for line in (tmp_path / "s" / "trials.jsonl").read_text().splitlines()] == ["ok", "busy"]
    res = run_sweep(base, grid, seeds=1, workers=1, name="s", progress=False)  # the rerun includes it
    assert [r.status for r in res["results"]] == ["reused", "ok"] and len(res["rows"]) == 2


def test_the_cli_names_a_busy_run_in_one_line_and_lists_it_as_running(tmp_path):
    held = tmp_path / "orth-copy" / f"margin-0.1-s{RunConfig().seed}"
    proc = _holder(held)
    small = ["--set", "steps=4", "--set", "eval_every=2", "--set", "seq_len=6", "--set", "hidden=4", "--set", f"out={tmp_path}"]
    try:
        listed = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--list", *small],
                                capture_output=True, text=True, check=True).stdout.splitlines()
        assert f"running    margin=0.1  seed {RunConfig().seed}  by pid {proc.pid}" in listed
        out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--task", "copy", "--seq-len", "6",
                              "--hidden", "4", "--steps", "2", "--out", str(tmp_path / "orth-copy"),
                              "--name", held.name], capture_output=True, text=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"plainrnn train: error: {held} is being trained by another process (pid {proc.pid})")
