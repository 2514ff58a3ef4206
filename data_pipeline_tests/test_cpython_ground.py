"""What the local pool relies on in CPython's ``concurrent.futures`` without a public API for it
(parallel/local/cpython.py), pinned on a real ProcessPoolExecutor of the running Python."""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from data_pipeline.parallel.local.cpython import RecordingContext, remote_traceback
from data_pipeline_tests.deadlines import fails_if_it_hangs
from data_pipeline_tests.pool_tasks import (
    fail_on_three,
    killed_on_one,
    raise_unpicklable_on_zero,
    square_after_delay,
)

CONTEXT = multiprocessing.get_context("spawn")


def raised_by(function, task) -> BaseException:
    """What a one-worker executor raises in this process for ``function(task)``."""
    with fails_if_it_hangs(60), ProcessPoolExecutor(1, mp_context=CONTEXT) as executor:
        future = executor.submit(function, task)
        with pytest.raises(BaseException) as raised:
            future.result()
    return raised.value


def test_a_tasks_error_comes_with_the_workers_traceback_as_its_cause():
    error = raised_by(fail_on_three, 3)
    assert isinstance(error, ValueError)
    assert type(error.__cause__).__name__ == "_RemoteTraceback"
    text = remote_traceback(error)
    assert text.startswith("\nWorker traceback:")
    assert "in fail_on_three" in text and "ValueError: cannot handle 3" in text


def test_an_exception_that_cannot_come_back_breaks_the_pool_with_a_traceback():
    error = raised_by(raise_unpicklable_on_zero, 0)
    assert isinstance(error, BrokenProcessPool)
    text = remote_traceback(error, "Traceback from the pool")
    assert text.startswith("\nTraceback from the pool:") and "NeedsTwoArguments" in text


def test_a_killed_worker_breaks_the_pool_without_a_traceback():
    error = raised_by(killed_on_one, 1)
    assert isinstance(error, BrokenProcessPool)
    assert remote_traceback(error) == ""


def test_an_error_raised_here_has_no_workers_traceback():
    try:
        try:
            raise KeyError("here")
        except KeyError as cause:
            raise ValueError("in this process") from cause
    except ValueError as error:
        assert remote_traceback(error) == ""


def test_the_executor_starts_every_worker_through_the_contexts_process():
    context = RecordingContext(CONTEXT)
    with fails_if_it_hangs(60), ProcessPoolExecutor(2, mp_context=context) as executor:
        # Two tasks at once need two workers; each sleeps so that one cannot run both.
        futures = [executor.submit(square_after_delay, (value, 0.5)) for value in range(2)]
        pids = {future.result()[1] for future in futures}
        recorded = {process.pid for process in context.processes}
        assert len(context.processes) == 2
        assert pids == recorded, "the workers that ran the tasks are the recorded processes"
        assert all(process.exitcode is None for process in context.processes), "alive"
    deadline = time.monotonic() + 10
    while any(process.exitcode is None for process in context.processes):
        assert time.monotonic() < deadline, "the recorded processes are the executor's"
        time.sleep(0.01)
    assert [process.exitcode for process in context.processes] == [0, 0]
