"""The transform compiled with numba: the reference's loops, one pass over the values (those
it cannot settle exactly in int64 go through the reference one by one)."""

from collections.abc import Sequence

import numba
import numpy as np
import pyarrow as pa

from data_pipeline.numbers.kernels.columns import (
    INT64_MIN,
    LARGEST_ODD_COLLATZ_VALUE,
    LARGEST_ROOT_OF_AN_INT64,
    NO_COLLATZ_STEPS,
    NO_PRIME_FACTOR,
    PROVEN_PRIME_BOUND,
    KernelArrays,
    arrow_columns,
    as_int64_array,
    primes_up_to,
)
from data_pipeline.numbers.transforms import TRIAL_DIVISION_LIMIT

# A few values that take every branch, so the warm-up compiles what the real calls run.
_WARM_UP_VALUES = (0, 1, -1, 2, 97, -12, 1_000_000, 2**61 - 1, 2**63 - 1, -(2**63))


def transform_columns_numba(values: Sequence[int] | np.ndarray) -> dict[str, pa.Array]:
    """The columns of :func:`~data_pipeline.numbers.transforms.transform_values` as Arrow
    arrays of the output's types, for a pool worker to send back."""
    values = as_int64_array(values)
    computed = transform_kernel(values, primes_up_to(TRIAL_DIVISION_LIMIT))
    return arrow_columns(KernelArrays(values, *computed))


def warm_up(in_place: bool = False) -> None:
    """Compile the kernel, or load it from the disk cache, before any task needs it; with
    ``in_place``, also :func:`fill_transform` for outputs given as views (the squares as the
    low words of Arrow's decimal128 layout), as a worker writing into shared memory calls it.

    The compiled code is cached on disk and loaded once per process, here or by the first
    call, so a pool worker that preloads this module never pays the compile in a task."""
    transform_columns_numba(_WARM_UP_VALUES)
    if in_place:
        values = as_int64_array(_WARM_UP_VALUES)
        outputs = [np.empty(len(values), np.int64) for _ in range(4)]
        squares = np.empty((len(values), 2), np.int64)[:, 0]
        needs_reference = np.empty(len(values), np.bool_)
        primes = primes_up_to(TRIAL_DIVISION_LIMIT)
        fill_transform(values, primes, squares, *outputs, needs_reference)


# Compiled code takes and returns plain arrays (not a KernelArrays, which numba cannot type).
@numba.njit(cache=True, nogil=True)
def transform_kernel(values, primes):
    """Squares (right where they fit int64), digit sums, Collatz steps, smallest and largest
    prime factors of int64 ``values``, and a mask of those only the reference settles."""
    count = values.size
    squares = np.empty(count, dtype=np.int64)
    digit_sums = np.empty(count, dtype=np.int64)
    collatz_steps = np.empty(count, dtype=np.int64)
    smallest = np.empty(count, dtype=np.int64)
    largest = np.empty(count, dtype=np.int64)
    needs_reference = np.empty(count, dtype=np.bool_)
    fill_transform(
        values, primes, squares, digit_sums, collatz_steps, smallest, largest, needs_reference
    )
    return squares, digit_sums, collatz_steps, smallest, largest, needs_reference


@numba.njit(cache=True, nogil=True)
def fill_transform(
    values, primes, squares, digit_sums, collatz_steps, smallest, largest, needs_reference
):
    """:func:`transform_kernel` writing into the arrays it is given (every position set).

    Args:
        values: The int64 values.
        primes: The primes up to the trial division limit: dividing by all of them gives the
            reference's result, which stops early only when what remains is 1 or a prime.
        squares: Gets the squares, right where they fit int64.
        digit_sums: Gets the digit sums of the magnitudes.
        collatz_steps: Gets the Collatz steps, NO_COLLATZ_STEPS below 1.
        smallest: Gets the smallest prime factors, NO_PRIME_FACTOR for none.
        largest: Gets the largest prime factors, NO_PRIME_FACTOR for none.
        needs_reference: Gets where only the reference settles the value exactly.
    """
    for index in range(values.size):
        value = values[index]
        squares[index] = 0
        digit_sums[index] = 0
        collatz_steps[index] = NO_COLLATZ_STEPS
        smallest[index] = NO_PRIME_FACTOR
        largest[index] = NO_PRIME_FACTOR
        needs_reference[index] = False
        if value == INT64_MIN:  # its abs() overflows int64
            needs_reference[index] = True
            continue
        magnitude = abs(value)
        if magnitude <= LARGEST_ROOT_OF_AN_INT64:
            squares[index] = value * value

        rest = magnitude
        total = 0
        while rest:
            total += rest % 10
            rest //= 10
        digit_sums[index] = total

        if value >= 1:
            current = value
            steps = 0
            while current != 1:
                if current & 1:
                    if current > LARGEST_ODD_COLLATZ_VALUE:
                        needs_reference[index] = True
                        break
                    # 3n + 1 is even: take its halving in the same step.
                    current = current + (current >> 1) + 1
                    steps += 2
                else:
                    current >>= 1
                    steps += 1
            collatz_steps[index] = steps

        if magnitude >= 2:
            rest = magnitude
            low = NO_PRIME_FACTOR
            high = NO_PRIME_FACTOR
            for prime in primes:
                if prime * prime > rest:
                    break
                if rest % prime == 0:
                    if low == NO_PRIME_FACTOR:
                        low = prime
                    high = prime
                    while rest % prime == 0:
                        rest //= prime
            if rest > PROVEN_PRIME_BOUND:
                # Trial division left a cofactor that only Miller-Rabin settles.
                needs_reference[index] = True
            elif rest > 1:
                if low == NO_PRIME_FACTOR:
                    low = rest
                high = rest
            smallest[index] = low
            largest[index] = high
