"""Where outputs live, and how each file is written so a failed run never leaves half of it
(:mod:`.output_set` makes a run's files current together)."""

import contextlib
import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

# The environment variable that moves the data directory (wired in definitions.py).
DATA_DIR_VARIABLE = "DATA_PIPELINE_DATA_DIR"
LANDING_DIR_VARIABLE = "DATA_PIPELINE_LANDING_DIR"
LANDING_DIRECTORY = "incoming"
REPOSITORY_DATA_DIR = Path(__file__).resolve().parents[2] / "data"

NUMBERS_FILE = "numbers.txt"
CLEANED_NUMBERS_FILE = "cleaned_numbers.parquet"
REJECTED_LINES_FILE = "rejected_lines.parquet"
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
        fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


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
        fsync_directory(path.parent)
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


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform can)."""
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
