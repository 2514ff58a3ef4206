"""Where outputs live, and how they are written so a failed run never leaves half a file."""

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# The environment variable that moves the data directory (wired in definitions.py).
DATA_DIR_VARIABLE = "DATA_PIPELINE_DATA_DIR"
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


@contextlib.contextmanager
def atomic_output(path: Path, digests: dict[str, str] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The rename is atomic on one file system: readers see the old file or the new one, never a
    mix, and a failure (or interrupt) removes the temporary file. ``digests`` gets the SHA-256
    of exactly what was renamed into place, under :func:`digest_key` (``path``'s name), so a
    check can later tell whether the file is still the one this run wrote.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
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
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; if the block succeeds, it replaces
    ``path`` as a whole. Readers see the old set of files or the new one, never a mix (for an
    instant between the two renames, none); a failure leaves the old set as it was."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    replaced = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
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
def pinned(path: Path) -> Iterator[Path]:
    """Yield a second name (a hard link) for the file as it is now.

    Workers open the input by name, many times. If another run replaces it meanwhile (an
    atomic rename), they would read offsets planned on the old file from the new one. The
    link keeps the old contents reachable until we are done.
    """
    link = path.with_name(f".{path.name}.{uuid.uuid4().hex}.reading")
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
