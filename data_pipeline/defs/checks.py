"""Asset checks: blocking, so a failure fails the run (and `dagster job execute` exits
non-zero). They re-read the outputs from disk, independently of the code that wrote them."""

import dagster as dg

from data_pipeline.defs.assets import (
    cleaned_numbers,
    numbers_file,
    parallelism_report,
    transformed_numbers,
)
from data_pipeline.defs.resources import DataDirectoryResource
from data_pipeline.measure.comparison import output_pairs
from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    REPORT_OUTPUTS_DIRECTORY,
    TRANSFORMED_NUMBERS_FILE,
)
from data_pipeline.numbers.verification import (
    Verdict,
    every_line_accounted_for,
    identical_parquet_files,
    one_row_per_accepted_value,
)


@dg.asset_check(asset=cleaned_numbers, additional_deps=[numbers_file], blocking=True)
def every_line_accepted_or_rejected(data_directory: DataDirectoryResource) -> dg.AssetCheckResult:
    """Accepted + rejected equals the lines of numbers.txt, and the line numbers of the two
    outputs strictly increase and together cover every line exactly once."""
    directory = data_directory.directory()
    return _result(
        every_line_accounted_for(
            directory / NUMBERS_FILE,
            directory / CLEANED_NUMBERS_FILE,
            directory / REJECTED_LINES_FILE,
        )
    )


@dg.asset_check(asset=transformed_numbers, additional_deps=[cleaned_numbers], blocking=True)
def one_transformed_row_per_accepted_value(
    data_directory: DataDirectoryResource,
) -> dg.AssetCheckResult:
    """transformed_numbers has one row per accepted value, same line numbers and values, in
    the same order."""
    directory = data_directory.directory()
    return _result(
        one_row_per_accepted_value(
            directory / CLEANED_NUMBERS_FILE, directory / TRANSFORMED_NUMBERS_FILE
        )
    )


@dg.asset_check(asset=parallelism_report, blocking=True)
def serial_and_parallel_outputs_identical(
    data_directory: DataDirectoryResource,
) -> dg.AssetCheckResult:
    """The serial and the parallel run of the latest report wrote the same rows, in the same
    order, for every output (cleaned, rejected, transformed): compared file against file."""
    directory = data_directory.directory() / REPORT_OUTPUTS_DIRECTORY
    problems, figures = [], {}
    for serial, parallel in output_pairs(directory):
        if not (serial.is_file() and parallel.is_file()):
            problems.append(f"{serial.name} or {parallel.name} is missing: materialize the report")
            continue
        verdict = identical_parquet_files(serial, parallel)
        figures[f"{serial.stem.removesuffix('_serial')}_rows"] = verdict.figures["rows"]
        if not verdict.passed:
            problems.append(verdict.explanation)
    return _result(
        Verdict(
            passed=not problems,
            explanation="; ".join(problems)
            or "serial and parallel outputs identical, row by row, for every output",
            figures=figures,
        )
    )


def _result(verdict: Verdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=verdict.passed, description=verdict.explanation, metadata=verdict.figures
    )
