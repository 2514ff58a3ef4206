"""The day's lines parsed on the process pool: accepted values and rejected lines, each in a
Parquet file of the day's set."""

import contextlib
import functools
import time

import dagster as dg

from data_pipeline.defs.assets.numbers_file import numbers_file
from data_pipeline.defs.assets.pooled_step import (
    POOLED_DAY_STEP,
    DayOutcome,
    pool_sentence,
    pooled_step_start,
    step_cost_metadata,
    step_result,
)
from data_pipeline.defs.catalog import catalog, column_schema
from data_pipeline.defs.checks import LINE_CHECK, every_line_accepted_or_rejected
from data_pipeline.defs.configs import CleaningConfig
from data_pipeline.defs.day_files import DayFiles, writing
from data_pipeline.defs.partitions import RANGE_BACKFILL, described_days
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.input_gate import (
    UnusableInputError,
    rejection_warning,
    too_few_accepted,
)
from data_pipeline.numbers.output_set import SetFile
from data_pipeline.numbers.parsing import RejectReason
from data_pipeline.numbers.stages.cleaning import CleaningJob, clean_files_to_parquet
from data_pipeline.numbers.stages.parquet_output import CLEANED_SCHEMA, REJECTED_SCHEMA
from data_pipeline.numbers.stages.summaries import CleaningSummary
from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    digest_key,
    pinned,
)


@dg.asset(
    **catalog("cleaned_numbers", CLEANED_SCHEMA),
    kinds={"python", "parquet"},
    deps=[numbers_file],
    check_specs=[LINE_CHECK],
    **POOLED_DAY_STEP,
    backfill_policy=RANGE_BACKFILL,
)
def cleaned_numbers(
    context: dg.AssetExecutionContext,
    config: CleaningConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Every line of numbers.txt parsed on a process pool: accepted values, in file order, go
    to `cleaned_numbers.parquet` (line_number, value), the rest to `rejected_lines.parquet`
    (line_number, raw, reason). Accepted + rejected always equals the lines in the file, which
    its blocking check verifies from the files written before any commit."""
    chosen = pooled_step_start(context, process_pool)
    outcomes = []
    with writing(context, data_directory) as days, contextlib.ExitStack() as pins:
        sources = [files.input(NUMBERS_FILE, "numbers_file") for files in days]
        jobs = [
            CleaningJob(
                # Pinned: no other run can replace the file while it is read.
                pins.enter_context(pinned(files.path_of(source), beside=files.directory)),
                files.output(CLEANED_NUMBERS_FILE),
                files.output(REJECTED_LINES_FILE),
            )
            for files, source in zip(days, sources, strict=True)
        ]
        context.log.info(
            f"cleaning {_described_sources(days, sources)} in chunks of "
            f"{process_pool.chunk_bytes():,} bytes"
        )
        started = time.perf_counter()
        summaries = clean_files_to_parquet(
            jobs,
            process_pool.settings(),
            process_pool.chunk_bytes(),
            context.log,
            chosen.kernel,
            accept=functools.partial(_enough_accepted, config.min_accepted_share, days),
        )
        warnings: list[str] = []
        try:
            for files, source, job, summary in zip(days, sources, jobs, summaries, strict=True):
                outcomes.append(_finish_day(context, files, source, job, summary, warnings))
        finally:
            if warnings:  # a range's days in one WARNING: each log line is a stored event
                context.log.warning("\n".join(warnings))
        seconds = time.perf_counter() - started
    context.log.info(
        f"{sum(outcome.metadata['lines'] for outcome in outcomes):,} lines cleaned, "
        f"{pool_sentence(summary.pool)} in {seconds:.2f} s"
    )
    return step_result(
        context,
        outcomes,
        {
            "dagster/column_schema": column_schema(CLEANED_SCHEMA),
            "rejected_lines_column_schema": column_schema(REJECTED_SCHEMA),
            **step_cost_metadata(context, chosen, summary.pool, seconds),
            **summary.run.metadata(seconds, dg.MetadataValue.md),
        },
    )


def _finish_day(
    context: dg.AssetExecutionContext,
    files: DayFiles,
    source: SetFile,
    job: CleaningJob,
    summary: CleaningSummary,
    warnings: list[str],
) -> DayOutcome:
    """Record a day's two files, check them, and commit the day's set if this step is the
    run's last writer and the check passed. A day of a range adds its rejection warning to
    ``warnings`` (logged once for the range); a single day logs it now."""
    upstream = {NUMBERS_FILE: source.sha256}
    for name, rows in (
        (CLEANED_NUMBERS_FILE, summary.accepted),
        (REJECTED_LINES_FILE, summary.rejected),
    ):
        files.record(name, summary.digests[digest_key(name)], rows, upstream)
    warning = rejection_warning(
        summary.lines, summary.rejected_by_reason, summary.first_line_by_reason
    )
    if files.days_in_step == 1:
        context.log.info(
            f"{files.day}: {summary.lines:,} lines, {summary.accepted:,} accepted, "
            f"{summary.rejected:,} rejected"
        )
        if warning:
            context.log.warning(warning)
    elif warning:
        warnings.append(files.about(warning))
    check = every_line_accepted_or_rejected(files)
    metadata = {
        "dagster/row_count": summary.accepted,
        "path": dg.MetadataValue.path(str(job.cleaned_path)),
        "rejected_path": dg.MetadataValue.path(str(job.rejected_path)),
        "lines": summary.lines,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        **{f"rejected_{reason}": summary.rejected_by_reason[reason] for reason in RejectReason},
        **summary.digests,
        "upstream_numbers_sha256": source.sha256,
        **files.finish(check),
    }
    return DayOutcome(files.day, metadata, [check])


def _described_sources(days: list[DayFiles], sources: list[SetFile]) -> str:
    sizes = [
        files.path_of(source).stat().st_size for files, source in zip(days, sources, strict=True)
    ]
    if len(days) == 1:
        return f"{days[0].path_of(sources[0])} ({sizes[0]:,} bytes)"
    return f"{described_days([files.day for files in days])}' numbers.txt ({sum(sizes):,} bytes)"


def _enough_accepted(
    min_share: float, days: list[DayFiles], index: int, summary: CleaningSummary
) -> None:
    refusal = too_few_accepted(
        summary.lines,
        summary.accepted,
        summary.rejected_by_reason,
        summary.first_line_by_reason,
        min_share,
    )
    if refusal:
        raise UnusableInputError(days[index].about(refusal))
