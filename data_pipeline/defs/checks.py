"""Asset checks: blocking, so a failure fails the run (and `dagster job execute` exits
non-zero). They re-read the outputs from disk, independently of the code that wrote them."""

import dagster as dg

from data_pipeline.defs.assets import (
    cleaned_numbers,
    numbers_file,
    parallelism_report,
    transformed_numbers,
)
from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    TRANSFORMED_NUMBERS_FILE,
    data_directory,
)
from data_pipeline.numbers.verification import (
    Verdict,
    every_line_accounted_for,
    one_row_per_accepted_value,
)

STAGES = ("cleaning", "transform")


@dg.asset_check(asset=cleaned_numbers, additional_deps=[numbers_file], blocking=True)
def every_line_accepted_or_rejected() -> dg.AssetCheckResult:
    """Accepted + rejected equals the lines of numbers.txt, and the line numbers of the two
    outputs strictly increase and together cover every line exactly once."""
    directory = data_directory()
    return _result(
        every_line_accounted_for(
            directory / NUMBERS_FILE,
            directory / CLEANED_NUMBERS_FILE,
            directory / REJECTED_LINES_FILE,
        )
    )


@dg.asset_check(asset=transformed_numbers, additional_deps=[cleaned_numbers], blocking=True)
def one_transformed_row_per_accepted_value() -> dg.AssetCheckResult:
    """transformed_numbers has one row per accepted value, same line numbers and values, in
    the same order."""
    directory = data_directory()
    return _result(
        one_row_per_accepted_value(
            directory / CLEANED_NUMBERS_FILE, directory / TRANSFORMED_NUMBERS_FILE
        )
    )


@dg.asset_check(asset=parallelism_report, blocking=True)
def serial_and_parallel_outputs_identical(
    context: dg.AssetCheckExecutionContext,
) -> dg.AssetCheckResult:
    """The serial and parallel runs of the latest report produced outputs with identical
    SHA-256 digests, for cleaning and for the transform."""
    event = context.instance.get_latest_materialization_event(parallelism_report.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(
            passed=False, description="parallelism_report has no materialization"
        )
    metadata = {key: value.value for key, value in event.asset_materialization.metadata.items()}
    differing = [
        stage
        for stage in STAGES
        if metadata.get(f"{stage}_serial_digest") != metadata.get(f"{stage}_parallel_digest")
        or not metadata.get(f"{stage}_serial_digest")
    ]
    return dg.AssetCheckResult(
        passed=not differing,
        description=(
            f"digests differ or are missing for: {', '.join(differing)}"
            if differing
            else "serial and parallel digests are identical for cleaning and transform"
        ),
        metadata={
            f"{stage}_digest": metadata.get(f"{stage}_serial_digest", "") for stage in STAGES
        },
    )


def _result(verdict: Verdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=verdict.passed, description=verdict.explanation, metadata=verdict.figures
    )
