"""When a range's files are the pool's tasks, each cleaned or transformed start to end by one
worker, rather than their chunks."""

import dataclasses

from data_pipeline.parallel.cpus import available_cpus_recently
from data_pipeline.parallel.settings import PoolSettings

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
