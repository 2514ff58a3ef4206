"""The team's code location as a team runs it: copied to a throwaway directory, never
installed, loaded by module name with a working directory (as workspace.yaml loads it),
materialized by `dagster job execute` on the multiprocess executor, the pool's workers
started by forkserver and by spawn."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.output_set import commit, record_file, run_directory
from data_pipeline.numbers.pipeline import clean_to_parquet
from data_pipeline.numbers.storage import DATA_DIR_VARIABLE, file_digest
from data_pipeline.parallel.pool import PoolSettings

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


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_the_uninstalled_location_runs_its_function_on_the_pool(tmp_path, start_method):
    location = tmp_path / "team"
    shutil.copytree(LOCATION, location, ignore=shutil.ignore_patterns("*_tests", "__pycache__"))
    (tmp_path / "config.yaml").write_text(RUN_CONFIG.format(start_method=start_method))
    data = tmp_path / "data"
    day = data / DAY  # the day's files, as data_pipeline's numbers_job leaves them
    own = run_directory(day, "run-1")
    write_numbers_file(own / "numbers.txt", count=4_000, seed=3, dirty_fraction=0.02)
    cleaning = clean_to_parquet(
        own / "numbers.txt",
        own / "cleaned_numbers.parquet",
        own / "rejected_lines.parquet",
        PoolSettings(1),
        64 * 1024,
    )
    numbers = file_digest(own / "numbers.txt")
    record_file(day, "run-1", "numbers.txt", numbers, 4_000)
    for name in ("cleaned_numbers.parquet", "rejected_lines.parquet"):
        record_file(day, "run-1", name, file_digest(own / name), 0, {"numbers.txt": numbers})
    assert set(commit(day, "run-1").current.files) == {
        "numbers.txt",
        "cleaned_numbers.parquet",
        "rejected_lines.parquet",
    }
    assert cleaning.accepted > 3_000
    environment = {
        **os.environ,
        DATA_DIR_VARIABLE: str(data),
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
