"""A team's own functions for the pool, in a module of their own (no Dagster, not the
project's transform): tasks that hang, exit, leak, hold memory or return what cannot
travel."""

import os
import sys
import threading
import time


def hang_on(task: tuple[int, int]) -> int:
    """Return the value, except ``hang_value``, which never returns."""
    value, hang_value = task
    while value == hang_value:
        time.sleep(1)
    return value


def hang_once(task: tuple[int, str]) -> tuple[int, int]:
    """Hang the first time task 2 runs (marked by creating ``marker``); return the value and
    the worker's pid."""
    value, marker = task
    if value == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(3600)
    return value, os.getpid()


class NeedsCodeAndDetail(Exception):
    """An exception pickle cannot rebuild: it passes one argument up, takes two."""

    def __init__(self, code: int, detail: str):
        super().__init__(f"code {code}: {detail}")


def raise_odd_on(value: int) -> int:
    if value == 13:
        raise NeedsCodeAndDetail(7, "the thirteenth")
    return value


def lock_on(value: int) -> object:
    """A lock (which does not pickle) for 13, the value otherwise."""
    return threading.Lock() if value == 13 else value


def exit_on(value: int) -> int:
    if value == 13:
        sys.exit(3)
    return value


def hard_exit_on(value: int) -> int:
    if value == 13:
        os._exit(3)
    return value


def own_pid(_: int) -> int:
    return os.getpid()


def hold_memory(megabytes: int) -> int:
    """Hold ``megabytes`` of touched memory for two seconds."""
    block = bytearray(megabytes * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    time.sleep(2)
    return len(block)


def slow_square(value: int) -> int:
    time.sleep(0.001 * (value % 7))
    return value * value


def kilobytes(count: int) -> bytes:
    return bytes(count * 1024)


def square(value: int) -> int:
    return value * value


def allocate_briefly(megabytes: int) -> int:
    """Touch ``megabytes`` of memory, free it, return the pid (a peak the worker keeps)."""
    block = bytearray(megabytes * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    del block
    return os.getpid()
