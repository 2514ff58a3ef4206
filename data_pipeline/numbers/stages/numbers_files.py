"""The input stage: each day's numbers.txt, copied from its export or generated from its
seed; the days of a range side by side on a pool."""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_pipeline.numbers.chunking import count_lines
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.input_gate import UnusableInputError, check_input_file
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.settings import PoolSettings


@dataclass(frozen=True)
class NumbersFileJob:
    """One numbers.txt to write: a copy of ``source``, else ``count`` lines from ``seed``."""

    target: Path
    source: Path | None
    count: int
    seed: int
    dirty_fraction: float
    allow_empty: bool


@dataclass(frozen=True)
class WrittenNumbersFile:
    """What writing a job's file came to: its lines, bytes and digest, the dirt generated
    into it by kind, or why the file cannot be used (then nothing was written)."""

    lines: int = 0
    size: int = 0
    digests: dict[str, str] = field(default_factory=dict)
    dirt: dict[str, int] = field(default_factory=dict)
    refusal: str | None = None


def write_numbers_file_job(job: NumbersFileJob) -> WrittenNumbersFile:
    """Write the job's file in place whole (or not at all, if its input cannot be right)."""
    digests: dict[str, str] = {}
    dirt: dict[str, int] = {}
    try:
        with atomic_output(job.target, digests) as temporary:
            if job.source is not None:
                check_input_file(job.source, job.allow_empty)
                shutil.copyfile(job.source, temporary)
            else:
                dirt = dict(write_numbers_file(temporary, job.count, job.seed, job.dirty_fraction))
                check_input_file(temporary, job.allow_empty, shown_as=f"generated {job.target}")
    except UnusableInputError as refusal:
        return WrittenNumbersFile(refusal=str(refusal))
    return WrittenNumbersFile(count_lines(job.target), job.target.stat().st_size, digests, dirt)


def write_numbers_files(
    jobs: list[NumbersFileJob], pool_settings: PoolSettings, log: Any = pool_logger
) -> Iterator[WrittenNumbersFile]:
    """Each job's file, in order: one job in this process, several on a pool (one task a
    file; ``mode: auto`` times the first here and decides for the rest)."""
    if len(jobs) == 1:
        yield write_numbers_file_job(jobs[0])
        return
    yield from map_tasks(
        pool_settings,
        write_numbers_file_job,
        jobs,
        log=log,
        label="numbers files",
        unit="files",
        describe=_target,
    )


def _target(job: NumbersFileJob) -> str:
    return str(job.target)
