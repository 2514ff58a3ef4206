"""The real path: `dagster job execute` in a subprocess, so steps run on the multiprocess
executor, each in its own process, each starting its own pool (execute_in_process and
materialize would use the in-process executor)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from data_pipeline.numbers.output_set import current_set
from data_pipeline_tests.fixed_costs import assert_fixed_costs_add_up, step_wall_seconds

pytestmark = pytest.mark.slow

DAGSTER = str(Path(sys.executable).with_name("dagster"))
DAY = "2026-11-20"
POOL_CONFIG = """
resources:
  process_pool:
    config:
      workers: 2
      cleaning_chunk_bytes: 8192
      transform_chunk_values: 500
      worker_log_level: DEBUG
"""
NUMBERS_CONFIG = """
ops:
  numbers_file:
    config:
      count: {count}
      {extra}
"""


def execute_job(
    tmp_path: Path,
    count: int,
    extra: str = "",
    env: dict | None = None,
    job: str = "numbers_job",
):
    """`dagster job execute` of ``job`` for DAY; numbers_job generates ``count`` lines."""
    config = tmp_path / "config.yaml"
    numbers = NUMBERS_CONFIG.format(count=count, extra=extra) if job == "numbers_job" else ""
    config.write_text(numbers + POOL_CONFIG)
    command = [DAGSTER, "job", "execute", "-m", "data_pipeline.definitions", "-j", job]
    command += ["--tags", json.dumps({"dagster/partition": DAY})]
    return subprocess.run(
        [*command, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or dict(os.environ),
        cwd=tmp_path,
    )


def test_numbers_job_runs_every_step_in_its_own_process_and_the_report_job_reports(
    tmp_path, isolated_directories
):
    result = execute_job(tmp_path, count=20_000)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr + result.stdout
    assert "RUN_SUCCESS" in log
    assert "CPU plan: 1 step(s) at once x " in log
    # Log lines read: time - dagster - level - job - run id - pid - step - event - message.
    step_pids = {
        fields[5]: fields[6]
        for fields in (line.split(" - ") for line in log.splitlines())
        if len(fields) > 7 and fields[7] == "STEP_START"
    }
    assert set(step_pids.values()) == {
        "numbers_file",
        "cleaned_numbers",
        "transformed_numbers",
    }, "each step should run in a process of its own, the set's checks inside its steps"
    for asset, check in (
        ("cleaned_numbers", "every_line_accepted_or_rejected"),
        ("transformed_numbers", "one_transformed_row_per_accepted_value"),
    ):
        assert re.search(rf"Asset check '{check}' on '{asset}' passed", log), check
    assert "parallelism_report" not in step_pids.values(), "measured only when asked"

    data = isolated_directories / DAY
    current = current_set(data)  # what readers open: the manifest's set
    cleaned = pq.read_metadata(current.path("cleaned_numbers.parquet")).num_rows
    rejected = pq.read_metadata(current.path("rejected_lines.parquet")).num_rows
    assert cleaned + rejected == 20_000
    assert pq.read_metadata(current.path("transformed_numbers.parquet")).num_rows == cleaned
    assert not [path.name for path in data.rglob("*.tmp")]
    with dg.DagsterInstance.get() as instance:
        for asset in ("cleaned_numbers", "transformed_numbers"):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
            # Each step's own process: launching it is a fixed cost the step paid.
            assert metadata["step_launch_seconds"] > 0, asset
            assert metadata["kernel_start_seconds"] > 0, asset
            wall = step_wall_seconds(instance, event.run_id, asset)
            assert_fixed_costs_add_up(metadata, wall)

    report_run = execute_job(tmp_path, count=0, job="report_job")
    assert report_run.returncode == 0, report_run.stderr[-3000:]
    report_log = report_run.stderr + report_run.stdout
    assert re.search(
        r"Asset check 'serial_and_parallel_outputs_identical' on '\w+' passed", report_log
    )
    # The report runs pools whatever auto would say: its cleaning workers' DEBUG records,
    # forwarded to the run log as they happened.
    cleaning_modules = r"data_pipeline\.numbers\.(parsing|fast_cleaning)"
    assert re.search(rf"\[worker \d pid \d+\] {cleaning_modules}: chunk \d+ ", report_log)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("parallelism_report"))
        report = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    details = report["details"]
    assert details["workers"] == 2
    assert details["items"] == 20_000
    assert report["serial_seconds"] > 0 and report["parallel_seconds"] > 0
    assert report["speedup"] == pytest.approx(
        report["serial_seconds"] / report["parallel_seconds"], rel=1e-2
    )
    assert details["other_steps_running"] == "none"
    assert details["start_method"] in {"forkserver", "spawn"}


def test_a_failing_step_makes_the_command_exit_non_zero_without_dagster_home(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    missing = tmp_path / "missing.txt"
    result = execute_job(tmp_path, count=10, extra=f"source_path: {missing}", env=env)
    assert result.returncode != 0
    log = result.stderr + result.stdout
    assert "RUN_FAILURE" in log
    # Checked before any step starts: the run's first ERROR line is the sentence.
    first_error = next(line for line in log.splitlines() if " - ERROR - " in line)
    assert first_error.endswith(
        f"the run did not start: ops.numbers_file.config.source_path = '{missing}': source_path "
        f"'{missing}' does not exist"
    ), first_error


def test_the_dagster_command_is_installed_beside_this_python():
    assert shutil.which(DAGSTER)
