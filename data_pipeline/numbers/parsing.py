"""Turn raw lines of a numbers export into int64 values or rejection reasons (the rules are
:func:`parse_line`'s)."""

import logging
import re
from array import array
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from data_pipeline.numbers.chunking import ByteRange, read_lines

logger = logging.getLogger(__name__)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# No int64 needs more than 19 significant digits; longer digit strings are rejected before
# int() sees them (it refuses strings past 4300 digits, and would waste time on shorter ones).
_MAX_INT64_DIGITS = 19

# Every pattern here matches in linear time: no two quantifiers can split the same run of
# digits between them (a line of a million digits must not backtrack).
_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+")
# The first group has no leading zero: "0,500" is more likely a decimal comma than 500.
_THOUSANDS_GROUPED = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+")
_THOUSANDS_GROUPED_DECIMAL = re.compile(
    r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+\.[0-9]*(?:[eE][+-]?[0-9]+)?"
)
_COMMA_NUMBER = re.compile(r"[+-]?[0-9][0-9,]*")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Exponents this long are settled without building the number (Decimal refuses them).
_LONG_EXPONENT = re.compile(r"[eE]([+-]?)[0-9]{10,}$")
# Only spaces, tabs and line-end characters count as surrounding whitespace; str.strip()
# would also remove control separators such as \x1e, which mean something in an export.
_SURROUNDING_WHITESPACE = " \t\r\n\v\f"
_HEXADECIMAL = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_NOT_FINITE = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("nan", "inf", "infinity", "snan")
)


class RejectReason(StrEnum):
    """Why a line was not accepted; stored in the ``reason`` column of the rejected lines."""

    BLANK = "blank"
    INVALID_UTF8 = "invalid_utf8"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    NON_INTEGRAL = "non_integral"
    OUT_OF_RANGE = "out_of_range"
    HEXADECIMAL = "hexadecimal"
    MALFORMED_THOUSANDS = "malformed_thousands"
    NON_ASCII_DIGITS = "non_ascii_digits"


def parse_line(raw: bytes) -> int | RejectReason:
    """Return the int64 value of one line (without its ``\\n``), or the reason it is rejected.

    The rules (also in docs/outputs.md):

    - Surrounding spaces, tabs and line-end characters are ignored (other control characters
      are not); leading zeros are fine.
    - ``1,234`` and ``-1,234,567`` are accepted when every group after the first has exactly
      three digits and the first does not start with 0 (US-style thousands separators);
      ``12,34`` and ``0,500`` are rejected as ``malformed_thousands``.
    - Decimal and scientific notation are accepted when the value is exactly integral
      (``12.0``, ``12.``, ``1e3``, ``1.5E3``, ``1,234.0``) and rejected as ``non_integral``
      otherwise (``12.5``).
      Parsing uses :class:`decimal.Decimal`, never ``float``, so nothing is rounded.
    - Hexadecimal (``0x1F``) is rejected as ``hexadecimal``: in a decimal column it is usually
      an identifier that slipped in, not a quantity, and guessing would hide that.
    - Digits other than ASCII ``0-9`` (``'١٢٣'``, which Python's ``int()`` would accept) are
      rejected as ``non_ascii_digits``; the export format is ASCII decimal.
    - ``NaN`` and ``inf`` are ``not_finite``; values outside int64 are ``out_of_range``; bytes
      that are not UTF-8 are ``invalid_utf8``; empty lines are ``blank``; anything else is
      ``not_a_number``.
    - Duplicates are accepted every time they occur: each line is an observation, and
      de-duplication is a downstream decision.
    """
    try:
        text = raw.decode("utf-8").strip(_SURROUNDING_WHITESPACE)
    except UnicodeDecodeError:
        return RejectReason.INVALID_UTF8
    if not text:
        return RejectReason.BLANK
    if _PLAIN_INTEGER.fullmatch(text):
        return _checked_int(text)
    if _THOUSANDS_GROUPED.fullmatch(text):
        return _checked_int(text.replace(",", ""))
    if _THOUSANDS_GROUPED_DECIMAL.fullmatch(text):
        return _integral_decimal(text.replace(",", ""))
    if _COMMA_NUMBER.fullmatch(text):
        return RejectReason.MALFORMED_THOUSANDS
    if _DECIMAL.fullmatch(text):
        return _integral_decimal(text)
    if _HEXADECIMAL.fullmatch(text):
        return RejectReason.HEXADECIMAL
    if text.lower() in _NOT_FINITE:
        return RejectReason.NOT_FINITE
    if any(char.isdigit() and not char.isascii() for char in text):
        return RejectReason.NON_ASCII_DIGITS
    return RejectReason.NOT_A_NUMBER


def _checked_int(digits: str) -> int | RejectReason:
    sign = "-" if digits.startswith("-") else ""
    significant = digits.lstrip("+-").lstrip("0")
    if len(significant) > _MAX_INT64_DIGITS:
        return RejectReason.OUT_OF_RANGE
    # Built from the significant digits: int() refuses strings over 4300 characters, and
    # thousands of leading zeros must not turn a valid value into a crash.
    value = int(sign + (significant or "0"))
    if not INT64_MIN <= value <= INT64_MAX:
        return RejectReason.OUT_OF_RANGE
    return value


def _integral_decimal(text: str) -> int | RejectReason:
    long_exponent = _LONG_EXPONENT.search(text)
    if long_exponent:
        mantissa = text[: long_exponent.start()].lstrip("+-").replace(".", "")
        if not mantissa.strip("0"):
            return 0
        negative_exponent = long_exponent.group(1) == "-"
        return RejectReason.NON_INTEGRAL if negative_exponent else RejectReason.OUT_OF_RANGE
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regexes admit only valid literals
        return RejectReason.NOT_A_NUMBER
    if number.is_zero():
        return 0
    # adjusted() is the exponent of the leading digit: checking it first keeps "1e999999999"
    # from being expanded into a billion-digit integer.
    if number.adjusted() > _MAX_INT64_DIGITS:
        return RejectReason.OUT_OF_RANGE
    if number.adjusted() < 0 or number != number.to_integral_value():
        return RejectReason.NON_INTEGRAL
    value = int(number)
    if not INT64_MIN <= value <= INT64_MAX:
        return RejectReason.OUT_OF_RANGE
    return value


@dataclass
class CleanedChunk:
    """What a worker sends back for one byte range. Line positions count from 0 within the
    range; the parent turns them into file line numbers once it knows the lines before."""

    line_count: int
    accepted_positions: array = field(default_factory=lambda: array("q"))
    accepted_values: array = field(default_factory=lambda: array("q"))
    rejected_positions: array = field(default_factory=lambda: array("q"))
    rejected_raw: list[str] = field(default_factory=list)
    rejected_reasons: list[str] = field(default_factory=list)

    def reject(self, position: int, raw: bytes, reason: RejectReason) -> None:
        """Record a rejected line; its raw bytes are kept whole, non-UTF-8 ones as \\x escapes."""
        self.rejected_positions.append(position)
        self.rejected_raw.append(raw.decode("utf-8", errors="backslashreplace"))
        self.rejected_reasons.append(reason.value)


def clean_byte_range(byte_range: ByteRange) -> CleanedChunk:
    """Read one range of the file and parse each of its lines (runs in a pool worker)."""
    lines = read_lines(byte_range)
    chunk = CleanedChunk(line_count=len(lines))
    for position, raw in enumerate(lines):
        outcome = parse_line(raw)
        if isinstance(outcome, RejectReason):
            chunk.reject(position, raw, outcome)
        else:
            chunk.accepted_positions.append(position)
            chunk.accepted_values.append(outcome)
    logger.debug(
        "%s: %d lines, %d rejected", byte_range, chunk.line_count, len(chunk.rejected_reasons)
    )
    return chunk
