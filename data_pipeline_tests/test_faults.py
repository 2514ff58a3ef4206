"""Faults through the real command line (`dagster job execute`, the real multiprocess
executor): an interrupt mid-transform, a set its blocking check refuses, a full disk, a
read-only or uncreatable data directory, two runs of one day at once, a bad config value.
After each, the day's manifest names a complete set (the earlier one), every file it names
has its recorded digest, and the first ERROR line of the run's output says what went wrong
in one sentence."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.output_set import current_set
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.storage import DATA_DIR_VARIABLE, file_digest
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.cli_runs import (
    DAGSTER,
    DAY,
    create_instance,
    finish,
    first_line_at,
    mount_tmpfs,
    run,
    start_run,
    unmount,
)
from data_pipeline_tests.test_interrupts import busy_pool

pytestmark = pytest.mark.slow


def small(count: int = 20_000, seed: int = 1, workers: int = 2) -> str:
    return (
        f"ops: {{numbers_file: {{config: {{count: {count}, seed: {seed}}}}}}}\n"
        f"resources: {{process_pool: {{config: {{workers: {workers}}}}}}}\n"
    )


def first_error(log: str) -> str:
    """The text of the first ERROR line of a run's output."""
    message = first_line_at(log, "ERROR")
    assert message is not None, f"no ERROR line:\n{log[-3000:]}"
    return message


def assert_whole(day: Path):
    """The manifest names a complete set, each file with the digest it records."""
    current = current_set(day)
    assert sorted(current.files) == [
        "cleaned_numbers.parquet",
        "numbers.txt",
        "rejected_lines.parquet",
        "transformed_numbers.parquet",
    ]
    for name, entry in current.files.items():
        assert file_digest(day / entry.path) == entry.sha256, name
    return current


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a small tmpfs (needs root and mount; skipped where not allowed)."""
    mounted = []

    def mount(size: str = "2m", read_only: bool = False) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        refused = mount_tmpfs(point, size, read_only)
        if refused:
            pytest.skip(f"cannot mount a tmpfs here ({refused})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        unmount(point)


def test_an_interrupt_mid_transform_leaves_the_earlier_set_current(tmp_path):
    data = tmp_path / "data"
    code, _ = run(tmp_path, data, small(), "first")
    assert code == 0
    earlier = assert_whole(data / DAY)
    config = (
        "ops: {numbers_file: {config: {count: 300000, seed: 2}}}\n"
        "resources: {process_pool: {config: {workers: 2, kernel: python}}}\n"
    )
    job = start_run(tmp_path, data, config, "interrupted")
    try:
        busy_pool(job.pid, tmp_path / "interrupted.log")
        os.kill(job.pid, signal.SIGINT)
        assert finish(job, timeout=60) != 0
    finally:
        finish(job, timeout=1)
    assert assert_whole(data / DAY) == earlier, "the interrupted run committed nothing"
    assert first_error((tmp_path / "interrupted.log").read_text()) == (
        "the run was interrupted (Ctrl-C, a termination signal, or Terminate in the UI) and "
        f"committed nothing: {DAY}'s current set is still {earlier.describe()}; run it again "
        "to replace it"
    )


# Loaded by every Python process of the run (PYTHONPATH): the transform damages the file it
# wrote after computing the digest it records, as a disk or a bug might.
DAMAGING_TRANSFORM = """
import pyarrow as pa
import pyarrow.parquet as pq
from data_pipeline.numbers.stages import transform

_original = transform.transform_files_to_parquet


def _damaged(jobs, *args, **kwargs):
    for job, summary in zip(jobs, _original(jobs, *args, **kwargs), strict=True):
        table = pq.read_table(job.transformed_path)
        values = table["value"].to_pylist()
        values[-1] += 1
        column = pa.array(values, pa.int64())
        pq.write_table(table.set_column(1, "value", column), job.transformed_path)
        yield summary


transform.transform_files_to_parquet = _damaged
"""


def test_a_set_its_blocking_check_refuses_never_becomes_current(tmp_path, monkeypatch):
    data = tmp_path / "data"
    code, _ = run(tmp_path, data, small(), "first")
    assert code == 0
    earlier = assert_whole(data / DAY)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DAMAGING_TRANSFORM)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    code, log = run(tmp_path, data, small(seed=2), "refused")
    assert code != 0
    assert "RUN_FAILURE" in log
    assert assert_whole(data / DAY) == earlier, "the refused set was not committed"
    assert first_error(log).startswith(
        "check one_transformed_row_per_accepted_value refused transformed_numbers's files and "
        "nothing was committed: value differs first at row "
    ), first_error(log)
    assert first_error(log).endswith(f"{DAY}'s current set is still {earlier.describe()}")
    # The check's result as Dagster records it, and the step failure naming the check.
    check = "one_transformed_row_per_accepted_value"
    assert f"Asset check '{check}' on 'transformed_numbers' did not pass" in log, log[-3000:]
    assert "transformed_numbers: one_transformed_row_per_accepted_value" in log


def test_a_full_disk_fails_once_without_retry_and_leaves_the_earlier_set_current(tmp_path, tmpfs):
    data = tmpfs("2m")
    code, _ = run(tmp_path, data, small(count=10_000), "first")
    assert code == 0
    earlier = assert_whole(data / DAY)
    # The input and the cleaned pair fit (about 1.2 MB); the transformed file does not.
    code, log = run(tmp_path, data, small(count=100_000, seed=2), "full")
    assert code == 1
    assert " - transformed_numbers - cannot write " in log, "the disk fills mid-transform"
    message = first_error(log)
    assert message.startswith(f"cannot write {data / DAY}: No space left on device (errno 28). ")
    assert f"comes from {DATA_DIR_VARIABLE}: free space on its disk" in message
    assert "STEP_UP_FOR_RETRY" not in log, "a full disk does not go away on retry"
    assert assert_whole(data / DAY) == earlier
    assert sorted(path.name for path in (data / DAY / "sets").iterdir()) == [earlier.run_id]


def test_a_read_only_data_directory_fails_before_any_step_naming_the_setting(tmp_path, tmpfs):
    data = tmpfs("1m", read_only=True)
    code, log = run(tmp_path, data, small(count=100))
    assert code == 1
    message = first_error(log)
    assert message.startswith(f"the run did not start: cannot write {data}: Read-only file")
    assert f"comes from {DATA_DIR_VARIABLE}" in message
    assert "STEP_START" not in log


def test_a_data_directory_that_cannot_be_created_names_the_variable(tmp_path):
    code, log = run(tmp_path, Path("/proc/no-such-directory/data"), small(count=100))
    assert code == 1
    message = first_error(log)
    assert message.startswith("the run did not start: cannot create /proc/no-such-directory/data")
    assert f"comes from {DATA_DIR_VARIABLE}" in message


def test_a_bad_config_value_is_the_first_error_naming_field_value_and_what_is_allowed(tmp_path):
    config = "resources: {process_pool: {config: {workers: 0, cleaning_chunk_bytes: 0}}}\n"
    code, log = run(tmp_path, tmp_path / "data", config)
    assert code == 1
    assert first_error(log) == (
        "the run did not start: resources.process_pool.config.workers = 0: Input should be "
        "greater than or equal to 1; resources.process_pool.config.cleaning_chunk_bytes = 0: "
        "Input should be greater than or equal to 1"
    )
    assert "STEP_START" not in log


def accepted_for(tmp_path: Path, count: int, seed: int) -> int:
    source = tmp_path / f"expected-{seed}.txt"
    write_numbers_file(source, count, seed, dirty_fraction=0.05)  # the asset's default
    summary = clean_to_parquet(
        source,
        tmp_path / f"c{seed}.parquet",
        tmp_path / f"r{seed}.parquet",
        PoolSettings(1),
        1 << 20,
    )
    return summary.accepted


def test_two_runs_of_one_day_at_once_never_mix(tmp_path):
    data = tmp_path / "data"
    create_instance()
    runs = {seed: start_run(tmp_path, data, small(seed=seed), f"seed{seed}") for seed in (7, 8)}
    codes = {seed: finish(job) for seed, job in runs.items()}
    logs = {seed: (tmp_path / f"seed{seed}.log").read_text() for seed in runs}
    run_ids = {seed: re.search(r" - ([0-9a-f-]{36}) - ", logs[seed]).group(1) for seed in runs}
    for seed in runs:
        if codes[seed] == 0:
            reported = re.search(r"([\d,]+) accepted, [\d,]+ rejected", logs[seed]).group(1)
            assert int(reported.replace(",", "")) == accepted_for(tmp_path, 20_000, seed)
        else:
            other = run_ids[15 - seed]
            assert first_error(logs[seed]).startswith(
                f"the run did not start: run {other[:8]} is writing {data / DAY}"
            ), first_error(logs[seed])
            assert not (data / DAY / "sets" / run_ids[seed]).exists()
    assert 0 in codes.values()
    current = assert_whole(data / DAY)
    assert {entry.run_id for entry in current.files.values()} == {current.run_id}
    assert current.run_id in {run_ids[seed] for seed in runs if codes[seed] == 0}


HOLD_THE_DAY = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.writer_lock import exclusive_writer
day = Path(sys.argv[1])
day.mkdir(parents=True)
with exclusive_writer(day, "0badc0de-another-run"):
    print("writing", flush=True)
    time.sleep(600)
"""


def test_asset_materialize_is_refused_while_another_run_writes_the_day(tmp_path):
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_DAY, str(data / DAY)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "writing\n"
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("DATA_PIPELINE_")
        }
        environment[DATA_DIR_VARIABLE] = str(data)
        command = [DAGSTER, "asset", "materialize", "-m", "data_pipeline.definitions"]
        command += ["--select", "numbers_file", "--partition", DAY]
        done = subprocess.run(
            command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    message = first_error(done.stdout + done.stderr)
    assert message.startswith(f"the run did not start: run 0badc0de is writing {data / DAY}")
    assert not (data / DAY / "sets").exists()
