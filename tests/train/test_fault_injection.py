"""kill -9 at 20 different moments of one run (training steps, the middle of a metrics append, the
middle of a checkpoint's bytes, the instant before an atomic replace), the same command after each:
every restart succeeds, and the run ends with exactly the metrics of a run that was never killed, no
row missing or twice, and no temporary file left behind."""
import json
import os
import subprocess
import sys
from pathlib import Path

ARGS = ["train", "--task", "adding", "--seq-len", "8", "--hidden", "6", "--steps", "60", "--eval-every", "5",
        "--quiet"]
CHILD = Path(__file__).with_name("fault_child.py")
# (kind, n) per process: each is reached (a process that resumes at step s still runs 60 − s steps,
# one append and one checkpoint per evaluation, plus the config writes at its start)
FAULTS = [("step", 3), ("append", 1), ("step", 9), ("checkpoint", 1), ("replace", 1), ("append", 2),
          ("replace", 3), ("checkpoint", 2), ("step", 1), ("append", 1), ("replace", 4), ("step", 6),
          ("checkpoint", 1), ("append", 1), ("replace", 2), ("step", 4), ("checkpoint", 1), ("append", 1),
          ("replace", 5), ("step", 2)]


def _run(out, fault=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    if fault:
        env["FAULT"] = f"{fault[0]}:{fault[1]}"
        command = [sys.executable, str(CHILD), *ARGS, "--out", str(out)]
    else:
        command = [sys.executable, "-m", "plainrnn.cli", *ARGS, "--out", str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _records(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_twenty_kills_then_the_metrics_of_a_run_never_killed(tmp_path):
    assert len(FAULTS) >= 20
    whole = _run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    (expected_dir,) = (tmp_path / "whole").iterdir()
    out = tmp_path / "killed"
    killed = 0
    for fault in FAULTS:
        result = _run(out, fault)
        assert result.returncode in (-9, 0), (fault, result.stderr)
        assert "Traceback" not in result.stderr, (fault, result.stderr)
        killed += result.returncode == -9
        if result.returncode == 0:
            break
    assert killed >= 20, f"only {killed} of the kills happened before the run ended"
    final = _run(out)
    assert final.returncode == 0, final.stderr
    (run_dir,) = out.iterdir()
    assert _records(run_dir) == _records(expected_dir)
    assert [r["step"] for r in _records(run_dir)] == list(range(5, 61, 5))
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert json.loads((run_dir / "summary.json").read_text())["test_metric"] == \
        json.loads((expected_dir / "summary.json").read_text())["test_metric"]
