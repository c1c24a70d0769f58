"""Benchmark tasks. ``make_task(name, seq_len, data_dir)`` builds one by name.

Synthetic: adding, copy. Real data (fetched into the cache on first use, see ``tasks.data``):
smnist, pmnist, ptb-char, ptb-word, ptb-sentences, text8, shakespeare, and the flattened image sets
mnist, fashion-mnist, cifar10, cifar100, svhn for MLPs.
"""
from __future__ import annotations

from .adding import ADDING_BASELINE_MSE, AddingTask, adding_batch
from .base import Task, TaskSpec
from .copy import CopyTask, copy_batch, memoryless_baseline
from .data import DATASETS, DataError

SYNTHETIC = {"adding": AddingTask, "copy": CopyTask}
SEQUENCE_IMAGES = ("smnist", "pmnist")
FLAT_IMAGES = ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")
TEXT = ("ptb-char", "ptb-word", "ptb-sentences", "text8", "shakespeare")
TASKS = (*SYNTHETIC, *SEQUENCE_IMAGES, *TEXT, *FLAT_IMAGES)
DEFAULT_SEQ_LEN = {"adding": 100, "copy": 100}


def make_task(name: str, seq_len: int | None = None, data_dir=None, full_train: bool = False) -> Task:
    """The task ``name``. ``full_train`` (flat image sets only): train on the validation split too."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if name in SYNTHETIC:
        return SYNTHETIC[name](seq_len or DEFAULT_SEQ_LEN[name])
    if name in SEQUENCE_IMAGES or name in FLAT_IMAGES:
        if seq_len is not None and name in SEQUENCE_IMAGES and seq_len != 784:
            raise ValueError(f"{name} has 784 steps of one pixel; seq_len must be 784 or unset, got {seq_len}")
        from .images import make_image_task
        return make_image_task(name, data_dir, full_train=full_train)
    from .text import make_text_task
    return make_text_task(name, seq_len, data_dir)


__all__ = ["Task", "TaskSpec", "AddingTask", "CopyTask", "adding_batch", "copy_batch", "memoryless_baseline",
           "make_task", "TASKS", "DATASETS", "DataError", "ADDING_BASELINE_MSE"]
