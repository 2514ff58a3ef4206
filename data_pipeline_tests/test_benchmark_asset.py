"""The benchmark assets, in a job of their own: every strategy timed on the same input, and
the sweeps of sizes and workers with their chart."""

import base64

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.assets.benchmarks import (
    SCALING_CHART_FILE,
    parallelism_benchmark,
    parallelism_sweep,
)
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource

BENCHMARKS = ("parallelism_benchmark", "parallelism_sweep")


def test_the_benchmark_runs_in_its_own_job_and_no_schedule_requests_it():
    job = defs.resolve_job_def("benchmark_job")
    assert sorted(key.path[-1] for key in job.asset_layer.executable_asset_keys) == list(BENCHMARKS)
    for schedule in defs.schedules:
        assert schedule.job_name != "benchmark_job"
    numbers_job = defs.resolve_job_def("numbers_job")
    for name in BENCHMARKS:
        assert dg.AssetKey(name) not in numbers_job.asset_layer.executable_asset_keys


def test_a_small_benchmark_records_the_table_the_verdict_and_plottable_speedups():
    result = dg.materialize(
        [parallelism_benchmark],
        resources={"process_pool": ProcessPoolResource(workers=2)},
        run_config={"ops": {"parallelism_benchmark": {"config": {"values": 3_000}}}},
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("parallelism_benchmark")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert "| serial Python |" in metadata["summary"]
    assert "Verdict" in metadata["summary"]
    assert isinstance(metadata["verdict"], str)
    assert metadata["verdict"].startswith("Compile first")
    for figure in ("numba_speedup", "numpy_speedup", "python_pool_speedup"):
        assert isinstance(metadata[figure], float) and metadata[figure] > 0, figure
    assert metadata["failed_strategies"] in (0, "", "none")


def test_a_small_sweep_records_the_chart_in_the_ui_and_on_disk(isolated_directories):
    result = dg.materialize(
        [parallelism_sweep],
        resources={
            "process_pool": ProcessPoolResource(workers=2),
            "data_directory": DataDirectoryResource(path=str(isolated_directories)),
        },
        run_config={"ops": {"parallelism_sweep": {"config": {"sizes": [10, 3_000]}}}},
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("parallelism_sweep")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    png = (isolated_directories / SCALING_CHART_FILE).read_bytes()
    assert png.startswith(b"\x89PNG")
    assert f"(data:image/png;base64,{base64.b64encode(png).decode()})" in metadata["chart"]
    assert metadata["chart_path"] == str(isolated_directories / SCALING_CHART_FILE)
    for series in ("cleaning_python", "cleaning_numba", "transform_python", "transform_numba"):
        assert isinstance(metadata[f"{series}_crossover"], int), series
    assert metadata["auto_worst_ratio"] > 0
    assert "### Workers" in metadata["chart"] and "**Verdict.**" in metadata["chart"]
    assert sorted(path.name for path in isolated_directories.iterdir()) == [SCALING_CHART_FILE]


def test_sweep_sizes_must_ascend(isolated_directories):
    with pytest.raises(Exception, match=r"sizes=\[100, 10\] must be positive and strictly"):
        dg.materialize(
            [parallelism_sweep],
            resources={
                "process_pool": ProcessPoolResource(workers=2),
                "data_directory": DataDirectoryResource(path=str(isolated_directories)),
            },
            run_config={"ops": {"parallelism_sweep": {"config": {"sizes": [100, 10]}}}},
        )
