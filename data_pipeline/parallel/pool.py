"""The pool that :class:`~.settings.PoolSettings` ask for, opened: processes of this machine
(:mod:`.local`), a Dask cluster (:mod:`.dask_cluster`) or threads (:mod:`.threads`)."""

import logging
from collections.abc import Iterable
from typing import Any

from data_pipeline.parallel.cpus import effective_workers
from data_pipeline.parallel.dask_cluster.dask_pool import DaskPool, local_clusters_started
from data_pipeline.parallel.decision import Decision
from data_pipeline.parallel.local.process_pool import (
    ProcessPool,
    forkserver_pools_started,
    workers_are_kept,
)
from data_pipeline.parallel.local.worker_processes import (
    seconds_since_fork_server_started,
    start_fork_server,
)
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.threads.thread_pool import ThreadPool

logger = logging.getLogger(__name__)


def open_pool(
    settings: PoolSettings,
    chunk_count: int,
    preload_modules: Iterable[str] = (),
    log: Any = logger,
    decision: Decision | None = None,
    import_paths: Iterable[str] = (),
    *,
    reuse: bool = False,
    in_process_when_one: bool = True,
) -> ProcessPool | DaskPool | ThreadPool:
    """A pool sized for ``chunk_count`` chunks (never more workers than chunks), or as
    ``decision`` says: on the settings' backend, or in this process for one worker. Use it
    in a ``with`` block.

    Args:
        settings: the workers, backend and start method to use.
        chunk_count: the tasks the pool will run.
        preload_modules: modules a worker imports before its first task.
        log: where warnings and the workers' records and printed lines go.
        decision: overrides the number of workers, and the backend if it names one
            (``auto``'s choice).
        import_paths: directories workers put on ``sys.path``.
        reuse: local workers kept from an earlier map of this step serve this one, and
            these are kept for the next (:func:`~.local.process_pool.workers_kept`).
        in_process_when_one: False runs one worker in a process of its own (a deadline
            needs a process to stop).
    """
    workers = effective_workers(settings.workers, chunk_count)
    workers = decision.workers if decision is not None else workers
    backend = settings.backend
    if decision is not None and decision.backend is not None:
        backend = decision.backend
    options = {
        "preload_modules": preload_modules,
        "restarts_on_worker_death": settings.restarts_on_worker_death,
        "log": log,
        "worker_log_level": settings.worker_log_level,
        "import_paths": import_paths,
    }
    if backend == "dask" and workers > 1:
        return DaskPool(workers, settings.scheduler_address, **options)
    if backend == "threads" and workers > 1:
        # Threads in this process: nothing to preload, import or restart.
        return ThreadPool(workers, log, settings.worker_log_level)
    return ProcessPool(
        workers,
        settings.start_method,
        **options,
        max_tasks_per_worker=settings.max_tasks_per_worker,
        memory_limit_mb=settings.worker_memory_limit_mb,
        in_process_when_one=in_process_when_one,
        reuse=reuse,
    )


def fork_server_head_start(settings: PoolSettings) -> float:
    """Seconds the fork server of this process's local pools has been starting ahead of
    them (:func:`start_fork_server`); 0 for other start methods or if it was not."""
    if settings.start_method != "forkserver":
        return 0.0
    return seconds_since_fork_server_started()


def start_fork_server_early(settings: PoolSettings, preload_modules: Iterable[str]) -> None:
    """For settings whose pool would fork its workers from this process's fork server (local
    processes, forkserver, more than one worker, a mode that may run them), start that
    server now with ``preload_modules``, while this process does other work; the first
    pool then starts nearly warm, and ``auto`` counts the start-up already paid."""
    if (
        settings.backend == "local"
        and settings.start_method == "forkserver"
        and settings.mode != "serial"
        and (settings.workers or 0) > 1
    ):
        start_fork_server(tuple(preload_modules))


def starts_warm(settings: PoolSettings) -> bool:
    """Whether this process has started such a pool before (which starts faster)."""
    if settings.backend == "threads":
        return True  # threads start in microseconds, the first time too
    if settings.backend == "dask":
        return settings.scheduler_address is not None or local_clusters_started() > 0
    if workers_are_kept():
        return True  # an earlier map's workers, still running
    return settings.start_method == "forkserver" and forkserver_pools_started() > 0
