"""Write a reproducible file of numbers, one per line, as messy as real exports are."""

import random
from collections import Counter
from pathlib import Path

# Each kind of dirt and how it is drawn. The clean values stay below a million so the
# transform's trial division costs tens of microseconds a value: enough work per item for
# a process pool to pay, not so much that the default job is slow.
DIRT_KINDS = (
    "blank",
    "surrounding_whitespace",
    "thousands_separator",
    "integral_float",
    "non_integral_float",
    "scientific_notation",
    "hexadecimal",
    "word",
    "not_finite",
    "beyond_int64",
    "duplicate",
    "windows_line_ending",
)
_CLEAN_RANGE = (-10_000, 1_000_000)
_WORDS = ("n/a", "null", "twelve", "ERROR", "-", "value", "#REF!")


def write_numbers_file(path: Path, count: int, seed: int, dirty_fraction: float) -> Counter:
    """Write ``count`` lines to ``path`` and return how many lines of each dirt kind it has.

    The same arguments always give a byte-identical file.

    Args:
        path: The file to write (replaced if it exists).
        count: How many lines.
        seed: Seeds the random choices.
        dirty_fraction: The share of lines made dirty, from 0 to 1.
    """
    rng = random.Random(seed)
    dirt_counts: Counter = Counter({kind: 0 for kind in DIRT_KINDS})
    previous_value = 0
    with open(path, "wb") as file:
        lines = []
        for _ in range(count):
            value = rng.randint(*_CLEAN_RANGE)
            ending = "\n"
            if rng.random() < dirty_fraction:
                kind = rng.choice(DIRT_KINDS)
                dirt_counts[kind] += 1
                if kind == "windows_line_ending":
                    text, ending = str(value), "\r\n"
                else:
                    text = _dirty_text(kind, value, previous_value, rng)
            else:
                text = str(value)
            if text == str(value):
                previous_value = value  # so a "duplicate" repeats a value written plainly
            lines.append(text + ending)
            if len(lines) >= 10_000:
                file.write("".join(lines).encode())
                lines.clear()
        file.write("".join(lines).encode())
    return dirt_counts


def _dirty_text(kind: str, value: int, previous_value: int, rng: random.Random) -> str:
    match kind:
        case "blank":
            return rng.choice(("", " ", "\t"))
        case "surrounding_whitespace":
            return rng.choice((" ", "\t", "  ")) + str(value) + rng.choice((" ", "\t", ""))
        case "thousands_separator":
            return f"{value:,}"
        case "integral_float":
            return f"{value}.0"
        case "non_integral_float":
            return f"{value}.{rng.randint(1, 99):02d}"
        case "scientific_notation":
            return f"{value:.6e}"
        case "hexadecimal":
            return hex(abs(value))
        case "word":
            return rng.choice(_WORDS)
        case "not_finite":
            return rng.choice(("NaN", "nan", "inf", "-Infinity"))
        case "beyond_int64":
            return str(rng.choice((1, -1)) * (2**63 + rng.randint(0, 10**6)))
        case "duplicate":
            return str(previous_value)
    raise ValueError(f"unknown dirt kind {kind!r}")
