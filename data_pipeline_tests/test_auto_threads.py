"""`mode: auto` on backend local with a kernel that releases the GIL weighs serial, threads and
processes, each from its own measured costs; the python kernel and anyone's function keep
serial or processes; a step auto put on threads writes the reference's bytes."""

import json
import time
from dataclasses import asdict

import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import PYTHON, installed, kernel_named
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.verification import identical_parquet_files
from data_pipeline.parallel import pool_decision
from data_pipeline.parallel.calibration import COSTS_FILE, PoolShape, corrections, learn
from data_pipeline.parallel.corrections import Corrections
from data_pipeline.parallel.decision import Decision, PoolCosts, WorkSample
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.pool_choice import predicted_among
from data_pipeline.parallel.pool_run import (
    SAMPLE_SECONDS,
    THREADS_SAMPLE_SECONDS,
    _Sampling,
    map_tasks,
)
from data_pipeline.parallel.settings import DEFAULT_START_METHOD, PoolSettings
from data_pipeline.parallel.threads.thread_pool import ThreadPool
from data_pipeline_tests.test_kernels import HARD_VALUES

NOW = time.time()
# Processes: 0.3 s to start cold, 0.3 ms a task, and moving results back costs.
PROCESSES = PoolCosts(2, 0.3, 0.05, 3e-4, NOW, transfer_seconds_per_byte=1e-9)
# Threads: a millisecond to start, 30 µs a task.
THREADS = PoolCosts(2, 1e-3, 1e-3, 3e-5, NOW)
# A pool that would take longer than any work here: never the faster choice.
NEVER_FASTER = PoolCosts(2, 100.0, 100.0, 0.1, NOW)


def numba_sample() -> WorkSample:
    """What the numba transform's sample measures: ~0.75 µs a value of compiled work, 0.1 µs
    of the step's own on each result, and a pickled result of ~40 bytes a value."""
    return WorkSample(10_000, 7.5e-3, 2e-3, 1e-3, 400_000, owner_seconds=1e-3)


def choose(
    process_costs: PoolCosts,
    thread_costs: PoolCosts,
    items: int = 400_000,
    learned: Corrections | None = None,
) -> Decision:
    return predicted_among(
        2,
        items,
        -(-items // 50_000),
        "values",
        numba_sample(),
        lambda workers: process_costs,
        lambda workers: thread_costs,
        warm=False,
        cpus=2,
        corrections=lambda size: learned or Corrections(size),
    )


def test_auto_picks_threads_for_numba_at_a_days_size_when_they_are_faster():
    decision = choose(PROCESSES, THREADS)
    assert decision.backend == "threads" and decision.workers == 2, decision.reason
    assert decision.choice == "threads"
    assert decision.reason.startswith("threads: predicted for 400,000 values: serial 340.0 ms")
    assert decision.predicted_threads_seconds < decision.predicted_serial_seconds / 1.1
    assert decision.predicted_threads_seconds < decision.predicted_parallel_seconds
    assert decision.metadata()["decision"] == "threads"
    assert decision.metadata()["predicted_threads_seconds"] > 0


def test_auto_keeps_serial_or_processes_when_threads_are_not_faster():
    assert choose(PROCESSES, NEVER_FASTER).choice == "serial"
    # 4,000,000 values, serial and processes run here as modelled: processes pay for
    # themselves, slow threads do not.
    as_modelled = Corrections(22, (1.0, 1.0), (1.0, 1.0))
    decision = choose(PROCESSES, NEVER_FASTER, 4_000_000, as_modelled)
    assert decision.choice == "parallel" and decision.backend is None
    assert decision.reason.startswith("processes: ")


def test_too_little_work_stays_serial_without_reading_the_threads_costs():
    def never(workers: int) -> PoolCosts:
        raise AssertionError("costs read for work no pool can speed up")

    decision = predicted_among(
        2, 2_000, 2, "values", numba_sample(), never, never, warm=False, cpus=2
    )
    assert decision.choice == "serial" and decision.backend is None


def test_threads_are_weighed_below_the_work_a_process_pool_needs():
    # 8,000 values: 6.8 ms of work, less than any process pool starts in, not threads.
    decision = predicted_among(
        2,
        8_000,
        4,
        "values",
        numba_sample(),
        lambda workers: NEVER_FASTER,
        lambda workers: THREADS,
        warm=False,
        cpus=2,
    )
    assert decision.choice == "threads", decision.reason
    assert "processes not weighed" in decision.reason


def test_the_sample_is_shorter_where_threads_are_weighed():
    def run_with(**options):
        run = map_tasks(PoolSettings(2, mode="auto"), abs, [-1, -2, -3], **options)
        return _Sampling(run, iter([]), [])._sample_seconds

    assert run_with(releases_gil=True) == THREADS_SAMPLE_SECONDS < SAMPLE_SECONDS
    assert run_with() == SAMPLE_SECONDS


def test_a_run_on_threads_teaches_the_threads_own_correction(tmp_path):
    decision = choose(PROCESSES, THREADS)
    learned = decision.corrections.after(decision, 2 * decision.predicted_threads_seconds)
    assert learned.runs("threads") == 1 and learned.factor("threads") == pytest.approx(2.0)
    assert learned.runs("serial") == learned.runs("parallel") == 0
    learn(tmp_path, "a step", decision, 2 * decision.predicted_threads_seconds)
    kept = corrections(tmp_path, "a step", learned.size_class)
    assert kept.threads_ratios == learned.threads_ratios
    assert kept.threads_seconds_per_item == learned.threads_seconds_per_item


def test_corrections_kept_before_threads_were_weighed_still_read(tmp_path):
    old = {"serial_ratios": [1.2], "parallel_ratios": [0.9]}
    old |= {"serial_seconds_per_item": [1e-6], "parallel_seconds_per_item": [2e-6]}
    (tmp_path / COSTS_FILE).write_text(json.dumps({"corrections by size": {"s": {"19": old}}}))
    assert corrections(tmp_path, "s", 19) == Corrections(19, (1.2,), (0.9,), (1e-6,), (2e-6,))


def test_the_pool_opened_follows_the_decisions_backend():
    on_threads = Decision("auto", 2, "threads: chosen", backend="threads")
    with open_pool(PoolSettings(2), 4, decision=on_threads) as pool:
        assert isinstance(pool, ThreadPool)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]


def test_auto_never_weighs_threads_for_the_python_kernel(tmp_path, monkeypatch):
    def refuse(*arguments, **keywords):
        raise AssertionError("threads weighed for a kernel that holds the GIL")

    monkeypatch.setattr(pool_decision, "predicted_among", refuse)
    assert not PYTHON.releases_gil
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=30_000, seed=5, dirty_fraction=0.05)
    settings = PoolSettings(2, mode="auto", costs_directory=str(tmp_path))
    paths = [tmp_path / f"{name}.parquet" for name in ("cleaned", "rejected", "transformed")]
    clean_to_parquet(source, paths[0], paths[1], settings, 16 * 1024, kernel=PYTHON)
    summary = transform_to_parquet(paths[0], paths[2], settings, 2_000, kernel=PYTHON)
    assert summary.decision.backend is None and summary.decision.choice != "threads"


def keep_costs(directory, kernel, processes: PoolCosts, threads: PoolCosts) -> None:
    """This machine's costs, as if measured: processes and threads under their own keys."""
    shapes = {
        backend: PoolShape(2, DEFAULT_START_METHOD, tuple(kernel.worker_modules), backend)
        for backend in ("local", "threads")
    }
    kept = {
        shapes["local"].key(): asdict(processes),
        shapes["threads"].key(): asdict(threads),
    }
    (directory / COSTS_FILE).write_text(json.dumps(kept))


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_a_step_auto_put_on_threads_writes_the_references_bytes(tmp_path, monkeypatch, name):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    kernel = kernel_named(name)
    # Processes never faster, threads cheap, CPUs to spare: auto must choose threads.
    keep_costs(tmp_path, kernel, NEVER_FASTER, THREADS)
    monkeypatch.setattr(pool_decision, "available_cpus_recently", lambda: 4)
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=300_000, seed=11, dirty_fraction=0.1)
    with source.open("ab") as file:  # values only the reference settles exactly
        file.write(b"\n" + b"\n".join(str(value).encode() for value in HARD_VALUES))
    runs = {
        "python": (PYTHON, PoolSettings(1, mode="serial")),
        "auto": (kernel, PoolSettings(2, mode="auto", costs_directory=str(tmp_path))),
    }
    outputs = {}
    for run, (chosen, settings) in runs.items():
        folder = tmp_path / run
        folder.mkdir()
        paths = [folder / f"{output}.parquet" for output in ("cleaned", "rejected", "transformed")]
        clean_to_parquet(source, paths[0], paths[1], settings, 256 * 1024, kernel=chosen)
        summary = transform_to_parquet(paths[0], paths[2], settings, 20_000, kernel=chosen)
        if run == "auto":
            assert summary.decision.choice == "threads", summary.decision.reason
            assert summary.run.stats.start_method == "thread"
            assert summary.run.metadata()["decision"] == "threads"
        outputs[run] = paths
    for reference, candidate in zip(outputs["python"], outputs["auto"], strict=True):
        verdict = identical_parquet_files(reference, candidate)
        assert verdict.passed, verdict.explanation
