"""What the tests check of a pooled step's fixed costs: the metadata entries, read against the
step's wall time taken from the run's own events."""

import dagster as dg
import pytest

# The plain numbers each pooled asset gives for its fixed costs and its work.
FIXED_COST_KEYS = (
    "step_launch_seconds",
    "kernel_start_seconds",
    "pool_start_seconds",
    "shutdown_seconds",
    "fixed_cost_seconds",
    "work_seconds",
    "fixed_cost_share",
)
_STEP_EVENTS = {
    dg.DagsterEventType.STEP_WORKER_STARTING,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
}


def step_wall_seconds(instance: dg.DagsterInstance, run_id: str, step: str) -> float:
    """From the step's launch (STEP_WORKER_STARTING, or STEP_START in-process) to its
    STEP_SUCCESS, by the run's events."""
    times: dict[dg.DagsterEventType, float] = {}
    for record in instance.get_records_for_run(run_id, of_type=_STEP_EVENTS).records:
        entry = record.event_log_entry
        if entry.step_key == step:
            times.setdefault(entry.dagster_event.event_type, entry.timestamp)
    started = times.get(dg.DagsterEventType.STEP_WORKER_STARTING)
    if started is None:
        started = times[dg.DagsterEventType.STEP_START]
    return times[dg.DagsterEventType.STEP_SUCCESS] - started


def assert_fixed_costs_add_up(metadata: dict, wall_seconds: float) -> None:
    """Every entry a non-negative float; fixed = launch + kernel + pool start and shutdown;
    fixed + work within the step's wall time; the share in [0, 1] and as computed."""
    for key in FIXED_COST_KEYS:
        assert isinstance(metadata[key], float) and metadata[key] >= 0, key
    fixed, work = metadata["fixed_cost_seconds"], metadata["work_seconds"]
    parts = ("step_launch_seconds", "kernel_start_seconds", "pool_start_seconds")
    assert fixed == pytest.approx(
        sum(metadata[key] for key in (*parts, "shutdown_seconds")), abs=1e-3
    )
    # Rounded to 4 decimals each; the events' timestamps are exact to the microsecond.
    assert fixed + work <= wall_seconds + 1e-3
    assert 0 <= metadata["fixed_cost_share"] <= 1
    assert metadata["fixed_cost_share"] == pytest.approx(fixed / (fixed + work), abs=1e-3)
