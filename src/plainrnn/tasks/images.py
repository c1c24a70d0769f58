"""Image sets: MNIST (IDX), CIFAR-10/100 (python pickle batches), SVHN (.mat); and their tasks.

Images stay uint8 in memory and are converted per batch: no float copy of a training set.

Tasks:
    smnist   sequential MNIST: 784 steps of 1 pixel in [0, 1], the class at the last step
    pmnist   the same with one fixed permutation of the pixels, drawn from a recorded seed
    mnist, cifar10, cifar100, svhn
             flattened images in [0, 1] for the MLP experiments of the 2015 paper
    fashion-mnist
             flattened Fashion-MNIST, a stand-in here for the 2015 paper's CIFAR and SVHN, which
             these machines cannot download
Each holds out a validation split from its training set (the last ``valid_size`` training images;
5,000 for MNIST as in the RNN papers, 10,000 for the 2015 paper's MLP sets).
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import Task, TaskSpec
from .data import DataError, ensure


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (MNIST's format): magic 0x0000 08 NDIM, NDIM big-endian int32 sizes, then uint8 data."""
    raw = Path(path).read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: truncated or padded IDX file: {len(raw)} bytes, expected {expected}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def load_mnist(root=None, dataset: str = "mnist") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """MNIST, or any set in its IDX layout (``dataset="fashion-mnist"``)."""
    d = ensure(dataset, root)
    return {"train": (read_idx(d / "train-images-idx3-ubyte"), read_idx(d / "train-labels-idx1-ubyte").long()),
            "test": (read_idx(d / "t10k-images-idx3-ubyte"), read_idx(d / "t10k-labels-idx1-ubyte").long())}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: a batch is a dict of bytes keys, lists and numpy
    arrays, so the only globals it may name are numpy's array reconstructors. Any other global (the
    way a crafted pickle runs code: os.system, builtins.eval, ...) is refused before it is looked up."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise DataError(f"asks to load {module}.{name}, which a CIFAR batch never holds: refused, nothing of "
                            "it was run")
        return super().find_class(module, name)


def _unpickle(blob: bytes, what: str) -> dict:
    try:
        batch = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    except Exception as e:  # noqa: BLE001 – any unpickling failure means a corrupt file
        raise DataError(f"{what}: not a readable CIFAR pickle batch ({e.__class__.__name__})") from e
    if not isinstance(batch, dict):
        raise DataError(f"{what}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return batch


def read_cifar(archive: Path, classes: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """CIFAR-10/100 from the python tarball: images [N, 3, 32, 32] uint8, labels [N]."""
    label_key = b"labels" if classes == 10 else b"fine_labels"
    names = ({"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]} if classes == 10
             else {"train": ["train"], "test": ["test"]})
    out = {}
    try:
        with tarfile.open(archive) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()}
            for split, files in names.items():
                xs, ys = [], []
                for name in files:
                    if name not in members:
                        raise DataError(f"{archive}: missing the batch {name!r}; is this the CIFAR-{classes} python version?")
                    batch = _unpickle(tar.extractfile(members[name]).read(), f"{archive}:{name}")
                    if b"data" not in batch or label_key not in batch:
                        raise DataError(f"{archive}:{name}: not a CIFAR-{classes} batch (no {b'data'!r} or "
                                        f"{label_key!r} entry)")
                    xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    ys.append(np.asarray(batch[label_key], dtype=np.int64))
                out[split] = (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: truncated or corrupt archive ({e.__class__.__name__}); download it again "
                        f"and run: plainrnn data fetch cifar{classes} --from FILE --force") from e
    return out


def read_svhn(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """SVHN cropped digits from train_32x32.mat / test_32x32.mat: X is [32, 32, 3, N], y is 1..10
    with 10 meaning the digit 0."""
    from scipy.io import loadmat
    out = {}
    for split in ("train", "test"):
        path = Path(folder) / f"{split}_32x32.mat"
        try:
            mat = loadmat(path)
            X, y = mat["X"], mat["y"]
        except Exception as e:  # noqa: BLE001 – scipy raises several types for corrupt files
            raise DataError(f"{path}: not a readable SVHN .mat file ({e.__class__.__name__}); download it again") from e
        images = torch.from_numpy(np.ascontiguousarray(np.transpose(X, (3, 2, 0, 1))).astype(np.uint8))
        labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
        out[split] = (images, labels)
    return out


class ImageTask(Task):
    """Classification over uint8 images; ``sequence=True`` feeds them pixel by pixel (784 steps)."""

    def __init__(self, name, splits, classes, valid_size, sequence=False, permutation_seed=None,
                 full_train: bool = False):
        (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
        valid_size = min(valid_size, len(ytr) // 5)  # small (e.g. generated) files keep 80% for training
        # full_train: the 2015 paper picks the step size on the validation split, then trains on the
        # whole training set; the validation split is still reported, but it is no longer held out.
        self.x = {"train": xtr if full_train else xtr[:-valid_size], "valid": xtr[-valid_size:], "test": xte}
        self.y = {"train": ytr if full_train else ytr[:-valid_size], "valid": ytr[-valid_size:], "test": yte}
        self.features = int(np.prod(xtr.shape[1:]))
        self.sequence = sequence
        self.permutation = None
        if permutation_seed is not None:
            self.permutation = torch.randperm(self.features, generator=torch.Generator().manual_seed(permutation_seed))
            self.permutation_seed = permutation_seed
        if sequence:
            self.spec = TaskSpec(name=name, input_size=1, output_size=classes, output="last", seq_len=self.features,
                                 metric_name="accuracy", lower_is_better=False, baseline=1.0 / classes)
        else:
            self.spec = TaskSpec(name=name, input_size=self.features, output_size=classes, output="flat", seq_len=0,
                                 metric_name="accuracy", lower_is_better=False, baseline=1.0 / classes)

    @property
    def train_size(self) -> int:
        """Examples in the training set (an epoch is this many examples)."""
        return len(self.y["train"])

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(images.shape[0], -1).float().div_(255.0)  # per batch: storage stays uint8
        if self.permutation is not None:
            x = x[:, self.permutation]
        return x.unsqueeze(-1) if self.sequence else x

    def train_batch(self, batch_size, generator):
        idx = torch.randint(len(self.y["train"]), (batch_size,), generator=generator)
        return self._inputs(self.x["train"][idx]), self.y["train"][idx]

    def eval_batches(self, split, batch_size, limit=None):  # the first `limit`: evaluate truncates
        for i in range(0, len(self.y[split]), batch_size):
            yield self._inputs(self.x[split][i:i + batch_size]), self.y[split][i:i + batch_size]

    def loss(self, output, target):
        return torch.nn.functional.cross_entropy(output, target)

    def metric_sums(self, output, target):
        ce = torch.nn.functional.cross_entropy(output, target, reduction="sum").item()
        return ce, (output.argmax(-1) == target).sum().item(), len(target)

    def artifacts(self) -> dict:
        return {} if self.permutation is None else {"permutation.pt": dict(seed=self.permutation_seed,
                                                                           permutation=self.permutation)}


PMNIST_SEED = 1234  # the recorded seed of pmnist's one fixed permutation (saved with every run too)


def make_image_task(name: str, root=None, full_train: bool = False) -> ImageTask:
    if name == "fashion-mnist":
        return ImageTask(name, load_mnist(root, "fashion-mnist"), 10, valid_size=10_000, full_train=full_train)
    if name in ("smnist", "pmnist", "mnist"):
        splits = load_mnist(root)
        if name == "mnist":
            return ImageTask(name, splits, 10, valid_size=10_000, full_train=full_train)
        return ImageTask(name, splits, 10, valid_size=5_000, sequence=True,
                         permutation_seed=PMNIST_SEED if name == "pmnist" else None)
    if name in ("cifar10", "cifar100"):
        classes = 10 if name == "cifar10" else 100
        d = ensure(name, root)
        return ImageTask(name, read_cifar(d / f"cifar-{classes}-python.tar.gz", classes), classes, valid_size=10_000,
                         full_train=full_train)
    if name == "svhn":
        return ImageTask(name, read_svhn(ensure("svhn", root)), 10, valid_size=10_000, full_train=full_train)
    raise ValueError(f"unknown image task {name!r}")
