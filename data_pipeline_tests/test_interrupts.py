"""A run terminated while its pool is busy leaves no pool process and no temporary file.

Real processes and real signals: `dagster job execute` runs in its own session; the test
waits until the transform step's pool workers are busy, signals the command or the step
process, and reads the process table."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_pipeline.numbers.storage import DATA_DIR_VARIABLE
from data_pipeline_tests.processes import (
    alive,
    assert_ended_interrupted,
    children_by_parent,
    command_line,
    descendants,
)

pytestmark = pytest.mark.slow

DAGSTER = str(Path(sys.executable).with_name("dagster"))
# The python kernel keeps the transform's pool busy for seconds: time to signal it.
CONFIG = """
ops: {numbers_file: {config: {count: 300000}}}
resources: {process_pool: {config: {workers: 2, kernel: python}}}
"""


def busy_pool(job_pid: int, log: Path, timeout: float = 120) -> tuple[int, set[int]]:
    """Wait for the transform step's pool: return (step process, its pool processes).

    The step process is the one the log names for the transform step, so a pool of the
    cleaning step still shutting down is never mistaken for it."""
    started = re.compile(r" - (\d+) - transformed_numbers - STEP_START - ")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = started.search(log.read_text())
        if found:
            step = int(found.group(1))
            assert step in descendants(job_pid), f"the transform step {step} is not the job's"
            tree = children_by_parent()
            for pid in tree.get(step, []):
                if (
                    "multiprocessing.forkserver" in command_line(pid)
                    and len(tree.get(pid, [])) >= 2
                ):
                    return step, {pid, *descendants(pid)}
        time.sleep(0.1)
    raise AssertionError(f"the pool never got busy:\n{log.read_text()[-3000:]}")


def still_running(step: int, pool: set[int], log: Path) -> str:
    """What a failure to end the pool must show: which processes live, and the run's log."""
    living = {pid: command_line(pid)[:120] for pid in sorted(pool) if alive(pid)}
    return (
        f"still running after 60 s: {living}; the step process {step} is "
        f"{'alive' if alive(step) else 'gone'}; the run's log ends:\n{log.read_text()[-3000:]}"
    )


def wait_for_text(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("target", "signal_number"),
    [("command", signal.SIGINT), ("command", signal.SIGTERM), ("step", signal.SIGTERM)],
)
def test_terminating_a_run_ends_its_pool_processes_and_leaves_no_temporary_file(
    tmp_path, isolated_directories, target, signal_number
):
    config, log = tmp_path / "config.yaml", tmp_path / "run.log"
    config.write_text(CONFIG)
    command = [DAGSTER, "job", "execute", "-m", "data_pipeline.definitions", "-j", "numbers_job"]
    command += ["--tags", json.dumps({"dagster/partition": "2026-11-20"})]
    # The caller's settings (a CPU budget, say) must not change how the job runs; the data
    # directory is the test's own.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DATA_PIPELINE_") or name == DATA_DIR_VARIABLE
    }
    with open(log, "w") as output:
        job = subprocess.Popen(
            [*command, "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=environment,
            start_new_session=True,
        )
    try:
        step, pool = busy_pool(job.pid, log)
        os.kill(job.pid if target == "command" else step, signal_number)
        signalled = time.monotonic()
        # A bound that only catches a hang: ending a pool takes about a second.
        while any(alive(pid) for pid in pool):
            assert time.monotonic() - signalled < 60, still_running(step, pool, log)
            time.sleep(0.05)
        if target == "step":
            # Dagster applies the step's RetryPolicy to an interrupted step (think of a node
            # being drained): the attempt ends as interrupted and a new one is scheduled.
            wait_for_text(log, "STEP_UP_FOR_RETRY")
            os.kill(job.pid, signal.SIGINT)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert_ended_interrupted(job, log, isolated_directories)
