"""What both fast kernels share: the int64 input, the primes to divide by, and turning their
arrays into the reference's columns (None where it has None, its result where they cannot)."""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    TRIAL_DIVISION_LIMIT,
    transform_values,
)

INT64_MIN = -(2**63)
# 3037000499**2 < 2**63 - 1 < 3037000500**2: beyond it a square needs Python's ints.
LARGEST_ROOT_OF_AN_INT64 = 3_037_000_499
# An odd Collatz value above this would make 3n + 1 overflow int64.
LARGEST_ODD_COLLATZ_VALUE = (2**63 - 2) // 3
# A cofactor left after trial division up to the limit is proven prime at or below this
# bound; above it the reference runs Miller-Rabin, so such values are settled by it.
PROVEN_PRIME_BOUND = TRIAL_DIVISION_LIMIT**2

# The kernels' arrays mark the reference's None with these (no real result takes them).
NO_COLLATZ_STEPS = -1
NO_PRIME_FACTOR = 0


def as_int64_array(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """A writeable, contiguous, native int64 copy or view of ``values`` (one compiled type)."""
    array = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    return array if array.flags.writeable else array.copy()


@functools.cache
def primes_up_to(limit: int) -> np.ndarray:
    """The primes up to ``limit`` as int64, by a sieve of Eratosthenes (cached)."""
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for number in range(2, int(limit**0.5) + 1):
        if sieve[number]:
            sieve[number * number :: number] = False
    return np.flatnonzero(sieve).astype(np.int64)


def squares_beyond_int64(values: np.ndarray) -> np.ndarray:
    """Where a value's square does not fit int64 (the kernels leave those to Python ints)."""
    return (values > LARGEST_ROOT_OF_AN_INT64) | (values < -LARGEST_ROOT_OF_AN_INT64)


@dataclass(frozen=True)
class KernelArrays:
    """What a fast kernel computed for int64 ``values``, one array per column: the squares
    (right only where they fit int64), digit sums, Collatz steps and smallest and largest
    prime factors (NO_COLLATZ_STEPS and NO_PRIME_FACTOR where the reference has None), and a
    mask of the values it could not settle exactly, which the reference transforms one by
    one."""

    values: np.ndarray
    squares: np.ndarray
    digit_sums: np.ndarray
    collatz_steps: np.ndarray
    smallest_factors: np.ndarray
    largest_factors: np.ndarray
    needs_reference: np.ndarray

    def is_prime(self) -> np.ndarray:
        return (self.values >= 2) & (self.smallest_factors == self.values)


def reference_columns(arrays: KernelArrays) -> dict[str, list]:
    """The kernel's arrays as :func:`transform_values` returns them: lists of Python ints,
    None where the reference has None, and the reference's own result where needed."""
    columns = {
        "square": arrays.squares.tolist(),
        "digit_sum": arrays.digit_sums.tolist(),
        "collatz_steps": _with_none(arrays.collatz_steps, NO_COLLATZ_STEPS),
        "smallest_prime_factor": _with_none(arrays.smallest_factors, NO_PRIME_FACTOR),
        "largest_prime_factor": _with_none(arrays.largest_factors, NO_PRIME_FACTOR),
        "is_prime": arrays.is_prime().tolist(),
    }
    values = arrays.values
    for position in np.flatnonzero(squares_beyond_int64(values)).tolist():
        value = int(values[position])
        columns["square"][position] = value * value
    for position in np.flatnonzero(arrays.needs_reference).tolist():
        row = transform_values([int(values[position])])
        for name in TRANSFORM_COLUMNS:
            columns[name][position] = row[name][0]
    return columns


def arrow_columns(arrays: KernelArrays) -> dict[str, pa.Array]:
    """The same columns as :func:`reference_columns`, as Arrow arrays of the output's types,
    built straight from the kernel's arrays: a worker sends them back as buffers instead of
    lists of Python ints, and the owner of the pool has nothing left to convert."""
    wide = squares_beyond_int64(arrays.values)
    if arrays.needs_reference.any() or wide.any():  # rare: let the lists settle them exactly
        lists = reference_columns(arrays)
        return {name: pa.array(lists[name], ARROW_TYPES[name]) for name in TRANSFORM_COLUMNS}
    collatz_steps, smallest, largest = (
        arrays.collatz_steps,
        arrays.smallest_factors,
        arrays.largest_factors,
    )
    return {
        "square": _int64_column(arrays.squares).cast(ARROW_TYPES["square"]),
        "digit_sum": _int64_column(arrays.digit_sums),
        "collatz_steps": _int64_column(collatz_steps, collatz_steps == NO_COLLATZ_STEPS),
        "smallest_prime_factor": _int64_column(smallest, smallest == NO_PRIME_FACTOR),
        "largest_prime_factor": _int64_column(largest, largest == NO_PRIME_FACTOR),
        "is_prime": _bool_column(arrays.is_prime()),
    }


def _int64_column(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """An Arrow int64 array over the numpy buffer, null where ``missing``. Built from
    buffers: ``pa.array(ndarray)`` makes pyarrow import pandas, 0.2-0.5 s in every worker."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    validity, nulls = None, 0
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
        nulls = int(missing.sum())
    return pa.Array.from_buffers(
        pa.int64(), len(values), [validity, pa.py_buffer(values)], null_count=nulls
    )


def _bool_column(flags: np.ndarray) -> pa.Array:
    bits = pa.py_buffer(np.packbits(flags, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, bits], null_count=0)


# The Arrow types of the transform's columns (as in the transformed_numbers Parquet file).
ARROW_TYPES = {
    "square": pa.decimal128(38, 0),
    "digit_sum": pa.int64(),
    "collatz_steps": pa.int64(),
    "smallest_prime_factor": pa.int64(),
    "largest_prime_factor": pa.int64(),
    "is_prime": pa.bool_(),
}


def _with_none(array: np.ndarray, none_marker: int) -> list:
    items = array.tolist()
    for position in np.flatnonzero(array == none_marker).tolist():
        items[position] = None
    return items
