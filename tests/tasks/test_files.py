"""CIFAR, SVHN and text8 loaders on small files generated in exactly the standard formats."""
import numpy as np
import pytest
import torch

from plainrnn.tasks import DataError, make_task
from plainrnn.tasks.data import fetch, verify
from plainrnn.tasks.images import read_cifar, read_idx, read_svhn


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_loads_shapes_and_labels(tmp_path, make_cifar, classes):
    path = tmp_path / f"cifar-{classes}-python.tar.gz"
    expected = make_cifar(path, classes)
    splits = read_cifar(path, classes)
    first = "data_batch_1" if classes == 10 else "train"
    assert splits["train"][0].shape == (30, 3, 32, 32) and splits["test"][0].shape == (4, 3, 32, 32)
    assert splits["train"][0].dtype == torch.uint8
    assert torch.equal(splits["train"][0][0].flatten(), torch.from_numpy(expected[first][0][0]))
    assert splits["train"][1][:6].tolist() == expected[first][1][:6]


def test_svhn_loads_and_maps_10_to_0(tmp_path, make_svhn):
    made = make_svhn(tmp_path)
    splits = read_svhn(tmp_path)
    X, y = made["train"]
    assert splits["train"][0].shape == (30, 3, 32, 32)
    assert torch.equal(splits["train"][0][5], torch.from_numpy(np.transpose(X[..., 5], (2, 0, 1)).copy()))
    assert splits["train"][1].tolist() == (y.reshape(-1).astype(int) % 10).tolist()


def test_corrupted_and_truncated_files_give_the_clear_error(tmp_path, make_cifar, make_svhn):
    path = tmp_path / "cifar-10-python.tar.gz"
    make_cifar(path, 10)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        read_cifar(path, 10)
    make_svhn(tmp_path)
    mat = tmp_path / "train_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:300])
    with pytest.raises(DataError, match="train_32x32.mat: not a readable SVHN"):
        read_svhn(tmp_path)
    idx = tmp_path / "x-idx3-ubyte"
    idx.write_bytes(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100))
    with pytest.raises(DataError, match="truncated"):
        read_idx(idx)


def test_text8_generated_file(tmp_path, make_text8):
    src = tmp_path / "text8"
    text = make_text8(src)
    root = tmp_path / "cache"
    fetch("text8", root, source_file=str(src))
    task = make_task("text8", None, root)
    assert task.spec.vocab_size == 27 and task.spec.seq_len == 180
    sizes = [len(task.streams[s]) for s in ("train", "valid", "test")]
    assert sizes == [36_000, 2_000, 2_000]  # the 90/5/5 split (90M/5M/5M on the real file)
    x, y = task.train_batch(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 180) and torch.equal(x[:, 1:], y[:, :-1])
    bad = tmp_path / "bad"
    bad.write_text(text.upper())
    with pytest.raises(DataError, match="not a text8 file"):
        fetch("text8", tmp_path / "c2", source_file=str(bad))
        make_task("text8", None, tmp_path / "c2")


def test_missing_and_mismatched_cache_files(tmp_path, real_data):
    with pytest.raises(DataError, match="missing; run: plainrnn data fetch text8"):
        verify("text8", tmp_path)
    import shutil
    shutil.copytree(real_data / "mnist", tmp_path / "mnist")
    f = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: MD5 mismatch, expected 27ae3e4e09519cfbb04c329615203637, got [0-9a-f]{32}; run: plainrnn data fetch mnist --force"):
        verify("mnist", tmp_path)


def test_table3_runs_on_text8_with_the_command_docs_results_gives(tmp_path, make_text8):
    """Table 3's text8 column is one `--set` away from PTB-c; here on a generated file (the real one is
    not to be had on these machines): every row of the recipe trains on it and reports BPC."""
    import json
    import subprocess
    import sys
    src = tmp_path / "text8"
    make_text8(src)
    fetch("text8", tmp_path / "cache", source_file=str(src))
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "table3-ptbc", "--budget", "cpu",
                          "--set", "task=text8", "--set", "seq_len=180", "--only", "hidden=128", "--only", "lr=1e-3",
                          "--set", "steps=2", "--set", "eval_every=2", "--set", "batch_size=2", "--set", "eval_limit=4",
                          "--set", f"data_dir={tmp_path / 'cache'}", "--set", f"out={tmp_path / 'runs'}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    trials = [json.loads(line) for line in (tmp_path / "runs" / "table3-ptbc-cpu" / "trials.jsonl").open()]
    # hidden=128: the three RNN rows of the narrow width and the LSTM of the wide one (half of 256)
    assert sorted(t["setting"] for t in trials) == sorted([
        "optimizer=path-adam,hidden=128,lr=1e-3", "optimizer=adam,hidden=128,lr=1e-3",
        "optimizer=adam,model=tanh,hidden=128,lr=1e-3", "optimizer=adam,model=lstm,hidden=128,lr=1e-3"])
    assert all(t["status"] == "ok" and 0 < t["test_metric"] < 10 for t in trials), trials
    summary = json.loads((tmp_path / "runs" / "table3-ptbc-cpu" / "optimizer-path-adam_hidden-128_lr-1e-3-s0"
                          / "summary.json").read_text())
    assert summary["metric"] == "bpc"
