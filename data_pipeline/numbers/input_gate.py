"""Input that cannot be right is refused before it replaces anything: an empty file, UTF-16 or
UTF-32 (by its byte order mark), or too few lines that are numbers (the wrong column)."""

from collections import Counter
from pathlib import Path

# Byte order marks of the encodings we refuse by name (UTF-32 first: its little-endian mark
# begins with UTF-16's).
_FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "UTF-32"),
    (b"\xff\xfe", "UTF-16 LE", "UTF-16"),
    (b"\xfe\xff", "UTF-16 BE", "UTF-16"),
)
# Rejected lines above this share of the file earn a WARNING in the run's log.
WARNING_REJECTED_SHARE = 0.01


class UnusableInputError(ValueError):
    """The input file cannot hold this pipeline's numbers; the message says why and what
    to do."""


def check_input_file(path: Path, allow_empty: bool = False, shown_as: str | None = None) -> None:
    """Refuse ``path`` if it is empty (unless ``allow_empty``) or starts with a UTF-16 or
    UTF-32 byte order mark."""
    name = shown_as or str(path)
    with open(path, "rb") as file:
        start = file.read(4)
    if not start and not allow_empty:
        raise UnusableInputError(
            f"input file is empty: {name} has no lines. Export the day again, or set "
            "allow_empty: true in numbers_file's config to accept an empty day"
        )
    for mark, encoding, family in _FOREIGN_BOMS:
        if start.startswith(mark):
            raise UnusableInputError(
                f"input file is {encoding} (it starts with the byte order mark "
                f"{mark.hex(' ').upper()}): {name} must be UTF-8. Export it as UTF-8, or "
                f"convert it: iconv -f {family} -t UTF-8 {name} > converted.txt"
            )


def rejection_summary(counts: Counter, first_lines: dict[str, int], top: int = 3) -> str:
    """The ``top`` most frequent reasons, with their counts and first line:
    ``not_a_number 950 (first at line 2), blank 30 (first at line 7)``."""
    return ", ".join(
        f"{reason} {count:,} (first at line {first_lines.get(reason, '?')})"
        for reason, count in counts.most_common(top)
    )


def too_few_accepted(
    lines: int, accepted: int, counts: Counter, first_lines: dict[str, int], min_share: float
) -> str | None:
    """Why the cleaning result must be refused (fewer than ``min_share`` of the lines were
    accepted), or None when it may stand.

    Args:
        lines: The lines of the file.
        accepted: How many of them are numbers.
        counts: Rejected lines by reason.
        first_lines: The first line rejected for each reason.
        min_share: The share of lines that must be numbers, from 0 to 1.
    """
    if lines == 0 or accepted >= min_share * lines:
        return None
    return (
        f"only {accepted:,} of {lines:,} lines ({accepted / lines:.1%}) are numbers, fewer "
        f"than min_accepted_share ({min_share:.0%}): most often "
        f"{rejection_summary(counts, first_lines)}. Is this the right file? The current set "
        "stays as it was; lower min_accepted_share in cleaned_numbers' config to accept it"
    )


def rejection_warning(lines: int, counts: Counter, first_lines: dict[str, int]) -> str | None:
    """A warning when more than 1 % of the lines were rejected, else None."""
    rejected = sum(counts.values())
    if lines == 0 or rejected <= WARNING_REJECTED_SHARE * lines:
        return None
    return (
        f"{rejected:,} of {lines:,} lines ({rejected / lines:.1%}) were rejected: most often "
        f"{rejection_summary(counts, first_lines)} (rejected_lines.parquet has every one)"
    )
