"""The errors both pools raise (local processes and a Dask cluster), and how they name a task."""

import reprlib
from collections.abc import Callable
from typing import Any


class ChunkFailedError(RuntimeError):
    """A task raised in a worker; the message names the chunk and carries the worker's
    traceback."""


class TaskTimeoutError(ChunkFailedError):
    """A task ran past its deadline (``task_timeout``) as often as it was allowed to."""


class WorkerDiedError(RuntimeError):
    """A worker process exited while tasks were running (killed, out of memory, os._exit, or
    unable to import the task's function)."""


class OutOfMemoryError(WorkerDiedError):
    """A worker went past its memory limit while running a task (it would again)."""


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4


def task_name(index: int, task: Any, describe: Callable[[Any], str] | None = None) -> str:
    """How a task is named in failures and log lines: ``describe(task)`` if given, else its
    position and a short repr (``task #13 (13)``)."""
    if describe is not None:
        return describe(task)
    return f"task #{index} ({_short.repr(task)})"


def describe_by_type(task: Any) -> str:
    """How a task is named when the caller gives no ``describe``."""
    return f"a task of type {type(task).__name__}"


def failure_message(description: str, error: BaseException, where: str = "in a pool worker") -> str:
    """``description failed in a pool worker: ValueError: ...`` (the pool adds the traceback)."""
    return f"{description} failed {where}: {type(error).__name__}: {error}"
