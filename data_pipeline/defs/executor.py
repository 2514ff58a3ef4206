"""Dagster's multiprocess executor, guarded: in the run's own process, before any step
starts, it checks the run's config and takes the writer lock of each day the run writes."""

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import pydantic

from data_pipeline.defs.day_files import DAY_WRITERS
from data_pipeline.defs.partitions import committed_and_untouched, days_of_run, described_days
from data_pipeline.defs.resources.data_directory import data_directory_for_run
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.output_set import ManifestError, current_set
from data_pipeline.numbers.writer_lock import DirectoryBusyError, exclusive_writer


class RunRefusedError(Exception):
    """The run cannot start as configured, or one of its days is being written by another
    run."""


class GuardedExecutor(dg.Executor):
    """Runs the plan on ``inner`` (the multiprocess executor) once the run's config holds
    and the writer lock of each of its days (one, or a backfill's range) is this run's.

    The config is checked for every value this project validates (ranges, installed
    kernels, a usable data directory), so a bad value fails the run in one sentence instead
    of a resource's stack trace inside a step. The lock is taken for the whole run, so a
    second run of the same day is refused even between the first one's steps; it is an
    ``fcntl.flock``, released by the kernel when this process dies. A range's locks are
    all taken, in date order, before any step starts, or the run is refused naming the day
    another run holds."""

    def __init__(self, inner: dg.Executor, config_models: Mapping[str, type[pydantic.BaseModel]]):
        self._inner, self._config_models = inner, config_models

    @property
    def inner(self) -> dg.Executor:
        return self._inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        run_config = plan_context.run_config or {}
        steps = set(execution_plan.step_keys_to_execute)
        problems = run_config_problems(run_config, self._config_models, steps)
        try:
            if problems:
                raise RunRefusedError("; ".join(problems))
            with _day_locks(plan_context.dagster_run, run_config, steps):
                yield from self._inner.execute(plan_context, execution_plan)
        except dg.DagsterExecutionInterruptedError:
            # Dagster's own RUN_FAILURE follows; this line says what it means for the day.
            plan_context.log.error(_interrupted(plan_context.dagster_run, run_config))
            raise
        except RunRefusedError as refusal:
            # The first line of the run's log that a reader sees, above the stack trace; the
            # same sentence is the description of the run's failure.
            sentence = f"the run did not start: {refusal}"
            plan_context.log.error(sentence)
            raise dg.Failure(sentence, allow_retries=False) from None


def run_config_problems(
    run_config: dict[str, Any],
    config_models: Mapping[str, type[pydantic.BaseModel]],
    steps: set[str],
) -> list[str]:
    """A sentence for each value of the run's config that this project's code would refuse
    (field, value, what is allowed), for the resources and the ops of ``steps``."""
    problems = []
    resources = run_config.get("resources", {})
    pool_config = resources.get("process_pool", {}).get("config", {})
    problems += _problems(ProcessPoolResource, pool_config, "resources.process_pool.config")
    try:
        data_directory = data_directory_for_run(run_config)
    except pydantic.ValidationError as error:
        problems += _described(error, {}, "resources.data_directory.config")
    else:
        if steps & DAY_WRITERS:
            try:
                data_directory.check_writable()
            except dg.Failure as failure:
                problems.append(failure.description)
    for name, model in config_models.items():
        if name in steps:
            given = run_config.get("ops", {}).get(name, {}).get("config", {})
            problems += _problems(model, given, f"ops.{name}.config")
    return problems


def _problems(model: type[pydantic.BaseModel], given: dict[str, Any], where: str) -> list[str]:
    try:
        model(**given)
    except pydantic.ValidationError as error:
        return _described(error, given, where)
    return []


def _described(error: pydantic.ValidationError, given: dict[str, Any], where: str) -> list[str]:
    sentences = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if field:
            value = given.get(problem["loc"][0], problem.get("input"))
            sentences.append(f"{where}.{field} = {value!r}: {message}")
        else:
            sentences.append(f"{where}: {message}")
    return sentences


def _interrupted(run: dg.DagsterRun, run_config: dict[str, Any]) -> str:
    sentence = "the run was interrupted (Ctrl-C, a termination signal, or Terminate in the UI)"
    days = days_of_run(run.tags)
    if not days:
        return f"{sentence}: run it again to finish its work"
    try:
        data_directory = data_directory_for_run(run_config)
        sets = {day: current_set(data_directory.directory(day)) for day in days}
    except (OSError, ManifestError, dg.Failure):
        return f"{sentence}: run it again to finish {described_days(days)}"
    committed = [day for day in days if sets[day].run_id == run.run_id]
    if len(days) > 1:
        untouched = [day for day in days if day not in committed]
        return (
            f"{sentence}: {committed_and_untouched(committed, untouched)}. Run the range again "
            "to finish the rest"
        )
    day, current = days[0], sets[days[0]]
    if current.run_id is None:
        return f"{sentence} and committed nothing: {day} has no set yet; run it again"
    if committed:
        return f"{sentence} after it committed {day}'s set; run it again to finish the rest"
    return (
        f"{sentence} and committed nothing: {day}'s current set is still {current.describe()}; "
        "run it again to replace it"
    )


@contextlib.contextmanager
def _day_locks(run: dg.DagsterRun, run_config: dict[str, Any], steps: set[str]) -> Iterator[None]:
    """The writer lock of every day of the run (in date order), if any of its steps writes
    the days' files; refused, naming the day, if another run holds one."""
    try:
        days = days_of_run(run.tags)
    except ValueError as error:
        raise RunRefusedError(str(error)) from None
    if not days or not steps & DAY_WRITERS:
        yield
        return
    data_directory = data_directory_for_run(run_config)
    try:
        with contextlib.ExitStack() as locks:
            for day in days:
                locks.enter_context(exclusive_writer(data_directory.directory(day), run.run_id))
            yield
    except DirectoryBusyError as error:  # only ever raised on entry
        raise RunRefusedError(str(error)) from None


def guarded_multiprocess_executor(config_models: Mapping[str, type[pydantic.BaseModel]]):
    """An executor definition like ``dg.multiprocess_executor`` (same config), guarded."""

    @dg.executor(
        name="guarded_multiprocess",
        config_schema=dg.multiprocess_executor.config_schema,
        requirements=dg.multiple_process_executor_requirements(),
    )
    def guarded_multiprocess(init_context: dg.InitExecutorContext) -> dg.Executor:
        inner = dg.multiprocess_executor.executor_creation_fn(init_context)
        return GuardedExecutor(inner, config_models)

    return guarded_multiprocess
