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


def read_saved_config(run_dir: Path) -> dict | None:
    """A run directory's config as it was written: config.json (what the trainer writes and reads back),
    or config.yaml alone (all that results/ keeps of a published run); None when it holds neither or
    the file cannot be read."""
    import yaml
    run_dir = Path(run_dir)
    try:
        if (run_dir / "config.json").exists():
            config = json.loads((run_dir / "config.json").read_text())
        elif (run_dir / "config.yaml").exists():
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
        else:
            return None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


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
