"""Everything Dagster loads, for the UI, the daemon and `dagster job execute`."""

import dagster as dg

from data_pipeline.defs.assets import (
    cleaned_numbers,
    numbers_file,
    parallelism_report,
    transformed_numbers,
)
from data_pipeline.defs.benchmark import benchmark_job, parallelism_benchmark, parallelism_sweep
from data_pipeline.defs.checks import (
    every_line_accepted_or_rejected,
    one_transformed_row_per_accepted_value,
    serial_and_parallel_outputs_identical,
)
from data_pipeline.defs.jobs import numbers_executor, numbers_job, report_job
from data_pipeline.defs.resources import ProcessPoolResource, data_directory_resource
from data_pipeline.defs.schedules import landing_files_sensor, numbers_daily_schedule

defs = dg.Definitions(
    assets=[
        numbers_file,
        cleaned_numbers,
        transformed_numbers,
        parallelism_report,
        parallelism_benchmark,
        parallelism_sweep,
    ],
    asset_checks=[
        every_line_accepted_or_rejected,
        one_transformed_row_per_accepted_value,
        serial_and_parallel_outputs_identical,
    ],
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
