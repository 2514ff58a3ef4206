"""A run's view of a day's files: what it reads, where it writes, when it commits the day's
set; and failures no retry would mend as one-sentence ``dg.Failure``s."""

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from data_pipeline.defs.partitions import committed_and_untouched, described_days
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.measure.timing import OutputMismatchError
from data_pipeline.numbers.input_gate import UnusableInputError
from data_pipeline.numbers.output_set import (
    MANIFEST,
    SetFile,
    commit,
    current_set,
    record_file,
    remove_run_directory,
    resolve,
    run_directory,
)
from data_pipeline.numbers.writer_lock import DirectoryBusyError, exclusive_writer
from data_pipeline.parallel.errors import ChunkFailedError

# The assets whose files make up a day's set, upstream first; the run's last of them to
# run commits the set.
SET_WRITERS = ("numbers_file", "cleaned_numbers", "transformed_numbers")
# Every step that writes in a day's directory, and so holds its writer lock.
DAY_WRITERS = frozenset({*SET_WRITERS, "parallelism_report"})
# The metadata key of a materialization whose blocking check refused its files (never committed).
REFUSED_BY_CHECK = "refused_by_check"
# Errors of the file system that no retry can mend.
_LASTING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


class DayFiles:
    """The day's files as one run sees them: it reads its own set first (then its parent's,
    on a re-execution), else the day's current set; it writes only into its own set
    directory; its last writing step commits the set."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        data_directory: DataDirectoryResource,
        day: str,
        days_in_step: int = 1,
    ):
        self.context, self.data_directory, self.day = context, data_directory, day
        self.days_in_step = days_in_step
        self.directory = data_directory.directory(day)
        # Whether this step committed the day's set (a range's steps commit day by day).
        self.committed = False
        run = context.run
        self.run_id = run.run_id
        self.run_ids = (run.run_id, run.parent_run_id, run.root_run_id)

    def about(self, sentence: str) -> str:
        """``sentence`` as the step says it of this day: prefixed by the day in a range."""
        return f"{self.day}: {sentence}" if self.days_in_step > 1 else sentence

    def input(self, name: str, producer: str) -> SetFile:
        """The file ``name`` this run should read: its own, else the current set's."""
        entry = self.resolve(name)
        if entry is None or not self.path_of(entry).is_file():
            raise dg.Failure(
                f"the day's current set has no {name} (see {self.directory / MANIFEST}): "
                f"materialize {producer} first, with the same data directory, or the whole "
                "numbers group together",
                allow_retries=False,
            )
        return entry

    def resolve(self, name: str) -> SetFile | None:
        """The file ``name`` as this run sees it: its own, its parents', else the current set's."""
        return resolve(self.directory, name, self.run_ids)

    def path_of(self, entry: SetFile) -> Path:
        return self.directory / entry.path

    def output(self, name: str) -> Path:
        """Where this run writes ``name``: its own set directory, unseen until it commits."""
        return run_directory(self.directory, self.run_id) / name

    def record(
        self, name: str, sha256: str, rows: int, upstream: dict[str, str] | None = None
    ) -> None:
        """Record a file this step wrote in the run's set, for the commit.

        Args:
            name: the file's name in the set.
            sha256: its digest.
            rows: its rows.
            upstream: the digests of the files it was computed from, by name.
        """
        record_file(self.directory, self.run_id, name, sha256, rows, upstream)

    def finish(self, check: dg.AssetCheckResult | None = None) -> dict[str, object]:
        """Commit the run's set if this is its last writing step and ``check`` (the step's
        blocking check of what it wrote) passed; metadata saying what happened. A refused set
        is never committed: the day's current set stays, and the run's first ERROR line says
        which check refused what."""
        own = run_directory(self.directory, self.run_id)
        if check is not None and not check.passed:
            self.context.log.error(
                f"check {check.check_name} refused {self.context.asset_key.to_user_string()}'s "
                f"files and nothing was committed: {check.description}. {self.day}'s current "
                f"set is still {current_set(self.directory).describe()}"
            )
            return {
                "set_directory": dg.MetadataValue.path(str(own)),
                "set_committed": False,
                REFUSED_BY_CHECK: check.check_name,
            }
        if not _last_set_writer(self.context):
            return {"set_directory": dg.MetadataValue.path(str(own)), "set_committed": False}
        done = commit(self.directory, self.run_id, self.data_directory.keep_sets)
        self.committed = True
        files = ", ".join(
            f"{name} ({entry.rows:,} rows)" for name, entry in done.current.files.items()
        )
        if self.days_in_step == 1:  # a range says it once for all its days (each log line
            # is a stored event): see :func:`writing`
            self.context.log.info(f"committed {self.day}'s set {own.name}: {files}")
        for name, reason in done.left_out.items():
            self.context.log.warning(f"{name} is not in the new set: {reason}; materialize it")
        if done.removed:
            self.context.log.info(f"removed {len(done.removed)} older set(s)")
        return {
            "set_directory": dg.MetadataValue.path(str(own)),
            "set_committed": True,
            "manifest": dg.MetadataValue.path(str(self.directory / MANIFEST)),
        }


@contextlib.contextmanager
def writing(
    context: dg.AssetExecutionContext, data_directory: DataDirectoryResource
) -> Iterator[list[DayFiles]]:
    """The files of each of the step's days (one, or a range's), under every day's writer
    lock (taken in date order before anything is written). Failures that a retry would
    repeat (a full disk, a permission, unusable input, a busy day) are raised as
    ``dg.Failure(allow_retries=False)``, in one sentence that, in a range, says which days
    this step committed; a worker death keeps the step's retry."""
    keys = list(context.partition_keys)  # one day, or every day of a backfill's range
    days = [DayFiles(context, data_directory, day, len(keys)) for day in keys]
    try:
        with contextlib.ExitStack() as locks:
            for files in days:
                locks.enter_context(exclusive_writer(files.directory, files.run_id))
            yield days
        committed = [files.day for files in days if files.committed]
        if len(days) > 1 and committed:
            context.log.info(
                f"committed the sets of {described_days(committed)} (set directory "
                f"{days[0].run_id} of each day); each day's files and rows are in its "
                "materialization"
            )
    except (DirectoryBusyError, UnusableInputError, ChunkFailedError, OutputMismatchError) as error:
        raise _lasting_failure(context, f"{error}{_committed(days)}") from error
    except OSError as error:
        if not _lasting(error, data_directory):
            raise
        if error.errno in {errno.ENOSPC, errno.EDQUOT}:
            for files in days:  # they only take space
                if not files.committed:
                    remove_run_directory(files.directory, files.run_id)
        problem = data_directory.storage_problem(error, error.filename or days[0].directory)
        unchanged = "The day's current set is unchanged" if len(days) == 1 else "Sets unchanged"
        raise _lasting_failure(context, f"{problem}. {unchanged}{_committed(days)}") from error


def _committed(days: list[DayFiles]) -> str:
    """For a range: which of its days this step committed before it failed."""
    if len(days) == 1:
        return ""
    committed = [files.day for files in days if files.committed]
    untouched = [files.day for files in days if not files.committed]
    return f" (of this run's days, {committed_and_untouched(committed, untouched)})"


def _lasting_failure(context: dg.AssetExecutionContext, sentence: str) -> dg.Failure:
    """A failure no retry would mend; logged first, so it is the first line a reader of the
    run's log sees, above Dagster's stack traces."""
    context.log.error(sentence)
    return dg.Failure(sentence, allow_retries=False)


def _lasting(error: OSError, data_directory: DataDirectoryResource) -> bool:
    if error.errno in _LASTING_ERRNOS:
        return True
    root = Path(data_directory.path).expanduser().resolve()
    with contextlib.suppress(TypeError, ValueError):
        return Path(error.filename).resolve().is_relative_to(root)
    return False


def _last_set_writer(context: dg.AssetExecutionContext) -> bool:
    """Whether this step is the run's last one writing the set (then it commits it)."""
    run = context.run
    if run.asset_selection:
        planned = {key.to_user_string() for key in run.asset_selection}
    elif run.step_keys_to_execute:
        planned = set(run.step_keys_to_execute)
    else:  # the whole job: each asset's step is named for its op
        planned = {node.name for node in context.job_def.nodes_in_topological_order}
    writers = [name for name in SET_WRITERS if name in planned]
    return bool(writers) and writers[-1] == context.asset_key.to_user_string()
