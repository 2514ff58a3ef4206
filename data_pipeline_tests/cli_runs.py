"""`dagster job execute` of numbers_job for one day (or a range of days), in a subprocess of
its own, as the fault tests and `benchmarks/faults.py` run it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from data_pipeline.numbers.storage import DATA_DIR_VARIABLE

DAGSTER = str(Path(sys.executable).with_name("dagster"))
DAY = "2026-11-20"


def create_instance() -> None:
    """Create the instance's storage in DAGSTER_HOME now. Two commands started together on a
    new DAGSTER_HOME both create it, and one fails (SQLite: UNIQUE constraint failed:
    alembic_version.version_num), as `dev.py` avoids for its own home."""
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)


def start_run(
    work: Path, data: Path, config: str, name: str = "run", tags: dict[str, str] | None = None
) -> subprocess.Popen:
    """numbers_job for DAY (or the days ``tags`` name) on ``data``, with ``config`` (YAML or
    JSON) written to ``work/<name>.yaml`` and its output to ``work/<name>.log``, in its own
    session."""
    (work / f"{name}.yaml").write_text(config)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DATA_PIPELINE_")
    }
    environment[DATA_DIR_VARIABLE] = str(data)
    command = [DAGSTER, "job", "execute", "-m", "data_pipeline.definitions", "-j", "numbers_job"]
    command += ["--tags", json.dumps(tags or {"dagster/partition": DAY}), "-c", f"{name}.yaml"]
    with open(work / f"{name}.log", "w") as output:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=work,
            env=environment,
            start_new_session=True,
        )


def finish(run: subprocess.Popen, timeout: float = 300) -> int:
    """The run's exit code; killed with its whole session if it outlives ``timeout``."""
    try:
        return run.wait(timeout=timeout)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def run(work: Path, data: Path, config: str, name: str = "run", timeout: float = 300):
    """:func:`start_run` and :func:`finish`: the exit code and the run's whole output."""
    code = finish(start_run(work, data, config, name), timeout)
    return code, (work / f"{name}.log").read_text()


def first_line_at(log: str, level: str) -> str | None:
    """The message of the first line of a run's output at ``level`` (ERROR, WARNING)."""
    for line in log.splitlines():
        if f" - {level} - " in line:
            return line.split(" - ")[-1]
    return None


def mount_tmpfs(point: Path, size: str, read_only: bool = False) -> str | None:
    """Mount a tmpfs of ``size`` (``2m``) on the new directory ``point``: None once mounted,
    else why it could not be (it needs root and ``mount``). Unmount with :func:`unmount`."""
    point.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    return (done.stderr.strip() or "mount failed") if done.returncode else None


def unmount(point: Path) -> None:
    subprocess.run(["umount", "-l", str(point)], check=False)
