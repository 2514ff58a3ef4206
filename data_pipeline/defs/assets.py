"""The numbers assets. Each one only wires files, logging and metadata; the work lives in
plain modules (``pipeline``, ``comparison``) that know nothing of Dagster."""

import dataclasses
import functools
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field, field_validator

from data_pipeline.defs.day_files import writing
from data_pipeline.defs.partitions import daily_partitions, seed_of
from data_pipeline.defs.resources import CPU_POOL, DataDirectoryResource, ProcessPoolResource
from data_pipeline.measure.comparison import compare_serial_and_parallel, save_outputs
from data_pipeline.measure.report import (
    COMPARISON_COLUMNS,
    comparison_rows,
    cpu_wait_share,
    headline,
    markdown_table,
    verdict,
)
from data_pipeline.numbers.chunking import count_lines
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.input_gate import (
    UnusableInputError,
    check_input_file,
    rejection_warning,
    too_few_accepted,
)
from data_pipeline.numbers.kernel_choice import Kernel, start_seconds
from data_pipeline.numbers.parsing import RejectReason
from data_pipeline.numbers.pipeline import (
    CLEANED_SCHEMA,
    REJECTED_SCHEMA,
    TRANSFORMED_SCHEMA,
    CleaningSummary,
    clean_to_parquet,
    transform_to_parquet,
)
from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    REPORT_OUTPUTS_DIRECTORY,
    TRANSFORMED_NUMBERS_FILE,
    atomic_output,
    digest_key,
    pinned,
)
from data_pipeline.parallel.insight import rounded
from data_pipeline.parallel.stats import PoolStats

GROUP = "numbers"
# transformed_numbers' metadata: the digest of the cleaned values it was computed from.
UPSTREAM_CLEANED_KEY = "upstream_cleaned_numbers_sha256"
# Who answers for these assets, and how the catalog files them (Dagster's example projects
# set both on every asset).
OWNERS = ["team:data-engineering"]
TAGS = {"domain": "numbers", "compute": "cpu-heavy"}
# Bumped when an asset's output for the same input changes (a parsing rule, a transform
# column, the generator), so the UI can tell materializations of older logic apart.
CODE_VERSIONS = {
    "numbers_file": "1",
    "cleaned_numbers": "1",
    "transformed_numbers": "1",
    "parallelism_report": "2",
}
COLUMN_DESCRIPTIONS = {
    "line_number": "line of numbers.txt, from 1, counting blank and rejected lines",
    "value": "the value the line holds, as int64",
    "raw": "the rejected line as text (bytes that are not UTF-8 as \\x escapes)",
    "reason": "why the line was rejected (see the README: how the lines are parsed)",
    "square": "value squared, exact (38-digit decimal)",
    "digit_sum": "sum of the decimal digits of |value|",
    "collatz_steps": "steps of the Collatz map from value to 1 (null below 1)",
    "smallest_prime_factor": "smallest prime factor of |value| (null for 0, 1 and -1)",
    "largest_prime_factor": "largest prime factor of |value| (null for 0, 1 and -1, or unknown)",
    "is_prime": "whether value is prime",
}


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A Parquet file's columns as the catalog shows them (dagster/column_schema)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type), COLUMN_DESCRIPTIONS.get(field.name))
            for field in schema
        ]
    )


def catalog(name: str, schema: pa.Schema | None = None) -> dict[str, object]:
    """The arguments of ``@dg.asset`` every numbers asset shares: group, owners, tags, code
    version, and the columns of the Parquet file it writes."""
    metadata = {"dagster/column_schema": column_schema(schema)} if schema is not None else {}
    return {
        "group_name": GROUP,
        "owners": OWNERS,
        "tags": TAGS,
        "code_version": CODE_VERSIONS[name],
        "metadata": metadata,
    }


# A worker death that survived the in-pool restart may still be a passing accident (memory
# pressure from elsewhere): one more try of the step. Errors that would repeat are raised
# as dg.Failure(allow_retries=False) instead.
POOLED_STEP_RETRY = dg.RetryPolicy(max_retries=1, delay=2)


class NumbersFileConfig(dg.Config):
    """What numbers_file generates, or which existing file it ingests instead."""

    count: int = Field(
        default=400_000,
        ge=0,
        description=(
            "Lines to generate. The default makes the whole job take 40-60 s on two cores, "
            "with the pooled steps' compute well above process overheads."
        ),
    )
    seed: int | None = Field(
        default=None,
        description=(
            "Random seed: the same seed gives a byte-identical file. Default: the day as a "
            "number (2026-11-25: 20261125), so each day's file is different and reproducible."
        ),
    )
    dirty_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description=(
            "Share of lines made messy (blanks, whitespace, thousands separators, floats, "
            "scientific notation, hex, words, NaN/inf, values beyond int64, duplicates, CRLF)."
        ),
    )
    source_path: str | None = Field(
        default=None,
        description=(
            "Ingest this existing text file (one number per line) instead of the day's file "
            "in the landing directory or a generated one. It is only read, never changed; a "
            "copy goes to the day's directory."
        ),
    )

    allow_empty: bool = Field(
        default=False,
        description=(
            "Accept an empty input (a day with no lines). Off: an empty file fails the run "
            "with 'input file is empty' before anything is replaced."
        ),
    )

    @field_validator("source_path")
    @classmethod
    def _readable_file(cls, source_path: str | None) -> str | None:
        if source_path is None:
            return None
        path = Path(source_path).expanduser()
        if not path.exists():
            raise ValueError(f"source_path {source_path!r} does not exist")
        if not path.is_file():
            raise ValueError(f"source_path {source_path!r} is not a regular file")
        if not os.access(path, os.R_OK):
            raise ValueError(f"source_path {source_path!r} is not readable")
        return str(path)


@dg.asset(**catalog("numbers_file"), kinds={"python", "text"}, partitions_def=daily_partitions)
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
    day = context.partition_key
    landed = data_directory.landing_directory() / f"{day}.txt"
    source = config.source_path or (str(landed) if landed.is_file() else None)
    metadata: dict[str, object] = {}
    digests: dict[str, str] = {}
    with writing(context, data_directory) as files:
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
        set_metadata = files.finish()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "lines": lines,
            "bytes": target.stat().st_size,
            **metadata,
            **digests,
            **set_metadata,
        }
    )


class CleaningConfig(dg.Config):
    """How much of the input must be numbers for the cleaning to stand."""

    min_accepted_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Fail, before anything is replaced, when fewer than this share of the lines are "
            "accepted (a binary file, another column, the wrong export): the message names "
            "the three most frequent reasons with counts and the first line of each. 0 "
            "accepts any file."
        ),
    )


@dg.asset(
    **catalog("cleaned_numbers", CLEANED_SCHEMA),
    kinds={"python", "parquet"},
    deps=[numbers_file],
    retry_policy=POOLED_STEP_RETRY,
    partitions_def=daily_partitions,
    pool=CPU_POOL,
)
def cleaned_numbers(
    context: dg.AssetExecutionContext,
    config: CleaningConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Every line of numbers.txt parsed on a process pool: accepted values, in file order, go
    to `cleaned_numbers.parquet` (line_number, value), the rest to `rejected_lines.parquet`
    (line_number, raw, reason). Accepted + rejected always equals the lines in the file."""
    context.log.info(process_pool.describe_plan())
    kernel = _chosen_kernel(context, process_pool)
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
                process_pool.settings(costs_directory=data_directory.directory()),
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
            f"rejected, {_pool_sentence(summary.pool)} in {seconds:.2f} s"
        )
        warning = rejection_warning(
            summary.lines, summary.rejected_by_reason, summary.first_line_by_reason
        )
        if warning:
            context.log.warning(warning)
        set_metadata = files.finish()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.accepted,
            "dagster/column_schema": column_schema(CLEANED_SCHEMA),
            "path": dg.MetadataValue.path(str(cleaned)),
            "rejected_path": dg.MetadataValue.path(str(rejected)),
            "rejected_lines_column_schema": column_schema(REJECTED_SCHEMA),
            **_kernel_metadata(kernel),
            "lines": summary.lines,
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            **{f"rejected_{reason}": summary.rejected_by_reason[reason] for reason in RejectReason},
            **summary.run.metadata(seconds, dg.MetadataValue.md),
            **summary.digests,
            "upstream_numbers_sha256": source.sha256,
            **set_metadata,
        }
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


@dg.asset(
    **catalog("transformed_numbers", TRANSFORMED_SCHEMA),
    kinds={"python", "parquet"},
    deps=[cleaned_numbers],
    retry_policy=POOLED_STEP_RETRY,
    partitions_def=daily_partitions,
    pool=CPU_POOL,
)
def transformed_numbers(
    context: dg.AssetExecutionContext,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Each accepted value with its square, digit sum, Collatz step count, smallest and
    largest prime factor and primality, computed by the chosen kernel (by default the fastest
    installed one; plain Python is the reference every kernel must match), in the step or on a
    process pool as `mode` decides. Written in input order to `transformed_numbers.parquet`."""
    context.log.info(process_pool.describe_plan())
    kernel = _chosen_kernel(context, process_pool)
    with writing(context, data_directory) as files:
        source = files.input(CLEANED_NUMBERS_FILE, "cleaned_numbers")
        target = files.output(TRANSFORMED_NUMBERS_FILE)
        started = time.perf_counter()
        summary = transform_to_parquet(
            files.path_of(source),
            target,
            process_pool.settings(costs_directory=data_directory.directory()),
            process_pool.chunk_values_for(kernel),
            context.log,
            kernel,
        )
        seconds = time.perf_counter() - started
        files.record(
            TRANSFORMED_NUMBERS_FILE,
            summary.digests[digest_key(TRANSFORMED_NUMBERS_FILE)],
            summary.rows,
            {CLEANED_NUMBERS_FILE: source.sha256},
        )
        context.log.info(
            f"transformed {summary.rows:,} values, {_pool_sentence(summary.pool)} in "
            f"{seconds:.2f} s"
        )
        set_metadata = files.finish()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.rows,
            "dagster/column_schema": column_schema(TRANSFORMED_SCHEMA),
            "path": dg.MetadataValue.path(str(target)),
            **_kernel_metadata(kernel),
            "rows": summary.rows,
            **summary.run.metadata(seconds, dg.MetadataValue.md),
            **summary.digests,
            UPSTREAM_CLEANED_KEY: source.sha256,
            **set_metadata,
        }
    )


class ParallelismReportConfig(dg.Config):
    """How the report measures."""

    repeats: int = Field(
        default=3,
        ge=3,
        le=50,
        description=(
            "Timed runs of each side (serial, pool), alternating serial, pool, pool, serial, "
            "...; the report gives medians with the fastest and slowest run. Each repeat "
            "costs one more serial and one more pooled pass over the input."
        ),
    )


@dg.asset(
    **catalog("parallelism_report"),
    kinds={"python", "parquet"},
    # Depending on transformed_numbers makes this run after both pooled steps, so its
    # timings are not shared with another pool of the same run.
    deps=[numbers_file, transformed_numbers],
    retry_policy=POOLED_STEP_RETRY,
    partitions_def=daily_partitions,
    pool=CPU_POOL,
)
def parallelism_report(
    context: dg.AssetExecutionContext,
    config: ParallelismReportConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Did the process pool pay off? Times cleaning and the transform of numbers.txt serially
    (same functions, one process) and on the pool, several times each in alternating order,
    fails if any run's output differs in a value or in order, and records median timings
    with their spread, speedup, efficiency and where the parallel time went. Both runs'
    outputs are kept in `parallelism_report/` for the check to compare."""
    context.log.info(process_pool.describe_plan())
    kernel = _chosen_kernel(context, process_pool)
    other_steps = _other_steps_running(context)
    load_before = os.getloadavg()[0]
    with writing(context, data_directory) as files:
        source = files.input(NUMBERS_FILE, "numbers_file")
        directory = files.directory
        with pinned(files.path_of(source), beside=directory) as snapshot:
            comparison = compare_serial_and_parallel(
                snapshot,
                # A pool restarted mid-way would make the timings meaningless: fail instead, and let
                # the step's retry policy run the whole comparison again.
                dataclasses.replace(process_pool.settings(), restarts_on_worker_death=0),
                process_pool.chunk_bytes(),
                process_pool.chunk_values_for(kernel),
                config.repeats,
                context.log,
                kernel,
            )
        save_outputs(comparison, directory / REPORT_OUTPUTS_DIRECTORY)
    table = markdown_table(comparison)
    context.log.info(verdict(comparison))
    details: dict[str, object] = {
        **_kernel_metadata(kernel),
        "backend": process_pool.backend,
        "start_method": "dask" if process_pool.backend == "dask" else process_pool.start_method,
        "repeats": comparison.repeats,
        "workers": comparison.workers,
        "cpus_available": comparison.cpus_available,
        "items": comparison.cleaning.items,
        "chunks": comparison.cleaning.chunks + comparison.transform.chunks,
        "pool_start_seconds": comparison.total("startup_seconds"),
        "compute_seconds": comparison.total("compute_seconds"),
        "worker_idle_seconds": comparison.total("idle_seconds"),
        "shutdown_seconds": comparison.total("shutdown_seconds"),
        "collect_seconds": comparison.total("collect_seconds"),
        "load_average_1m_before": load_before,
        "other_steps_running": ", ".join(other_steps) or "none",
        "rows_compared": sum(stage.rows_compared for stage in comparison.stages),
        "input_sha256": source.sha256,
    }
    for stage in comparison.stages:
        details |= {
            f"{stage.name}_serial_seconds": stage.serial_seconds,
            f"{stage.name}_serial_seconds_min": stage.serial.seconds.minimum,
            f"{stage.name}_serial_seconds_max": stage.serial.seconds.maximum,
            f"{stage.name}_parallel_seconds": stage.parallel_seconds,
            f"{stage.name}_parallel_seconds_min": stage.parallel.seconds.minimum,
            f"{stage.name}_parallel_seconds_max": stage.parallel.seconds.maximum,
            f"{stage.name}_speedup": stage.speedup,
            f"{stage.name}_cpu_contention": stage.cpu_contention,
            f"{stage.name}_cpu_wait_share": stage.cpu_wait_share,
        }
    # In the order a person reads them: the answer, the table, the reasoning. Only the few
    # figures worth a chart across runs are numbers (the UI plots every number); the
    # constants and secondary figures are in `details`, which it does not plot.
    metadata: dict[str, object] = {
        "speedup": comparison.speedup,
        "headline": headline(comparison),
        "comparison": dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in comparison_rows(comparison)],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn(name, kind, description=description)
                    for name, kind, description in COMPARISON_COLUMNS
                ]
            ),
        ),
        "verdict": verdict(comparison),
        "summary": dg.MetadataValue.md(table),
        "serial_seconds": comparison.serial_seconds,
        "parallel_seconds": comparison.parallel_seconds,
        "efficiency": comparison.efficiency,
        "cpu_wait_share": cpu_wait_share(comparison),
        "details": dg.MetadataValue.json(rounded(details)),
        "outputs_path": dg.MetadataValue.path(str(directory / REPORT_OUTPUTS_DIRECTORY)),
    }
    return dg.MaterializeResult(metadata=rounded(metadata))


def _chosen_kernel(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource):
    kernel = process_pool.chosen_kernel()
    how = (
        "the fastest installed kernel that passed its self-check"
        if process_pool.kernel == "auto"
        else "as configured"
    )
    started = start_seconds(kernel.name)
    if started:
        how += f"; import, compile or cache load and self-check took {started:.2f} s"
    context.log.info(f"kernel: {kernel.name} ({how})")
    return kernel


def _kernel_metadata(kernel: Kernel) -> dict[str, object]:
    # Start-up apart from compute: the compile (or numba cache load) is paid once per step
    # process here, and once more by the fork server, inside pool_start_seconds.
    return {"kernel": kernel.name, "kernel_start_seconds": start_seconds(kernel.name)}


def _pool_sentence(pool: PoolStats) -> str:
    if pool.workers == 1:
        return "serially in the step process"
    return f"on {pool.workers} {pool.start_method} workers ({pool.startup_seconds:.2f} s to start)"


def _other_steps_running(context: dg.AssetExecutionContext) -> list[str]:
    """Steps of this run that had started and not finished when this step began."""
    started, finished = set(), set()
    step_events = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    for entry in context.instance.all_logs(context.run.run_id, of_type=step_events):
        event = entry.dagster_event
        (started if event.event_type == dg.DagsterEventType.STEP_START else finished).add(
            event.step_key
        )
    return sorted(started - finished - {context.op_execution_context.node_handle.name})


# The config classes whose values the executor checks before a run starts (executor.py), by
# step.
RUN_CONFIG_MODELS: dict[str, type[dg.Config]] = {
    "numbers_file": NumbersFileConfig,
    "cleaned_numbers": CleaningConfig,
    "parallelism_report": ParallelismReportConfig,
}
