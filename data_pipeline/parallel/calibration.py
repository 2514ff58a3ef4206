"""What a pool itself costs on this machine, measured in a fresh process and kept a day in
this machine's cache directory, and what past runs taught the model, kept beside it."""

import errno
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_pipeline.parallel.decision import (
    LEARN_FROM_SECONDS,
    Corrections,
    Decision,
    PoolCosts,
)
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.settings import PoolSettings

logger = logging.getLogger(__name__)
COSTS_FILE = "pool_costs.json"
# Where the costs are kept unless PoolSettings.costs_directory says: a fact about this machine
# and Python environment, not about a day's data, so shared by every data directory, Dagster
# instance and code location here.
COSTS_DIR_VARIABLE = "DATA_PIPELINE_COSTS_DIR"
CACHE_SUBDIRECTORY = "data_pipeline"
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
    "threads_ratios",
    "threads_seconds_per_item",
)
_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class PoolShape:
    """The pool whose costs are measured: what makes one pool cost more than another."""

    workers: int
    start_method: str
    # Modules the workers import first (the fork server preloads them).
    preload_modules: tuple[str, ...] = ()
    backend: str = "local"
    # The Dask cluster's scheduler (None: a local cluster).
    scheduler_address: str | None = None

    def key(self) -> str:
        """How the costs of this pool are named in the costs file."""
        key = (
            f"v{_VERSION}: {self.start_method}, {self.workers} workers, preloading "
            f"{', '.join(self.preload_modules) or 'nothing'}"
        )
        if self.backend == "threads":
            key += ", on threads of one process"
        elif self.backend != "local":
            key += f", on {self.backend} ({self.scheduler_address or 'a local cluster'})"
        return key


def default_costs_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """``$DATA_PIPELINE_COSTS_DIR``, else ``$XDG_CACHE_HOME/data_pipeline``, else
    ``~/.cache/data_pipeline``."""
    if environ.get(COSTS_DIR_VARIABLE):
        return Path(environ[COSTS_DIR_VARIABLE]).expanduser()
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / CACHE_SUBDIRECTORY


def costs_directory_in_use(configured: str | os.PathLike | None, log: Any = logger) -> Path | None:
    """The directory to keep costs in: ``configured``, else :func:`default_costs_directory`,
    created if missing. None (costs measured, not kept) if it cannot be created or written,
    which ``log`` hears once per directory and reason, at WARNING."""
    directory = Path(configured) if configured else default_costs_directory()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))
    except OSError as error:
        _warn_once(log, directory, error)
        return None
    return directory


def pool_costs(
    directory: str | os.PathLike | None,
    shape: PoolShape,
    max_age_seconds: float = MAX_AGE_SECONDS,
) -> PoolCosts:
    """The costs kept in ``directory`` (None: always measured, never kept) for a pool of this
    ``shape``, measured again when missing, unreadable or older than ``max_age_seconds``."""
    path = None if directory is None else Path(directory) / COSTS_FILE
    kept = _read(path)
    entry = kept.get(shape.key())
    if entry is not None and time.time() - entry.get("measured_at", 0) < max_age_seconds:
        try:
            return PoolCosts(**entry)
        except TypeError:
            pass  # written by another version: measure again
    costs = measure_in_a_fresh_process(shape)
    if path is not None:
        _write(path, {**kept, shape.key(): asdict(costs)})
    return costs


def corrections(directory: str | os.PathLike | None, subject: str, size: int) -> Corrections:
    """What past runs of ``subject`` (a kind of step) in ``size`` class taught, kept beside
    the costs (lessons of a mode not run lately forgotten: :meth:`Corrections.without_stale`)."""
    path = None if directory is None else Path(directory) / COSTS_FILE
    kept = _section(_read(path)).get(subject, {}).get(str(size))
    try:
        return Corrections(
            size,
            # Fields an older version did not keep (threads') start empty.
            *(tuple(float(figure) for figure in kept.get(field, ())) for field in _KEPT_FIELDS),
            recent_choices=tuple(str(mode) for mode in kept.get("recent_choices", ())),
        ).without_stale()
    except (TypeError, AttributeError, ValueError):
        return Corrections(size)  # none kept, or kept by another version


def learn(
    directory: str | os.PathLike | None, subject: str, decision: Decision, seconds: float
) -> None:
    """Keep what this run of ``decision`` (``seconds`` for the work it predicted) taught.

    Args:
        directory: where the costs are kept; None: nothing is kept.
        subject: the kind of step (stage, kernel, pool) the lesson is for.
        decision: ``auto``'s decision for the run (forced ones teach nothing).
        seconds: how long the work the decision predicted took.
    """
    if directory is None or decision.corrections is None:
        return  # forced: nothing to learn
    predicted = getattr(decision, f"predicted_{decision.choice}_seconds")
    if max(seconds, predicted or 0.0) < LEARN_FROM_SECONDS:
        return  # too short to tell the model from the machine's noise
    path = Path(directory) / COSTS_FILE
    learned = decision.corrections.after(decision, seconds)
    if learned == decision.corrections:
        return
    kept = _read(path)
    by_subject = _section(kept)
    sizes = by_subject.get(subject, {})
    entry = {field: list(getattr(learned, field)) for field in (*_KEPT_FIELDS, "recent_choices")}
    by_subject = {**by_subject, subject: {**sizes, str(learned.size_class): entry}}
    _write(path, {**kept, _CORRECTIONS: by_subject})


def _section(kept: dict) -> dict:
    """The corrections kept, by kind of step and size class (empty if malformed)."""
    section = kept.get(_CORRECTIONS)
    if not isinstance(section, dict):
        return {}
    return {subject: sizes for subject, sizes in section.items() if isinstance(sizes, dict)}


def measure_in_a_fresh_process(shape: PoolShape) -> PoolCosts:
    """Run :func:`measure` in a new interpreter, so the cold start really is cold."""
    arguments = json.dumps(asdict(shape))
    # Imported by name (not run as __main__), so the task functions pickle as this module's.
    command = f"import sys; from {__name__} import main; main(sys.argv[1])"
    completed = subprocess.run(
        [sys.executable, "-c", command, arguments],
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


def measure(shape: PoolShape) -> PoolCosts:
    """Start a pool of this ``shape`` twice in this process (the first start is cold) and
    time trivial tasks and large results."""
    settings = PoolSettings(
        shape.workers,
        shape.start_method,
        backend=shape.backend,
        scheduler_address=shape.scheduler_address,
    )
    startups, task_seconds, per_byte = [], 0.0, 0.0
    for _ in range(2):
        with open_pool(settings, shape.workers, shape.preload_modules) as pool:
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
    return PoolCosts(shape.workers, startups[0], startups[1], task_seconds, time.time(), per_byte)


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
    """Replace the file whole (a reader never sees half of it); a failure to write means
    measuring again next time, and is logged once."""
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as file:
            temporary = Path(file.name)
            json.dump(kept, file, indent=2, sort_keys=True)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        _warn_once(logger, path.parent, error)


# (directory, reason) already logged: a decision per step must not repeat the same warning.
_warned: set[tuple[str, str]] = set()


def _warn_once(log: Any, directory: Path, error: OSError) -> None:
    # strerror, not the message: a failed temporary file's message names it, new each time.
    reason = f"{type(error).__name__}: {error.strerror or error}"
    if (str(directory), reason) in _warned:
        return
    _warned.add((str(directory), reason))
    log.warning(
        f"the pool's measured costs cannot be kept in {directory} ({reason}): auto measures "
        f"them again for each decision. Set {COSTS_DIR_VARIABLE} to a writable directory."
    )


def main(arguments: str) -> None:
    """What :func:`measure_in_a_fresh_process` runs: the costs, as JSON on stdout."""
    shape = json.loads(arguments)
    costs = measure(PoolShape(**{**shape, "preload_modules": tuple(shape["preload_modules"])}))
    sys.stdout.write(json.dumps(asdict(costs)) + "\n")
