"""How one map of a function over tasks names, sizes, counts and sends its tasks
(:class:`MapOptions`), and the same map with its tasks sent in chunks."""

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# A task running this long gets a log line (and another every as long) until it ends.
LONG_TASK_SECONDS = 10.0


def one_each(_: Any) -> int:
    """A task's size, or a result's items, when nothing else is said: one."""
    return 1


@dataclass(frozen=True)
class MapOptions:
    """How a :class:`~.pool_run.PoolRun` names, sizes, counts and sends its tasks.

    Attributes:
        label: starts the run's log lines (progress, decision, long tasks).
        unit: what ``size_of`` counts, in the decision's reason.
        progress_unit: what ``count_items`` counts, in progress lines (``unit`` if None).
        describe: names a task in errors (by its type if None).
        size_of: a task's work in ``unit``, for ``auto`` (1 each if None).
        count_items: a result's items, for progress and insight (1 each if None).
        total_size: the work of all tasks (spares reading ``tasks`` ahead).
        total_tasks: how many tasks there are (else ``tasks`` is read into a list first).
        preload_modules: modules the workers import before their first task.
        chunk_size: tasks sent to a worker together (for tasks of well under 10 ms each).
        long_task_seconds: a task running this long is named in an INFO line every as long.
        releases_gil: the function spends its time in code that releases the GIL (numba
            ``nogil``, numpy, Arrow compute): with ``mode: auto`` on backend ``local``, threads
            of this process are weighed beside processes.
        task_timeout: seconds a task may run in a worker process: past it, its worker is
            stopped (the others go on) and the task is retried on a fresh one
            ``task_retries`` times, then fails the map naming it. Tasks then always run in
            worker processes (a deadline needs a process to stop), never in this one.
        task_retries: see ``task_timeout``.
        ordered: False hands results on as they finish, not in input order.
    """

    label: str = "tasks"
    unit: str = "tasks"
    progress_unit: str | None = None
    describe: Callable[[Any], str] | None = None
    size_of: Callable[[Any], int] | None = None
    count_items: Callable[[Any], int] | None = None
    total_size: int | None = None
    total_tasks: int | None = None
    preload_modules: Iterable[str] = ()
    chunk_size: int = 1
    long_task_seconds: float = LONG_TASK_SECONDS
    releases_gil: bool = False
    task_timeout: float | None = None
    task_retries: int = 0
    ordered: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size={self.chunk_size!r} must be at least 1")
        if self.task_timeout is not None and not self.task_timeout > 0:
            raise ValueError(f"task_timeout={self.task_timeout!r} must be a number of seconds > 0")
        if self.task_retries < 0:
            raise ValueError(f"task_retries={self.task_retries!r} must be 0 or more")
        object.__setattr__(self, "preload_modules", tuple(self.preload_modules))


def in_chunks(
    function: Callable, tasks: Iterable, options: MapOptions
) -> tuple[Callable, Iterator[list], MapOptions]:
    """The map as the pool runs it when ``options.chunk_size`` > 1: a function over lists
    of that many (index, task) pairs, the lists, and what names, sizes and counts them."""
    chunk_size, describe = options.chunk_size, options.describe
    size_of = options.size_of or one_each
    count_items = options.count_items or one_each
    numbered = enumerate(tasks)

    def chunks() -> Iterator[list]:
        while chunk := list(itertools.islice(numbered, chunk_size)):
            yield chunk

    def describe_chunk(chunk: list) -> str:
        first, last = chunk[0][0], chunk[-1][0]
        named = f" (the first: {describe(chunk[0][1])})" if describe else ""
        return f"tasks {first}-{last}{named}"

    def chunk_size_of(chunk: list) -> int:
        return sum(size_of(task) for _, task in chunk)

    def chunk_items(results: list) -> int:
        return sum(count_items(result) for result in results)

    total = options.total_tasks
    chunked = dataclasses.replace(
        options,
        describe=describe_chunk,
        size_of=chunk_size_of,
        count_items=chunk_items,
        total_tasks=None if total is None else -(-total // chunk_size),
        chunk_size=1,
    )
    return functools.partial(_each, function), chunks(), chunked


def _each(function: Callable, chunk: list) -> list:
    """What a worker runs for a chunk of tasks: the function on each, in order."""
    return [function(task) for _, task in chunk]
