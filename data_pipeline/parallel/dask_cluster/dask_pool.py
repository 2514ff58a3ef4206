"""The pool's second backend: the same tasks and worker functions as futures on a
``dask.distributed`` cluster, with the local pool's interface (no Dagster here)."""

import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from data_pipeline.parallel.child_processes import main_module_hidden, native_threads_capped
from data_pipeline.parallel.dask_cluster.distributed_module import import_distributed
from data_pipeline.parallel.dask_cluster.log_lines import ForwardedLines
from data_pipeline.parallel.errors import (
    ChunkFailedError,
    WorkerDiedError,
    describe_by_type,
    failure_message,
    task_name,
)
from data_pipeline.parallel.pool_life import PoolLife
from data_pipeline.parallel.stats import PoolStats, Timing

logger = logging.getLogger(__name__)
# Connecting to a scheduler, and the workers of a new local cluster joining it.
CONNECT_TIMEOUT_SECONDS = 60
CLOSE_TIMEOUT_SECONDS = 20
# Local clusters started in this process: the first pays for importing distributed.
_local_clusters_started = 0


def local_clusters_started() -> int:
    """Local clusters this process has started (after the first, they start warm)."""
    return _local_clusters_started


class DaskPool(PoolLife):
    """Tasks as futures on a Dask cluster, used as a context manager like
    :class:`~data_pipeline.parallel.local.process_pool.ProcessPool` (``distributed`` is
    imported only when it starts), for when one machine's cores are not enough.

    With ``scheduler_address`` it connects to a running cluster; without one it starts a
    ``LocalCluster`` on 127.0.0.1 (``workers`` processes of one thread each) for the pool's
    life. Tasks are coarse: one future per chunk, at most two per worker thread in flight,
    results in input order. Dask reruns the tasks of a worker that died
    (``restarts_on_worker_death`` times on a local cluster; a remote scheduler's
    ``allowed-failures`` otherwise), and the log says so. Leaving the block closes the client
    and any local cluster it started (its worker processes with it), also on an error or an
    interrupt; futures still running on a remote cluster are cancelled."""

    def __init__(
        self,
        workers: int,
        scheduler_address: str | None = None,
        preload_modules: Iterable[str] = (),
        restarts_on_worker_death: int = 0,
        log: Any = logger,
        worker_log_level: int = logging.INFO,
        import_paths: Iterable[str] = (),
    ):
        """A pool to use in a ``with`` block.

        Args:
            workers: worker processes of a local cluster (a remote one has its own).
            scheduler_address: a running cluster's scheduler; None starts a local cluster.
            preload_modules: modules every worker imports when it joins.
            restarts_on_worker_death: deaths a chunk survives on a local cluster.
            log: where warnings and the workers' records and printed lines go.
            worker_log_level: the level from which the workers' records are forwarded.
            import_paths: directories workers put on ``sys.path``.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.scheduler_address = scheduler_address
        self.preload_modules = tuple(preload_modules)
        self.restarts_on_worker_death = restarts_on_worker_death
        self.log = log
        self.worker_log_level = worker_log_level
        self.import_paths = tuple(import_paths)
        self.stats = PoolStats(workers=workers, start_method="dask")
        self.worker_pids: set[int] = set()
        self._client: Any = None
        self._cluster: Any = None
        self._distributed: Any = None
        # Keys of this pool's tasks start with this, so events name our chunks only.
        self._prefix = f"data-pipeline-{uuid.uuid4().hex[:12]}"
        self._topic = f"{self._prefix}-logs"
        self._plugin_name = f"{self._prefix}-preparation"
        # key -> (task, how to name it), while in flight
        self._running: dict[str, tuple[Any, Callable[[Any], str]]] = {}
        self._pid_by_address: dict[str, int] = {}
        self._maps = 0
        self._threads = workers
        self._lines = ForwardedLines(log)

    @property
    def where(self) -> str:
        """The cluster in words, for log lines."""
        if self.scheduler_address:
            return f"the Dask cluster at {self.scheduler_address}"
        return "a Dask LocalCluster on 127.0.0.1"

    def cluster_addresses(self) -> list[str]:
        """Every address the cluster listens on: its scheduler, workers and their nannies."""
        if self._client is None:
            raise RuntimeError("use the pool inside a 'with' block")
        workers = self._client.scheduler_info()["workers"]
        nannies = [info["nanny"] for info in workers.values() if info.get("nanny")]
        return [self._client.scheduler.address, *workers, *nannies]

    def _open(self) -> None:
        self._distributed = import_distributed()
        from data_pipeline.parallel.dask_cluster.worker import WorkerPreparation, worker_pid

        if self.scheduler_address:
            self._client = self._connect()
        else:
            self._client = self._start_local_cluster()
        self._client.subscribe_topic(self._topic, self._lines.forward)
        self._client.subscribe_topic("all", self._on_cluster_event)
        self._client.register_plugin(
            WorkerPreparation(self.import_paths, self.preload_modules), name=self._plugin_name
        )
        self._pid_by_address = self._client.run(worker_pid)
        if not self._pid_by_address:
            raise WorkerDiedError(f"{self.where} has no workers: start some (`dask worker ...`)")
        self.workers = len(self._pid_by_address)
        # Two tasks in flight per thread that can run one (a remote worker may have several).
        self._threads = sum(
            info.get("nthreads", 1) for info in self._client.scheduler_info()["workers"].values()
        )
        self.stats.workers = self.workers
        self.worker_pids.update(self._pid_by_address.values())
        for pid in self._pid_by_address.values():  # a worker that gets no chunk still counts
            self.stats.busy_seconds_by_worker.setdefault(pid, 0.0)
        pids = ", ".join(str(pid) for pid in sorted(self._pid_by_address.values()))
        self.log.info(
            f"{self.where}: scheduler {self._client.scheduler.address}, "
            f"{self.workers} workers (pids {pids}), ready after "
            f"{time.monotonic() - self._created_at:.2f} s"
        )

    def _connect(self) -> Any:
        try:
            return self._distributed.Client(
                self.scheduler_address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False
            )
        except (OSError, TimeoutError) as error:
            raise WorkerDiedError(
                f"cannot connect to the Dask scheduler at {self.scheduler_address!r} "
                f"({type(error).__name__}: {error}): is it running, and is the address "
                "(scheme, host and port, e.g. tcp://10.0.0.5:8786) right?"
            ) from error

    def _start_local_cluster(self) -> Any:
        global _local_clusters_started
        import dask

        # The scheduler's own retry budget for tasks whose worker died.
        settings = {"distributed.scheduler.allowed-failures": self.restarts_on_worker_death}
        with dask.config.set(settings), main_module_hidden(), native_threads_capped():
            self._cluster = self._distributed.LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address="127.0.0.1:0",  # its HTTP routes on a free port
                silence_logs=logging.WARNING,
            )
        _local_clusters_started += 1
        client = self._distributed.Client(self._cluster, set_as_default=False)
        client.wait_for_workers(self.workers, timeout=CONNECT_TIMEOUT_SECONDS)
        return client

    def _on_cluster_event(self, event: tuple[float, dict]) -> None:
        """A worker that left the cluster unexpectedly: which one, and which chunks it held
        (Dask runs them again elsewhere)."""
        _, message = event
        if message.get("action") != "remove-worker" or message.get("expected"):
            return
        address = message.get("worker", "?")
        # Runs beside the owner's thread, which removes finished tasks: read each key once.
        found = (self._running.get(key) for key in message.get("processing-tasks", ()))
        ours = [_named(task, describe) for task, describe in filter(None, found)]
        pid = self._pid_by_address.get(address)
        who = f"Dask worker {address}" + (f" (pid {pid})" if pid else "")
        if ours:
            held = f"with {', '.join(ours)} assigned to it (running or queued there)"
        else:
            held = "while it held none of this step's chunks"
        with contextlib.suppress(Exception):
            self.log.warning(
                f"{who} left the cluster {held}. Dask runs its unfinished chunks again on the "
                "other workers."
            )

    def map(
        self,
        function: Callable[[Any], Any],
        tasks: Iterable[Any],
        describe: Callable[[Any], str] | None = None,
        count_items: Callable[[Any], int] | None = None,
        on_finished: Callable[[Any, float], None] | None = None,
        long_tasks: Any = None,
    ) -> Iterator[Any]:
        """Yield ``function(task)`` for every task, in the order of ``tasks``, as
        :meth:`ProcessPool.map <data_pipeline.parallel.local.process_pool.ProcessPool.map>`
        does.

        Args:
            function: a top-level function of a module the workers can import.
            tasks: read lazily, as workers become free.
            describe: names a task in errors (its position and repr if None).
            count_items: how many items a result holds, for per-worker insight.
            on_finished: hears ``(task, seconds)`` for each task before its result is yielded.
            long_tasks: not watched: a future does not say when its task started on the
                cluster.
        """
        if self._client is None:
            raise RuntimeError("use the pool inside a 'with' block")
        started = time.monotonic()
        try:
            yield from self._map(function, tasks, describe, count_items, on_finished)
        finally:
            self.stats.map_seconds += time.monotonic() - started

    def _map(self, function, tasks, describe, count_items, on_finished) -> Iterator[Any]:
        from data_pipeline.parallel.dask_cluster.worker import run_dask_task

        numbered = enumerate(tasks)
        in_flight: deque[tuple[str, Any, Any]] = deque()
        # Keys name a result on the cluster: a key used before may still name the old one.
        self._maps += 1
        prefix = f"{self._prefix}-{self._maps}"

        def submit(index: int, task: Any) -> None:
            key = f"{prefix}-{index}"
            # Named only when its worker dies: naming a byte range counts the lines before it.
            self._running[key] = (task, functools.partial(_name_at, index, describe=describe))
            future = self._client.submit(
                run_dask_task, function, task, self._topic, self.worker_log_level, key=key
            )
            in_flight.append((key, task, future))

        try:
            for index, task in islice(numbered, 2 * self._threads):
                submit(index, task)
            while in_flight:
                key, task, future = in_flight[0]
                result, timing, lines = self._result(future, task, self._running[key][1])
                in_flight.popleft()
                self._running.pop(key, None)
                future.release()  # the cluster may forget the result now
                self._lines.sent(lines)
                if on_finished is not None:
                    on_finished(task, timing[2] - timing[1])
                yield from self._collect(result, timing, count_items)
                for next_index, next_task in islice(numbered, 1):
                    submit(next_index, next_task)
        finally:
            if in_flight:  # ended early (a failure, an interrupt): nothing may run on
                with contextlib.suppress(Exception):
                    self._client.cancel([future for _, _, future in in_flight])

    def _result(self, future: Any, task: Any, describe: Callable[[Any], str]) -> Any:
        try:
            return future.result()
        except self._distributed.KilledWorker as error:
            raise WorkerDiedError(
                f"{describe(task)} was on every Dask worker that died while it held it "
                "(running it or queued there) "
                f"({error}): the chunk itself may kill its worker (memory, a crash in native "
                "code), or the workers are being stopped from outside. "
                "restarts_on_worker_death sets how many deaths a chunk survives on a local "
                "cluster (a remote scheduler's distributed.scheduler.allowed-failures there)."
            ) from error
        except Exception as error:
            message = failure_message(describe(task), error, where="on a Dask worker")
            if isinstance(error, OSError) and error.filename:
                message += (
                    f"\nDask workers read their input themselves: {error.filename!r} must be on "
                    "storage every worker reaches (the same path on a shared file system)."
                )
            traceback = "".join(_format_traceback(future))
            raise ChunkFailedError(f"{message}\nWorker traceback:\n{traceback}") from error

    def _collect(self, result: Any, timing: Timing, count_items: Callable | None) -> Iterator:
        self.worker_pids.add(timing[0])
        self.stats.record(timing, None if count_items is None else count_items(result))
        handed_over = time.monotonic()
        yield result
        self.stats.collect_seconds += time.monotonic() - handed_over

    def _close(self, abort: bool) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                if not abort:
                    self._lines.drain()
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(self._plugin_name)
                for topic in (self._topic, "all"):
                    with contextlib.suppress(Exception):
                        client.unsubscribe_topic(topic)
                with contextlib.suppress(Exception):
                    client.close(timeout=CLOSE_TIMEOUT_SECONDS)
        finally:
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close(timeout=CLOSE_TIMEOUT_SECONDS)


def _name_at(index: int, task: Any, describe: Callable[[Any], str] | None) -> str:
    """The task at ``index``, named as every pool names it (:func:`~..errors.task_name`)."""
    return task_name(index, task, describe)


def _named(task: Any, describe: Callable[[Any], str]) -> str:
    """``describe(task)``, or its type if naming it fails (a warning must still go out)."""
    try:
        return describe(task)
    except Exception:
        return describe_by_type(task)


def _format_traceback(future: Any) -> list[str]:
    import traceback

    with contextlib.suppress(Exception):
        return traceback.format_tb(future.traceback())
    return []
