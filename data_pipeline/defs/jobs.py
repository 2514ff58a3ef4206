"""The job that materializes the numbers assets, and the executor it runs on."""

import dagster as dg

from data_pipeline.defs.assets import GROUP, POOLED_STEP_TAGS
from data_pipeline.parallel.budget import cpu_plan

# The CPU budget decides how many pooled steps run at once (and, in the resource, how many
# workers each gets), so steps x workers never exceeds the CPUs: see budget.py. Lighter
# steps (checks, the input file) count against max_concurrent too, so it stays the same.
PLAN = cpu_plan()
MAX_CONCURRENT_STEPS = PLAN.steps_at_once

numbers_executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": MAX_CONCURRENT_STEPS,
        "tag_concurrency_limits": [
            {"key": key, "value": value, "limit": PLAN.steps_at_once}
            for key, value in POOLED_STEP_TAGS.items()
        ],
    },
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
