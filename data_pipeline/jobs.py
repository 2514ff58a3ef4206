"""The job that materializes the numbers assets, and the executor it runs on."""

import dagster as dg

from data_pipeline.assets import GROUP, POOLED_STEP_TAGS

# Each pooled step already starts one worker per available CPU, so a second pooled step at
# the same time would only oversubscribe the CPUs and spoil the report's timings. Every step
# still runs in its own process; the tag limit keeps pooled steps one at a time even if
# max_concurrent is raised for lighter steps.
MAX_CONCURRENT_STEPS = 1

numbers_executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": MAX_CONCURRENT_STEPS,
        "tag_concurrency_limits": [
            {"key": key, "value": value, "limit": 1} for key, value in POOLED_STEP_TAGS.items()
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
