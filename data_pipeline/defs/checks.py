"""The asset checks: blocking, so a failure fails the run; each re-reads the day's outputs
from disk, independently of the code that wrote them."""

import contextlib
from pathlib import Path

import dagster as dg

from data_pipeline.defs.assets.cleaned_numbers import cleaned_numbers
from data_pipeline.defs.assets.numbers_file import numbers_file
from data_pipeline.defs.assets.parallelism_report import parallelism_report
from data_pipeline.defs.assets.transformed_numbers import transformed_numbers
from data_pipeline.defs.partitions import PARTITION_TAG
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.measure.comparison import output_pairs
from data_pipeline.numbers.output_set import MANIFEST, resolve
from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    REPORT_OUTPUTS_DIRECTORY,
    TRANSFORMED_NUMBERS_FILE,
    digest_key,
    file_digest,
    pinned,
)
from data_pipeline.numbers.verification import (
    Verdict,
    every_line_accounted_for,
    identical_parquet_files,
    one_row_per_accepted_value,
)


@dg.asset_check(asset=cleaned_numbers, additional_deps=[numbers_file], blocking=True)
def every_line_accepted_or_rejected(
    context: dg.AssetCheckExecutionContext, data_directory: DataDirectoryResource
) -> dg.AssetCheckResult:
    """Accepted + rejected equals the lines of numbers.txt, and the line numbers of the two
    outputs strictly increase and together cover every line exactly once."""
    files = {numbers_file.key: [NUMBERS_FILE], cleaned_numbers.key: _CLEANED}
    with _as_materialized(context, data_directory, files) as (paths, problems):
        if len(paths) < len(_LINE_CHECK_FILES):
            return _result(Verdict(False, "; ".join(problems), {}))
        verdict = every_line_accounted_for(*(paths[name] for name in _LINE_CHECK_FILES))
        return _result(verdict, problems)


@dg.asset_check(asset=transformed_numbers, additional_deps=[cleaned_numbers], blocking=True)
def one_transformed_row_per_accepted_value(
    context: dg.AssetCheckExecutionContext, data_directory: DataDirectoryResource
) -> dg.AssetCheckResult:
    """transformed_numbers has one row per accepted value, same line numbers and values, in
    the same order."""
    files = {cleaned_numbers.key: _CLEANED, transformed_numbers.key: [TRANSFORMED_NUMBERS_FILE]}
    with _as_materialized(context, data_directory, files) as (paths, problems):
        if not {CLEANED_NUMBERS_FILE, TRANSFORMED_NUMBERS_FILE} <= set(paths):
            return _result(Verdict(False, "; ".join(problems), {}))
        verdict = one_row_per_accepted_value(
            paths[CLEANED_NUMBERS_FILE], paths[TRANSFORMED_NUMBERS_FILE]
        )
        return _result(verdict, problems)


# The checks read through the day's set (the run's own files, else the current set), and
# first make sure each file is the one its asset's latest materialization wrote and was
# computed from the set's own upstream file (by the SHA-256s recorded in the set and in the
# metadata): a later run cannot make an earlier check pass or fail.
_CLEANED = [CLEANED_NUMBERS_FILE, REJECTED_LINES_FILE]
_LINE_CHECK_FILES = (NUMBERS_FILE, CLEANED_NUMBERS_FILE, REJECTED_LINES_FILE)


def _day(context: dg.AssetCheckExecutionContext) -> str:
    """The day the check's run materialized (checks run in their asset's run)."""
    day = context.run.tags.get(PARTITION_TAG)
    if not day:
        raise dg.Failure(
            "this check verifies one day's files: run it with its asset's partition (from the "
            "asset's page, pick the day), not on its own",
            allow_retries=False,
        )
    return day


@contextlib.contextmanager
def _as_materialized(
    context: dg.AssetCheckExecutionContext,
    data_directory: DataDirectoryResource,
    files: dict[dg.AssetKey, list[str]],
):
    """Yield (paths, problems): a pinned name (hard link) for each file as the run's set
    holds it (the files this run wrote, else the day's current set: see output_set), so
    that no run can replace it while it is read, and why any file is not the one its
    asset's latest materialization of the day wrote, or not computed from the set's own
    upstream file. A materialization that recorded no digest is taken as it is."""
    day = _day(context)
    directory = data_directory.directory(day)
    run = context.run
    run_ids = (run.run_id, run.parent_run_id, run.root_run_id)
    entries = {
        name: resolve(directory, name, run_ids) for names in files.values() for name in names
    }
    paths: dict[str, Path] = {}
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        for key, names in files.items():
            latest = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
            ).records
            event = latest[0].event_log_entry if latest else None
            recorded = event.asset_materialization.metadata if event else {}
            for name in names:
                entry = entries[name]
                if entry is None or not (directory / entry.path).is_file():
                    problems.append(
                        f"{name} is not in the day's set ({directory / MANIFEST}): materialize "
                        f"{key.to_user_string()}"
                    )
                    continue
                # The pin goes in the day's directory: an old set's directory may be removed.
                paths[name] = stack.enter_context(pinned(directory / entry.path, beside=directory))
                if file_digest(paths[name]) != entry.sha256:
                    problems.append(
                        f"{name} ({entry.path}) no longer has the SHA-256 its set recorded: it "
                        "was changed after it was written. Materialize it again"
                    )
                wanted = _value(recorded.get(digest_key(name)))
                if wanted is not None and entry.sha256 != wanted:
                    problems.append(
                        f"{name} is not the file that {key.to_user_string()}'s latest "
                        f"materialization (run {event.run_id[:8]}) wrote: another run's set "
                        "is current since. Materialize again, one run at a time per day"
                    )
                for source, digest in entry.upstream.items():
                    upstream = entries.get(source) or resolve(directory, source, run_ids)
                    if upstream is None or upstream.sha256 != digest:
                        problems.append(
                            f"{name} was computed from other {source} data (SHA-256 "
                            f"{digest[:12]}) than the set's "
                            f"({upstream.sha256[:12] if upstream else 'none'}): materialize "
                            f"{key.to_user_string()} again"
                        )
        yield paths, problems


def _value(metadata_value: object) -> object:
    return getattr(metadata_value, "value", metadata_value)


@dg.asset_check(asset=parallelism_report, blocking=True)
def serial_and_parallel_outputs_identical(
    context: dg.AssetCheckExecutionContext, data_directory: DataDirectoryResource
) -> dg.AssetCheckResult:
    """The serial and the parallel run of the day's latest report wrote the same rows, in the
    same order, for every output (cleaned, rejected, transformed): compared file against
    file."""
    directory = data_directory.directory(_day(context)) / REPORT_OUTPUTS_DIRECTORY
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


def _result(verdict: Verdict, problems: list[str] = ()) -> dg.AssetCheckResult:
    """The verdict on the contents, failed also by any problem with where the files came
    from; the description says both."""
    passed = verdict.passed and not problems
    explanation = "; ".join([verdict.explanation, *problems]) if problems else verdict.explanation
    return dg.AssetCheckResult(passed=passed, description=explanation, metadata=verdict.figures)
