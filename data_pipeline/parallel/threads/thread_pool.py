"""A pool of threads in this process for tasks that release the GIL (numba ``nogil``, numpy,
Arrow compute): the process pool's interface, without process start, pickling or page faults."""

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Any, TypeVar

from data_pipeline.parallel.errors import ChunkFailedError, failure_message, task_name
from data_pipeline.parallel.pool_life import PoolLife
from data_pipeline.parallel.progress import LongTasks
from data_pipeline.parallel.stats import PoolStats, Timing, timed_call
from data_pipeline.parallel.threads.thread_records import PoolThreadRecords

logger = logging.getLogger(__name__)
Task = TypeVar("Task")
Result = TypeVar("Result")
# The pool's stats and insight call its way of starting workers this.
THREAD_START = "thread"
# How long the pool waits for every thread to start before it gives up on the start.
_START_TIMEOUT_SECONDS = 30.0


class ThreadPool(PoolLife):
    """A pool of ``workers`` threads of this process, used as a context manager.

    Only work that releases the GIL runs at once on several threads; Python code that holds
    it (the ``python`` kernel, most of anyone's functions) runs one thread at a time, so the
    callers keep processes for it (see :mod:`data_pipeline.parallel.pool`). Threads cannot be
    killed: leaving the ``with`` block by an exception or an interrupt cancels the tasks not
    yet started and waits for the running ones to finish (a compiled chunk takes well under a
    second). Task failures are raised as :class:`ChunkFailedError` naming the task, with its
    traceback; no thread outlives the block.
    """

    def __init__(
        self,
        workers: int,
        log: logging.Logger | logging.LoggerAdapter | Any = logger,
        worker_log_level: int = logging.INFO,
    ):
        """A pool to use in a ``with`` block.

        Args:
            workers: threads to start (at least 1).
            log: where the threads' records and printed lines go, tagged with the thread.
            worker_log_level: the level from which the threads' records are forwarded.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.log = log
        self.worker_log_level = worker_log_level
        self.stats = PoolStats(workers=workers, start_method=THREAD_START)
        # The native thread ids (as the stats key workers) of the pool's threads.
        self.worker_pids: set[int] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._records: PoolThreadRecords | None = None
        self._count_items: Callable[[Any], int] | None = None
        self._on_finished: Callable[[Any, float], None] | None = None
        # Task index -> when a thread started it (written by the threads, read by the owner).
        self._running_since: dict[int, float] = {}

    def _open(self) -> None:
        self._records = PoolThreadRecords(self.log, self.worker_log_level).__enter__()
        self._executor = ThreadPoolExecutor(
            self.workers, thread_name_prefix="pool-thread", initializer=self._records.register
        )
        # Start every thread now (the executor starts one per task while none is idle): the
        # start is counted as start-up, and a thread that gets no chunk still counts.
        barrier = threading.Barrier(self.workers, timeout=_START_TIMEOUT_SECONDS)
        for future in [self._executor.submit(_started, barrier) for _ in range(self.workers)]:
            self.worker_pids.add(future.result())
        for thread in self.worker_pids:
            self.stats.busy_seconds_by_worker.setdefault(thread, 0.0)

    def _close(self, abort: bool) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            if abort and self._running_since:
                self.log.warning(
                    f"the thread pool waits for its {len(self._running_since)} running chunks "
                    "to finish (threads cannot be stopped); the queued ones are cancelled"
                )
            executor.shutdown(wait=True, cancel_futures=abort)
        records, self._records = self._records, None
        if records is not None:
            records.__exit__(None, None, None)

    def map(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        describe: Callable[[Task], str] | None = None,
        count_items: Callable[[Result], int] | None = None,
        on_finished: Callable[[Task, float], None] | None = None,
        long_tasks: LongTasks | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(task)`` for every task, in the order of ``tasks``.

        At most two tasks per thread are in flight, so memory stays bounded. A task that
        raises ends the map with :class:`ChunkFailedError` naming ``describe(task)``.

        Args:
            function: any callable (nothing is pickled); it gains only if it releases the GIL.
            tasks: read lazily, as threads become free.
            describe: names a task in errors (its position and repr if None).
            count_items: how many items a result holds, for per-thread insight.
            on_finished: hears ``(task, seconds)`` for each task before its result is
                yielded (so ``tasks``, read lazily, can be cut by what earlier ones cost).
            long_tasks: hears, while this thread waits for a result, which tasks run and
                since when.
        """
        if self._executor is None:
            raise RuntimeError("use the pool inside a 'with' block")
        self._count_items, self._on_finished = count_items, on_finished
        started = time.monotonic()
        try:
            yield from self._map_in_threads(function, tasks, describe, long_tasks)
        finally:
            self.stats.map_seconds += time.monotonic() - started

    def _map_in_threads(self, function, tasks, describe, long_tasks) -> Iterator:
        numbered_tasks = enumerate(tasks)
        in_flight: deque[tuple[int, Any, Future]] = deque()

        def submit(index: int, task: Any) -> None:
            in_flight.append((index, task, self._executor.submit(self._run, function, task, index)))

        for index, task in islice(numbered_tasks, 2 * self.workers):
            submit(index, task)
        while in_flight:
            index, task, future = in_flight[0]
            if long_tasks is not None:
                self._wait_watching(future, in_flight, describe, long_tasks)
            try:
                result, timing = future.result()
            except Exception as error:
                raise ChunkFailedError(_failure(task_name(index, task, describe), error)) from error
            in_flight.popleft()
            yield from self._collect(result, timing, task)
            for next_index, next_task in islice(numbered_tasks, 1):
                submit(next_index, next_task)

    def _run(self, function: Callable, task: Any, index: int) -> tuple[Any, Timing]:
        """In a pool thread: the timed call, keyed by the thread's native id, not the pid."""
        self._running_since[index] = time.monotonic()
        try:
            result, (_, started, finished, cpu_seconds) = timed_call(function, task)
        finally:
            self._running_since.pop(index, None)
        return result, (threading.get_native_id(), started, finished, cpu_seconds)

    def _wait_watching(
        self, future: Future, in_flight: deque, describe: Callable, long_tasks: LongTasks
    ) -> None:
        """Wait until ``future`` is done, telling ``long_tasks`` what runs meanwhile."""
        while not future.done():
            since = dict(self._running_since)
            long_tasks.check(
                [
                    (task_name(index, task, describe), since[index])
                    for index, task, _ in in_flight
                    if index in since
                ]
            )
            wait([future], timeout=long_tasks.poll_seconds, return_when=FIRST_COMPLETED)

    def _collect(self, result: Any, timing: Timing, task: Any) -> Iterator:
        _, started, finished, _ = timing
        items = None if self._count_items is None else self._count_items(result)
        self.stats.record(timing, items)
        if self._on_finished is not None:
            self._on_finished(task, finished - started)
        handed_over = time.monotonic()
        yield result
        self.stats.collect_seconds += time.monotonic() - handed_over


def _started(barrier: threading.Barrier) -> int:
    """Run by each thread once: wait until all have started (so each gets one); its id."""
    barrier.wait()
    return threading.get_native_id()


def _failure(description: str, error: BaseException) -> str:
    """What a task that raised is reported with: the error and the thread's traceback."""
    lines = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    message = failure_message(description, error, "in a pool thread")
    return f"{message}\n\nTraceback from the pool thread:\n{lines}"
