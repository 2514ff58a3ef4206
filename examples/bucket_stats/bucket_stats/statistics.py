"""The team's CPU-heavy function: plain Python, no Dagster, top level, so pool workers can
import it by module and name."""

import logging
import statistics

logger = logging.getLogger(__name__)


def collatz_steps(value: int) -> int:
    """Steps for |value| to reach 1 under the Collatz map (0 and 1: none)."""
    number, steps = abs(value), 0
    while number > 1:
        number = number // 2 if number % 2 == 0 else 3 * number + 1
        steps += 1
    return steps


def bucket_statistics(bucket: tuple[int, list[int]]) -> dict[str, float | int]:
    """Count, mean, median and mean Collatz steps of one bucket's values."""
    last_digit, values = bucket
    # A print reaches the step's log as it happens, like a log record.
    print(f"bucket {last_digit}: {len(values):,} values")  # noqa: T201
    steps = [collatz_steps(value) for value in values]
    logger.info(f"bucket {last_digit}: longest Collatz run {max(steps, default=0)} steps")
    return {
        "last_digit": last_digit,
        "values": len(values),
        "mean": statistics.fmean(values) if values else 0.0,
        "median": statistics.median(values) if values else 0.0,
        "mean_collatz_steps": statistics.fmean(steps) if steps else 0.0,
    }
