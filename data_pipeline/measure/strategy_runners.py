"""Every way the strategies table runs the transform and the cleaning, as run functions and
the two lists of strategies; the pools' worker functions are in :mod:`.strategy_workers`."""

import multiprocessing
import queue
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from data_pipeline.measure.shared_columns import transform_in_shared_memory
from data_pipeline.measure.strategy_workers import (
    naive_queue_worker,
    ready,
    transform_one,
)
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.chunking import ByteRange
from data_pipeline.numbers.fast_cleaning import clean_byte_range_fast
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba
from data_pipeline.numbers.kernels.numpy_kernel import transform_columns_numpy
from data_pipeline.numbers.parsing import clean_byte_range
from data_pipeline.numbers.pipeline import DASK_CHUNK_SCALE
from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS, transform_values
from data_pipeline.parallel.dask_pool import DaskPool
from data_pipeline.parallel.pool import ProcessPool
from data_pipeline.parallel.worker import native_threads_capped

# One fork server serves every forkserver pool of a process, and it preloads only the modules
# named when it starts: every pool here names all of them, so whichever starts it first, the
# workers of every strategy fork with their kernels loaded (numba's from its disk cache).
PRELOAD_MODULES = (
    "data_pipeline.numbers.parsing",
    "data_pipeline.numbers.transforms",
    "data_pipeline.numbers.fast_cleaning",
    "data_pipeline.numbers.kernels.warm_numpy",
    "data_pipeline.numbers.kernels.warm_numba",
    "data_pipeline.measure.strategy_workers",
    "data_pipeline.measure.shared_columns",
    "data_pipeline.measure.warm_shared_memory",
)
# Where the transform strategies run: on all values, on the Python sample, or on the
# smaller sample of the one-item-at-a-time queue.
FULL, PYTHON_SAMPLE, NAIVE_SAMPLE = "full", "python sample", "naive sample"
# A worker that sends nothing back for this long has died: the naive fan-out gives up.
_NAIVE_RESULT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class RunSettings:
    """What every strategy of one table shares: workers, chunk sizes, start method."""

    workers: int
    chunk_values: int
    compiled_chunk_values: int
    cleaning_chunk_bytes: int
    start_method: str


@dataclass(frozen=True)
class RunDetail:
    """What a run knows about itself besides its time: its pool's start-up, if it has one."""

    startup_seconds: float | None = None


@dataclass(frozen=True)
class Workload:
    """The transform's input twice: int64 for the compiled kernels, Python ints for the rest."""

    values: np.ndarray
    python_values: array

    @classmethod
    def of(cls, values: np.ndarray) -> "Workload":
        values = np.ascontiguousarray(values, dtype=np.int64)
        return cls(values, array("q", values.tobytes()))

    def head(self, count: int) -> "Workload":
        return Workload(self.values[:count], self.python_values[:count])

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Strategy:
    """One row of the table. ``run(input, settings)`` does the whole job as a caller would
    (pools started and stopped inside) and returns the output with a :class:`RunDetail`;
    ``kernel`` names the serial row it is compared with (the one with ``serial=True``)."""

    key: str
    title: str
    kernel: str
    run: Callable[[Any, RunSettings], Outcome]
    serial: bool = False
    scope: str = FULL
    chunking: Callable[[RunSettings, int], str] = lambda settings, items: "-"
    note: str = ""
    requires: str | None = None  # an optional module; the row is skipped without it


# Helpers of the runs.


def _chunks(items: Sequence, size: int) -> list:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _joined(parts: list[dict[str, list]]) -> dict[str, list]:
    columns: dict[str, list] = {name: [] for name in TRANSFORM_COLUMNS}
    for part in parts:
        for name in TRANSFORM_COLUMNS:
            columns[name].extend(part[name])
    return columns


def _rows_as_columns(rows: list[tuple]) -> dict[str, list]:
    if not rows:
        return {name: [] for name in TRANSFORM_COLUMNS}
    columns = zip(*rows, strict=True)
    return {name: list(column) for name, column in zip(TRANSFORM_COLUMNS, columns, strict=True)}


def _concatenated(parts: list[dict[str, pa.Array]]) -> dict[str, pa.Array]:
    return {name: pa.concat_arrays([part[name] for part in parts]) for name in TRANSFORM_COLUMNS}


def _context(settings: RunSettings) -> Any:
    context = multiprocessing.get_context(settings.start_method)
    if settings.start_method == "forkserver":
        context.set_forkserver_preload(list(PRELOAD_MODULES))
    return context


def _project_pool(settings: RunSettings) -> ProcessPool:
    return ProcessPool(settings.workers, settings.start_method, PRELOAD_MODULES)


def _on_project_pool(
    settings: RunSettings, function: Callable, tasks: Sequence, joined: Callable
) -> Outcome:
    """``function`` over ``tasks`` on a pool started and stopped here, parts ``joined``."""
    with _project_pool(settings) as pool:
        parts = list(pool.map(function, tasks))
    return Outcome(joined(parts), RunDetail(pool.stats.startup_seconds))


def _on_dask(
    settings: RunSettings, function: Callable, tasks: Sequence, joined: Callable
) -> Outcome:
    """``function`` over ``tasks`` on the Dask backend: a LocalCluster started and closed
    here, as a step with ``backend: dask`` and no scheduler address does."""
    with DaskPool(settings.workers, preload_modules=PRELOAD_MODULES) as pool:
        parts = list(pool.map(function, tasks))
    return Outcome(joined(parts), RunDetail(pool.stats.startup_seconds))


# Transform runs: each takes a Workload and returns its columns (lists or Arrow arrays).


def run_serial_python(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_values(workload.python_values), RunDetail())


def run_pool_python(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.python_values, settings.chunk_values)
    return _on_project_pool(settings, transform_values, chunks, _joined)


def run_pool_map(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with native_threads_capped(), _context(settings).Pool(settings.workers) as pool:
        startup = time.perf_counter() - started
        rows = pool.map(transform_one, workload.python_values)
    return Outcome(_rows_as_columns(rows), RunDetail(startup))


def run_pool_imap(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with native_threads_capped(), _context(settings).Pool(settings.workers) as pool:
        startup = time.perf_counter() - started
        rows = list(pool.imap(transform_one, workload.python_values, settings.chunk_values))
    return Outcome(_rows_as_columns(rows), RunDetail(startup))


def run_executor_map(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with (
        native_threads_capped(),
        ProcessPoolExecutor(settings.workers, mp_context=_context(settings)) as executor,
    ):
        # The executor starts a process per submitted task up to its size: these start them.
        for future in [executor.submit(ready) for _ in range(settings.workers)]:
            future.result()
        startup = time.perf_counter() - started
        rows = list(
            executor.map(transform_one, workload.python_values, chunksize=settings.chunk_values)
        )
    return Outcome(_rows_as_columns(rows), RunDetail(startup))


def run_naive_queue(workload: Workload, settings: RunSettings) -> Outcome:
    context = _context(settings)
    inputs, outputs = context.Queue(), context.Queue()
    started = time.perf_counter()
    processes = [
        context.Process(target=naive_queue_worker, args=(inputs, outputs), daemon=True)
        for _ in range(settings.workers)
    ]
    with native_threads_capped():
        for process in processes:
            process.start()
    startup = time.perf_counter() - started
    try:
        for item in enumerate(workload.python_values):
            inputs.put(item)
        for _ in processes:
            inputs.put(None)
        rows: list = [None] * len(workload)
        for _ in range(len(workload)):
            index, row = outputs.get(timeout=_NAIVE_RESULT_TIMEOUT_SECONDS)
            rows[index] = row
    except queue.Empty as error:
        raise RuntimeError("a worker of the naive fan-out stopped answering") from error
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for channel in (inputs, outputs):
            channel.close()
            channel.cancel_join_thread()
    return Outcome(_rows_as_columns(rows), RunDetail(startup))


def run_threads(workload: Workload, settings: RunSettings) -> Outcome:
    with ThreadPoolExecutor(settings.workers) as executor:
        chunks = _chunks(workload.python_values, settings.chunk_values)
        parts = list(executor.map(transform_values, chunks))
    return Outcome(_joined(parts), RunDetail())


def stop_joblib_workers() -> None:
    """joblib keeps its loky workers for later calls: no pool process may outlive the
    benchmark, so end them (if joblib ran at all)."""
    if "joblib" in sys.modules:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)


def run_dask_python(workload: Workload, settings: RunSettings) -> Outcome:
    # A Dask task costs far more than a local one: its chunks are larger, as on the backend.
    chunks = _chunks(workload.python_values, settings.chunk_values * DASK_CHUNK_SCALE)
    return _on_dask(settings, transform_values, chunks, _joined)


def run_dask_numba(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return _on_dask(settings, transform_columns_numba, chunks, _concatenated)


def run_joblib(workload: Workload, settings: RunSettings) -> Outcome:
    from joblib import Parallel, delayed

    chunks = _chunks(workload.python_values, settings.chunk_values)
    parts = Parallel(n_jobs=settings.workers)(delayed(transform_values)(chunk) for chunk in chunks)
    return Outcome(_joined(parts), RunDetail())


def run_numpy(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_columns_numpy(workload.values), RunDetail())


def run_pool_numpy(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return _on_project_pool(settings, transform_columns_numpy, chunks, _concatenated)


def run_numba(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_columns_numba(workload.values), RunDetail())


def run_pool_numba(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return _on_project_pool(settings, transform_columns_numba, chunks, _concatenated)


def run_pool_numba_shared_memory(workload: Workload, settings: RunSettings) -> Outcome:
    with _project_pool(settings) as pool:
        columns = transform_in_shared_memory(workload.values, pool, settings.compiled_chunk_values)
    return Outcome(columns, RunDetail(pool.stats.startup_seconds))


# Cleaning runs: each takes the byte ranges and returns one CleanedChunk per range.


def run_clean(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return Outcome([clean_byte_range(byte_range) for byte_range in ranges], RunDetail())


def run_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return Outcome([clean_byte_range_fast(byte_range) for byte_range in ranges], RunDetail())


def run_pool_clean(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return _on_project_pool(settings, clean_byte_range, ranges, list)


def run_pool_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return _on_project_pool(settings, clean_byte_range_fast, ranges, list)


def run_dask_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return _on_dask(settings, clean_byte_range_fast, ranges, list)


def _python_chunks(settings: RunSettings, items: int) -> str:
    return f"{settings.chunk_values:,}"


def _dask_python_chunks(settings: RunSettings, items: int) -> str:
    return f"{settings.chunk_values * DASK_CHUNK_SCALE:,}"


def _compiled_chunks(settings: RunSettings, items: int) -> str:
    return f"{min(items, settings.compiled_chunk_values):,}"


def _default_pool_chunks(settings: RunSettings, items: int) -> str:
    # What Pool.map picks when not told: about four chunks per worker.
    chunk, extra = divmod(items, 4 * settings.workers)
    return f"default ({chunk + bool(extra):,})"


_DASK_NOTE = (
    "backend: dask without a scheduler address: each run starts a LocalCluster (scheduler, "
    "nannies, worker processes) on 127.0.0.1 and closes it; chunks as futures"
)

TRANSFORM_STRATEGIES = (
    Strategy("python", "serial Python", "python", run_serial_python, True, PYTHON_SAMPLE),
    Strategy(
        "pool_python", "project pool, Python", "python", run_pool_python, False, PYTHON_SAMPLE,
        _python_chunks,
    ),
    Strategy(
        "pool_map", "Pool.map", "python", run_pool_map, False, PYTHON_SAMPLE,
        _default_pool_chunks,
    ),
    Strategy(
        "pool_imap", "Pool.imap", "python", run_pool_imap, False, PYTHON_SAMPLE, _python_chunks
    ),
    Strategy(
        "executor_map", "ProcessPoolExecutor.map", "python", run_executor_map, False,
        PYTHON_SAMPLE, _python_chunks,
    ),
    Strategy(
        "naive_queue", "Process + Queue, one item at a time", "python", run_naive_queue, False,
        NAIVE_SAMPLE, lambda settings, items: "1",
    ),
    Strategy(
        "threads", "thread pool (GIL)", "python", run_threads, False, PYTHON_SAMPLE,
        _python_chunks,
    ),
    Strategy(
        "joblib", "joblib Parallel", "python", run_joblib, False, PYTHON_SAMPLE, _python_chunks,
        note="joblib keeps its workers between calls: no start-up after the warm-up",
        requires="joblib",
    ),
    Strategy(
        "dask_python", "Dask LocalCluster, Python", "python", run_dask_python, False,
        PYTHON_SAMPLE, _dask_python_chunks, note=_DASK_NOTE, requires="distributed",
    ),
    Strategy("numpy", "numpy, one process", "numpy", run_numpy, True),
    Strategy(
        "pool_numpy", "numpy chunks, project pool", "numpy", run_pool_numpy, False, FULL,
        _compiled_chunks,
    ),
    Strategy("numba", "numba, one process", "numba", run_numba, True),
    Strategy(
        "pool_numba", "numba chunks, project pool, results pickled", "numba", run_pool_numba,
        False, FULL, _compiled_chunks,
    ),
    Strategy(
        "pool_numba_shared_memory", "numba chunks, project pool, shared memory", "numba",
        run_pool_numba_shared_memory, False, FULL, _compiled_chunks,
        note=(
            "input and results in shared memory: workers write the columns in Arrow's layout "
            "and the step uses them where they were written, nothing copied or converted"
        ),
    ),
    Strategy(
        "dask_numba", "numba chunks, Dask LocalCluster", "numba", run_dask_numba, False, FULL,
        _compiled_chunks, note=_DASK_NOTE, requires="distributed",
    ),
)  # fmt: skip


def _byte_ranges(settings: RunSettings, items: int) -> str:
    return f"{settings.cleaning_chunk_bytes // 1024:,} KiB"


CLEANING_STRATEGIES = (
    Strategy("clean", "serial clean_byte_range", "python", run_clean, True, FULL, _byte_ranges),
    Strategy(
        "clean_fast", "serial clean_byte_range_fast", "fast", run_clean_fast, True, FULL,
        _byte_ranges,
    ),
    Strategy(
        "pool_clean", "clean_byte_range, project pool", "python", run_pool_clean, False, FULL,
        _byte_ranges,
    ),
    Strategy(
        "pool_clean_fast", "clean_byte_range_fast, project pool", "fast", run_pool_clean_fast,
        False, FULL, _byte_ranges,
    ),
    Strategy(
        "dask_clean_fast", "clean_byte_range_fast, Dask LocalCluster", "fast",
        run_dask_clean_fast, False, FULL, _byte_ranges, note=_DASK_NOTE, requires="distributed",
    ),
)  # fmt: skip
