"""A dataset file from the user is data, never code: a crafted CIFAR pickle does not run, a garbage
archive is refused by its published checksum, text8 (no published checksum) is stored and says so."""
import io
import pickle
import tarfile

import pytest

from plainrnn.cli import main
from plainrnn.tasks.data import DataError, fetch
from plainrnn.tasks.images import read_cifar


class _Payload:
    """Unpickling this calls open(path, "w") on a marker file: proof that the payload ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_cifar(path, marker):
    blob = pickle.dumps({b"data": _Payload(marker), b"labels": [0]})
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_a_crafted_cifar_batch_is_refused_and_its_payload_never_runs(tmp_path):
    archive, marker = tmp_path / "cifar-10-python.tar.gz", tmp_path / "PAYLOAD_RAN"
    _crafted_cifar(archive, marker)
    with pytest.raises(DataError) as caught:
        read_cifar(archive, 10)
    assert str(caught.value) == (f"{archive}:data_batch_1: asks to load io.open, which a CIFAR batch never "
                                 "holds: refused, nothing of it was run")
    assert not marker.exists()


def test_a_file_that_is_not_the_published_cifar_is_refused_by_its_checksum(tmp_path, capsys):
    archive, marker = tmp_path / "cifar-10-python.tar.gz", tmp_path / "PAYLOAD_RAN"
    _crafted_cifar(archive, marker)
    assert main(["data", "fetch", "cifar10", "--from", str(archive), "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch: expected MD5 c58f30108f718f92721af3b95e74349a (the published file)" in err[0]
    assert "nothing was stored" in err[0] and not marker.exists()
    assert not (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").exists()


def test_text8_is_stored_and_says_it_is_not_verified(tmp_path, capsys):
    source = tmp_path / "text8"
    source.write_text("abc def " * 1000)
    said = []
    fetch("text8", tmp_path / "cache", source_file=str(source), say=said.append)
    assert said == [f"text8: stored in {tmp_path / 'cache' / 'text8'}, not verified: no known checksum for text8 "
                    "(its loader checks the format)"]


def test_a_folder_given_for_a_file_is_one_line(tmp_path, capsys):
    assert main(["data", "fetch", "text8", "--from", str(tmp_path), "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"plainrnn data fetch: error: {tmp_path} is a folder; --from takes the file text8 itself"]
