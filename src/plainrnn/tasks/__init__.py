"""Benchmark tasks. ``make_task(name, seq_len)`` builds one by name."""
from __future__ import annotations

from .adding import ADDING_BASELINE_MSE, AddingTask, adding_batch
from .base import Task, TaskSpec
from .copy import CopyTask, copy_batch, memoryless_baseline

TASKS = {"adding": AddingTask, "copy": CopyTask}


def make_task(name: str, seq_len: int) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name](seq_len)


__all__ = ["CopyTask", "copy_batch", "memoryless_baseline", "Task", "TaskSpec", "AddingTask", "adding_batch", "make_task", "TASKS", "ADDING_BASELINE_MSE"]
