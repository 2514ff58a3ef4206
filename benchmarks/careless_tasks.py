"""careless_map.py's task functions, as a team might write them carelessly, in a module of
their own with no Dagster import: each misbehaves for one task (BAD_TASK) and is harmless
for the others."""

import os
import sys
import threading
import time

# The task each careless function misbehaves on; the others return it doubled.
BAD_TASK = 3
# What hold_memory allocates (and writes to, so every page is resident).
MEMORY_BYTES = 400 * 1024 * 1024
MEMORY_HOLD_SECONDS = 4.0


class TeamError(Exception):
    """An exception whose ``__init__`` takes two arguments but passes one message up: pickle
    rebuilds it as ``TeamError(message)``, which raises TypeError."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail


def announce(task: int, what: str) -> None:
    """A printed line with the wall-clock time, so the log says when a task began."""
    print(f"task {task} {what} at {time.time():.3f}", flush=True)


def hang(task: int) -> int:
    """Never returns for BAD_TASK (sleeps forever)."""
    if task == BAD_TASK:
        announce(task, "starts hanging")
        while True:
            time.sleep(1)
    return 2 * task


def raise_team_error(task: int) -> int:
    """Raises :class:`TeamError` for BAD_TASK."""
    if task == BAD_TASK:
        raise TeamError(42, f"task {task} is not welcome")
    return 2 * task


def return_lock(task: int) -> object:
    """Returns a ``threading.Lock`` (which pickle refuses) for BAD_TASK."""
    if task == BAD_TASK:
        return threading.Lock()
    return 2 * task


def call_sys_exit(task: int) -> int:
    """``sys.exit(3)`` for BAD_TASK: raises SystemExit."""
    if task == BAD_TASK:
        sys.exit(3)
    return 2 * task


def call_os_exit(task: int) -> int:
    """``os._exit(3)`` for BAD_TASK: the worker process ends at once, with no cleanup."""
    if task == BAD_TASK:
        os._exit(3)
    return 2 * task


def hold_memory(task: int) -> int:
    """Allocates MEMORY_BYTES for BAD_TASK, writes every page, and holds it a few seconds."""
    if task == BAD_TASK:
        announce(task, "allocates")
        block = b"\x01" * MEMORY_BYTES  # filled, so resident (a zeroed buffer may not be)
        announce(task, "holds its memory")
        time.sleep(MEMORY_HOLD_SECONDS)
        return len(block)
    return 2 * task


def double(task: int) -> int:
    """The trivial task of the lazy cases."""
    return 2 * task
