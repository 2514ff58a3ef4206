"""Worker log records reach the Dagster run log, under the step that owns the pool."""

import logging
import multiprocessing
import re
import threading
import time

import dagster as dg
import pytest

from data_pipeline.parallel.errors import WorkerDiedError
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.progress import Progress
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.worker_logs import WorkerLogRelay
from data_pipeline_tests.deadlines import fails_if_it_hangs
from data_pipeline_tests.pool_tasks import (
    log_a_lot,
    log_and_square,
    log_beside_another_thread,
    log_info_here_and_in_another_thread,
    log_then_die,
    own_pid,
)


class PoolConfig(dg.Config):
    workers: int = 2


@dg.asset
def squares(context: dg.AssetExecutionContext, config: PoolConfig) -> list[int]:
    with ProcessPool(config.workers, log=context.log) as pool:
        return list(pool.map(log_and_square, range(5)))


@dg.asset
def counted(context: dg.AssetExecutionContext) -> None:
    progress = Progress(context.log, "counting", total_chunks=4, unit="values", min_seconds=0)
    for _ in range(4):
        progress.update(1000)


@dg.asset
def doomed(context: dg.AssetExecutionContext) -> None:
    with ProcessPool(2, log=context.log) as pool:
        list(pool.map(log_then_die, range(4)))


def run_log(asset, workers: int = 2) -> tuple[dg.ExecuteInProcessResult, list]:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [asset],
        instance=instance,
        run_config={"ops": {asset.key.path[-1]: {"config": {"workers": workers}}}}
        if asset is squares
        else None,
        raise_on_error=False,
    )
    entries = [
        entry for entry in instance.all_logs(result.run_id) if entry.is_dagster_event is False
    ]
    return result, entries


@pytest.mark.parametrize("workers", [2, 1])
def test_worker_log_records_reach_the_run_log_with_worker_and_level(workers):
    result, entries = run_log(squares, workers)
    assert result.success
    forwarded = {
        entry.user_message: entry
        for entry in entries
        if "data_pipeline_tests.pool_tasks" in entry.user_message
    }
    messages = "\n".join(forwarded)
    for value in range(5):
        assert f"data_pipeline_tests.pool_tasks: squaring {value}" in messages
    [warning] = [entry for message, entry in forwarded.items() if "suspicious" in message]
    assert warning.level == logging.WARNING
    assert warning.step_key == "squares"
    worker = "[worker " if workers > 1 else "[in-process]"
    assert all(worker in message for message in forwarded), messages


def test_a_record_logged_just_before_a_worker_dies_is_not_lost():
    result, entries = run_log(doomed)
    assert not result.success
    messages = "\n".join(entry.user_message for entry in entries)
    assert "last words of task 1" in messages
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "exited with code 9" in str(failure.event_specific_data.error)


def collecting_logger(name: str) -> tuple[logging.Logger, list[str]]:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger(name)
    log.addHandler(Collect())
    log.setLevel(logging.INFO)
    return log, records


def test_records_reach_a_plain_logger_including_a_dying_workers_last_words():
    log, records = collecting_logger("test_records_reach_a_plain_logger")
    with ProcessPool(2, log=log) as pool:
        list(pool.map(log_and_square, range(3)))
    count = len(records)
    assert len([record for record in records if "pool_tasks: squaring" in record]) == 3
    with pytest.raises(WorkerDiedError), ProcessPool(2, log=log) as pool:
        list(pool.map(log_then_die, range(4)))
    assert any("last words of task 1" in record for record in records[count:])


def test_a_one_worker_pool_forwards_what_its_task_logs_and_nothing_else():
    # The task runs in this process, which has other threads (a Dagster step has several):
    # their records, and this thread's outside a task, are not the pool's.
    log, records = collecting_logger("test_a_one_worker_pool_forwards")
    elsewhere = logging.getLogger("data_pipeline_tests.elsewhere")
    with ProcessPool(1, log=log) as pool:
        elsewhere.warning("this thread, before the task")
        assert list(pool.map(log_beside_another_thread, [7])) == [7]
        other = threading.Thread(target=elsewhere.warning, args=("another thread, after",))
        other.start()
        other.join()
    assert records == ["[in-process] data_pipeline_tests.pool_tasks: the task itself, 7"]


def test_a_one_worker_pool_leaves_what_other_root_handlers_see_unchanged():
    # The root logger is at WARNING with a handler of its own: an INFO record, from the task
    # or from another thread, never reached that handler before, and must not now, although
    # the pool forwards the task's INFO record to its own log.
    log, forwarded = collecting_logger("test_a_one_worker_pool_leaves")
    root, seen_by_root = logging.getLogger(), []
    handler = logging.Handler()
    handler.emit = lambda record: seen_by_root.append(record.getMessage())
    previous_level = root.level
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        with ProcessPool(1, log=log, worker_log_level=logging.DEBUG) as pool:
            assert list(pool.map(log_info_here_and_in_another_thread, [3])) == [3]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    assert forwarded == ["[in-process] data_pipeline_tests.pool_tasks: the task's info, 3"]
    assert seen_by_root == []
    assert handler.filters == [], "the handler is given back as it was"


def test_progress_lines_reach_the_run_log():
    _, entries = run_log(counted)
    lines = [entry.user_message for entry in entries if entry.user_message.startswith("counting")]
    assert len(lines) == 4
    assert lines[-1].startswith("counting: 4/4 chunks (100%)")
    assert all(entry.step_key == "counted" for entry in entries if entry.user_message in lines)


def test_a_log_that_fails_cannot_block_the_workers():
    class BrokenLog:
        def log(self, level, message):
            raise RuntimeError("database is locked")

        def warning(self, message):
            raise RuntimeError("database is locked")

    # Blocked workers would wait forever on their full log pipes.
    with fails_if_it_hangs(60), ProcessPool(2, log=BrokenLog()) as pool:
        assert list(pool.map(log_a_lot, range(4))) == [0, 1, 2, 3]


def test_closing_a_relay_whose_pool_never_started_does_not_wait_for_its_timeout():
    # As when a pool is interrupted while its workers start: this process still holds the
    # pipes' write ends, which must not keep the forwarding thread waiting for their end.
    relay = WorkerLogRelay(multiprocessing.get_context("spawn"), logging.getLogger(__name__))
    for _ in range(2):  # write ends this process still holds, as workers never started
        relay.new_pipe()
    started = time.monotonic()
    relay.close(timeout=60)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_each_worker_says_at_info_when_it_starts_and_the_run_what_it_did(start_method):
    log, records = collecting_logger(f"test_each_worker_says_{start_method}")
    settings = PoolSettings(2, start_method, mode="parallel")
    run = map_tasks(settings, own_pid, range(6), log=log, label="squaring")
    pids = set(run)
    started = [
        record for record in records if "data_pipeline.parallel.local.worker: started" in record
    ]
    assert len(started) == 2, records
    for pid in pids:
        assert any(
            f"pid {pid}] data_pipeline.parallel.local.worker: started (pid {pid}, {start_method})"
            in record
            for record in started
        ), started
        [done] = [record for record in records if f"worker pid {pid} done:" in record]
        assert re.fullmatch(
            rf"squaring: worker pid {pid} done: \d chunks, \d tasks, busy .+ s", done
        )
