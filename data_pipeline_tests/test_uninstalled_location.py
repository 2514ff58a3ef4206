"""A code location that is a single file, never installed: `python_file`, the way many teams
start. Its own top-level function runs on the pool from `dagster job execute -f`, with
forkserver and with spawn workers, from a directory where nothing of it is importable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = """
import os

import dagster as dg

from data_pipeline.api import ProcessPoolResource


def cube_and_say(value: int) -> int:
    print(f"cubing {value} in {os.getpid()}")
    return value**3


@dg.asset
def cubes(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource):
    run = process_pool.map(context, cube_and_say, range(8), describe=lambda v: f"value {v}")
    values = list(run)
    assert values == [value**3 for value in range(8)], values
    return dg.MaterializeResult(metadata={"workers": run.metadata()["workers"]})


defs = dg.Definitions(
    assets=[cubes],
    jobs=[dg.define_asset_job("cubes_job", [cubes], executor_def=dg.multiprocess_executor)],
    resources={"process_pool": ProcessPoolResource()},
)
"""
RUN_CONFIG = """
resources:
  process_pool:
    config: {{mode: parallel, workers: 2, start_method: {start_method}}}
"""


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_single_file_location_runs_its_own_function_on_the_pool(tmp_path, start_method):
    location = tmp_path / "team_location"
    location.mkdir()
    (location / "team_definitions.py").write_text(LOCATION)
    (tmp_path / "config.yaml").write_text(RUN_CONFIG.format(start_method=start_method))
    command = [DAGSTER, "job", "execute", "-f", str(location / "team_definitions.py")]
    finished = subprocess.run(
        [*command, "-j", "cubes_job", "-c", "config.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    log = finished.stdout + finished.stderr
    assert finished.returncode == 0, log[-3000:]
    for value in range(8):
        assert f"stdout: cubing {value} in " in log
    assert "[worker 0 pid" in log and "[worker 1 pid" in log
