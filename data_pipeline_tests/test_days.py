"""Days: each day's files in a directory of its own, the day's export ingested when it has
landed (else a file generated from the date), a sensor that turns landed exports into runs,
the schedule that runs the day before, one run of a day at a time, and the instance settings
that share the CPUs across runs."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.partitions import PARTITION_TAG, seed_of
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.defs.sensors import landing_files_sensor
from data_pipeline.numbers.output_set import current_file, current_set
from data_pipeline.numbers.storage import file_digest
from data_pipeline_tests.ticks import daily_schedule_tick

REPOSITORY = Path(__file__).resolve().parent.parent
NUMBERS = [defs.get_assets_def("numbers_file")]
SERIAL = ProcessPoolResource(workers=1)


def data_directory(root: Path) -> DataDirectoryResource:
    return DataDirectoryResource(path=str(root))


def materialize_numbers(root: Path, day: str, config: dict | None = None, **kwargs):
    return dg.materialize(
        NUMBERS,
        partition_key=day,
        resources={"data_directory": data_directory(root), "process_pool": SERIAL},
        run_config={"ops": {"numbers_file": {"config": config or {"count": 300}}}},
        **kwargs,
    )


def metadata_of(result) -> dict:
    [materialization] = result.asset_materializations_for_node("numbers_file")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_each_day_has_its_own_files_generated_from_a_seed_derived_from_the_date(tmp_path):
    first = materialize_numbers(tmp_path, "2026-11-20")
    materialize_numbers(tmp_path, "2026-11-21")
    assert metadata_of(first)["seed"] == seed_of("2026-11-20") == 20261120
    assert (
        "no " in metadata_of(first)["source"]
        and "2026-11-20.txt has arrived" in (metadata_of(first)["source"])
    )
    one, other = (
        current_file(tmp_path / day, "numbers.txt") for day in ("2026-11-20", "2026-11-21")
    )
    assert one.read_bytes() != other.read_bytes(), "a day never overwrites another"
    again = materialize_numbers(tmp_path, "2026-11-20")
    assert metadata_of(again)["numbers_sha256"] == file_digest(one), "the same day, the same file"


def test_the_days_export_is_ingested_from_the_landing_directory_when_it_has_arrived(tmp_path):
    landing = tmp_path / "incoming"
    landing.mkdir()
    (landing / "2026-11-20.txt").write_bytes(b"1\n2\nthree\n")
    result = materialize_numbers(tmp_path, "2026-11-20")
    assert current_file(tmp_path / "2026-11-20", "numbers.txt").read_bytes() == b"1\n2\nthree\n"
    assert metadata_of(result)["source"] == str(landing / "2026-11-20.txt")
    assert metadata_of(result)["lines"] == 3


def sensor_context(root: Path, cursor: str | None = None):
    return dg.build_sensor_context(
        cursor=cursor, resources={"data_directory": data_directory(root)}
    )


def landed(root: Path, name: str, text: str, seconds_ago: float = 60) -> Path:
    path = root / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    os.utime(path, (time.time() - seconds_ago, time.time() - seconds_ago))
    return path


def test_the_sensor_requests_one_run_per_new_or_changed_export_and_never_twice(tmp_path):
    landed(tmp_path, "2026-11-20.txt", "1\n2\n")
    landed(tmp_path, "2026-11-21.txt", "3\n")
    first = landing_files_sensor(sensor_context(tmp_path))
    assert [request.partition_key for request in first.run_requests] == [
        "2026-11-20",
        "2026-11-21",
    ]
    # Evaluated again with the cursor (as after a daemon restart): nothing new.
    again = landing_files_sensor(sensor_context(tmp_path, first.cursor))
    assert not again.run_requests
    assert "no new or changed export" in again.skip_reason.skip_message
    # A re-delivered export for a day: one more run of that day, with a new run key.
    changed = landed(tmp_path, "2026-11-20.txt", "1\n2\n4\n")
    later = landing_files_sensor(sensor_context(tmp_path, first.cursor))
    [request] = later.run_requests
    assert request.partition_key == "2026-11-20"
    assert request.run_key != first.run_requests[0].run_key
    assert json.loads(later.cursor)[changed.name] != json.loads(first.cursor)[changed.name]


def test_the_sensor_reports_files_it_cannot_run_instead_of_ignoring_them(tmp_path):
    landed(tmp_path, "2019-12-31.txt", "1\n")  # before the partitions' start
    landed(tmp_path, "notes.csv", "1\n")
    landed(tmp_path, "2026-11-20.txt", "1\n", seconds_ago=0)  # still being written
    skipped = landing_files_sensor(sensor_context(tmp_path))
    assert not skipped.run_requests
    message = skipped.skip_reason.skip_message
    assert "ignored 2019-12-31.txt, notes.csv: not named YYYY-MM-DD.txt for a day from" in message
    assert "still being written, looked at next time: 2026-11-20.txt" in message
    later = landing_files_sensor(sensor_context(tmp_path, skipped.cursor))
    message = later.skip_reason.skip_message
    assert "ignored" not in message, "reported once per version of a file, not every 30 s"
    assert "still being written, looked at next time: 2026-11-20.txt" in message


def test_the_sensor_waits_for_the_landing_directory_to_exist(tmp_path):
    skipped = landing_files_sensor(sensor_context(tmp_path))
    assert "does not exist yet" in skipped.skip_message


@pytest.mark.parametrize(
    ("morning", "day"),
    [("2026-11-25T06:00:00+00:00", "2026-11-24"), ("2026-03-01T06:00:00+00:00", "2026-02-28")],
)
def test_the_schedule_runs_the_day_before_its_morning(morning, day):
    [request] = daily_schedule_tick(morning).run_requests
    assert request.partition_key == day


def test_the_schedule_skips_a_day_already_materialized_and_the_day_before_the_first(tmp_path):
    with dg.instance_for_test() as instance:
        assert materialize_all(tmp_path, "2026-11-24", instance).success
        for morning, why in (
            ("2026-11-25T06:00:00+00:00", "2026-11-24 is already materialized (run "),
            ("2026-01-01T06:00:00+00:00", "2025-12-31 is before the partitions' first day"),
        ):
            result = daily_schedule_tick(morning, instance)
            assert not result.run_requests
            assert why in result.skip_message


def materialize_all(root: Path, day: str, instance: dg.DagsterInstance):
    names = ("numbers_file", "cleaned_numbers", "transformed_numbers")
    return dg.materialize(
        [defs.get_assets_def(name) for name in names],
        partition_key=day,
        resources={"data_directory": data_directory(root), "process_pool": SERIAL},
        run_config={"ops": {"numbers_file": {"config": {"count": 300}}}},
        instance=instance,
    )


HOLD_THE_DAY = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.writer_lock import exclusive_writer
day = Path(sys.argv[1])
day.mkdir(parents=True, exist_ok=True)
with exclusive_writer(day, "0badc0de-run-in-progress"):
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_second_run_of_a_day_fails_before_writing_while_the_first_is_in_progress(tmp_path):
    before = materialize_numbers(tmp_path, "2026-11-20")
    # A run of the day (on any instance: the lock is the directory's) holds its writer lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_DAY, str(tmp_path / "2026-11-20")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "writing\n"
        clash = materialize_numbers(
            tmp_path, "2026-11-20", {"count": 300, "seed": 99}, raise_on_error=False
        )
        other_day = materialize_numbers(tmp_path, "2026-11-21")
    finally:
        holder.kill()  # however the holder ends, the kernel frees the day
        holder.wait()
    after = materialize_numbers(tmp_path, "2026-11-20", {"count": 300, "seed": 99})
    assert not clash.success
    [failure] = [event for event in clash.all_events if event.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert "run 0badc0de is writing" in message
    assert "stopped before writing anything" in message
    assert not (tmp_path / "2026-11-20" / "sets" / clash.run_id).exists()
    assert current_set(tmp_path / "2026-11-20").run_id == after.run_id != before.run_id
    assert other_day.success and after.success


def test_the_shipped_instance_settings_share_the_cpus_and_queue_one_run_per_day(tmp_path):
    shutil.copy(REPOSITORY / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        settings = instance.get_concurrency_config()
    assert settings.pool_config.default_pool_limit == 1
    assert settings.run_queue_config.max_concurrent_runs == 2
    [limit] = settings.run_queue_config.tag_concurrency_limits
    assert limit == {"key": PARTITION_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


@pytest.mark.parametrize("name", ["cleaned_numbers", "transformed_numbers", "parallelism_report"])
def test_every_step_that_runs_a_pool_holds_a_slot_of_the_cpu_pool(name):
    assert defs.get_assets_def(name).op.pool == "cpu"
