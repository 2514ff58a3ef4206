"""When a range's files are the pool's tasks, each cleaned or transformed start to end by one
worker, rather than their chunks."""

import dataclasses
from collections.abc import Callable, Iterator
from typing import TypeVar

from data_pipeline.numbers.stages.summaries import StepSummary
from data_pipeline.parallel.cpus import available_cpus_recently
from data_pipeline.parallel.pool_run import PoolRun
from data_pipeline.parallel.settings import PoolSettings

Summary = TypeVar("Summary", bound=StepSummary)

# Whole files as tasks once there are this many per worker: enough that the last round leaves
# few workers idle (a file of a default day is a few tenths of a second of work), while
# fewer, larger files are better cut into chunks that every worker shares.
FILES_PER_WORKER = 2


def whole_files_as_tasks(files: int, settings: PoolSettings) -> bool:
    """Whether ``files`` files are better given to the pool whole, one task each: they are
    many, and more than one worker may run. Then each worker also builds and writes its
    files' Arrow batches and Parquet, which a step's one process would otherwise do alone."""
    workers = settings.workers or available_cpus_recently()
    return workers > 1 and files >= FILES_PER_WORKER * workers


def whole_file_settings(settings: PoolSettings) -> PoolSettings:
    """The pool for whole files: processes where threads were asked for, as a whole file
    holds the GIL while its batches are built and written."""
    if settings.backend == "threads":
        return dataclasses.replace(settings, backend="local")
    return settings


def files_summaries(
    run: PoolRun, accept: Callable[[int, Summary], None] | None = None
) -> Iterator[Summary]:
    """Each whole file's summary, in order, as the pool returns it (``accept(index, summary)``
    may refuse it first, by raising). Once all are read each names the pool's run; a failure
    or an early stop shuts the pool down at once."""
    summaries = iter(run)
    done: list[Summary] = []
    try:
        for index, summary in enumerate(summaries):
            done.append(summary)
            if accept is not None:
                accept(index, summary)
            yield summary
    finally:
        summaries.close()
    for summary in done:
        summary.run = run
