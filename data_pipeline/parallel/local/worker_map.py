"""One map over a pool's worker processes: tasks sent in batches sized by what they cost,
results in input order (or as they come), a deadline per task, retries on fresh workers, and
every failure named by its task."""

import logging
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from data_pipeline.parallel.errors import (
    ChunkFailedError,
    OutOfMemoryError,
    TaskTimeoutError,
    WorkerDiedError,
    task_name,
)
from data_pipeline.parallel.local.worker import FAILED, READY, RESULTS, receive_reply
from data_pipeline.parallel.local.worker_processes import (
    Worker,
    WorkerSet,
    available_memory_bytes,
    exit_reason,
)
from data_pipeline.parallel.progress import LongTasks
from data_pipeline.parallel.stats import PoolStats

logger = logging.getLogger(__name__)
# Batches sent to a worker before its first is answered: it never waits for the next one.
BATCHES_PER_WORKER = 2
# Batches sent or answered and not yet handed on, per worker (bounds memory for any input).
WINDOW_PER_WORKER = 4
# Tasks go in batches that take about this long: long enough that sending costs little
# (about 0.1 ms a batch), short enough that the last batches balance the workers.
TARGET_BATCH_SECONDS = 0.05
# A batch grows at most this much at a time (the first tasks may not show the cost), and to
# at most this many tasks (which bounds what is read ahead of the results).
MAX_BATCH_GROWTH = 8
MAX_BATCH_TASKS = 2_000
# Workers (per worker of the pool) that may exit before running any task, replaced each
# time, before the map gives up on starting them.
IDLE_DEATHS_ALLOWED = 3
# While a deadline, a memory limit or long tasks are watched, the owner looks this often.
WATCH_SECONDS = 0.1

_DEATH_CAUSES = (
    "Likely causes: the out-of-memory killer or another signal, os._exit or a crash in native "
    "code inside the task, or a worker that cannot import the task's module (is the package "
    "installed? run `pip install -e .`)."
)


@dataclass(frozen=True)
class MapLimits:
    """What one map allows its tasks and workers (None: no limit)."""

    task_timeout: float | None = None
    task_retries: int = 0
    # A worker killed while running a task: the task is tried again this many times.
    retries_on_worker_death: int = 0
    max_tasks_per_worker: int | None = None
    memory_limit_bytes: int | None = None


class BatchSizes:
    """Tasks per batch: one at first, then as many as take :data:`TARGET_BATCH_SECONDS` by
    what the last batch's tasks took, and never so many that some workers would sit idle
    while the last batches run."""

    def __init__(self, workers: int, batching: bool):
        self.workers, self.batching, self.size = workers, batching, 1

    def next(self, tasks_left: int | None) -> int:
        if not self.batching:
            return 1
        if tasks_left is None:
            return self.size
        return max(1, min(self.size, tasks_left // (WINDOW_PER_WORKER * self.workers)))

    def learn(self, tasks: int, seconds: float) -> None:
        if not self.batching or tasks <= 0:
            return
        per_task = max(seconds / tasks, 1e-7)
        ideal = max(1, int(TARGET_BATCH_SECONDS / per_task))
        self.size = min(ideal, self.size * MAX_BATCH_GROWTH, MAX_BATCH_TASKS)


class WorkerMap:
    """``function(task)`` for every task on ``workers``; iterate for the results."""

    def __init__(
        self,
        workers: WorkerSet,
        function: Callable[[Any], Any],
        tasks: Iterable[Any],
        stats: PoolStats,
        *,
        describe: Callable[[Any], str] | None = None,
        count_items: Callable[[Any], int] | None = None,
        on_finished: Callable[[Any, float], None] | None = None,
        long_tasks: LongTasks | None = None,
        limits: MapLimits = MapLimits(),
        ordered: bool = True,
        total_tasks: int | None = None,
        batching: bool = True,
    ):
        self.set, self.function, self.stats = workers, function, stats
        self._source = enumerate(tasks)
        self._describe, self._count_items, self._on_finished = describe, count_items, on_finished
        self._long_tasks, self.limits, self.ordered = long_tasks, limits, ordered
        self._total_tasks = total_tasks
        self._sizes = BatchSizes(workers.workers, batching)
        self._again: deque[tuple[int, Any]] = deque()  # run these first (index order)
        self._idle_deaths = 0
        # A task to retry, for the fresh worker started in place of the one it stopped.
        self._for_fresh: dict[Worker, tuple[int, Any]] = {}
        self._exhausted = False
        self._taken = 0
        self._next_index = 0  # ordered: the next result to hand on
        self._done: dict[int, list] = {}  # first index of an answered batch -> its results
        self._answered: deque[list] = deque()  # unordered: results to hand on
        self._timeouts: dict[int, int] = {}
        self._deaths: dict[int, int] = {}
        self._last_watch = 0.0
        # Workers that have answered a batch: once all have, their memory is known.
        self._answered_by: set[int] | None = set()

    def name(self, index: int, task: Any) -> str:
        return task_name(index, task, self._describe)

    def __iter__(self) -> Iterator[Any]:
        while True:
            self._dispatch()
            yield from self._hand_on()
            if self._finished():
                return
            for worker in self.set.ready_to_read(self._wait_seconds()):
                self._read(worker)
            self._watch()

    # Sending -------------------------------------------------------------------------------

    def _outstanding(self) -> int:
        sent = sum(len(worker.batches) for worker in self.set.live)
        return sent + len(self._done) + len(self._answered)

    def _finished(self) -> bool:
        return (
            self._exhausted
            and not self._again
            and not self._for_fresh
            and not any(worker.batches for worker in self.set.live)
            and not self._done
            and not self._answered
        )

    def _take(self, size: int) -> list[tuple[int, Any]]:
        """The next batch: a task to run again alone, else up to ``size`` new ones."""
        if self._again:
            return [self._again.popleft()]
        if self._exhausted:
            return []
        batch = list(islice(self._source, size))
        self._taken += len(batch)
        if len(batch) < size:
            self._exhausted = True
        return batch

    def _dispatch(self) -> None:
        """Send batches round the workers, one at a time to the one with the fewest, until
        each has :data:`BATCHES_PER_WORKER` or the window is full."""
        window = WINDOW_PER_WORKER * self.set.workers
        limit = self.limits.max_tasks_per_worker
        while True:
            open_workers = [
                worker
                for worker in self.set.live
                if not worker.retiring and len(worker.batches) < BATCHES_PER_WORKER
            ]
            # Tasks to run again go out whatever the window: results wait for them.
            if not open_workers:
                return
            fresh = [worker for worker in open_workers if worker in self._for_fresh]
            if fresh:  # a retry goes to the worker started for it, before anything else
                worker = fresh[0]
                self._send(worker, [self._for_fresh.pop(worker)])
                continue
            if not (self._again or self._outstanding() < window):
                return
            worker = min(open_workers, key=lambda worker: len(worker.batches))
            left = None if self._total_tasks is None else self._total_tasks - self._taken
            size = self._sizes.next(left)
            if limit is not None:
                size = max(1, min(size, limit - worker.tasks_sent))
            batch = self._take(size)
            if not batch:
                return
            self._send(worker, batch)
            if limit is not None and worker.tasks_sent >= limit:
                self.set.retire(worker)  # recycled once its batches are done
                self.set.replace()

    def _send(self, worker: Worker, batch: list[tuple[int, Any]]) -> None:
        try:
            self.set.send(worker, batch[0][0], self.function, batch)
        except Exception as error:
            index, task, culprit = _unpicklable_task(batch, error)
            raise ChunkFailedError(
                f"{self.name(index, task)} cannot be sent to a pool worker: it does not pickle "
                f"({type(culprit).__name__}: {culprit})"
            ) from error

    # Receiving -----------------------------------------------------------------------------

    def _wait_seconds(self) -> float | None:
        watching = (
            self.limits.task_timeout is not None
            or self.limits.memory_limit_bytes is not None
            or self._long_tasks is not None
        )
        if not watching:
            return None
        seconds = WATCH_SECONDS
        if self._long_tasks is not None:
            seconds = min(seconds, self._long_tasks.poll_seconds)
        return seconds

    def _read(self, worker: Worker) -> None:
        if not worker.results_in.poll(0):
            self._died(worker)  # its sentinel says it exited, and its pipe holds nothing
            return
        try:
            kind, payload = receive_reply(worker.results_in)
        except (EOFError, OSError):
            self._died(worker)
            return
        if kind == READY:
            worker.ready = True
        elif kind == RESULTS:
            self._collect(worker, *payload)
        elif kind == FAILED:
            self._failed(worker, *payload)

    def _collect(self, worker: Worker, first: int, results: list, seconds: list, timing) -> None:
        batch = worker.batches.pop(first)
        if self._answered_by is not None:
            self._answered_by.add(worker.pid)
            if len(self._answered_by) >= len(self.set.live):
                self._answered_by = None
                self._fit_in_memory()
        count = self._count_items
        items = None if count is None else sum(count(result) for result in results)
        self.stats.record(timing, items, tasks=len(results))
        self._sizes.learn(len(results), sum(seconds))
        if self._on_finished is not None:
            for (_, task), task_seconds in zip(batch, seconds, strict=True):
                self._on_finished(task, task_seconds)
        if self.ordered:
            self._done[first] = results
        else:
            self._answered.append(results)

    def _hand_on(self) -> Iterator[Any]:
        while self._answered:
            yield from self._hand_over(self._answered.popleft())
        while self._next_index in self._done:
            results = self._done.pop(self._next_index)
            self._next_index += len(results)
            yield from self._hand_over(results)

    def _hand_over(self, results: list) -> Iterator[Any]:
        for result in results:
            handed_over = time.monotonic()
            yield result
            self.stats.collect_seconds += time.monotonic() - handed_over

    def _batch_of(self, worker: Worker, index: int) -> tuple[int, Any]:
        """The (index, task) pair ``index`` names among ``worker``'s batches (-1: the first
        task of its oldest batch)."""
        for batch in worker.batches.values():
            for pair in batch:
                if index in (-1, pair[0]):
                    return pair
        return index, None

    def _failed(self, worker: Worker, index: int, how: str, text: str, trace: str, pickled):
        index, task = self._batch_of(worker, index)
        name = self.name(index, task)
        cause = None
        if pickled is not None:
            try:
                cause = pickle.loads(pickled)
            except Exception:
                cause = None
        if how == "exit":
            message = (
                f"{name} called sys.exit({text}) in a pool worker: a task must return a result "
                "or raise an exception (sys.exit would end the worker; it was caught)"
            )
        elif how == "result":
            message = (
                f"{name} returned a result that cannot be sent back from the pool worker: it "
                f"does not pickle ({text})"
            )
        elif how == "unreadable":
            message = (
                f"{name} could not be read by a pool worker: {text}. Can the worker import the "
                f"task's function and types (is the package installed?)\nWorker traceback:\n{trace}"
            )
        else:
            message = f"{name} failed in a pool worker: {text}\nWorker traceback:\n{trace}"
            if pickled is None:
                message += (
                    "(the exception itself could not travel back: it does not pickle or "
                    "cannot be rebuilt from its pickle, so it is reported as text)"
                )
        raise ChunkFailedError(message.rstrip("\n")) from cause

    # Deaths, deadlines and memory ------------------------------------------------------------

    def _fit_in_memory(self) -> None:
        """Once every worker has run a batch: if the workers at the most any of them has
        held would not fit in this machine's memory, retire some (never the last)."""
        live = [worker for worker in self.set.live if not worker.retiring]
        peaks = [worker.peak_memory_bytes() for worker in live]
        now = [worker.memory_bytes() for worker in live]
        available = available_memory_bytes()
        if available is None or None in peaks or None in now or len(live) < 2:
            return
        fit = max(1, int((available + sum(now)) // max(peaks)))
        if fit >= len(live):
            return
        for worker in live[fit:]:
            self.set.retire(worker)
        self.set.workers = fit
        self.set.log.warning(
            f"pool: each worker held up to {max(peaks) / 2**20:,.0f} MiB in its first tasks and "
            f"{available / 2**20:,.0f} MiB more are available: {fit} of the {len(live)} "
            "workers fit, so the others finish their batches and stop"
        )

    def _died(self, worker: Worker) -> None:
        running = worker.running()
        self.set.forget(worker)
        exitcode = worker.process.exitcode
        if worker.retiring and not worker.batches and exitcode == 0:
            return  # recycled after its tasks, as asked: its replacement is running
        fresh = self.set.replace()
        orphan = self._for_fresh.pop(worker, None)
        if orphan is not None:  # it died before its retry reached it: the next one takes it
            self._for_fresh[fresh] = orphan
        if running is None and not worker.batches:
            self._idle_deaths += 1
            if self._idle_deaths > IDLE_DEATHS_ALLOWED * self.set.workers:
                raise WorkerDiedError(
                    f"pool workers keep exiting before they run a task (the last: {worker.name} "
                    f"{exit_reason(exitcode)}). {_DEATH_CAUSES}"
                )
            self.set.log.warning(f"pool {worker.name} {exit_reason(exitcode)} between tasks")
            return
        index = running[0] if running is not None else -1
        index, task = self._batch_of(worker, index)
        name = self.name(index, task)
        self._requeue(worker, index)
        tries = self._deaths[index] = self._deaths.get(index, 0) + 1
        death = f"pool worker {worker.pid} {exit_reason(exitcode)} while running {name}."
        if exitcode is not None and exitcode > 0:
            death += f" A task that calls os._exit({exitcode}) ends its worker this way."
        else:
            death += f" {_DEATH_CAUSES}"
        if tries > self.limits.retries_on_worker_death:
            retried = f" (tried {tries} times)" if tries > 1 else ""
            raise WorkerDiedError(death.replace(f"{name}.", f"{name}{retried}.", 1))
        self.set.log.warning(
            f"{death} Retrying it on a fresh worker ({tries} of "
            f"{self.limits.retries_on_worker_death}); the other tasks go on."
        )
        self._for_fresh[fresh] = (index, task)

    def _requeue(self, worker: Worker, culprit: int) -> None:
        """A worker is gone: its batches' tasks (but ``culprit``) are run again, one by one,
        before any new ones."""
        pairs = sorted(
            (pair for batch in worker.batches.values() for pair in batch if pair[0] != culprit),
            key=lambda pair: pair[0],
        )
        worker.batches.clear()
        self._again.extendleft(reversed(pairs))

    def _watch(self) -> None:
        if self._wait_seconds() is None:
            return
        now = time.monotonic()
        if now - self._last_watch < WATCH_SECONDS / 2:
            return
        self._last_watch = now
        running: list[tuple[str, float]] = []
        for worker in list(self.set.live):
            task = worker.running()
            if task is None:
                continue
            index, since = task
            if self.limits.task_timeout is not None and now - since > self.limits.task_timeout:
                self._timed_out(worker, index)
                continue
            limit = self.limits.memory_limit_bytes
            if limit is not None:
                used = worker.memory_bytes()
                if used is not None and used > limit:
                    self._out_of_memory(worker, index, used)
            if self._long_tasks is not None:
                running.append((self.name(*self._batch_of(worker, index)), since))
        if self._long_tasks is not None:
            self._long_tasks.check(running)

    def _timed_out(self, worker: Worker, index: int) -> None:
        index, task = self._batch_of(worker, index)
        name = self.name(index, task)
        self.set.kill(worker)
        fresh = self.set.replace()
        self._requeue(worker, index)
        timeout, allowed = self.limits.task_timeout, self.limits.task_retries
        tries = self._timeouts[index] = self._timeouts.get(index, 0) + 1
        late = (
            f"{name} ran past its deadline of {timeout:g} s (task_timeout) in pool worker "
            f"{worker.pid}, which was stopped"
        )
        if tries > allowed:
            retried = f" (tried {tries} times)" if tries > 1 else ""
            raise TaskTimeoutError(
                f"{late}{retried}. Give it more time (task_timeout), or find out why it hangs; "
                "the other workers were not stopped."
            )
        self.set.log.warning(f"{late}; retrying it on a fresh worker ({tries} of {allowed})")
        self._for_fresh[fresh] = (index, task)

    def _out_of_memory(self, worker: Worker, index: int, used: int) -> None:
        index, task = self._batch_of(worker, index)
        self.set.kill(worker)
        limit = self.limits.memory_limit_bytes
        raise OutOfMemoryError(
            f"{self.name(index, task)} ran out of memory in pool worker {worker.pid}: it used "
            f"{used / 2**20:,.0f} MiB, over the limit of {limit / 2**20:,.0f} MiB per worker "
            "(worker_memory_limit_mb), and the worker was stopped. Give tasks less to hold at "
            "once, or raise the limit."
        )


def _unpicklable_task(batch: list, error: Exception) -> tuple[int, Any, BaseException]:
    """Which task of a batch does not pickle, and why."""
    for index, task in batch:
        try:
            pickle.dumps(task, protocol=5)
        except Exception as culprit:
            return index, task, culprit
    return batch[0][0], batch[0][1], error
