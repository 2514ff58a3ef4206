"""The numbers assets. Each one only wires files, logging and metadata; the work lives in
plain modules (``pipeline``, ``comparison``) that know nothing of Dagster."""

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field, field_validator

from data_pipeline.defs.partitions import PARTITION_TAG, daily_partitions, seed_of
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
from data_pipeline.measure.timing import OutputMismatchError
from data_pipeline.numbers.chunking import count_lines
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import Kernel, start_seconds
from data_pipeline.numbers.parsing import RejectReason
from data_pipeline.numbers.pipeline import (
    CLEANED_SCHEMA,
    REJECTED_SCHEMA,
    TRANSFORMED_SCHEMA,
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
    file_digest,
    pinned,
)
from data_pipeline.parallel.insight import rounded
from data_pipeline.parallel.pool import ChunkFailedError
from data_pipeline.parallel.stats import PoolStats

GROUP = "numbers"
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
    _sole_run_of_the_day(context)
    target = data_directory.directory(day) / NUMBERS_FILE
    landed = data_directory.landing_directory() / f"{day}.txt"
    source = config.source_path or (str(landed) if landed.is_file() else None)
    metadata: dict[str, object] = {}
    digests: dict[str, str] = {}
    if source:
        metadata["source"] = dg.MetadataValue.path(source)
        if target.exists() and os.path.samefile(source, target):
            # Copying onto itself would rewrite the user's file: it is already in place.
            context.log.info(f"{source} is already the day's input")
            digests[digest_key(NUMBERS_FILE)] = file_digest(target)
        else:
            context.log.info(f"ingesting {source}")
            with atomic_output(target, digests) as temporary:
                shutil.copyfile(source, temporary)
    else:
        seed = seed_of(day) if config.seed is None else config.seed
        with atomic_output(target, digests) as temporary:
            dirt = write_numbers_file(temporary, config.count, seed, config.dirty_fraction)
        metadata["source"] = f"generated (seed {seed}): no {landed} has arrived"
        metadata["seed"] = seed
        metadata["dirty_lines"] = sum(dirt.values())
        metadata |= {f"dirty_lines_{kind}": count for kind, count in sorted(dirt.items())}
    lines = count_lines(target)
    context.log.info(f"wrote {lines:,} lines to {target}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "lines": lines,
            "bytes": target.stat().st_size,
            **metadata,
            **digests,
        }
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
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Every line of numbers.txt parsed on a process pool: accepted values, in file order, go
    to `cleaned_numbers.parquet` (line_number, value), the rest to `rejected_lines.parquet`
    (line_number, raw, reason). Accepted + rejected always equals the lines in the file."""
    context.log.info(process_pool.describe_plan())
    kernel = _chosen_kernel(context, process_pool)
    _sole_run_of_the_day(context)
    directory = data_directory.directory(context.partition_key)
    source = _existing_input(directory / NUMBERS_FILE, "numbers_file")
    context.log.info(
        f"cleaning {source} ({source.stat().st_size:,} bytes) in chunks of "
        f"{process_pool.chunk_bytes():,} bytes"
    )
    started = time.perf_counter()
    with _retried_only_for_worker_deaths(), pinned(source) as snapshot:
        summary = clean_to_parquet(
            snapshot,
            directory / CLEANED_NUMBERS_FILE,
            directory / REJECTED_LINES_FILE,
            process_pool.settings(costs_directory=data_directory.directory()),
            process_pool.chunk_bytes(),
            context.log,
            kernel,
        )
    seconds = time.perf_counter() - started
    context.log.info(
        f"{summary.lines:,} lines: {summary.accepted:,} accepted, {summary.rejected:,} rejected, "
        f"{_pool_sentence(summary.pool)} in {seconds:.2f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.accepted,
            "dagster/column_schema": column_schema(CLEANED_SCHEMA),
            "path": dg.MetadataValue.path(str(directory / CLEANED_NUMBERS_FILE)),
            "rejected_path": dg.MetadataValue.path(str(directory / REJECTED_LINES_FILE)),
            "rejected_lines_column_schema": column_schema(REJECTED_SCHEMA),
            **_kernel_metadata(kernel),
            "lines": summary.lines,
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            **{f"rejected_{reason}": summary.rejected_by_reason[reason] for reason in RejectReason},
            **summary.run.metadata(seconds, dg.MetadataValue.md),
            **summary.digests,
        }
    )


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
    largest prime factor and primality, computed per value in plain Python on a process pool
    (the reference any faster strategy must match). Written in input order to
    `transformed_numbers.parquet`."""
    context.log.info(process_pool.describe_plan())
    kernel = _chosen_kernel(context, process_pool)
    _sole_run_of_the_day(context)
    directory = data_directory.directory(context.partition_key)
    started = time.perf_counter()
    with _retried_only_for_worker_deaths():
        summary = transform_to_parquet(
            _existing_input(directory / CLEANED_NUMBERS_FILE, "cleaned_numbers"),
            directory / TRANSFORMED_NUMBERS_FILE,
            process_pool.settings(costs_directory=data_directory.directory()),
            process_pool.chunk_values_for(kernel),
            context.log,
            kernel,
        )
    seconds = time.perf_counter() - started
    context.log.info(
        f"transformed {summary.rows:,} values, {_pool_sentence(summary.pool)} in {seconds:.2f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.rows,
            "dagster/column_schema": column_schema(TRANSFORMED_SCHEMA),
            "path": dg.MetadataValue.path(str(directory / TRANSFORMED_NUMBERS_FILE)),
            **_kernel_metadata(kernel),
            "rows": summary.rows,
            **summary.run.metadata(seconds, dg.MetadataValue.md),
            **summary.digests,
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
    _sole_run_of_the_day(context)
    directory = data_directory.directory(context.partition_key)
    source = _existing_input(directory / NUMBERS_FILE, "numbers_file")
    with _retried_only_for_worker_deaths(), pinned(source) as snapshot:
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


# The jobs and assets that write a day's files (a run of another project's job on the same
# day does not count).
_DAY_JOBS = {"numbers_job", "report_job"}
_DAY_WRITERS = [
    dg.AssetKey(name)
    for name in ("numbers_file", "cleaned_numbers", "transformed_numbers", "parallelism_report")
]


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


def _existing_input(path: Path, producer: str) -> Path:
    if not path.is_file():
        raise dg.Failure(
            f"{path} does not exist: materialize {producer} first (with the same data "
            "directory), or materialize the whole numbers group together.",
            allow_retries=False,
        )
    return path


@contextlib.contextmanager
def _retried_only_for_worker_deaths() -> Iterator[None]:
    """A chunk that raised, or outputs that differ, would do the same again: no retry."""
    try:
        yield
    except (ChunkFailedError, OutputMismatchError) as error:
        raise dg.Failure(str(error), allow_retries=False) from error


def _pool_sentence(pool: PoolStats) -> str:
    if pool.workers == 1:
        return "serially in the step process"
    return f"on {pool.workers} {pool.start_method} workers ({pool.startup_seconds:.2f} s to start)"


# A run that has logged nothing for this long is taken as dead (killed with its process,
# which leaves it STARTED for ever): it no longer holds its day.
SILENT_RUN_SECONDS = 600
_WRITING_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _sole_run_of_the_day(context: dg.AssetExecutionContext) -> None:
    """Fail before writing anything if an earlier run of the same day, that writes these
    files, is still in progress: two runs of one day would interleave its files. Runs
    launched through the UI, a sensor or the schedule wait in the queue instead (dagster.yaml
    limits them to one per day); this catches runs started beside them, e.g. by
    `dagster job execute`."""
    instance, own_id, day = context.instance, context.run.run_id, context.partition_key
    own = instance.get_run_record_by_id(own_id)
    ours = set(_DAY_WRITERS)
    for record in instance.get_run_records(
        dg.RunsFilter(tags={PARTITION_TAG: day}, statuses=_WRITING_STATUSES)
    ):
        other = record.dagster_run
        if other.run_id == own_id or (own and record.create_timestamp >= own.create_timestamp):
            continue
        if not (other.job_name in _DAY_JOBS or ours & set(other.asset_selection or ())):
            continue  # another project's run of the same day: not our files
        silent = _seconds_since_last_event(instance, other.run_id)
        if silent > SILENT_RUN_SECONDS:
            context.log.warning(
                f"run {other.run_id[:8]} of {day} still shows as {other.status.value} but has "
                f"logged nothing for {silent / 60:.0f} min: taken as dead (mark it failed in "
                "the UI to tidy up)"
            )
            continue
        raise dg.Failure(
            f"Run {other.run_id[:8]} ({other.job_name}) of {day} is still in progress and "
            "writes the same files: this run stopped before writing anything. Wait for it, or "
            "launch runs through the UI or the daemon, which queue one run per day. (A run "
            f"whose process is gone counts as dead after {SILENT_RUN_SECONDS // 60} min "
            "without a log line; terminate it in the UI to free the day at once.)",
            allow_retries=False,
        )


def _seconds_since_last_event(instance: dg.DagsterInstance, run_id: str) -> float:
    records = instance.get_records_for_run(run_id, limit=1, ascending=False).records
    if not records:
        return float("inf")
    return time.time() - records[0].event_log_entry.timestamp


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
