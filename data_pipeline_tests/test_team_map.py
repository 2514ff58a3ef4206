"""A team's own function on the pool's `map`, used carelessly: a task past its deadline
stops only its worker and is named, a retry on a fresh worker, exceptions that cannot
travel, results that do not pickle, sys.exit and os._exit, each named with its task;
workers recycled after N tasks or stopped over a memory limit; a generator read lazily;
results as they finish; and one step's maps sharing their workers, none left after it."""

import multiprocessing
import re
import time

import dagster as dg
import pytest

from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.parallel.errors import ChunkFailedError, TaskTimeoutError, WorkerDiedError
from data_pipeline.parallel.local import worker_map
from data_pipeline.parallel.local.process_pool import ProcessPool, workers_kept
from data_pipeline.parallel.local.worker_map import MAX_BATCH_TASKS, WINDOW_PER_WORKER
from data_pipeline.parallel.pool_run import READ_AHEAD_TASKS, map_tasks
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.deadlines import fails_if_it_hangs
from data_pipeline_tests.processes import alive
from data_pipeline_tests.team_tasks import (
    allocate_briefly,
    exit_on,
    hang_on,
    hang_once,
    hard_exit_on,
    hold_memory,
    kilobytes,
    lock_on,
    own_pid,
    raise_odd_on,
    slow_square,
    square,
)

PARALLEL = PoolSettings(2, mode="parallel")


def no_process_left(pids) -> bool:
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids) and multiprocessing.active_children() == []


def test_a_task_past_its_deadline_fails_in_time_naming_it_while_the_other_worker_goes_on():
    tasks = [(value, 5) for value in range(12)]
    started = time.monotonic()
    run = map_tasks(PARALLEL, hang_on, tasks, task_timeout=1.0)
    results = []
    with fails_if_it_hangs(30), pytest.raises(TaskTimeoutError) as failure:
        results.extend(run)
    assert time.monotonic() - started < 1.0 + 5
    assert str(failure.value).startswith(
        "task #5 ((5, 5)) ran past its deadline of 1 s (task_timeout) in pool worker "
    )
    assert results == list(range(5)), "the tasks before it came back, in order"
    assert no_process_left(run.stats.busy_seconds_by_worker)


def test_a_task_past_its_deadline_is_retried_on_a_fresh_worker(tmp_path, caplog):
    tasks = [(value, str(tmp_path / "hung once")) for value in range(6)]
    with fails_if_it_hangs(30):
        run = map_tasks(PARALLEL, hang_once, tasks, task_timeout=1.0, task_retries=1)
        results = list(run)
    assert [value for value, _ in results] == list(range(6))
    first_workers = {pid for value, pid in results if value in (0, 1)}
    assert results[2][1] not in first_workers, "the retry ran on the worker started for it"
    assert re.search(
        r"task #2 \(\(2, '.*'\)\) ran past its deadline of 1 s .*retrying it on a fresh worker "
        r"\(1 of 1\)",
        caplog.text,
    )


@pytest.mark.parametrize(
    ("function", "first_line"),
    [
        (
            raise_odd_on,
            "task #13 (13) failed in a pool worker: data_pipeline_tests.team_tasks."
            "NeedsCodeAndDetail: code 7: the thirteenth",
        ),
        (
            lock_on,
            "task #13 (13) returned a result that cannot be sent back from the pool worker: it "
            "does not pickle (TypeError: cannot pickle '_thread.lock' object)",
        ),
        (
            exit_on,
            "task #13 (13) called sys.exit(3) in a pool worker: a task must return a result or "
            "raise an exception",
        ),
    ],
)
def test_what_a_task_does_wrong_is_named_with_the_task(function, first_line):
    run = map_tasks(PARALLEL, function, range(20))
    with fails_if_it_hangs(30), pytest.raises(ChunkFailedError) as failure:
        list(run)
    assert str(failure.value).startswith(first_line)
    assert no_process_left(run.stats.busy_seconds_by_worker)


def test_an_exception_that_cannot_travel_keeps_its_traceback_as_text():
    with pytest.raises(ChunkFailedError) as failure:
        list(map_tasks(PARALLEL, raise_odd_on, range(20)))
    message = str(failure.value)
    assert 'raise NeedsCodeAndDetail(7, "the thirteenth")' in message
    assert "could not travel back" in message


def test_os_exit_in_a_task_is_named_as_such_after_its_retry():
    settings = PoolSettings(2, mode="parallel", restarts_on_worker_death=1)
    with fails_if_it_hangs(30), pytest.raises(WorkerDiedError) as failure:
        list(map_tasks(settings, hard_exit_on, range(20)))
    assert re.match(
        r"pool worker \d+ exited with code 3 while running task #13 \(13\) \(tried 2 times\)\. "
        r"A task that calls os\._exit\(3\) ends its worker this way\.$",
        str(failure.value),
    )


def test_workers_are_replaced_by_fresh_ones_after_max_tasks_per_worker():
    with ProcessPool(2, max_tasks_per_worker=3) as pool:
        pids = list(pool.map(own_pid, range(12), batching=False))
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert len(counts) >= 4 and max(counts.values()) <= 3, counts
    assert no_process_left(pool.worker_pids)


def test_a_worker_over_its_memory_limit_is_stopped_and_its_task_named_out_of_memory():
    with (
        fails_if_it_hangs(30),
        pytest.raises(WorkerDiedError, match=r"^task #1 \(200\) ran out of memory in pool "),
        ProcessPool(2, memory_limit_mb=150) as pool,
    ):
        list(pool.map(hold_memory, [1, 200, 1]))
    assert no_process_left(pool.worker_pids)


def test_workers_that_would_not_fit_in_memory_at_their_peak_are_fewer(monkeypatch, caplog):
    # Each task peaks at 100 MiB: with (as if) nothing more available, one worker fits.
    monkeypatch.setattr(worker_map, "available_memory_bytes", lambda: 0)
    with ProcessPool(2) as pool:
        pids = list(pool.map(allocate_briefly, [100] * 12, batching=False))
    assert "of the 2 workers fit, so the others finish their batches and stop" in caplog.text
    assert len(set(pids[-4:])) == 1, "the last tasks ran on the one worker left"
    assert no_process_left(pool.worker_pids)


def test_a_generator_is_read_lazily_a_bounded_way_ahead_of_its_results():
    read = [0]

    def tasks():
        for value in range(READ_AHEAD_TASKS * 5):
            read[0] += 1
            yield value

    run = map_tasks(PARALLEL, square, tasks())
    most_ahead = 0
    for done, result in enumerate(run, start=1):
        assert result == (done - 1) ** 2
        most_ahead = max(most_ahead, read[0] - done)
    assert done == READ_AHEAD_TASKS * 5
    # The read-ahead, then at most a window of batches per worker in flight.
    assert most_ahead <= READ_AHEAD_TASKS + 2 * WINDOW_PER_WORKER * MAX_BATCH_TASKS


def test_unordered_results_come_as_they_finish_each_exactly_once():
    run = map_tasks(PARALLEL, slow_square, range(500), ordered=False)
    results = list(run)
    assert sorted(results) == [value * value for value in range(500)]


def test_large_results_come_back_whole():
    results = list(map_tasks(PARALLEL, kilobytes, [256] * 40))
    assert all(result == bytes(256 * 1024) for result in results)


@dg.asset
def two_maps(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource):
    first = set(process_pool.map(context, own_pid, range(8)))
    second = set(process_pool.map(context, own_pid, range(8)))
    return dg.MaterializeResult(
        metadata={"first": str(sorted(first)), "second": str(sorted(second))}
    )


def test_a_map_left_early_does_not_hand_its_results_to_the_next_one():
    with workers_kept():
        first = iter(map_tasks(PARALLEL, slow_square, range(200)))
        assert next(first) == 0
        first.close()  # batches still in flight on the workers
        assert list(map_tasks(PARALLEL, square, range(300))) == [v * v for v in range(300)]


def test_the_maps_of_one_step_share_its_workers_and_none_outlive_the_step():
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [two_maps],
            instance=instance,
            resources={"process_pool": ProcessPoolResource(mode="parallel", workers=2)},
        )
    metadata = result.asset_materializations_for_node("two_maps")[0].metadata
    first, second = metadata["first"].value, metadata["second"].value
    assert first == second, "the second map ran on the first map's workers"
    assert no_process_left(eval(first))
