"""The checks of the strategies' outputs against serial Python: a strategy that crashes or
disagrees is recorded as failed, and the others still run."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data_pipeline.measure.strategies.strategy import RunSettings, Strategy, StrategyRunDetail
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.kernels.columns import ARROW_TYPES
from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS


@dataclass
class TaggedOutput:
    """A run's output with the strategy it came from; the payload is dropped once checked."""

    key: str
    items: int
    payload: Any
    error: str | None = None


@dataclass
class OutputChecks:
    """The comparer handed to the measuring core: records each strategy's first problem
    instead of raising, so one wrong strategy never stops the others."""

    compare: Callable[[Any, Any, int], str | None]
    problems: dict[str, str] = field(default_factory=dict)
    crashed: set[str] = field(default_factory=set)
    runs: Counter = field(default_factory=Counter)

    def differences(self, reference: TaggedOutput, output: TaggedOutput) -> None:
        self.runs[output.key] += 1 + (self.runs[output.key] == 0 and output.key == reference.key)
        problem = output.error
        if problem is not None:
            self.crashed.add(output.key)
        elif reference.payload is None:
            problem = f"unchecked: the reference failed ({reference.error})"
        else:
            try:
                problem = self.compare(reference.payload, output.payload, output.items)
            except Exception as error:
                problem = f"its output cannot be compared: {type(error).__name__}: {error}"
        if problem is not None:
            self.problems.setdefault(output.key, f"run {self.runs[output.key]}: {problem}")
        output.payload = None
        return None


def guarded(strategy: Strategy, work: Any, settings: RunSettings) -> Callable[[], Outcome]:
    """The strategy as the measuring core calls it; an exception becomes a failed output."""

    def run() -> Outcome:
        try:
            outcome = strategy.run(work, settings)
        except Exception as error:
            return Outcome(
                TaggedOutput(strategy.key, len(work), None, f"{type(error).__name__}: {error}"),
                StrategyRunDetail(),
            )
        return Outcome(TaggedOutput(strategy.key, len(work), outcome.output), outcome.detail)

    return run


def transform_differences(full_reference: dict[str, pa.Array] | None):
    """Compares transform outputs as Arrow arrays of the output's types: on the values serial
    Python ran on, with its output; beyond them, with ``full_reference``."""
    cache: dict[int, dict[str, pa.Array]] = {}

    def compare(reference: Any, output: Any, items: int) -> str | None:
        if id(reference) not in cache:
            cache.clear()
            cache[id(reference)] = as_arrow_columns(reference)
        expected, actual = cache[id(reference)], as_arrow_columns(output)
        for name in TRANSFORM_COLUMNS:
            if len(actual[name]) != items:
                return f"{name} has {len(actual[name]):,} values, expected {items:,}"
        common = min(items, len(expected["square"]))
        problem = _first_difference(expected, actual, common, "serial Python")
        if problem is None and items > common and full_reference is not None:
            problem = _first_difference(full_reference, actual, items, "numba in one process")
        return problem

    return compare


def as_arrow_columns(columns: Any) -> dict[str, pa.Array]:
    """Transform columns (lists, Arrow arrays or chunked arrays) as Arrow arrays of
    :data:`~data_pipeline.numbers.kernels.columns.ARROW_TYPES`; an Arrow column of another
    type is an error, not something to cast away."""
    arrays = {}
    for name in TRANSFORM_COLUMNS:
        column = columns[name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if isinstance(column, pa.Array):
            if column.type != ARROW_TYPES[name]:
                raise TypeError(f"{name} is {column.type}, expected {ARROW_TYPES[name]}")
            arrays[name] = column
        else:
            arrays[name] = pa.array(column, ARROW_TYPES[name])
    return arrays


def _first_difference(expected: dict, actual: dict, count: int, against: str) -> str | None:
    for name in TRANSFORM_COLUMNS:
        want, got = expected[name].slice(0, count), actual[name].slice(0, count)
        if not got.equals(want):
            position = next(
                index
                for index, (a, b) in enumerate(zip(want.to_pylist(), got.to_pylist(), strict=True))
                if a != b
            )
            return (
                f"{name} differs from {against} at value {position:,}: "
                f"{got[position].as_py()!r} instead of {want[position].as_py()!r}"
            )
    return None


def cleaning_differences(reference: list, output: list, items: int) -> str | None:
    if len(output) != len(reference):
        return f"{len(output)} byte ranges cleaned, expected {len(reference)}"
    for index, (want, got) in enumerate(zip(reference, output, strict=True)):
        if got != want:
            return f"byte range {index} cleaned differently"
    return None
