"""One function mapped over tasks, serially or on a pool as ``mode`` decides: the one path
every pooled step takes, the pipeline's own and anyone's asset (through the pool resource)."""

import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from data_pipeline.parallel.cpus import effective_workers
from data_pipeline.parallel.decision import Decision, WorkSample
from data_pipeline.parallel.insight import insight_markdown, pool_insight, rounded
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.map_options import MapOptions, in_chunks, one_each
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.pool_decision import (
    forced_decision,
    learn_from_run,
    predicted_decision,
)
from data_pipeline.parallel.progress import LongTasks, Progress
from data_pipeline.parallel.sendable import check_sendable, import_paths_of
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.stats import PoolStats
from data_pipeline.parallel.threads.thread_pool import THREAD_START

logger = logging.getLogger(__name__)
Task = TypeVar("Task")
Result = TypeVar("Result")
# auto samples until the tasks after the first (which also pays first-call costs) took this.
SAMPLE_SECONDS = 0.01
# Where threads are among the choices (work that releases the GIL, backend local): a thread
# pool starts in under a millisecond, so a wrong guess costs little and a long serial sample
# costs much (10 ms of a 16 ms step that threads finish in 12 ms).
THREADS_SAMPLE_SECONDS = 0.002
# A first task this long is sample enough: sampling a second would run it serially too.
HEAVY_TASK_SECONDS = 0.1
# An iterable without a length is read this far ahead: if it ends there, its tasks are
# counted (for progress and auto's decision); if not, it is read lazily from then on.
READ_AHEAD_TASKS = 10_000
# seconds_per_unit() is over this many of the last tasks: recent enough to follow a change
# in cost, more than one so that one worker's first call does not decide alone.
COST_WINDOW_TASKS = 4


def map_tasks(
    settings: PoolSettings,
    function: Callable[[Task], Result],
    tasks: Iterable[Task],
    *,
    log: Any = logger,
    markdown: Callable[[str], Any] = str,
    **options: Any,
) -> "PoolRun[Task, Result]":
    """``function`` over ``tasks`` as ``settings.mode`` decides: iterate the run for the
    results, in input order.

    Args:
        settings: how to run the pool.
        function: a top-level function of an importable module.
        tasks: what to call it on, read lazily unless a sized collection.
        log: where progress, the decision and the workers' records and lines go.
        markdown: makes the workers table of :meth:`PoolRun.metadata`.
        **options: the fields of :class:`~.map_options.MapOptions`.
    """
    return PoolRun(settings, function, tasks, MapOptions(**options), log=log, markdown=markdown)


class PoolRun(Generic[Task, Result]):
    """``function(task)`` for every task, in input order, as ``settings.mode`` decides, with
    progress lines, the workers' log records and printed lines, failures naming the task,
    and the pool's insight afterwards; ``options`` (:class:`~.map_options.MapOptions`) name,
    size, count and send the tasks. Iterate it once; then :attr:`decision`, :attr:`stats`
    and :meth:`metadata` tell how it ran.

    With ``mode: auto`` the first tasks run in this process, timed (their results are used,
    not thrown away), until the ones after the first add up to ``SAMPLE_SECONDS`` (or the
    first alone takes ``HEAVY_TASK_SECONDS``); the rest go to a pool only if it is predicted
    to be faster (:mod:`.decision`). Give small tasks first and the sample costs next to
    nothing. While it runs, :meth:`seconds_per_unit` says what the last tasks cost, so that
    lazily read tasks can be cut to a size that takes about as long as wanted.
    """

    def __init__(
        self,
        settings: PoolSettings,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        options: MapOptions | None = None,
        *,
        log: Any = logger,
        markdown: Callable[[str], Any] = str,
    ):
        """A run to iterate once (:func:`map_tasks` builds one from keywords).

        Args:
            settings: how to run the pool.
            function: a top-level function of an importable module (checked now).
            tasks: what to call it on: a sized collection (counted, not copied), or any
                iterable, read lazily (the first :data:`READ_AHEAD_TASKS` at once, to know
                whether there are more).
            options: how to name, size, count and send the tasks (defaults if None).
            log: where progress, the decision and the workers' records and lines go.
            markdown: makes the workers table of :meth:`metadata`.
        """
        check_sendable(function)
        options = options or MapOptions()
        if options.task_timeout is not None and settings.backend != "local":
            # Threads cannot be stopped, nor a Dask task: a deadline needs local processes.
            settings = dataclasses.replace(settings, backend="local", scheduler_address=None)
        self.settings, self.options, self.log = settings, options, log
        self._markdown = markdown
        # What the workers must import: the function given, also when tasks go in chunks.
        self._sent_function = function
        # What the pool runs: the tasks as given, or lists of chunk_size of them.
        sent = options
        if options.chunk_size > 1:
            function, tasks, sent = in_chunks(function, tasks, options)
        self.function = function
        self.label, self.unit = options.label, options.unit
        self.progress_unit = options.progress_unit or options.unit
        self.preload_modules = options.preload_modules
        self.describe = sent.describe
        self.size_of = sent.size_of or one_each
        self.count_items = sent.count_items or one_each  # a result counts as one item
        total_tasks, total_size = sent.total_tasks, sent.total_size
        if total_tasks is None:
            tasks, total_tasks = _counted(tasks)
            if total_size is None and total_tasks is not None:
                total_size = sum(self.size_of(task) for task in tasks)
        self._tasks: Iterable[Task] | None = tasks
        # None: a long iterable of unknown length (at least READ_AHEAD_TASKS tasks).
        self.total_tasks: int | None = total_tasks
        self.total_size = total_size
        self.decision: Decision | None = None
        self.stats: PoolStats | None = None
        self.tasks_done = 0
        self.seconds = 0.0
        self._costs: deque[tuple[int, float]] = deque(maxlen=COST_WINDOW_TASKS)
        self._progress: Progress | None = None

    def seconds_per_unit(self) -> float | None:
        """What a unit of ``size_of`` cost in the last tasks that finished (time inside the
        task); None before any has."""
        units = sum(size for size, _ in self._costs)
        return sum(seconds for _, seconds in self._costs) / units if units else None

    def expect_tasks(self, total_tasks: int) -> None:
        """A new estimate of the tasks there are in all, for tasks planned as they are read
        (progress lines and ``auto``'s decision use it)."""
        self.total_tasks = total_tasks
        if self._progress is not None:
            self._progress.total_chunks = total_tasks

    def _note_cost(self, task: Any, seconds: float) -> None:
        self._costs.append((self.size_of(task), seconds))

    def __iter__(self) -> Iterator[Result]:
        if self.options.chunk_size > 1:
            for results in self._run():
                yield from results
        else:
            yield from self._run()

    def _run(self) -> Iterator[Any]:
        if self._tasks is None:
            raise RuntimeError("a PoolRun runs once: call map() again to run again")
        tasks, self._tasks = iter(self._tasks), None
        started = time.perf_counter()
        progress = Progress(self.log, self.label, self.total_tasks, self.progress_unit)
        self._progress = progress
        count = self.count_items
        first_task: list[Task] = []
        sampler: PoolStats | None = None
        deadline = self.options.task_timeout is not None
        self.decision = forced_decision(self.settings, self._known_tasks)
        if deadline:  # tasks must run where they can be stopped: never in this process
            workers = max(1, effective_workers(self.settings.workers, self._known_tasks))
            self.decision = Decision(
                "parallel",
                workers,
                f"parallel on {workers} worker process{'es' if workers > 1 else ''}: a task "
                f"deadline ({self.options.task_timeout:g} s) needs processes that can be stopped",
            )
        if self.decision is None:
            sampling = _Sampling(self, tasks, first_task)
            for result in sampling.results():
                progress.update(count(result))
                self.tasks_done += 1
                yield result
            self.decision, sampler = sampling.decision(), sampling.stats
            self.log.info(f"{self.label} {self.decision.reason}")
            if sampling.exhausted:  # the sample did it all
                self.stats = sampler
                self.seconds = time.perf_counter() - started
                return
        # However many tasks were announced, every task given runs.
        remaining = max(1, self._known_tasks - self.tasks_done)
        work_started = time.perf_counter()
        parallel = self.decision.workers > 1 or deadline
        if parallel and not first_task:  # its type's module is needed by the workers too
            first_task.extend(itertools.islice(tasks, 1))
            tasks = itertools.chain(first_task, tasks)
        with open_pool(
            self.settings,
            remaining,
            self.preload_modules,
            self.log,
            self.decision,
            import_paths_of(self._sent_function, *self._unchunked(first_task)) if parallel else (),
            reuse=True,
            in_process_when_one=not deadline,
        ) as pool:
            self.stats = pool.stats
            if sampler is not None and pool.workers == 1:
                self.stats.absorb(sampler)  # the same process ran both
            long_tasks = LongTasks(self.log, self.label, self.options.long_task_seconds)
            for result in pool.map(
                self.function,
                tasks,
                self.describe,
                self.count_items,
                on_finished=self._note_cost,
                long_tasks=long_tasks,
                **self._local_options(pool),
            ):
                progress.update(count(result))
                self.tasks_done += 1
                yield result
        if pool.workers > 1:
            self._say_what_each_worker_did(pool.stats)
        learn_from_run(
            self.settings,
            self.decision,
            self.unit,
            self.preload_modules,
            time.perf_counter() - work_started,
            self.log,
        )
        self.seconds = time.perf_counter() - started

    @property
    def _known_tasks(self) -> int:
        """The tasks there are, or at least are (a long iterable of unknown length)."""
        return READ_AHEAD_TASKS if self.total_tasks is None else self.total_tasks

    def _local_options(self, pool: Any) -> dict[str, Any]:
        """What only the local pool offers: deadlines, results as they finish, batches."""
        if not isinstance(pool, ProcessPool):
            return {}
        left = None if self.total_tasks is None else max(0, self.total_tasks - self.tasks_done)
        return {
            "task_timeout": self.options.task_timeout,
            "task_retries": self.options.task_retries,
            "ordered": self.options.ordered,
            "total_tasks": left,
            # Tasks the caller put in chunks go one chunk at a time.
            "batching": self.options.chunk_size == 1,
        }

    def _say_what_each_worker_did(self, stats: PoolStats) -> None:
        """One INFO line per worker once the pool is done: its share of the work."""
        worker = "thread tid" if stats.start_method == THREAD_START else "worker pid"
        for pid in sorted(stats.busy_seconds_by_worker):
            self.log.info(
                f"{self.label}: {worker} {pid} done: {stats.chunks_by_worker.get(pid, 0):,} "
                f"chunks, {stats.items_by_worker.get(pid, 0):,} {self.progress_unit}, busy "
                f"{stats.busy_seconds_by_worker[pid]:.2f} s"
            )

    def _unchunked(self, first_task: list) -> list:
        """The first task as given (not the chunk it travels in)."""
        if self.options.chunk_size > 1 and first_task and first_task[0]:
            return [first_task[0][0][1]]
        return first_task

    def metadata(
        self, seconds: float | None = None, markdown: Callable[[str], Any] | None = None
    ) -> dict[str, Any]:
        """Plain values for the asset's metadata: workers, chunks, the time breakdown, each
        worker's busy time and items, the decision and its numbers, and a Markdown table of
        the workers, made with ``markdown`` (floats rounded: the UI shows every digit).
        ``seconds``: the step's time, if more than the run's."""
        if self.stats is None or self.decision is None:
            raise RuntimeError("the run has not finished: iterate over it first")
        figures = {
            "workers": self.stats.workers,
            "start_method": self.stats.start_method,
            "chunks": self.tasks_done,
            "seconds": self.seconds if seconds is None else seconds,
            **pool_insight(self.stats),
            **self.decision.metadata(),
        }
        table = (markdown or self._markdown)(insight_markdown(self.stats))
        return {**rounded(figures), "workers_table": table}


def _counted(tasks: Iterable) -> tuple[Iterable, int | None]:
    """``tasks`` and how many there are: a sized collection as it is, an iterable read
    :data:`READ_AHEAD_TASKS` ahead (None: more than that, the rest read lazily)."""
    if hasattr(tasks, "__len__") and hasattr(tasks, "__iter__"):
        return tasks, len(tasks)
    iterator = iter(tasks)
    head = list(itertools.islice(iterator, READ_AHEAD_TASKS))
    if len(head) < READ_AHEAD_TASKS:
        return head, len(head)
    return itertools.chain(head, iterator), None


class _Sampling:
    """auto's first tasks, run in this process and timed, and the decision they lead to."""

    def __init__(self, run: PoolRun, tasks: Iterator, first_task: list):
        self.run, self.tasks, self.first_task = run, tasks, first_task
        self.sizes: list[int] = []
        self.enough = False
        self.exhausted = False  # every task there was ran in the sample
        self.stats: PoolStats | None = None
        # What the sample measured: plain numbers while it runs (this is per task, on inputs
        # whose whole work may be a millisecond), made a WorkSample only for the decision.
        self._items = 0
        self._seconds = self._owner_seconds = 0.0
        self._last: tuple[int, Any] | None = None  # the last task's items and result
        threads_weighed = run.options.releases_gil and run.settings.backend == "local"
        self._sample_seconds = THREADS_SAMPLE_SECONDS if threads_weighed else SAMPLE_SECONDS

    def _tasks_until_enough(self) -> Iterator:
        for task in self.tasks:
            if not self.first_task:
                self.first_task.append(task)
            self.sizes.append(self.run.size_of(task))
            yield task
            if self.enough:
                return
        self.exhausted = True

    def results(self) -> Iterator:
        run = self.run
        pool = ProcessPool(1, log=run.log, worker_log_level=run.settings.worker_log_level)
        self.stats = pool.stats
        results = pool.map(
            run.function,
            self._tasks_until_enough(),
            run.describe,
            run.count_items,
            on_finished=run._note_cost,
        )
        clock = time.perf_counter
        while True:
            started = clock()
            try:
                result = next(results)
            except StopIteration:
                return
            handed_over = clock()
            yield result
            owner_seconds = clock() - handed_over
            if len(self.sizes) == 2:  # the first (first-call costs and all) is left out now
                self._items = self._seconds = self._owner_seconds = 0
            self._items += self.sizes[-1]
            self._seconds += handed_over - started
            self._owner_seconds += owner_seconds
            self._last = (self.sizes[-1], result)
            limit = HEAVY_TASK_SECONDS if len(self.sizes) == 1 else self._sample_seconds
            self.enough = self._seconds >= limit

    def _sample(self) -> WorkSample | None:
        if self._last is None:
            return None
        last_items, last_result = self._last
        return WorkSample(
            self._items,
            self._seconds,
            owner_seconds=self._owner_seconds,
            result=last_result,
            result_items=last_items,
        )

    def decision(self) -> Decision:
        run = self.run
        done = len(self.sizes)
        sample = self._sample()
        if self.exhausted or sample is None:
            return Decision("auto", 1, f"serial: all {done:,} tasks ran while sampling")
        remaining = max(1, run._known_tasks - done)
        size_done = sum(self.sizes)
        if run.total_size is not None:
            size_left = max(0, run.total_size - size_done)
        else:
            size_left = remaining * size_done // done
        return predicted_decision(
            run.settings,
            size_left,
            remaining,
            run.unit,
            sample,
            run.preload_modules,
            run.log,
            run.options.releases_gil,
        )
