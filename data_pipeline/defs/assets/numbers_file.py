"""The day's text file of numbers: the landed export, a given file, or one generated from the
day's seed."""

from pathlib import Path

import dagster as dg

from data_pipeline.defs.assets.pooled_step import DayOutcome, step_result
from data_pipeline.defs.catalog import catalog
from data_pipeline.defs.configs import NumbersFileConfig
from data_pipeline.defs.day_files import DayFiles, writing
from data_pipeline.defs.partitions import RANGE_BACKFILL, daily_partitions, seed_of
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import CPU_POOL, ProcessPoolResource
from data_pipeline.numbers.input_gate import UnusableInputError
from data_pipeline.numbers.stages.numbers_files import (
    NumbersFileJob,
    WrittenNumbersFile,
    write_numbers_files,
)
from data_pipeline.numbers.storage import NUMBERS_FILE, digest_key


@dg.asset(
    **catalog("numbers_file"),
    kinds={"python", "text"},
    partitions_def=daily_partitions,
    backfill_policy=RANGE_BACKFILL,
    pool=CPU_POOL,
)
def numbers_file(
    context: dg.AssetExecutionContext,
    config: NumbersFileConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """The day's text file of numbers, one per line, as messy as real exports: the day's
    export from the landing directory (`incoming/YYYY-MM-DD.txt`) when it has arrived, else
    generated from a seed derived from the date (or copied from `source_path`). Written to
    `numbers.txt` in the day's directory."""
    # The pool writes the files of a range's days side by side; for one day, asking for it
    # still validates its config before any work starts, so a bad setting fails here.
    context.log.info(process_pool.describe_plan())
    with writing(context, data_directory) as days:
        jobs = [_job(context, config, data_directory, files) for files in days]
        written = write_numbers_files(jobs, process_pool.settings(), context.log)
        outcomes = [
            _finish_day(context, files, job, done)
            for files, job, done in zip(days, jobs, written, strict=True)
        ]
    if len(days) > 1:  # one line for a range: each day's figures are in its materialization
        lines = sum(outcome.metadata["lines"] for outcome in outcomes)
        context.log.info(f"wrote {len(days)} days' files, {lines:,} lines in all")
    return step_result(context, outcomes, {})


def _job(
    context: dg.AssetExecutionContext,
    config: NumbersFileConfig,
    data_directory: DataDirectoryResource,
    files: DayFiles,
) -> NumbersFileJob:
    """What to write for the day: its landed export, the configured file, or its seed's."""
    landed = _landed(data_directory, files.day)
    source = config.source_path or (str(landed) if landed.is_file() else None)
    if source:
        context.log.info(f"ingesting {source}")
    return NumbersFileJob(
        target=files.output(NUMBERS_FILE),
        source=Path(source) if source else None,
        count=config.count,
        seed=seed_of(files.day) if config.seed is None else config.seed,
        dirty_fraction=config.dirty_fraction,
        allow_empty=config.allow_empty,
    )


def _finish_day(
    context: dg.AssetExecutionContext,
    files: DayFiles,
    job: NumbersFileJob,
    written: WrittenNumbersFile,
) -> DayOutcome:
    """Record the day's file in the run's set; refuse a day whose input cannot be right."""
    if written.refusal:
        raise UnusableInputError(files.about(written.refusal))
    files.record(NUMBERS_FILE, written.digests[digest_key(NUMBERS_FILE)], written.lines)
    if files.days_in_step == 1:
        context.log.info(f"wrote {written.lines:,} lines to {job.target}")
    if job.source is not None:
        metadata: dict[str, object] = {"source": dg.MetadataValue.path(str(job.source))}
    else:
        landed = _landed(files.data_directory, files.day)
        metadata = {
            "source": f"generated (seed {job.seed}): no {landed} has arrived",
            "seed": job.seed,
            "dirty_lines": sum(written.dirt.values()),
            **{f"dirty_lines_{kind}": count for kind, count in sorted(written.dirt.items())},
        }
    return DayOutcome(
        files.day,
        {
            "path": dg.MetadataValue.path(str(job.target)),
            "lines": written.lines,
            "bytes": written.size,
            **metadata,
            **written.digests,
            **files.finish(),
        },
    )


def _landed(data_directory: DataDirectoryResource, day: str) -> Path:
    """Where the day's export lands, if it arrives."""
    return data_directory.landing_directory() / f"{day}.txt"
