"""The numpy and numba kernels, as a pool worker runs them, give exactly the reference
transform's columns (the same Arrow arrays) on hard cases and random int64 lists; the numba
kernel's compile is paid by its warm-up, never by a task."""

from array import array

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.numbers.kernel_choice import Kernel, installed, kernel_named
from data_pipeline.numbers.kernels import columns
from data_pipeline.numbers.stages.parquet_output import TRANSFORMED_SCHEMA
from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    TRIAL_DIVISION_LIMIT,
    ValueChunk,
    transform_values,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DEFAULT_LOW, DEFAULT_HIGH = -10_000, 1_000_000

HARD_CASES = [
    (0, "zero: no prime factors, no Collatz steps"),
    (1, "one: no prime factors, zero Collatz steps"),
    (-1, "minus one: no prime factors"),
    (2, "the smallest prime"),
    (3, "an odd prime"),
    (97, "a small prime"),
    (-97, "a negative prime's magnitude is factored, but it is not prime"),
    (-12, "a negative composite"),
    (DEFAULT_LOW, "the default input's lowest value"),
    (DEFAULT_HIGH, "the default input's highest value"),
    (2**20, "the trial division limit, a power of two"),
    (2**31 - 1, "a Mersenne prime"),
    (2**61 - 1, "a Mersenne prime that only Miller-Rabin proves"),
    (2**62, "a power of two near int64's end"),
    (2**63 - 25, "the largest int64 prime"),
    (INT64_MAX, "int64's maximum: odd, so its first 3n + 1 overflows int64"),
    (INT64_MIN, "int64's minimum: its abs() overflows int64"),
    (INT64_MIN + 1, "int64's minimum plus one: abs() is int64's maximum"),
    (3_037_000_493 * 3_037_000_453, "a semiprime near 2**63, both factors above 2**20"),
    (1_048_583 * 1_048_589, "a semiprime just above 2**40, both factors above 2**20"),
    (1_048_573 * 1_048_583, "a cofactor below 2**40 is proven prime without Miller-Rabin"),
    (2**40 + 15, "a prime just above the trial division limit squared"),
    (8_528_817_511, "a Collatz path that climbs past int64 (to about 1.8e19)"),
    (3_074_457_345_618_258_601, "the largest odd value whose 3n + 1 fits int64"),
    (3_074_457_345_618_258_603, "the smallest odd value whose 3n + 1 overflows int64"),
    (3_037_000_499, "the largest value whose square fits int64"),
    (3_037_000_500, "the smallest positive value whose square does not"),
    (-3_037_000_499, "the largest negative value whose square fits int64"),
    (-3_037_000_500, "the largest negative value whose square does not"),
]
HARD_VALUES = [value for value, _ in HARD_CASES]


@pytest.fixture(scope="module", params=["numpy", "numba"])
def kernel(request) -> Kernel:
    """Each fast kernel as the pipeline chooses it; numba only where it is installed."""
    if not installed(request.param):
        pytest.skip(f"{request.param} is not installed")
    return kernel_named(request.param)


def transformed(kernel: Kernel, values) -> dict[str, pa.Array]:
    """The kernel's columns for ``values``, as a pool worker sends them back."""
    return kernel.transform(ValueChunk(0, 1, len(values), values))


def assert_same_as_reference(kernel: Kernel, values) -> None:
    """Every column is the reference's as an Arrow array of the output's type: the same
    values, nulls where the reference has None."""
    expected = transform_values([int(value) for value in values])
    result = transformed(kernel, values)
    assert list(result) == list(TRANSFORM_COLUMNS)
    for name in TRANSFORM_COLUMNS:
        arrow_type = TRANSFORMED_SCHEMA.field(name).type
        assert result[name].equals(pa.array(expected[name], arrow_type)), name


@pytest.mark.parametrize("value", HARD_VALUES, ids=[f"{value}: {why}" for value, why in HARD_CASES])
def test_a_hard_case_comes_out_as_the_reference(kernel, value):
    assert_same_as_reference(kernel, [value])


def test_hard_cases_among_common_values_are_spliced_back_in_order(kernel):
    common = np.random.default_rng(7).integers(DEFAULT_LOW, DEFAULT_HIGH + 1, 1_000).tolist()
    assert_same_as_reference(kernel, [*common[:500], *HARD_VALUES, *common[500:]])


@pytest.mark.parametrize("empty", [[], np.array([], dtype=np.int64)], ids=["list", "ndarray"])
def test_an_empty_input_gives_empty_columns(kernel, empty):
    assert_same_as_reference(kernel, empty)
    assert all(len(column) == 0 for column in transformed(kernel, empty).values())


@pytest.mark.parametrize(
    "as_input",
    [
        list,
        tuple,
        lambda values: array("q", values),
        lambda values: np.array(values, dtype=np.int64),
        lambda values: np.array(values, dtype=np.int64)[::-1][::-1],
        lambda values: np.repeat(np.array(values, dtype=np.int64), 2)[::2],
        lambda values: np.frombuffer(array("q", values), dtype=np.int64),  # read-only
        lambda values: np.array(values, dtype=">i8"),
    ],
    ids=[
        "list",
        "tuple",
        "array('q')",
        "int64 ndarray",
        "reversed twice",
        "strided",
        "read-only",
        "big-endian",
    ],
)
def test_every_input_type_gives_the_same_columns(kernel, as_input):
    values = [5, -7, 1_000_000, 2**61 - 1, INT64_MIN, 3_037_000_500]
    assert_same_as_reference(kernel, as_input(values))


def test_the_default_input_range_never_needs_the_reference(kernel, monkeypatch):
    def refuse(values):
        raise AssertionError(f"the fast path sent {list(values)} to the reference")

    monkeypatch.setattr(columns, "transform_values", refuse)
    values = np.random.default_rng(11).integers(DEFAULT_LOW, DEFAULT_HIGH + 1, 20_000)
    transformed(kernel, values)


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.integers(DEFAULT_LOW, DEFAULT_HIGH), max_size=300))
def test_random_values_in_the_default_range_come_out_as_the_reference(kernel, values):
    assert_same_as_reference(kernel, values)


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=6))
def test_random_int64_values_come_out_as_the_reference(kernel, values):
    assert_same_as_reference(kernel, values)


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(-(2**42), 2**42), max_size=30))
def test_random_values_around_the_trial_division_limit_squared_come_out_as_the_reference(
    kernel, values
):
    assert_same_as_reference(kernel, values)


def test_the_numba_warm_up_pays_the_compile_so_a_task_compiles_nothing():
    numba_kernel = pytest.importorskip("data_pipeline.numbers.kernels.numba_kernel")
    numba_kernel.warm_up(in_place=True)
    compiled = list(numba_kernel.transform_kernel.signatures)
    filled = list(numba_kernel.fill_transform.signatures)
    assert compiled and filled
    values = np.random.default_rng(3).integers(DEFAULT_LOW, DEFAULT_HIGH + 1, 10_000)
    for as_input in (list, lambda values: array("q", values), np.asarray):
        numba_kernel.transform_columns_numba(as_input(values.tolist()))
    numba_kernel.transform_columns_numba(np.frombuffer(values.tobytes(), dtype=np.int64))
    # As a worker writing into shared memory calls it: squares as decimal128's low words.
    outputs = [np.empty(len(values), np.int64) for _ in range(4)]
    squares = np.empty((len(values), 2), np.int64)[:, 0]
    primes = columns.primes_up_to(TRIAL_DIVISION_LIMIT)
    numba_kernel.fill_transform(values, primes, squares, *outputs, np.empty(len(values), np.bool_))
    assert numba_kernel.transform_kernel.signatures == compiled
    assert numba_kernel.fill_transform.signatures == filled
