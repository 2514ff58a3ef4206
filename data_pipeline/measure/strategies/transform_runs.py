"""The transform's strategies: every way the table runs it, from serial Python to numba on
the pool; each run takes a :class:`.Workload` and returns its columns."""

import queue
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pyarrow as pa

from data_pipeline.measure.strategies.pools import (
    DASK_NOTE,
    dask_pool,
    on_pool,
    process_context,
    project_pool,
)
from data_pipeline.measure.strategies.shared_columns import transform_in_shared_memory
from data_pipeline.measure.strategies.strategy import (
    FULL,
    NAIVE_SAMPLE,
    PYTHON_SAMPLE,
    RunSettings,
    Strategy,
    StrategyRunDetail,
    Workload,
)
from data_pipeline.measure.strategies.workers import naive_queue_worker, ready, transform_one
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba
from data_pipeline.numbers.kernels.numpy_kernel import transform_columns_numpy
from data_pipeline.numbers.stages.chunk_sizes import DASK_CHUNK_SCALE
from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS, transform_values
from data_pipeline.parallel.child_processes import native_threads_capped

# A worker that sends nothing back for this long has died: the naive fan-out gives up.
_NAIVE_RESULT_TIMEOUT_SECONDS = 120.0


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


def run_serial_python(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_values(workload.python_values), StrategyRunDetail())


def run_pool_python(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.python_values, settings.chunk_values)
    return on_pool(project_pool(settings), transform_values, chunks, _joined)


def run_pool_map(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with native_threads_capped(), process_context(settings).Pool(settings.workers) as pool:
        startup = time.perf_counter() - started
        rows = pool.map(transform_one, workload.python_values)
    return Outcome(_rows_as_columns(rows), StrategyRunDetail(startup))


def run_pool_imap(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with native_threads_capped(), process_context(settings).Pool(settings.workers) as pool:
        startup = time.perf_counter() - started
        rows = list(pool.imap(transform_one, workload.python_values, settings.chunk_values))
    return Outcome(_rows_as_columns(rows), StrategyRunDetail(startup))


def run_executor_map(workload: Workload, settings: RunSettings) -> Outcome:
    started = time.perf_counter()
    with (
        native_threads_capped(),
        ProcessPoolExecutor(settings.workers, mp_context=process_context(settings)) as executor,
    ):
        # The executor starts a process per submitted task up to its size: these start them.
        for future in [executor.submit(ready) for _ in range(settings.workers)]:
            future.result()
        startup = time.perf_counter() - started
        rows = list(
            executor.map(transform_one, workload.python_values, chunksize=settings.chunk_values)
        )
    return Outcome(_rows_as_columns(rows), StrategyRunDetail(startup))


def run_naive_queue(workload: Workload, settings: RunSettings) -> Outcome:
    context = process_context(settings)
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
    return Outcome(_rows_as_columns(rows), StrategyRunDetail(startup))


def run_threads(workload: Workload, settings: RunSettings) -> Outcome:
    with ThreadPoolExecutor(settings.workers) as executor:
        chunks = _chunks(workload.python_values, settings.chunk_values)
        parts = list(executor.map(transform_values, chunks))
    return Outcome(_joined(parts), StrategyRunDetail())


def run_dask_python(workload: Workload, settings: RunSettings) -> Outcome:
    # A Dask task costs far more than a local one: its chunks are larger, as on the backend.
    chunks = _chunks(workload.python_values, settings.chunk_values * DASK_CHUNK_SCALE)
    return on_pool(dask_pool(settings), transform_values, chunks, _joined)


def run_dask_numba(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return on_pool(dask_pool(settings), transform_columns_numba, chunks, _concatenated)


def run_joblib(workload: Workload, settings: RunSettings) -> Outcome:
    from joblib import Parallel, delayed

    chunks = _chunks(workload.python_values, settings.chunk_values)
    parts = Parallel(n_jobs=settings.workers)(delayed(transform_values)(chunk) for chunk in chunks)
    return Outcome(_joined(parts), StrategyRunDetail())


def run_numpy(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_columns_numpy(workload.values), StrategyRunDetail())


def run_pool_numpy(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return on_pool(project_pool(settings), transform_columns_numpy, chunks, _concatenated)


def run_numba(workload: Workload, settings: RunSettings) -> Outcome:
    return Outcome(transform_columns_numba(workload.values), StrategyRunDetail())


def run_pool_numba(workload: Workload, settings: RunSettings) -> Outcome:
    chunks = _chunks(workload.values, settings.compiled_chunk_values)
    return on_pool(project_pool(settings), transform_columns_numba, chunks, _concatenated)


def run_pool_numba_shared_memory(workload: Workload, settings: RunSettings) -> Outcome:
    with project_pool(settings) as pool:
        columns = transform_in_shared_memory(workload.values, pool, settings.compiled_chunk_values)
    return Outcome(columns, StrategyRunDetail(pool.stats.startup_seconds))


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
        PYTHON_SAMPLE, _dask_python_chunks, note=DASK_NOTE, requires="distributed",
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
        _compiled_chunks, note=DASK_NOTE, requires="distributed",
    ),
)  # fmt: skip
