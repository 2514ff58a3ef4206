"""The team's code location as a team runs it: copied to a throwaway directory, never
installed, loaded by module name with a working directory (as workspace.yaml loads it),
materialized by `dagster job execute` on the multiprocess executor, the pool's workers
started by forkserver and by spawn. It imports data_pipeline only as a team would: its public
face (data_pipeline.api), and the definitions Dagster loads, to make the upstream day."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.api import DataDirectoryResource, ProcessPoolResource
from data_pipeline.definitions import defs

DAGSTER = str(Path(sys.executable).with_name("dagster"))
MODULE, JOB = "bucket_stats.definitions", "last_digit_statistics_job"
LOCATION = Path(__file__).resolve().parents[1]
RUN_CONFIG = """
resources:
  process_pool:
    config:
      mode: parallel
      workers: 2
      start_method: {start_method}
"""


DAY = "2026-11-20"


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_the_uninstalled_location_runs_its_function_on_the_pool(tmp_path, start_method):
    location = tmp_path / "team"
    shutil.copytree(LOCATION, location, ignore=shutil.ignore_patterns("*_tests", "__pycache__"))
    (tmp_path / "config.yaml").write_text(RUN_CONFIG.format(start_method=start_method))
    data = tmp_path / "data"
    # The day's files as data_pipeline's numbers_job leaves them, made by its own assets.
    upstream = dg.materialize(
        [defs.get_assets_def("numbers_file"), defs.get_assets_def("cleaned_numbers")],
        partition_key=DAY,
        resources={
            "data_directory": DataDirectoryResource(path=str(data)),
            "process_pool": ProcessPoolResource(mode="serial"),
        },
        run_config={
            "ops": {"numbers_file": {"config": {"count": 4_000, "seed": 3, "dirty_fraction": 0.02}}}
        },
    )
    assert upstream.success
    [cleaning] = upstream.asset_materializations_for_node("cleaned_numbers")
    assert cleaning.metadata["accepted"].value > 3_000
    environment = {
        **os.environ,
        "DATA_PIPELINE_DATA_DIR": str(data),
        "DATA_PIPELINE_COSTS_DIR": str(tmp_path / "pool_costs"),
        "DAGSTER_HOME": str(tmp_path),
    }
    command = [DAGSTER, "job", "execute", "-m", MODULE, "-d", str(location), "-j", JOB]
    command += ["--tags", json.dumps({"dagster/partition": DAY})]
    finished = subprocess.run(
        [*command, "-c", "config.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=tmp_path,
    )
    log = finished.stdout + finished.stderr
    assert finished.returncode == 0, log[-3000:]
    assert "RUN_SUCCESS" in log
    # Each bucket's print and log record, from the workers, in the run's log.
    for digit in range(10):
        assert f"stdout: bucket {digit}: " in log
    assert "bucket_stats.statistics: bucket 7: longest Collatz run" in log
    assert log.count("[worker 0 pid") and log.count("[worker 1 pid")
