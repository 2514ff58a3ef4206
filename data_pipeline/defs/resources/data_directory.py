"""Where the numbers assets read and write (one directory per day, and the landing directory),
and one sentence, naming the setting to change, when the disk refuses."""

import datetime
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from data_pipeline.numbers.output_set import DEFAULT_KEEP_SETS
from data_pipeline.numbers.storage import (
    DATA_DIR_VARIABLE,
    LANDING_DIR_VARIABLE,
    LANDING_DIRECTORY,
    REPOSITORY_DATA_DIR,
    remove_abandoned_temporaries,
    shown_path,
)


class DataDirectoryResource(dg.ConfigurableResource):
    """Where the numbers assets read and write: one directory per day (numbers.txt and the
    Parquet files), and the landing directory where daily exports arrive."""

    path: str = Field(
        description=(
            "Directory for the outputs, one sub-directory per day (YYYY-MM-DD); created if "
            "needed. definitions.py sets it from the environment variable "
            "DATA_PIPELINE_DATA_DIR when that is set, else to data/ in the repository."
        ),
    )
    landing_path: str | None = Field(
        default=None,
        description=(
            "Where daily exports arrive, named YYYY-MM-DD.txt: numbers_file ingests a day's "
            "file from here when it exists, and the landing_files_sensor watches it. Default: "
            "incoming/ in the data directory; DATA_PIPELINE_LANDING_DIR sets it."
        ),
    )

    keep_sets: int = Field(
        default=DEFAULT_KEEP_SETS,
        ge=1,
        description=(
            "Committed sets of a day's outputs to keep (sets/<run id>/ in the day's "
            "directory), the current one included; older ones are removed a minute after a "
            "newer one became current."
        ),
    )

    def directory(self, day: str | None = None) -> Path:
        """The data directory, or ``day``'s within it, created if needed and cleared of what
        killed runs left behind (temporary files whose writer is gone); a failure names the
        setting to change."""
        directory = Path(self.path).expanduser()
        if day is not None:
            directory /= _checked_day(day)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            problem = self.storage_problem(error, directory, doing="create")
            raise dg.Failure(problem, allow_retries=False) from error
        remove_abandoned_temporaries(directory)
        return directory

    def check_writable(self) -> None:
        """Fail, in one sentence, unless files can be created in the data directory."""
        directory = self.directory()
        try:
            with tempfile.TemporaryFile(dir=directory, prefix=".write-test-"):
                pass
        except OSError as error:
            raise dg.Failure(self.storage_problem(error, directory), allow_retries=False) from error

    def setting(self) -> str:
        """Which setting chose the data directory, as a person would change it."""
        variable = os.environ.get(DATA_DIR_VARIABLE)
        if variable and Path(variable).expanduser() == Path(self.path).expanduser():
            return DATA_DIR_VARIABLE
        if Path(self.path) == REPOSITORY_DATA_DIR:
            return f"the default, data/ in the repository ({DATA_DIR_VARIABLE} moves it)"
        return "resources.data_directory.config.path"

    def storage_problem(
        self, error: OSError, path: Path | str | None = None, doing: str = "write"
    ) -> str:
        """One sentence for a failed file operation in the data directory: the path, the
        operating system's reason, the setting that chose the directory, what to do."""
        where = shown_path(path or error.filename or self.path)
        advice = _STORAGE_ADVICE.get(error.errno, "point it at a directory you can write")
        # The system's words for the errno: Arrow's errors put a message of their own there.
        reason = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
        return (
            f"cannot {doing} {where}: {reason} (errno {error.errno}). The "
            f"data directory {self.path} comes from {self.setting()}: {advice}"
        )

    def landing_directory(self) -> Path:
        """Where daily exports arrive (not created: only read)."""
        if self.landing_path:
            return Path(self.landing_path).expanduser()
        return Path(self.path).expanduser() / LANDING_DIRECTORY


def _checked_day(day: str) -> str:
    """``day`` if it is a date as YYYY-MM-DD (a day's directory never leaves the data
    directory)."""
    try:
        if datetime.date.fromisoformat(day).isoformat() == day:
            return day
    except ValueError:
        pass
    raise dg.Failure(f"{day!r} is not a day as YYYY-MM-DD", allow_retries=False)


def data_directory_resource() -> DataDirectoryResource:
    """The data directory per deployment: DATA_PIPELINE_DATA_DIR when set (resolved in each
    step process, so the UI shows where the value comes from), else data/ in the repository;
    the landing directory from DATA_PIPELINE_LANDING_DIR likewise."""
    landing = dg.EnvVar(LANDING_DIR_VARIABLE) if os.environ.get(LANDING_DIR_VARIABLE) else None
    if os.environ.get(DATA_DIR_VARIABLE):
        return DataDirectoryResource(path=dg.EnvVar(DATA_DIR_VARIABLE), landing_path=landing)
    return DataDirectoryResource(path=str(REPOSITORY_DATA_DIR), landing_path=landing)


_STORAGE_ADVICE = {
    errno.ENOSPC: "free space on its disk, or point it at one with room",
    errno.EDQUOT: "free space within your quota, or point it at a disk with room",
    errno.EACCES: "make it writable for this user, or point it at a directory you can write",
    errno.EPERM: "make it writable for this user, or point it at a directory you can write",
    errno.EROFS: "it is on a read-only file system: point it at a writable one",
    errno.ENOENT: "point it at a directory that exists or can be created",
}


def data_directory_for_run(run_config: dict[str, Any]) -> DataDirectoryResource:
    """The data directory a run will use: its run config's, else the deployment's
    (:func:`data_directory_resource`), with environment variables resolved."""
    given = run_config.get("resources", {}).get("data_directory", {}).get("config", {})
    resolved = {name: _resolved(value) for name, value in given.items()}
    path = os.environ.get(DATA_DIR_VARIABLE) or str(REPOSITORY_DATA_DIR)
    return DataDirectoryResource(**{"path": path, **resolved})


def _resolved(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"env"}:
        return os.environ.get(value["env"], "")
    return value
