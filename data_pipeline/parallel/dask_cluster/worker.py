"""The worker side of the Dask backend: what a Dask worker runs for each task, and sets up when
it joins. Only the Dask pool imports it (``distributed`` is optional); it stays Dagster-free."""

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from data_pipeline.parallel.child_processes import native_threads_capped
from data_pipeline.parallel.stats import Timing, timed_call
from data_pipeline.parallel.thread_logs import this_threads_records_to


class _EventLog:
    """A log whose lines become events of ``topic`` on the cluster: the step that owns the
    pool subscribes to it and forwards each one to its own log as it arrives."""

    def __init__(self, worker: Any, topic: str):
        self._worker, self._topic = worker, topic
        self.sent = 0

    def log(self, level: int, message: str) -> None:
        self._worker.log_event(self._topic, {"level": level, "message": message})
        self.sent += 1


def run_dask_task(
    function: Callable[[Any], Any], task: Any, topic: str, log_level: int
) -> tuple[Any, Timing, int]:
    """``function(task)`` timed, as :func:`~data_pipeline.parallel.stats.timed_call` does,
    with what the task logs or prints at ``log_level`` or above sent to ``topic`` as it
    happens; also the number of lines sent, so the owner knows when it has them all.

    Args:
        function: the task's function (a top-level function of an importable module).
        task: its argument.
        topic: the cluster event topic the owner of the pool listens to.
        log_level: records at this level or above are sent.
    """
    worker = get_worker()
    events = _EventLog(worker, topic)
    name = f"dask worker {worker.address.split('://')[-1]} pid {os.getpid()}"
    # Tasks run in a thread of the Dask worker: only that thread's records are the task's.
    with this_threads_records_to(events, log_level, worker=name):
        result, timing = timed_call(function, task)
    return result, timing, events.sent


class WorkerPreparation(WorkerPlugin):
    """A Dask worker plugin: on every worker of the cluster, also those that join later (a
    nanny restarting a killed one), the step's import paths go on ``sys.path`` and the
    kernel's modules are imported (and with them warmed up, as the fork server preloads them),
    with native thread pools capped at one thread as in the local pool's workers."""

    idempotent = False

    def __init__(self, import_paths: tuple[str, ...], preload_modules: tuple[str, ...]):
        self.import_paths, self.preload_modules = import_paths, preload_modules

    def setup(self, worker: Any) -> None:
        sys.path.extend(path for path in self.import_paths if path not in sys.path)
        with native_threads_capped():
            for module in self.preload_modules:
                importlib.import_module(module)


def worker_pid() -> int:
    """Run on each worker (``client.run``): its process id, for the insight."""
    return os.getpid()
