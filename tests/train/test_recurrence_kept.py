"""The recurrence kernel is part of a run's config: new runs take ours, and a run made before the knob
existed (torch's fused kernel) resumes, extends and publishes with that kernel, bit for bit; the kernel
never sets a run apart from the trial it is."""
import json
from pathlib import Path

import pytest
import yaml

from plainrnn.experiments.publish import publish
from plainrnn.experiments.sweep import build_trials, run_trial
from plainrnn.train import RunConfig, resume, train
from plainrnn.train.config import load_config, parse_overrides
from plainrnn.train.rundir import RunDir
from oracles import train_killed_after

BASE = ["seq_len=10", "hidden=8", "steps=20", "eval_every=5", "checkpoint_every=5"]


def _metrics(run_dir):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in RunDir(run_dir).metrics()]


def _as_written_before_the_knob(run_dir):
    """The run's config.json as a version without the recurrence knob wrote it."""
    path = Path(run_dir) / "config.json"
    config = json.loads(path.read_text())
    assert config.pop("recurrence") == "torch"
    path.write_text(json.dumps(config))


@pytest.fixture
def ours_refused(monkeypatch):
    """Our kernel raises: whatever must run torch's shows it here."""
    import plainrnn.nets.relu_rnn as relu_rnn

    def refuse(*args, **kwargs):
        raise AssertionError("an old run was continued on the new kernel")
    monkeypatch.setattr(relu_rnn, "rnn_layer", refuse)


def test_new_runs_take_our_kernel_and_say_so(tmp_path):
    assert RunConfig().recurrence == "plainrnn"
    summary = train(RunConfig(out=str(tmp_path), seq_len=10, hidden=8, steps=5, eval_every=5), progress=False)
    assert RunDir(summary["run_dir"]).config()["recurrence"] == "plainrnn"
    assert load_config(None, parse_overrides(["recurrence=torch"])).recurrence == "torch"
    with pytest.raises(ValueError, match="recurrence must be one of plainrnn, torch, got 'cudnn'"):
        load_config(None, parse_overrides(["recurrence=cudnn"]))


def test_an_old_run_resumed_by_a_sweep_keeps_torchs_kernel_bit_for_bit(tmp_path, ours_refused):
    base = load_config(None, parse_overrides(BASE + [f"out={tmp_path}"]))
    whole, cut = (build_trials(base, [dict(lr="1e-2", recurrence="torch")], 1, tmp_path / name)[0].config
                  for name in ("a", "b"))
    reference = run_trial(whole)
    run_dir = train_killed_after(RunConfig(**cut), 12)  # last checkpoint at step 10
    _as_written_before_the_knob(run_dir)
    trial = dict(cut, recurrence="plainrnn")  # what today's recipe asks for
    assert RunDir(run_dir).state(trial) == "resumable"  # the kernel does not make it another config
    resumed = run_trial(trial)
    assert resumed.status == "resumed", resumed.error
    assert _metrics(run_dir) == _metrics(reference.run_dir)
    assert RunDir(run_dir).config()["recurrence"] == "torch"
    assert run_trial(trial).status == "reused"


def test_train_resume_of_an_old_run_keeps_torchs_kernel(tmp_path, ours_refused):
    kw = dict(seq_len=10, hidden=8, steps=20, eval_every=5, checkpoint_every=5, recurrence="torch")
    reference = train(RunConfig(out=str(tmp_path / "a"), **kw), progress=False)
    run_dir = train_killed_after(RunConfig(out=str(tmp_path / "b"), **kw), 12)
    _as_written_before_the_knob(run_dir)
    resumed = resume(run_dir, progress=False, steps=20)
    assert _metrics(resumed["run_dir"]) == _metrics(reference["run_dir"])


def test_extending_and_publishing_an_old_run_write_its_kernel(tmp_path):
    summary = train(RunConfig(out=str(tmp_path), seq_len=10, hidden=8, steps=5, eval_every=5, recurrence="torch"),
                    progress=False)
    source = RunDir(summary["run_dir"])
    _as_written_before_the_knob(source.path)
    publish(tmp_path, tmp_path / "results")
    published = yaml.safe_load((tmp_path / "results" / source.path.name / "config.yaml").read_text())
    assert published["recurrence"] == "torch"
    target = RunDir(tmp_path / "extended")
    target.path.mkdir()
    source.extend_into(target, dict(source.config(), recurrence="plainrnn", steps=10), finished=False)
    assert target.config()["recurrence"] == "torch" and target.config()["steps"] == 10
