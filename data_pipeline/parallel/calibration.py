"""What a pool itself costs on this machine (start-up cold and warm, one task's round trip),
measured in a fresh process, as a step's first pool would be, and kept for a day in a JSON
file so a step pays for the measurement once a day at most."""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from data_pipeline.parallel.decision import (
    LEARN_FROM_SECONDS,
    Corrections,
    Decision,
    PoolCosts,
)

COSTS_FILE = "pool_costs.json"
MAX_AGE_SECONDS = 24 * 3600
# Trivial tasks timed for the round trip: enough to average, few enough to take ~0.1 s.
CALIBRATION_TASKS = 200
# Results of this size timed for moving bytes: 32 MiB in all.
PAYLOAD_BYTES, PAYLOADS = 1 << 20, 32
# Part of the key: costs kept by an older version that measured less are measured again.
_VERSION = 2
_CORRECTIONS = "corrections by size"
# What each size's entry keeps, in the order of Corrections' fields after size_class.
_KEPT_FIELDS = (
    "serial_ratios",
    "parallel_ratios",
    "serial_seconds_per_item",
    "parallel_seconds_per_item",
)
_TIMEOUT_SECONDS = 300


def pool_costs(
    directory: str | os.PathLike | None,
    workers: int,
    start_method: str,
    preload_modules: Iterable[str] = (),
    max_age_seconds: float = MAX_AGE_SECONDS,
    backend: str = "local",
    scheduler_address: str | None = None,
) -> PoolCosts:
    """The costs kept in ``directory`` for this pool (on ``backend``: a Dask cluster's are
    its own), re-measured when missing, unreadable or older than ``max_age_seconds`` (always
    measured when ``directory`` is None)."""
    preload = tuple(preload_modules)
    key = (
        f"v{_VERSION}: {start_method}, {workers} workers, preloading "
        f"{', '.join(preload) or 'nothing'}"
    )
    if backend != "local":
        key += f", on {backend} ({scheduler_address or 'a local cluster'})"
    path = None if directory is None else Path(directory) / COSTS_FILE
    kept = _read(path)
    entry = kept.get(key)
    if entry is not None and time.time() - entry.get("measured_at", 0) < max_age_seconds:
        try:
            return PoolCosts(**entry)
        except TypeError:
            pass  # written by another version: measure again
    costs = measure_in_a_fresh_process(workers, start_method, preload, backend, scheduler_address)
    if path is not None:
        _write(path, {**kept, key: asdict(costs)})
    return costs


def corrections(directory: str | os.PathLike | None, subject: str, size: int) -> Corrections:
    """What past runs of ``subject`` (a kind of step) in ``size`` class taught, kept beside
    the costs."""
    path = None if directory is None else Path(directory) / COSTS_FILE
    kept = _section(_read(path)).get(subject, {}).get(str(size))
    try:
        return Corrections(
            size,
            *(tuple(float(figure) for figure in kept[field]) for field in _KEPT_FIELDS),
        )
    except (TypeError, KeyError, ValueError):
        return Corrections(size)  # none kept, or kept by another version


def learn(
    directory: str | os.PathLike | None, subject: str, decision: Decision, seconds: float
) -> None:
    """Keep what this run of ``decision`` (``seconds`` for the work it predicted) taught."""
    if directory is None or decision.corrections is None:
        return  # forced: nothing to learn
    if decision.parallel:
        predicted = decision.predicted_parallel_seconds
    else:
        predicted = decision.predicted_serial_seconds
    if max(seconds, predicted or 0.0) < LEARN_FROM_SECONDS:
        return  # too short to tell the model from the machine's noise
    path = Path(directory) / COSTS_FILE
    learned = decision.corrections.after(decision, seconds)
    if learned == decision.corrections:
        return
    kept = _read(path)
    by_subject = _section(kept)
    sizes = by_subject.get(subject, {})
    entry = {field: list(getattr(learned, field)) for field in _KEPT_FIELDS}
    by_subject = {**by_subject, subject: {**sizes, str(learned.size_class): entry}}
    _write(path, {**kept, _CORRECTIONS: by_subject})


def _section(kept: dict) -> dict:
    """The corrections kept, by kind of step and size class (empty if malformed)."""
    section = kept.get(_CORRECTIONS)
    if not isinstance(section, dict):
        return {}
    return {subject: sizes for subject, sizes in section.items() if isinstance(sizes, dict)}


def measure_in_a_fresh_process(
    workers: int,
    start_method: str,
    preload_modules: tuple[str, ...],
    backend: str = "local",
    scheduler_address: str | None = None,
) -> PoolCosts:
    """Run :func:`measure` in a new interpreter, so the cold start really is cold."""
    arguments = json.dumps(
        [workers, start_method, list(preload_modules), backend, scheduler_address]
    )
    completed = subprocess.run(
        [sys.executable, "-m", __name__, arguments],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"measuring the pool's costs failed (exit {completed.returncode}): "
            f"{completed.stderr.strip()[-2000:]}"
        )
    return PoolCosts(**json.loads(completed.stdout.strip().splitlines()[-1]))


def measure(
    workers: int,
    start_method: str,
    preload_modules: tuple[str, ...],
    backend: str = "local",
    scheduler_address: str | None = None,
) -> PoolCosts:
    """Start a pool twice in this process (the first start is cold) and time trivial tasks."""
    from data_pipeline.parallel.pool import PoolSettings

    settings = PoolSettings(
        workers, start_method, backend=backend, scheduler_address=scheduler_address
    )
    startups, task_seconds, per_byte = [], 0.0, 0.0
    for _ in range(2):
        with settings.open(workers, preload_modules) as pool:
            started = time.perf_counter()
            for _ in pool.map(echo, range(CALIBRATION_TASKS)):
                pass
            task_seconds = (time.perf_counter() - started) / CALIBRATION_TASKS
            started = time.perf_counter()
            for _ in pool.map(payload, [PAYLOAD_BYTES] * PAYLOADS):
                pass
            moving = time.perf_counter() - started - PAYLOADS * task_seconds
            per_byte = max(0.0, moving) / (PAYLOAD_BYTES * PAYLOADS)
        startups.append(pool.stats.startup_seconds)
    return PoolCosts(workers, startups[0], startups[1], task_seconds, time.time(), per_byte)


def echo(task: int) -> int:
    """The trivial task: its round trip is the pool's own cost per task."""
    return task


def payload(size: int) -> bytes:
    """A result of ``size`` bytes: its trip back is the pool's cost of moving data."""
    return bytes(size)


def _read(path: Path | None) -> dict:
    """The file's contents, parsed once per version of the file: a step's decision reads it
    twice (costs and corrections) and a sweep thousands of times."""
    if path is None:
        return {}
    try:
        status = path.stat()
        version = (status.st_mtime_ns, status.st_ctime_ns, status.st_size, status.st_ino)
        cached = _parsed.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    kept = kept if isinstance(kept, dict) else {}
    _parsed[path] = (version, kept)
    return kept


# What _read parsed, by path, with the version (times, size, inode) it parsed.
_parsed: dict[Path, tuple[tuple[int, int, int, int], dict]] = {}


def _write(path: Path, kept: dict) -> None:
    """Replace the file whole (a reader never sees half of it); a failure to write only
    means measuring again next time."""
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as file:
            temporary = Path(file.name)
            json.dump(kept, file, indent=2, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


if __name__ == "__main__":
    # Imported by name, so the task function pickles as this module's, not as __main__'s.
    from data_pipeline.parallel import calibration

    workers, start_method, preload, backend, scheduler_address = json.loads(sys.argv[1])
    costs = calibration.measure(workers, start_method, tuple(preload), backend, scheduler_address)
    sys.stdout.write(json.dumps(asdict(costs)) + "\n")
