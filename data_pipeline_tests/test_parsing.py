import time

import pytest

from data_pipeline.numbers.parsing import INT64_MAX, INT64_MIN, RejectReason, parse_line

R = RejectReason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"42", 42),
        (b"-17", -17),
        (b"+5", 5),
        (b"007", 7),
        (b"  12\t", 12),
        (b"12\r", 12),
        (b"1,234", 1234),
        (b"-1,234,567", -1234567),
        (b"12.0", 12),
        (b"12.", 12),
        (b"-3.000", -3),
        (b"1e3", 1000),
        (b"1.5E3", 1500),
        (b"1.234567e+06", 1234567),
        (b"0.0", 0),
        (b"0e999999999", 0),
        (str(INT64_MAX).encode(), INT64_MAX),
        (str(INT64_MIN).encode(), INT64_MIN),
        (b"0" * 40 + b"9", 9),
        (b"0" * 5000 + b"7", 7),  # past int()'s 4300-digit limit, still a valid value
        (b"-" + b"0" * 5000 + b"7", -7),
        (b"1,234.0", 1234),
        (b"0e99999999999999999999999", 0),
        (b"", R.BLANK),
        (b"   ", R.BLANK),
        (b"\t\r", R.BLANK),
        (b"12,34", R.MALFORMED_THOUSANDS),
        (b"1,2345", R.MALFORMED_THOUSANDS),
        (b"0,500", R.MALFORMED_THOUSANDS),  # a decimal comma, not five hundred
        (b"1,234.5", R.NON_INTEGRAL),
        (b"1e-99999999999999999999999", R.NON_INTEGRAL),
        (b"1e99999999999999999999999", R.OUT_OF_RANGE),
        (b"12.5", R.NON_INTEGRAL),
        (b"1.5e-1", R.NON_INTEGRAL),
        (b"1e-3", R.NON_INTEGRAL),
        (b"0x1F", R.HEXADECIMAL),
        (b"-0XfF", R.HEXADECIMAL),
        (b"NaN", R.NOT_FINITE),
        (b"-inf", R.NOT_FINITE),
        (b"Infinity", R.NOT_FINITE),
        (str(INT64_MAX + 1).encode(), R.OUT_OF_RANGE),
        (str(INT64_MIN - 1).encode(), R.OUT_OF_RANGE),
        (b"9" * 400, R.OUT_OF_RANGE),
        (b"1e19", R.OUT_OF_RANGE),
        (b"1e999999999", R.OUT_OF_RANGE),
        (b"9,223,372,036,854,775,808", R.OUT_OF_RANGE),
        (b"twelve", R.NOT_A_NUMBER),
        (b"12 34", R.NOT_A_NUMBER),
        (b"1_000", R.NOT_A_NUMBER),
        (b"--5", R.NOT_A_NUMBER),
        (b"12\x0034", R.NOT_A_NUMBER),
        (b"\x1e12", R.NOT_A_NUMBER),  # a record separator is not whitespace
        ("12\u2028".encode(), R.NOT_A_NUMBER),
        ("١٢٣".encode(), R.NON_ASCII_DIGITS),
        ("\uff11\uff12".encode(), R.NON_ASCII_DIGITS),  # fullwidth digits
        (b"\xff\xfe12", R.INVALID_UTF8),
        (b"12\xc3", R.INVALID_UTF8),
        (b"x" * 300_000, R.NOT_A_NUMBER),
    ],
)
def test_each_line_gets_a_value_or_a_reason(raw, expected):
    assert parse_line(raw) == expected
    assert type(parse_line(raw)) is type(expected)


@pytest.mark.parametrize(
    "raw",
    [b"1" * 1_000_000 + b"x", b"1" * 1_000_000 + b".5x", b"1," * 500_000 + b"x"],
)
def test_a_megabyte_line_is_rejected_promptly_not_backtracked_for_hours(raw):
    # A pattern with two quantifiers over the same digits took 3 s at 8,000 digits and would
    # take hours at a megabyte: this test would hang, not fail by a hair.
    started = time.monotonic()
    assert parse_line(raw) == R.NOT_A_NUMBER
    assert time.monotonic() - started < 60  # hours if it backtracked; milliseconds here
