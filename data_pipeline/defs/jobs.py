"""The jobs (one day's numbers, its report, the benchmarks) and the one executor they run on."""

import dagster as dg

from data_pipeline.defs.assets.benchmarks import parallelism_benchmark, parallelism_sweep
from data_pipeline.defs.assets.parallelism_report import parallelism_report
from data_pipeline.defs.catalog import GROUP
from data_pipeline.defs.configs import RUN_CONFIG_MODELS
from data_pipeline.defs.executor import guarded_multiprocess_executor
from data_pipeline.parallel.budget import cpu_plan

# The CPU budget decides how many steps of a run execute at once (and, in the resource, how
# many workers each pool gets), so steps x workers never exceeds the CPUs: see budget.py.
# max_concurrent bounds every step, pooled or not: with the default budget of one step at a
# time, a check or the input step never competes with a pool for the CPUs, nor with the
# report's timings. It holds within one run only: across runs, limit them with Dagster's run
# queue (max_concurrent_runs) or concurrency pools.
PLAN = cpu_plan()
MAX_CONCURRENT_STEPS = PLAN.steps_at_once

# Dagster's multiprocess executor, which first checks the run's config and takes the day's
# writer lock in the run's own process (executor.py).
numbers_executor = guarded_multiprocess_executor(RUN_CONFIG_MODELS).configured(
    {"max_concurrent": MAX_CONCURRENT_STEPS},
    name="numbers_executor",
)

numbers_job = dg.define_asset_job(
    name="numbers_job",
    selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(parallelism_report),
    executor_def=numbers_executor,
    description=(
        "One day: ingest the day's export (or generate the day's file), clean and transform "
        "it on process pools, and check every line is accounted for."
    ),
)

# The report repeats both stages serially and on a pool several times: three or more times
# the pipeline's own CPU work. It is measured when asked, not on every daily run.
report_job = dg.define_asset_job(
    name="report_job",
    selection=dg.AssetSelection.assets(parallelism_report),
    executor_def=numbers_executor,
    description=(
        "Did the pools pay off for a day? Times cleaning and the transform of the day's input "
        "serially and on a pool (minutes; run it when you want the measurement)."
    ),
)

# In no schedule: it takes minutes and every CPU, and its executor runs one step at a time.
benchmark_job = dg.define_asset_job(
    name="benchmark_job",
    selection=dg.AssetSelection.assets(parallelism_benchmark, parallelism_sweep),
    executor_def=numbers_executor,
    description=(
        "Time every strategy side by side, and sweep sizes and workers to find where the "
        "pool pays (minutes each; run it on request, not daily)."
    ),
)
