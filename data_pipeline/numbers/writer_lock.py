"""One writer at a time per directory: an ``fcntl.flock`` on ``.writer.lock``, which the
kernel releases when its holder dies however it dies (no daemon, no stale lock to clear)."""

import contextlib
import datetime
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".writer.lock"
# A holder writes its name just after taking the lock: a refusal waits this long to read it.
_NAME_WAIT_SECONDS = 1.0


class DirectoryBusyError(RuntimeError):
    """Another run holds the directory's writer lock."""

    def __init__(self, directory: Path, holder: dict[str, object]):
        self.directory, self.holder = directory, holder
        run_id = str(holder.get("run_id") or "unknown")
        since = holder.get("since", "an unknown time")
        super().__init__(
            f"run {run_id[:8]} is writing {directory} (it has held {directory / LOCK_FILE} "
            f"since {since}, process {holder.get('pid', '?')}): this run stopped before "
            "writing anything. Wait for it to end and run again (runs of one day launched "
            "through the UI, a schedule or a sensor wait in the queue by themselves)"
        )


@contextlib.contextmanager
def exclusive_writer(directory: Path, run_id: str) -> Iterator[bool]:
    """Hold ``directory``'s writer lock for ``run_id`` while the block runs; yield whether
    this call took it (False: this run's own process already holds it). Raise
    :class:`DirectoryBusyError`, naming the holder, if another run holds it.

    The run's own process takes it for the whole run (the Dagster layer's executor), so a
    second run is refused even between the first one's steps; each writing step takes it
    too, which it already holds through its run, or takes for itself when the run executes
    in one process. The file's contents name the holder, for the refusal's message."""
    descriptor = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            if holder.get("run_id") == run_id:
                yield False
                return
            raise DirectoryBusyError(directory, holder) from None
        _name_holder(descriptor, run_id)
        try:
            yield True
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the lock if this call took it


def _name_holder(descriptor: int, run_id: str) -> None:
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = json.dumps({"run_id": run_id, "pid": os.getpid(), "since": since}).encode()
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, record, 0)


def _holder(descriptor: int) -> dict[str, object]:
    deadline = time.monotonic() + _NAME_WAIT_SECONDS
    while True:
        text = os.pread(descriptor, 4096, 0)
        with contextlib.suppress(ValueError):
            return json.loads(text)
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.05)
