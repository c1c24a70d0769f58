"""Checkpoints are atomic, and a run killed at any moment resumes to the same numbers."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from plainrnn.train import RunConfig, resume, train
from plainrnn.train.checkpoint import load_checkpoint
from oracles import train_killed_after

CLI = [sys.executable, "-m", "plainrnn.cli"]


def _metrics(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_resume_in_process_matches_uninterrupted(tmp_path):
    kw = dict(seq_len=12, hidden=16, steps=40, eval_every=8, checkpoint_every=6, optimizer="path-sgd", lr=1e-4,
              momentum=0.9)
    full = train(RunConfig(out=str(tmp_path / "a"), **kw), progress=False)
    cut = train_killed_after(RunConfig(out=str(tmp_path / "b"), **kw), 23)  # last checkpoint: 18
    resumed = resume(cut, progress=False)
    assert _metrics(full["run_dir"]) == _metrics(resumed["run_dir"])
    assert full["test_metric"] == resumed["test_metric"]


def test_kill_9_at_a_random_moment_then_resume(tmp_path):
    random.seed(0)
    steps = 1000
    args = ["train", "--seq-len", "20", "--hidden", "32", "--steps", str(steps), "--eval-every", "10",
            "--checkpoint-every", "7", "--optimizer", "adam", "--lr", "1e-3", "--quiet", "--name", "run"]
    subprocess.run(CLI + args + ["--out", str(tmp_path / "full")], check=True, capture_output=True)
    run_dir = tmp_path / "cut" / "run"
    proc = subprocess.Popen(CLI + args + ["--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill once a random number of evaluations is on disk, plus a random fraction of an evaluation
    # interval: the kill lands mid-step, mid-evaluation or mid-checkpoint, yet always before the end
    # (a fixed sleep let a fast machine finish the run first).
    evaluations = random.randint(2, steps // 10 // 3)
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_bytes().count(b"\n") >= evaluations:
            break
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.02))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["step"] < steps, "the run finished before the kill; the test needs a slower run"
    done = subprocess.run(CLI + ["train", "--resume", str(run_dir), "--quiet", "--json"], capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == steps
    assert _metrics(tmp_path / "full" / "run") == _metrics(run_dir)


def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ckpt.pt"
    code = (
        "import sys, torch\n"
        "from plainrnn.train.checkpoint import save_checkpoint\n"
        "i = 0\n"
        "while True:\n"
        "    save_checkpoint(sys.argv[1], {'version': i, 'blob': torch.full((3_000_000,), float(i))})\n"
        "    i += 1\n")
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        while not path.exists():
            time.sleep(0.01)
        time.sleep(0.3 + 0.17 * trial)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(path)
        assert torch.equal(ckpt["blob"], torch.full((3_000_000,), float(ckpt["version"])))
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt.pt" and not p.name.startswith(".ckpt.pt.")]


def test_resume_with_dropout_is_bit_identical(tmp_path):
    """Dropout draws from the global torch RNG, so a resumed run matches an uninterrupted one only if
    the checkpoint restores that RNG too (every other resume test uses a model without dropout)."""
    kw = dict(task="mnist", model="mlp", hidden=16, layers=2, dropout=0.5, batch_size=20, steps=30, eval_every=6,
              checkpoint_every=6, eval_limit=200, optimizer="path-sgd", lr=1e-2)
    full = train(RunConfig(out=str(tmp_path / "a"), **kw), progress=False)
    cut = train_killed_after(RunConfig(out=str(tmp_path / "b"), **kw), 15)  # last checkpoint: 12
    resumed = resume(cut, progress=False)
    assert _metrics(full["run_dir"]) == _metrics(resumed["run_dir"])
    a = load_checkpoint(os.path.join(full["run_dir"], "checkpoint.pt"))["model"]
    b = load_checkpoint(os.path.join(resumed["run_dir"], "checkpoint.pt"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_checkpoint_loads_with_weights_only_and_a_foreign_file_is_one_line(tmp_path):
    """κ (rank-one factors included), the spectral optimizer's state and the RNG states are plain
    tensors and numbers: torch.load(weights_only=True) reads every checkpoint the trainer writes."""
    setups = [dict(optimizer="path-sgd", momentum=0.9), dict(optimizer="path-adam", kappa2=True),
              dict(model="spectral", margin=0.1, optimizer="rmsprop", task="copy"),
              dict(task="mnist", model="mlp", optimizer="path-sgd", eval_limit=50)]
    for i, setup in enumerate(setups):
        kw = dict(dict(seq_len=8, hidden=8, steps=4, eval_every=4, out=str(tmp_path), name=f"r{i}"), **setup)
        if kw.get("task") == "mnist":
            kw.pop("seq_len")
        run = train(RunConfig(**kw), progress=False)["run_dir"]
        ckpt = torch.load(os.path.join(run, "checkpoint.pt"), weights_only=True)
        assert ckpt["step"] == 4 and "optimizer" in ckpt
    bad = tmp_path / "r0" / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    out = subprocess.run(CLI + ["train", "--resume", str(tmp_path / "r0")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().endswith(")") and "is not a plainrnn checkpoint" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_finished_run_extended_with_another_eval_cadence_is_the_longer_run(tmp_path):
    """How the adding study's 100k runs continued its 20k runs (results/adding_study_full): a finished
    run, resumed with more steps and another eval_every, ends exactly where one longer run does, since
    batches come from the run's own generator and evaluation never touches training."""
    kw = dict(seq_len=10, hidden=8, optimizer="path-adam", lr=1e-3, clip=1.0)
    longer = train(RunConfig(out=str(tmp_path / "a"), steps=60, eval_every=20, **kw), progress=False)
    short = train(RunConfig(out=str(tmp_path / "b"), steps=30, eval_every=15, **kw), progress=False)
    config_path = os.path.join(short["run_dir"], "config.json")
    cfg = json.load(open(config_path))
    json.dump(dict(cfg, steps=60, eval_every=20), open(config_path, "w"))
    extended = resume(short["run_dir"], progress=False)
    assert extended["test_metric"] == longer["test_metric"] and extended["steps"] == 60
    assert [r["step"] for r in _metrics(extended["run_dir"]) if "test_metric" in r] == [15, 30, 40, 60]


def test_a_checkpoint_is_replaced_by_a_rename_never_rewritten_in_place(tmp_path):
    """save_checkpoint writes a new file and renames it over the old one (a new inode): a reader holding
    the old checkpoint open, or a kill at any moment, sees the old bytes or the new ones, never a mix.
    Copying into the existing file would keep its inode and change what that reader reads."""
    import os
    from plainrnn.train.checkpoint import load_checkpoint, save_checkpoint
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(1000)})
    old_bytes = path.read_bytes()
    with open(path, "rb") as reader:
        inode = os.fstat(reader.fileno()).st_ino
        save_checkpoint(path, {"step": 2, "w": torch.ones(1000)})
        assert os.stat(path).st_ino != inode
        assert reader.read() == old_bytes  # the open reader still sees the whole old checkpoint
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left
