"""The blocking asset checks. The day's set is checked inside its writing steps, from the files
just written and before any commit, so a set a check refuses never becomes current."""

import contextlib
from pathlib import Path

import dagster as dg

from data_pipeline.defs.day_files import REFUSED_BY_CHECK, DayFiles
from data_pipeline.defs.partitions import PARTITION_TAG
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.measure.comparison import output_pairs
from data_pipeline.numbers.output_set import MANIFEST
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

# Inline checks (``check_specs`` of their asset): the step verifies what it wrote, commits
# only if the check passed, and reports the result; a blocking failure then fails the run.
# Two step processes fewer per run than separate check steps (see docs/failures.md).
LINE_CHECK = dg.AssetCheckSpec(
    "every_line_accepted_or_rejected",
    asset="cleaned_numbers",
    additional_deps=["numbers_file"],
    blocking=True,
    description=(
        "Accepted + rejected equals the lines of numbers.txt, and the line numbers of the two "
        "outputs strictly increase and together cover every line exactly once. Verified from "
        "the files just written, before the set is committed."
    ),
)
TRANSFORM_CHECK = dg.AssetCheckSpec(
    "one_transformed_row_per_accepted_value",
    asset="transformed_numbers",
    additional_deps=["cleaned_numbers"],
    blocking=True,
    description=(
        "transformed_numbers has one row per accepted value, same line numbers and values, in "
        "the same order. Verified from the files just written, before the set is committed."
    ),
)
_CLEANED = [CLEANED_NUMBERS_FILE, REJECTED_LINES_FILE]
_LINE_CHECK_FILES = (NUMBERS_FILE, CLEANED_NUMBERS_FILE, REJECTED_LINES_FILE)


def every_line_accepted_or_rejected(files: DayFiles) -> dg.AssetCheckResult:
    """LINE_CHECK on the run's files: its numbers.txt (its own, else the current set's), and
    the cleaned and rejected files the step just wrote."""
    upstream = {dg.AssetKey("numbers_file"): [NUMBERS_FILE]}
    with _as_written(files, upstream, _CLEANED) as (paths, problems):
        if len(paths) < len(_LINE_CHECK_FILES):
            return _result(LINE_CHECK, Verdict(False, "; ".join(problems), {}))
        verdict = every_line_accounted_for(*(paths[name] for name in _LINE_CHECK_FILES))
        return _result(LINE_CHECK, verdict, problems)


def one_transformed_row_per_accepted_value(files: DayFiles) -> dg.AssetCheckResult:
    """TRANSFORM_CHECK on the run's files: the cleaned values it read and the transformed
    file the step just wrote."""
    upstream = {dg.AssetKey("cleaned_numbers"): _CLEANED}
    with _as_written(files, upstream, [TRANSFORMED_NUMBERS_FILE]) as (paths, problems):
        if not {CLEANED_NUMBERS_FILE, TRANSFORMED_NUMBERS_FILE} <= set(paths):
            return _result(TRANSFORM_CHECK, Verdict(False, "; ".join(problems), {}))
        verdict = one_row_per_accepted_value(
            paths[CLEANED_NUMBERS_FILE], paths[TRANSFORMED_NUMBERS_FILE]
        )
        return _result(TRANSFORM_CHECK, verdict, problems)


# The checks read through the run's view of the day's set (its own files, else the current
# set), and first make sure each file still has the SHA-256 its set recorded, each upstream
# file is the one its asset's latest accepted materialization of the day wrote, and each file
# was computed from the set's own upstream file: no other run can make a check pass or fail.
@contextlib.contextmanager
def _as_written(files: DayFiles, upstream: dict[dg.AssetKey, list[str]], own: list[str]):
    """Yield (paths, problems): a pinned name (hard link) for each file as the run sees it,
    so that no run can replace it while it is read, and why any file is not as it should be.
    An upstream materialization that recorded no digest is taken as it is."""
    directory = files.directory
    names = [name for group in upstream.values() for name in group] + own
    entries = {name: files.resolve(name) for name in names}
    paths: dict[str, Path] = {}
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        for key, group in [*upstream.items(), (files.context.asset_key, own)]:
            event = None if group is own else _latest_accepted(files.context, key, files.day)
            recorded = event.asset_materialization.metadata if event else {}
            for name in group:
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
                    used = entries.get(source) or files.resolve(source)
                    if used is None or used.sha256 != digest:
                        problems.append(
                            f"{name} was computed from other {source} data (SHA-256 "
                            f"{digest[:12]}) than the set's "
                            f"({used.sha256[:12] if used else 'none'}): materialize "
                            f"{key.to_user_string()} again"
                        )
        yield paths, problems


def _latest_accepted(context: dg.AssetExecutionContext, key: dg.AssetKey, day: str):
    """The latest materialization of ``key`` for ``day`` whose check did not refuse it (a
    refused set was never committed, so it names no file of the day's set). Read once per
    step and upstream asset for all the step's days (a range's days share one query); an
    upstream asset does not change while its downstream step runs."""
    cache_key = (context.run.run_id, context.op_def.name, key)
    by_day = _ACCEPTED_BY_STEP.get(cache_key)
    if by_day is None:
        days = list(context.partition_keys)
        by_day = _latest_accepted_by_day(context, key, days)
        _ACCEPTED_BY_STEP.clear()  # a process runs one step at a time: keep only this one's
        _ACCEPTED_BY_STEP[cache_key] = by_day
    if day not in by_day:
        by_day[day] = _latest_accepted_by_day(context, key, [day]).get(day)
    return by_day[day]


# The latest accepted materialization of each day, by (run, step, upstream asset).
_ACCEPTED_BY_STEP: dict[tuple, dict] = {}
# Materializations read per day: a day refused more often than this in a row is not looked at
# further (its set then names no file of that asset, and the check says so).
_RECORDS_PER_DAY = 10


def _latest_accepted_by_day(
    context: dg.AssetExecutionContext, key: dg.AssetKey, days: list[str]
) -> dict[str, object]:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=days),
        limit=_RECORDS_PER_DAY * len(days),
    ).records
    latest: dict[str, object] = dict.fromkeys(days)
    decided: set[str] = set()
    for record in records:  # newest first
        entry = record.event_log_entry
        day = entry.dagster_event.partition
        if day in decided or day not in latest:
            continue
        if not _value(entry.asset_materialization.metadata.get(REFUSED_BY_CHECK)):
            latest[day] = entry
            decided.add(day)
    return latest


def _value(metadata_value: object) -> object:
    return getattr(metadata_value, "value", metadata_value)


@dg.asset_check(asset="parallelism_report", blocking=True)
def serial_and_parallel_outputs_identical(
    context: dg.AssetCheckExecutionContext, data_directory: DataDirectoryResource
) -> dg.AssetCheckResult:
    """The serial and the parallel run of the day's latest report wrote the same rows, in the
    same order, for every output (cleaned, rejected, transformed): compared file against
    file."""
    day = context.run.tags.get(PARTITION_TAG)
    if not day:
        raise dg.Failure(
            "this check verifies one day's files: run it with its asset's partition (from the "
            "asset's page, pick the day), not on its own",
            allow_retries=False,
        )
    directory = data_directory.directory(day) / REPORT_OUTPUTS_DIRECTORY
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
        None,
        Verdict(
            passed=not problems,
            explanation="; ".join(problems)
            or "serial and parallel outputs identical, row by row, for every output",
            figures=figures,
        ),
    )


def _result(
    spec: dg.AssetCheckSpec | None, verdict: Verdict, problems: list[str] = ()
) -> dg.AssetCheckResult:
    """The verdict on the contents, failed also by any problem with where the files came
    from; the description says both. ``spec`` names an inline check."""
    passed = verdict.passed and not problems
    explanation = "; ".join([verdict.explanation, *problems]) if problems else verdict.explanation
    named = {"asset_key": spec.asset_key, "check_name": spec.name} if spec else {}
    return dg.AssetCheckResult(
        passed=passed, description=explanation, metadata=verdict.figures, **named
    )
