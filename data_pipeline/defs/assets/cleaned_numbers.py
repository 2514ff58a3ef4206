"""The day's lines parsed on the process pool: accepted values and rejected lines, each in a
Parquet file of the day's set."""

import functools
import time

import dagster as dg

from data_pipeline.defs.assets.numbers_file import numbers_file
from data_pipeline.defs.assets.pooled_step import (
    POOLED_DAY_STEP,
    pool_sentence,
    pooled_step_start,
    step_cost_metadata,
)
from data_pipeline.defs.catalog import catalog, column_schema
from data_pipeline.defs.checks import LINE_CHECK, every_line_accepted_or_rejected
from data_pipeline.defs.configs import CleaningConfig
from data_pipeline.defs.day_files import writing
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.input_gate import (
    UnusableInputError,
    rejection_warning,
    too_few_accepted,
)
from data_pipeline.numbers.parsing import RejectReason
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
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
    kernel = chosen.kernel
    with writing(context, data_directory) as files:
        source = files.input(NUMBERS_FILE, "numbers_file")
        cleaned, rejected = files.output(CLEANED_NUMBERS_FILE), files.output(REJECTED_LINES_FILE)
        context.log.info(
            f"cleaning {files.path_of(source)} ({files.path_of(source).stat().st_size:,} "
            f"bytes) in chunks of {process_pool.chunk_bytes():,} bytes"
        )
        started = time.perf_counter()
        with pinned(files.path_of(source), beside=files.directory) as snapshot:
            summary = clean_to_parquet(
                snapshot,
                cleaned,
                rejected,
                process_pool.settings(),
                process_pool.chunk_bytes(),
                context.log,
                kernel,
                accept=functools.partial(_enough_accepted, config.min_accepted_share),
            )
        seconds = time.perf_counter() - started
        upstream = {NUMBERS_FILE: source.sha256}
        for name, rows in (
            (CLEANED_NUMBERS_FILE, summary.accepted),
            (REJECTED_LINES_FILE, summary.rejected),
        ):
            files.record(name, summary.digests[digest_key(name)], rows, upstream)
        context.log.info(
            f"{summary.lines:,} lines: {summary.accepted:,} accepted, {summary.rejected:,} "
            f"rejected, {pool_sentence(summary.pool)} in {seconds:.2f} s"
        )
        warning = rejection_warning(
            summary.lines, summary.rejected_by_reason, summary.first_line_by_reason
        )
        if warning:
            context.log.warning(warning)
        check = every_line_accepted_or_rejected(files)
        set_metadata = files.finish(check)
    return dg.MaterializeResult(
        check_results=[check],
        metadata={
            "dagster/row_count": summary.accepted,
            "dagster/column_schema": column_schema(CLEANED_SCHEMA),
            "path": dg.MetadataValue.path(str(cleaned)),
            "rejected_path": dg.MetadataValue.path(str(rejected)),
            "rejected_lines_column_schema": column_schema(REJECTED_SCHEMA),
            **step_cost_metadata(context, chosen, summary.pool, seconds),
            "lines": summary.lines,
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            **{f"rejected_{reason}": summary.rejected_by_reason[reason] for reason in RejectReason},
            **summary.run.metadata(seconds, dg.MetadataValue.md),
            **summary.digests,
            "upstream_numbers_sha256": source.sha256,
            **set_metadata,
        },
    )


def _enough_accepted(min_share: float, summary: CleaningSummary) -> None:
    refusal = too_few_accepted(
        summary.lines,
        summary.accepted,
        summary.rejected_by_reason,
        summary.first_line_by_reason,
        min_share,
    )
    if refusal:
        raise UnusableInputError(refusal)
