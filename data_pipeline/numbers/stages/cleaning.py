"""The cleaning stage: a file's byte ranges parsed on a pool, in file order, into Arrow
batches of accepted values and rejected lines that stream straight into Parquet."""

import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_pipeline.numbers.chunking import (
    ByteRange,
    byte_range_at,
    count_lines,
    plan_byte_ranges,
)
from data_pipeline.numbers.kernel_choice import PYTHON, Kernel, settings_for_kernel
from data_pipeline.numbers.parsing import CleanedChunk
from data_pipeline.numbers.stages.chunk_sizes import DECISION_SAMPLE_BYTES
from data_pipeline.numbers.stages.parquet_output import (
    CLEANED_SCHEMA,
    REJECTED_SCHEMA,
    ParquetOutput,
)
from data_pipeline.numbers.stages.summaries import CleaningSummary
from data_pipeline.numbers.stages.whole_files import (
    files_summaries,
    whole_file_settings,
    whole_files_as_tasks,
)
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.settings import PoolSettings


@dataclass(frozen=True)
class CleaningJob:
    """One text file to clean, and where its two Parquet files go."""

    source: Path
    cleaned_path: Path
    rejected_path: Path


def clean_file(
    path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    summary: CleaningSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    label: str = "cleaning",
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Parse every line of ``path`` on a pool with the kernel's cleaning function; yield
    (accepted, rejected) batches in file order. With ``mode: auto``, the first ranges are
    small and cleaned in this process, timed, and decide whether the rest goes to a pool.

    Line numbers count from 1 and include blank and rejected lines, so accepted + rejected
    always equals the lines in the file.

    Args:
        path: The text file of numbers, one per line.
        pool_settings: The pool that runs the kernel's cleaning function.
        chunk_bytes: About how many bytes each task reads.
        summary: Filled in while the batches stream past.
        log: Where the pool's progress and decision lines go.
        kernel: Whose cleaning function the workers run.
        label: Names the stage in the log lines.
    """
    for _, batches in _clean_files(
        [path], pool_settings, chunk_bytes, [summary], log, kernel, label
    ):
        yield from batches


def _clean_files(
    paths: list[Path],
    pool_settings: PoolSettings,
    chunk_bytes: int,
    summaries: list[CleaningSummary],
    log: Any,
    kernel: Kernel,
    label: str,
) -> Iterator[tuple[int, Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]]]:
    """Every file's ranges as the tasks of one pool, file after file, so no file's last range
    keeps a worker idle: yield (file's index, its batches) in order; read each file's batches
    before asking for the next file."""
    pool_settings = settings_for_kernel(pool_settings, kernel, log)
    first_bytes = DECISION_SAMPLE_BYTES if pool_settings.mode == "auto" else chunk_bytes
    ranges_of = [
        _growing_then_even(path, chunk_bytes, first_bytes if index == 0 else chunk_bytes)
        for index, path in enumerate(paths)
    ]
    for summary, byte_ranges in zip(summaries, ranges_of, strict=True):
        summary.chunks = len(byte_ranges)

    def describe(byte_range: ByteRange) -> str:
        # Only on failure: counting the lines before the chunk reads the file up to it.
        first_line = count_lines(Path(byte_range.path), byte_range.start) + 1
        where = f" of {byte_range.path}" if len(paths) > 1 else ""
        return f"{byte_range}{where}, from line {first_line}"

    run = map_tasks(
        pool_settings,
        kernel.clean,
        [byte_range for byte_ranges in ranges_of for byte_range in byte_ranges],
        log=log,
        label=label,
        unit="bytes",
        progress_unit="lines",
        describe=describe,
        size_of=_byte_count,
        count_items=_line_count,
        preload_modules=kernel.worker_modules,
        # Not releases_gil, so auto weighs serial against processes only: the vectorized
        # cleaning holds the GIL for part of each task (lines left to the reference parser,
        # the chunk's lists), and in the 256 KiB tasks planned before auto decides two threads
        # were slower than one (1.43 s against 1.18 s at 4,000,000 lines, chunk_sizes.py).
    )
    chunks = iter(run)
    try:
        for index, summary in enumerate(summaries):
            summary.run = run
            yield index, _file_batches(chunks, summary)
        for _ in chunks:  # none left: this ends the run (its pool shut down, its stats kept)
            raise RuntimeError("the cleaning pool returned more chunks than were planned")
    finally:
        chunks.close()  # a failure or an early stop: the pool shuts down now


def _file_batches(
    chunks: Iterator[CleanedChunk], summary: CleaningSummary
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """The next ``summary.chunks`` cleaned chunks as one file's batches, counted in
    ``summary``; line numbers from 1."""
    for _ in range(summary.chunks):
        chunk = next(chunks)
        first_line_number = summary.lines + 1
        summary.lines += chunk.line_count
        summary.accepted += len(chunk.accepted_values)
        summary.note_rejections(chunk, first_line_number)
        yield _cleaned_batches(chunk, first_line_number)


def clean_to_parquet(
    source: Path,
    cleaned_path: Path,
    rejected_path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    accept: Callable[[CleaningSummary], None] | None = None,
) -> CleaningSummary:
    """Clean ``source`` into two Parquet files, streamed chunk by chunk; each appears
    complete or not at all (:func:`atomic_output`). ``accept`` may refuse the result (raise)
    before either file is in place.

    Args:
        source: The text file of numbers, one per line.
        cleaned_path: Where the accepted (line_number, value) rows go.
        rejected_path: Where the rejected (line_number, raw, reason) rows go.
        pool_settings: The pool that runs the kernel's cleaning function.
        chunk_bytes: About how many bytes each task reads.
        log: Where the pool's progress and decision lines go.
        kernel: Whose cleaning function the workers run.
        accept: Called with the summary before the files are put in place; may raise.
    """
    job = CleaningJob(source, cleaned_path, rejected_path)
    accept_file = None if accept is None else lambda _, summary: accept(summary)
    (summary,) = clean_files_to_parquet([job], pool_settings, chunk_bytes, log, kernel, accept_file)
    return summary


def clean_files_to_parquet(
    jobs: list[CleaningJob],
    pool_settings: PoolSettings,
    chunk_bytes: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    accept: Callable[[int, CleaningSummary], None] | None = None,
) -> Iterator[CleaningSummary]:
    """Clean each job's file into its two Parquet files on one pool (one start, one decision);
    yield each job's summary, in order, once its files are in place, while the pool goes on
    with the next files. ``accept(index, summary)`` may refuse a job's result (raise).

    Few files: every file's chunks are the pool's tasks, one file after another, and this
    process builds and writes the batches. Many (see :func:`whole_files_as_tasks`): each file
    is one task, cleaned start to end by a worker that writes its Parquet files too, so the
    Arrow batches, the Parquet encoding and the digests run in parallel as well."""
    if whole_files_as_tasks(len(jobs), pool_settings):
        yield from _clean_whole_files(jobs, pool_settings, chunk_bytes, log, kernel, accept)
        return
    summaries = [CleaningSummary() for _ in jobs]
    files = _clean_files(
        [job.source for job in jobs], pool_settings, chunk_bytes, summaries, log, kernel, "cleaning"
    )
    for index, batches in files:
        job, summary = jobs[index], summaries[index]
        with (
            atomic_output(job.cleaned_path, summary.digests) as cleaned_temporary,
            atomic_output(job.rejected_path, summary.digests) as rejected_temporary,
            ParquetOutput(cleaned_temporary, CLEANED_SCHEMA) as cleaned_writer,
            ParquetOutput(rejected_temporary, REJECTED_SCHEMA) as rejected_writer,
        ):
            for accepted, rejected in batches:
                cleaned_writer.write(accepted)
                rejected_writer.write(rejected)
            if accept is not None:
                accept(index, summary)
        yield summary


@dataclass(frozen=True)
class WholeFileCleaning:
    """A task of a range: one file cleaned start to end in one worker."""

    job: CleaningJob
    chunk_bytes: int
    kernel: Kernel


def clean_whole_file(task: WholeFileCleaning) -> CleaningSummary:
    """Clean one file into its two Parquet files in this process (runs in a pool worker)."""
    job = task.job
    summary = clean_to_parquet(
        job.source,
        job.cleaned_path,
        job.rejected_path,
        PoolSettings(1),
        task.chunk_bytes,
        kernel=task.kernel,
    )
    summary.run = None  # this worker's own serial run: the caller's run is the pool's
    return summary


def _clean_whole_files(
    jobs: list[CleaningJob],
    pool_settings: PoolSettings,
    chunk_bytes: int,
    log: Any,
    kernel: Kernel,
    accept: Callable[[int, CleaningSummary], None] | None,
) -> Iterator[CleaningSummary]:
    run = map_tasks(
        whole_file_settings(pool_settings),
        clean_whole_file,
        [WholeFileCleaning(job, chunk_bytes, kernel) for job in jobs],
        log=log,
        label="cleaning",
        unit="bytes",
        progress_unit="lines",
        describe=_source_of,
        size_of=_source_bytes,
        count_items=_lines_of,
        preload_modules=kernel.worker_modules,
    )
    yield from files_summaries(run, accept)


def _source_of(task: WholeFileCleaning) -> str:
    return str(task.job.source)


def _source_bytes(task: WholeFileCleaning) -> int:
    return os.path.getsize(task.job.source)


def _lines_of(summary: CleaningSummary) -> int:
    return summary.lines


def _growing_then_even(path: Path, chunk_bytes: int, first_bytes: int) -> list[ByteRange]:
    """Ranges of ``first_bytes``, twice that, and so on up to ``chunk_bytes``, then the rest
    of the file in ranges of ``chunk_bytes``."""
    file_size = os.path.getsize(path)
    ranges: list[ByteRange] = []
    start, size = 0, min(first_bytes, chunk_bytes)
    while size < chunk_bytes and start < file_size:
        ranges.append(byte_range_at(path, len(ranges), start, size))
        start, size = ranges[-1].end, 2 * size
    return ranges + plan_byte_ranges(path, chunk_bytes, start=start, first_index=len(ranges))


def _byte_count(byte_range: ByteRange) -> int:
    return byte_range.end - byte_range.start


def _line_count(chunk: CleanedChunk) -> int:
    return chunk.line_count


def _cleaned_batches(
    chunk: CleanedChunk, first_line_number: int
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    accepted = pa.record_batch(
        [
            _line_numbers(chunk.accepted_positions, first_line_number),
            pa.array(np.asarray(chunk.accepted_values, dtype=np.int64), pa.int64()),
        ],
        schema=CLEANED_SCHEMA,
    )
    rejected = pa.record_batch(
        [
            _line_numbers(chunk.rejected_positions, first_line_number),
            pa.array(chunk.rejected_raw, pa.string()),
            pa.array(chunk.rejected_reasons, pa.string()),
        ],
        schema=REJECTED_SCHEMA,
    )
    return accepted, rejected


def _line_numbers(positions: array, first_line_number: int) -> pa.Array:
    # Through numpy: one vectorized add instead of a Python int per line.
    return pa.array(np.asarray(positions, dtype=np.int64) + first_line_number, pa.int64())
