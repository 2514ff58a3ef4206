"""The functions the strategies' pool processes import by name, and the checks of the
strategies' outputs against serial Python. No Dagster here: pool workers import this module."""

from typing import Any

import pyarrow as pa

from data_pipeline.numbers.kernels.columns import (
    ARROW_TYPES,
)
from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    transform_values,
)

# Worker functions (top-level: pool processes import them by name).


def transform_one(value: int) -> tuple:
    """The reference transform of one value, as a row (the unit of the per-item strategies)."""
    columns = transform_values((value,))
    return tuple(columns[name][0] for name in TRANSFORM_COLUMNS)


def naive_queue_worker(inputs: Any, outputs: Any) -> None:
    """The classic tutorial's worker: take one (index, value), put back one (index, row)."""
    while (item := inputs.get()) is not None:
        index, value = item
        outputs.put((index, transform_one(value)))


def ready() -> None:
    """A task that does nothing: its answer means a worker is up."""


# Checks of the outputs.


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
