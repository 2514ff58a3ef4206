"""The cleaning and transform steps as plain functions over Arrow data (no Dagster).

Workers run the pure functions of :mod:`data_pipeline.numbers.parsing` and
:mod:`data_pipeline.numbers.transforms`; this module plans their chunks, keeps the results in input
order and turns them into Arrow record batches that stream straight into Parquet.
"""

import functools
import itertools
import os
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.chunking import (
    ByteRange,
    byte_range_at,
    count_lines,
    plan_byte_ranges,
)
from data_pipeline.numbers.kernel_choice import PYTHON, Kernel
from data_pipeline.numbers.kernels.columns import ARROW_TYPES as TRANSFORMED_TYPES
from data_pipeline.numbers.parsing import CleanedChunk
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.numbers.transforms import ValueChunk
from data_pipeline.parallel.decision import Decision, WorkSample
from data_pipeline.parallel.pool import PoolSettings
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.progress import Progress
from data_pipeline.parallel.stats import PoolStats

# Measured on a 2-core machine (see benchmarks/): parsing costs ~2 µs a line and a task
# round trip ~0.2 ms, so 256 KiB (~35,000 lines, ~70 ms of work) keeps the per-chunk cost
# under 1 % while still giving a few chunks per worker for a 3 MB file to balance the load.
DEFAULT_CLEANING_CHUNK_BYTES = 256 * 1024
# The transform costs ~25 µs a value: 2,000 values are ~50 ms of work per task, so the
# ~0.2 ms round trip and the pickling of 2,000 ints (16 kB) stay under 1 %, and a default
# input gives ~200 tasks, which keeps both workers busy until the end.
DEFAULT_TRANSFORM_CHUNK_VALUES = 2_000
# A compiled kernel needs 0.4-1.3 µs a value: 2,000 values would be about the ~0.3 ms a task's
# round trip costs. 50,000 values are 20-65 ms of work per task.
COMPILED_TRANSFORM_CHUNK_VALUES = 50_000


def default_transform_chunk_values(kernel: Kernel) -> int:
    """Values per transform task when the configuration does not say: per kernel."""
    return (
        DEFAULT_TRANSFORM_CHUNK_VALUES
        if kernel.name == "python"
        else COMPILED_TRANSFORM_CHUNK_VALUES
    )


# With `mode: auto`, the step first cleans (transforms) a small piece of its input itself,
# timed, doubling the piece until one after the first takes SAMPLE_SECONDS or is a whole
# chunk: a task's fixed cost (a few hundred µs) then weighs as little in the sample as in a
# chunk, and first-call costs (caches, lazy imports) stay in the first piece. ~5 ms of the
# reference parser, ~12 ms of the reference transform; a compiled kernel doubles on. Every
# sample's output is used, not thrown away.
DECISION_SAMPLE_BYTES = 16 * 1024
DECISION_SAMPLE_VALUES = 500
SAMPLE_SECONDS = 0.01
CLEANED_SCHEMA = pa.schema([("line_number", pa.int64()), ("value", pa.int64())])
REJECTED_SCHEMA = pa.schema(
    [("line_number", pa.int64()), ("raw", pa.string()), ("reason", pa.string())]
)
TRANSFORMED_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("value", pa.int64()),
        # The square of an int64 needs up to 127 bits: a 38-digit decimal holds it exactly.
        *TRANSFORMED_TYPES.items(),
    ]
)


@dataclass
class CleaningSummary:
    """Counts of one cleaning run; filled in while the batches stream past."""

    lines: int = 0
    accepted: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    chunks: int = 0
    pool: PoolStats | None = None
    decision: Decision | None = None

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


@dataclass
class TransformSummary:
    rows: int = 0
    chunks: int = 0
    pool: PoolStats | None = None
    decision: Decision | None = None


def clean_file(
    path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    summary: CleaningSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Parse every line of ``path`` on a pool with the kernel's cleaning function; yield
    (accepted, rejected) batches in file order. With ``mode: auto``, a small first range is
    cleaned in this process, timed, and decides whether the rest goes to a pool.

    Line numbers count from 1 and include blank and rejected lines, so accepted + rejected
    always equals the lines in the file.
    """
    file_size = os.path.getsize(path)
    estimated_chunks = -(-file_size // chunk_bytes)
    # auto plans its chunks once it has sampled; every other case plans them now.
    sampled = pool_settings.forced_decision(estimated_chunks) is None
    byte_ranges = [] if sampled else plan_byte_ranges(path, chunk_bytes)
    decision = None if sampled else pool_settings.forced_decision(len(byte_ranges))
    summary.chunks = len(byte_ranges)

    def describe(byte_range: ByteRange) -> str:
        # Only on failure: counting the lines before the chunk reads the file up to it.
        first_line = count_lines(path, byte_range.start) + 1
        return f"{byte_range}, from line {first_line}"

    progress = Progress(log, "cleaning", len(byte_ranges) or estimated_chunks, "lines")

    def batches(chunk: CleanedChunk) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        progress.update(chunk.line_count)
        first_line_number = summary.lines + 1
        summary.lines += chunk.line_count
        summary.accepted += len(chunk.accepted_values)
        summary.rejected_by_reason.update(chunk.rejected_reasons)
        return _cleaned_batches(chunk, first_line_number)

    rest = byte_ranges
    if sampled:
        # Growing pieces from the start of the file, cleaned here and timed, until one takes
        # SAMPLE_SECONDS or is a whole chunk; the pool (or not) takes the rest.
        done, size, index = 0, min(DECISION_SAMPLE_BYTES, chunk_bytes), 0
        while True:
            piece = byte_range_at(path, index, done, size)
            work = functools.partial(kernel.clean, piece)
            sample, chunk = WorkSample.timed(work, piece.end - piece.start)
            started = time.perf_counter()
            yield batches(chunk)
            sample = sample.with_owner_seconds(time.perf_counter() - started)
            done, index = piece.end, index + 1
            # The first piece also pays first-call costs: the estimate is the last piece's.
            enough = index > 1 and sample.seconds >= SAMPLE_SECONDS
            if enough or size >= chunk_bytes or done >= file_size:
                break
            size = min(2 * size, chunk_bytes)
        rest = plan_byte_ranges(path, chunk_bytes, start=done, first_index=index)
        summary.chunks = index + len(rest)
        decision = pool_settings.predicted_decision(
            file_size - done, len(rest), "bytes", sample, kernel.worker_modules
        )
        log.info(f"cleaning {decision.reason}")
    summary.decision = decision
    started = time.perf_counter()
    with pool_settings.open(len(rest), kernel.worker_modules, log, decision) as pool:
        summary.pool = pool.stats
        for chunk in pool.map(kernel.clean, rest, describe, _line_count):
            yield batches(chunk)
    pool_settings.learn(decision, "bytes", kernel.worker_modules, time.perf_counter() - started)


def _line_count(chunk: CleanedChunk) -> int:
    return chunk.line_count


def _row_count(columns: dict[str, list]) -> int:
    return len(columns["square"])


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


def transform_cleaned(
    cleaned: Iterable[pa.RecordBatch],
    chunk_count: int,
    pool_settings: PoolSettings,
    summary: TransformSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    total_values: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Transform cleaned (line_number, value) batches on a pool with the kernel's transform,
    one task per batch; yield the transformed batches in the same order. With ``mode: auto``
    the first values are transformed in this process, timed, and decide for the rest
    (``total_values`` sharpens the prediction; without it, every batch is taken to be as long
    as the first)."""
    waiting: deque[pa.RecordBatch] = deque()

    def task_of(index: int, batch: pa.RecordBatch) -> ValueChunk:
        line_numbers = batch.column("line_number")
        waiting.append(batch)
        return ValueChunk(
            index=index,
            first_line_number=line_numbers[0].as_py(),
            last_line_number=line_numbers[-1].as_py(),
            values=array("q", batch.column("value").to_pylist()),
        )

    def tasks(batches: Iterable[pa.RecordBatch]) -> Iterator[ValueChunk]:
        for index, batch in enumerate(batches):
            if batch.num_rows:
                yield task_of(index, batch)

    progress = Progress(log, "transform", chunk_count, "values")

    def batch_of(columns: dict[str, Any]) -> pa.RecordBatch:
        # Results come back in task order, so the oldest waiting batch is their input.
        batch = _transformed_batch(waiting.popleft(), columns)
        progress.update(batch.num_rows)
        summary.rows += batch.num_rows
        summary.chunks += 1
        return batch

    decision = pool_settings.forced_decision(chunk_count)
    if decision is None:
        cleaned = iter(cleaned)
        first = next((batch for batch in cleaned if batch.num_rows), None)
        done, size, sample = 0, DECISION_SAMPLE_VALUES, None
        while first is not None and done < first.num_rows:
            task = task_of(0, first.slice(done, size))
            work = functools.partial(kernel.transform, task)
            sample, columns = WorkSample.timed(work, len(task.values))
            started = time.perf_counter()
            yield batch_of(columns)
            sample = sample.with_owner_seconds(time.perf_counter() - started)
            done += len(task.values)
            # The first piece also pays first-call costs: the estimate is the last piece's.
            if done > size and sample.seconds >= SAMPLE_SECONDS:
                break
            size *= 2
        if sample is None:
            decision = Decision("auto", 1, "serial: nothing to transform")
        else:
            rest = first.slice(done) if done < first.num_rows else None
            cleaned = itertools.chain([rest] if rest is not None else [], cleaned)
            chunks_left = chunk_count - 1 + (rest is not None)
            left = (total_values or chunk_count * first.num_rows) - done
            decision = pool_settings.predicted_decision(
                max(0, left), chunks_left, "values", sample, kernel.worker_modules
            )
            log.info(f"transform {decision.reason}")
    summary.decision = decision
    started = time.perf_counter()
    with pool_settings.open(chunk_count, kernel.worker_modules, log, decision) as pool:
        summary.pool = pool.stats
        for columns in pool.map(kernel.transform, tasks(cleaned), str, _row_count):
            yield batch_of(columns)
    pool_settings.learn(decision, "values", kernel.worker_modules, time.perf_counter() - started)


def _transformed_batch(cleaned: pa.RecordBatch, columns: dict[str, Any]) -> pa.RecordBatch:
    """The batch of one chunk: its line numbers and values, and the kernel's columns, given
    as lists (the reference) or as Arrow arrays already of the output's types."""
    arrays = [cleaned.column("line_number"), cleaned.column("value")]
    for name in TRANSFORMED_SCHEMA.names[2:]:
        column, wanted = columns[name], TRANSFORMED_SCHEMA.field(name).type
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column, wanted))
    return pa.record_batch(arrays, schema=TRANSFORMED_SCHEMA)


def clean_to_parquet(
    source: Path,
    cleaned_path: Path,
    rejected_path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> CleaningSummary:
    """Clean ``source`` into two Parquet files, streamed chunk by chunk. Each appears complete
    or not at all; the two are renamed one after the other, so a reader racing a run may see
    one old and one new (the ``every_line_accepted_or_rejected`` check would then fail)."""
    summary = CleaningSummary()
    with (
        atomic_output(cleaned_path) as cleaned_temporary,
        atomic_output(rejected_path) as rejected_temporary,
        ParquetOutput(cleaned_temporary, CLEANED_SCHEMA) as cleaned_writer,
        ParquetOutput(rejected_temporary, REJECTED_SCHEMA) as rejected_writer,
    ):
        for accepted, rejected in clean_file(
            source, pool_settings, chunk_bytes, summary, log, kernel
        ):
            cleaned_writer.write(accepted)
            rejected_writer.write(rejected)
    return summary


def transform_to_parquet(
    cleaned_path: Path,
    transformed_path: Path,
    pool_settings: PoolSettings,
    chunk_values: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> TransformSummary:
    """Transform the cleaned values into a Parquet file, streamed chunk by chunk."""
    parquet = pq.ParquetFile(cleaned_path)
    chunk_count = -(-parquet.metadata.num_rows // chunk_values)
    summary = TransformSummary()
    batches = parquet.iter_batches(batch_size=chunk_values)
    with (
        atomic_output(transformed_path) as temporary,
        ParquetOutput(temporary, TRANSFORMED_SCHEMA) as writer,
    ):
        for batch in transform_cleaned(
            batches, chunk_count, pool_settings, summary, log, kernel, parquet.metadata.num_rows
        ):
            writer.write(batch)
    return summary


class ParquetOutput:
    """A Parquet file written batch by batch in row groups of about ROW_GROUP_ROWS rows
    (one per chunk would make thousands of tiny row groups on a large input), zstd-compressed,
    with increasing line numbers delta-encoded: about a quarter of pyarrow's default size."""

    ROW_GROUP_ROWS = 1 << 16

    def __init__(self, path: Path, schema: pa.Schema):
        self._schema = schema
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            use_dictionary=[name for name in schema.names if name != "line_number"],
            column_encoding={"line_number": "DELTA_BINARY_PACKED"},
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, self._schema))
            self._pending, self._pending_rows = [], 0

    def __enter__(self) -> "ParquetOutput":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._writer.close()
