"""The transform vectorized with numpy, each loop over the values still unsettled; those it
cannot settle in int64 (int64's minimum, Collatz past int64, Miller-Rabin) go to the reference."""

import functools
from collections.abc import Sequence
from math import isqrt

import numpy as np
import pyarrow as pa

from data_pipeline.numbers.kernels.columns import (
    INT64_MIN,
    LARGEST_ODD_COLLATZ_VALUE,
    NO_COLLATZ_STEPS,
    NO_PRIME_FACTOR,
    KernelArrays,
    arrow_columns,
    as_int64_array,
    primes_up_to,
)
from data_pipeline.numbers.transforms import TRIAL_DIVISION_LIMIT

# Rough costs, in nanoseconds, that choose between dividing the active values by one prime
# at a time and dividing one value by all the primes left (see _prime_factor_bounds).
PER_PRIME_COST = 8_000
PER_VALUE_COST = 10_000
PER_PRIME_PER_VALUE_COST = 2
# Collatz paths move 16 halvings at a time down to 2**16, then look the rest up.
_JUMP_BITS = 16
_JUMP_SIZE = 2**_JUMP_BITS


def transform_columns_numpy(values: Sequence[int] | np.ndarray) -> dict[str, pa.Array]:
    """The columns of :func:`~data_pipeline.numbers.transforms.transform_values` as Arrow
    arrays of the output's types, for a pool worker to send back."""
    return arrow_columns(transform_arrays(values))


def transform_arrays(values: Sequence[int] | np.ndarray) -> KernelArrays:
    """Every column as an array, and a mask of the values only the reference settles."""
    values = as_int64_array(values)
    needs_reference = values == INT64_MIN
    # abs() of int64's minimum overflows: it goes to the reference, so 0 stands in for it.
    magnitudes = np.where(needs_reference, 0, np.abs(values))
    collatz_steps, collatz_overflows = _collatz_steps(values)
    smallest, largest, unproven = _prime_factor_bounds(magnitudes)
    needs_reference |= collatz_overflows | unproven
    return KernelArrays(
        values=values,
        squares=values * values,  # wraps beyond int64; those squares are recomputed exactly
        digit_sums=_digit_sums(magnitudes),
        collatz_steps=collatz_steps,
        smallest_factors=smallest,
        largest_factors=largest,
        needs_reference=needs_reference,
    )


def _digit_sums(magnitudes: np.ndarray) -> np.ndarray:
    totals = np.zeros_like(magnitudes)
    rest = magnitudes.copy()
    while rest.any():
        rest, digits = np.divmod(rest, 10)
        totals += digits
    return totals


def _collatz_steps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps to reach 1 (NO_COLLATZ_STEPS below 1), and where the path would leave int64.

    Above 2**16 a value moves 16 halvings at a time (an odd n's 3n + 1 and its halving count
    as one halving and two steps) by :func:`_collatz_jumps`' tables; at or below 2**16 the
    rest of its steps is looked up. A jump whose end would overflow int64 is taken one step
    at a time instead, and a 3n + 1 that would overflow sends the value to the reference.
    """
    multipliers, ends, jump_steps, largest_highs, small_steps = _collatz_jumps()
    steps = np.full(values.shape, NO_COLLATZ_STEPS, dtype=np.int64)
    overflows = np.zeros(values.shape, dtype=bool)
    small = (values >= 1) & (values <= _JUMP_SIZE)
    steps[small] = small_steps[values[small]]
    positions = np.flatnonzero(values > _JUMP_SIZE)
    current = values[positions]
    counts = np.zeros(positions.shape, dtype=np.int64)
    while positions.size:
        low, high = current & (_JUMP_SIZE - 1), current >> _JUMP_BITS
        jumpable = high <= largest_highs[low]
        jumped = multipliers[low] * high + ends[low]  # wraps where not jumpable: unused
        if jumpable.all():
            current = jumped
            counts += jump_steps[low]
        else:
            odd = (current & 1).astype(bool)
            overflowing = ~jumpable & odd & (current > LARGEST_ODD_COLLATZ_VALUE)
            stepped = np.where(odd, current + (current >> 1) + 1, current >> 1)
            current = np.where(jumpable, jumped, stepped)
            counts += np.where(jumpable, jump_steps[low], 1 + odd)
            if overflowing.any():
                overflows[positions[overflowing]] = True
                keep = ~overflowing
                positions, current, counts = positions[keep], current[keep], counts[keep]
        arrived = current <= _JUMP_SIZE
        if arrived.any():
            steps[positions[arrived]] = counts[arrived] + small_steps[current[arrived]]
            keep = ~arrived
            positions, current, counts = positions[keep], current[keep], counts[keep]
    return steps, overflows


@functools.cache
def _collatz_jumps() -> tuple[np.ndarray, ...]:
    """Tables by residue r modulo 2**16: n = h * 2**16 + r goes in 16 halvings to
    ``multiplier * h + end`` (the multiplier being 3 to the number of odd values met) in
    ``steps`` steps, which fits int64 while h is at most ``largest_high``. Also the steps to
    1 of every value up to 2**16, by the plain loop."""
    ends = np.arange(_JUMP_SIZE, dtype=np.int64)
    odd_counts = np.zeros_like(ends)
    for _ in range(_JUMP_BITS):
        odd = ends & 1
        ends = np.where(odd == 1, ends + (ends >> 1) + 1, ends >> 1)
        odd_counts += odd
    multipliers = 3**odd_counts
    largest_highs = (np.iinfo(np.int64).max - ends) // multipliers
    small_steps = _collatz_steps_one_at_a_time(np.arange(_JUMP_SIZE + 1, dtype=np.int64))
    return multipliers, ends, _JUMP_BITS + odd_counts, largest_highs, small_steps


def _collatz_steps_one_at_a_time(values: np.ndarray) -> np.ndarray:
    """Steps to reach 1 of small positive values, one Collatz step per pass."""
    steps = np.full(values.shape, NO_COLLATZ_STEPS, dtype=np.int64)
    steps[values == 1] = 0
    positions = np.flatnonzero(values > 1)
    current = values[positions]
    counts = np.zeros(positions.shape, dtype=np.int64)
    while positions.size:
        odd = current & 1
        # An odd n >= 3 goes to 3n + 1, which is even and at least 10: take its halving too.
        current = np.where(odd == 1, current + (current >> 1) + 1, current >> 1)
        counts += 1 + odd
        arrived = current == 1
        steps[positions[arrived]] = counts[arrived]
        positions, current, counts = positions[~arrived], current[~arrived], counts[~arrived]
    return steps


def _prime_factor_bounds(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest and largest prime factors (NO_PRIME_FACTOR for none), and where the cofactor
    left after trial division is too large to be proven prime without Miller-Rabin.

    Dividing by every prime up to the limit gives the reference's result: it stops early only
    when what remains is 1 or a prime, which then counts as both bounds' candidate.
    """
    smallest = np.full(magnitudes.shape, NO_PRIME_FACTOR, dtype=np.int64)
    largest = smallest.copy()
    unproven = np.zeros(magnitudes.shape, dtype=bool)
    positions = np.flatnonzero(magnitudes >= 2)
    if not positions.size:
        return smallest, largest, unproven
    remaining = magnitudes[positions]
    low = np.zeros_like(remaining)  # smallest prime factor found so far, 0 for none
    high = np.zeros_like(remaining)  # largest prime factor found so far
    limit = min(isqrt(int(remaining.max())), TRIAL_DIVISION_LIMIT)
    primes = primes_up_to(limit).tolist()

    def settle(done: np.ndarray, tried_up_to: int) -> None:
        """Record the values in ``done``, which have no prime factor up to ``tried_up_to``
        left: what remains is 1, or a prime if below the square of the next integer."""
        rest, where = remaining[done], positions[done]
        prime_rest = (rest > 1) & (rest <= (tried_up_to + 1) ** 2 - 1)
        smallest[where] = np.where(prime_rest & (low[done] == 0), rest, low[done])
        largest[where] = np.where(prime_rest, rest, high[done])
        unproven[where] = (rest > 1) & ~prime_rest

    for index, prime in enumerate(primes):
        done = remaining < prime * prime
        if done.any():
            settle(done, prime - 1)
            keep = ~done
            positions, remaining, low, high = (
                positions[keep],
                remaining[keep],
                low[keep],
                high[keep],
            )
        if not positions.size:
            return smallest, largest, unproven
        if _one_value_at_a_time_is_cheaper(positions.size, len(primes) - index):
            break
        hits = np.flatnonzero(remaining % prime == 0)
        if hits.size:
            low[hits] = np.where(low[hits] == 0, prime, low[hits])
            high[hits] = prime
            divided = remaining[hits] // prime
            again = divided % prime == 0
            while again.any():
                divided[again] //= prime
                again = divided % prime == 0
            remaining[hits] = divided
    else:
        settle(np.ones(positions.shape, dtype=bool), limit)
        return smallest, largest, unproven
    primes_left = np.array(primes[index:], dtype=np.int64)
    for position, rest, found_low, found_high in zip(
        positions.tolist(), remaining.tolist(), low.tolist(), high.tolist(), strict=True
    ):
        root = isqrt(rest)
        candidates = primes_left[: np.searchsorted(primes_left, root, side="right")]
        for divisor in candidates[rest % candidates == 0].tolist():
            found_low = found_low or divisor
            found_high = divisor
            while rest % divisor == 0:
                rest //= divisor
        if rest > 1 and rest < (min(root, limit) + 1) ** 2:
            found_low, found_high = found_low or rest, rest
        elif rest > 1:
            unproven[position] = True
        smallest[position], largest[position] = found_low, found_high
    return smallest, largest, unproven


def _one_value_at_a_time_is_cheaper(active: int, primes_left: int) -> bool:
    """Whether dividing each active value by all primes left at once (numpy over the primes)
    beats one numpy pass per prime over the active values: when few large values remain."""
    return active * (PER_VALUE_COST + PER_PRIME_PER_VALUE_COST * primes_left) < (
        primes_left * PER_PRIME_COST
    )
