"""Careless use of our pool's ``map`` by a team's function, through the real command line.

    .venv/bin/python benchmarks/careless_map.py [--cases NAME ...] [--quick] [--logs DIR]

Each case of ``careless_location.py`` (a task that hangs past ``task_timeout``, with and
without a retry; an exception pickle cannot rebuild; an unpicklable result; ``sys.exit(3)``;
``os._exit(3)``; a worker over ``worker_memory_limit_mb``; lazy generators of 100,000 and
10,000,000 tasks) runs as ``dagster job execute -f benchmarks/careless_location.py -j CASE``
in a fresh temporary DAGSTER_HOME. The table gives the exit code, the first ERROR line of
the run's output after its event header (where that only says the step failed, the error
line under it), the command's seconds, and how many of its
processes are still alive 2 s after it exits (found by a marker in their environment). Below
it: the step's peak RSS in the lazy cases (10M within 1.2x of 100k), and how soon a task past
its deadline fails the step (within the deadline plus 5 s).
"""

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dagster as dg  # noqa: E402
from careless_location import CASES, MAP_RAISED, PEAK_RSS  # noqa: E402

DAGSTER = str(Path(sys.executable).with_name("dagster"))
MARKER = "CARELESS_MAP_RUN"
LEFTOVER_WAIT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 1800
FIRST_LINE_CHARACTERS = 160
# The bounds checked below the table.
LAZY_RSS_RATIO = 1.2
DEADLINE_SLACK_SECONDS = 5.0

# A log line: "2026-11-24 10:00:00 +0000 - dagster - ERROR - job - run id - [pid - ]
# [step - ][EVENT_TYPE - ]message".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - \S+ - (?P<level>[A-Z]+) - ")
EVENT_TYPE = re.compile(r"^[A-Z][A-Z_]+$")
GENERIC_FAILURE = re.compile(r"^Execution of (step|run for) .* failed\.")
QUALIFIED_NAME = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z]\w*: )")
STEP = "careless_map_case"
# How Dagster wraps an error that is not a dagster.Failure, and an exception's first line.
WRAPPER = "_core.errors.DagsterExecutionStepExecutionError"
EXCEPTION_LINE = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)*[A-Z]\w*: ")
TASK_STARTS = re.compile(r"stdout: task \d+ starts hanging at (?P<at>[\d.]+)")
RAISED = re.compile(re.escape(MAP_RAISED) + r" (?P<at>[\d.]+)")
RSS = re.compile(
    re.escape(PEAK_RSS) + r": (?P<peak>\d+) KiB \(before the map: (?P<before>\d+) KiB\); "
    r"during the map: (?P<map_peak>-?\d+) KiB at most, from (?P<start>\d+) KiB"
)


@dataclass
class Outcome:
    case: str  # the job's name, or the baseline's second run
    job: str
    exit_code: int
    seconds: float
    log: str
    leftovers: list[str] = field(default_factory=list)
    step_failure_stored: bool = False  # the run's stored events hold a STEP_FAILURE

    def step_failure_lost(self) -> bool:
        """Stored, but missing from the command's output (the step's console lines reach it
        through a ``tail -F`` of its captured output, which Dagster stops without waiting)."""
        return self.step_failure_stored and " - STEP_FAILURE - " not in self.log

    def first_line(self) -> str:
        return first_error(self.log)

    def cause_below(self) -> tuple[int, str] | None:
        """Where the first line is Dagster's wrapper of an error: how many lines below it the
        wrapped error's own line comes, and that line."""
        if not self.first_line().startswith(WRAPPER.rsplit(".", 1)[1]):
            return None
        lines = self.log.splitlines()
        start = next(n for n, line in enumerate(lines) if line.startswith(f"dagster.{WRAPPER}"))
        for number in range(start + 1, len(lines)):
            line = lines[number].strip()
            if EXCEPTION_LINE.match(line) and WRAPPER not in line:  # the wrapped error
                return number - start, QUALIFIED_NAME.sub("", line)
        return None


def event_message(line: str) -> str:
    """A log line without its header (time, logger, level, job, run id, pid, step, event)."""
    parts = line.split(" - ")[5:]
    if parts and parts[0].isdigit():  # the process id of engine and step events
        parts = parts[1:]
    if parts and parts[0] == STEP:
        parts = parts[1:]
    if len(parts) > 1 and EVENT_TYPE.match(parts[0]):
        parts = parts[1:]
    return " - ".join(parts)


def first_error(log: str) -> str:
    """The first ERROR line of the run's output without its header. Where that line only says
    that a step or the run failed, the error line that follows it instead (its exception's
    module path dropped): what a user reads first."""
    lines = log.splitlines()
    for number, line in enumerate(lines):
        match = LOG_LINE.match(line)
        if match and match["level"] == "ERROR":
            message = event_message(line).strip()
            if GENERIC_FAILURE.match(message):
                for following in lines[number + 1 :]:
                    if LOG_LINE.match(following):
                        break
                    if following.strip():
                        message = QUALIFIED_NAME.sub("", following.strip())
                        break
            return shorten(message)
    if "Traceback (most recent call last)" in log:  # the command itself failed
        last = [line for line in lines if line.strip()][-1]
        return shorten(f"(no ERROR event; the command's traceback ends) {last.strip()}")
    return "(no ERROR line)"


def shorten(text: str) -> str:
    text = text.replace("|", "\\|")
    if len(text) <= FIRST_LINE_CHARACTERS:
        return text
    return text[: FIRST_LINE_CHARACTERS - 3] + "..."


def marked_processes(marker: str) -> list[tuple[int, str]]:
    """Live processes whose environment holds ``marker`` (pid, command line)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours to read
            continue
        found.append((int(entry.name), f"{command[:100]} (state {state})"))
    return found


def step_failure_stored(home: Path) -> bool:
    """Whether the last run stored in DAGSTER_HOME ``home`` has a STEP_FAILURE event."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return False
            failures = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            return bool(failures)
    finally:
        if previous is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = previous


def run_case(name: str, work: Path, job_name: str | None = None) -> Outcome:
    """``dagster job execute`` of the case's job (``name``, or ``job_name`` if given) in a fresh
    DAGSTER_HOME, in its own session."""
    job_name = job_name or name
    home = work / name / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    token = uuid.uuid4().hex
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DATA_PIPELINE_")
    }
    environment.update(
        {
            "DAGSTER_HOME": str(home),
            "DATA_PIPELINE_COSTS_DIR": str(work / "costs"),
            MARKER: token,
        }
    )
    command = [DAGSTER, "job", "execute", "-f", str(HERE / "careless_location.py"), "-j", job_name]
    log_path = work / f"{name}.log"
    started = time.perf_counter()
    with open(log_path, "w") as output:
        job = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=work / name,
            env=environment,
            start_new_session=True,
        )
        try:
            code = job.wait(timeout=COMMAND_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            code = job.wait()
            output.write(f"\n(killed after {COMMAND_TIMEOUT_SECONDS} s)\n")
    seconds = time.perf_counter() - started
    time.sleep(LEFTOVER_WAIT_SECONDS)
    leftovers = marked_processes(f"{MARKER}={token}")
    for pid, _ in leftovers:  # ours (they carry the marker): stop them for the next case
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    outcome = Outcome(
        name,
        job_name,
        code,
        seconds,
        log_path.read_text(),
        [command for _, command in leftovers],
        step_failure_stored(home),
    )
    print(
        f"{name}: exit {code}, {seconds:.1f} s, {len(leftovers)} left; {outcome.first_line()}",
        file=sys.stderr,
        flush=True,
    )
    return outcome


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| case | exit code | first line | seconds | processes left |",
        "|---|---:|---|---:|---:|",
    ]
    rows += [
        f"| {outcome.case}: {CASES[outcome.job].description} | {outcome.exit_code} | "
        f"{outcome.first_line()} | {outcome.seconds:.1f} | {len(outcome.leftovers)} |"
        for outcome in outcomes
    ]
    return "\n".join(rows)


def met(condition: bool) -> str:
    return "MET" if condition else "MISSED"


def lazy_report(outcomes: dict[str, Outcome], small: str, large: str) -> list[str]:
    memory = {}
    for name in (small, large):
        match = RSS.search(outcomes[name].log) if name in outcomes else None
        if match is None:
            return [f"Lazy cases: no peak RSS line from {name} (did it run and succeed?)"]
        memory[name] = {key: int(value) / 1024 for key, value in match.groupdict().items()}
    lines = [
        "| case | tasks | peak RSS of the step, ru_maxrss (MiB) | ru_maxrss before the map | "
        "peak RSS during the map (VmHWM reset at its start) | RSS at the map's start | "
        "seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, kib in memory.items():
        lines.append(
            f"| {name} | {CASES[name].tasks:,} | {kib['peak']:.1f} | {kib['before']:.1f} | "
            f"{kib['map_peak']:.1f} | {kib['start']:.1f} | {outcomes[name].seconds:.1f} |"
        )
    lines.append("")
    for key, what in [("peak", "ru_maxrss"), ("map_peak", "peak during the map")]:
        if memory[small][key] <= 0:
            lines.append(f"{what}: not measured (cannot reset the peak here)")
            continue
        ratio = memory[large][key] / memory[small][key]
        lines.append(
            f"{what}, {large} / {small}: {ratio:.3f} (goal: within {LAZY_RSS_RATIO}x): "
            f"{met(ratio <= LAZY_RSS_RATIO)}"
        )
    return lines


def deadline_report(outcomes: dict[str, Outcome]) -> list[str]:
    baselines = [o.seconds for o in outcomes.values() if o.job == "noop" and o.exit_code == 0]
    baseline = min(baselines, default=None)
    lines = [
        "| case | deadline (s) | attempts seen | each attempt's start to its end (s) | bound | "
        "verdict | command seconds less the no-op's | bound (attempts x deadline + 5) |",
        "|---|---:|---:|---|---|---|---:|---|",
    ]
    for name, outcome in outcomes.items():
        options = CASES[outcome.job].options
        if "task_timeout" not in options:
            continue
        deadline, retries = options["task_timeout"], options.get("task_retries", 0)
        starts = [float(m["at"]) for m in TASK_STARTS.finditer(outcome.log)]
        raised = RAISED.search(outcome.log)
        ends = [*starts[1:], float(raised["at"])] if raised and starts else []
        spans = [end - start for start, end in zip(starts, ends, strict=True)]
        extra = "n/a" if baseline is None else f"{outcome.seconds - baseline:.1f}"
        bound = deadline + DEADLINE_SLACK_SECONDS
        whole_bound = (retries + 1) * deadline + DEADLINE_SLACK_SECONDS
        whole = "" if baseline is None else f" {met(outcome.seconds - baseline <= whole_bound)}"
        within = bool(spans) and max(spans) <= bound and len(starts) == retries + 1
        shown = ", ".join(f"{span:.2f}" for span in spans) or "(no task start or no failure seen)"
        lines.append(
            f"| {name} | {deadline} | {len(starts)} of {retries + 1} | {shown} | "
            f"each <= {bound:g} | {met(within)} | {extra} | <= {whole_bound:g}{whole} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASES), help="a subset (the no-op baseline runs too)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the large lazy case with 1,000,000 tasks, not 10M"
    )
    parser.add_argument("--logs", type=Path, help="keep each command's output in this directory")
    args = parser.parse_args()
    large = "lazy_1m" if args.quick else "lazy_10m"
    chosen = args.cases or [name for name in CASES if name not in {"lazy_1m", "lazy_10m"}] + [large]
    # The no-op baseline first and last: the first run of the day pays cold imports.
    runs = [("noop", "noop"), *[(name, name) for name in chosen if name != "noop"]]
    runs.append(("noop_again", "noop"))
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="careless-map-") as directory:
        work = Path(directory)
        for name, job_name in runs:
            outcomes[name] = run_case(name, work, job_name)
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                (args.logs / f"{name}.log").write_text(outcomes[name].log)
    cpus = len(os.sched_getaffinity(0))
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(f"{cpus} CPUs available, load {load}; pool: mode parallel, 2 workers")
    print(f"each: dagster job execute -f {HERE.name}/careless_location.py -j CASE\n")
    print(table(list(outcomes.values())))
    for outcome in outcomes.values():
        for leftover in outcome.leftovers:
            print(f"\nleft by {outcome.case}: {leftover}")
        below = outcome.cause_below()
        if below is not None:
            print(
                f"\n{outcome.case}: the first line is Dagster's wrapper of an error that is not a "
                f"dagster.Failure; the error's own line comes {below[0]} lines below it: "
                f"{shorten(below[1])}"
            )
        if outcome.step_failure_lost():
            print(
                f"\n{outcome.case}: the run stored a STEP_FAILURE event that the command's output "
                "lacks (its first ERROR line is then the RUN_FAILURE's)"
            )
    lazy = [name for name in outcomes if name in CASES and CASES[name].lazy]
    if len(lazy) >= 2:
        small = min(lazy, key=lambda name: CASES[name].tasks)
        biggest = max(lazy, key=lambda name: CASES[name].tasks)
        print("\nLazy generators:\n")
        print("\n".join(lazy_report(outcomes, small, biggest)))
    deadline = deadline_report(outcomes)
    if len(deadline) > 2:
        print(
            f"\nA task past its deadline fails the step (or is retried) within the deadline "
            f"plus {DEADLINE_SLACK_SECONDS:g} s (the task's printed start to the next attempt's "
            "start or to the map raising in the step, same clock):\n"
        )
        print("\n".join(deadline))


if __name__ == "__main__":
    main()
