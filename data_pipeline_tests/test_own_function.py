"""Anyone's function on the pool, through the resource's public `map`: results in order,
logs and prints in the step's log while the task still runs (tagged with the worker), one
huge line that does not block, a failing task named, and functions that cannot reach a
worker refused before any worker starts."""

import functools
import logging

import dagster as dg
import pytest

from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.parallel.errors import ChunkFailedError
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.sendable import NotSendableError, check_sendable
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.worker_logs import MAX_LINE_CHARACTERS
from data_pipeline_tests.pool_tasks import (
    print_a_megabyte,
    print_then_wait,
    raise_for_three,
    square_after_delay,
)

WAIT_SECONDS = 1.5


@dg.asset
def two_talking_workers(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource):
    run = process_pool.map(context, print_then_wait, [WAIT_SECONDS, WAIT_SECONDS])
    pids = list(run)
    return dg.MaterializeResult(metadata={"pids": str(pids), **run.metadata()})


@dg.asset
def fails_on_three(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource):
    run = process_pool.map(context, raise_for_three, [1, 2, 3, 4], describe=lambda v: f"value {v}")
    return dg.MaterializeResult(metadata={"sum": sum(run)})


def _pool(**settings) -> ProcessPoolResource:
    return ProcessPoolResource(mode="parallel", workers=2, **settings)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_prints_and_logs_of_two_workers_reach_the_step_log_while_they_run(start_method):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [two_talking_workers],
            instance=instance,
            resources={"process_pool": _pool(start_method=start_method)},
        )
        assert result.success
        records = instance.all_logs(result.run_id)
    step_end = next(
        record.timestamp
        for record in records
        if record.dagster_event and record.dagster_event.event_type_value == "STEP_SUCCESS"
    )
    said = {}
    for record in records:
        message = record.user_message
        for what in ("stdout: printed by", "stderr: warned by", "team.task: logged by"):
            if message.startswith("[worker") and what in message:
                said.setdefault(what, []).append(record)
    for what, lines in said.items():
        assert len({line.user_message for line in lines}) == 2, f"two workers' {what!r}"
        for line in lines:  # it arrived while the task still waited, not at its end
            assert line.timestamp < step_end - WAIT_SECONDS / 2, line.user_message
    assert len(said) == 3
    stderr_levels = {line.level for line in said["stderr: warned by"]}
    assert stderr_levels == {logging.WARNING}


def test_a_megabyte_on_one_line_does_not_block_and_arrives_whole():
    received = []

    class Log:
        def log(self, level, message):
            received.append(message)

        def __getattr__(self, name):
            return lambda message: None

    run = map_tasks(PoolSettings(2, mode="parallel"), print_a_megabyte, [1_000_000, 10], log=Log())
    assert list(run) == [1_000_000, 10]
    pieces = [message.split("stdout: ", 1)[1] for message in received if "stdout: " in message]
    assert "".join(pieces).count("x") == 1_000_010
    assert max(len(piece) for piece in pieces) <= MAX_LINE_CHARACTERS


def test_a_task_that_raises_fails_the_step_naming_it_without_retries():
    result = dg.materialize(
        [fails_on_three], resources={"process_pool": _pool()}, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "value 3 failed in a pool worker: ValueError: three is not allowed" in str(
        failure.message
    )


def test_results_keep_input_order_whatever_finishes_first():
    tasks = [(value, 0.2 if value % 2 else 0.0) for value in range(8)]
    run = map_tasks(PoolSettings(2, mode="parallel"), square_after_delay, tasks)
    assert [square for square, _ in run] == [value * value for value in range(8)]
    assert run.metadata()["chunks"] == 8 and run.decision.parallel


def _closure_maker():
    def inner(value):
        return value

    return inner


@pytest.mark.parametrize(
    ("function", "named"),
    [
        (lambda value: value, "is a lambda"),
        (_closure_maker(), "inside another function"),
        (functools.partial(lambda value, extra: value, extra=1), "is a lambda"),
    ],
)
def test_functions_workers_cannot_import_are_refused_before_any_worker_starts(function, named):
    with pytest.raises(NotSendableError, match=named) as refused:
        map_tasks(PoolSettings(2, mode="parallel"), function, [1, 2])
    assert "top level of a module" in str(refused.value)


def test_a_function_of_main_is_refused_saying_what_to_do():
    def in_main(value):
        return value

    in_main.__module__, in_main.__qualname__ = "__main__", "in_main"
    with pytest.raises(NotSendableError, match=r"__main__.*top level of a module"):
        check_sendable(in_main)


def test_small_tasks_travel_in_chunks_and_come_back_one_by_one_in_order():
    tasks = [(value, 0.0) for value in range(100)]
    run = map_tasks(PoolSettings(2, mode="parallel"), square_after_delay, tasks, chunk_size=7)
    assert [square for square, _ in run] == [value * value for value in range(100)]
    assert run.metadata()["chunks"] == 15


def test_a_failing_task_in_a_chunk_is_named_with_its_chunk():
    run = map_tasks(
        PoolSettings(2, mode="parallel"),
        raise_for_three,
        range(6),
        chunk_size=2,
        describe=lambda value: f"value {value}",
    )
    with pytest.raises(ChunkFailedError, match=r"tasks 2-3 \(the first: value 2\) failed"):
        list(run)


@pytest.mark.parametrize("mode", ["auto", "parallel", "serial"])
def test_every_task_runs_even_when_fewer_were_announced(mode):
    tasks = iter([(value, 0.0) for value in range(6)])
    run = map_tasks(
        PoolSettings(2, mode=mode), square_after_delay, tasks, total_tasks=2, total_size=2
    )
    assert [square for square, _ in run] == [value * value for value in range(6)]


def test_chunks_count_the_items_their_results_hold():
    tasks = [(value, 0.0) for value in range(10)]
    run = map_tasks(
        PoolSettings(2, mode="parallel"),
        square_after_delay,
        tasks,
        chunk_size=3,
        count_items=lambda result: 10,
    )
    assert len(list(run)) == 10
    items = sum(value for key, value in run.metadata().items() if key.endswith("_items"))
    assert items == 100
