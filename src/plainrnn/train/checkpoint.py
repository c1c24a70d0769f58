"""Atomic file writes: a reader (or a crash) never sees a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: the old file or the new one, never a mix
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    _atomic_write(path, lambda f: torch.save(payload, f))


def write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: Path, obj: dict) -> None:
    import yaml
    write_text(path, yaml.safe_dump(obj, sort_keys=True))


class CorruptFile(ValueError):
    """A run-directory file that does not parse; the message names the file and the line."""


def read_json(path: Path):
    """One JSON document, or :class:`CorruptFile` naming the file (not the parser's bare message)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFile(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def read_records(path: Path) -> list[dict]:
    """The records of an append-only .jsonl file. A last line that does not parse is a torn append (a
    kill in the middle of a write) and is left out, as a log-structured store cuts its tail; a bad
    line before the last is corruption, named with its line number."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if all(not rest.strip() for rest in lines[number:]):
                break  # the torn tail
            raise CorruptFile(f"{path}: line {number} is not valid JSON ({e.msg}); the lines after it are whole, "
                              "so this is not a torn write: restore the file or remove that line") from None
        if isinstance(record, dict):
            records.append(record)
    return records


class CheckpointError(ValueError):
    """A file that is not a readable plainrnn checkpoint; the message names it."""


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: tensors,
    numbers, strings and containers only, never arbitrary pickled code from a file someone handed you."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 – torch raises many kinds for a truncated or foreign file
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a plainrnn checkpoint (torch.load with weights_only=True: "
                              f"{first})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a plainrnn checkpoint (it holds a {type(payload).__name__}, "
                              "not a dict)")
    return payload
