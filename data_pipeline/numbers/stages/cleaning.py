"""The cleaning stage: a file's byte ranges parsed on a pool, in file order, into Arrow
batches of accepted values and rejected lines that stream straight into Parquet."""

import os
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.settings import PoolSettings


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
    pool_settings = settings_for_kernel(pool_settings, kernel, log)
    first_bytes = DECISION_SAMPLE_BYTES if pool_settings.mode == "auto" else chunk_bytes
    byte_ranges = _growing_then_even(path, chunk_bytes, first_bytes)
    summary.chunks = len(byte_ranges)

    def describe(byte_range: ByteRange) -> str:
        # Only on failure: counting the lines before the chunk reads the file up to it.
        first_line = count_lines(path, byte_range.start) + 1
        return f"{byte_range}, from line {first_line}"

    summary.run = map_tasks(
        pool_settings,
        kernel.clean,
        byte_ranges,
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
    for chunk in summary.run:
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
    summary = CleaningSummary()
    with (
        atomic_output(cleaned_path, summary.digests) as cleaned_temporary,
        atomic_output(rejected_path, summary.digests) as rejected_temporary,
        ParquetOutput(cleaned_temporary, CLEANED_SCHEMA) as cleaned_writer,
        ParquetOutput(rejected_temporary, REJECTED_SCHEMA) as rejected_writer,
    ):
        for accepted, rejected in clean_file(
            source, pool_settings, chunk_bytes, summary, log, kernel
        ):
            cleaned_writer.write(accepted)
            rejected_writer.write(rejected)
        if accept is not None:
            accept(summary)
    return summary


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
            pa.array(chunk.accepted_values, pa.int64()),
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
    return pa.array([first_line_number + position for position in positions], pa.int64())
