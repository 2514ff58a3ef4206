"""One consistent set of a day's outputs, made current by one atomic step: after any failure,
interrupt, kill or full disk, readers see the last complete set, whole."""

import contextlib
import datetime
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_pipeline.numbers.storage import (
    CLEANED_NUMBERS_FILE,
    NUMBERS_FILE,
    REJECTED_LINES_FILE,
    TRANSFORMED_NUMBERS_FILE,
    atomic_output,
    fsync_directory,
)

# Each run writes its files into a directory of its own, ``sets/<run id>/``, and records each
# file there (``set.json``: its SHA-256, row count and the digests of the files it was
# computed from). Nothing a run writes is seen until it commits: the manifest
# ``current.json`` beside ``sets/`` is replaced, by one ``os.replace``, with one naming every
# file of the new set by its path relative to the manifest. Files the run did not write are
# carried over from the previous set (hard-linked into the run's directory) when they still
# belong: a file is kept only if every file it was computed from is in the new set with the
# digest it was computed from. Readers go through the manifest (current_set).
MANIFEST = "current.json"
SETS_DIRECTORY = "sets"
SET_RECORD = "set.json"
FORMAT = 1
# The files of a set, upstream first, each with the files it is computed from.
SET_FILES: dict[str, tuple[str, ...]] = {
    NUMBERS_FILE: (),
    CLEANED_NUMBERS_FILE: (NUMBERS_FILE,),
    REJECTED_LINES_FILE: (NUMBERS_FILE,),
    TRANSFORMED_NUMBERS_FILE: (CLEANED_NUMBERS_FILE,),
}
# Sets kept besides the current one by default (for readers, and to compare with).
DEFAULT_KEEP_SETS = 3
# A set no longer current is removed only once it has been superseded this long: a reader
# that resolved the manifest just before a commit has this long to open (or pin) its files.
SUPERSEDED_GRACE_SECONDS = 60
# The directory of a run that never committed (it failed, or was killed) is removed once
# nothing in it changed for this long, as a re-execution of that run may still use it.
UNCOMMITTED_GRACE_SECONDS = 3600


class ManifestError(ValueError):
    """The manifest cannot be read as one (damaged by hand, or not this project's)."""


@dataclass(frozen=True)
class SetFile:
    """One file of a set: where it is (relative to the manifest), what it holds, and what
    it was computed from (file name -> SHA-256)."""

    path: str
    sha256: str
    rows: int
    run_id: str
    upstream: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputSet:
    """A day's set of files: the committed one (``committed_at`` set) or a run's own."""

    directory: Path
    run_id: str | None
    files: dict[str, SetFile]
    committed_at: str | None = None

    def path(self, name: str) -> Path | None:
        """Where the set's file ``name`` is, or None if the set has none."""
        entry = self.files.get(name)
        return None if entry is None else self.directory / entry.path

    def describe(self) -> str:
        if self.run_id is None:
            return "no set committed yet"
        return f"the set of run {self.run_id[:8]}, committed {self.committed_at}"


@dataclass(frozen=True)
class Commit:
    """What a commit made current, what it left out and why, and what it removed."""

    current: OutputSet
    left_out: dict[str, str]
    removed: list[Path]


def current_set(directory: Path) -> OutputSet:
    """The day's committed set (empty if none was ever committed), read once."""
    manifest = directory / MANIFEST
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OutputSet(directory, None, {})
    return _parsed(directory, manifest, text)


def current_file(directory: Path, name: str) -> Path:
    """The current set's file ``name`` in the day's ``directory``: what a reader opens. For
    several files from one set, read :func:`current_set` once and take each from it."""
    path = current_set(directory).path(name)
    if path is None:
        raise FileNotFoundError(f"the current set in {directory} has no {name} ({MANIFEST})")
    return path


def run_directory(directory: Path, run_id: str) -> Path:
    """The run's own directory, ``sets/<run id>/``, created if needed."""
    path = directory / SETS_DIRECTORY / _checked_run_id(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staged_set(directory: Path, run_id: str) -> OutputSet:
    """What the run has written so far (paths relative to the day's directory)."""
    record = directory / SETS_DIRECTORY / _checked_run_id(run_id) / SET_RECORD
    try:
        text = record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OutputSet(directory, run_id, {})
    return _parsed(directory, record, text)


def resolve(directory: Path, name: str, run_ids: Iterable[str | None] = ()) -> SetFile | None:
    """The file ``name`` as the first of ``run_ids`` that wrote it staged it (a run reads
    its own files first, then its parents' on a re-execution), else the current set's."""
    for run_id in run_ids:
        if run_id and (entry := staged_set(directory, run_id).files.get(name)):
            return entry
    return current_set(directory).files.get(name)


def record_file(
    directory: Path,
    run_id: str,
    name: str,
    sha256: str,
    rows: int,
    upstream: dict[str, str] | None = None,
) -> SetFile:
    """Add the file ``name`` (already whole in the run's directory) to the run's set.

    Args:
        directory: The day's directory.
        run_id: The run whose set it joins.
        name: One of :data:`SET_FILES`.
        sha256: The file's digest.
        rows: The rows it holds.
        upstream: The files it was computed from, by name, with their digests.
    """
    if name not in SET_FILES:
        raise ValueError(f"{name!r} is not a file of the set ({', '.join(SET_FILES)})")
    own = run_directory(directory, run_id)
    if not (own / name).is_file():
        raise FileNotFoundError(f"{own / name} does not exist: write it before recording it")
    entry = SetFile(
        path=f"{SETS_DIRECTORY}/{own.name}/{name}",
        sha256=sha256,
        rows=rows,
        run_id=run_id,
        upstream=dict(upstream or {}),
    )
    staged = staged_set(directory, run_id)
    _write(own / SET_RECORD, OutputSet(directory, run_id, {**staged.files, name: entry}))
    return entry


def commit(directory: Path, run_id: str, keep_sets: int = DEFAULT_KEEP_SETS) -> Commit:
    """Make the run's set current: its own files, and the current set's files that still
    belong with them (each file only if what it was computed from is in the set with the
    same digest). One ``os.replace`` of the manifest is the commit; then sets older than
    the newest ``keep_sets`` are removed (see the grace periods above)."""
    if keep_sets < 1:
        raise ValueError(f"keep_sets must be at least 1, got {keep_sets}")
    own = run_directory(directory, run_id)
    staged, previous = staged_set(directory, run_id), current_set(directory)
    files: dict[str, SetFile] = {}
    left_out: dict[str, str] = {}
    for name, computed_from in SET_FILES.items():
        entry = staged.files.get(name)
        carried = entry is None
        entry = entry or previous.files.get(name)
        if entry is None:
            continue
        stale = [
            source
            for source in computed_from
            if source not in files or files[source].sha256 != entry.upstream.get(source)
        ]
        if stale:
            whose = "this run's" if not carried else f"run {entry.run_id[:8]}'s"
            left_out[name] = (
                f"{whose} {name} was computed from another {' and '.join(stale)} than the new set's"
            )
            continue
        files[name] = _carried_into(directory, own, entry) if carried else entry
    committed_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    current = OutputSet(directory, run_id, files, committed_at)
    _write(own / SET_RECORD, current)
    _write(directory / MANIFEST, current)  # the commit
    return Commit(current, left_out, remove_old_sets(directory, keep_sets, protect={run_id}))


def _carried_into(directory: Path, own: Path, entry: SetFile) -> SetFile:
    """The previous set's file, linked into the run's directory (copied where the file
    system has no hard links), so that each set's directory holds all of its files."""
    source, target = directory / entry.path, own / Path(entry.path).name
    if source != target:
        with atomic_output(target) as temporary:
            try:
                os.link(source, temporary)
            except OSError:
                shutil.copyfile(source, temporary)
    return SetFile(
        path=f"{SETS_DIRECTORY}/{own.name}/{target.name}",
        sha256=entry.sha256,
        rows=entry.rows,
        run_id=entry.run_id,
        upstream=entry.upstream,
    )


def remove_old_sets(
    directory: Path, keep_sets: int, protect: Iterable[str] = (), now: float | None = None
) -> list[Path]:
    """Remove the set directories nobody needs: committed sets beyond the newest
    ``keep_sets`` (never the current one) superseded more than a minute ago, and
    directories of runs that never committed, unchanged for an hour. Returns them.

    Args:
        directory: The day's directory.
        keep_sets: Committed sets kept, the current one included.
        protect: Runs whose directories stay whatever their age.
        now: The time to compare with (``time.time()`` if None).
    """
    now = time.time() if now is None else now
    current = current_set(directory).run_id
    protected = {current, *protect}
    committed: list[tuple[str, Path]] = []
    uncommitted: list[Path] = []
    for path in sorted((directory / SETS_DIRECTORY).glob("*")):
        if not path.is_dir() or path.name in protected:
            continue
        with contextlib.suppress(ManifestError):
            recorded = staged_set(directory, path.name)
            if recorded.committed_at:
                committed.append((recorded.committed_at, path))
                continue
        uncommitted.append(path)
    removed = []
    newer_commits = sorted(
        [at for at, _ in committed] + [current_set(directory).committed_at or ""], reverse=True
    )
    for at, path in sorted(committed, reverse=True)[max(0, keep_sets - 1) :]:
        superseded = min((newer for newer in newer_commits if newer > at), default=None)
        if superseded and now - _timestamp(superseded) > SUPERSEDED_GRACE_SECONDS:
            removed.append(path)
    removed += [
        path for path in uncommitted if now - _last_change(path) > UNCOMMITTED_GRACE_SECONDS
    ]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def remove_run_directory(directory: Path, run_id: str) -> None:
    """Remove a run's own directory unless it is (part of) the current set: after a full
    disk, what the failed run wrote only takes space."""
    if current_set(directory).run_id != run_id:
        shutil.rmtree(directory / SETS_DIRECTORY / _checked_run_id(run_id), ignore_errors=True)


def _last_change(path: Path) -> float:
    times = [path.stat().st_mtime]
    with contextlib.suppress(OSError):
        times += [child.stat().st_mtime for child in path.iterdir()]
    return max(times)


def _timestamp(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _checked_run_id(run_id: str) -> str:
    if not run_id or not all(character.isalnum() or character in "-_" for character in run_id):
        raise ValueError(f"{run_id!r} is not a run id (letters, digits, - and _)")
    return run_id


def _write(path: Path, output_set: OutputSet) -> None:
    document = {
        "format": FORMAT,
        "run_id": output_set.run_id,
        "committed_at": output_set.committed_at,
        "files": {name: asdict(entry) for name, entry in output_set.files.items()},
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    fsync_directory(path.parent)


def _parsed(directory: Path, path: Path, text: str) -> OutputSet:
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
        files = {name: SetFile(**entry) for name, entry in document["files"].items()}
        return OutputSet(directory, document["run_id"], files, document["committed_at"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ManifestError(
            f"{path} is not a manifest this project can read ({error}): restore it, or move "
            "it aside to start the day afresh"
        ) from error
