"""The day's text file of numbers: the landed export, a given file, or one generated from the
day's seed."""

import shutil
from pathlib import Path

import dagster as dg

from data_pipeline.defs.assets.pooled_step import DayOutcome, step_result
from data_pipeline.defs.catalog import catalog
from data_pipeline.defs.configs import NumbersFileConfig
from data_pipeline.defs.day_files import DayFiles, writing
from data_pipeline.defs.partitions import RANGE_BACKFILL, daily_partitions, seed_of
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.chunking import count_lines
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.input_gate import check_input_file
from data_pipeline.numbers.storage import NUMBERS_FILE, atomic_output, digest_key


@dg.asset(
    **catalog("numbers_file"),
    kinds={"python", "text"},
    partitions_def=daily_partitions,
    backfill_policy=RANGE_BACKFILL,
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
    # The pool is not used here, but asking for it validates its config before any work
    # starts, so a bad setting fails the first step rather than the third.
    context.log.info(process_pool.describe_plan())
    with writing(context, data_directory) as days:
        outcomes = [_write_day(context, config, data_directory, files) for files in days]
    return step_result(context, outcomes, {})


def _write_day(
    context: dg.AssetExecutionContext,
    config: NumbersFileConfig,
    data_directory: DataDirectoryResource,
    files: DayFiles,
) -> DayOutcome:
    """One day's numbers.txt, written into the run's set for the day."""
    day = files.day
    landed = data_directory.landing_directory() / f"{day}.txt"
    source = config.source_path or (str(landed) if landed.is_file() else None)
    metadata: dict[str, object] = {}
    digests: dict[str, str] = {}
    target = files.output(NUMBERS_FILE)
    with atomic_output(target, digests) as temporary:
        if source:
            metadata["source"] = dg.MetadataValue.path(source)
            context.log.info(f"ingesting {source}")
            check_input_file(Path(source), config.allow_empty)
            shutil.copyfile(source, temporary)
        else:
            seed = seed_of(day) if config.seed is None else config.seed
            dirt = write_numbers_file(temporary, config.count, seed, config.dirty_fraction)
            check_input_file(temporary, config.allow_empty, shown_as=f"generated {target}")
            metadata["source"] = f"generated (seed {seed}): no {landed} has arrived"
            metadata["seed"] = seed
            metadata["dirty_lines"] = sum(dirt.values())
            metadata |= {f"dirty_lines_{kind}": count for kind, count in sorted(dirt.items())}
    lines = count_lines(target)
    files.record(NUMBERS_FILE, digests[digest_key(NUMBERS_FILE)], lines)
    context.log.info(f"wrote {lines:,} lines to {target}")
    metadata = {
        "path": dg.MetadataValue.path(str(target)),
        "lines": lines,
        "bytes": target.stat().st_size,
        **metadata,
        **digests,
        **files.finish(),
    }
    return DayOutcome(day, metadata)
