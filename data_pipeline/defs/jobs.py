"""The job that materializes the numbers assets, and the executor it runs on."""

import dagster as dg

from data_pipeline.defs.assets import GROUP
from data_pipeline.parallel.budget import cpu_plan

# The CPU budget decides how many steps of a run execute at once (and, in the resource, how
# many workers each pool gets), so steps x workers never exceeds the CPUs: see budget.py.
# max_concurrent bounds every step, pooled or not: with the default budget of one step at a
# time, a check or the input step never competes with a pool for the CPUs, nor with the
# report's timings. It holds within one run only: across runs, limit them with Dagster's run
# queue (max_concurrent_runs) or concurrency pools.
PLAN = cpu_plan()
MAX_CONCURRENT_STEPS = PLAN.steps_at_once

numbers_executor = dg.multiprocess_executor.configured(
    {"max_concurrent": MAX_CONCURRENT_STEPS},
    name="numbers_executor",
)

numbers_job = dg.define_asset_job(
    name="numbers_job",
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=numbers_executor,
    description=(
        "Generate (or ingest) the numbers file, clean and transform it on process pools, "
        "and report whether the pools paid off."
    ),
)
