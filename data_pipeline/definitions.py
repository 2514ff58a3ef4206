"""Everything Dagster loads, for the UI, the daemon and `dagster job execute`."""

import dagster as dg

from data_pipeline.defs.assets.benchmarks import parallelism_benchmark, parallelism_sweep
from data_pipeline.defs.assets.cleaned_numbers import cleaned_numbers
from data_pipeline.defs.assets.numbers_file import numbers_file
from data_pipeline.defs.assets.parallelism_report import parallelism_report
from data_pipeline.defs.assets.transformed_numbers import transformed_numbers
from data_pipeline.defs.checks import serial_and_parallel_outputs_identical
from data_pipeline.defs.jobs import benchmark_job, numbers_executor, numbers_job, report_job
from data_pipeline.defs.resources.data_directory import data_directory_resource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.defs.schedules import numbers_daily_schedule
from data_pipeline.defs.sensors import landing_files_sensor

defs = dg.Definitions(
    assets=[
        numbers_file,
        cleaned_numbers,
        transformed_numbers,
        parallelism_report,
        parallelism_benchmark,
        parallelism_sweep,
    ],
    # cleaned_numbers' and transformed_numbers' checks are check_specs of the assets
    # (defs/checks.py): they run inside the step, before its commit.
    asset_checks=[serial_and_parallel_outputs_identical],
    jobs=[numbers_job, report_job, benchmark_job],
    schedules=[numbers_daily_schedule],
    sensors=[landing_files_sensor],
    resources={
        "data_directory": data_directory_resource(),
        "process_pool": ProcessPoolResource(),
    },
    # The same executor for a "Materialize" click in the UI and `dagster asset materialize`.
    executor=numbers_executor,
)
