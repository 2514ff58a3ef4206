"""The threads backend: the process pool's interface on threads of this process, only for
kernels that release the GIL, and outputs byte-identical to serial Python's."""

import itertools
import logging
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import PYTHON, installed, kernel_named
from data_pipeline.numbers.stages.chunk_sizes import (
    default_cleaning_chunk_bytes,
    default_transform_chunk_values,
)
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.verification import identical_parquet_files
from data_pipeline.parallel.errors import ChunkFailedError
from data_pipeline.parallel.insight import pool_insight
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.threads.thread_pool import ThreadPool
from data_pipeline_tests import pool_tasks
from data_pipeline_tests.test_kernels import HARD_VALUES


class Lines:
    """A log that keeps each line it is given."""

    def __init__(self):
        self.lines: list[tuple[int, str]] = []

    def log(self, level: int, message: str) -> None:
        self.lines.append((level, message))

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)


def test_results_come_back_in_input_order_with_every_thread_counted():
    tasks = [(value, 0.02 if value % 3 == 0 else 0.0) for value in range(12)]
    with ThreadPool(2) as pool:
        results = list(pool.map(pool_tasks.square_after_delay, tasks, count_items=lambda _: 1))
    assert [square for square, _ in results] == [value * value for value in range(12)]
    assert pool.stats.chunks == 12
    assert len(pool.stats.busy_seconds_by_worker) == 2, "each thread is a worker of its own"
    assert sum(pool.stats.items_by_worker.values()) == 12
    assert pool_insight(pool.stats)["worker_1_items"] >= 0


def test_the_settings_open_a_thread_pool_for_more_than_one_worker():
    with open_pool(PoolSettings(2, backend="threads"), chunk_count=5) as pool:
        assert isinstance(pool, ThreadPool)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
    with open_pool(PoolSettings(2, backend="threads"), chunk_count=1) as pool:
        assert not isinstance(pool, ThreadPool), "one chunk runs in the step, as on any backend"


def test_a_failing_task_is_named_and_no_thread_is_left_running():
    before = {thread.ident for thread in threading.enumerate()}
    with pytest.raises(ChunkFailedError) as raised, ThreadPool(2) as pool:
        list(pool.map(pool_tasks.fail_on_three, range(6), describe=lambda v: f"value {v}"))
    message = str(raised.value)
    assert message.startswith("value 3 failed in a pool thread: ValueError: cannot handle 3")
    assert "Traceback from the pool thread" in message and "fail_on_three" in message
    assert {thread.ident for thread in threading.enumerate()} <= before


def test_an_error_cancels_the_queued_tasks_and_waits_for_the_running_ones():
    started: list[int] = []

    def slow_or_failing(value: int) -> int:
        started.append(value)
        if value == 0:
            raise ValueError("the first fails")
        time.sleep(0.05)
        return value

    log = Lines()
    with pytest.raises(ChunkFailedError), ThreadPool(2, log) as pool:
        list(pool.map(slow_or_failing, range(100)))
    assert len(started) <= 4, "at most two tasks per thread were ever handed over"
    assert all(level == logging.WARNING for level, _ in log.lines)


def test_an_interrupt_cancels_the_queued_tasks_and_leaves_no_thread_running():
    started: list[int] = []

    def slow(value: int) -> int:
        started.append(value)
        time.sleep(0.1)
        return value

    log = Lines()
    with pytest.raises(KeyboardInterrupt), ThreadPool(2, log) as pool:
        for _ in pool.map(slow, range(50)):
            raise KeyboardInterrupt
    assert len(started) <= 4, "the queued tasks were cancelled"
    assert not [thread for thread in threading.enumerate() if "pool-thread" in thread.name]
    assert any("waits for its" in message for _, message in log.lines)


def test_records_and_printed_lines_of_the_threads_name_their_thread():
    log = Lines()
    with ThreadPool(2, log) as pool:
        list(pool.map(pool_tasks.log_and_square, [1, 3]))
        list(pool.map(pool_tasks.print_then_wait, [0.0]))
    messages = [message for _, message in log.lines]
    tagged = [message for message in messages if message.startswith("[thread ")]
    assert any("squaring 1" in message for message in tagged)
    assert (logging.WARNING, next(m for m in tagged if "suspicious" in m)) in log.lines
    assert any(" tid " in message and "stdout: printed by" in message for message in tagged)
    assert any("stderr: warned by" in message for message in tagged)


def test_records_of_other_threads_are_not_the_pools():
    log = Lines()
    with ThreadPool(2, log) as pool:
        logging.getLogger("data_pipeline_tests.elsewhere").warning("the owner speaks")
        list(pool.map(pool_tasks.log_beside_another_thread, [1]))
    messages = [message for _, message in log.lines]
    assert not any("the owner speaks" in message for message in messages)
    assert not any("another thread, during task" in message for message in messages)
    assert any("the task itself, 1" in message for message in messages)


def test_a_pool_run_on_threads_fills_the_insight():
    run = map_tasks(PoolSettings(2, backend="threads"), abs, range(-20, 0), label="abs")
    assert list(run) == list(range(20, 0, -1))
    metadata = run.metadata()
    assert metadata["workers"] == 2 and metadata["start_method"] == "thread"
    assert metadata["chunks"] == 20 and "worker_1_busy_seconds" in metadata


def test_the_resource_refuses_threads_for_the_python_kernel():
    with pytest.raises(Exception, match="kernel 'python' holds it"):
        ProcessPoolResource(backend="threads", kernel="python")
    assert ProcessPoolResource(backend="threads").backend == "threads"


def test_a_python_kernel_given_threads_runs_on_processes_and_says_so(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=200, seed=2, dirty_fraction=0.1)
    log = Lines()
    settings = PoolSettings(2, backend="threads", mode="serial")
    clean_to_parquet(
        source, tmp_path / "c.parquet", tmp_path / "r.parquet", settings, 1024, log, PYTHON
    )
    assert any("kernel 'python' holds it" in message for _, message in log.lines)


def test_maps_of_anyones_function_keep_processes_unless_it_releases_the_gil():
    resource = ProcessPoolResource(backend="threads", workers=2, mode="parallel")
    # What map() uses of a step's context: its log and its name.
    context = SimpleNamespace(log=logging.getLogger("team"), op_def=SimpleNamespace(name="team"))
    with_processes = resource.map(context, abs, [-1, -2, -3])
    assert list(with_processes) == [1, 2, 3]
    assert with_processes.stats.start_method != "thread"
    on_threads = resource.map(context, abs, [-1, -2, -3], releases_gil=True)
    assert list(on_threads) == [1, 2, 3]
    assert on_threads.stats.start_method == "thread"


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_threads_write_byte_identical_files_to_serial_python_on_hard_values(tmp_path, name):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=20_000, seed=7, dirty_fraction=0.3)
    with source.open("ab") as file:  # values only the reference settles exactly
        file.write(b"\n" + b"\n".join(str(value).encode() for value in HARD_VALUES))
    runs = {
        "python": (PYTHON, PoolSettings(1, mode="serial")),
        "threads": (kernel_named(name), PoolSettings(2, mode="parallel", backend="threads")),
    }
    outputs = {}
    for run, (kernel, settings) in runs.items():
        folder = tmp_path / run
        folder.mkdir()
        paths = [folder / f"{output}.parquet" for output in ("cleaned", "rejected", "transformed")]
        clean_to_parquet(source, paths[0], paths[1], settings, 8 * 1024, kernel=kernel)
        summary = transform_to_parquet(paths[0], paths[2], settings, 1000, kernel=kernel)
        if run == "threads":
            assert summary.run.stats.start_method == "thread"
            assert len(summary.run.stats.busy_seconds_by_worker) == 2
        outputs[run] = paths
    for reference, candidate in zip(outputs["python"], outputs["threads"], strict=True):
        verdict = identical_parquet_files(reference, candidate)
        assert verdict.passed, verdict.explanation


def test_threads_have_chunk_defaults_of_their_own():
    assert default_transform_chunk_values(PYTHON, "threads") == default_transform_chunk_values(
        PYTHON, "local"
    )
    assert default_cleaning_chunk_bytes("threads") == 1024 * 1024
    assert default_cleaning_chunk_bytes("local") == 256 * 1024, "the other backends keep theirs"


def test_the_numba_kernel_releases_the_gil_while_it_runs():
    """While a thread runs the compiled kernel, this thread keeps running Python: with the GIL
    held, it would stop for the whole call."""
    if not installed("numba"):
        pytest.skip("numba is not installed")
    from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba

    values = np.arange(1, 1_500_001, dtype=np.int64)
    transform_columns_numba(values[:10])  # loaded before timing
    kernel = threading.Thread(target=transform_columns_numba, args=(values,))
    ticks = [time.monotonic()]
    kernel.start()
    while kernel.is_alive():
        ticks.append(time.monotonic())
    kernel.join()
    call_seconds = ticks[-1] - ticks[0]
    longest_stop = max(later - earlier for earlier, later in itertools.pairwise(ticks))
    assert longest_stop < 0.5 * call_seconds, f"stopped {longest_stop:.3f} s of {call_seconds:.3f}"


def test_mode_auto_decides_between_serial_and_threads_with_the_threads_own_costs(tmp_path):
    settings = PoolSettings(2, mode="auto", backend="threads", costs_directory=str(tmp_path))
    run = map_tasks(settings, pool_tasks.sleep_for, [0.02] * 12, size_of=lambda _: 1)
    assert list(run) == [0.02] * 12
    assert run.decision is not None and run.decision.mode == "auto"
    kept = (tmp_path / "pool_costs.json").read_text()
    assert "on threads of one process" in kept
