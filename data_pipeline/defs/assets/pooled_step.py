"""What the pooled numbers steps share: their partitions, concurrency pool and retry policy,
the kernel they log, and how they say where the work ran."""

from dataclasses import dataclass, field

import dagster as dg

from data_pipeline.defs.partitions import daily_partitions
from data_pipeline.defs.resources.process_pool import CPU_POOL, ProcessPoolResource
from data_pipeline.numbers.kernel_choice import KERNEL_NAMES, Kernel, start_seconds
from data_pipeline.parallel.insight import rounded
from data_pipeline.parallel.stats import PoolStats

# A worker death that survived the in-pool restart may still be a passing accident (memory
# pressure from elsewhere): one more try of the step. Errors that would repeat are raised
# as dg.Failure(allow_retries=False) instead.
POOLED_STEP_RETRY = dg.RetryPolicy(max_retries=1, delay=2)
# The arguments of ``@dg.asset`` every pooled step shares: one day, a slot of the CPU
# concurrency pool while it runs, and the retry above.
POOLED_DAY_STEP: dict[str, object] = {
    "retry_policy": POOLED_STEP_RETRY,
    "partitions_def": daily_partitions,
    "pool": CPU_POOL,
}


@dataclass(frozen=True)
class StepKernel:
    """The step's kernel and what starting it cost this step."""

    kernel: Kernel
    # Import, compile or cache load and self-check paid while this step chose its kernel: 0
    # when its process had started the kernel before (another step of an in-process run).
    start_seconds: float


def pooled_step_start(
    context: dg.AssetExecutionContext, process_pool: ProcessPoolResource
) -> StepKernel:
    """What every pooled step does first: log its CPU plan, start the fork server its pool
    would use (it loads the kernel on another CPU meanwhile), then choose its kernel."""
    context.log.info(process_pool.describe_plan())
    process_pool.start_fork_server_early()
    return chosen_kernel(context, process_pool)


def chosen_kernel(
    context: dg.AssetExecutionContext, process_pool: ProcessPoolResource
) -> StepKernel:
    """The step's kernel, and one log line saying which and why."""
    before = {name: start_seconds(name) for name in KERNEL_NAMES}
    kernel = process_pool.chosen_kernel()
    # Every kernel self-checked by this call (auto may try one that fails, then fall back).
    paid = sum(start_seconds(name) - before[name] for name in KERNEL_NAMES)
    how = (
        "the fastest installed kernel that passed its self-check"
        if process_pool.kernel == "auto"
        else "as configured"
    )
    started = start_seconds(kernel.name)
    if started:
        how += f"; import, compile or cache load and self-check took {started:.2f} s"
    context.log.info(f"kernel: {kernel.name} ({how})")
    return StepKernel(kernel, paid)


def kernel_metadata(chosen: StepKernel) -> dict[str, object]:
    """The kernel and its start-up in this step, as metadata."""
    # Start-up apart from compute: the compile (or numba cache load) is paid once per step
    # process here, and once more by the fork server, inside pool_start_seconds.
    return {"kernel": chosen.kernel.name, "kernel_start_seconds": chosen.start_seconds}


# The multiprocess executor logs STEP_WORKER_STARTING just before it starts a step's process;
# the step logs STEP_START once that process has imported Python, Dagster and the definitions.
_LAUNCH_EVENTS = {dg.DagsterEventType.STEP_WORKER_STARTING, dg.DagsterEventType.STEP_START}


def step_launch_seconds(context: dg.AssetExecutionContext) -> float:
    """What launching this step's process cost: from the run's STEP_WORKER_STARTING event for
    the step to its STEP_START (the latest attempt's, after a retry). 0 when no process was
    launched for the step (the in-process executor of ``materialize``)."""
    # The run's own events (public, the same clock on every platform) rather than the process's
    # start time from /proc: they also hold the executor's side of the launch (spawning).
    step = context.op_def.name
    records = context.instance.get_records_for_run(context.run.run_id, of_type=_LAUNCH_EVENTS)
    launched, started = None, None
    for record in records.records:
        entry = record.event_log_entry
        if entry.step_key != step:
            continue
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
            launched, started = entry.timestamp, None
        else:
            started = entry.timestamp
    if launched is None or started is None:
        return 0.0
    return max(0.0, started - launched)


def step_cost_metadata(
    context: dg.AssetExecutionContext, kernel: StepKernel, pool: PoolStats, seconds: float
) -> dict[str, object]:
    """The kernel, and the step's fixed costs apart from its work, as plain numbers. Fixed: the
    step's launch (read from the run's events once the work is done),
    its kernel start and its pool's start and shutdown (``pool_start_seconds`` and
    ``shutdown_seconds`` of the pool's metadata). Work: the stage's ``seconds`` less the pool's
    start and shutdown (paid inside them)."""
    launch_seconds = step_launch_seconds(context)
    pool_fixed = pool.startup_seconds + pool.shutdown_seconds
    # The share from the figures as shown, so the three entries agree with each other.
    fixed, work = rounded(
        {
            "fixed": launch_seconds + kernel.start_seconds + pool_fixed,
            "work": max(0.0, seconds - pool_fixed),
        }
    ).values()
    return kernel_metadata(kernel) | rounded(
        {
            "step_launch_seconds": launch_seconds,
            "fixed_cost_seconds": fixed,
            "work_seconds": work,
            "fixed_cost_share": fixed / (fixed + work) if fixed + work > 0 else 0.0,
        }
    )


def pool_sentence(pool: PoolStats) -> str:
    """Where the work ran, for the step's closing log line."""
    if pool.workers == 1:
        return "serially in the step process"
    kind = "threads" if pool.start_method == "thread" else f"{pool.start_method} workers"
    return f"on {pool.workers} {kind} ({pool.startup_seconds:.2f} s to start)"


@dataclass
class DayOutcome:
    """What a writing step made of one of its days: the day's metadata and its checks."""

    day: str
    metadata: dict[str, object]
    checks: list[dg.AssetCheckResult] = field(default_factory=list)


def step_result(
    context: dg.AssetExecutionContext,
    outcomes: list[DayOutcome],
    step_metadata: dict[str, object],
) -> dg.MaterializeResult:
    """The step's result. One day: its metadata and checks, as any asset returns them. A
    range (a backfill's run of several days): each day its own materialization, with its own
    metadata and the step's, and its own check evaluations; the result then carries one
    evaluation of each check for the whole range, passed only if every day's passed (a
    blocking check that failed on any day stops the steps downstream for the range)."""
    if len(outcomes) == 1:
        (outcome,) = outcomes
        return dg.MaterializeResult(
            check_results=outcome.checks, metadata={**outcome.metadata, **step_metadata}
        )
    for outcome in outcomes:
        metadata = {**outcome.metadata, **step_metadata, "days_in_run": len(outcomes)}
        context.add_asset_metadata(metadata, partition_key=outcome.day)
        for check in outcome.checks:
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=check.asset_key,
                    check_name=check.check_name,
                    passed=check.passed,
                    metadata=check.metadata,
                    description=check.description,
                    blocking=True,
                    partition=outcome.day,
                )
            )
    return dg.MaterializeResult(check_results=_range_checks(outcomes))


def _range_checks(outcomes: list[DayOutcome]) -> list[dg.AssetCheckResult]:
    by_name: dict[str, list[tuple[str, dg.AssetCheckResult]]] = {}
    for outcome in outcomes:
        for check in outcome.checks:
            by_name.setdefault(check.check_name, []).append((outcome.day, check))
    results = []
    for name, checks in by_name.items():
        failed = [day for day, check in checks if not check.passed]
        description = (
            f"failed on {len(failed)} of {len(checks)} days: {', '.join(failed)}"
            if failed
            else f"passed on each of the run's {len(checks)} days"
        )
        results.append(
            dg.AssetCheckResult(
                asset_key=checks[0][1].asset_key,
                check_name=name,
                passed=not failed,
                description=description,
                metadata={"days": len(checks), "days_failed": len(failed)},
            )
        )
    return results
