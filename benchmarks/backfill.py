"""A 7-day backfill against 7 single-day runs one after another, through a real `dagster dev`
(webserver and daemon) with the project's dagster.yaml.

    python benchmarks/backfill.py [--days 7] [--count 400000] [--port 3333] [--mode parallel]

Starts `dagster dev` on 127.0.0.1 with a fresh DAGSTER_HOME (the project's dagster.yaml in
it) and data directory, launches `numbers_job` for each day one after another (each waits for
the one before), then the same days again as one backfill, and samples every 0.2 s the pool
worker processes busy on a CPU (workers of any run's pool that used at least a quarter of
the interval's CPU time). Prints both wall times, their ratio, and the peak number of busy
workers against the CPU budget. The machine is shared: run it when nothing else runs.
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from data_pipeline.parallel.budget import cpu_plan

REPOSITORY = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = {"repositoryLocationName": "data_pipeline", "repositoryName": "__repository__"}
SAMPLE_SECONDS = 0.2
# A worker counts as busy when it used at least this share of a CPU over the interval.
BUSY_SHARE = 0.25
TICKS = os.sysconf("SC_CLK_TCK")


class Dagster:
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

    def launch(self, day: str, run_config: dict) -> str:
        launched = self.graphql(
            """mutation($params: ExecutionParams!) { launchPipelineExecution(
                 executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } } }""",
            params={
                "selector": {**LOCATION, "pipelineName": "numbers_job"},
                "runConfigData": run_config,
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
            },
        )["launchPipelineExecution"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(launched)
        return launched["run"]["runId"]

    def backfill(self, days: list[str], run_config: dict) -> str:
        launched = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(
                 backfillParams: $params) { __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message } } }""",
            params={
                "selector": {
                    "partitionSetName": "numbers_job_partition_set",
                    "repositorySelector": LOCATION,
                },
                "partitionNames": days,
                "runConfigData": run_config,
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(launched)
        return launched["backfillId"]

    def runs(self, tags: list[dict]) -> list[dict]:
        return self.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId status startTime endTime } } } }""",
            filter={"tags": tags},
        )["runsOrError"]["results"]

    def wait(self, tags: list[dict], count: int, timeout: float = 3600) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(tags)
            if len(runs) == count and all(
                run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for run in runs
            ):
                return runs
            time.sleep(1)
        raise TimeoutError(f"runs tagged {tags} did not finish")


class BusyWorkers:
    """Samples every SAMPLE_SECONDS how many pool workers (children of a fork server, or
    spawned workers) are busy on a CPU; keeps the peak and the samples."""

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
        before = _worker_cpu_ticks()
        while not self._stop.wait(SAMPLE_SECONDS):
            now = _worker_cpu_ticks()
            busy_ticks = BUSY_SHARE * SAMPLE_SECONDS * TICKS
            self.samples.append(
                sum(1 for pid, ticks in now.items() if ticks - before.get(pid, ticks) >= busy_ticks)
            )
            before = now


def _worker_cpu_ticks() -> dict[int, int]:
    """CPU ticks used so far by each pool worker process on the machine."""
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
    # A pool's workers are the fork server's children (the pools' default start method; the
    # step processes themselves are spawned by Dagster's executor and are not counted).
    server = b"multiprocessing.forkserver"
    return {
        pid: ticks[pid]
        for pid, command in commands.items()
        if server in command and server in commands.get(parents[pid], b"")
    }


def one_after_another(dagster: Dagster, days: list[str], run_config: dict) -> float:
    """Runs ``days`` one at a time, each launched when the one before ended; wall seconds."""
    started = time.monotonic()
    for day in days:
        run_id = dagster.launch(day, run_config)
        [run] = dagster.wait([{"key": "dagster/partition", "value": day}], 1)
        took = (run["endTime"] or 0) - (run["startTime"] or 0)
        print(f"  {day}: {run['status']} in {took:.1f} s (run {run_id[:8]})", flush=True)
    return time.monotonic() - started


def as_one_backfill(dagster: Dagster, days: list[str], run_config: dict) -> float:
    """``days`` as one backfill, launched through the webserver; wall seconds to the end."""
    started = time.monotonic()
    backfill_id = dagster.backfill(days, run_config)
    runs = dagster.wait([{"key": "dagster/backfill", "value": backfill_id}], len(days))
    statuses = ", ".join(sorted({run["status"] for run in runs}))
    print(f"  backfill {backfill_id}: {len(runs)} runs, {statuses}", flush=True)
    return time.monotonic() - started


@contextlib.contextmanager
def dagster_dev(port: int) -> Iterator[Dagster]:
    """A real `dagster dev` (webserver and daemon) with a fresh instance holding the
    project's dagster.yaml, and a fresh data directory; stopped, and both removed, after."""
    work = Path(tempfile.mkdtemp(prefix="backfill-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATA_PIPELINE_DATA_DIR": str(work / "data"),
    }
    migrate = [DAGSTER, "instance", "migrate"]
    subprocess.run(migrate, env=environment, check=True, stdout=subprocess.DEVNULL)
    command = [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with open(work / "dagster_dev.log", "w") as log:
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
            yield dagster
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--count", type=int, default=400_000, help="lines generated per day")
    parser.add_argument("--port", type=int, default=3333)
    parser.add_argument(
        "--mode",
        default="parallel",
        choices=["auto", "serial", "parallel"],
        help="the pool's mode (default parallel: every pooled step starts its pool, so the "
        "budget across runs is what is measured; auto runs the default size serially)",
    )
    args = parser.parse_args()
    budget = cpu_plan()
    # Days counted back from yesterday: a warm-up day, the single runs' days, the backfill's.
    yesterday = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)
    days = [str(yesterday - datetime.timedelta(days=back)) for back in range(2 * args.days + 1)]
    warm_up, one_by_one, backfilled = days[0], days[1 : args.days + 1], days[args.days + 1 :]
    run_config = {
        "ops": {"numbers_file": {"config": {"count": args.count}}},
        "resources": {"process_pool": {"config": {"mode": args.mode}}},
    }
    with dagster_dev(args.port) as dagster:
        print(f"{budget}\n", flush=True)
        # The pool's costs are measured once per data directory: in neither timing.
        one_after_another(dagster, [warm_up], run_config)
        with BusyWorkers() as sequential_busy:
            sequential_seconds = one_after_another(dagster, one_by_one, run_config)
        with BusyWorkers() as backfill_busy:
            backfill_seconds = as_one_backfill(dagster, backfilled, run_config)
    print()
    print("| | wall s | peak busy pool workers | budget |")
    print("|---|---:|---:|---:|")
    for label, seconds, busy in (
        (f"{args.days} single-day runs, one after another", sequential_seconds, sequential_busy),
        (f"one {args.days}-day backfill", backfill_seconds, backfill_busy),
    ):
        print(f"| {label} | {seconds:.1f} | {busy.peak} | {budget.cpus} |")
    within = "within" if backfill_busy.peak <= budget.cpus else "OVER"
    print(
        f"\nBackfill / one after another: {backfill_seconds / sequential_seconds:.2f}x the wall "
        f"time; {len(backfill_busy.samples)} samples, peak {backfill_busy.peak} busy workers "
        f"against a budget of {budget.cpus} CPUs ({within} the budget)."
    )


if __name__ == "__main__":
    main()
