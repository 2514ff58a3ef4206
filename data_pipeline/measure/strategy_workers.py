"""The functions the strategies' pool processes import by name, and the checks of the
strategies' outputs against serial Python. No Dagster here: pool workers import this module."""

import contextlib
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import pyarrow as pa

from data_pipeline.numbers.kernels.columns import (
    ARROW_TYPES,
    LARGEST_ROOT_OF_AN_INT64,
    NO_COLLATZ_STEPS,
    NO_PRIME_FACTOR,
    primes_up_to,
)
from data_pipeline.numbers.kernels.numba_kernel import fill_transform
from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    TRIAL_DIVISION_LIMIT,
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


@dataclass(frozen=True)
class SharedMemoryTask:
    """Values ``[start, stop)`` of the input block to transform into the output block;
    ``start`` is a multiple of 8, so each task owns whole bytes of the validity bitmaps."""

    input_name: str
    output_name: str
    total: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.start % 8:
            raise ValueError(f"a slice must start at a multiple of 8 values, not {self.start:,}")


@dataclass(frozen=True)
class ArrowLayout:
    """The transform's columns for ``total`` values as Arrow lays them out, in one block: the
    squares as decimal128, the other numbers as int64, then four bitmaps (the validity of the
    three nullable columns, the is_prime bits). Workers fill their slices in place; the owner
    of the pool wraps the finished block as Arrow arrays, with nothing left to convert."""

    total: int

    @property
    def bitmap_bytes(self) -> int:
        return -(-self.total // 8)

    @property
    def size(self) -> int:
        return max(1, (16 + 8 * len(_INT64_COLUMNS)) * self.total + 4 * self.bitmap_bytes)

    def views(self, block: Any) -> dict[str, np.ndarray]:
        """NumPy views of the block: ``square`` as (low, high) int64 pairs, the int64
        columns, and each bitmap as bytes (named ``<column>_valid`` and ``is_prime``)."""
        views = {"square": np.ndarray((self.total, 2), np.int64, buffer=block)}
        offset = 16 * self.total
        for name in _INT64_COLUMNS:
            views[name] = np.ndarray((self.total,), np.int64, buffer=block, offset=offset)
            offset += 8 * self.total
        for name in _BITMAPS:
            views[name] = np.ndarray((self.bitmap_bytes,), np.uint8, buffer=block, offset=offset)
            offset += self.bitmap_bytes
        return views

    def columns(self, block: pa.Buffer) -> dict[str, pa.Array]:
        """The finished block's columns, as Arrow arrays over ``block`` (nothing copied)."""
        offsets, offset = {"square": 0}, 16 * self.total
        for name in _INT64_COLUMNS:
            offsets[name], offset = offset, offset + 8 * self.total
        for name in _BITMAPS:
            offsets[name], offset = offset, offset + self.bitmap_bytes

        def part(name: str, size: int) -> pa.Buffer:
            return block.slice(offsets[name], size)

        arrays = {
            "square": pa.Array.from_buffers(
                ARROW_TYPES["square"], self.total, [None, part("square", 16 * self.total)], 0
            )
        }
        for name in _INT64_COLUMNS:
            validity = part(f"{name}_valid", self.bitmap_bytes) if name in _NULLABLE else None
            buffers = [validity, part(name, 8 * self.total)]
            # A null count of -1 lets Arrow count the nulls when someone asks.
            arrays[name] = pa.Array.from_buffers(pa.int64(), self.total, buffers, -1)
        arrays["is_prime"] = pa.Array.from_buffers(
            pa.bool_(), self.total, [None, part("is_prime", self.bitmap_bytes)], 0
        )
        return {name: arrays[name] for name in TRANSFORM_COLUMNS}


_INT64_COLUMNS = ("digit_sum", "collatz_steps", "smallest_prime_factor", "largest_prime_factor")
# The reference's None, as the numba kernel marks it in each nullable column.
_NULLABLE = {
    "collatz_steps": NO_COLLATZ_STEPS,
    "smallest_prime_factor": NO_PRIME_FACTOR,
    "largest_prime_factor": NO_PRIME_FACTOR,
}
_BITMAPS = (*(f"{name}_valid" for name in _NULLABLE), "is_prime")


def transform_into_shared_memory(task: SharedMemoryTask) -> int:
    """Run the numba kernel on one slice of the shared input and write its columns, laid out
    as Arrow's, into the shared output: nothing but the task's few numbers crosses a pipe."""
    source, target = SharedMemory(name=task.input_name), SharedMemory(name=task.output_name)
    try:
        _transform_slice(source.buf, target.buf, task)
    finally:
        for block in (source, target):
            with contextlib.suppress(BufferError):  # a view held by a traceback
                block.close()
    return task.stop - task.start


def _transform_slice(source: memoryview, target: memoryview, task: SharedMemoryTask) -> None:
    # The arrays over the blocks live in this frame only, so the blocks can close after it.
    start, stop = task.start, task.stop
    values = np.ndarray((task.total,), np.int64, buffer=source)[start:stop]
    views = ArrowLayout(task.total).views(target)
    squares = views["square"][start:stop]
    columns = {name: views[name][start:stop] for name in _INT64_COLUMNS}
    needs_reference = np.empty(len(values), np.bool_)
    primes = primes_up_to(TRIAL_DIVISION_LIMIT)
    # The kernel writes straight into the block: the squares' low words, the int64 columns.
    fill_transform(values, primes, squares[:, 0], *columns.values(), needs_reference)
    squares[:, 1] = 0  # a square that fits int64 is not negative
    is_prime = (values >= 2) & (columns["smallest_prime_factor"] == values)
    # Values the kernel cannot settle in int64 take the reference's result, one by one.
    wide = (values > LARGEST_ROOT_OF_AN_INT64) | (values < -LARGEST_ROOT_OF_AN_INT64)
    for position in np.flatnonzero(needs_reference | wide).tolist():
        row = {
            name: column[0] for name, column in transform_values([int(values[position])]).items()
        }
        square = row["square"].to_bytes(16, "little", signed=True)
        squares[position] = np.frombuffer(square, np.int64)
        for name, column in columns.items():
            column[position] = _NULLABLE[name] if row[name] is None else row[name]
        is_prime[position] = row["is_prime"]
    bitmaps = {f"{name}_valid": columns[name] != marker for name, marker in _NULLABLE.items()}
    for name, flags in {**bitmaps, "is_prime": is_prime}.items():
        bits = np.packbits(flags, bitorder="little")
        views[name][start // 8 : start // 8 + len(bits)] = bits


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
