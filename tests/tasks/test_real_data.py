"""The real datasets, as CI fetches them: checksums, counts and vocabularies from DATA.md."""
import collections

import torch

from plainrnn.tasks import make_task
from plainrnn.tasks.data import MNIST_MD5, PTB_MD5, md5_of, verify
from plainrnn.tasks.images import load_mnist

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_checksums_counts_and_labels(real_data):
    d = verify("mnist", real_data)
    for name, md5 in MNIST_MD5.items():
        assert md5_of(d / name) == md5
    splits = load_mnist(real_data)
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    assert xtr.shape == (60_000, 28, 28) and xte.shape == (10_000, 28, 28) and xtr.dtype == torch.uint8
    assert torch.bincount(ytr, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert torch.bincount(yte, minlength=10).tolist() == TEST_LABEL_COUNTS


def test_ptb_checksums_tokens_and_vocabularies(real_data):
    d = verify("ptb", real_data)
    for name, md5 in PTB_MD5.items():  # includes the rebuilt PTB-c valid and test files
        assert md5_of(d / name) == md5, name
    assert (d / "ptb.train.txt").stat().st_size == 5_101_618
    word = make_task("ptb-word", None, real_data)
    assert word.spec.vocab_size == 10_000
    assert [len(word.streams[s]) for s in ("train", "valid", "test")] == [929_589, 73_760, 82_430]
    char = make_task("ptb-char", None, real_data)
    assert len(char.streams["train"]) == 4_837_402  # symbols including end-of-line
    assert 45 <= char.spec.vocab_size <= 55
    sentences = make_task("ptb-sentences", 75, real_data)
    assert sentences.spec.vocab_size == 49  # the 2017 paper's 49 symbols
    assert max(len(s) for s in sentences.sentences["train"]) <= 76
    long = make_task("ptb-sentences", 300, real_data)
    assert len(long.sentences["train"]) > len(sentences.sentences["train"])


def test_smnist_and_pmnist(real_data, tmp_path):
    s = make_task("smnist", None, real_data)
    x, y = s.train_batch(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 784, 1) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert len(s.y["train"]) == 55_000 and len(s.y["valid"]) == 5_000 and len(s.y["test"]) == 10_000
    assert s.x["train"].dtype == torch.uint8  # no float copy of the training set
    p1, p2 = make_task("pmnist", None, real_data), make_task("pmnist", None, real_data)
    perm = p1.permutation
    assert torch.equal(torch.sort(perm).values, torch.arange(784))  # a bijection
    assert torch.equal(perm, p2.permutation)  # fixed by its recorded seed
    xs, _ = next(s.eval_batches("test", 3))
    xp, _ = next(p1.eval_batches("test", 3))
    assert torch.equal(xp, xs[:, perm])
    assert collections.Counter(xp.flatten().tolist()) == collections.Counter(xs.flatten().tolist())


def test_fashion_mnist_from_debian_counts_and_the_full_train_split(tmp_path):
    """Debian's dataset-fashion-mnist, as `plainrnn data fetch fashion-mnist` installs it: 6,000 images of
    each class for training and 1,000 for testing; full_train trains on the validation split too."""
    from plainrnn.tasks.data import FASHION_MD5, fetch
    d = fetch("fashion-mnist", tmp_path)
    for name, md5 in FASHION_MD5.items():
        assert md5_of(d / name) == md5
    held_out = make_task("fashion-mnist", None, tmp_path)
    full = make_task("fashion-mnist", None, tmp_path, full_train=True)
    assert (held_out.train_size, full.train_size) == (50_000, 60_000)
    assert torch.equal(held_out.x["valid"], full.x["valid"]) and len(full.y["test"]) == 10_000
    assert torch.bincount(full.y["train"], minlength=10).tolist() == [6000] * 10
    assert torch.bincount(full.y["test"], minlength=10).tolist() == [1000] * 10
