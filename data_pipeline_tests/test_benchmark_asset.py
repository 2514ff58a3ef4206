"""The benchmark asset: every strategy timed on the same input, in a job of its own."""

import dagster as dg

from data_pipeline.definitions import defs
from data_pipeline.defs.benchmark import parallelism_benchmark
from data_pipeline.defs.resources import ProcessPoolResource


def test_the_benchmark_runs_in_its_own_job_and_no_schedule_requests_it():
    job = defs.resolve_job_def("benchmark_job")
    assert [str(key) for key in job.asset_layer.executable_asset_keys] == [
        str(dg.AssetKey("parallelism_benchmark"))
    ]
    for schedule in defs.schedules:
        assert schedule.job_name != "benchmark_job"
    numbers_job = defs.resolve_job_def("numbers_job")
    assert dg.AssetKey("parallelism_benchmark") not in numbers_job.asset_layer.executable_asset_keys


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
