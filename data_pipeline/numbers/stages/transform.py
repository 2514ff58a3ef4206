"""The transform stage: cleaned values cut into tasks by what they cost, transformed on a pool
by the kernel, in input order, into Arrow batches that stream straight into Parquet."""

import itertools
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.kernel_choice import PYTHON, Kernel, settings_for_kernel
from data_pipeline.numbers.stages.chunk_sizes import FIRST_TASK_VALUES, TARGET_TASK_SECONDS
from data_pipeline.numbers.stages.parquet_output import TRANSFORMED_SCHEMA, ParquetOutput
from data_pipeline.numbers.stages.summaries import TransformSummary
from data_pipeline.numbers.stages.whole_files import (
    files_summaries,
    whole_file_settings,
    whole_files_as_tasks,
)
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.numbers.transforms import ValueChunk
from data_pipeline.parallel.map_options import LONG_TASK_SECONDS
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.settings import PoolSettings


def transform_cleaned(
    cleaned: Iterable[pa.RecordBatch],
    chunk_count: int,
    pool_settings: PoolSettings,
    summary: TransformSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    total_values: int | None = None,
    label: str = "transform",
    *,
    long_chunk_seconds: float = LONG_TASK_SECONDS,
) -> Iterator[pa.RecordBatch]:
    """Transform cleaned (line_number, value) batches on a pool with the kernel's transform;
    yield the transformed batches in the same order. Tasks are pieces of the batches, cut by
    what the values cost (see :class:`CostSizedPieces`), so costly values spread over every
    worker; with ``mode: auto`` the first ones run in this process, timed, and decide for the
    rest.

    Args:
        cleaned: The (line_number, value) batches, one per chunk.
        chunk_count: How many batches ``cleaned`` holds.
        pool_settings: The pool that runs the kernel's transform.
        summary: Filled in while the batches stream past.
        log: Where the pool's progress and decision lines go.
        kernel: Whose transform the workers run.
        total_values: The values of all batches; it sharpens the prediction of ``mode: auto``
            (without it, every batch is taken to be as long as the first).
        label: Names the stage in the log lines.
        long_chunk_seconds: A chunk running this long is named in the log.
    """
    pool_settings = settings_for_kernel(pool_settings, kernel, log)

    def as_buffer() -> bool:
        """Threads share this process's memory: a compiled kernel reads the batch's int64
        buffer where it is (zero copy); processes get the values pickled as an int64 array.
        Threads run the tasks on backend ``threads``, or where ``auto`` chose them."""
        if pool_settings.backend == "threads":
            return True
        decision = summary.run.decision
        return decision is not None and decision.backend == "threads"

    cleaned = (batch for batch in cleaned if batch.num_rows)
    first = next(cleaned, None)
    batches = () if first is None else itertools.chain([first], cleaned)
    batch_values = first.num_rows if first is not None else 0
    total_values = total_values or chunk_count * batch_values
    # On Dask a task costs ~5 ms of scheduling: its first tasks are whole chunks.
    first_values = None if pool_settings.backend == "dask" else FIRST_TASK_VALUES
    pieces = CostSizedPieces(first_values, batch_values, lambda: summary.run.seconds_per_unit())
    waiting: deque[pa.RecordBatch] = deque()

    def tasks() -> Iterator[ValueChunk]:
        values_cut = 0
        for index, batch in enumerate(pieces.cut(batches)):
            values_cut += batch.num_rows
            summary.run.expect_tasks(index + 1 + pieces.count_for(total_values - values_cut))
            line_numbers, values = batch.column("line_number"), batch.column("value")
            waiting.append(batch)
            yield ValueChunk(
                index=index,
                first_line_number=line_numbers[0].as_py(),
                last_line_number=line_numbers[-1].as_py(),
                values=values.to_numpy() if as_buffer() else array("q", values.to_pylist()),
            )

    summary.run = map_tasks(
        pool_settings,
        kernel.transform,
        tasks(),
        log=log,
        label=label,
        unit="values",
        describe=str,
        size_of=_value_count,
        count_items=_row_count,
        total_size=total_values,
        total_tasks=pieces.count_for(total_values),
        preload_modules=kernel.worker_modules,
        long_task_seconds=long_chunk_seconds,
        # With mode auto on backend local, a kernel that releases the GIL may run on threads.
        releases_gil=kernel.releases_gil,
    )
    for columns in summary.run:
        # Results come back in task order, so the oldest waiting batch is their input.
        batch = _transformed_batch(waiting.popleft(), columns)
        summary.rows += batch.num_rows
        summary.chunks += 1
        yield batch


def transform_to_parquet(
    cleaned_path: Path,
    transformed_path: Path,
    pool_settings: PoolSettings,
    chunk_values: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> TransformSummary:
    """Transform the cleaned values into a Parquet file, streamed chunk by chunk.

    Args:
        cleaned_path: The cleaned (line_number, value) Parquet file.
        transformed_path: Where the transformed rows go; it appears whole or not at all.
        pool_settings: The pool that runs the kernel's transform.
        chunk_values: The most values a task holds.
        log: Where the pool's progress and decision lines go.
        kernel: Whose transform the workers run.
    """
    jobs = [TransformJob(cleaned_path, transformed_path)]
    (summary,) = transform_files_to_parquet(jobs, pool_settings, chunk_values, log, kernel)
    return summary


@dataclass(frozen=True)
class TransformJob:
    """One cleaned Parquet file to transform, and where its transformed file goes."""

    cleaned_path: Path
    transformed_path: Path


def transform_files_to_parquet(
    jobs: list[TransformJob],
    pool_settings: PoolSettings,
    chunk_values: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> Iterator[TransformSummary]:
    """Transform each job's cleaned values into its Parquet file, every file's values on one
    pool (one start, one decision, no file's last task a barrier): yield each job's summary,
    in order, once its file is in place, while the pool goes on with the next files' values.
    Each summary's ``run`` is the one pool run of all the files (complete once every summary
    has been read). Many files (see :func:`whole_files_as_tasks`): each file is one task,
    transformed start to end by a worker that writes its Parquet file too."""
    if whole_files_as_tasks(len(jobs), pool_settings):
        yield from _transform_whole_files(jobs, pool_settings, chunk_values, log, kernel)
        return
    parquets = [pq.ParquetFile(job.cleaned_path) for job in jobs]
    rows_of = [parquet.metadata.num_rows for parquet in parquets]
    step = TransformSummary()
    batches = (
        batch for parquet in parquets for batch in parquet.iter_batches(batch_size=chunk_values)
    )
    transformed = transform_cleaned(
        batches,
        sum(-(-rows // chunk_values) for rows in rows_of),
        pool_settings,
        step,
        log,
        kernel,
        sum(rows_of),
    )
    summaries: list[TransformSummary] = []
    try:
        for job, rows in zip(jobs, rows_of, strict=True):
            summary = TransformSummary()
            summaries.append(summary)
            with (
                atomic_output(job.transformed_path, summary.digests) as temporary,
                ParquetOutput(temporary, TRANSFORMED_SCHEMA) as writer,
            ):
                while summary.rows < rows:  # batches never span two files
                    batch = next(transformed)
                    writer.write(batch)
                    summary.rows += batch.num_rows
                    summary.chunks += 1
            summary.run = step.run  # None until the first value was sent (files of no rows)
            yield summary
        for _ in transformed:  # none left: this ends the run (its pool shut down, its stats kept)
            raise RuntimeError("the transform pool returned more rows than the files hold")
        for summary in summaries:
            summary.run = step.run
    finally:
        transformed.close()  # a failure or an early stop: the pool shuts down now


@dataclass(frozen=True)
class WholeFileTransform:
    """A task of a range: one file transformed start to end in one worker."""

    job: TransformJob
    chunk_values: int
    kernel: Kernel


def transform_whole_file(task: WholeFileTransform) -> TransformSummary:
    """Transform one cleaned file into its Parquet file in this process (runs in a pool
    worker)."""
    job = task.job
    summary = transform_to_parquet(
        job.cleaned_path,
        job.transformed_path,
        PoolSettings(1),
        task.chunk_values,
        kernel=task.kernel,
    )
    summary.run = None  # this worker's own serial run: the caller's run is the pool's
    return summary


def _transform_whole_files(
    jobs: list[TransformJob],
    pool_settings: PoolSettings,
    chunk_values: int,
    log: Any,
    kernel: Kernel,
) -> Iterator[TransformSummary]:
    pool_settings = settings_for_kernel(pool_settings, kernel, log)
    run = map_tasks(
        whole_file_settings(pool_settings),
        transform_whole_file,
        [WholeFileTransform(job, chunk_values, kernel) for job in jobs],
        log=log,
        label="transform",
        unit="values",
        describe=_cleaned_path,
        size_of=_cleaned_rows,
        count_items=_rows_of,
        preload_modules=kernel.worker_modules,
    )
    yield from files_summaries(run)


def _cleaned_path(task: WholeFileTransform) -> str:
    return str(task.job.cleaned_path)


def _cleaned_rows(task: WholeFileTransform) -> int:
    return pq.read_metadata(task.job.cleaned_path).num_rows


def _rows_of(summary: TransformSummary) -> int:
    return summary.rows


class CostSizedPieces:
    """Batches cut into the transform's tasks. Until a task has finished, tasks hold
    ``first_values``, then twice that, and so on (whole batches if None); then as many values
    as take TARGET_TASK_SECONDS at the cost per value ``seconds_per_value()`` measured last.
    A task never holds more than its batch (a chunk), nor fewer than one value, so cheap
    values go in whole chunks, as planned, and costly ones in pieces of a few."""

    def __init__(
        self,
        first_values: int | None,
        batch_values: int,
        seconds_per_value: Callable[[], float | None],
    ):
        self._values = first_values
        self._growing = first_values is not None
        self._batch_values = max(1, batch_values)
        self._seconds_per_value = seconds_per_value

    def cut(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            done = 0
            while done < batch.num_rows:
                piece = batch.slice(done, self._next_values(batch.num_rows - done))
                done += piece.num_rows
                yield piece

    def _next_values(self, rows_left: int) -> int:
        seconds = self._seconds_per_value()
        if seconds is not None:
            self._growing = False
            self._values = max(1, int(TARGET_TASK_SECONDS / seconds)) if seconds > 0 else None
        values = rows_left if self._values is None else min(self._values, rows_left)
        if self._growing:
            self._values = 2 * self._values
        return values

    def count_for(self, values: int) -> int:
        """The tasks ``values`` more would make, if tasks keep being cut as now."""
        whole_batches = -(-values // self._batch_values)
        if self._values is None or not self._growing:
            size = self._values or self._batch_values
            return max(whole_batches, -(-values // size))
        count, size = 0, self._values
        while values > 0:  # growing: a few dozen turns at most
            values, size, count = values - min(size, self._batch_values), 2 * size, count + 1
        return count


def _value_count(task: ValueChunk) -> int:
    return len(task.values)


def _row_count(columns: dict[str, list]) -> int:
    return len(columns["square"])


def _transformed_batch(cleaned: pa.RecordBatch, columns: dict[str, Any]) -> pa.RecordBatch:
    """The batch of one chunk: its line numbers and values, and the kernel's columns, given
    as lists (the reference) or as Arrow arrays already of the output's types."""
    arrays = [cleaned.column("line_number"), cleaned.column("value")]
    for name in TRANSFORMED_SCHEMA.names[2:]:
        column, wanted = columns[name], TRANSFORMED_SCHEMA.field(name).type
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column, wanted))
    return pa.record_batch(arrays, schema=TRANSFORMED_SCHEMA)
