"""The device option: every branch that a CPU machine can reach, and a guard that keeps the κ passes
free of tensors created on the CPU whatever the model's device."""
import re
from pathlib import Path

import pytest
import torch

from plainrnn.cli import main
from plainrnn.train import RunConfig, train
from plainrnn.train.loop import resolve_device

SRC = Path(__file__).resolve().parents[2] / "src" / "plainrnn"


def test_auto_picks_cuda_only_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_cuda_without_a_gpu_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--device", "cuda", "--steps", "2", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "device cuda: this torch sees no CUDA GPU" in err


def test_a_bad_device_name_is_named(tmp_path, capsys):
    assert main(["train", "--device", "tpu", "--steps", "2", "--out", str(tmp_path), "--quiet"]) == 2
    assert "device must be cpu, cuda, cuda:N or auto, got 'tpu'" in capsys.readouterr().err


def test_out_of_memory_is_one_clear_line(monkeypatch, tmp_path, capsys):
    import plainrnn.train as train_module

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB\nmore detail")
    monkeypatch.setattr(train_module, "train", exhausted)
    code = main(["train", "--steps", "2", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "out of memory (CUDA out of memory. Tried to allocate 80.00 GiB)" in err


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_an_explicit_device_trains_to_the_same_numbers(tmp_path, device):
    kw = dict(seq_len=10, hidden=8, steps=20, eval_every=10, optimizer="path-sgd", lr=1e-2, clip=1.0)
    a = train(RunConfig(out=str(tmp_path / "a"), **kw), progress=False)
    b = train(RunConfig(out=str(tmp_path / "b"), device=device, **kw), progress=False)
    assert a["test_metric"] == b["test_metric"]


# Where tensors are made inside the passes that run on the model's device. Each factory call there
# must say where its tensor goes (device=..., or *_like, which follows its argument).
_DEVICE_BOUND = ["path/rnn.py", "path/mlp.py", "path/generic.py", "path/factored.py", "path/units.py",
                 "stiefel/cayley.py", "stiefel/penalties.py", "stiefel/spectral.py", "optim/path_sgd.py",
                 "optim/stiefel_sgd.py"]
_FACTORY = re.compile(r"torch\.(zeros|ones|eye|empty|arange|full|rand|randn|randint|tensor)\(")


@pytest.mark.parametrize("module", _DEVICE_BOUND)
def test_device_bound_code_creates_no_tensor_without_a_device(module):
    text = (SRC / module).read_text()
    offenders = []
    for match in _FACTORY.finditer(text):
        depth, end = 0, match.end() - 1  # find the call's closing parenthesis
        for end in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        call = text[match.start():end + 1]
        line = text.count("\n", 0, match.start()) + 1
        if "device=" not in call and ">>>" not in text[text.rfind("\n", 0, match.start()):match.start()]:
            offenders.append(f"{module}:{line}: {call[:60]}")
    assert not offenders, "tensors created without a device:\n" + "\n".join(offenders)
