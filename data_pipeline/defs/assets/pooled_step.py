"""What the pooled numbers steps share: their partitions, concurrency pool and retry policy,
the kernel they log, and how they say where the work ran."""

import dagster as dg

from data_pipeline.defs.partitions import daily_partitions
from data_pipeline.defs.resources.process_pool import CPU_POOL, ProcessPoolResource
from data_pipeline.numbers.kernel_choice import Kernel, start_seconds
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


def chosen_kernel(context: dg.AssetExecutionContext, process_pool: ProcessPoolResource) -> Kernel:
    """The step's kernel, and one log line saying which and why."""
    kernel = process_pool.chosen_kernel()
    how = (
        "the fastest installed kernel that passed its self-check"
        if process_pool.kernel == "auto"
        else "as configured"
    )
    started = start_seconds(kernel.name)
    if started:
        how += f"; import, compile or cache load and self-check took {started:.2f} s"
    context.log.info(f"kernel: {kernel.name} ({how})")
    return kernel


def kernel_metadata(kernel: Kernel) -> dict[str, object]:
    """The kernel and its start-up, as metadata."""
    # Start-up apart from compute: the compile (or numba cache load) is paid once per step
    # process here, and once more by the fork server, inside pool_start_seconds.
    return {"kernel": kernel.name, "kernel_start_seconds": start_seconds(kernel.name)}


def pool_sentence(pool: PoolStats) -> str:
    """Where the work ran, for the step's closing log line."""
    if pool.workers == 1:
        return "serially in the step process"
    kind = "threads" if pool.start_method == "thread" else f"{pool.start_method} workers"
    return f"on {pool.workers} {kind} ({pool.startup_seconds:.2f} s to start)"
