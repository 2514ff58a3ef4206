"""Bad inputs and faults through the real command line, as a table.

    python benchmarks/faults.py [--count 20000]

Each case runs ``dagster job execute`` of ``numbers_job`` for one day in a fresh temporary
data directory that already holds a good set (or, where the case needs one, on a small
tmpfs: that needs root and ``mount``, and the case is skipped, saying why, where it is not
allowed). The table gives the exit code, the first ERROR line of the run's output (else its
first WARNING), the run that the day's ``current.json`` names before and after, whether
every file it names still has its recorded digest, and the seconds the command took.
"""

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The fault tests' helpers (data_pipeline_tests is not installed: it is found from the checkout).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipeline.numbers.output_set import ManifestError, current_set
from data_pipeline.numbers.storage import file_digest
from data_pipeline_tests.cli_runs import (
    DAY,
    finish,
    first_line_at,
    mount_tmpfs,
    run,
    start_run,
    unmount,
)


@dataclass
class Outcome:
    case: str
    exit_code: int
    message: str
    before: str
    after: str
    seconds: float


def config(count: int, seed: int = 1, source: Path | None = None, **pool: object) -> str:
    numbers = {"count": count, "seed": seed} if source is None else {"source_path": str(source)}
    return json.dumps(
        {
            "ops": {"numbers_file": {"config": numbers}},
            "resources": {"process_pool": {"config": {"workers": 2, **pool}}},
        }
    )


def first_message(log: str) -> str:
    for level in ("ERROR", "WARNING"):
        message = first_line_at(log, level)
        if message is not None:
            return f"{level}: {message}"
    return "(no ERROR or WARNING line)"


def current_run(day: Path) -> str:
    """The current set's run id (8 characters), and whether its files are whole."""
    try:
        current = current_set(day)
    except (ManifestError, OSError) as error:
        return f"unreadable ({type(error).__name__})"
    if current.run_id is None:
        return "none"
    whole = all(file_digest(day / f.path) == f.sha256 for f in current.files.values())
    return f"{current.run_id[:8]} ({len(current.files)} files, {'whole' if whole else 'DAMAGED'})"


@contextlib.contextmanager
def tmpfs(work: Path, size: str, read_only: bool = False) -> Iterator[Path | None]:
    point = work / f"tmpfs-{size}{'-ro' if read_only else ''}"
    refused = mount_tmpfs(point, size, read_only)
    if refused:
        print(f"skipped: cannot mount a tmpfs ({refused})", file=sys.stderr)
        yield None
        return
    try:
        yield point
    finally:
        unmount(point)


def case(name: str, work: Path, data: Path, run_config: str, count: int) -> Outcome:
    """A good run first (unless the data directory cannot hold one), then the case."""
    day, slug = data / DAY, re.sub(r"\W+", "-", name)
    if not day.exists() and os.access(data.parent, os.W_OK):
        finish(start_run(work, data, config(count), f"{slug}-good"))
    before = current_run(day)
    started = time.perf_counter()
    code, log = run(work, data, run_config, slug, timeout=600)
    seconds = time.perf_counter() - started
    outcome = Outcome(name, code, first_message(log), before, current_run(day), seconds)
    print(outcome, file=sys.stderr, flush=True)
    return outcome


def interrupted(work: Path, count: int) -> Outcome:
    data = work / "interrupt"
    finish(start_run(work, data, config(count), "interrupt-good"))
    before = current_run(data / DAY)
    started = time.perf_counter()
    job = start_run(work, data, config(300_000, seed=2, kernel="python"), "interrupt")
    log = work / "interrupt.log"
    while " - transformed_numbers - STEP_START - " not in log.read_text():
        if job.poll() is not None:  # ended before its transform: shown as it ended
            break
        time.sleep(0.1)
    time.sleep(2)  # the transform's pool is busy by now
    os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    code = finish(job, timeout=120)
    seconds = time.perf_counter() - started
    return Outcome(
        "Ctrl-C mid-transform (SIGINT to the group)",
        code,
        first_message(log.read_text()),
        before,
        current_run(data / DAY),
        seconds,
    )


def two_at_once(work: Path, count: int) -> list[Outcome]:
    data = work / "two"
    finish(start_run(work, data, config(count), "two-good"))
    before = current_run(data / DAY)
    started = time.perf_counter()
    jobs = {seed: start_run(work, data, config(count, seed=seed), f"seed{seed}") for seed in (7, 8)}
    codes = {seed: finish(job) for seed, job in jobs.items()}
    seconds = time.perf_counter() - started
    after = current_run(data / DAY)
    outcomes = []
    for seed, code in codes.items():
        log = (work / f"seed{seed}.log").read_text()
        counts = [line.split(" - ")[-1] for line in log.splitlines() if " accepted, " in line]
        message = counts[0] if code == 0 and counts else first_message(log)
        outcomes.append(
            Outcome(f"two runs at once: seed {seed}", code, message, before, after, seconds)
        )
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="lines of each good run")
    args = parser.parse_args()
    count = args.count
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        inputs = work / "inputs"
        inputs.mkdir()
        (inputs / "empty.txt").write_bytes(b"")
        lines = "".join(f"{n}\n" for n in range(1000, 2001))
        (inputs / "utf16.txt").write_bytes(lines.encode("utf-16"))
        (inputs / "random.bin").write_bytes(random.Random(5).randbytes(5 << 20))
        for name, source in [
            ("empty file", "empty.txt"),
            ("UTF-16 file (1,001 lines)", "utf16.txt"),
            ("5 MB of random bytes", "random.bin"),
        ]:
            data = work / name.split()[0]
            outcomes.append(case(name, work, data, config(count, source=inputs / source), count))
        outcomes.append(interrupted(work, count))
        with tmpfs(work, "2m") as point:
            if point is not None:
                outcomes.append(
                    case(
                        "disk full mid-transform (2 MB tmpfs)",
                        work,
                        point,
                        config(100_000, 2),
                        10_000,
                    )
                )
        with tmpfs(work, "1m", read_only=True) as point:
            if point is not None:
                outcomes.append(case("read-only data directory", work, point, config(count), count))
        outcomes.append(
            case(
                "data directory under /proc",
                work,
                Path("/proc/no-such-directory/data"),
                config(count),
                count,
            )
        )
        outcomes.append(case("workers: 0", work, work / "config", config(count, workers=0), count))
        outcomes += two_at_once(work, count)
    print("| case | exit | first line of the message | current set before | after | seconds |")
    print("|---|---|---|---|---|---|")
    for o in outcomes:
        message = o.message.replace("|", "\\|")
        print(
            f"| {o.case} | {o.exit_code} | {message} | {o.before} | {o.after} | {o.seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
