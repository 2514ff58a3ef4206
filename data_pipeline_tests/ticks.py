"""The daily schedule evaluated for one morning, as the daemon would at that tick."""

import contextlib
import datetime

import dagster as dg

from data_pipeline.definitions import defs


def daily_schedule_tick(
    morning: datetime.datetime | str, instance: dg.DagsterInstance | None = None
):
    """What numbers_daily_schedule returns at ``morning`` (a throwaway instance if none)."""
    when = datetime.datetime.fromisoformat(morning) if isinstance(morning, str) else morning
    schedule = defs.resolve_schedule_def("numbers_daily_schedule")
    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.instance_for_test())
        context = stack.enter_context(
            dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=when,
                repository_def=defs.get_repository_def(),
            )
        )
        return schedule.evaluate_tick(context)
