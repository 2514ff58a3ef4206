import pytest

from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    collatz_steps,
    digit_sum,
    is_prime,
    prime_factor_bounds,
    transform_values,
)

LARGE_PRIME = 2**61 - 1  # a Mersenne prime, far beyond trial division's reach
LARGEST_INT64_PRIME = 2**63 - 25


@pytest.mark.parametrize(
    ("value", "smallest", "largest", "prime"),
    [
        (0, None, None, False),
        (1, None, None, False),
        (-1, None, None, False),
        (2, 2, 2, True),
        (3, 3, 3, True),
        (4, 2, 2, False),
        (12, 2, 3, False),
        (-12, 2, 3, False),
        (-7, 7, 7, False),
        (97, 97, 97, True),
        (1_000_000, 2, 5, False),
        (999_983, 999_983, 999_983, True),
        (2 * 999_983, 2, 999_983, False),
        (1_000_003 * 1_000_033, 1_000_003, 1_000_033, False),
        (LARGE_PRIME, LARGE_PRIME, LARGE_PRIME, True),
        (LARGEST_INT64_PRIME, LARGEST_INT64_PRIME, LARGEST_INT64_PRIME, True),
        (3 * LARGE_PRIME, 3, LARGE_PRIME, False),
        (2**62, 2, 2, False),
        # Two prime factors above the trial-division limit: the largest is not found.
        ((2**31 - 1) ** 2, None, None, False),
    ],
)
def test_prime_factors_and_primality(value, smallest, largest, prime):
    assert prime_factor_bounds(value) == (smallest, largest)
    assert is_prime(value) is prime


@pytest.mark.parametrize(
    ("value", "steps"), [(1, 0), (2, 1), (3, 7), (6, 8), (27, 111), (0, None), (-5, None)]
)
def test_collatz_steps(value, steps):
    assert collatz_steps(value) == steps


@pytest.mark.parametrize(("value", "total"), [(0, 0), (7, 7), (1234, 10), (-1234, 10), (10**18, 1)])
def test_digit_sum(value, total):
    assert digit_sum(value) == total


def test_transform_values_keeps_order_and_squares_without_overflow():
    values = [3, -4, 0, 2**63 - 1]
    columns = transform_values(values)
    assert set(columns) == set(TRANSFORM_COLUMNS)
    assert columns["square"] == [9, 16, 0, (2**63 - 1) ** 2]
    assert columns["digit_sum"] == [3, 4, 0, digit_sum(2**63 - 1)]
    assert columns["collatz_steps"] == [7, None, None, collatz_steps(2**63 - 1)]
    assert columns["is_prime"] == [True, False, False, False]
    assert columns["smallest_prime_factor"] == [3, 2, None, 7]
