"""Where outputs live, and how they are written so a failed run never leaves half a file."""

import contextlib
import hashlib
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

# The environment variable that moves the data directory (wired in definitions.py).
DATA_DIR_VARIABLE = "DATA_PIPELINE_DATA_DIR"
LANDING_DIR_VARIABLE = "DATA_PIPELINE_LANDING_DIR"
LANDING_DIRECTORY = "incoming"
REPOSITORY_DATA_DIR = Path(__file__).resolve().parents[2] / "data"

NUMBERS_FILE = "numbers.txt"
CLEANED_NUMBERS_FILE = "cleaned_numbers.parquet"
REJECTED_LINES_FILE = "rejected_lines.parquet"
# cleaned_numbers.parquet and rejected_lines.parquet are one set: they change together.
CLEANED_SET = "cleaned"
TRANSFORMED_NUMBERS_FILE = "transformed_numbers.parquet"
# The report's serial and parallel outputs, kept for its check to compare.
REPORT_OUTPUTS_DIRECTORY = "parallelism_report"


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's contents, in hex."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def digest_key(file_name: str) -> str:
    """The metadata key under which a materialization records a file's digest."""
    return f"{Path(file_name).name.split('.')[0]}_sha256"


def _temporary_name(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` that says which process, on which host, made it, so that
    :func:`remove_abandoned_temporaries` can tell its writer is gone."""
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex}.{kind}")


def _host_tag() -> str:
    """Which machine and process namespace made a name: a hash of the host name and of the
    pid namespace (containers sharing a host name still differ), as pids mean nothing across
    either."""
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    return hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:12]


_HOST = _host_tag()
# A committed version of a file set (atomic_file_set): not a temporary, whoever wrote it.
# Versions no longer current are removed once they are this old (a reader may still be in
# one it resolved just before a commit).
VERSION_GRACE_SECONDS = 60
_VERSION = re.compile(r"^\.\w+\.[0-9a-f]{32}$")
_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>\w+)-(?P<pid>\d+)\.[0-9a-f]{32}\.(tmp|old|reading)$"
)


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a person knows it: a hidden temporary name (the snapshot a step reads, say)
    shown as the file it stands for."""
    path = Path(path)
    match = _TEMPORARY.match(path.name)
    return str(path.with_name(match["name"]) if match else path)


def remove_abandoned_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files and directories that a killed run left in ``directory``:
    only those made on this host by a process that no longer exists (a live writer's, or
    another host's, are left alone). A set moved aside (``.old``) whose replacement never
    arrived is put back instead. Returns what was removed or put back."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            match = _TEMPORARY.match(entry.name)
            if not match or match["host"] != _HOST or _alive(int(match["pid"])):
                continue
            original = directory / match["name"]
            if entry.name.endswith(".old") and not original.exists():
                # Killed between moving the old set aside and the new one in: the old set is
                # the only one there is, so it goes back.
                os.replace(entry, original)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def atomic_output(path: Path, digests: dict[str, str] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The rename is atomic on one file system: readers see the old file or the new one, never a
    mix, and a failure (or interrupt) removes the temporary file. ``digests`` gets the SHA-256
    of exactly what was renamed into place, under :func:`digest_key` (``path``'s name), so a
    check can later tell whether the file is still the one this run wrote.
    """
    temporary = _temporary_name(path, "tmp")
    try:
        yield temporary
        # Flush to disk before the rename, and the rename itself after, so that even a power
        # cut leaves the old file or the new one, never an empty or partial one.
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if digests is not None:
            digests[digest_key(path.name)] = file_digest(temporary)
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file_set(
    directory: Path, set_name: str, names: Sequence[str], digests: dict[str, str] | None = None
) -> Iterator[dict[str, Path]]:
    """Yield a temporary path for each of ``names``; if the block succeeds, all of them replace
    the files of those names in ``directory`` at once.

    The files go into a new version directory, ``.<set_name>.<hex>``, and one atomic rename of
    the symbolic link ``.<set_name>`` makes it current; each name in ``directory`` is a fixed
    link through it (``cleaned_numbers.parquet -> .cleaned/cleaned_numbers.parquet``). A
    reader that resolves the set once (:func:`file_set`) sees all old or all new files, never
    one of each; after a failure or a kill the previous set stays current. The previous
    version is kept for readers still in it; older ones are removed.
    """
    staging = _temporary_name(directory / set_name, "tmp")
    staging.mkdir(parents=True)
    try:
        yield {name: staging / name for name in names}
        for name in names:
            with open(staging / name, "rb") as written:
                os.fsync(written.fileno())
            if digests is not None:
                digests[digest_key(name)] = file_digest(staging / name)
        _fsync_directory(staging)
        version = directory / f".{set_name}.{uuid.uuid4().hex}"
        os.rename(staging, version)
        pointer = directory / f".{set_name}"
        previous = os.readlink(pointer) if pointer.is_symlink() else None
        _replace_with_link(pointer, version.name)  # the commit: one rename
        for name in names:
            target = f".{set_name}/{name}"
            link = directory / name
            if not (link.is_symlink() and os.readlink(link) == target):
                _replace_with_link(link, target)
        _fsync_directory(directory)
        _remove_old_versions(directory, set_name, keep={version.name, previous})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_old_versions(directory: Path, set_name: str, keep: set[str | None]) -> None:
    """Versions of the set that nobody should be reading: not current (read again, as another
    writer may have committed since), not ``keep``, and older than a minute."""
    pointer = directory / f".{set_name}"
    with contextlib.suppress(OSError):
        keep = keep | {os.readlink(pointer)}
    for old in directory.glob(f".{set_name}.*"):
        if not _VERSION.match(old.name) or old.name in keep:
            continue
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > VERSION_GRACE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)


def file_set(directory: Path, set_name: str) -> Path:
    """The directory that holds the current files of ``set_name``, resolved once: read every
    file of the set from it to see one version of all of them (``directory`` itself for files
    written one by one)."""
    pointer = directory / f".{set_name}"
    return directory / os.readlink(pointer) if pointer.is_symlink() else directory


def _replace_with_link(path: Path, target: str) -> None:
    link = _temporary_name(path, "tmp")
    os.symlink(target, link)
    try:
        os.replace(link, path)
    except OSError:
        link.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; if the block succeeds, it replaces
    ``path`` as a whole. Readers see the old set of files or the new one, never a mix (for an
    instant between the two renames, none); a failure leaves the old set as it was."""
    staging = _temporary_name(path, "tmp")
    replaced = _temporary_name(path, "old")
    staging.mkdir(parents=True)
    try:
        yield staging
        if path.exists():
            os.replace(path, replaced)
        os.replace(staging, path)
        _fsync_directory(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(replaced, ignore_errors=True)


@contextlib.contextmanager
def pinned(path: Path, beside: Path | None = None) -> Iterator[Path]:
    """Yield a second name (a hard link) for the file as it is now, in ``beside`` (default:
    the file's own directory).

    Workers open the input by name, many times. If another run replaces it meanwhile (an
    atomic rename), they would read offsets planned on the old file from the new one. The
    link keeps the old contents reachable until we are done.
    """
    link = _temporary_name((beside or path.parent) / path.name, "reading")
    try:
        os.link(path, link)
    except OSError:  # a file system without hard links: read the file where it is
        yield path
        return
    try:
        yield link
    finally:
        link.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
