"""The decision for a :class:`~.settings.PoolSettings`: forced by its mode, or ``auto``'s
prediction from this machine's kept costs; and what each run teaches, kept back."""

import logging
from collections.abc import Callable, Iterable
from typing import Any

from data_pipeline.parallel import calibration
from data_pipeline.parallel.corrections import Corrections
from data_pipeline.parallel.cpus import available_cpus_recently, effective_workers
from data_pipeline.parallel.decision import Decision, PoolCosts, WorkSample, forced, predicted
from data_pipeline.parallel.pool import fork_server_head_start, starts_warm
from data_pipeline.parallel.pool_choice import predicted_among
from data_pipeline.parallel.settings import PoolSettings

logger = logging.getLogger(__name__)


def forced_decision(settings: PoolSettings, chunk_count: int) -> Decision | None:
    """Serial or parallel when nothing needs measuring; None when ``auto`` must sample."""
    return forced(settings.mode, effective_workers(settings.workers, chunk_count), chunk_count)


def predicted_decision(
    settings: PoolSettings,
    items: int,
    chunk_count: int,
    unit: str,
    sample: WorkSample,
    preload_modules: Iterable[str] = (),
    log: Any = logger,
    releases_gil: bool = False,
) -> Decision:
    """``auto``'s choice for ``items`` in ``chunk_count`` chunks, from the ``sample``: serial
    or a pool of the settings' backend; for work that ``releases_gil`` on backend ``local``,
    serial, threads or processes (:func:`.pool_choice.predicted_among`).

    Args:
        settings: the pool's settings (workers, backend, where costs are kept).
        items: the work left, in ``unit``.
        chunk_count: the tasks left.
        unit: what ``items`` counts; also tells the kinds of step apart in what is learnt.
        sample: the first tasks, timed in this process.
        preload_modules: the kernel's modules, which the workers import first.
        log: hears, once, that the costs cannot be kept.
        releases_gil: whether the tasks' function releases the GIL (threads may run it).
    """
    preload = tuple(preload_modules)
    directory = calibration.costs_directory_in_use(settings.costs_directory, log)
    subject = _subject(settings, unit, preload)

    def costs_on(backend: str) -> Callable[[int], PoolCosts]:
        ahead = fork_server_head_start(settings) if backend == "local" else 0.0

        def costs(workers: int) -> PoolCosts:
            shape = calibration.PoolShape(
                workers, settings.start_method, preload, backend, settings.scheduler_address
            )
            measured = calibration.pool_costs(directory, shape)
            return measured.started_ahead(ahead) if ahead else measured

        return costs

    workers = effective_workers(settings.workers, chunk_count)

    def learned(size: int) -> Corrections:
        return calibration.corrections(directory, subject, size)

    if releases_gil and settings.backend == "local":
        return predicted_among(
            workers,
            items,
            chunk_count,
            unit,
            sample,
            costs_on("local"),
            costs_on("threads"),
            warm=starts_warm(settings),
            cpus=available_cpus_recently,
            corrections=learned,
        )
    return predicted(
        workers,
        items,
        chunk_count,
        unit,
        sample,
        costs_on(settings.backend),
        warm=starts_warm(settings),
        cpus=available_cpus_recently,
        corrections=learned,
    )


def learn_from_run(
    settings: PoolSettings,
    decision: Decision,
    unit: str,
    preload_modules: Iterable[str],
    seconds: float,
    log: Any = logger,
) -> None:
    """Keep how long the work ``decision`` predicted took (``auto`` only).

    Args:
        settings: the pool's settings the decision was made for.
        decision: the decision the run followed.
        unit: as given to :func:`predicted_decision`.
        preload_modules: as given to :func:`predicted_decision`.
        seconds: how long the work after the sample took.
        log: hears, once, that the costs cannot be kept.
    """
    if decision.corrections is None:
        return  # forced: nothing to learn (and no directory to look for)
    directory = calibration.costs_directory_in_use(settings.costs_directory, log)
    subject = _subject(settings, unit, tuple(preload_modules))
    calibration.learn(directory, subject, decision, seconds)


def _subject(settings: PoolSettings, unit: str, preload: tuple[str, ...]) -> str:
    """The kind of step what runs teach is kept for: the unit tells the stage apart, the
    preloaded modules the kernel; a Dask cluster's lessons are its own, and so are threads'."""
    subject = f"{settings.start_method}, {settings.workers} workers, {unit}, {', '.join(preload)}"
    if settings.backend == "local":
        return subject
    if settings.backend == "threads":
        return f"threads: {settings.workers} threads, {unit}, {', '.join(preload)}"
    return f"{settings.backend}, {settings.scheduler_address or 'local cluster'}: {subject}"
