import json
import subprocess
import sys

import pytest

from plainrnn.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["--lr", "-1"], "argument --lr: must be > 0"),
    (["--lr", "0"], "argument --lr: must be > 0"),
    (["--seq-len", "1"], "argument --seq-len: must be >= 2"),
    (["--task", "nope"], "argument --task: unknown 'nope'; allowed:"),
    (["--optimizer", "lbfgs"], "argument --optimizer: unknown 'lbfgs'"),
    (["--init", "zeros"], "argument --init: unknown 'zeros'"),
    (["--hidden", "ten"], "argument --hidden: must be an integer, got 'ten'"),
    (["--model", "lstm", "--optimizer", "path-sgd"], "needs a plain network"),
    (["--nonlinearity", "oplu"], "needs --model spectral"),
    (["--kappa2", "--optimizer", "sgd"], "kappa2 needs optimizer path-sgd, path-adam or invariant-adam"),
    (["--path-lr-nonrecurrent", "30", "--optimizer", "adam"], "path_lr_nonrecurrent rebalances Path-SGD's steps"),
    (["--path-lr-nonrecurrent", "0"], "argument --path-lr-nonrecurrent: must be > 0"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        code = main(["train", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_json_summary_is_the_last_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--seq-len", "10", "--hidden", "8",
                          "--steps", "5", "--eval-every", "5", "--out", str(tmp_path), "--json", "--quiet"],
                         capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"task", "steps", "test_loss", "test_metric", "diverged", "wall_s"} <= set(summary)
    assert summary["steps"] == 5


def test_help_explains_each_flag():
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--help"], capture_output=True, text=True)
    for flag in ("--task", "--model", "--seq-len", "--hidden", "--layers", "--nonlinearity", "--init", "--optimizer",
                 "--lr", "--batch-size", "--steps", "--clip", "--seed", "--out", "--kappa2", "--margin", "--orth-lr"):
        assert flag in out.stdout


def test_reproduce_help_gives_each_recipe_a_paragraph_with_its_budgets(capsys):
    from plainrnn.experiments.recipes import RECIPES
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    paragraphs = [line for line in capsys.readouterr().out.splitlines() if line and not line[0].isspace()]
    for name, recipe in RECIPES.items():
        budgets = f" (budgets: {', '.join(recipe['budgets'])})" if "budgets" in recipe else ""
        assert sum(line.startswith(f"{name}{budgets}: {recipe['paper'][:20]}") for line in paragraphs) == 1, name
    for name in ("kappa-table", "step-scales", "first-steps", "invariance-gap"):
        assert sum(line.startswith(f"{name}: ") for line in paragraphs) == 1, name


def test_demo_prints_a_table_and_writes_the_curve(tmp_path):
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "demo", "--steps", "20", "--out", str(tmp_path),
                          "--quiet"], capture_output=True, text=True, check=True, timeout=300)
    lines = out.stdout.splitlines()
    for label in ("IRNN + SGD", "ReLU RNN + Adam", "ReLU RNN + Path-SGD", "ReLU RNN + Path-Adam"):
        assert any(line.startswith(label) for line in lines), label
    png = next(line.split(": ", 1)[1] for line in lines if line.startswith("learning curves:"))
    assert open(png, "rb").read(4) == b"\x89PNG"


@pytest.mark.parametrize("argv, needle", [
    (["report", "/nonexistent/runs"], "plainrnn report: error: /nonexistent/runs: no such run directory"),
    (["sweep", "--grid", "lr"], "plainrnn sweep: error: --grid expects key=v1,v2,..., got 'lr'"),
    (["reproduce", "step-scales", "--set", "hidden=-3"], "plainrnn reproduce: error: hidden"),
    (["train", "--resume", "/nonexistent/run"], "plainrnn train: error: /nonexistent/run: no checkpoint.pt"),
    (["reproduce", "adding-study", "--list", "--extend-from", "/nonexistent/sweep"],
     "plainrnn reproduce: error: --extend-from /nonexistent/sweep: no such folder"),
    (["data", "fetch", "cifar10", "--from", "/nonexistent/cifar.tar.gz", "--data-dir", "/tmp/plainrnn-none"],
     "plainrnn data fetch: error:"),
])
def test_every_command_reports_bad_input_the_same_way(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_a_traceback_on_request(monkeypatch):
    monkeypatch.setenv("PLAINRNN_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError):
        main(["report", "/nonexistent/runs"])


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`plainrnn reproduce --help | head -1`-style pipes: the closed pipe ends the command quietly."""
    import os
    read, write = os.pipe()
    os.close(read)  # the reader is already gone
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "step-scales", "--set", "seq_len=10",
                          "--set", "hidden=4"], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
    assert out.returncode == 141
