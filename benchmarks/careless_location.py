"""A single-file code location for careless_map.py: one asset that runs one careless case
(a function of careless_tasks.py on our pool's map) and one job per case.

    dagster job execute -f benchmarks/careless_location.py -j hang_with_timeout
"""

import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A code location loaded with -f is not a package: its task module is found next to it.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import careless_tasks  # noqa: E402
import dagster as dg  # noqa: E402
from pydantic import Field  # noqa: E402

from data_pipeline.api import ProcessPoolResource  # noqa: E402

# The line the step logs when a map raised, and the peak memory lines of the lazy cases.
MAP_RAISED = "map raised at"
PEAK_RSS = "peak RSS of the step process"
# The pool every case runs on (a case may add fields: its job's run config sets them all).
POOL: dict[str, Any] = {"mode": "parallel", "workers": 2}


@dataclass(frozen=True)
class Case:
    description: str
    function: Callable[[int], Any]
    tasks: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    pool: dict[str, Any] = field(default_factory=dict)  # resource fields beyond the defaults
    lazy: bool = False  # the tasks come from a generator, and the step's peak RSS is logged


CASES = {
    "noop": Case("8 trivial tasks, the baseline", careless_tasks.double),
    "hang_with_timeout": Case(
        "a task that never returns, task_timeout=3",
        careless_tasks.hang,
        options={"task_timeout": 3},
    ),
    "hang_with_timeout_and_retry": Case(
        "a task that never returns, task_timeout=3, task_retries=1",
        careless_tasks.hang,
        options={"task_timeout": 3, "task_retries": 1},
    ),
    "unrebuildable_exception": Case(
        "raises an exception pickle cannot rebuild", careless_tasks.raise_team_error
    ),
    "unpicklable_result": Case("returns a threading.Lock", careless_tasks.return_lock),
    "sys_exit": Case("calls sys.exit(3)", careless_tasks.call_sys_exit),
    "os_exit": Case("calls os._exit(3)", careless_tasks.call_os_exit),
    "memory_over_limit": Case(
        "holds 400 MiB, worker_memory_limit_mb=200",
        careless_tasks.hold_memory,
        pool={"worker_memory_limit_mb": 200},
    ),
    "lazy_100k": Case(
        "100,000 trivial tasks from a generator", careless_tasks.double, 100_000, lazy=True
    ),
    "lazy_1m": Case(
        "1,000,000 trivial tasks from a generator", careless_tasks.double, 1_000_000, lazy=True
    ),
    "lazy_10m": Case(
        "10,000,000 trivial tasks from a generator", careless_tasks.double, 10_000_000, lazy=True
    ),
}


class CarelessCaseConfig(dg.Config):
    case: str = Field(default="noop", description="The case to run: " + ", ".join(CASES))


def peak_rss_kib() -> int:
    """The step process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_kib(field_name: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since it was last reset) of this process, KiB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field_name}:", 1)[1].split()[0])


def reset_memory_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux 4.0+), so the map's own peak can be read
    after it: ru_maxrss also holds what loading the definitions once took."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dg.asset(group_name="benchmarks", kinds={"python"})
def careless_map_case(
    context: dg.AssetExecutionContext,
    config: CarelessCaseConfig,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """One careless case: a team's function on the pool's map, as a team would call it."""
    case = CASES[config.case]
    tasks: Iterable[int] = (task for task in range(case.tasks)) if case.lazy else range(case.tasks)
    peak_before = peak_rss_kib()
    reset = reset_memory_peak()
    rss_before = memory_kib("VmRSS")
    count = total = 0
    try:
        for result in process_pool.map(context, case.function, tasks, **case.options):
            count += 1
            total += result
    except BaseException:
        # When the step learnt of the failure, for the deadline's bound (same clock as the task).
        context.log.info(f"{MAP_RAISED} {time.time():.3f}")
        raise
    expected = case.tasks * (case.tasks - 1)
    if (count, total) != (case.tasks, expected):
        raise dg.Failure(f"{count} results summing to {total}, expected {case.tasks}, {expected}")
    peak, map_peak = peak_rss_kib(), memory_kib("VmHWM") if reset else -1
    if case.lazy:
        context.log.info(
            f"{PEAK_RSS}: {peak} KiB (before the map: {peak_before} KiB); during the map: "
            f"{map_peak} KiB at most, from {rss_before} KiB at its start"
        )
    return dg.MaterializeResult(
        metadata={
            "tasks": case.tasks,
            "peak_rss_kib": peak,
            "peak_rss_kib_before_map": peak_before,
            "map_peak_rss_kib": map_peak,
            "rss_kib_at_map_start": rss_before,
        }
    )


def case_job(name: str, case: Case):
    run_config: dict[str, Any] = {"ops": {"careless_map_case": {"config": {"case": name}}}}
    if case.pool:
        run_config["resources"] = {"process_pool": {"config": {**POOL, **case.pool}}}
    return dg.define_asset_job(
        name, selection=[careless_map_case], config=run_config, description=case.description
    )


defs = dg.Definitions(
    assets=[careless_map_case],
    jobs=[case_job(name, case) for name, case in CASES.items()],
    resources={"process_pool": ProcessPoolResource(**POOL)},
    executor=dg.multiprocess_executor.configured({"max_concurrent": 1}),
)
