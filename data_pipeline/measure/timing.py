"""The measuring core: time several strategies for the same work, fairly, and prove they
agree (no Dagster; the report, the benchmarks and the benchmark job share it)."""

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Output = TypeVar("Output")
Detail = TypeVar("Detail")


class OutputMismatchError(AssertionError):
    """Two strategies disagreed on the same input: a correctness bug, never a timing question."""


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    minimum: float
    maximum: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float] | tuple[float, ...]) -> "Spread":
        if not values:
            return cls(0.0, 0.0, 0.0, ())
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def __str__(self) -> str:
        return f"{self.median:.2f} s ({self.minimum:.2f}-{self.maximum:.2f})"


@dataclass(frozen=True)
class Outcome(Generic[Output, Detail]):
    """What one run of a strategy gives back: its output and what it knows about itself
    (a pool's time breakdown, say). The runner times the call; the output is compared and
    dropped after it, untimed."""

    output: Output
    detail: Detail


@dataclass(frozen=True)
class Measurement(Generic[Detail]):
    """Every timed run of one strategy, in the order they ran."""

    name: str
    seconds: Spread
    details: tuple[Detail, ...]

    @property
    def repeats(self) -> int:
        return len(self.details)

    def median(self, figure: Callable[[Detail], float]) -> float:
        """Median of one figure of the details over the repeats."""
        return statistics.median(figure(detail) for detail in self.details)


@dataclass(frozen=True)
class MeasuredOutputs(Generic[Output, Detail]):
    """The measurements, by strategy, and each strategy's first output (all equal)."""

    measurements: dict[str, Measurement[Detail]]
    outputs: dict[str, Output]
    order: tuple[str, ...]


Strategy = Callable[[], Outcome]
Comparer = Callable[[Any, Any], str | None]


def alternating_order(names: list[str] | tuple[str, ...], repeats: int) -> list[str]:
    """Every name ``repeats`` times, in rounds that alternate direction: A B, B A, A B ..."""
    rounds = [names if number % 2 == 0 else names[::-1] for number in range(repeats)]
    return [name for round_ in rounds for name in round_]


def measure_alternately(
    strategies: Mapping[str, Strategy],
    repeats: int,
    differences: Comparer,
    warm_ups: Mapping[str, Callable[[], object]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> MeasuredOutputs:
    """Time each strategy ``repeats`` times, alternately, after one untimed warm-up of each.

    Fair means: every strategy warmed up once before any timing (imports, caches, the fork
    server); repeats in alternating order (A B B A A B ...), so a machine that speeds up or
    slows down during the measurement favours no strategy; medians with the minimum and
    maximum; and each output compared with the first strategy's outside the timed region.

    Args:
        strategies: each strategy's run, by name; the first one's output is the reference.
        repeats: timed runs of each strategy (at least 1).
        differences: ``differences(reference, output)`` describes how an output differs from
            the first strategy's first output, or returns None when they are equal; any
            difference raises :class:`OutputMismatchError` naming the strategy and the repeat.
        warm_ups: by name, what to run once untimed before any timing (a strategy left
            out is not warmed up).
        clock: the clock the runs are timed with.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(strategies)
    for name in names:
        (warm_ups or {}).get(name, lambda: None)()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    details: dict[str, list] = {name: [] for name in names}
    outputs: dict[str, object] = {}
    order = alternating_order(names, repeats)
    for name in order:
        started = clock()
        outcome = strategies[name]()
        seconds[name].append(clock() - started)
        details[name].append(outcome.detail)
        if names[0] in outputs:
            difference = differences(outputs[names[0]], outcome.output)
            if difference is not None:
                raise OutputMismatchError(
                    f"{name} (run {len(seconds[name])} of {repeats}) differs from "
                    f"{names[0]}: {difference}"
                )
        outputs.setdefault(name, outcome.output)
        del outcome  # the output of a repeat is not kept: memory stays at one per strategy
    return MeasuredOutputs(
        measurements={
            name: Measurement(name, Spread.of(seconds[name]), tuple(details[name]))
            for name in names
        },
        outputs=outputs,
        order=tuple(order),
    )
