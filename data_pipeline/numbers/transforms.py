"""The CPU-heavy per-number transform in plain per-item Python, on purpose: the reference that
every faster kernel must reproduce exactly (pure, top-level functions workers import cheaply)."""

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from math import isqrt

# Trial division stops here so one huge value cannot stall a chunk: 2**20 bounds the work at
# about 350,000 divisions (measured for a prime near 2**63: 24 ms on a quiet core of a 2-core
# machine, 50 to 80 ms while other work shares it). Values with a cofactor above 2**40 left
# after it are settled by a deterministic Miller-Rabin test (exact for every 64-bit integer).
TRIAL_DIVISION_LIMIT = 2**20

# These bases make Miller-Rabin exact for all n < 3.3 * 10**24, which covers int64.
_MILLER_RABIN_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)

TRANSFORM_COLUMNS = (
    "square",
    "digit_sum",
    "collatz_steps",
    "smallest_prime_factor",
    "largest_prime_factor",
    "is_prime",
)


def digit_sum(value: int) -> int:
    """Sum of the decimal digits of ``abs(value)``."""
    total = 0
    value = abs(value)
    while value:
        value, digit = divmod(value, 10)
        total += digit
    return total


def collatz_steps(value: int) -> int | None:
    """Steps of the Collatz map (n/2 or 3n+1) to reach 1; None for values below 1."""
    if value < 1:
        return None
    steps = 0
    while value != 1:
        value = value // 2 if value % 2 == 0 else 3 * value + 1
        steps += 1
    return steps


def prime_factor_bounds(value: int) -> tuple[int | None, int | None]:
    """Smallest and largest prime factor of ``abs(value)`` by trial division.

    Both are None for 0, 1 and -1 (no prime factors). If what remains after trial division
    up to :data:`TRIAL_DIVISION_LIMIT` is composite, its factors are unknown: the smallest is
    then the last one found (or None) and the largest is None.
    """
    remaining = abs(value)
    if remaining < 2:
        return None, None
    smallest = largest = None
    for divisor in _trial_divisors(min(isqrt(remaining), TRIAL_DIVISION_LIMIT)):
        if divisor * divisor > remaining:
            break
        if remaining % divisor == 0:
            smallest = smallest or divisor
            largest = divisor
            while remaining % divisor == 0:
                remaining //= divisor
    if remaining > 1:
        if remaining <= TRIAL_DIVISION_LIMIT**2 or _is_probable_prime(remaining):
            return smallest or remaining, remaining
        return smallest, None
    return smallest, largest


def is_prime(value: int) -> bool:
    """True for primes (2, 3, 5, ...); False for 1, 0 and every negative number."""
    return value >= 2 and prime_factor_bounds(value)[0] == value


def transform_values(values: Sequence[int]) -> dict[str, list]:
    """Apply every transform to each value, in order; one list per output column."""
    columns: dict[str, list] = {name: [] for name in TRANSFORM_COLUMNS}
    for value in values:
        smallest, largest = prime_factor_bounds(value)
        columns["square"].append(value * value)
        columns["digit_sum"].append(digit_sum(value))
        columns["collatz_steps"].append(collatz_steps(value))
        columns["smallest_prime_factor"].append(smallest)
        columns["largest_prime_factor"].append(largest)
        columns["is_prime"].append(value >= 2 and smallest == value)  # same rule as is_prime()
    return columns


def _trial_divisors(limit: int):
    """2, 3, then 6k - 1 and 6k + 1 up to ``limit``: a third of the odd numbers are skipped."""
    yield from (divisor for divisor in (2, 3) if divisor <= limit)
    for base in range(6, limit + 2, 6):
        yield base - 1
        yield base + 1


def _is_probable_prime(n: int) -> bool:
    if n < 2:
        return False
    for base in _MILLER_RABIN_BASES:
        if n % base == 0:
            return n == base
    exponent, rounds = n - 1, 0
    while exponent % 2 == 0:
        exponent //= 2
        rounds += 1
    for base in _MILLER_RABIN_BASES:
        x = pow(base, exponent, n)
        if x in (1, n - 1):
            continue
        for _ in range(rounds - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@dataclass(frozen=True)
class ValueChunk:
    """One pool task: consecutive accepted values and the file lines they came from."""

    index: int
    first_line_number: int
    last_line_number: int
    # An int64 array.array; on backend threads (compiled kernels only) a numpy view instead.
    values: array

    def __str__(self) -> str:
        return (
            f"chunk {self.index} (lines {self.first_line_number}-{self.last_line_number}, "
            f"{len(self.values)} values)"
        )


def transform_chunk(chunk: ValueChunk) -> dict[str, list]:
    """Transform one chunk's values (runs in a pool worker)."""
    return transform_values(chunk.values)
