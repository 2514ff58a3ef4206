"""A backfill before and after ranges of days: N days as N single-day runs one after another
(what a backfill cost before), as one range backfill (up to 30 days a run), and as the same
work done serially in one process.

    python benchmarks/backfill.py [--days 1,7,30] [--repeats 1] [--range-repeats 3]
                                  [--via daemon|cli] [--port 3333]

For each N of ``--days``, with default days (no run config: 400,000 lines a day, ``mode:
auto``, the fastest installed kernel):

- **per-day**: the N days as N runs of ``numbers_job`` tagged ``dagster/partition``, each
  launched when the one before ended, through the webserver (``launchPipelineExecution``);
  wall seconds from the first launch to the last run's end.
- **range backfill**: the N days as one asset backfill of the three assets, launched through
  the webserver (``launchPartitionBackfill`` with ``assetSelection`` and ``partitionNames``)
  and run by the daemon (``BackfillPolicy.multi_run(30)``: ceil(N/30) runs); wall seconds
  from the launch until the backfill is complete and every run tagged ``dagster/backfill``
  has ended. The backfill daemon looks at backfills every 30 s, so up to a tick is spent
  before its first run is created and up to another before it is marked complete: the
  second table splits that wait from the runs' own time. Each backfill is launched after an
  untimed pause of 0-30 s (seeded), so launches fall at random points of the daemon's loop
  rather than just after the tick that completed the previous one.
- **work in one process**: the same N days' work in a fresh ``python`` process, serially
  (``PoolSettings(1)``) with the kernel the steps choose (loaded before any timing) and the
  steps' chunk sizes: for each day, only its file's generation, cleaning and transform are
  timed, and the sum is printed.

``--via cli`` runs the per-day and range runs through ``dagster job execute`` instead (a
range as one command per 30 days, tagged ``dagster/asset_partition_range_start`` and
``_end``) with a fresh DAGSTER_HOME holding the project's dagster.yaml; the default is the
daemon path through a real ``dagster dev``.

Repeats: ``--repeats`` (default 1: the per-day runs are the long part, 30 days take several
minutes) and ``--range-repeats`` (default 3; the range backfill and the work alternate,
range first in odd repeats, work first in even ones; medians, first runs counted). Every run
gets days of its own (counted back from yesterday), so nothing is found already committed;
the work runs in a fresh data directory each time. Every run of the benchmark shares one
pool-costs directory (``DATA_PIPELINE_COSTS_DIR``): the pool's one-time per-machine
measurement is made by one untimed single-day run first, so it is in no timing.

Pool worker processes of this benchmark's runs busy on a CPU are sampled every 0.2 s during
each range backfill (workers that used at least a quarter of the interval's CPU time; threads
of a step process, which ``mode: auto`` may choose for the compiled transform, are not
processes and are not counted). Prints the tables, the extra cost of each day against the
work, and pass/fail for the goals: the 30-day range within 3x the work; at least 5x faster
than per-day runs; each extra day at most 1.3 x the work per day / CPUs. The machine is
shared: run it when nothing else runs, and read the load averages printed at both ends.
"""

import argparse
import contextlib
import datetime
import itertools
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from data_pipeline.defs.configs import NumbersFileConfig
from data_pipeline.defs.partitions import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    seed_of,
    start_date,
)
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.stages.chunk_sizes import DEFAULT_CLEANING_CHUNK_BYTES
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.storage import DATA_DIR_VARIABLE
from data_pipeline.parallel.budget import cpu_plan
from data_pipeline.parallel.calibration import COSTS_DIR_VARIABLE
from data_pipeline.parallel.settings import PoolSettings

REPOSITORY = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = {"repositoryLocationName": "data_pipeline", "repositoryName": "__repository__"}
ASSETS = ("numbers_file", "cleaned_numbers", "transformed_numbers")
# BackfillPolicy.multi_run(max_partitions_per_run=30) of the three assets (RANGE_BACKFILL).
DAYS_PER_RUN = 30
BACKFILL_TAG = "dagster/backfill"
# The backfill daemon's loop: it looks at backfills every 30 s (Dagster's
# DEFAULT_DAEMON_INTERVAL_SECONDS). A backfill launched just after one ended would be launched
# just after a tick and wait a whole one; an untimed pause of up to a tick before each launch
# puts the launches at random points of the loop, as a user's are.
DAEMON_TICK_SECONDS = 30
SAMPLE_SECONDS = 0.2
# A worker counts as busy when it used at least this share of a CPU over the interval.
BUSY_SHARE = 0.25
TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.5
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# The goals: the 30-day range within this many times the work in one process, at
# least this many times faster than per-day runs, and each extra day at most this share of a
# day's work over the CPUs.
RANGE_OVER_WORK_GOAL = 3.0
PER_DAY_OVER_RANGE_GOAL = 5.0
EXTRA_DAY_GOAL = 1.3


@dataclass
class RangeOutcome:
    """One range of days: wall seconds, its runs, and where the time went."""

    seconds: float
    runs: int
    failed: list[str] = field(default_factory=list)
    # From the launch to the first run's creation (the daemon's tick), from there to the
    # first run's start (the run queue and the launch), from the first run's start to the
    # last run's end, and from there until the backfill was marked complete (the daemon's
    # tick again). Through the command line, all of it is running.
    before: float = 0.0
    queued: float = 0.0
    running: float = 0.0
    after: float = 0.0

    @property
    def to_last_end(self) -> float:
        return self.before + self.queued + self.running


class Launcher(Protocol):
    def one_day(self, day: str) -> tuple[str, float]:
        """Runs ``day`` alone and waits for it: its status and seconds."""
        ...

    def range_of(self, days: list[str]) -> RangeOutcome:
        """Runs ``days`` as a range and waits until it is done."""
        ...


class Dagster:
    """The webserver's GraphQL API; launches runs and backfills and waits for them."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        if "errors" in answer:
            raise RuntimeError(answer["errors"])
        return answer["data"]

    def launch(self, day: str) -> str:
        launched = self.graphql(
            """mutation($params: ExecutionParams!) { launchPipelineExecution(
                 executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } }
                 ... on Error { message } } }""",
            params={
                "selector": {**LOCATION, "pipelineName": "numbers_job"},
                "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": day}]},
            },
        )["launchPipelineExecution"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(launched)
        return launched["run"]["runId"]

    def backfill(self, days: list[str]) -> str:
        launched = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(
                 backfillParams: $params) { __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on Error { message } } }""",
            params={
                "assetSelection": [{"path": [asset]} for asset in ASSETS],
                "partitionNames": days,
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(launched)
        return launched["backfillId"]

    def backfill_state(self, backfill_id: str) -> dict:
        return self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status endTimestamp error { message } }
                 ... on Error { message } } }""",
            id=backfill_id,
        )["partitionBackfillOrError"]

    def runs(self, run_filter: dict) -> list[dict]:
        return self.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId status creationTime startTime endTime } } } }""",
            filter=run_filter,
        )["runsOrError"]["results"]


class DaemonLauncher:
    """Per-day runs and range backfills through a running `dagster dev`."""

    def __init__(self, dagster: Dagster, timeout: float):
        self.dagster, self.timeout = dagster, timeout
        self._phase = random.Random(0)

    def one_day(self, day: str) -> tuple[str, float]:
        started = time.monotonic()
        run_id = self.dagster.launch(day)
        deadline = started + self.timeout
        while time.monotonic() < deadline:
            [run] = self.dagster.runs({"runIds": [run_id]})
            if run["status"] in RUN_DONE:
                return run["status"], time.monotonic() - started
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"the run of {day} ({run_id}) did not finish")

    def range_of(self, days: list[str]) -> RangeOutcome:
        pause = self._phase.uniform(0, DAEMON_TICK_SECONDS)
        time.sleep(pause)  # untimed: see DAEMON_TICK_SECONDS
        launched_at, started = time.time(), time.monotonic()
        backfill_id = self.dagster.backfill(days)
        tags = {"tags": [{"key": BACKFILL_TAG, "value": backfill_id}]}
        deadline = started + self.timeout
        while True:
            state = self.dagster.backfill_state(backfill_id)
            runs = self.dagster.runs(tags)
            if state.get("status") in BACKFILL_DONE and all(r["status"] in RUN_DONE for r in runs):
                seconds = time.monotonic() - started
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} did not finish: {state}, {runs}")
            time.sleep(POLL_SECONDS)
        failed = [f"run {r['runId'][:8]} {r['status']}" for r in runs if r["status"] != "SUCCESS"]
        if state["status"] not in {"COMPLETED", "COMPLETED_SUCCESS"}:
            failed.append(f"backfill {backfill_id} {state['status']} {state.get('error') or ''}")
        if not runs:
            failed.append(f"backfill {backfill_id} made no run")
            return RangeOutcome(seconds, 0, failed)
        created = min(run["creationTime"] for run in runs)
        first_start = min(run["startTime"] or created for run in runs)
        last_end = max(run["endTime"] or first_start for run in runs)
        completed = state.get("endTimestamp") or last_end
        outcome = RangeOutcome(
            seconds,
            len(runs),
            failed,
            before=created - launched_at,
            queued=first_start - created,
            running=last_end - first_start,
            after=max(0.0, completed - last_end),
        )
        print(
            f"    backfill {backfill_id} (launched after an untimed pause of {pause:.1f} s): "
            f"{len(runs)} run(s), {state['status']}; "
            f"{outcome.before:.1f} s until its first run was created, {outcome.queued:.1f} s "
            f"queued and starting, {outcome.running:.1f} s running, {outcome.after:.1f} s "
            "until marked complete",
            flush=True,
        )
        return outcome


class CliLauncher:
    """Per-day and range runs as `dagster job execute` commands, one after another."""

    def __init__(self, environment: dict[str, str], logs: Path, timeout: float):
        self.environment, self.logs, self.timeout = environment, logs, timeout
        self._count = 0

    def _execute(self, tags: dict[str, str]) -> tuple[str, float]:
        self._count += 1
        log = self.logs / f"run-{self._count}.log"
        command = [DAGSTER, "job", "execute", "-m", "data_pipeline.definitions"]
        command += ["-j", "numbers_job", "--tags", json.dumps(tags)]
        started = time.monotonic()
        with open(log, "w") as output:
            done = subprocess.run(
                command,
                cwd=REPOSITORY,
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
            )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            print(f"    exit code {done.returncode}; the run's last lines:\n{tail}", flush=True)
            return f"FAILURE (exit {done.returncode})", seconds
        return "SUCCESS", seconds

    def one_day(self, day: str) -> tuple[str, float]:
        return self._execute({PARTITION_TAG: day})

    def range_of(self, days: list[str]) -> RangeOutcome:
        started, failed, runs = time.monotonic(), [], 0
        for first in range(0, len(days), DAYS_PER_RUN):
            chunk = days[first : first + DAYS_PER_RUN]
            status, _ = self._execute({RANGE_START_TAG: chunk[0], RANGE_END_TAG: chunk[-1]})
            runs += 1
            if status != "SUCCESS":
                failed.append(f"{chunk[0]} to {chunk[-1]}: {status}")
        seconds = time.monotonic() - started
        return RangeOutcome(seconds, runs, failed, running=seconds)


class BusyWorkers:
    """Samples every SAMPLE_SECONDS how many pool workers (children of a fork server) among
    this process's descendants are busy on a CPU; keeps the peak and the samples. Other
    processes of the machine (another session's tests) are not counted."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "BusyWorkers":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def _run(self) -> None:
        before = _worker_cpu_ticks(os.getpid())
        while not self._stop.wait(SAMPLE_SECONDS):
            now = _worker_cpu_ticks(os.getpid())
            busy_ticks = BUSY_SHARE * SAMPLE_SECONDS * TICKS
            self.samples.append(
                sum(1 for pid, ticks in now.items() if ticks - before.get(pid, ticks) >= busy_ticks)
            )
            before = now


def _worker_cpu_ticks(root: int) -> dict[int, int]:
    """CPU ticks used so far by each pool worker process descended from ``root``."""
    commands, parents, ticks = {}, {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        commands[pid], parents[pid] = command, int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime

    def descends_from_root(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    # A pool's workers are the fork server's children (the pools' default start method; the
    # step processes themselves are spawned by Dagster's executor and are not counted).
    server = b"multiprocessing.forkserver"
    return {
        pid: ticks[pid]
        for pid, command in commands.items()
        if server in command
        and server in commands.get(parents[pid], b"")
        and descends_from_root(pid)
    }


def fresh_environment(work: Path, costs: Path) -> dict[str, str]:
    """A fresh DAGSTER_HOME holding the project's dagster.yaml (its storage created), a
    fresh data directory, and the shared pool-costs directory."""
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        DATA_DIR_VARIABLE: str(work / "data"),
        COSTS_DIR_VARIABLE: str(costs),
    }
    migrate = [DAGSTER, "instance", "migrate"]
    subprocess.run(migrate, env=environment, check=True, stdout=subprocess.DEVNULL)
    return environment


@contextlib.contextmanager
def dagster_dev(port: int, costs: Path, timeout: float) -> Iterator[Launcher]:
    """A real `dagster dev` (webserver and daemon) with a fresh instance holding the
    project's dagster.yaml, and a fresh data directory; stopped, and both removed, after."""
    work = Path(tempfile.mkdtemp(prefix="backfill-"))
    environment = fresh_environment(work, costs)
    command = [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    log_path = work / "dagster_dev.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            dagster = Dagster(port)
            deadline = time.monotonic() + 180
            while True:
                try:
                    dagster.graphql("{ version }")
                    break
                except (urllib.error.URLError, ConnectionError, RuntimeError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            yield DaemonLauncher(dagster, timeout)
        except BaseException:
            lines = log_path.read_text(errors="replace").splitlines()[-40:]
            print("dagster dev's last lines:\n" + "\n".join(lines), file=sys.stderr)
            raise
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def command_line(costs: Path, timeout: float) -> Iterator[Launcher]:
    """`dagster job execute` with a fresh DAGSTER_HOME (the project's dagster.yaml) and data
    directory, both removed after."""
    work = Path(tempfile.mkdtemp(prefix="backfill-"))
    try:
        yield CliLauncher(fresh_environment(work, costs), work, timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def work_in_one_process(days: list[str], costs: Path) -> tuple[float, float]:
    """The days' generation, cleaning and transform in a fresh `python` process, serially, in
    a fresh data directory: the sum of the timed calls, wall seconds and CPU seconds (every
    thread of the process: the Parquet writer's thread overlaps the rest)."""
    with tempfile.TemporaryDirectory(prefix="backfill-work-") as directory:
        command = [sys.executable, __file__, "--work-days", ",".join(days), "--work-dir"]
        done = subprocess.run(
            [*command, directory],
            env={**os.environ, COSTS_DIR_VARIABLE: str(costs)},
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the work in one process failed:\n{done.stdout}\n{done.stderr}")
    answer = json.loads(done.stdout.splitlines()[-1])
    return sum(answer["seconds"]), sum(answer["cpu_seconds"])


def work_main(days: list[str], directory: Path) -> None:
    """In the fresh process: each day generated, cleaned and transformed serially; only those
    three calls are timed. Prints the seconds of each day as JSON."""
    defaults = NumbersFileConfig()
    # The steps' kernel (import, compile or cache load, self-check), before any timing.
    kernel = kernel_named("auto")
    # The transform step's chunk for that kernel (the resource's default, backend local).
    chunk_values = ProcessPoolResource().chunk_values_for(kernel)
    serial = PoolSettings(1)
    seconds, cpu_seconds = [], []
    for day in days:
        folder = directory / day
        folder.mkdir(parents=True)
        source, cleaned = folder / "numbers.txt", folder / "cleaned_numbers.parquet"
        rejected, transformed = folder / "rejected_lines.parquet", folder / "transformed.parquet"
        started, cpu_started = time.perf_counter(), time.process_time()
        write_numbers_file(source, defaults.count, seed_of(day), defaults.dirty_fraction)
        clean_to_parquet(
            source, cleaned, rejected, serial, DEFAULT_CLEANING_CHUNK_BYTES, kernel=kernel
        )
        transform_to_parquet(cleaned, transformed, serial, chunk_values, kernel=kernel)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    print(
        json.dumps(
            {
                "kernel": kernel.name,
                "chunk_values": chunk_values,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
            }
        )
    )


class Days:
    """Days no run has had yet, counted back from yesterday (UTC)."""

    def __init__(self):
        self._next = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)
        self._first = datetime.date.fromisoformat(start_date())

    def take(self, count: int) -> list[str]:
        days = [self._next - datetime.timedelta(days=back) for back in range(count)]
        if days[-1] < self._first:
            raise SystemExit(
                f"not enough days since {self._first}: run fewer repeats or fewer --days"
            )
        self._next = days[-1] - datetime.timedelta(days=1)
        return [str(day) for day in reversed(days)]


def per_day_runs(launcher: Launcher, days: list[str]) -> tuple[float, list[str]]:
    """``days`` one at a time, each launched when the one before ended; wall seconds, and
    the days whose run failed."""
    started, failed = time.monotonic(), []
    for day in days:
        status, seconds = launcher.one_day(day)
        print(f"    {day}: {status} in {seconds:.1f} s", flush=True)
        if status != "SUCCESS":
            failed.append(f"{day}: {status}")
    return time.monotonic() - started, failed


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="1,7,30", help="the Ns, comma-separated")
    parser.add_argument(
        "--repeats", type=int, default=1, help="per-day measurements of each N (long: 1)"
    )
    parser.add_argument(
        "--range-repeats",
        type=int,
        default=3,
        help="range backfills and works in one process of each N, alternating; medians",
    )
    parser.add_argument("--via", choices=["daemon", "cli"], default="daemon")
    parser.add_argument("--port", type=int, default=3333)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a run may take")
    parser.add_argument("--work-days", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work_days:
        work_main(args.work_days.split(","), args.work_dir)
        return
    sizes = sorted({int(text) for text in args.days.split(",")})
    budget = cpu_plan()
    days = Days()
    per_day: dict[int, list[float]] = {n: [] for n in sizes}
    ranges: dict[int, list[RangeOutcome]] = {n: [] for n in sizes}
    works: dict[int, list[float]] = {n: [] for n in sizes}
    cpu_works: dict[int, list[float]] = {n: [] for n in sizes}
    peaks: dict[int, int] = dict.fromkeys(sizes, 0)
    failures: list[str] = []
    costs = Path(tempfile.mkdtemp(prefix="backfill-costs-"))
    print(f"{budget}\nvia {args.via}; load average {load()}\n", flush=True)
    environment = (
        dagster_dev(args.port, costs, args.timeout)
        if args.via == "daemon"
        else command_line(costs, args.timeout)
    )
    try:
        with environment as launcher:
            print("warm-up (untimed: measures the pool's costs once, for every run)", flush=True)
            per_day_runs(launcher, days.take(1))
            for n in sizes:
                for repeat in range(args.repeats):
                    print(f"{n} day(s) as single-day runs, repeat {repeat + 1}", flush=True)
                    seconds, failed = per_day_runs(launcher, days.take(n))
                    print(f"  {seconds:.1f} s", flush=True)
                    per_day[n].append(seconds)
                    failures += failed
                for repeat in range(args.range_repeats):
                    range_days = days.take(n)
                    order = ("range", "work") if repeat % 2 == 0 else ("work", "range")
                    for what in order:
                        if what == "work":
                            seconds, cpu = work_in_one_process(range_days, costs)
                            print(
                                f"{n} day(s) in one process: {seconds:.1f} s ({cpu:.1f} s of CPU)",
                                flush=True,
                            )
                            works[n].append(seconds)
                            cpu_works[n].append(cpu)
                            continue
                        print(f"{n} day(s) as one range backfill, repeat {repeat + 1}", flush=True)
                        with BusyWorkers() as busy:
                            outcome = launcher.range_of(range_days)
                        print(f"  {outcome.seconds:.1f} s, {outcome.runs} run(s)", flush=True)
                        ranges[n].append(outcome)
                        peaks[n] = max(peaks[n], busy.peak)
                        failures += outcome.failed
    finally:
        shutil.rmtree(costs, ignore_errors=True)
    report(args, sizes, budget.cpus, per_day, ranges, works, cpu_works, peaks, failures)


def report(
    args: argparse.Namespace,
    sizes: list[int],
    cpus: int,
    per_day: dict[int, list[float]],
    ranges: dict[int, list[RangeOutcome]],
    works: dict[int, list[float]],
    cpu_works: dict[int, list[float]],
    peaks: dict[int, int],
    failures: list[str],
) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    by_day = {n: median(per_day[n]) for n in sizes}
    wall = {n: median([outcome.seconds for outcome in ranges[n]]) for n in sizes}
    own = {n: median([outcome.running for outcome in ranges[n]]) for n in sizes}
    parts = {
        n: [
            median([getattr(outcome, part) for outcome in ranges[n]])
            for part in ("to_last_end", "before", "queued", "running", "after")
        ]
        for n in sizes
    }
    work = {n: median(works[n]) for n in sizes}
    cpu_work = {n: median(cpu_works[n]) for n in sizes}
    print(f"\nload average {load()}")
    print(
        f"\nvia {args.via}; per-day: median of {args.repeats}; range and work: medians of "
        f"{args.range_repeats}, alternating, first runs counted\n"
    )
    print(
        "| days | per-day runs s | range backfill s (runs) | work in one process s (CPU s) | "
        "range / work | per-day / range | peak busy pool workers (range) / budget |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        runs = "/".join(str(count) for count in sorted({o.runs for o in ranges[n]}))
        print(
            f"| {n} | {by_day[n]:.1f} | {wall[n]:.1f} ({runs}) | {work[n]:.1f} "
            f"({cpu_work[n]:.1f}) | "
            f"{wall[n] / work[n]:.2f}x | {by_day[n] / wall[n]:.2f}x | {peaks[n]} / {cpus} |"
        )
    print(
        "\n| days | range backfill s | to its last run's end s | before its first run s | "
        "queued and starting s | its runs, first start to last end s | until marked complete s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        print(f"| {n} | {wall[n]:.1f} | " + " | ".join(f"{part:.1f}" for part in parts[n]) + " |")

    print(
        f"\nExtra cost of a day against {EXTRA_DAY_GOAL} x the work per day / {cpus} CPUs (the "
        "work as CPU seconds in one process; as its wall seconds in brackets):"
    )
    extra_ok = True
    for small, large in itertools.pairwise(sizes):
        extra = (wall[large] - wall[small]) / (large - small)
        extra_running = (own[large] - own[small]) / (large - small)
        limit = EXTRA_DAY_GOAL * (cpu_work[large] / large) / cpus
        wall_limit = EXTRA_DAY_GOAL * (work[large] / large) / cpus
        passed = extra <= limit
        extra_ok = extra_ok and passed
        print(
            f"  {small} -> {large} days: {extra:.2f} s a day (runs' own time: "
            f"{extra_running:.2f} s) against {limit:.2f} s ({EXTRA_DAY_GOAL} x "
            f"{cpu_work[large] / large:.2f} s of CPU per day / {cpus}) [{wall_limit:.2f} s]: "
            f"{'pass' if passed else 'FAIL'}"
        )
    goal = 30 if 30 in sizes else sizes[-1]
    within = wall[goal] / work[goal]
    faster = by_day[goal] / wall[goal]
    print(f"\nGoals ({goal} days{'' if goal == 30 else ', not 30: add 30 to --days'}):")
    print(
        f"  range within {RANGE_OVER_WORK_GOAL:g}x the work: {within:.2f}x: "
        f"{'pass' if within <= RANGE_OVER_WORK_GOAL else 'FAIL'}"
    )
    print(
        f"  at least {PER_DAY_OVER_RANGE_GOAL:g}x faster than per-day runs: {faster:.2f}x: "
        f"{'pass' if faster >= PER_DAY_OVER_RANGE_GOAL else 'FAIL'}"
    )
    if len(sizes) > 1:
        print(f"  each extra day within the limit above: {'pass' if extra_ok else 'FAIL'}")
    peak = max(peaks.values(), default=0)
    print(
        f"  busy pool workers during range backfills: peak {peak} against a budget of "
        f"{cpus} CPUs ({'within' if peak <= cpus else 'OVER'} the budget)"
    )
    if failures:
        print("\nFAILED runs (their timings are in the table):")
        for failure in failures:
            print(f"  {failure}")


if __name__ == "__main__":
    main()
