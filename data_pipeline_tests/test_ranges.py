"""A backfill's range of days runs as one run: each step once for all its days, and each day
committed whole, materialized and checked on its own.

Real runs: `dagster job execute` with the range's tags (as a backfill's run carries them) on
the multiprocess executor, in a subprocess of its own; a real SIGINT; a real writer lock held
by another process."""

import importlib.util
import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from data_pipeline.numbers.output_set import MANIFEST, current_set
from data_pipeline.numbers.storage import CLEANED_NUMBERS_FILE, NUMBERS_FILE
from data_pipeline.numbers.writer_lock import exclusive_writer
from data_pipeline_tests.cli_runs import create_instance, finish, first_line_at, start_run
from data_pipeline_tests.processes import descendants, process_group_alive

pytestmark = pytest.mark.slow

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
RANGE = {RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[-1]}
CONFIG = """
ops: {numbers_file: {config: {count: 20000}}}
resources: {process_pool: {config: {workers: 2}}}
"""


def only_run() -> dg.DagsterRun:
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        return run


def events_of(run_id: str, event_type: dg.DagsterEventType) -> list:
    with dg.DagsterInstance.get() as instance:
        return [
            entry.dagster_event
            for entry in instance.all_logs(run_id, of_type=event_type)
            if entry.dagster_event
        ]


# Three days on two workers: every day's chunks are the pool's tasks; four: whole days are.
@pytest.mark.parametrize("day_count", [3, 4], ids=["chunks of every day", "whole days"])
def test_a_range_is_one_run_that_commits_materializes_and_checks_each_day(
    tmp_path, isolated_directories, day_count
):
    create_instance()
    days = [f"2026-03-0{number}" for number in range(1, day_count + 1)]
    tags = {RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]}
    code = finish(start_run(tmp_path, isolated_directories, CONFIG, tags=tags))
    log = (tmp_path / "run.log").read_text()
    assert code == 0, log[-3000:]
    run = only_run()
    # Each step ran once for all the days: one process, one kernel start, one pool.
    starts = events_of(run.run_id, dg.DagsterEventType.STEP_START)
    assert sorted(event.step_key for event in starts) == [
        "cleaned_numbers",
        "numbers_file",
        "transformed_numbers",
    ]
    materialized = {}
    for event in events_of(run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.event_specific_data.materialization
        key = (materialization.asset_key.to_user_string(), materialization.partition)
        assert key not in materialized, f"{key} materialized twice"
        materialized[key] = {name: value.value for name, value in materialization.metadata.items()}
    assert set(materialized) == {
        (asset, day)
        for asset in ("numbers_file", "cleaned_numbers", "transformed_numbers")
        for day in days
    }
    for day in days:
        directory = isolated_directories / day
        committed = current_set(directory)
        assert committed.run_id == run.run_id, f"{day}'s set is not the run's"
        # Each day's materialization has that day's own counts, as its committed files do.
        assert materialized[("numbers_file", day)]["seed"] == int(day.replace("-", ""))
        assert materialized[("numbers_file", day)]["lines"] == committed.files[NUMBERS_FILE].rows
        cleaned = materialized[("cleaned_numbers", day)]
        assert cleaned["accepted"] == committed.files[CLEANED_NUMBERS_FILE].rows
        assert cleaned["accepted"] + cleaned["rejected"] == 20_000
        assert materialized[("transformed_numbers", day)]["rows"] == cleaned["accepted"]
        assert materialized[("transformed_numbers", day)]["days_in_run"] == day_count
    counts = {materialized[("cleaned_numbers", day)]["accepted"] for day in days}
    assert len(counts) == day_count, "the days' files differ (their seeds), and so do their counts"
    by_day = {}
    for event in events_of(run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = event.event_specific_data
        by_day.setdefault(evaluation.check_name, {})[evaluation.partition] = evaluation.passed
    for check in ("every_line_accepted_or_rejected", "one_transformed_row_per_accepted_value"):
        assert by_day[check] == {**dict.fromkeys(days, True), None: True}, by_day[check]
    # The commits are said once for the range (each log line is a stored event), not per day.
    assert f"committed the sets of {day_count} days, {days[0]} to {days[-1]}" in log, log[-3000:]
    assert f"committed {days[0]}'s set" not in log


def test_an_interrupt_mid_range_leaves_each_day_committed_whole_or_untouched(
    tmp_path, isolated_directories
):
    create_instance()
    last = DAYS[-1]
    assert (
        finish(
            start_run(
                tmp_path, isolated_directories, CONFIG, "earlier", {"dagster/partition": last}
            )
        )
        == 0
    )
    earlier = current_set(isolated_directories / last)
    # The last day's transform is long (the python kernel on many values): the first days
    # commit while it runs.
    config = """
ops: {numbers_file: {config: {count: 20000}}}
resources: {process_pool: {config: {workers: 2, kernel: python}}}
"""
    landing = isolated_directories / "incoming"
    landing.mkdir()
    (landing / f"{last}.txt").write_text("".join(f"{n * 7919}\n" for n in range(600_000)))
    job = start_run(tmp_path, isolated_directories, config, "range", RANGE)
    try:
        manifest = isolated_directories / DAYS[1] / MANIFEST
        deadline = time.monotonic() + 180
        while not (manifest.is_file() and json.loads(manifest.read_text()).get("run_id")):
            assert time.monotonic() < deadline, (tmp_path / "range.log").read_text()[-3000:]
            time.sleep(0.05)
        pool = descendants(job.pid)
        os.kill(job.pid, signal.SIGINT)
        code = finish(job, timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    log = (tmp_path / "range.log").read_text()
    assert code != 0
    run_id = next(
        run for run in dg.DagsterInstance.get().get_runs() if run.tags.get(RANGE_START_TAG)
    ).run_id
    committed = [day for day in DAYS if current_set(isolated_directories / day).run_id == run_id]
    assert committed == DAYS[:2], log[-3000:]
    assert current_set(isolated_directories / last) == earlier, "the last day kept its set"
    first_error = first_line_at(log, "ERROR")
    assert first_error.endswith(
        f": {DAYS[0]} and {DAYS[1]} committed, each whole; {last} kept the set it had. Run the "
        "range again to finish the rest"
    ), log[-3000:]
    assert not [path.name for path in isolated_directories.rglob("*.tmp")]
    assert not process_group_alive(job.pid), f"left behind: {pool}"


def test_a_range_overlapping_a_day_another_run_is_writing_is_refused_naming_it(
    tmp_path, isolated_directories
):
    create_instance()
    held = isolated_directories / DAYS[1]
    held.mkdir(parents=True)
    with exclusive_writer(held, "0ther-run-writing-the-day"):
        code = finish(start_run(tmp_path, isolated_directories, CONFIG, tags=RANGE))
    log = (tmp_path / "run.log").read_text()
    assert code != 0
    first_error = first_line_at(log, "ERROR")
    assert first_error.startswith("the run did not start: run 0ther-ru is writing "), first_error
    assert str(held) in first_error
    assert "STEP_START" not in log, "no step started"
    for day in DAYS:
        assert current_set(isolated_directories / day).run_id is None, f"{day} was written"


def test_a_range_outside_the_days_is_refused_saying_which_days_there_are(
    tmp_path, isolated_directories
):
    create_instance()
    before_start = {RANGE_START_TAG: "2025-12-30", RANGE_END_TAG: "2026-01-02"}
    code = finish(start_run(tmp_path, isolated_directories, CONFIG, tags=before_start))
    log = (tmp_path / "run.log").read_text()
    assert code != 0
    today = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
    assert first_line_at(log, "ERROR") == (
        "the run did not start: the run's days 2025-12-30...2026-01-02 are not a range of this "
        "location's days: from 2026-01-01 (DATA_PIPELINE_START_DATE) to "
        f"{today.get_last_partition_key()} (today, UTC), first day first"
    )
    assert "STEP_START" not in log


def test_dev_py_runs_a_range_of_days_as_one_run_with_the_range_tags():
    path = Path(__file__).resolve().parent.parent / "dev.py"
    spec = importlib.util.spec_from_file_location("dev", path)
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    assert dev.with_day(["--partition-range", "2026-01-01...2026-01-30", "-c", "a.yaml"]) == [
        "-c",
        "a.yaml",
        "--tags",
        json.dumps({RANGE_START_TAG: "2026-01-01", RANGE_END_TAG: "2026-01-30"}),
    ]
    with pytest.raises(SystemExit, match="the last day is before the first"):
        dev.with_day(["--partition-range", "2026-01-30...2026-01-01"])


def test_a_day_of_the_range_whose_input_cannot_be_right_fails_the_range_naming_it(
    tmp_path, isolated_directories
):
    create_instance()
    landing = isolated_directories / "incoming"
    landing.mkdir()
    (landing / f"{DAYS[1]}.txt").write_bytes(b"")
    code = finish(start_run(tmp_path, isolated_directories, CONFIG, tags=RANGE))
    log = (tmp_path / "run.log").read_text()
    assert code != 0
    first_error = first_line_at(log, "ERROR")
    assert first_error.startswith(f"{DAYS[1]}: input file is empty: "), first_error
    assert first_error.endswith(
        "(of this run's days, none of its 3 days was committed: each kept the set it had)"
    ), first_error
    assert "STEP_UP_FOR_RETRY" not in log, "an empty file does not mend on retry"
    for day in DAYS:
        assert current_set(isolated_directories / day).run_id is None, f"{day} was committed"
